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
//!   [`detach_request`] copies their bytes first, so they do not pin hyper's read buffer.
//!
//! > **Warning:** socketioxide's `Data<T>` extractor silently skips a handler when the payload
//! > does not deserialize; this transport never uses it, so a bad payload gets an `error`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, OriginalUri, Query, Request};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::{Event as EventName, SocketRef, State, TryData};
use socketioxide::handler::message::FromMessageParts;
use socketioxide::handler::{ConnectHandler, MessageHandler, Value as PacketValue};
use socketioxide::layer::SocketIoLayer;
use socketioxide::socket::{DisconnectReason, Socket};
use socketioxide::{SendError, SocketError};
use tokio::sync::{Notify, mpsc};
use tracing::Span;

use super::handshake::Opened;
use super::session::{self, Admitted, Receipts, Session};
use super::socketio_replies::Replies;
use super::ws::WsQuery;
use crate::app::AppState;
use crate::commands::{self, AckReply, CommandError};
use crate::hub::{
    CloseReason, Closer, Event, Handoff, Outbound, OutboundQueue, PresenceCursor, SessionMeta,
    Transport,
};
use crate::protocol::ProtocolError;

/// socketioxide's own per-socket queue: a hand-off between our writer and its, not a buffer.
/// Our bounded queue (`OUTBOUND_QUEUE_CAPACITY`) is where a slow client's backlog waits and
/// the slow-consumer rule applies; what socketioxide already holds is first-in first-out,
/// so a small hand-off is what keeps a reply or a message from waiting behind thousands of
/// presence events handed over before it.
const HANDOFF_QUEUE: usize = 128;
/// Most queued events moved into socketioxide per writer wake-up, between receipts flushes.
const MAX_COALESCED_FRAMES: usize = 256;
/// How long presence that found socketioxide's queue full waits before it is offered again:
/// long enough for the queue to drain well below full.
const PRESENCE_RETRY: Duration = Duration::from_millis(20);
/// How long the writer waits before offering an event again to a full socketioxide queue.
const FULL_RETRY: Duration = Duration::from_millis(1);
/// How long a closing connection may take to hand over what is queued and say why.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(1);

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

/// The request with its URI (and axum's copy of it, `OriginalUri`) and header values copied
/// into allocations of their own. hyper parses them as slices of the connection's read buffer
/// (8 KiB at least), and engineioxide keeps the opening request's parts for the whole
/// connection: without the copy, every idle Socket.IO connection would hold on to that buffer.
pub(crate) fn detach_request(request: Request) -> Request {
    let (mut parts, body) = request.into_parts();
    let mut headers = HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        let copy = match HeaderValue::from_bytes(value.as_bytes()) {
            Ok(mut copy) => {
                copy.set_sensitive(value.is_sensitive());
                copy
            }
            // Cannot happen for a value hyper accepted; sharing it is still correct.
            Err(_) => value.clone(),
        };
        headers.append(name.clone(), copy);
    }
    parts.headers = headers;
    if let Ok(uri) = Uri::try_from(parts.uri.to_string()) {
        parts.uri = uri;
    }
    if let Some(OriginalUri(original)) = parts.extensions.get_mut::<OriginalUri>()
        && let Ok(uri) = Uri::try_from(original.to_string())
    {
        *original = uri;
    }
    Request::from_parts(parts, body)
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
        // The Engine.IO handshake (the first polling request or the upgrade), which the
        // guard in front of socketioxide stamped.
        started: parts
            .extensions
            .get::<Opened>()
            .map_or_else(Instant::now, |opened| opened.0),
    };
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
    let receipts = Receipts::new(app.hub.store().clone(), admitted.identity.user_id.clone());
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

/// What socketioxide's handlers need of a connection: its closer, whether its writer is
/// waiting on a full socketioxide queue, and its span (they run in socketioxide's tasks).
#[derive(Clone)]
struct Link {
    closer: Closer,
    stalled: Arc<AtomicBool>,
    span: Span,
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

/// One client event, as taken from socketioxide.
struct Inbound {
    event: Result<String, String>,
    data: Option<Value>,
    /// The socket it came from, for its replies ([`Replies`]).
    socket: Arc<Socket<LocalAdapter>>,
    /// The ack the client asked for, if any.
    ack_id: Option<i64>,
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
        let inbound = Inbound {
            event,
            data,
            socket: s.clone(),
            ack_id,
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = self.0.try_send(inbound)
            && let Some(link) = s.extensions.get::<Link>()
        {
            link.closer.close(CloseReason::RateLimited);
        }
    }
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

/// Moves the connection's queued events into socketioxide until the connection closes, then
/// tells the client why and disconnects it.
async fn write_loop(
    socket: &SocketRef,
    queue: OutboundQueue,
    handoff: &SocketHandoff,
    mut presence: Option<PresenceCursor>,
    receipts: &mut Receipts,
    stalled: &AtomicBool,
) {
    let OutboundQueue { mut rx, closer } = queue;
    // Registered with the closer once for the connection's life, not once per wake-up.
    let closed = closer.closed();
    tokio::pin!(closed);
    // Presence taken from the cursor that socketioxide had no room for yet, oldest first.
    let mut presence_events = VecDeque::new();
    loop {
        // Queued events first: a client's replies and messages never wait behind presence.
        let queued = tokio::select! {
            biased;
            () = &mut closed => break,
            () = handoff.queued.notified() => true,
            () = session::presence_changed(&mut presence), if presence_events.is_empty() => false,
            () = tokio::time::sleep(PRESENCE_RETRY), if !presence_events.is_empty() => false,
        };
        let mut handed = Handed::Taken;
        if queued {
            // While this batch is handed over, the hub queues behind it instead of handing
            // events over directly.
            let _handing = handoff.handing.lock().await;
            for taken in 0.. {
                if handed != Handed::Taken {
                    break;
                }
                if taken == MAX_COALESCED_FRAMES {
                    // The rest next time round, after presence had its turn.
                    handoff.queued.notify_one();
                    break;
                }
                match rx.try_recv() {
                    Ok(event) => {
                        handed = hand_over(socket, &event, receipts, stalled, Some(&closer)).await;
                    }
                    Err(_) => break,
                }
            }
        } else {
            if presence_events.is_empty()
                && let Some(cursor) = presence.as_mut()
            {
                cursor.take(&mut presence_events);
            }
            handed = offer_presence(socket, &mut presence_events);
        }
        // socketioxide took these frames: their messages count as delivered.
        receipts.flush();
        match handed {
            Handed::Taken => {}
            Handed::Closing => break,
            // socketioxide's disconnect handler closes with the reason; nothing to write.
            Handed::Gone => return closed.await,
        }
    }
    goodbye(socket, &mut rx, receipts, &closer, stalled).await;
}

/// Hands presence to socketioxide until its queue is full, never waiting: what does not fit
/// stays in `pending` for another try after [`PRESENCE_RETRY`]. engineioxide sends its
/// heartbeat ping through the same queue and disconnects the client when it finds it full,
/// so presence must leave room rather than keep it topped up (as a waiting message does).
fn offer_presence(socket: &SocketRef, pending: &mut VecDeque<Arc<Event>>) -> Handed {
    while let Some(event) = pending.front() {
        match emit(socket, event) {
            Emitted::Taken => {}
            Emitted::Full => break,
            Emitted::Gone => return Handed::Gone,
        }
        pending.pop_front();
    }
    Handed::Taken
}

/// What socketioxide did with one event offered to its queue.
pub(super) enum Emitted {
    /// Queued for the client (or dropped as unencodable, which is logged).
    Taken,
    /// Its queue is full.
    Full,
    /// The socket is disconnected.
    Gone,
}

pub(super) fn emit(socket: &Socket<LocalAdapter>, event: &Event) -> Emitted {
    match socket.emit(event.name(), event.data_raw()) {
        Ok(()) => Emitted::Taken,
        Err(SendError::Socket(SocketError::InternalChannelFull)) => Emitted::Full,
        Err(SendError::Socket(SocketError::Closed)) => Emitted::Gone,
        Err(e) => {
            // Our payloads are JSON already; nothing else can fail to encode.
            let span = socket.extensions.get::<Link>().map(|link| link.span);
            let _entered = span.as_ref().map(Span::enter);
            tracing::error!(error = %e, event = event.name(), "could not encode an event");
            Emitted::Taken
        }
    }
}

/// The direct path into socketioxide ([`Handoff`]): an event with nothing queued before it
/// goes from the hub straight into socketioxide's queue, as the writer would have put it
/// there one task hop later. Order holds because events are handed to socketioxide only
/// under `handing`, by the writer for a batch or by the hub for one event, and the hub hands
/// over only while our queue is empty.
struct SocketHandoff {
    socket: SocketRef,
    /// Async: the writer holds it while it waits for room in socketioxide's queue.
    handing: tokio::sync::Mutex<()>,
    /// Something was queued for the writer.
    queued: Notify,
}

impl Handoff for SocketHandoff {
    fn try_direct(&self, event: &Arc<Event>, queue: &mpsc::Sender<Arc<Event>>) -> bool {
        // A stored message for one user is recorded as delivered by the writer's receipts.
        if event.delivery().is_some() {
            return false;
        }
        let Ok(_handing) = self.handing.try_lock() else {
            return false;
        };
        if queue.capacity() != queue.max_capacity() {
            return false;
        }
        // Full or closed: queued instead, for the writer to wait on or to find gone.
        matches!(emit(&self.socket, event), Emitted::Taken)
    }

    fn queued(&self) {
        self.queued.notify_one();
    }
}

/// What became of an event offered to socketioxide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handed {
    /// socketioxide queued it for the client.
    Taken,
    /// The connection was asked to close while socketioxide's queue was full.
    Closing,
    /// The socket is disconnected.
    Gone,
}

/// Offers `event` to socketioxide's queue, waiting while it is full (until `closer`, if
/// given, closes), and notes the delivery it completes.
async fn hand_over(
    socket: &SocketRef,
    event: &Event,
    receipts: &mut Receipts,
    stalled: &AtomicBool,
    closer: Option<&Closer>,
) -> Handed {
    loop {
        match emit(socket, event) {
            Emitted::Taken => {
                if let Some(id) = event.delivery() {
                    receipts.note(id);
                }
                return Handed::Taken;
            }
            Emitted::Full => {}
            Emitted::Gone => return Handed::Gone,
        }
        // socketioxide has no signal for room in its queue: look again shortly. Meanwhile
        // our queue takes what arrives, and closes the connection when it overflows.
        stalled.store(true, Ordering::Relaxed);
        let closing = match closer {
            Some(closer) => tokio::select! {
                () = closer.closed() => true,
                () = tokio::time::sleep(FULL_RETRY) => false,
            },
            None => {
                tokio::time::sleep(FULL_RETRY).await;
                false
            }
        };
        stalled.store(false, Ordering::Relaxed);
        if closing {
            return Handed::Closing;
        }
    }
}

/// After the hub (slow consumer, shutdown, kick), the token clock or the reader (rate limit)
/// closed the session: what was queued before the close goes out (an error explaining it, a
/// last message; except for a slow consumer, whose queue is the problem), then the `error`
/// event naming the reason (Socket.IO has no close reason), then the disconnect (but on a
/// server stop, see below). Bounded by `CLOSE_GRACE`: a client that stopped reading must not
/// hold the connection open.
async fn goodbye(
    socket: &SocketRef,
    rx: &mut mpsc::Receiver<Arc<Event>>,
    receipts: &mut Receipts,
    closer: &Closer,
    stalled: &AtomicBool,
) {
    let reason = closer.reason().unwrap_or(CloseReason::ClientClosed);
    // After a heartbeat timeout socketioxide has already dropped the transport.
    if session::client_is_gone(reason) || reason == CloseReason::IdleTimeout {
        return;
    }
    if reason != CloseReason::SlowConsumer {
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            for _ in 0..MAX_COALESCED_FRAMES {
                let Ok(event) = rx.try_recv() else { break };
                if hand_over(socket, &event, receipts, stalled, None).await != Handed::Taken {
                    break;
                }
            }
        })
        .await;
        receipts.flush();
        // Waiting for room like any event: dropped on a full queue, the client would see its
        // connection end without knowing why.
        let notice = Event::new(
            "error",
            &serde_json::json!({ "message": reason.describe(), "code": reason.as_str() }),
        );
        let _ = tokio::time::timeout(
            CLOSE_GRACE,
            hand_over(socket, &notice, receipts, stalled, None),
        )
        .await;
    }
    // A client told to come back must not get a Socket.IO DISCONNECT: socket.io-client
    // reports it as `io server disconnect` and, by design, never reconnects after that. The
    // server's stop closes the Engine.IO transport instead (`SocketIo::close`, once every
    // session said goodbye: see `EmbeddedGateway::begin_shutdown`), which the client
    // reports as `transport close` and recovers from by itself.
    if reason == CloseReason::ServerShutdown {
        return;
    }
    // socketioxide's disconnect needs room in its queue for the disconnect packet; when a
    // client that reads nothing keeps it full, engine.io's heartbeat (whose ping cannot be
    // queued either) ends the transport within a ping interval.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Err(SocketError::InternalChannelFull) = socket.clone().disconnect() {
            tokio::time::sleep(FULL_RETRY).await;
        }
    })
    .await;
}
