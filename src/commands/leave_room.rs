//! `leave-room`: end the user's membership of a room.
//!
//! Payload: `{ room }`. Replies `left-room { room, message }` to the caller; the room's other
//! members (and the user's other connections) get `user-left-room { user, room, timestamp }`.
//! Leaving a room the user is not in is refused with `error`, so a typo does not pass
//! silently. Ack: `{ ok, room }`.

use super::{Ack, Caller, Outcome};
use crate::hub::Event;
use crate::protocol::payloads::RoomName;
use crate::protocol::wire::RoomConfirmation;

pub(super) fn apply(caller: &Caller, room: RoomName) -> Outcome {
    caller.hub.leave_room(caller.session, &room)?;
    caller.reply(Event::new(
        "left-room",
        &RoomConfirmation {
            room: room.as_str(),
            message: format!("Left room {room}"),
        },
    ));
    Ok(Ack::Left {
        room: room.as_str().to_owned(),
    })
}
