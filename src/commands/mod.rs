//! One file per client event. Each turns an already-validated event into hub calls, sends the
//! caller its reply event, and returns its typed [`Ack`]. [`execute`] is the one dispatch
//! point that every transport calls, so `/ws` and Socket.IO behave identically; [`notify`] is
//! the same for the REST API and the embedded handle. Refusals are [`CommandError`]s, each
//! with a stable code ([`error`]); what goes back on the wire is in [`reply`].
//!
//! [`execute`] runs a command's ordered part (parse, checks, routing: everything that must
//! happen in frame order) and returns a [`Pending`] ack: ready at once for most commands, the
//! wait for the commit for a stored message. The caller may run the next event meanwhile.

mod error;
mod get_active_users;
mod get_users_stats;
mod join_room;
mod leave_room;
pub mod notify;
pub mod publish_event;
mod refresh_token;
mod reply;
mod room_message;
mod send_message;
mod sync;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use serde_json::Value;

pub use error::CommandError;
pub use get_users_stats::users_stats;
pub use refresh_token::Credentials;
pub use reply::{Ack, AckReply, Outcome, PublishedAck, error_event};
pub use sync::replay_on_connect;

use crate::access::JoinHook;
use crate::auth::{Identity, Verifier};
use crate::hub::{Event, Hub, Outbound, Publish, SessionId, Target};
use crate::metrics::Metrics;
use crate::protocol::events::{ClientEvent, ParseLimits};
use crate::protocol::payloads::{ClientMsgId, MessageText};
use crate::protocol::wire::{self, ChatMessage};
use crate::store::Store;

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

/// Who is calling: one live session, and what its commands reach.
#[derive(Clone)]
pub struct Caller {
    pub hub: Hub,
    /// Where `sync`, the catch-up and `get-users-stats` read history (the app state's store).
    pub store: Store,
    /// Where replayed deliveries are counted (the app state's metrics).
    pub metrics: Arc<Metrics>,
    pub session: SessionId,
    /// The connection's current token (`refresh-token` renews it).
    pub credentials: Credentials,
    /// Verifies a renewed token exactly like a connecting one.
    pub verifier: Verifier,
    /// The caller's own connection: catch-up writes here directly, waiting for room.
    pub outbound: Outbound,
    pub limits: CommandLimits,
    /// The application's join hook (`JOIN_HOOK_URL`), asked by `join-room` for rooms whose
    /// policy says so.
    pub join_hook: Option<Arc<JoinHook>>,
}

impl Caller {
    /// Who the connection's current token names.
    pub fn identity(&self) -> Identity {
        self.credentials.identity()
    }

    /// Sends an event to the caller's own connection (through the hub, so that it stays in
    /// order with live events held during catch-up).
    fn reply(&self, event: Arc<Event>) {
        self.hub.send_to_session(self.session, event);
    }
}

/// The ack of a command whose ordered part has run: resolves to its [`Outcome`] once there is
/// nothing left to wait for (for a stored message, its commit). Owns what it waits on, so a
/// session can hold several while it reads on.
#[must_use = "the ack is sent only once this resolves"]
pub struct Pending(BoxFuture<'static, Outcome>);

impl Pending {
    /// An outcome known now.
    pub fn ready(outcome: Outcome) -> Self {
        Self(Box::pin(std::future::ready(outcome)))
    }

    fn later(outcome: impl Future<Output = Outcome> + Send + 'static) -> Self {
        Self(Box::pin(outcome))
    }
}

impl Future for Pending {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        self.0.as_mut().poll(cx)
    }
}

/// Stores and routes a client's chat message (`broadcast-message`, `private-message` or
/// `room-message`): once this returns, it has its id and its live copies are queued; the
/// result resolves to its ack once durable. A resend with the same key gets the original's
/// ack instead.
async fn publish_chat(
    caller: &Caller,
    event: &'static str,
    target: Target,
    message: &MessageText,
    client_msg_id: Option<&ClientMsgId>,
) -> Result<impl Future<Output = Result<PublishedAck, CommandError>> + Send + 'static, CommandError>
{
    let from = caller.hub.user_of(caller.session)?;
    let timestamp = wire::now();
    let room = match &target {
        Target::Room(room) => Some(room.as_str().to_owned()),
        _ => None,
    };
    let payload = |id| ChatMessage {
        id,
        from: &from,
        message: message.as_str(),
        room: room.as_deref(),
        timestamp: &timestamp,
    };
    let publish = Publish::chat(
        caller.session,
        caller.identity().user_id,
        caller.limits.max_queued_per_user,
    )
    .message(event, target, message.as_str(), &timestamp, &payload)
    .idempotency_key(client_msg_id.map(ClientMsgId::as_str));
    let pending = caller.hub.begin_publish(publish).await?;
    Ok(async move {
        let published = pending.durable().await?;
        Ok(PublishedAck::from(&published))
    })
}

/// Parses one client event and runs its ordered part; the result resolves to its ack.
pub async fn execute(caller: &Caller, event: &str, data: Option<&Value>) -> Pending {
    match run(caller, event, data).await {
        Ok(pending) => pending,
        Err(e) => Pending::ready(Err(e)),
    }
}

async fn run(caller: &Caller, event: &str, data: Option<&Value>) -> Result<Pending, CommandError> {
    let ready = Pending::ready;
    Ok(
        match ClientEvent::parse(event, data, caller.limits.parse)? {
            ClientEvent::GetActiveUsers => ready(get_active_users::apply(caller)),
            ClientEvent::GetUsersStats => ready(get_users_stats::apply(caller).await),
            ClientEvent::SendMessage {
                message,
                to,
                client_msg_id,
            } => send_message::apply(caller, message, to, client_msg_id).await?,
            ClientEvent::JoinRoom(room) => ready(join_room::apply(caller, room).await),
            ClientEvent::LeaveRoom(room) => ready(leave_room::apply(caller, room)),
            ClientEvent::RoomMessage {
                room,
                message,
                client_msg_id,
            } => room_message::apply(caller, room, message, client_msg_id).await?,
            ClientEvent::Sync { since } => ready(sync::apply(caller, since).await),
            ClientEvent::RefreshToken { token } => ready(refresh_token::apply(caller, &token)),
            ClientEvent::Unknown(name) => return Err(CommandError::UnknownEvent(name)),
        },
    )
}
