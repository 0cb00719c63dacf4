//! `join-room`: become a member of a room.
//!
//! Payload: `{ room }` (see the room name rule in `protocol::payloads`). Replies
//! `joined-room { room, message }` to the caller; the room's other members get
//! `user-joined-room { user, room, timestamp }` when the user was not a member yet (joining
//! twice is harmless and tells nobody). Membership belongs to the user: all of its
//! connections are in the room. Ack: `{ ok, room, joined }`, `joined: false` when already in.
//! A room the access rules refuse (the token's `rooms` claim, the room's policy; checked by
//! the hub) is `forbidden`, in the same words whether the room exists or not.
//!
//! A room whose policy asks the application's join hook: the hub answers `AskHook` without
//! joining, the hook is asked here, outside the hub lock (`access::hook`: cached, bounded by
//! `JOIN_HOOK_TIMEOUT_MS`), and the join goes back to the hub with the answer, which checks
//! every other rule again. The connection's next events wait for it: a `room-message` sent
//! right after a `join-room` must find the user in the room. A refusal by the hook is the
//! same `forbidden` as any other; no answer is `hook_unavailable` (fail closed).

use super::{Ack, Caller, CommandError, Outcome};
use crate::auth::Identity;
use crate::hub::{Event, Forbidden, HookAnswer, HubError, JoinOutcome};
use crate::protocol::payloads::RoomName;
use crate::protocol::wire::RoomConfirmation;

pub(super) async fn apply(caller: &Caller, room: RoomName) -> Outcome {
    let join = |hook| {
        caller.hub.join_room(
            caller.session,
            &room,
            caller.limits.max_rooms_per_user,
            hook,
        )
    };
    let outcome = match join(HookAnswer::NotAsked)? {
        JoinOutcome::AskHook(identity) => {
            ask_hook(caller, &identity, &room).await?;
            join(HookAnswer::Allowed)?
        }
        joined => joined,
    };
    let JoinOutcome::Joined { new: joined } = outcome else {
        // The hub asks the hook only when it was not asked yet.
        return Err(refused());
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

/// `Ok` when the join hook lets `identity` into `room`.
async fn ask_hook(
    caller: &Caller,
    identity: &Identity,
    room: &RoomName,
) -> Result<(), CommandError> {
    // Start-up refuses a policy that asks a hook it does not have; fail closed all the same.
    let Some(hook) = &caller.join_hook else {
        return Err(refused());
    };
    match hook.ask(identity, room.as_str()).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(refused()),
        Err(_) => Err(CommandError::HookUnavailable),
    }
}

fn refused() -> CommandError {
    HubError::Forbidden(Forbidden::Join).into()
}
