//! The handshake gate: at most `HANDSHAKE_CONCURRENCY` connections in their handshake at once
//! (the session id, the registration, the catch-up replay), the others waiting for a
//! [`Turn`] in arrival order, at most `HANDSHAKE_QUEUE` of them and each for at most
//! `HANDSHAKE_WAIT_MS`. When a restart brings every client back at once, this lets them in at
//! the pace the server can take instead of starting every handshake together, all slowing
//! down until they all time out; who cannot get a turn in time is refused at once with a hint
//! to come back (the transports say `busy`).
//!
//! Not the TCP connection caps (`startup/admission.rs`, `MAX_CONNECTIONS`): those count open
//! sockets; this counts handshakes under way. It lives beside [`AppState`](super::AppState),
//! which holds the one gate of a gateway, so that both transports share it.
//!
//! A turn is a permit of a tokio [`Semaphore`], which hands permits out first come, first
//! served; it is released when the [`Turn`] is dropped, wherever that happens.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::HandshakeLimits;
use crate::metrics::Metrics;
use crate::telemetry::RefusalLog;

/// Handshakes under way and the connections waiting for a turn.
pub(crate) struct HandshakeGate {
    turns: Arc<Semaphore>,
    /// Connections waiting for a turn now.
    waiting: AtomicUsize,
    limits: HandshakeLimits,
    metrics: Arc<Metrics>,
    refusals: RefusalLog,
}

/// Why a connection got no turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoTurn {
    /// `HANDSHAKE_QUEUE` connections were already waiting.
    QueueFull,
    /// No turn came within `HANDSHAKE_WAIT_MS`.
    TimedOut,
}

impl HandshakeGate {
    pub fn new(limits: &HandshakeLimits, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            turns: Arc::new(Semaphore::new(
                limits.concurrency.min(Semaphore::MAX_PERMITS),
            )),
            waiting: AtomicUsize::new(0),
            limits: limits.clone(),
            metrics,
            refusals: RefusalLog::default(),
        })
    }

    /// A turn at once when one is free, else after the connections that came first, within
    /// `HANDSHAKE_WAIT_MS`. Dropping the future leaves the queue (a client that went away
    /// while waiting).
    pub async fn turn(&self) -> Result<Turn, NoTurn> {
        // Never ahead of a waiter: the semaphore gives a released permit to the oldest waiter
        // before `try_acquire` can see it.
        if let Ok(permit) = self.turns.clone().try_acquire_owned() {
            return Ok(self.granted(permit, Duration::ZERO));
        }
        let Some(place) = self.queue_place() else {
            return Err(self.refused(NoTurn::QueueFull));
        };
        let start = Instant::now();
        let acquired =
            tokio::time::timeout(self.limits.wait, self.turns.clone().acquire_owned()).await;
        drop(place);
        match acquired {
            Ok(Ok(permit)) => Ok(self.granted(permit, start.elapsed())),
            // The semaphore is never closed; if it were, there would be no turn to wait for.
            Ok(Err(_)) | Err(_) => Err(self.refused(NoTurn::TimedOut)),
        }
    }

    fn queue_place(&self) -> Option<QueuePlace<'_>> {
        self.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limits.queue).then_some(n + 1)
            })
            .ok()?;
        self.metrics.handshake_waiting(1);
        Some(QueuePlace { gate: self })
    }

    fn granted(&self, permit: OwnedSemaphorePermit, waited: Duration) -> Turn {
        self.metrics.handshake_turn_taken(waited);
        Turn {
            _permit: permit,
            metrics: self.metrics.clone(),
        }
    }

    /// Logs a refusal as [`RefusalLog`] allows, and hands it back.
    fn refused(&self, why: NoTurn) -> NoTurn {
        if let Some(count) = self.refusals.record(Instant::now()) {
            tracing::warn!(
                refused = count,
                concurrency = self.limits.concurrency,
                waiting = self.waiting.load(Ordering::Relaxed),
                queue = self.limits.queue,
                wait_ms = self.limits.wait.as_millis() as u64,
                last = ?why,
                "handshakes refused as busy since the last line (HANDSHAKE_CONCURRENCY, \
                 HANDSHAKE_QUEUE, HANDSHAKE_WAIT_MS)"
            );
        }
        why
    }
}

/// One place in the queue, given back however the wait ends (a turn, a refusal, or a client
/// that went away and dropped its admission).
struct QueuePlace<'a> {
    gate: &'a HandshakeGate,
}

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.gate.waiting.fetch_sub(1, Ordering::AcqRel);
        self.gate.metrics.handshake_waiting(-1);
    }
}

/// One handshake's turn; dropping it lets the next connection in.
pub(crate) struct Turn {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Turn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Turn")
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.metrics.handshake_turn_ended();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(concurrency: usize, queue: usize, wait: Duration) -> Arc<HandshakeGate> {
        HandshakeGate::new(
            &HandshakeLimits {
                concurrency,
                queue,
                wait,
            },
            Metrics::shared(),
        )
    }

    const LONG: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn turns_go_to_waiters_in_arrival_order_as_they_are_released() {
        let gate = gate(1, 10, LONG);
        let first = gate.turn().await.expect("a free turn");
        let (order_tx, mut order_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut waiters = Vec::new();
        for i in 0..3 {
            let (waiter, order) = (gate.clone(), order_tx.clone());
            waiters.push(tokio::spawn(async move {
                let turn = waiter.turn().await.expect("a turn in time");
                order.send(i).expect("the test listens");
                // Held until the test has seen who got it, so the next one is still waiting.
                tokio::task::yield_now().await;
                drop(turn);
            }));
            // Each waiter is queued before the next one starts.
            while gate.waiting.load(Ordering::Acquire) < i + 1 {
                tokio::task::yield_now().await;
            }
        }
        drop(first);
        let mut order = Vec::new();
        for _ in 0..3 {
            order.push(order_rx.recv().await.expect("a turn"));
        }
        assert_eq!(order, [0, 1, 2]);
        for waiter in waiters {
            waiter.await.expect("the waiter ran");
        }
        assert_eq!(gate.waiting.load(Ordering::Acquire), 0);
        assert_eq!(gate.turns.available_permits(), 1);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_a_freed_place_takes_the_next() {
        let gate = gate(1, 1, LONG);
        let held = gate.turn().await.expect("a free turn");
        let queued = tokio::spawn({
            let gate = gate.clone();
            async move { gate.turn().await.map(drop) }
        });
        while gate.waiting.load(Ordering::Acquire) < 1 {
            tokio::task::yield_now().await;
        }
        assert_eq!(gate.turn().await.err(), Some(NoTurn::QueueFull));
        drop(held);
        assert_eq!(queued.await.expect("ran"), Ok(()));
        assert!(gate.turn().await.is_ok(), "the turn came back");
    }

    #[tokio::test]
    async fn a_queue_of_zero_never_waits() {
        let gate = gate(1, 0, LONG);
        let _held = gate.turn().await.expect("a free turn");
        assert_eq!(gate.turn().await.err(), Some(NoTurn::QueueFull));
    }

    #[tokio::test]
    async fn a_wait_past_the_bound_is_refused_and_leaves_the_queue() {
        let gate = gate(1, 10, Duration::from_millis(20));
        let _held = gate.turn().await.expect("a free turn");
        assert_eq!(gate.turn().await.err(), Some(NoTurn::TimedOut));
        assert_eq!(gate.waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_waiter_that_goes_away_gives_its_place_back_and_a_dropped_turn_frees_it() {
        let gate = gate(2, 1, LONG);
        let first = gate.turn().await.expect("a free turn");
        let _second = gate.turn().await.expect("another");
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.turn().await.map(drop) }
        });
        while gate.waiting.load(Ordering::Acquire) < 1 {
            tokio::task::yield_now().await;
        }
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(gate.waiting.load(Ordering::Acquire), 0, "its place is free");
        drop(first);
        assert!(gate.turn().await.is_ok(), "a dropped turn is free again");
    }
}
