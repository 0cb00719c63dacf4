//! Retention's deletes on PostgreSQL; the passes, and why, are in `../retention.rs`.

use sqlx::PgPool;

use super::super::counters::PRUNED_THROUGH;
use super::super::messages::clamp;
use super::super::retention::Cutoff;
use super::counters::raise_counter;

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
