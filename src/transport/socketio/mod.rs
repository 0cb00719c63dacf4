//! The Socket.IO v4 transport at `/socket.io/`, through socketioxide (Engine.IO 4: polling and
//! websocket, with the upgrade between them). Like `/ws`, it keeps only its framing: admission,
//! opening, each client event and the close go through the [`session`](super::session) core
//! shared with `/ws`; hub events go out through the connection's [`Outbound`] queue, which
//! this transport's writer drains, as `/ws` does.
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
//! - **The writer** moves what is queued into socketioxide's own per-socket queue (which its
//!   engine.io task writes to the client), a batch per wake-up, recording delivery receipts
//!   once per batch. When that queue is full it waits: only our queue overflowing makes a
//!   slow consumer. On close it tells the client why (an `error` event) and disconnects it.
//!   socketioxide offers no way to hand a socket a pre-encoded packet (its engine.io socket is
//!   private; only its broadcast operators encode once, for sockets its adapter picks), so
//!   each socket's `emit` encodes the packet from the event's shared raw JSON.
//! - **Memory.** engineioxide keeps the opening request's parts for the connection's life;
//!   the handshake guard (`transport/handshake.rs`) copies their bytes first, so they do not
//!   pin hyper's read buffer.
//!
//! > **Warning:** socketioxide's `Data<T>` extractor silently skips a handler when the payload
//! > does not deserialize; this transport never uses it, so a bad payload gets an `error`.

mod emit;
mod handoff;
mod inbox;
mod link;
mod replies;
mod writer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Query};
use axum::http::header;
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::extract::{SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use socketioxide::socket::DisconnectReason;
use tokio::sync::{Notify, mpsc};

use super::handshake::Opened;
use super::session::{self, Admitted, ConnectQuery, Receipts, Session};
use crate::app::AppState;
use crate::commands::{self, AckReply, CommandError};
use crate::hub::{CloseReason, Closer, Outbound, OutboundQueue, SessionMeta, Transport};
use crate::protocol::ProtocolError;
use handoff::SocketHandoff;
use inbox::{Inbound, Inbox};
use link::Link;
use replies::Replies;
pub(crate) use writer::CLOSE_GRACE;
use writer::write_loop;

/// socketioxide's own per-socket queue: a hand-off between our writer and its, not a buffer.
/// Our bounded queue (`OUTBOUND_QUEUE_CAPACITY`) is where a slow client's backlog waits and
/// the slow-consumer rule applies; what socketioxide already holds is first-in first-out,
/// so a small hand-off is what keeps a reply or a message from waiting behind thousands of
/// presence events handed over before it.
const HANDOFF_QUEUE: usize = 128;

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
        .max_buffer_size(HANDOFF_QUEUE.min(limits.outbound_queue_capacity))
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
    let query = Query::<ConnectQuery>::try_from_uri(&parts.uri)
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
        // The Engine.IO handshake (the first polling request or the upgrade), which the
        // guard in front of socketioxide stamped.
        started: parts
            .extensions
            .get::<Opened>()
            .map_or_else(Instant::now, |opened| opened.0),
    };
    // May wait for a handshake turn; `busy` becomes the `connect_error` "server busy; retry
    // after N ms". The turn travels in `Accepted` to the session, whose catch-up gives it back.
    let admitted = session::admit(&app, &request).await?;
    let connecting = listen(&socket, &app, admitted);
    socket
        .extensions
        .insert(Connecting(Arc::new(std::sync::Mutex::new(Some(
            connecting,
        )))));
    Ok(())
}

/// An admitted connection between the connect middleware and the connect handler.
struct Accepted {
    admitted: Admitted,
    meta: SessionMeta,
    link: Link,
    inbound: mpsc::Receiver<Inbound>,
}

/// Where the middleware leaves [`Accepted`] for the connect handler (socketioxide's
/// extensions hold only `Clone` values; the handler takes it out once).
#[derive(Clone)]
struct Connecting(Arc<std::sync::Mutex<Option<Accepted>>>);

/// Starts taking the client's events. Runs in the connect middleware, before socketioxide
/// tells the client it is connected: socketioxide sends the namespace's CONNECT packet and
/// only then spawns the connect handler, and an event read in between, with no handler in
/// place, would be dropped without a word (a client emits as soon as it reads CONNECT).
fn listen(socket: &SocketRef, app: &AppState, admitted: Admitted) -> Accepted {
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
    // Bounded so that a flood is cut by the rate limiter's verdicts, not by memory: a
    // client gets `burst` events admitted and `max_strikes` refused before it is closed.
    let limits = &app.settings.limits;
    let capacity =
        (limits.rate_limit_burst as usize + limits.rate_limit_max_strikes as usize).max(1);
    let (inbox, inbound) = mpsc::channel(capacity);
    let link = Link {
        closer: Closer::default(),
        stalled: Arc::default(),
        span: session::connection_span(&admitted.identity, &meta),
    };
    socket.extensions.insert(link.clone());
    socket.on_fallback(Inbox(inbox));
    Accepted {
        admitted,
        meta,
        link,
        inbound,
    }
}

async fn on_connect(socket: SocketRef, State(app): State<AppState>) {
    // Taken out: the socket's extensions live as long as the connection.
    let accepted = socket
        .extensions
        .remove::<Connecting>()
        .and_then(|c| c.0.lock().ok()?.take());
    let Some(Accepted {
        admitted,
        meta,
        link,
        inbound,
    }) = accepted
    else {
        // The middleware always leaves it; without it there is no one to serve.
        let _ = socket.disconnect();
        return;
    };
    let receipts = Receipts::new(app.store.clone(), admitted.identity.user_id.clone());
    let handoff = Arc::new(SocketHandoff {
        socket: socket.clone(),
        handing: tokio::sync::Mutex::new(()),
        queued: Notify::new(),
    });
    let (outbound, queue) = Outbound::with_handoff(
        app.settings.limits.outbound_queue_capacity,
        link.closer.clone(),
        handoff.clone(),
    );
    socket.on_disconnect(on_disconnect);
    // A socket that went away before the handler above was in place will never call it.
    if !socket.connected() {
        link.closer.close(CloseReason::ClientClosed);
    }
    let mut session = Session::open(&app, admitted, meta, outbound, link.span.clone());
    session.acks_send_errors();
    // Not instrumented as a whole (see `Session::in_span`): the session enters its span
    // where it may log.
    app.connections.spawn(serve_session(
        socket,
        session,
        inbound,
        queue,
        handoff,
        receipts,
        link.stalled,
    ));
}

async fn on_disconnect(socket: SocketRef, reason: DisconnectReason) {
    let Some(Link {
        closer,
        stalled,
        span,
    }) = socket.extensions.get::<Link>()
    else {
        return;
    };
    span.in_scope(|| tracing::debug!(?reason, "socket.io disconnected"));
    closer.close(match reason {
        DisconnectReason::TransportClose | DisconnectReason::ClientNSDisconnect => {
            CloseReason::ClientClosed
        }
        // engine.io queues its pings behind our events; when that queue stays full, the ping
        // cannot go out and engineioxide reports a heartbeat timeout for what is a client
        // that does not read.
        DisconnectReason::HeartbeatTimeout if stalled.load(Ordering::Relaxed) => {
            CloseReason::SlowConsumer
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

async fn serve_session(
    socket: SocketRef,
    mut session: Session,
    inbound: mpsc::Receiver<Inbound>,
    queue: OutboundQueue,
    handoff: Arc<SocketHandoff>,
    mut receipts: Receipts,
    stalled: Arc<AtomicBool>,
) {
    let presence = session.take_presence();
    tokio::join!(
        async {
            session.catch_up().await;
            read_loop(&mut session, inbound).await;
            session.send_all_acks().await;
        },
        write_loop(&socket, queue, &handoff, presence, &mut receipts, &stalled),
    );
    session.close();
}

async fn read_loop(session: &mut Session, mut inbound: mpsc::Receiver<Inbound>) {
    let closer = session.closer().clone();
    // Made from the first event's socket (socketioxide hands its `Arc` only to handlers).
    let mut replies: Option<Arc<Replies>> = None;
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
        let Inbound {
            event,
            data,
            socket: from,
            ack_id,
        } = message;
        let replies = replies.get_or_insert_with(|| Replies::new(from)).clone();
        let event = match &event {
            Ok(name) => Ok((name.as_str(), data.as_ref())),
            Err(e) => Err(CommandError::Protocol(ProtocolError::frame(e))),
        };
        let flow = session
            .handle(event, move |result| {
                // Straight to socketioxide like the ack itself (not through our writer), so
                // that the refusal's `error` stays just ahead of its ack.
                if let Err(e) = result {
                    replies.event(commands::error_event(e));
                }
                if ack_id.is_some() {
                    let reply = serde_json::to_value(AckReply::of(result)).unwrap_or_default();
                    replies.ack(ack_id, reply);
                }
            })
            .await;
        if flow.is_break() {
            return;
        }
    }
}
