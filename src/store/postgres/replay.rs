//! The replay behind `sync` and a connection's catch-up on PostgreSQL; see `../replay.rs`
//! for why the visibility rule is split into arms, each an equality on an index plus a range
//! on the id. PostgreSQL does not stop a UNION early the way SQLite's merge does, so each arm
//! carries its own `ORDER BY message_id LIMIT`: a page reads at most `limit` index entries
//! per arm, whatever lies past it. The reader's rooms are one arm, a LATERAL join over its
//! memberships (each room a bounded index range), so any number of rooms fits one statement.
//! The arms must say exactly what `VISIBLE_TO_READER` says; the tests of `../messages.rs`
//! compare the two on PostgreSQL too.

use sqlx::PgPool;

use super::super::messages::{StoredMessage, clamp};
use super::super::replay::{ReplayPage, replayed};

/// The page: `$1` reader, `$2` its role, `$3` the bound of the visible arms (NULL without
/// `since`, which empties them), `$4` the cursor, `$5` until, `$6` the limit, `$7` whether to
/// read the offline queue. UNION also drops the ids two arms share (a private message to
/// oneself).
const PAGE: &str = "
SELECT m.message_id, m.event, m.payload, (m.target_kind = 'user' AND m.target = $1)
FROM (
    (SELECT message_id FROM messages
     WHERE target_kind = 'all' AND target IS NULL AND message_id > $3 AND message_id <= $5
     ORDER BY message_id LIMIT $6)
    UNION
    (SELECT message_id FROM messages
     WHERE target_kind = 'user' AND target = $1 AND message_id > $3 AND message_id <= $5
     ORDER BY message_id LIMIT $6)
    UNION
    (SELECT message_id FROM messages
     WHERE sender_id = $1 AND target_kind = 'user' AND event = 'private-message'
       AND message_id > $3 AND message_id <= $5
     ORDER BY message_id LIMIT $6)
    UNION
    (SELECT message_id FROM messages
     WHERE target_kind = 'role' AND target = $2 AND message_id > $3 AND message_id <= $5
     ORDER BY message_id LIMIT $6)
    UNION
    (SELECT r.message_id FROM room_members rm
     CROSS JOIN LATERAL (
         SELECT message_id FROM messages
         WHERE target_kind = 'room' AND target = rm.room
           AND message_id > $3 AND message_id <= $5
         ORDER BY message_id LIMIT $6) r
     WHERE rm.user_id = $1)
    UNION
    (SELECT message_id FROM deliveries
     WHERE $7 AND user_id = $1 AND delivered_at IS NULL AND message_id > $4 AND message_id <= $5
     ORDER BY message_id LIMIT $6)
    ORDER BY 1 LIMIT $6
) AS page
JOIN messages m ON m.message_id = page.message_id
ORDER BY m.message_id";

/// One page of replay, oldest first, ids in `(cursor, until]`.
pub(in crate::store) async fn replay_page(
    pool: &PgPool,
    page: ReplayPage<'_>,
) -> Result<Vec<StoredMessage>, sqlx::Error> {
    let rows = sqlx::query_as::<_, (i64, String, String, bool)>(PAGE)
        .bind(page.reader.user_id)
        .bind(page.reader.role)
        .bind(page.visible_after().map(clamp))
        .bind(clamp(page.cursor))
        .bind(clamp(page.until))
        .bind(i64::from(page.limit))
        .bind(page.undelivered)
        .fetch_all(pool)
        .await?;
    Ok(replayed(rows))
}
