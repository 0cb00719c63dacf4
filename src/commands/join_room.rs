//! `join-room`: become a member of a room.
//!
//! Payload: `{ room }` (see the room name rule in `protocol::payloads`). Replies
//! `joined-room { room, message }` to the caller; the room's other members get
//! `user-joined-room { user, room, timestamp }` when the user was not a member yet (joining
//! twice is harmless and tells nobody). Membership belongs to the user: all of its
//! connections are in the room. Ack: `{ ok, room, joined }`, `joined: false` when already in.
//! A room the access rules refuse (the token's `rooms` claim, `ROOM_JOIN_DEFAULT`; checked by
//! the hub) is `forbidden`, in the same words whether the room exists or not.

use super::{Ack, Caller, Outcome};
use crate::hub::{Event, Forbidden, HookAnswer, HubError, JoinOutcome};
use crate::protocol::payloads::RoomName;
use crate::protocol::wire::RoomConfirmation;

pub(super) fn apply(caller: &Caller, room: RoomName) -> Outcome {
    let outcome = caller.hub.join_room(
        caller.session,
        &room,
        caller.limits.max_rooms_per_user,
        HookAnswer::NotAsked,
    )?;
    let joined = match outcome {
        JoinOutcome::Joined { new } => new,
        // The join hook is not wired yet: fail closed.
        JoinOutcome::AskHook(_) => return Err(HubError::Forbidden(Forbidden::Join).into()),
    };
    caller.reply(Event::new(
        "joined-room",
        &RoomConfirmation {
            room: room.as_str(),
            message: format!("Joined room {room}"),
        },
    ));
    Ok(Ack::Joined {
        room: room.as_str().to_owned(),
        joined,
    })
}
