//! `room-message`: a message to a room the caller is in, stored in the message log.
//!
//! Payload: `{ room, message, clientMsgId? }`. Sends
//! `room-message { id, from, message, room, timestamp }` to every other connection in the
//! room (the sender's other connections included). A caller who is not a member gets
//! `error` (`not_member`), a member whose grant of the room is read-only `forbidden` (both
//! decided in the hub's access step, `State::may_send`). Ack, once committed: `{ ok, id, delivered, queued: false, room }`; a resend with
//! the same `clientMsgId` gets the original's ack.

use super::{Ack, Caller, CommandError, Pending, publish_chat};
use crate::hub::Target;
use crate::protocol::payloads::{ClientMsgId, MessageText, RoomName};

pub(super) async fn apply(
    caller: &Caller,
    room: RoomName,
    message: MessageText,
    client_msg_id: Option<ClientMsgId>,
) -> Result<Pending, CommandError> {
    let target = Target::Room(room.clone());
    let durable = publish_chat(
        caller,
        "room-message",
        target,
        &message,
        client_msg_id.as_ref(),
    )
    .await?;
    Ok(Pending::later(async move {
        let mut ack = durable.await?;
        ack.room = Some(room.as_str().to_owned());
        Ok(Ack::Published(ack))
    }))
}
