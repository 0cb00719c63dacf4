//! A connection's acks in flight, in frame order. A stored message is acknowledged only
//! after its commit, but the connection need not wait for that commit to read its next
//! frame: the session runs each event's ordered part at once (so ids and routing follow the
//! frames) and queues its ack here. Acks leave strictly in the order their frames came,
//! each once its own outcome is known: a refusal settled at once still waits behind the
//! message before it, so it never overtakes that message's ack.
//!
//! The queue is bounded by [`MAX_IN_FLIGHT`] (and a quarter of the connection's outbound
//! queue, so that a burst of acks can never overflow it): a full pipeline stops the
//! connection's reader until the oldest ack leaves, so one client cannot park unbounded work
//! on the server.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, ready};

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;

use crate::commands::{Outcome, Pending};

/// Most events per connection whose ack is not sent yet. A commit takes about a millisecond,
/// so 32 lets one connection stream well beyond what its rate limit admits, while what a
/// client can leave waiting on the server stays small.
pub(crate) const MAX_IN_FLIGHT: usize = 32;

/// How a transport answers one frame, once its outcome is known.
pub(crate) type AckFn = Box<dyn FnOnce(&Outcome) + Send>;

/// The acks of one connection, oldest first.
pub(crate) struct Pipeline {
    /// A Mutex only so that the session stays `Sync` (it is borrowed across awaits): the
    /// connection's one task uses it, mostly through `get_mut`, so it is never contended.
    in_flight: Mutex<FuturesOrdered<Settling>>,
    limit: usize,
}

impl Pipeline {
    /// A pipeline for a connection whose outbound queue holds `queue_capacity` events. One
    /// group commit can settle every ack in flight at once, and each refusal brings an
    /// `error` event with its ack: at most a quarter of the queue in flight keeps that burst
    /// from ever making a slow consumer of the client that sent it.
    pub fn for_queue(queue_capacity: usize) -> Self {
        Self {
            in_flight: Mutex::new(FuturesOrdered::new()),
            limit: (queue_capacity / 4).clamp(1, MAX_IN_FLIGHT),
        }
    }

    /// Queues the ack of the event just run; it leaves after every ack queued before it.
    pub fn push(&mut self, outcome: Pending, ack: AckFn) {
        self.queue().push_back(Settling {
            outcome,
            ack: Some(ack),
        });
    }

    /// Whether another event may be run (the pipeline is not full).
    pub fn has_room(&self) -> bool {
        let in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        in_flight.len() < self.limit
    }

    /// Whether no ack is waiting.
    pub fn is_empty(&mut self) -> bool {
        self.queue().is_empty()
    }

    /// The oldest ack, once its outcome is known; never resolves while nothing waits (so a
    /// reader can always `select!` on it).
    pub async fn next(&mut self) -> (Outcome, AckFn) {
        loop {
            if let Some((outcome, Some(ack))) = self.queue().next().await {
                return (outcome, ack);
            }
            if self.queue().is_empty() {
                std::future::pending::<()>().await;
            }
        }
    }

    fn queue(&mut self) -> &mut FuturesOrdered<Settling> {
        // A panic inside an ack's future leaves a usable queue behind.
        self.in_flight
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One queued ack: the outcome it waits for, and how to send it.
struct Settling {
    outcome: Pending,
    /// Taken when the outcome is ready.
    ack: Option<AckFn>,
}

impl Future for Settling {
    type Output = (Outcome, Option<AckFn>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let outcome = ready!(Pin::new(&mut self.outcome).poll(cx));
        Poll::Ready((outcome, self.ack.take()))
    }
}
