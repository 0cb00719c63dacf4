//! [`Outbound`]: the hub's only view of a connection. It can take an event (never waiting)
//! and be closed with a reason. Either it is a bounded queue whose other end, an
//! [`OutboundQueue`], the transport drains in its own writer task (`/ws`), or a
//! [`DirectSink`] that hands the event straight to a transport with its own bounded queue and
//! writer (Socket.IO: socketioxide), which saves a task hop per delivery. When the queue is
//! full the connection is a slow consumer and is closed: one client that does not read never
//! stalls anyone else.

use std::sync::{Arc, OnceLock};

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
}

impl Closer {
    /// Asks the connection to close; later reasons are ignored.
    pub fn close(&self, reason: CloseReason) {
        let _ = self.inner.reason.set(reason);
        self.inner.token.cancel();
    }

    /// The reason, once closed.
    pub fn reason(&self) -> Option<CloseReason> {
        self.inner.reason.get().copied()
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

/// Why a [`DirectSink`] did not take an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkError {
    /// Its queue is full.
    Full,
    /// The connection is gone.
    Closed,
}

/// A transport that takes events directly, without a writer task of ours.
pub trait DirectSink: Send + Sync + 'static {
    /// Hands over an event without waiting.
    fn try_send(&self, event: &Event) -> Result<(), SinkError>;
}

#[derive(Clone)]
enum Sink {
    Queue(mpsc::Sender<Arc<Event>>),
    Direct(Arc<dyn DirectSink>),
}

/// The sending side, held by the hub.
#[derive(Clone)]
pub struct Outbound {
    sink: Sink,
    closer: Closer,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("closed", &self.closer.is_closed())
            .finish()
    }
}

/// How long a replay waits before retrying a full direct sink.
const DIRECT_RETRY: std::time::Duration = std::time::Duration::from_millis(2);

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
                sink: Sink::Queue(tx),
                closer: closer.clone(),
            },
            OutboundQueue { rx, closer },
        )
    }

    /// A connection served by a transport that takes events directly.
    pub fn direct(sink: Arc<dyn DirectSink>) -> Self {
        Self {
            sink: Sink::Direct(sink),
            closer: Closer::default(),
        }
    }

    /// Queues an event without waiting. A full queue closes the connection as a slow
    /// consumer. Returns whether the event was queued.
    pub fn send(&self, event: Arc<Event>) -> bool {
        let full = match &self.sink {
            Sink::Queue(tx) => match tx.try_send(event) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Full(_)) => true,
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            },
            Sink::Direct(sink) => match sink.try_send(&event) {
                Ok(()) => return true,
                Err(SinkError::Full) => true,
                Err(SinkError::Closed) => false,
            },
        };
        if full {
            if !self.closer.is_closed() {
                tracing::warn!("outbound queue full: disconnecting a slow consumer");
            }
            self.closer.close(CloseReason::SlowConsumer);
        }
        false
    }

    /// Queues an event, waiting for room in the queue (replay, which must not overflow it).
    /// Returns false if the connection closed meanwhile.
    pub async fn send_wait(&self, event: Arc<Event>) -> bool {
        match &self.sink {
            Sink::Queue(tx) => tokio::select! {
                () = self.closer.closed() => false,
                sent = tx.send(event) => sent.is_ok(),
            },
            Sink::Direct(sink) => loop {
                match sink.try_send(&event) {
                    Ok(()) => return true,
                    Err(SinkError::Closed) => return false,
                    Err(SinkError::Full) => tokio::select! {
                        () = self.closer.closed() => return false,
                        () = tokio::time::sleep(DIRECT_RETRY) => {}
                    },
                }
            },
        }
    }

    /// Asks the connection to close.
    pub fn close(&self, reason: CloseReason) {
        self.closer.close(reason);
    }

    /// The closer, for the transport's reader.
    pub fn closer(&self) -> &Closer {
        &self.closer
    }
}
