//! The Socket.IO v4 transport at `/socket.io/`, through socketioxide (Engine.IO 4: polling and
//! websocket, with the upgrade between them). Like `/ws`, it keeps only its framing: admission,
//! opening, each client event and the close go through the [`session`](super::session) core
//! shared with `/ws`; hub events go out through the
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
//!   as on `/ws`, in event order as the session's pipeline yields them (the reader takes the
//!   next event while earlier messages wait for their commit); refusals also emit `error`.
//!
//! > **Warning:** socketioxide's `Data<T>` extractor silently skips a handler when the payload
//! > does not deserialize; this transport never uses it, so a bad payload gets an `error`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
use tracing::Instrument;

use super::session::{self, Admitted, Receipts, Session};
use super::ws::WsQuery;
use crate::app::AppState;
use crate::commands::{AckReply, CommandError};
use crate::hub::{
    CloseReason, Closer, DirectSink, Event, Outbound, SessionMeta, SinkError, Transport,
};
use crate::protocol::ProtocolError;

/// Builds the Socket.IO layer and its handle, with limits from the configuration.
pub(crate) fn layer(app: &AppState) -> (SocketIoLayer, SocketIo) {
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
#[error(transparent)]
struct Refused(#[from] session::Refusal);

async fn authenticate(
    socket: SocketRef,
    TryData(auth): TryData<Value>,
    State(app): State<AppState>,
) -> Result<(), Refused> {
    let parts = socket.req_parts();
    let auth = auth.ok();
    let query = Query::<WsQuery>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let request = session::Request {
        headers: &parts.headers,
        auth_token: auth
            .as_ref()
            .and_then(|a| a.get("token"))
            .and_then(Value::as_str),
        query_token: query.token.as_deref(),
        auth_resume: auth.as_ref().and_then(|a| a.get("lastMessageId")),
        query_resume: query.last_message_id.as_deref(),
    };
    let admitted = session::admit(&app, &request)?;
    socket.extensions.insert(admitted);
    Ok(())
}

async fn on_connect(socket: SocketRef, State(app): State<AppState>) {
    let Some(admitted) = socket.extensions.get::<Admitted>() else {
        // The middleware always stores it; without it there is no one to serve.
        let _ = socket.disconnect();
        return;
    };
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
    let receipts = Arc::new(Receipts::new(
        app.hub.store().clone(),
        admitted.identity.user_id.clone(),
    ));
    let outbound = Outbound::direct(Arc::new(SocketSink {
        socket: socket.clone(),
        receipts: receipts.clone(),
    }));
    // Bounded so that a flood is cut by the rate limiter's verdicts, not by memory: a
    // client gets `burst` events admitted and `max_strikes` refused before it is closed.
    let limits = &app.settings.limits;
    let capacity =
        (limits.rate_limit_burst as usize + limits.rate_limit_max_strikes as usize).max(1);
    let (inbox, inbound) = mpsc::channel(capacity);
    socket.extensions.insert(outbound.closer().clone());
    socket.on_fallback(Inbox(inbox));
    socket.on_disconnect(on_disconnect);
    let session = Session::open(&app, admitted, meta, outbound);
    let span = session.span("socketio");
    app.connections
        .spawn(serve_session(socket, session, inbound, receipts).instrument(span));
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
    mut session: Session,
    inbound: mpsc::Receiver<Inbound>,
    receipts: Arc<Receipts>,
) {
    let closer = session.closer().clone();
    tokio::join!(
        async {
            session.catch_up().await;
            read_loop(&mut session, inbound).await;
            session.send_all_acks().await;
        },
        receipts.flush_when_noted(&closer),
        disconnect_when_closed(&socket, &closer),
    );
    session.close();
}

async fn read_loop(session: &mut Session, mut inbound: mpsc::Receiver<Inbound>) {
    let closer = session.closer().clone();
    loop {
        // A full pipeline takes nothing from the inbox until its oldest ack leaves.
        let message = tokio::select! {
            () = closer.closed() => return,
            () = session.send_next_ack() => continue,
            message = inbound.recv(), if session.has_room() => match message {
                Some(m) => m,
                None => return,
            },
        };
        let Inbound { event, data, ack } = message;
        let event = match &event {
            Ok(name) => Ok((name.as_str(), data.as_ref())),
            Err(e) => Err(CommandError::Protocol(ProtocolError::frame(e))),
        };
        let flow = session
            .handle(event, move |result| {
                // A client that asked for no ack makes this a no-op.
                let _ = ack.send(&AckReply::of(result));
            })
            .await;
        if flow.is_break() {
            return;
        }
    }
}

/// Hands events straight to socketioxide, which queues them per socket (bounded by
/// `OUTBOUND_QUEUE_CAPACITY`) for its own writer task.
struct SocketSink {
    socket: SocketRef,
    receipts: Arc<Receipts>,
}

impl DirectSink for SocketSink {
    fn try_send(&self, event: &Event) -> Result<(), SinkError> {
        match self.socket.emit(event.name(), event.data_raw()) {
            Ok(()) => {
                if let Some(id) = event.delivery() {
                    self.receipts.note_and_wake(id);
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
    // After a heartbeat timeout socketioxide has already dropped the transport.
    if session::client_is_gone(reason) || reason == CloseReason::IdleTimeout {
        return;
    }
    if reason != CloseReason::SlowConsumer {
        let _ = socket.emit(
            "error",
            &serde_json::json!({ "message": reason.describe(), "code": reason.as_str() }),
        );
    }
    let _ = socket.clone().disconnect();
}
