//! The connection's writer: moves what the hub queued into socketioxide's own per-socket
//! queue (which its engine.io task writes to the client), a batch per wake-up, recording
//! delivery receipts once per batch, and presence from the connection's cursor. When that
//! queue is full it waits: only our queue overflowing makes a slow consumer. On close it tells
//! the client why.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use socketioxide::extract::SocketRef;
use socketioxide::{SocketError, TransportType};
use tokio::sync::mpsc;

use super::emit::{Emitted, emit};
use super::handoff::SocketHandoff;
use crate::hub::{CloseReason, Closer, Event, OutboundQueue, PresenceCursor};
use crate::transport::session::{self, Receipts};

/// Most queued events moved into socketioxide per writer wake-up, between receipts flushes.
const MAX_COALESCED_FRAMES: usize = 256;
/// How long presence that found socketioxide's queue full waits before it is offered again:
/// long enough for the queue to drain well below full.
const PRESENCE_RETRY: Duration = Duration::from_millis(20);
/// How long the writer waits before offering an event again to a full socketioxide queue.
const FULL_RETRY: Duration = Duration::from_millis(1);
/// How long a closing long-polling connection keeps its Socket.IO session after its last
/// words: a few of the client's poll round trips (see `goodbye`).
const POLLING_LINGER: Duration = Duration::from_millis(300);
/// How long a closing connection may take to hand over what is queued and say why.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Moves the connection's queued events into socketioxide until the connection closes, then
/// tells the client why and disconnects it.
pub(super) async fn write_loop(
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
            &match closer.retry_after() {
                Some(after) => serde_json::json!({
                    "message": reason.describe(),
                    "code": reason.as_str(),
                    "retryAfterMs": u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
                }),
                None => {
                    serde_json::json!({ "message": reason.describe(), "code": reason.as_str() })
                }
            },
        );
        let _ = tokio::time::timeout(
            CLOSE_GRACE,
            hand_over(socket, &notice, receipts, stalled, None),
        )
        .await;
        // Over long-polling the notice waits for the client's next poll, and a POST of events
        // the client sent before it heard anything may still arrive: once the Socket.IO
        // session is gone, socketioxide answers such a packet by closing the Engine.IO session,
        // dropping the notice unread (the client saw only `transport error`). Kept a moment
        // longer, the session takes those late events (the inbox ignores them: the reader is
        // gone) while the client polls the notice.
        if socket.transport_type() == TransportType::Polling {
            tokio::time::sleep(POLLING_LINGER).await;
        }
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
