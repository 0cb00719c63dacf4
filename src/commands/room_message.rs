//! `room-message`: a message to a room the caller is in, stored in the message log.
//!
//! Payload: `{ room, message, clientMsgId? }`. Sends
//! `room-message { id, from, message, room, timestamp }` to every other connection in the
//! room (the sender's other connections included). A caller who is not a member gets
//! `error`. Ack, once committed: `{ ok, id, delivered, queued: false }`; a resend with the
//! same `clientMsgId` gets the original's ack.

use super::{AckFields, Caller, CommandError, acknowledge, find_original};
use crate::hub::{Publish, Target};
use crate::protocol::payloads::{ClientMsgId, MessageText, RoomName};
use crate::protocol::wire::{self, RoomChatMessage};

pub(super) async fn apply(
    caller: &Caller,
    room: RoomName,
    message: MessageText,
    client_msg_id: Option<ClientMsgId>,
) -> Result<AckFields, CommandError> {
    if let Some(original) = find_original(
        &caller.hub,
        &caller.identity.user_id,
        client_msg_id.as_ref(),
    )
    .await?
    {
        return acknowledge(original).await;
    }
    caller.hub.store().ensure_id_headroom().await;
    let from = caller.hub.user_of(caller.session)?;
    let timestamp = wire::now();
    let published = caller.hub.publish(Publish {
        event: "room-message".into(),
        target: Target::Room(room.clone()),
        sender_session: Some(caller.session),
        sender_id: caller.identity.user_id.clone(),
        body: message.as_str(),
        timestamp: &timestamp,
        kind: None,
        client_msg_id: client_msg_id.as_ref().map(ClientMsgId::as_str),
        unknown_user_is_error: true,
        queue_limit: caller.limits.max_queued_per_user,
        payload: &|id| RoomChatMessage {
            id,
            from: &from,
            message: message.as_str(),
            room: room.as_str(),
            timestamp: &timestamp,
        },
    })?;
    let mut ack = acknowledge(published).await?;
    ack.insert("room".into(), room.as_str().into());
    Ok(ack)
}
