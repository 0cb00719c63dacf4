//! One file per client event. Each turns an already-validated event into hub calls, sends the
//! caller its reply event, and returns the fields of the ack. [`execute`] is the one dispatch
//! point that every transport calls, so `/ws` and (later) Socket.IO behave identically.

mod get_active_users;
mod get_users_stats;
mod join_room;
mod leave_room;
mod room_message;
mod send_message;

use std::sync::Arc;

use serde_json::{Map, Value};

pub use get_users_stats::users_stats;

use crate::auth::Identity;
use crate::hub::{Event, Hub, HubError, SessionId};
use crate::protocol::ProtocolError;
use crate::protocol::events::{ClientEvent, ParseLimits};
use crate::protocol::wire::ErrorPayload;

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
}

/// Per-connection settings the commands need.
#[derive(Debug, Clone, Copy)]
pub struct CommandLimits {
    /// Payload parsing limits.
    pub parse: ParseLimits,
    /// Most rooms per user.
    pub max_rooms_per_user: usize,
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
    /// Limits.
    pub limits: CommandLimits,
}

impl Caller {
    /// Sends an event to the caller's own connection.
    fn reply(&self, event: Arc<Event>) {
        self.hub.send_to_session(self.session, event);
    }
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
        ClientEvent::SendMessage { message, to } => send_message::apply(caller, message, to),
        ClientEvent::JoinRoom(room) => join_room::apply(caller, room),
        ClientEvent::LeaveRoom(room) => leave_room::apply(caller, room),
        ClientEvent::RoomMessage { room, message } => room_message::apply(caller, room, message),
        ClientEvent::Unknown(name) => Err(CommandError::UnknownEvent(name)),
    }
}

/// The `error { message }` event.
pub fn error_event(message: &str) -> Arc<Event> {
    Event::new("error", &ErrorPayload { message })
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
