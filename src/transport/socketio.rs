//! The Socket.IO v4 transport at `/socket.io/`, through socketioxide (Engine.IO 4: polling and
//! websocket, with the upgrade between them). Like `/ws`, it only translates: client events go
//! to [`commands::execute`](crate::commands::execute), hub events go out through the
//! connection's [`Outbound`], here a [`DirectSink`] that emits straight into socketioxide's
//! own bounded per-socket queue (no writer task of ours: one task hop less per delivery).
//!
//! - **Authentication** is a connect middleware: the token from `auth.token`, else the
//!   `Authorization: Bearer` header, else `?token=`; a refusal's text becomes the client's
//!   `connect_error` message. `auth.lastMessageId` (or `?lastMessageId=`) asks for recovery.
//! - **Order.** socketioxide spawns a task per incoming event, which would let `join-room`
//!   and the `room-message` after it race. Events are therefore taken by [`Inbox`], a
//!   message handler that runs synchronously in socketioxide's receive path and only queues
//!   them, in order, for this connection's one reader task.
//! - **Acks** go through the Socket.IO acknowledgement callback with the same result object
//!   as on `/ws`; refusals also emit `error`.
//!
//! > **Warning:** socketioxide's `Data<T>` extractor silently skips a handler when the payload
//! > does not deserialize; this transport never uses it, so a bad payload gets an `error`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Query};
use axum::http::header;
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::{AckSender, Event as EventName, SocketRef, State, TryData};
use socketioxide::handler::message::FromMessageParts;
use socketioxide::handler::{ConnectHandler, MessageHandler, Value as PacketValue};
use socketioxide::layer::SocketIoLayer;
use socketioxide::socket::{DisconnectReason, Socket};
use socketioxide::{SendError, SocketError};
use tokio::sync::mpsc;

use super::Receipts;
use super::rate_limit::{RateLimiter, Verdict};
use super::ws::WsQuery;
use crate::auth::Identity;
use crate::commands::{self, Caller, CommandError};
use crate::hub::{
    CloseReason, Closer, DirectSink, Event, Outbound, SessionMeta, SinkError, Transport,
};
use crate::startup::AppState;

/// Client events queued per connection before it counts as flooding.
const INBOX_CAPACITY: usize = 256;

/// Builds the Socket.IO layer and its handle, with limits from the configuration.
pub fn layer(app: &AppState) -> (SocketIoLayer, SocketIo) {
    let limits = &app.settings.limits;
    let (layer, io) = SocketIo::builder()
        .with_state(app.clone())
        .ping_interval(limits.ping_interval)
        .ping_timeout(
            limits
                .idle_timeout
                .saturating_sub(limits.ping_interval)
                .max(Duration::from_secs(1)),
        )
        .max_payload(limits.max_frame_bytes as u64)
        .max_buffer_size(limits.outbound_queue_capacity)
        .ws_read_buffer_size(limits.ws_read_buffer_bytes)
        .ws_max_message_size(limits.max_frame_bytes)
        .ws_max_frame_size(limits.max_frame_bytes)
        .build_layer();
    io.ns("/", on_connect.with(authenticate));
    (layer, io)
}

/// A refused Socket.IO connection; its text is the client's `connect_error` message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refusal(String);

/// The message id a client asked to resume from.
#[derive(Debug, Clone, Copy)]
struct ResumeFrom(Option<u64>);

/// Parses `lastMessageId` from the auth object (number or numeric string).
fn parse_resume(auth: Option<&Value>, query: Option<&str>) -> Result<Option<u64>, Refusal> {
    let bad = || Refusal("lastMessageId must be a non-negative integer (a message id)".into());
    match auth.and_then(|a| a.get("lastMessageId")) {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => return n.as_u64().map(Some).ok_or_else(bad),
        Some(Value::String(s)) => return s.parse().map(Some).map_err(|_| bad()),
        Some(_) => return Err(bad()),
    }
    query.map(|q| q.parse().map_err(|_| bad())).transpose()
}

async fn authenticate(
    socket: SocketRef,
    TryData(auth): TryData<Value>,
    State(app): State<AppState>,
) -> Result<(), Refusal> {
    if app.stopping.is_cancelled() {
        return Err(Refusal("server is shutting down".into()));
    }
    let parts = socket.req_parts();
    let origin = parts
        .headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    if !app.settings.cors_origins.allows(origin) {
        return Err(Refusal("origin not allowed".into()));
    }
    let auth = auth.ok();
    let query = Query::<WsQuery>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let auth_token = auth
        .as_ref()
        .and_then(|a| a.get("token"))
        .and_then(Value::as_str);
    let identity = app
        .verifier
        .authenticate(auth_token, &parts.headers, query.token.as_deref())
        .map_err(|e| Refusal(e.to_string()))?;
    let resume = parse_resume(auth.as_ref(), query.last_message_id.as_deref())?;
    socket.extensions.insert(identity);
    socket.extensions.insert(ResumeFrom(resume));
    Ok(())
}

async fn on_connect(socket: SocketRef, State(app): State<AppState>) {
    let Some(identity) = socket.extensions.get::<Identity>() else {
        // The middleware always stores it; without it there is no one to serve.
        let _ = socket.disconnect();
        return;
    };
    let resume = socket.extensions.get::<ResumeFrom>().and_then(|r| r.0);
    let parts = socket.req_parts();
    let meta = SessionMeta {
        transport: Transport::SocketIo,
        remote_addr: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0),
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(String::from),
    };
    let capacity = app.settings.limits.outbound_queue_capacity;
    let outbound = Outbound::direct(Arc::new(SocketSink {
        socket: socket.clone(),
        receipts: Receipts::new(app.hub.store().clone(), &identity.user_id),
    }));
    let (inbox, inbound) = mpsc::channel(INBOX_CAPACITY);
    socket.extensions.insert(outbound.closer().clone());
    socket.on_fallback(Inbox(inbox));
    socket.on_disconnect(on_disconnect);
    let registered = app
        .hub
        .connect(identity.clone(), meta, outbound.clone(), capacity);
    let caller = Caller {
        hub: app.hub.clone(),
        session: registered.session,
        identity,
        outbound,
        limits: app.command_limits(),
    };
    let tracker = app.connections.clone();
    tracker.spawn(serve_session(
        socket,
        app,
        caller,
        inbound,
        resume,
        registered.replay_until,
    ));
}

async fn on_disconnect(socket: SocketRef, reason: DisconnectReason) {
    let Some(closer) = socket.extensions.get::<Closer>() else {
        return;
    };
    closer.close(match reason {
        DisconnectReason::TransportClose | DisconnectReason::ClientNSDisconnect => {
            CloseReason::ClientClosed
        }
        DisconnectReason::HeartbeatTimeout => CloseReason::IdleTimeout,
        DisconnectReason::ClosingServer => CloseReason::ServerShutdown,
        // We disconnected it ourselves: the closer already holds the real reason.
        DisconnectReason::ServerNSDisconnect => CloseReason::Kicked,
        DisconnectReason::TransportError
        | DisconnectReason::MultipleHttpPollingError
        | DisconnectReason::PacketParsingError => CloseReason::TransportError,
    });
}

/// One client event, as taken from socketioxide.
struct Inbound {
    event: Result<String, String>,
    data: Option<Value>,
    ack: AckSender,
}

/// Queues every incoming event for the connection's reader, synchronously and in order.
#[derive(Clone)]
struct Inbox(mpsc::Sender<Inbound>);

/// Marker type for [`Inbox`]'s handler implementation.
struct InboxMarker;

impl MessageHandler<LocalAdapter, InboxMarker> for Inbox {
    fn call(&self, s: Arc<Socket<LocalAdapter>>, mut v: PacketValue, ack_id: Option<i64>) {
        let event = EventName::from_message_parts(&s, &mut v, &ack_id)
            .map(|e| e.0)
            .map_err(|e| format!("unreadable event: {e}"));
        let data = match TryData::<Value>::from_message_parts(&s, &mut v, &ack_id) {
            Ok(TryData(Ok(Value::Null))) | Ok(TryData(Err(_))) | Err(_) => None,
            Ok(TryData(Ok(v))) => Some(v),
        };
        let ack = match AckSender::from_message_parts(&s, &mut v, &ack_id) {
            Ok(ack) => ack,
            Err(never) => match never {},
        };
        if let Err(mpsc::error::TrySendError::Full(_)) =
            self.0.try_send(Inbound { event, data, ack })
            && let Some(closer) = s.extensions.get::<Closer>()
        {
            closer.close(CloseReason::RateLimited);
        }
    }
}

async fn serve_session(
    socket: SocketRef,
    app: AppState,
    caller: Caller,
    inbound: mpsc::Receiver<Inbound>,
    resume: Option<u64>,
    replay_until: u64,
) {
    let closer = caller.outbound.closer().clone();
    tokio::join!(
        async {
            tokio::select! {
                () = closer.closed() => {}
                () = commands::replay_on_connect(&caller, resume, replay_until) => {}
            }
            read_loop(&caller, inbound, &app).await;
        },
        disconnect_when_closed(&socket, &closer),
    );
    let reason = closer.reason().unwrap_or(CloseReason::ClientClosed);
    tracing::debug!(
        session = caller.session.0,
        user_id = %caller.identity.user_id,
        reason = reason.as_str(),
        "socket.io connection closed"
    );
    app.hub.disconnect(caller.session, reason);
}

async fn read_loop(caller: &Caller, mut inbound: mpsc::Receiver<Inbound>, app: &AppState) {
    let limits = &app.settings.limits;
    let closer = caller.outbound.closer();
    let mut limiter = RateLimiter::new(
        limits.rate_limit_per_sec,
        limits.rate_limit_burst,
        limits.rate_limit_max_strikes,
    );
    loop {
        let message = tokio::select! {
            () = closer.closed() => return,
            message = inbound.recv() => match message {
                Some(m) => m,
                None => return,
            },
        };
        let result = match limiter.check(Instant::now()) {
            Verdict::Admit => match &message.event {
                Ok(name) => commands::execute(caller, name, message.data.as_ref()).await,
                Err(e) => Err(CommandError::Protocol(crate::protocol::ProtocolError::new(
                    e,
                ))),
            },
            Verdict::Refuse => Err(CommandError::RateLimited(limits.rate_limit_per_sec)),
            Verdict::Disconnect => {
                let refused = Err(CommandError::RateLimited(limits.rate_limit_per_sec));
                reply(caller, message.ack, &refused);
                return caller.outbound.close(CloseReason::RateLimited);
            }
        };
        reply(caller, message.ack, &result);
    }
}

/// The `error` event for a refusal, and the acknowledgement callback's result.
fn reply(caller: &Caller, ack: AckSender, result: &Result<commands::AckFields, CommandError>) {
    if let Err(e) = result {
        caller.outbound.send(commands::error_event(&e.to_string()));
    }
    // A client that asked for no ack makes this a no-op.
    let _ = ack.send(&commands::ack_body(result));
}

/// Hands events straight to socketioxide, which queues them per socket (bounded by
/// `OUTBOUND_QUEUE_CAPACITY`) for its own writer task.
struct SocketSink {
    socket: SocketRef,
    receipts: Receipts,
}

impl DirectSink for SocketSink {
    fn try_send(&self, event: &Event) -> Result<(), SinkError> {
        match self.socket.emit(event.name(), event.data_raw()) {
            Ok(()) => {
                if let Some(id) = event.delivery() {
                    self.receipts.record_one(id);
                }
                Ok(())
            }
            Err(SendError::Socket(SocketError::InternalChannelFull)) => Err(SinkError::Full),
            Err(_) => Err(SinkError::Closed),
        }
    }
}

/// Waits until the hub (slow consumer, shutdown, kick) or the reader (rate limit) closes the
/// session, then tells the client why and disconnects it; Socket.IO has no close reason.
async fn disconnect_when_closed(socket: &SocketRef, closer: &Closer) {
    closer.closed().await;
    let reason = closer.reason().unwrap_or(CloseReason::ClientClosed);
    if matches!(
        reason,
        CloseReason::ClientClosed | CloseReason::TransportError | CloseReason::IdleTimeout
    ) {
        return;
    }
    if reason != CloseReason::SlowConsumer {
        let _ = socket.emit(
            "error",
            &serde_json::json!({ "message": reason.describe() }),
        );
    }
    let _ = socket.clone().disconnect();
}
