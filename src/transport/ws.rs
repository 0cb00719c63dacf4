//! The plain WebSocket transport at `/ws`.
//!
//! What is the same for every transport (admission, opening, one event, closing) is the
//! [`session`](super::session) core; this module keeps the `/ws` framing. Before the upgrade,
//! a refusal is an HTTP status with `{"error": ...}` (an admission refusal adds its `code`:
//! 403 origin, 401 token, 400 bad `lastMessageId`, 503 stopping, 503 `busy` with
//! `Retry-After` and `retryAfterMs`; 400 bad `Sec-WebSocket-Key`, 426 other version than 13:
//! [`handshake`](super::handshake)), and tungstenite's buffers and limits are set from the
//! configuration (its defaults: 128 KiB buffers, an unbounded write buffer, 64 MiB messages).
//! After it, one reader and one writer per connection:
//!
//! - the reader decodes the JSON envelope, hands each event to the session, and answers the
//!   frame's `ack` id with an `ack` event as the session's pipeline yields it (it reads on
//!   while earlier messages wait for their commit); it closes on idle timeout or an
//!   oversized frame;
//! - the writer drains the outbound queue, coalescing whatever is queued into one socket
//!   write, encodes each event's frame once for all `/ws` recipients, pings on an interval,
//!   and sends a close frame with the reason's code when told to stop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;

use super::RemoteAddr;
use super::session::{self, Admitted, ConnectQuery, Receipts, Refusal, Session};
use crate::app::AppState;
use crate::commands::{AckReply, CommandError, Outcome};
use crate::hub::{
    CloseReason, Event, Outbound, OutboundQueue, PresenceCursor, SessionMeta, Transport,
};
use crate::protocol::ClientFrame;
use crate::protocol::envelope::encode_server_frame;

/// Most queued frames coalesced into one socket write.
const MAX_COALESCED_FRAMES: usize = 256;
/// How long a closing connection may take to flush what is queued and send its close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A refusal before the upgrade: a status and `{"error": message}`.
fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// An admission refusal: its status and `{"error": text, "code": code}`; `busy` adds when to
/// come back, as `Retry-After` (whole seconds, rounded up) and `retryAfterMs` (exact).
fn refuse_admission(refusal: &Refusal) -> Response {
    let mut body = json!({ "error": refusal.to_string(), "code": refusal.code() });
    let Some(after) = refusal.retry_after() else {
        return (refusal.status(), Json(body)).into_response();
    };
    let millis = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
    body["retryAfterMs"] = json!(millis);
    let seconds = millis.div_ceil(1000).to_string();
    (
        refusal.status(),
        [(header::RETRY_AFTER, seconds)],
        Json(body),
    )
        .into_response()
}

/// `GET /ws`: admits, then upgrades.
pub(crate) async fn upgrade(
    State(app): State<AppState>,
    RemoteAddr(remote_addr): RemoteAddr,
    headers: HeaderMap,
    query: Result<Query<ConnectQuery>, axum::extract::rejection::QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let started = Instant::now();
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let request = session::Request {
        headers: &headers,
        auth_token: None,
        query_token: query.token.as_deref(),
        auth_resume: None,
        query_resume: query.last_message_id.as_deref(),
        started,
    };
    let admitted = match session::admit(&app, &request).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refuse_admission(&refusal),
    };
    if let Err(refusal) = super::handshake::check_upgrade(&headers) {
        return refusal;
    }
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(e) => return refuse(e.status(), e.body_text()),
    };
    let meta = SessionMeta {
        transport: Transport::WebSocket,
        remote_addr,
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(String::from),
    };
    let limits = &app.settings.limits;
    let tracker = app.connections.clone();
    upgrade
        .read_buffer_size(limits.ws_read_buffer_bytes)
        .write_buffer_size(limits.ws_write_buffer_bytes)
        .max_write_buffer_size(limits.ws_max_write_buffer_bytes)
        .max_message_size(limits.max_frame_bytes)
        .max_frame_size(limits.max_frame_bytes)
        .on_upgrade(move |socket| {
            tracker.track_future(serve_connection(socket, app, admitted, meta))
        })
}

/// Runs one connection from registration to the recorded end.
async fn serve_connection(socket: WebSocket, app: AppState, admitted: Admitted, meta: SessionMeta) {
    // `admitted` holds the handshake turn: the session takes it, and its catch-up gives it
    // back (an upgrade that never completes drops it with this closure).
    let (outbound, queue) = Outbound::channel(app.settings.limits.outbound_queue_capacity);
    let mut receipts = Receipts::new(app.store.clone(), admitted.identity.user_id.clone());
    let span = session::connection_span(&admitted.identity, &meta);
    let mut session = Session::open(&app, admitted, meta, outbound.clone(), span);
    let presence = session.take_presence();
    let (sink, stream) = socket.split();
    let ping_interval = app.settings.limits.ping_interval;
    let idle_timeout = app.settings.limits.idle_timeout;
    // Not instrumented as a whole (see `Session::in_span`): the session enters its span
    // where it may log. The catch-up and the last acks are boxed, as `read_loop` boxes each
    // event's handling: a future is as large as its largest state, and these are short-lived
    // states of a connection that spends its life waiting; inline, they made every idle
    // connection's task 1.6 KB larger (4,520 bytes against 2,920).
    tokio::join!(
        async {
            Box::pin(session.catch_up()).await;
            read_loop(stream, &mut session, &outbound, idle_timeout).await;
            Box::pin(session.send_all_acks()).await;
        },
        write_loop(sink, queue, presence, ping_interval, &mut receipts),
    );
    session.close();
}

async fn read_loop(
    mut stream: SplitStream<WebSocket>,
    session: &mut Session,
    outbound: &Outbound,
    idle_timeout: Duration,
) {
    let closer = outbound.closer().clone();
    loop {
        // A full pipeline reads nothing until its oldest ack leaves.
        let next = tokio::select! {
            () = closer.closed() => return await_close_reply(&mut stream).await,
            () = session.send_next_ack() => continue,
            next = tokio::time::timeout(idle_timeout, stream.next()), if session.has_room() => next,
        };
        let message = match next {
            Err(_) => return outbound.close(CloseReason::IdleTimeout),
            Ok(None) => return outbound.close(CloseReason::ClientClosed),
            Ok(Some(Err(e))) => return outbound.close(session.in_span(|| classify_read_error(e))),
            Ok(Some(Ok(message))) => message,
        };
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                let flow = Box::pin(session.handle(Err(CommandError::BinaryFrame), |_| {})).await;
                if flow.is_break() {
                    return;
                }
                continue;
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Close(_) => return outbound.close(CloseReason::ClientClosed),
        };
        let frame = ClientFrame::parse(&text);
        let (event, ack) = match &frame {
            Ok(frame) => (Ok((frame.event.as_str(), frame.data.as_ref())), frame.ack),
            Err(e) => (Err(e.clone().into()), ClientFrame::ack_of_invalid(&text)),
        };
        let to = outbound.clone();
        // Boxed: see `serve_connection` (one allocation per event, against every idle
        // connection carrying the largest command's state).
        let flow = Box::pin(session.handle(event, move |result| send_ack(&to, ack, result))).await;
        if flow.is_break() {
            return;
        }
    }
}

/// Queues `{"event": "ack", "data": {"ack": n, "ok": ..., ...}}` if the frame asked for one.
fn send_ack(outbound: &Outbound, ack: Option<u64>, outcome: &Outcome) {
    if let Some(id) = ack {
        outbound.send(Event::new("ack", &AckReply::of(outcome).with_id(id)));
    }
}

/// After the server decided to close: keep reading (and discarding) briefly so the client's
/// close reply completes the handshake, instead of resetting a socket it may still read.
async fn await_close_reply(stream: &mut SplitStream<WebSocket>) {
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
}

fn classify_read_error(e: axum::Error) -> CloseReason {
    match e.into_inner().downcast::<tungstenite::Error>() {
        Ok(e) if matches!(*e, tungstenite::Error::Capacity(_)) => CloseReason::FrameTooLarge,
        Ok(e)
            if matches!(
                *e,
                tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed
            ) =>
        {
            CloseReason::ClientClosed
        }
        Ok(e) => {
            tracing::debug!(error = %e, "websocket read failed");
            CloseReason::TransportError
        }
        Err(e) => {
            tracing::debug!(error = %e, "websocket read failed");
            CloseReason::TransportError
        }
    }
}

/// What woke the writer.
enum Wake {
    Event(Arc<Event>),
    Presence,
    Ping,
}

async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    queue: OutboundQueue,
    mut presence: Option<PresenceCursor>,
    ping_interval: Duration,
    receipts: &mut Receipts,
) {
    let OutboundQueue { mut rx, closer } = queue;
    let start = tokio::time::Instant::now() + ping_interval;
    let mut ping = tokio::time::interval_at(start, ping_interval);
    let mut presence_events = Vec::new();
    // Registered with the closer once for the connection's life, not once per wake-up.
    let closed = closer.closed();
    tokio::pin!(closed);
    loop {
        // Queued events first: a client's replies and messages never wait behind presence.
        let wake = tokio::select! {
            biased;
            () = &mut closed => break,
            event = rx.recv() => match event {
                Some(event) => Wake::Event(event),
                None => break,
            },
            () = session::presence_changed(&mut presence) => Wake::Presence,
            _ = ping.tick() => Wake::Ping,
        };
        let write = async {
            match wake {
                Wake::Event(event) => {
                    feed(&mut sink, &event, receipts).await?;
                    feed_queued(&mut sink, &mut rx, receipts).await?;
                }
                Wake::Presence => {
                    if let Some(cursor) = presence.as_mut() {
                        cursor.take(&mut presence_events);
                    }
                    for event in presence_events.drain(..) {
                        feed(&mut sink, &event, receipts).await?;
                    }
                }
                Wake::Ping => sink.feed(Message::Ping(Default::default())).await?,
            }
            sink.flush().await
        };
        // A client that stopped reading can block a flush forever; closing must not wait.
        let written = tokio::select! {
            () = &mut closed => break,
            written = write => written,
        };
        if written.is_err() {
            closer.close(CloseReason::TransportError);
            return;
        }
        // The socket took these frames: their messages count as delivered.
        receipts.flush();
    }
    let reason = closer.reason().unwrap_or(CloseReason::ClientClosed);
    if session::client_is_gone(reason) {
        return;
    }
    let goodbye = async {
        // What was queued before the close (an error explaining it, a last message) goes
        // out first, except for a slow consumer, whose queue is the problem.
        if reason != CloseReason::SlowConsumer {
            feed_queued(&mut sink, &mut rx, receipts).await?;
            sink.flush().await?;
            receipts.flush();
        }
        let sentence = match closer.retry_after() {
            Some(after) => format!(
                "{}; retry after {} ms",
                reason.describe(),
                after.as_millis()
            ),
            None => reason.describe().to_owned(),
        };
        let frame = CloseFrame {
            code: close_code(reason),
            reason: sentence.into(),
        };
        sink.send(Message::Close(Some(frame))).await
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, goodbye).await;
}

/// Feeds whatever is already queued (up to a bound) without flushing.
async fn feed_queued(
    sink: &mut SplitSink<WebSocket, Message>,
    rx: &mut tokio::sync::mpsc::Receiver<Arc<Event>>,
    receipts: &mut Receipts,
) -> Result<(), axum::Error> {
    for _ in 0..MAX_COALESCED_FRAMES {
        match rx.try_recv() {
            Ok(event) => feed(sink, &event, receipts).await?,
            Err(_) => break,
        }
    }
    Ok(())
}

/// Feeds one event's frame without flushing, noting a stored message whose delivery the
/// flush will complete.
async fn feed(
    sink: &mut SplitSink<WebSocket, Message>,
    event: &Event,
    receipts: &mut Receipts,
) -> Result<(), axum::Error> {
    if let Some(id) = event.delivery() {
        receipts.note(id);
    }
    sink.feed(Message::Text(frame_of(event))).await
}

/// The `/ws` text frame `{"event": ..., "data": ...}`, encoded once per event and shared
/// by every `/ws` recipient.
fn frame_of(event: &Event) -> Utf8Bytes {
    event.encoded_once(|name, data| Utf8Bytes::from(encode_server_frame(name, data)))
}

/// The WebSocket close code for why the server closes.
fn close_code(reason: CloseReason) -> u16 {
    match reason {
        CloseReason::ClientClosed | CloseReason::IdleTimeout => 1000,
        CloseReason::ServerShutdown => 1001,
        CloseReason::TransportError => 1002,
        CloseReason::SlowConsumer | CloseReason::RateLimited | CloseReason::Kicked => 1008,
        CloseReason::FrameTooLarge => 1009,
        CloseReason::TokenExpired => 4001,
        CloseReason::Revoked => 4003,
        // Try Again Later: through the load balancer, a reconnect reaches a healthy node.
        CloseReason::NodeLost => 1013,
    }
}
