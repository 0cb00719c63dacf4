//! What the webhook sender and the operators ask of the outbox (`outbox.rs` says how it is
//! filled): an endpoint's pending events in order, its progress recorded through the writer
//! (sent, retrying, failed, sent again), the failed events and each endpoint's backlog, the
//! pruning of old rows, and, where several nodes share the database, the lease that lets one
//! of them at a time send an endpoint's events.
//!
//! The sender holds no transaction while it waits on the network: it reads a batch (a plain
//! read), sends it, and then hands its marks to the writer like any other write.

use std::collections::HashSet;
use std::time::Duration;

use tokio::sync::watch;

use super::batch::{WebhookMark, WriteOp};
use super::{Backend, Store, StoreError, postgres, sql};
use crate::protocol::wire::timestamp;

/// An outbox row waiting for its endpoint.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxEvent {
    /// The event's id, unique and never reused: receivers deduplicate by it.
    #[sqlx(rename = "event_id")]
    pub id: i64,
    /// `user.online`, `message.stored`, ...
    #[sqlx(rename = "type")]
    pub kind: String,
    /// When the fact happened (the event's `timestamp`).
    pub occurred_at: String,
    /// Where its give-up time counts from: when it happened, or when an operator last sent it
    /// again.
    pub retried_since: String,
    /// The event's `data`, JSON.
    pub data: String,
}

/// An event its endpoint never took within the give-up time.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FailedEvent {
    /// The event's id.
    #[sqlx(rename = "event_id")]
    pub id: i64,
    /// The endpoint's name.
    pub endpoint: String,
    /// The event type.
    #[sqlx(rename = "type")]
    pub kind: String,
    /// When the fact happened.
    pub occurred_at: String,
    /// The event's `data`, JSON.
    pub data: String,
    /// Requests that carried it.
    pub attempts: i32,
    /// Why the last one failed.
    pub last_error: Option<String>,
    /// When it was given up on.
    pub failed_at: String,
}

/// Where one endpoint stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointBacklog {
    /// The endpoint's name.
    pub endpoint: String,
    /// Events waiting to be sent.
    pub pending: u64,
    /// Events given up on (listed and sendable again).
    pub failed: u64,
    /// When the oldest waiting event happened.
    pub oldest_pending_at: Option<String>,
}

/// Most failed events one resend takes (call again for more).
pub const RESEND_MAX: u32 = 10_000;

impl Store {
    /// Moves on whenever a commit wrote outbox rows (here, or by a lost node's sessions).
    pub fn outbox_written(&self) -> watch::Receiver<u64> {
        self.inner.shared.outbox_written.subscribe()
    }

    /// `endpoint`'s oldest pending events, in order: at most `max_events`, and no more than
    /// `max_bytes` of data (but always the first).
    pub async fn pending_webhooks(
        &self,
        endpoint: &str,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let limit = max_events as i64;
        let rows = match &self.inner.backend {
            Backend::Sqlite(pool) => {
                sqlx::query_as(sql::PENDING_WEBHOOKS)
                    .bind(endpoint)
                    .bind(limit)
                    .fetch_all(pool)
                    .await
            }
            Backend::Postgres(pool) => {
                sqlx::query_as(sql::PENDING_WEBHOOKS)
                    .bind(endpoint)
                    .bind(limit)
                    .fetch_all(pool)
                    .await
            }
        };
        let mut rows: Vec<OutboxEvent> =
            rows.map_err(self.failed("could not read the webhook outbox"))?;
        let mut bytes = 0;
        let keep = rows
            .iter()
            .position(|e| {
                bytes += e.data.len();
                bytes > max_bytes
            })
            .map_or(rows.len(), |cut| cut.max(1));
        rows.truncate(keep);
        Ok(rows)
    }

    /// The endpoint took these events.
    pub async fn webhooks_sent(&self, ids: Vec<i64>) {
        self.mark_webhooks(WebhookMark::Sent {
            ids,
            at: timestamp(std::time::SystemTime::now()),
        })
        .await;
    }

    /// A request carrying these events failed; they will be tried again.
    pub async fn webhooks_retrying(&self, ids: Vec<i64>, error: String) {
        self.mark_webhooks(WebhookMark::Retrying { ids, error })
            .await;
    }

    /// A request carrying these events failed past their give-up time: they are failed.
    pub async fn webhooks_failed(&self, ids: Vec<i64>, error: String) {
        self.mark_webhooks(WebhookMark::Failed {
            ids,
            at: timestamp(std::time::SystemTime::now()),
            error,
        })
        .await;
    }

    /// Makes failed events pending again, oldest first and at most [`RESEND_MAX`]: those of
    /// `endpoint` (all endpoints: `None`), only `ids` when given. Returns how many.
    pub async fn resend_webhooks(
        &self,
        endpoint: Option<&str>,
        ids: Option<&[i64]>,
    ) -> Result<u64, StoreError> {
        // Their ids only: the rows' data is not needed to make them pending again.
        let limit = i64::from(RESEND_MAX);
        let failed: Result<Vec<i64>, sqlx::Error> = match &self.inner.backend {
            Backend::Sqlite(pool) => {
                sqlx::query_scalar(sql::FAILED_WEBHOOK_IDS)
                    .bind(endpoint)
                    .bind(limit)
                    .fetch_all(pool)
                    .await
            }
            Backend::Postgres(pool) => {
                sqlx::query_scalar(sql::FAILED_WEBHOOK_IDS)
                    .bind(endpoint)
                    .bind(limit)
                    .fetch_all(pool)
                    .await
            }
        };
        let failed = failed.map_err(self.failed("could not read the failed webhook events"))?;
        let asked: Option<HashSet<i64>> = ids.map(|ids| ids.iter().copied().collect());
        let again: Vec<i64> = failed
            .into_iter()
            .filter(|id| asked.as_ref().is_none_or(|asked| asked.contains(id)))
            .collect();
        let n = again.len() as u64;
        if n > 0 {
            self.mark_webhooks(WebhookMark::Resend {
                ids: again,
                at: timestamp(std::time::SystemTime::now()),
            })
            .await;
            self.inner.shared.outbox_written.send_modify(|n| *n += 1);
        }
        Ok(n)
    }

    /// Failed events with ids above `after`, oldest first, at most `limit`: those of
    /// `endpoint`, or of every endpoint.
    pub async fn failed_webhooks(
        &self,
        endpoint: Option<&str>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<FailedEvent>, StoreError> {
        let rows = match &self.inner.backend {
            Backend::Sqlite(pool) => {
                sqlx::query_as(sql::FAILED_WEBHOOKS)
                    .bind(endpoint)
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(pool)
                    .await
            }
            Backend::Postgres(pool) => {
                sqlx::query_as(sql::FAILED_WEBHOOKS)
                    .bind(endpoint)
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(pool)
                    .await
            }
        };
        rows.map_err(self.failed("could not read the failed webhook events"))
    }

    /// Per endpoint with pending or failed events: how many, and the oldest pending one.
    pub async fn webhook_backlog(&self) -> Result<Vec<EndpointBacklog>, StoreError> {
        type Pending = (String, i64, Option<String>);
        let (pending, failed) = match &self.inner.backend {
            Backend::Sqlite(pool) => (
                sqlx::query_as::<_, Pending>(sql::WEBHOOK_PENDING_COUNTS)
                    .fetch_all(pool)
                    .await,
                sqlx::query_as::<_, (String, i64)>(sql::WEBHOOK_FAILED_COUNTS)
                    .fetch_all(pool)
                    .await,
            ),
            Backend::Postgres(pool) => (
                sqlx::query_as::<_, Pending>(sql::WEBHOOK_PENDING_COUNTS)
                    .fetch_all(pool)
                    .await,
                sqlx::query_as::<_, (String, i64)>(sql::WEBHOOK_FAILED_COUNTS)
                    .fetch_all(pool)
                    .await,
            ),
        };
        let failing = "could not read the webhook backlog";
        let mut backlog: Vec<EndpointBacklog> = pending
            .map_err(self.failed(failing))?
            .into_iter()
            .map(|(endpoint, n, oldest)| EndpointBacklog {
                endpoint,
                pending: n.max(0) as u64,
                failed: 0,
                oldest_pending_at: oldest,
            })
            .collect();
        for (endpoint, n) in failed.map_err(self.failed(failing))? {
            match backlog.iter_mut().find(|b| b.endpoint == endpoint) {
                Some(b) => b.failed = n.max(0) as u64,
                None => backlog.push(EndpointBacklog {
                    endpoint,
                    failed: n.max(0) as u64,
                    ..Default::default()
                }),
            }
        }
        Ok(backlog)
    }

    /// Takes or renews `holder`'s lease on `endpoint`'s events for `hold`; false while
    /// another node holds it. SQLite has one process: always true.
    pub async fn take_webhook_lease(
        &self,
        endpoint: &str,
        holder: &str,
        hold: Duration,
    ) -> Result<bool, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(_) => Ok(true),
            Backend::Postgres(pool) => {
                postgres::outbox::take_lease(pool, endpoint, holder, hold.as_secs_f64())
                    .await
                    .map_err(self.failed("could not take the webhook lease"))
            }
        }
    }

    /// Hands `endpoint`'s events on to another node at once (a clean stop).
    pub async fn release_webhook_lease(&self, endpoint: &str, holder: &str) {
        if let Backend::Postgres(pool) = &self.inner.backend
            && let Err(e) = postgres::outbox::release_lease(pool, endpoint, holder).await
        {
            tracing::warn!(error = %e, endpoint, "could not release the webhook lease");
        }
    }

    /// Deletes sent and failed events that happened before `before`, a chunk at a time;
    /// returns how many.
    pub async fn prune_webhook_events(&self, before: &str) -> Result<u64, StoreError> {
        let mut deleted = 0;
        loop {
            let done = match &self.inner.backend {
                Backend::Sqlite(pool) => sqlx::query(sql::PRUNE_WEBHOOK_EVENTS)
                    .bind(before)
                    .execute(pool)
                    .await
                    .map(|d| d.rows_affected()),
                Backend::Postgres(pool) => sqlx::query(sql::PRUNE_WEBHOOK_EVENTS)
                    .bind(before)
                    .execute(pool)
                    .await
                    .map(|d| d.rows_affected()),
            }
            .map_err(self.failed("could not prune the webhook outbox"))?;
            deleted += done;
            if done == 0 || self.is_closed() {
                return Ok(deleted);
            }
        }
    }

    /// Hands a mark to the writer and waits until it is committed (or failed: the events
    /// then stay as they were and are sent again, which at-least-once allows).
    async fn mark_webhooks(&self, mark: WebhookMark) {
        self.write(WriteOp::Webhooks(mark));
        self.flush().await;
    }
}
