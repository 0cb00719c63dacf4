//! The message log and the offline queue on PostgreSQL: the idempotency lookup, the offline
//! queue and the listing with the statements of `../sql.rs` (see `../sqlite/messages.rs`),
//! and the read-back of committed messages a node of a cluster missed on the bus.

use std::sync::LazyLock;

use sqlx::PgPool;

use super::super::model::{
    ListFilter, OriginalAck, Reader, StoredMessage, Target, clamp, listed, original_ack,
    queue_lengths_of, queued,
};
use super::super::sequence::CommittedMessage;
use super::super::sql;

/// The listing of `../sql.rs`, its unreadable rooms (`$7`) read the way this dialect can.
static LIST: LazyLock<String> = LazyLock::new(|| sql::list("m.target = ANY($7)"));

/// The stored message a sender already sent with this idempotency key, if any.
pub(in crate::store) async fn find_by_client_msg_id(
    pool: &PgPool,
    sender_id: &str,
    client_msg_id: &str,
) -> Result<Option<OriginalAck>, sqlx::Error> {
    let row: Option<(i64, i64, String)> = sqlx::query_as(sql::FIND_BY_CLIENT_MSG_ID)
        .bind(sender_id)
        .bind(client_msg_id)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(original_ack))
}

/// Stored messages matching `filter`, oldest first; with a `viewer`, only what it may see.
pub(in crate::store) async fn list(
    pool: &PgPool,
    filter: &ListFilter,
    viewer: Option<Reader<'_>>,
) -> Result<Vec<StoredMessage>, sqlx::Error> {
    let unreadable = viewer.map_or(&[][..], |v| v.unreadable);
    let rows: Vec<(i64, String, String)> = sqlx::query_as(LIST.as_str())
        .bind(viewer.map(|v| v.user_id))
        .bind(viewer.map(|v| v.role))
        .bind(clamp(filter.since))
        .bind(&filter.room)
        .bind(&filter.user)
        .bind(i64::from(filter.limit))
        .bind(unreadable)
        .fetch_all(pool)
        .await?;
    Ok(listed(rows))
}

/// A user's undelivered messages, oldest first, with when each was queued.
pub(in crate::store) async fn undelivered(
    pool: &PgPool,
    user_id: &str,
    limit: u32,
) -> Result<Vec<(StoredMessage, String)>, sqlx::Error> {
    let rows: Vec<(i64, String, String, String)> = sqlx::query_as(sql::UNDELIVERED)
        .bind(user_id)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
    Ok(queued(rows))
}

/// Undelivered rows per user: the offline queue lengths, loaded at start (and, in a cluster,
/// again and again: another node marks deliveries too).
pub(in crate::store) async fn queue_lengths(
    pool: &PgPool,
) -> Result<Vec<(String, u64)>, sqlx::Error> {
    let rows: Vec<(String, i64)> = sqlx::query_as(sql::QUEUE_LENGTHS).fetch_all(pool).await?;
    Ok(queue_lengths_of(rows))
}

/// The highest message id stored (0 if none).
pub(in crate::store) async fn last_stored_id(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let max: i64 = sqlx::query_scalar(sql::LAST_STORED_ID)
        .fetch_one(pool)
        .await?;
    Ok(max.max(0) as u64)
}

/// `(message_id, event, target_kind, target, payload, sender_session)`.
type CommittedRow = (i64, String, String, Option<String>, String, Option<i64>);

/// The stored messages with ids in `[from, through]`, oldest first, at most `limit` rows, as
/// a node delivers them (`../sequence.rs`: what it missed on the bus), and, when the page is
/// full, the id it stopped at (a row whose target is unreadable is skipped but counts).
pub(in crate::store) async fn committed_between(
    pool: &PgPool,
    from: u64,
    through: u64,
    limit: u32,
) -> Result<(Vec<CommittedMessage>, Option<u64>), sqlx::Error> {
    let rows: Vec<CommittedRow> = sqlx::query_as(
        "SELECT message_id, event, target_kind, target, payload, sender_session FROM messages
         WHERE message_id BETWEEN $1 AND $2 ORDER BY message_id LIMIT $3",
    )
    .bind(clamp(from))
    .bind(clamp(through))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    // A full page may stop short of `through`: where it stopped (rows counted as read, a
    // skipped one included).
    let stopped_at = (rows.len() == limit as usize)
        .then(|| rows.last().map(|row| row.0.max(0) as u64))
        .flatten();
    let messages = rows
        .into_iter()
        .filter_map(|(id, event, kind, target, payload, sender_session)| {
            let target = match Target::from_columns(&kind, target) {
                Ok(target) => target,
                Err(e) => {
                    tracing::warn!(id, error = %e, "skipping a message with an unreadable target");
                    return None;
                }
            };
            Some(CommittedMessage {
                id: id.max(0) as u64,
                event,
                target,
                payload,
                sender_session: sender_session.map(|s| s.max(0) as u64),
            })
        })
        .collect();
    Ok((messages, stopped_at))
}
