//! One file per client event. Each turns an already-validated event into hub calls, sends the
//! caller its reply event, and returns the fields of the ack. [`execute`] is the one dispatch
//! point that every transport calls, so `/ws` and (later) Socket.IO behave identically.

mod get_active_users;
mod get_users_stats;
mod join_room;
mod leave_room;
pub mod notify;
mod room_message;
mod send_message;
mod sync;

use std::sync::Arc;

use serde_json::{Map, Value};

pub use get_users_stats::users_stats;
pub use sync::replay_on_connect;

use crate::auth::Identity;
use crate::hub::{Event, Hub, HubError, Outbound, Publish, Published, SessionId, Target};
use crate::protocol::ProtocolError;
use crate::protocol::events::{ClientEvent, ParseLimits};
use crate::protocol::payloads::{ClientMsgId, MessageText};
use crate::protocol::wire::ErrorPayload;
use crate::protocol::wire::{self, ChatMessage};

/// The fields of a successful ack, beyond `ok: true`.
pub type AckFields = Map<String, Value>;

/// Why a client event was refused. The text is the `error { message }` the client gets; the
/// connection stays open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The frame or payload was malformed.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The hub refused (not a member, user offline, ...).
    #[error(transparent)]
    Hub(#[from] HubError),
    /// No such event.
    #[error("unknown event {0:?}; known events: {known}", known = ClientEvent::NAMES.join(", "))]
    UnknownEvent(String),
    /// The rate limit refused the event.
    #[error("rate limit exceeded: at most {0} events per second")]
    RateLimited(u32),
    /// Binary frames carry no events.
    #[error("binary frames are not supported; send JSON text frames")]
    BinaryFrame,
    /// The message could not be committed to the database.
    #[error("the message could not be stored; it was not acknowledged, send it again")]
    NotStored,
    /// A database read failed.
    #[error("the message log could not be read; try again")]
    StoreUnavailable,
    /// A new connection's catch-up could not read the message log.
    #[error("missed messages could not be replayed; they stay queued: reconnect or call sync")]
    CatchUpFailed,
}

/// Per-connection settings the commands need.
#[derive(Debug, Clone, Copy)]
pub struct CommandLimits {
    /// Payload parsing limits.
    pub parse: ParseLimits,
    /// Most rooms per user.
    pub max_rooms_per_user: usize,
    /// Most undelivered messages per offline user.
    pub max_queued_per_user: u64,
}

/// Who is calling: one live session.
#[derive(Clone)]
pub struct Caller {
    /// The hub.
    pub hub: Hub,
    /// The caller's session.
    pub session: SessionId,
    /// The caller's identity.
    pub identity: Identity,
    /// The caller's connection.
    pub outbound: Outbound,
    /// Limits.
    pub limits: CommandLimits,
}

impl Caller {
    /// Sends an event to the caller's own connection (through the hub, so that it stays in
    /// order with live events held during catch-up).
    fn reply(&self, event: Arc<Event>) {
        self.hub.send_to_session(self.session, event);
    }
}

/// The stored original of a resent message (from an earlier run, or evicted from the hub's
/// memory of recent keys), if `sender_id` already used `key`.
pub async fn find_original(
    hub: &Hub,
    sender_id: &str,
    key: Option<&ClientMsgId>,
) -> Result<Option<Published>, CommandError> {
    let Some(key) = key else { return Ok(None) };
    let found = hub
        .store()
        .original_of(sender_id, key.as_str())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "idempotency lookup failed");
            CommandError::StoreUnavailable
        })?;
    Ok(found.map(|o| Published::stored_duplicate(o.id, o.delivered as usize, o.queued)))
}

/// Stores and routes a client's chat message (`broadcast-message`, `private-message` or
/// `room-message`) and acknowledges it once durable; a resend with the same key gets the
/// original's ack instead.
async fn publish_chat(
    caller: &Caller,
    event: &'static str,
    target: Target,
    message: &MessageText,
    client_msg_id: Option<&ClientMsgId>,
) -> Result<AckFields, CommandError> {
    if let Some(original) =
        find_original(&caller.hub, &caller.identity.user_id, client_msg_id).await?
    {
        return acknowledge(original).await;
    }
    let headroom = caller.hub.store().ensure_id_headroom().await;
    headroom.map_err(|_| CommandError::NotStored)?;
    let from = caller.hub.user_of(caller.session)?;
    let timestamp = wire::now();
    let room = match &target {
        Target::Room(room) => Some(room.as_str().to_owned()),
        _ => None,
    };
    let published = caller.hub.publish(Publish {
        event: event.into(),
        target,
        sender_session: Some(caller.session),
        sender_id: caller.identity.user_id.clone(),
        body: message.as_str(),
        timestamp: &timestamp,
        kind: None,
        client_msg_id: client_msg_id.map(ClientMsgId::as_str),
        unknown_user_is_error: true,
        queue_limit: caller.limits.max_queued_per_user,
        payload: &|id| ChatMessage {
            id,
            from: &from,
            message: message.as_str(),
            room: room.as_deref(),
            timestamp: &timestamp,
        },
    })?;
    acknowledge(published).await
}

/// Waits until a published message is durable and turns it into ack fields
/// `{ id, delivered, queued, timestamp? , duplicate? }`.
async fn acknowledge(mut published: Published) -> Result<AckFields, CommandError> {
    if !published.durable().await {
        return Err(CommandError::NotStored);
    }
    let mut ack = fields([
        ("id", published.id.into()),
        ("delivered", published.delivered.into()),
        ("queued", published.queued.into()),
    ]);
    if published.duplicate {
        ack.insert("duplicate".into(), true.into());
    }
    Ok(ack)
}

/// Parses and runs one client event.
pub async fn execute(
    caller: &Caller,
    event: &str,
    data: Option<&Value>,
) -> Result<AckFields, CommandError> {
    match ClientEvent::parse(event, data, caller.limits.parse)? {
        ClientEvent::GetActiveUsers => get_active_users::apply(caller),
        ClientEvent::GetUsersStats => get_users_stats::apply(caller).await,
        ClientEvent::SendMessage {
            message,
            to,
            client_msg_id,
        } => send_message::apply(caller, message, to, client_msg_id).await,
        ClientEvent::JoinRoom(room) => join_room::apply(caller, room),
        ClientEvent::LeaveRoom(room) => leave_room::apply(caller, room),
        ClientEvent::RoomMessage {
            room,
            message,
            client_msg_id,
        } => room_message::apply(caller, room, message, client_msg_id).await,
        ClientEvent::Sync { since } => sync::apply(caller, since).await,
        ClientEvent::Unknown(name) => Err(CommandError::UnknownEvent(name)),
    }
}

/// The `error { message }` event for a refusal.
pub fn error_event(error: &CommandError) -> Arc<Event> {
    Event::new(
        "error",
        &ErrorPayload {
            message: &error.to_string(),
        },
    )
}

/// The fields of an ack as a JSON object: `{ ok: true, ...fields }` or
/// `{ ok: false, error }`.
pub fn ack_body(result: &Result<AckFields, CommandError>) -> Map<String, Value> {
    let mut body = Map::new();
    match result {
        Ok(fields) => {
            body.insert("ok".into(), Value::Bool(true));
            body.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Err(e) => {
            body.insert("ok".into(), Value::Bool(false));
            body.insert("error".into(), Value::String(e.to_string()));
        }
    }
    body
}

/// Builds ack fields from `(name, value)` pairs.
fn fields<const N: usize>(pairs: [(&str, Value); N]) -> AckFields {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}
