//! One endpoint's sender: reads the endpoint's oldest pending events from the outbox, POSTs
//! them as one request, and records the outcome through the store's writer, one batch at a
//! time, so the endpoint gets its events in order.
//!
//! - **Failure.** The same batch is tried again (same `webhook-id`) after a backoff that
//!   doubles from [`BACKOFF_FIRST`] to [`BACKOFF_MAX`], each wait drawn at random below its
//!   bound (full jitter: a fleet of gateways whose endpoint came back do not all knock at
//!   once). Events older than the give-up time when a request carrying them fails are marked
//!   failed; the rest are tried again, alone (what piled up behind them waits for the next
//!   request), so a retry's `webhook-id` and body are the failed request's, less what was
//!   given up on. The give-up time counts from when the event happened, or from when an
//!   operator last sent it again.
//! - **Ordering waits, then skips.** While the head batch fails, later events wait behind it
//!   (in order, as the contract promises); once the head is older than the give-up time it
//!   is marked failed and the sender goes on. Waiting for ever would let one poisoned event
//!   stop an endpoint for good, and sending later events around a failing one would give up
//!   the order on every hiccup. A failed event is listed and can be sent again; its id tells
//!   a receiver where it belonged.
//! - **One node at a time.** Before every request the sender takes or renews the endpoint's
//!   lease in the store (PostgreSQL: a row with an expiry by the database's clock; SQLite: one
//!   process, always granted). A node that dies mid-send leaves the endpoint to another once
//!   its lease runs out, and the batch it was sending is sent again: at least once.
//! - **Nothing waits on it.** The sender holds no transaction while the request is out and
//!   keeps one batch in memory: a dead endpoint's backlog is rows in the database.
//! - **Seen by the operators.** Each request's time and outcome, the failures in a row and
//!   the end of the current backoff go to the endpoint's [`WebhookHealth`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::health::WebhookHealth;
use super::request;
use crate::config::{WebhookEndpoint, WebhookSettings};
use crate::metrics::Metrics;
use crate::store::{OutboxEvent, Store};

/// The first backoff bound after a failed request.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(500);
/// The largest backoff bound.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How often an idle sender looks for events it was not woken for: rows other nodes wrote,
/// and a lease another node let lapse.
const IDLE_LOOK: Duration = Duration::from_secs(1);

/// What a sender needs, shared by the endpoint's task.
pub(super) struct Sender {
    pub(super) endpoint: WebhookEndpoint,
    pub(super) store: Store,
    pub(super) settings: Arc<WebhookSettings>,
    pub(super) client: reqwest::Client,
    pub(super) metrics: Arc<Metrics>,
    /// This node's name in the lease.
    pub(super) holder: String,
    /// Where what it did is shown to the operators.
    pub(super) health: WebhookHealth,
}

impl Sender {
    /// How long a lease is taken for: longer than any one request.
    fn lease(&self) -> Duration {
        (self.settings.timeout * 3).max(Duration::from_secs(30))
    }

    /// Sends until `stop` turns true, then hands the lease on.
    pub(super) async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut written = self.store.outbox_written();
        let mut failures: u32 = 0;
        let mut retry = None;
        let name = self.endpoint.name.clone();
        while !*stop.borrow() {
            let wait = match self.turn(&mut failures, &mut retry).await {
                Turn::Sent => continue,
                Turn::Idle => IDLE_LOOK,
                Turn::Backoff => {
                    let wait = backoff(failures);
                    self.health.retrying_at(&name, SystemTime::now() + wait);
                    wait
                }
            };
            tokio::select! {
                _ = written.changed(), if failures == 0 => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
        self.store.release_webhook_lease(&name, &self.holder).await;
    }

    /// One step: lease, read (or take the batch a failed request left in `retry`), send,
    /// record.
    async fn turn(&self, failures: &mut u32, retry: &mut Option<Vec<OutboxEvent>>) -> Turn {
        let name = self.endpoint.name.as_str();
        match self
            .store
            .take_webhook_lease(name, &self.holder, self.lease())
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                // Another node sends now; it reads the batch afresh.
                *retry = None;
                return Turn::Idle;
            }
            Err(e) => {
                tracing::warn!(error = %e, endpoint = name, "webhooks: no lease");
                return Turn::Idle;
            }
        }
        let s = &self.settings;
        // A retry carries the same events as the request that failed (the same `webhook-id`),
        // not whatever piled up behind them meanwhile.
        let read = match retry.take() {
            Some(batch) => Ok(batch),
            None => {
                self.store
                    .pending_webhooks(name, s.batch_max, s.batch_bytes)
                    .await
            }
        };
        let batch = match read {
            Ok(batch) if batch.is_empty() => {
                *failures = 0;
                return Turn::Idle;
            }
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, endpoint = name, "webhooks: outbox unreadable");
                return Turn::Idle;
            }
        };
        let started = SystemTime::now();
        let outcome = request::send(&self.client, &self.endpoint, &batch, s.timeout).await;
        self.metrics.webhooks().request(name, outcome.is_ok());
        let result = outcome.as_ref().map(|_| ()).map_err(String::as_str);
        self.health.attempted(name, started, result);
        match outcome {
            Ok(()) => {
                *failures = 0;
                let now = SystemTime::now();
                self.metrics
                    .webhooks()
                    .sent(name, batch.iter().map(|e| since(&e.occurred_at, now)));
                self.store.webhooks_sent(ids(&batch)).await;
                Turn::Sent
            }
            Err(error) => self.failed(batch, error, failures, retry).await,
        }
    }

    /// A request failed: what is older than the give-up time is failed, the rest waits.
    async fn failed(
        &self,
        batch: Vec<OutboxEvent>,
        error: String,
        failures: &mut u32,
        retry: &mut Option<Vec<OutboxEvent>>,
    ) -> Turn {
        let name = self.endpoint.name.as_str();
        let now = SystemTime::now();
        let (expired, young): (Vec<OutboxEvent>, Vec<OutboxEvent>) = batch
            .into_iter()
            .partition(|e| since(&e.retried_since, now) >= self.settings.give_up);
        if !expired.is_empty() {
            tracing::warn!(endpoint = name, events = expired.len(), %error,
                "webhooks: events given up on (listed by GET /websocket/webhooks/failed)");
            self.metrics.webhooks().failed(name, expired.len() as u64);
            self.store
                .webhooks_failed(ids(&expired), error.clone())
                .await;
        }
        if young.is_empty() {
            // Nothing of the batch is left to retry: the next events go now.
            *failures = 0;
            return Turn::Sent;
        }
        *failures = failures.saturating_add(1);
        if *failures == 1 {
            tracing::warn!(endpoint = name, %error, "webhooks: a request failed; retrying with backoff");
        }
        self.metrics.webhooks().retried(name, young.len() as u64);
        self.store.webhooks_retrying(ids(&young), error).await;
        *retry = Some(young);
        Turn::Backoff
    }
}

/// What one step did, and so how long to wait before the next.
enum Turn {
    /// Sent (or gave up on) a batch: the next one goes at once.
    Sent,
    /// Nothing to send, or not this node's turn.
    Idle,
    /// A request failed.
    Backoff,
}

fn ids(events: &[OutboxEvent]) -> Vec<i64> {
    events.iter().map(|e| e.id).collect()
}

/// How long before `now` the wire timestamp `at` was (zero if it cannot be read).
fn since(at: &str, now: SystemTime) -> Duration {
    humantime::parse_rfc3339(at)
        .ok()
        .and_then(|at| now.duration_since(at).ok())
        .unwrap_or_default()
}

/// The wait after the `failures`-th failure in a row: uniform below a bound that doubles
/// from [`BACKOFF_FIRST`] up to [`BACKOFF_MAX`].
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    let bound = BACKOFF_FIRST
        .saturating_mul(1 << doublings)
        .min(BACKOFF_MAX);
    let mut bytes = [0_u8; 8];
    let draw = getrandom::fill(&mut bytes).map_or(u64::MAX / 2, |()| u64::from_le_bytes(bytes));
    let fraction = draw as f64 / u64::MAX as f64;
    bound.mul_f64(fraction).max(Duration::from_millis(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_below_a_doubling_bound_and_is_capped() {
        for failures in 1..40 {
            let wait = backoff(failures);
            let bound = BACKOFF_FIRST
                .saturating_mul(1 << failures.saturating_sub(1).min(20))
                .min(BACKOFF_MAX);
            assert!(wait <= bound, "{failures}: {wait:?} > {bound:?}");
        }
        let waits: Vec<Duration> = (0..20).map(|_| backoff(10)).collect();
        assert!(
            waits.iter().any(|w| *w != waits[0]),
            "jittered, not fixed: {waits:?}"
        );
    }
}
