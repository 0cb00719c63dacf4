//! Checkpoints off the write path. SQLite's default copies the WAL back into the database file
//! from inside the commit that passes 1,000 pages, with an fsync: measured on the durable
//! private-message path, that was 13 % of the writer thread's time, paid by whichever batch of
//! acks happened to cross the line. Here every connection opens with `wal_autocheckpoint=0`
//! (`connect` in `mod.rs`) and this task checkpoints from a pool connection instead, on a
//! timer: `PASSIVE`, so it never waits for (or blocks) the writer, and a page rewritten many
//! times within one interval is copied once. The WAL is then at most about one interval of
//! writes long, and is reset by the writer once a checkpoint has caught up with it.

use std::time::Duration;

use sqlx::SqlitePool;

/// Time between checkpoints.
const INTERVAL: Duration = Duration::from_millis(500);

/// Checkpoints `pool`'s database until the pool is closed.
pub(super) fn spawn(pool: SqlitePool) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if pool.is_closed() {
                return;
            }
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                if pool.is_closed() {
                    return;
                }
                tracing::warn!(error = %e, "WAL checkpoint failed; trying again");
            }
        }
    });
}
