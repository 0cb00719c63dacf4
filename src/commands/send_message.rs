//! `send-message`: a public or private message.
//!
//! Payload: `{ message, to? }`. Without `to`: `broadcast-message { from, message, timestamp }`
//! to every other connection. With `to`: `private-message { from, message, timestamp }` to each
//! of that user's connections; a user who is not connected gets `error` (the offline queue
//! comes with the message log). Ack: `{ ok, delivered, queued }`, `delivered` counting the
//! connections that took the frame.

use super::{AckFields, Caller, CommandError, fields};
use crate::hub::Event;
use crate::protocol::payloads::{MessageText, TargetUserId};
use crate::protocol::wire::{self, ChatMessage};

pub(super) fn apply(
    caller: &Caller,
    message: MessageText,
    to: Option<TargetUserId>,
) -> Result<AckFields, CommandError> {
    let from = caller.hub.user_of(caller.session)?;
    let timestamp = wire::now();
    let payload = ChatMessage {
        from: &from,
        message: message.as_str(),
        timestamp: &timestamp,
    };
    let delivered = match to {
        None => {
            let event = Event::new("broadcast-message", &payload);
            caller.hub.broadcast(&event, Some(caller.session))
        }
        Some(to) => {
            let event = Event::new("private-message", &payload);
            caller.hub.send_private(to.as_str(), &event)?
        }
    };
    Ok(fields([
        ("delivered", delivered.into()),
        ("queued", false.into()),
        ("timestamp", timestamp.into()),
    ]))
}
