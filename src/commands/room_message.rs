//! `room-message`: a message to a room the caller is in.
//!
//! Payload: `{ room, message }`. Sends `room-message { from, message, room, timestamp }` to
//! every other connection in the room (the sender's other connections included). A caller
//! who is not a member gets `error`. Ack: `{ ok, delivered, room }`.

use super::{AckFields, Caller, CommandError, fields};
use crate::hub::Event;
use crate::protocol::payloads::{MessageText, RoomName};
use crate::protocol::wire::{self, RoomChatMessage};

pub(super) fn apply(
    caller: &Caller,
    room: RoomName,
    message: MessageText,
) -> Result<AckFields, CommandError> {
    let from = caller.hub.user_of(caller.session)?;
    let timestamp = wire::now();
    let event = Event::new(
        "room-message",
        &RoomChatMessage {
            from: &from,
            message: message.as_str(),
            room: room.as_str(),
            timestamp: &timestamp,
        },
    );
    let delivered = caller
        .hub
        .send_to_room_from(caller.session, &room, &event)?;
    Ok(fields([
        ("delivered", delivered.into()),
        ("room", room.as_str().into()),
        ("timestamp", timestamp.into()),
    ]))
}
