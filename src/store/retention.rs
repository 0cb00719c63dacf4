//! Retention's passes, shared by every backend (each backend's `retention.rs` holds its
//! deletes): deletes old messages by age and by count, in small transactions on a timer, so
//! the writer is never held up for long. A message still waiting in someone's offline queue
//! is never deleted, whatever its age: the queue is bounded per user, so this cannot grow
//! without limit, and a queued message is never lost silently. The highest id deleted is
//! recorded so that `sync` can tell a client its history is incomplete.
//!
//! On PostgreSQL several nodes may share the database, and a pass must run once per cluster,
//! not once per node: a pass runs only on the node that takes the advisory lock
//! [`CLUSTER_LOCK`] for it (on a connection of its own, released when the pass ends); the
//! others skip that turn. SQLite has one process: its passes just run.

use std::sync::Arc;
use std::time::SystemTime;

use super::model::{Cutoff, PRUNED_THROUGH};
use super::{Backend, Store, postgres, sqlite};
use crate::config::RetentionSettings;
use crate::protocol::wire::timestamp;

/// Rows deleted per transaction.
const CHUNK: i64 = 2000;

pub use super::postgres::retention::CLUSTER_LOCK;

/// What one pruning pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Messages deleted.
    pub deleted: u64,
    /// The highest id deleted in this pass.
    pub highest_id: u64,
    /// Another node was running a pass ([`CLUSTER_LOCK`] was taken): this one did nothing.
    pub skipped: bool,
}

/// Runs [`prune`] every `settings.interval` until the store is closed.
pub(super) fn spawn(store: Store, settings: RetentionSettings) {
    if settings.max_age.is_none() && settings.max_count.is_none() {
        return;
    }
    let weak = Arc::downgrade(&store.inner);
    drop(store);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(settings.interval);
        loop {
            tick.tick().await;
            let Some(inner) = weak.upgrade() else { break };
            let store = Store { inner };
            if store.is_closed() {
                break;
            }
            match prune(&store, &settings).await {
                Ok(r) if r.deleted > 0 => {
                    tracing::info!(
                        deleted = r.deleted,
                        through = r.highest_id,
                        "retention pruned messages"
                    );
                }
                Ok(r) if r.skipped => {
                    tracing::debug!("retention pass skipped: another node is running one")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention pass failed"),
            }
        }
    });
}

/// One pass: deletes, oldest first, what is older than `max_age` or beyond the newest
/// `max_count` messages, keeping every message still queued for delivery. On PostgreSQL it
/// runs only if no other node's pass is running (see the module doc), else it is `skipped`.
pub async fn prune(
    store: &Store,
    settings: &RetentionSettings,
) -> Result<PruneReport, sqlx::Error> {
    match &store.inner.backend {
        Backend::Sqlite(_) => pass(store, settings).await,
        Backend::Postgres(pool) => {
            // Whoever ran the last pass, this node's `sync` must know how far it deleted.
            let pruned = postgres::counters::counter(pool, PRUNED_THROUGH).await?;
            store.note_pruned(pruned);
            let Some(lock) = postgres::retention::PassLock::try_take(pool).await? else {
                return Ok(PruneReport {
                    skipped: true,
                    ..PruneReport::default()
                });
            };
            let report = pass(store, settings).await;
            lock.release().await;
            report
        }
    }
}

/// The pass itself, whoever may run it.
async fn pass(store: &Store, settings: &RetentionSettings) -> Result<PruneReport, sqlx::Error> {
    let mut cutoffs = Vec::new();
    if let Some(max_age) = settings.max_age {
        cutoffs.push(Cutoff::OlderThan(timestamp(SystemTime::now() - max_age)));
    }
    if let Some(max_count) = settings.max_count {
        cutoffs.push(Cutoff::BeyondNewest(max_count));
    }
    let mut report = PruneReport::default();
    for cutoff in &cutoffs {
        loop {
            // Each chunk is its own transaction, which also raises the pruned-through
            // counter; `sync` learns of the hole at once, so a pass that fails later still
            // reports the hole it made.
            let ids = match &store.inner.backend {
                Backend::Sqlite(pool) => {
                    sqlite::retention::delete_chunk(pool, cutoff, CHUNK).await?
                }
                Backend::Postgres(pool) => {
                    postgres::retention::delete_chunk(pool, cutoff, CHUNK).await?
                }
            };
            if let Some(max) = ids.iter().max() {
                store.note_pruned(*max as u64);
            }
            if !record(&mut report, &ids) {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    Ok(report)
}

/// Adds a chunk to the report; whether another chunk may follow.
fn record(report: &mut PruneReport, ids: &[i64]) -> bool {
    report.deleted += ids.len() as u64;
    if let Some(max) = ids.iter().max() {
        report.highest_id = report.highest_id.max(*max as u64);
    }
    ids.len() as i64 == CHUNK
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::DatabaseSettings;
    use crate::store::{MessageRecord, Target};

    /// A public message, or one queued for bob, created at `at`.
    fn record(id: u64, at: &str, queued: bool) -> MessageRecord {
        MessageRecord {
            id,
            event: if queued {
                "private-message"
            } else {
                "broadcast-message"
            }
            .into(),
            target: if queued {
                Target::User("bob".into())
            } else {
                Target::All
            },
            sender_id: "alice".into(),
            body: format!("m{id}"),
            kind: None,
            payload: "{}".into(),
            client_msg_id: None,
            live_recipients: 0,
            created_at: at.into(),
            sender_session: None,
        }
    }

    /// Three old messages (one still queued for bob) and two new ones; one pass by age.
    async fn prunes_by_age_keeping_queued(settings: &DatabaseSettings) {
        // Arrange: a store whose own retention task is off, so only this pass deletes.
        let mut settings = settings.clone();
        settings.retention.max_age = None;
        settings.retention.max_count = None;
        let store = Store::open(&settings, crate::metrics::Metrics::shared())
            .await
            .expect("open the store");
        let old = "2020-01-01T00:00:00.000Z";
        let now = crate::protocol::wire::now();
        let mut ids = Vec::new();
        for (at, queued) in [(old, false), (old, true), (old, false)]
            .into_iter()
            .chain([(now.as_str(), false), (now.as_str(), false)])
        {
            let id = store.allocate_message_id();
            let _ = store.log_message(record(id, at, queued));
            ids.push(id);
        }
        store.flush().await;

        // Act
        let report = prune(
            &store,
            &RetentionSettings {
                max_age: Some(Duration::from_secs(86_400)),
                max_count: None,
                interval: Duration::from_secs(60),
            },
        )
        .await
        .expect("prune");

        // Assert
        assert_eq!(report.deleted, 2, "the old public ones: {report:?}");
        assert_eq!(report.highest_id, ids[2]);
        assert_eq!(store.pruned_through(), ids[2]);
        let queued = store.undelivered("bob", 10).await.expect("bob's queue");
        assert_eq!(queued.len(), 1, "the queued one stays, whatever its age");
        assert_eq!(queued[0].0.id, ids[1]);
        store.close().await;
    }

    #[tokio::test]
    async fn a_pass_by_age_deletes_old_messages_but_not_queued_ones() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        prunes_by_age_keeping_queued(&DatabaseSettings::at(dir.path().join("age.db"))).await;
    }

    #[tokio::test]
    async fn a_pass_by_age_deletes_old_messages_but_not_queued_ones_on_postgres() {
        let name = "a_pass_by_age_deletes_old_messages_but_not_queued_ones_on_postgres";
        if let Some(db) = crate::store::postgres::testing::database(name).await {
            prunes_by_age_keeping_queued(&db.settings).await;
        }
    }
}
