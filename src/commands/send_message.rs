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

use super::{AckFields, Caller, CommandError, acknowledge, find_original};
use crate::hub::{Publish, Target};
use crate::protocol::payloads::{ClientMsgId, MessageText, TargetUserId};
use crate::protocol::wire::{self, ChatMessage};

pub(super) async fn apply(
    caller: &Caller,
    message: MessageText,
    to: Option<TargetUserId>,
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
    let store = caller.hub.store();
    store.ensure_id_headroom().await;
    let from = caller.hub.user_of(caller.session)?;
    let timestamp = wire::now();
    let (event, target) = match to {
        None => ("broadcast-message", Target::All),
        Some(to) => ("private-message", Target::User(to.as_str().to_owned())),
    };
    let published = caller.hub.publish(Publish {
        event: event.into(),
        target,
        sender_session: Some(caller.session),
        sender_id: caller.identity.user_id.clone(),
        body: message.as_str(),
        timestamp: &timestamp,
        kind: None,
        client_msg_id: client_msg_id.as_ref().map(ClientMsgId::as_str),
        unknown_user_is_error: true,
        queue_limit: caller.limits.max_queued_per_user,
        payload: &|id| ChatMessage {
            id,
            from: &from,
            message: message.as_str(),
            timestamp: &timestamp,
        },
    })?;
    acknowledge(published).await
}
