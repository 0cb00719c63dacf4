//! The plain WebSocket transport at `/ws`.
//!
//! Before the upgrade: the `Origin` is checked against `CORS_ORIGINS` (403), the token is
//! verified (401 with `{"error": ...}`), and tungstenite's buffers and limits are set from
//! the configuration (its defaults: 128 KiB buffers, an unbounded write buffer, 64 MiB
//! messages). After it, one reader and one writer per connection:
//!
//! - the reader applies the rate limit, decodes the envelope, runs the command and queues the
//!   error and ack replies; it closes the connection on idle timeout or an oversized frame;
//! - the writer drains the outbound queue, coalescing whatever is queued into one socket
//!   write, pings on an interval, and sends a close frame with the reason when told to stop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};

use super::rate_limit::{RateLimiter, Verdict};
use super::{Receipts, RemoteAddr};
use crate::auth::Identity;
use crate::commands::{self, Caller, CommandError};
use crate::hub::{CloseReason, Event, Outbound, OutboundQueue, SessionMeta, Transport};
use crate::protocol::ClientFrame;
use crate::startup::AppState;

/// Most queued frames coalesced into one socket write.
const MAX_COALESCED_FRAMES: usize = 256;
/// How long a closing connection may take to flush what is queued and send its close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The query parameters `/ws` understands.
#[derive(Debug, Default, Deserialize)]
pub struct WsQuery {
    /// The token, when not sent in the `Authorization` header.
    pub token: Option<String>,
    /// The last message id the client saw: everything it may see after it is replayed.
    #[serde(rename = "lastMessageId")]
    pub last_message_id: Option<String>,
}

/// A refusal before the upgrade: a status and `{"error": message}`.
fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// `GET /ws`: authenticates, then upgrades.
pub async fn upgrade(
    State(app): State<AppState>,
    RemoteAddr(remote_addr): RemoteAddr,
    headers: HeaderMap,
    query: Result<Query<WsQuery>, axum::extract::rejection::QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if app.stopping.is_cancelled() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down");
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !app.settings.cors_origins.allows(origin) {
        return refuse(StatusCode::FORBIDDEN, "origin not allowed");
    }
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let last_message_id = match query.last_message_id.as_deref().map(str::parse::<u64>) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "lastMessageId must be a non-negative integer (a message id)",
            );
        }
    };
    let identity = match app
        .verifier
        .authenticate(None, &headers, query.token.as_deref())
    {
        Ok(identity) => identity,
        Err(e) => return refuse(StatusCode::UNAUTHORIZED, e.to_string()),
    };
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
            tracker.track_future(serve_connection(
                socket,
                app,
                identity,
                meta,
                last_message_id,
            ))
        })
}

/// Runs one connection from registration to the recorded end.
async fn serve_connection(
    socket: WebSocket,
    app: AppState,
    identity: Identity,
    meta: SessionMeta,
    last_message_id: Option<u64>,
) {
    let limits = &app.settings.limits;
    let capacity = limits.outbound_queue_capacity;
    let (outbound, queue) = Outbound::channel(capacity);
    let registered = app
        .hub
        .connect(identity.clone(), meta, outbound.clone(), capacity);
    let session = registered.session;
    let caller = Caller {
        hub: app.hub.clone(),
        session,
        identity,
        outbound: outbound.clone(),
        limits: app.command_limits(),
    };
    let receipts = Receipts::new(app.hub.store().clone(), &caller.identity.user_id);
    let (sink, stream) = socket.split();
    let catch_up = async {
        tokio::select! {
            () = outbound.closer().closed() => {}
            () = commands::replay_on_connect(&caller, last_message_id, registered.replay_until) => {}
        }
    };
    tokio::join!(
        async {
            catch_up.await;
            read_loop(stream, &caller, &outbound, &app).await;
        },
        write_loop(sink, queue, limits.ping_interval, &receipts),
    );
    let reason = outbound
        .closer()
        .reason()
        .unwrap_or(CloseReason::ClientClosed);
    tracing::debug!(
        session = session.0,
        user_id = %caller.identity.user_id,
        reason = reason.as_str(),
        "connection closed"
    );
    app.hub.disconnect(session, reason);
}

async fn read_loop(
    mut stream: SplitStream<WebSocket>,
    caller: &Caller,
    outbound: &Outbound,
    app: &AppState,
) {
    let limits = &app.settings.limits;
    let closer = outbound.closer();
    let mut limiter = RateLimiter::new(
        limits.rate_limit_per_sec,
        limits.rate_limit_burst,
        limits.rate_limit_max_strikes,
    );
    loop {
        let next = tokio::select! {
            () = closer.closed() => return await_close_reply(&mut stream).await,
            next = tokio::time::timeout(limits.idle_timeout, stream.next()) => next,
        };
        let message = match next {
            Err(_) => return outbound.close(CloseReason::IdleTimeout),
            Ok(None) => return outbound.close(CloseReason::ClientClosed),
            Ok(Some(Err(e))) => return outbound.close(classify_read_error(e)),
            Ok(Some(Ok(message))) => message,
        };
        let text = match message {
            Message::Text(text) => Some(text),
            Message::Binary(_) => None,
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Close(_) => return outbound.close(CloseReason::ClientClosed),
        };
        // The ack id of a refused frame is dug out only when it is refused: an admitted frame
        // is parsed once, below.
        let ack_of_refused = || text.as_deref().and_then(ClientFrame::ack_of_invalid);
        let verdict = limiter.check(Instant::now());
        if verdict != Verdict::Admit {
            let refused = Err(CommandError::RateLimited(limits.rate_limit_per_sec));
            reply(outbound, ack_of_refused(), &refused);
            if verdict == Verdict::Disconnect {
                return outbound.close(CloseReason::RateLimited);
            }
            continue;
        }
        let Some(text) = text else {
            reply(outbound, None, &Err(CommandError::BinaryFrame));
            continue;
        };
        match ClientFrame::parse(&text) {
            Ok(frame) => {
                let result = commands::execute(caller, &frame.event, frame.data.as_ref()).await;
                reply(outbound, frame.ack, &result);
            }
            Err(e) => reply(outbound, ClientFrame::ack_of_invalid(&text), &Err(e.into())),
        }
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

/// Queues the `error` event for a refusal and the ack if one was asked for.
fn reply(
    outbound: &Outbound,
    ack: Option<u64>,
    result: &Result<commands::AckFields, CommandError>,
) {
    if let Err(e) = result {
        outbound.send(commands::error_event(&e.to_string()));
    }
    if let Some(ack) = ack {
        let mut body = commands::ack_body(result);
        body.insert("ack".into(), Value::from(ack));
        outbound.send(Event::new("ack", &body));
    }
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

async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    queue: OutboundQueue,
    ping_interval: Duration,
    receipts: &Receipts,
) {
    let OutboundQueue { mut rx, closer } = queue;
    let mut delivered = Vec::new();
    let start = tokio::time::Instant::now() + ping_interval;
    let mut ping = tokio::time::interval_at(start, ping_interval);
    loop {
        let first = tokio::select! {
            biased;
            () = closer.closed() => break,
            event = rx.recv() => match event {
                Some(event) => Some(event),
                None => break,
            },
            _ = ping.tick() => None,
        };
        let write = async {
            match first {
                Some(event) => {
                    delivered.extend(event.delivery());
                    sink.feed(Message::Text(event.ws_frame())).await?;
                    feed_queued(&mut sink, &mut rx, &mut delivered).await?;
                }
                None => sink.feed(Message::Ping(Default::default())).await?,
            }
            sink.flush().await
        };
        // A client that stopped reading can block a flush forever; closing must not wait.
        let written = tokio::select! {
            () = closer.closed() => break,
            written = write => written,
        };
        if written.is_err() {
            closer.close(CloseReason::TransportError);
            return;
        }
        // The socket took these frames: their messages count as delivered.
        receipts.record(&mut delivered);
    }
    let reason = closer.reason().unwrap_or(CloseReason::ClientClosed);
    // The client already closed, or the socket is broken: there is no one to tell.
    if matches!(
        reason,
        CloseReason::ClientClosed | CloseReason::TransportError
    ) {
        return;
    }
    let goodbye = async {
        // What was queued before the close (an error explaining it, a last message) goes
        // out first, except for a slow consumer, whose queue is the problem.
        if reason != CloseReason::SlowConsumer {
            feed_queued(&mut sink, &mut rx, &mut delivered).await?;
            sink.flush().await?;
            receipts.record(&mut delivered);
        }
        let frame = CloseFrame {
            code: reason.ws_close_code(),
            reason: reason.describe().into(),
        };
        sink.send(Message::Close(Some(frame))).await
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, goodbye).await;
}

/// Feeds whatever is already queued (up to a bound) without flushing, noting the stored
/// messages whose delivery the flush will complete.
async fn feed_queued(
    sink: &mut SplitSink<WebSocket, Message>,
    rx: &mut tokio::sync::mpsc::Receiver<Arc<Event>>,
    delivered: &mut Vec<u64>,
) -> Result<(), axum::Error> {
    for _ in 0..MAX_COALESCED_FRAMES {
        match rx.try_recv() {
            Ok(event) => {
                delivered.extend(event.delivery());
                sink.feed(Message::Text(event.ws_frame())).await?;
            }
            Err(_) => break,
        }
    }
    Ok(())
}
