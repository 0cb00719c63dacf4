//! `send-message`: a public or private message, stored in the message log.
//!
//! Payload: `{ message, to?, clientMsgId? }`. Without `to`:
//! `broadcast-message { id, from, message, timestamp }` to every other connection. With `to`:
//! `private-message { id, from, message, timestamp }` to each of that user's connections; a
//! known user who is offline gets it queued (delivered on their next connection), a user
//! never seen is an `error`, and so is an offline user whose queue is full.
//!
//! Ack, sent once the message is committed: `{ ok, id, delivered, queued }`. A resend with
//! the same `clientMsgId` gets the original's ack (with `duplicate: true`) and is neither
//! stored nor delivered again.

use super::{Ack, Caller, CommandError, Pending, publish_chat};
use crate::hub::Target;
use crate::protocol::payloads::{ClientMsgId, MessageText, TargetUserId};

pub(super) async fn apply(
    caller: &Caller,
    message: MessageText,
    to: Option<TargetUserId>,
    client_msg_id: Option<ClientMsgId>,
) -> Result<Pending, CommandError> {
    let (event, target) = match to {
        None => ("broadcast-message", Target::All),
        Some(to) => ("private-message", Target::User(to.as_str().to_owned())),
    };
    let durable = publish_chat(caller, event, target, &message, client_msg_id.as_ref()).await?;
    Ok(Pending::later(
        async move { durable.await.map(Ack::Published) },
    ))
}
