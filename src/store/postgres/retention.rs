//! Retention's deletes on PostgreSQL, and the lock that lets one node of a cluster run a pass
//! at a time; the passes, and why, are in `../retention.rs`.

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};

use super::super::model::{Cutoff, PRUNED_THROUGH, clamp};
use super::counters::raise_counter;

/// The advisory lock key a retention pass holds (`pg_try_advisory_lock`): one pass at a time
/// over the nodes sharing the database. Any constant no other program on the database uses;
/// this one spells "sb-prune" in ASCII.
pub const CLUSTER_LOCK: i64 = 0x7362_2d70_7275_6e65;

/// [`CLUSTER_LOCK`], held for one pass on a connection of its own: an advisory lock belongs
/// to the session that took it, so that connection must not go back to the pool holding it.
pub(in crate::store) struct PassLock(Option<PoolConnection<Postgres>>);

impl PassLock {
    /// The lock if no other session holds it (another node's pass), else `None` at once.
    pub(in crate::store) async fn try_take(pool: &PgPool) -> Result<Option<Self>, sqlx::Error> {
        let mut conn = pool.acquire().await?;
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(CLUSTER_LOCK)
            .fetch_one(&mut *conn)
            .await?;
        Ok(taken.then_some(Self(Some(conn))))
    }

    /// Releases the lock; the connection goes back to the pool only once it is released.
    pub(in crate::store) async fn release(mut self) {
        let Some(mut conn) = self.0.take() else {
            return;
        };
        let released: Result<bool, _> = sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
            .bind(CLUSTER_LOCK)
            .fetch_one(&mut *conn)
            .await;
        if !matches!(released, Ok(true)) {
            tracing::warn!(
                ?released,
                "could not release the retention lock; closing its connection"
            );
            self.0 = Some(conn);
        }
    }
}

impl Drop for PassLock {
    /// Not released (a failed unlock, or a pass dropped midway): closing the connection ends
    /// its session, and with it the lock, so that no pooled connection keeps it forever.
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            drop(conn.detach());
        }
    }
}

/// Deletes one chunk of at most `chunk` messages past `cutoff` (never one still queued), in
/// its own transaction that also raises the pruned-through counter; returns their ids.
pub(in crate::store) async fn delete_chunk(
    pool: &PgPool,
    cutoff: &Cutoff,
    chunk: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    const DOOMED: &str = "NOT EXISTS (SELECT 1 FROM deliveries d
                          WHERE d.message_id = m.message_id AND d.delivered_at IS NULL)
         ORDER BY m.message_id LIMIT $2)
         RETURNING message_id";
    let mut tx = pool.begin().await?;
    let ids: Vec<i64> = match cutoff {
        Cutoff::OlderThan(at) => {
            sqlx::query_scalar(&format!(
                "DELETE FROM messages WHERE message_id IN (
                     SELECT m.message_id FROM messages m WHERE m.created_at < $1 AND {DOOMED}"
            ))
            .bind(at)
            .bind(chunk)
            .fetch_all(&mut *tx)
            .await?
        }
        Cutoff::BeyondNewest(n) => {
            sqlx::query_scalar(&format!(
                "DELETE FROM messages WHERE message_id IN (
                     SELECT m.message_id FROM messages m
                     WHERE m.message_id <= (SELECT message_id FROM messages
                                            ORDER BY message_id DESC LIMIT 1 OFFSET $1)
                       AND {DOOMED}"
            ))
            .bind(clamp(*n))
            .bind(chunk)
            .fetch_all(&mut *tx)
            .await?
        }
    };
    if let Some(max) = ids.iter().max() {
        raise_counter(&mut *tx, PRUNED_THROUGH, *max as u64).await?;
    }
    tx.commit().await?;
    Ok(ids)
}
