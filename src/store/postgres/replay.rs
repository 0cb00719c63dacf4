//! The replay behind `sync` and a connection's catch-up on PostgreSQL; see `../sqlite/replay.rs`
//! for why the visibility rule is split into arms, each an equality on an index plus a range
//! on the id. PostgreSQL does not stop a UNION early the way SQLite's merge does, so each arm
//! carries its own `ORDER BY message_id LIMIT`: a page reads at most `limit` index entries
//! per arm, whatever lies past it. The reader's rooms are one arm, a LATERAL join over its
//! memberships (each room a bounded index range), so any number of rooms fits one statement;
//! it leaves out the rooms the reader may not read now (bound as a text array) and filters
//! each room's rows by the membership's `history_from`, as on SQLite (see there why that is
//! a filter on the walked range and not an id bound). `created_at` and `history_from` are
//! both TEXT (`migrations/postgres/0002_messages.sql`, `0007_room_member_access.sql`) in the
//! one fixed-width ISO-8601 UTC format, so they compare as text, in time order.
//! The arms must say exactly what `VISIBLE_TO_READER` says; the tests of `../sqlite/messages.rs`
//! compare the two on PostgreSQL too.

use sqlx::PgPool;

use super::super::model::{ReplayPage, StoredMessage, clamp, replayed};

/// The page: `$1` reader, `$2` its role, `$3` the bound of the visible arms (NULL without
/// `since`, which empties them), `$4` the cursor, `$5` until, `$6` the limit, `$7` whether to
/// read the offline queue, `$8` the rooms it may not read (`text[]`). UNION also drops the ids two arms share (a private message to
/// oneself). The page's ids go through an array so that its rows are then fetched by primary
/// key: joined to a subquery instead, the planner may hash the whole table to find them.
const PAGE: &str = "
SELECT m.message_id, m.event, m.payload, (m.target_kind = 'user' AND m.target = $1)
FROM unnest(ARRAY(
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
           AND (rm.history_from IS NULL OR created_at >= rm.history_from)
         ORDER BY message_id LIMIT $6) r
     WHERE rm.user_id = $1 AND rm.room <> ALL($8))
    UNION
    (SELECT message_id FROM deliveries
     WHERE $7 AND user_id = $1 AND delivered_at IS NULL AND message_id > $4 AND message_id <= $5
     ORDER BY message_id LIMIT $6)
    ORDER BY 1 LIMIT $6
)) AS page (message_id)
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
        .bind(page.reader.unreadable)
        .fetch_all(pool)
        .await?;
    Ok(replayed(rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Backend, Store};

    /// On a log large enough that PostgreSQL's planner prefers indexes where they help, no
    /// arm may read `messages` or `deliveries` sequentially: each must be an index range on
    /// the id, bounded by its own LIMIT.
    #[tokio::test]
    async fn every_arm_reads_an_index_range_on_postgres() {
        // Arrange: 50,000 messages of every kind over 500 users and 200 rooms, u1 in three
        // rooms, a delivery row per private message (1 in 25 still queued); statistics up to
        // date.
        let name = "every_arm_reads_an_index_range_on_postgres";
        let Some(db) = crate::store::postgres::testing::database(name).await else {
            return;
        };
        let store = Store::open(&db.settings, crate::metrics::Metrics::shared())
            .await
            .expect("open the store");
        let Backend::Postgres(pool) = &store.inner.backend else {
            unreachable!("opened on PostgreSQL")
        };
        for statement in [
            "INSERT INTO messages (message_id, event, target_kind, target, sender_id, body,
                 payload, live_recipients, created_at)
             SELECT n,
                    CASE n % 4 WHEN 1 THEN 'private-message' WHEN 2 THEN 'room-message'
                               WHEN 3 THEN 'notification' ELSE 'broadcast-message' END,
                    CASE n % 4 WHEN 1 THEN 'user' WHEN 2 THEN 'room' WHEN 3 THEN 'role'
                               ELSE 'all' END,
                    CASE n % 4 WHEN 1 THEN 'u' || (n % 500) WHEN 2 THEN 'r' || (n % 200)
                               WHEN 3 THEN 'ROLE' || (n % 5) ELSE NULL END,
                    'u' || ((n * 7) % 500), 'm', '{}', 0, '2026-11-29T00:00:00.000Z'
             FROM generate_series(1, 50000) AS n",
            // Most delivered, a few still queued: as an offline queue looks.
            "INSERT INTO deliveries (user_id, message_id, queued_at, delivered_at)
             SELECT target, message_id, created_at,
                    CASE WHEN message_id % 100 = 1 THEN NULL ELSE created_at END
             FROM messages WHERE target_kind = 'user'",
            // One room read from a point in its history, one the reader may not read.
            "INSERT INTO room_members (room, user_id, joined_at, history_from)
             VALUES ('r2', 'u1', 'x', NULL), ('r6', 'u1', 'x', NULL),
                 ('r10', 'u1', 'x', '2026-11-28T00:00:00.000Z')",
            "ANALYZE",
        ] {
            sqlx::query(statement).execute(pool).await.expect(statement);
        }

        // Act
        let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {PAGE}"))
            .bind("u1")
            .bind("ROLE1")
            .bind(Some(0_i64))
            .bind(0_i64)
            .bind(50_000_i64)
            .bind(1000_i64)
            .bind(true)
            .bind(["r6".to_owned()].as_slice())
            .fetch_all(pool)
            .await
            .expect("explain");

        // Assert
        let plan = plan.join("\n");
        assert!(
            !plan.contains("Seq Scan on messages") && !plan.contains("Seq Scan on deliveries"),
            "an arm scans a table:\n{plan}"
        );
        for index in [
            "messages_by_target",
            "messages_private_by_sender",
            "deliveries_pending",
        ] {
            assert!(plan.contains(index), "{index} unused:\n{plan}");
        }
        let ranges = plan.matches("message_id > ").count();
        assert!(
            ranges >= 6,
            "every arm bounds the id in its index condition:\n{plan}"
        );
        store.close().await;
    }
}
