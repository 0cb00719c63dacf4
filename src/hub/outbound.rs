//! [`Outbound`]: the hub's only view of a connection. It can take an event (never waiting)
//! and be closed with a reason. It is a bounded queue whose other end, an [`OutboundQueue`],
//! the transport drains in its own writer task, on both transports. When the queue is full the
//! connection is a slow consumer and is closed: one client that does not read never stalls
//! anyone else. Whatever a transport buffers behind its writer (tungstenite's write buffer,
//! socketioxide's per-socket queue) makes the writer wait, never the hub: this queue is the
//! one slow-consumer rule.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use super::event::Event;

/// Why a connection ended; stored in `sessions.disconnect_reason`, told to the client by its
/// transport (a `/ws` close code, a Socket.IO `error` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed the connection.
    ClientClosed,
    /// Nothing received (not even a pong) within the idle timeout.
    IdleTimeout,
    /// The outbound queue was full.
    SlowConsumer,
    /// Too many events refused by the rate limit in a row.
    RateLimited,
    /// A frame larger than the configured maximum.
    FrameTooLarge,
    /// The server is shutting down.
    ServerShutdown,
    /// The connection failed underneath (reset, protocol error).
    TransportError,
    /// An operator disconnected the user.
    Kicked,
    /// The token's `exp` (plus `JWT_LEEWAY_SECS`) passed without a `refresh-token`.
    TokenExpired,
    /// An operator revoked the user's tokens (`POST /websocket/users/{id}/revoke`).
    Revoked,
    /// In a cluster: the node lost the bus for `NODE_TIMEOUT_SECS`, so the other nodes
    /// count its users gone (also recorded for the sessions of a node declared lost).
    NodeLost,
}

impl CloseReason {
    /// The value stored in `sessions.disconnect_reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientClosed => "client_closed",
            Self::IdleTimeout => "idle_timeout",
            Self::SlowConsumer => "slow_consumer",
            Self::RateLimited => "rate_limited",
            Self::FrameTooLarge => "frame_too_large",
            Self::ServerShutdown => "server_shutdown",
            Self::TransportError => "transport_error",
            Self::Kicked => "kicked",
            Self::TokenExpired => "token_expired",
            Self::Revoked => "revoked",
            Self::NodeLost => "node_lost",
        }
    }

    /// A sentence for the close frame and the logs.
    pub fn describe(self) -> &'static str {
        match self {
            Self::ClientClosed => "closed by the client",
            Self::IdleTimeout => "idle timeout: nothing received from the client",
            Self::SlowConsumer => "slow consumer: the client does not read fast enough",
            Self::RateLimited => "rate limit exceeded too often",
            Self::FrameTooLarge => "frame too large",
            Self::ServerShutdown => "server shutting down",
            Self::TransportError => "transport error",
            Self::Kicked => "disconnected by an operator",
            Self::TokenExpired => "token expired",
            Self::Revoked => "token revoked by an operator",
            Self::NodeLost => "this node lost contact with the cluster; reconnect",
        }
    }
}

/// Closes a connection once, remembering the first reason given.
#[derive(Debug, Clone, Default)]
pub struct Closer {
    inner: Arc<CloserInner>,
}

#[derive(Debug, Default)]
struct CloserInner {
    token: CancellationToken,
    reason: OnceLock<CloseReason>,
    /// When the client is asked to come back (a graceful stop spreads the returns).
    retry_after: OnceLock<Duration>,
}

impl Closer {
    /// Asks the connection to close; later reasons are ignored.
    pub fn close(&self, reason: CloseReason) {
        let _ = self.inner.reason.set(reason);
        self.inner.token.cancel();
    }

    /// Asks the connection to close, telling the client to come back after `after`; later
    /// reasons and hints are ignored.
    pub fn close_with_retry(&self, reason: CloseReason, after: Duration) {
        if self.inner.reason.set(reason).is_ok() {
            let _ = self.inner.retry_after.set(after);
        }
        self.inner.token.cancel();
    }

    /// The reason, once closed.
    pub fn reason(&self) -> Option<CloseReason> {
        self.inner.reason.get().copied()
    }

    /// When the client is asked to come back, if the close says.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after.get().copied()
    }

    /// Resolves when the connection was asked to close.
    pub fn closed(&self) -> WaitForCancellationFuture<'_> {
        self.inner.token.cancelled()
    }

    /// Whether the connection was asked to close.
    pub fn is_closed(&self) -> bool {
        self.inner.token.is_cancelled()
    }
}

/// A transport that can take an event at once when nothing is queued before it, sparing the
/// hop through its writer task (Socket.IO: socketioxide has a queue and a writer of its own).
/// It must keep order: hand an event over only while the queue is empty and its writer is not
/// handing anything over, and otherwise let it be queued. It runs under the hub lock, the one
/// call into a transport there (`docs/architecture.md`, "Locks": why, and what it measured),
/// so it must never wait.
pub trait Handoff: Send + Sync + 'static {
    /// Tries to hand `event` over directly; `queue` is the connection's queue, to check that
    /// it is empty. False: the event is queued instead.
    fn try_direct(&self, event: &Arc<Event>, queue: &mpsc::Sender<Arc<Event>>) -> bool;
    /// Something was queued: the writer must look.
    fn queued(&self);
}

/// The sending side, held by the hub.
#[derive(Clone)]
pub struct Outbound {
    tx: mpsc::Sender<Arc<Event>>,
    closer: Closer,
    handoff: Option<Arc<dyn Handoff>>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("closed", &self.closer.is_closed())
            .finish()
    }
}

/// The receiving side, drained by the transport's writer task.
#[derive(Debug)]
pub struct OutboundQueue {
    /// Events to write, in order.
    pub rx: mpsc::Receiver<Arc<Event>>,
    /// Signals that the connection must close, and why.
    pub closer: Closer,
}

impl Outbound {
    /// A new connection's queue of `capacity` events.
    pub fn channel(capacity: usize) -> (Self, OutboundQueue) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let closer = Closer::default();
        (
            Self {
                tx,
                closer: closer.clone(),
                handoff: None,
            },
            OutboundQueue { rx, closer },
        )
    }

    /// Like [`Outbound::channel`], for a transport that takes events directly when it can,
    /// and that made the connection's `closer` before the connection was opened (its
    /// handlers may close it from the first frame on).
    pub fn with_handoff(
        capacity: usize,
        closer: Closer,
        handoff: Arc<dyn Handoff>,
    ) -> (Self, OutboundQueue) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Self {
                tx,
                closer: closer.clone(),
                handoff: Some(handoff),
            },
            OutboundQueue { rx, closer },
        )
    }

    /// Queues an event without waiting (or hands it over directly, see [`Handoff`]). A full
    /// queue closes the connection as a slow consumer. Returns whether the event was taken.
    pub fn send(&self, event: Arc<Event>) -> bool {
        if let Some(handoff) = &self.handoff
            && handoff.try_direct(&event, &self.tx)
        {
            return true;
        }
        match self.tx.try_send(event) {
            Ok(()) => {
                self.wake_writer();
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.closer.is_closed() {
                    tracing::warn!("outbound queue full: disconnecting a slow consumer");
                }
                self.closer.close(CloseReason::SlowConsumer);
                false
            }
        }
    }

    /// Queues an event, waiting for room in the queue (replay, which must not overflow it).
    /// Returns false if the connection closed meanwhile.
    pub async fn send_wait(&self, event: Arc<Event>) -> bool {
        let sent = tokio::select! {
            () = self.closer.closed() => false,
            sent = self.tx.send(event) => sent.is_ok(),
        };
        if sent {
            self.wake_writer();
        }
        sent
    }

    fn wake_writer(&self) {
        if let Some(handoff) = &self.handoff {
            handoff.queued();
        }
    }

    /// Asks the connection to close.
    pub fn close(&self, reason: CloseReason) {
        self.closer.close(reason);
    }

    /// Closes the connection telling the client when to come back.
    pub fn close_with_retry(&self, reason: CloseReason, after: Duration) {
        self.closer.close_with_retry(reason, after);
    }

    /// The closer, for the transport's reader.
    pub fn closer(&self) -> &Closer {
        &self.closer
    }
}
