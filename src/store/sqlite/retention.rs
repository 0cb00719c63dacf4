//! Retention's deletes on SQLite; the passes, and why, are in `../retention.rs`. One process
//! owns the file, so a pass needs no lock.

use sqlx::SqlitePool;

use super::super::model::{Cutoff, PRUNED_THROUGH};
use super::counters::raise_counter;

/// Deletes one chunk of at most `chunk` messages past `cutoff` (never one still queued) in
/// its own transaction, raising the pruned-through counter with it.
pub(in crate::store) async fn delete_chunk(
    pool: &SqlitePool,
    cutoff: &Cutoff,
    chunk: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    let (condition, param) = match cutoff {
        Cutoff::OlderThan(at) => ("m.created_at < ?1", at.clone()),
        Cutoff::BeyondNewest(n) => (
            "m.message_id <= (SELECT message_id FROM messages ORDER BY message_id DESC
                               LIMIT 1 OFFSET CAST(?1 AS INTEGER))",
            (*n).min(i64::MAX as u64).to_string(),
        ),
    };
    let sql = format!(
        "DELETE FROM messages WHERE message_id IN (
             SELECT m.message_id FROM messages m
             WHERE {condition}
               AND NOT EXISTS (SELECT 1 FROM deliveries d
                               WHERE d.message_id = m.message_id AND d.delivered_at IS NULL)
             ORDER BY m.message_id LIMIT ?2)
         RETURNING message_id"
    );
    let mut tx = pool.begin().await?;
    let ids: Vec<i64> = sqlx::query_scalar(&sql)
        .bind(param)
        .bind(chunk)
        .fetch_all(&mut *tx)
        .await?;
    if let Some(max) = ids.iter().max() {
        raise_counter(&mut *tx, PRUNED_THROUGH, *max as u64).await?;
    }
    tx.commit().await?;
    Ok(ids)
}
