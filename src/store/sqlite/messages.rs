//! The message log (`messages`) and the offline queue (`deliveries`) on SQLite: the
//! idempotency lookup, the offline queue, and the listing of the REST API, all with the
//! statements of `../sql.rs` (the visibility rule among them, which the replay of
//! `replay.rs` splits into index-backed arms; the tests below hold the two to the same answer
//! on every kind of message, on both backends, so that `sync` and `GET /websocket/messages`
//! cannot disagree). Rows are inserted by the writer's batched INSERTs (`writer.rs`) and
//! deleted by retention (`retention.rs`).

use std::sync::LazyLock;

use sqlx::SqlitePool;

use super::super::model::{
    ListFilter, OriginalAck, Reader, StoredMessage, clamp, listed, original_ack, queue_lengths_of,
    queued,
};
use super::super::sql;

/// The listing of `../sql.rs`, its unreadable rooms (`$7`) read the way this dialect can.
static LIST: LazyLock<String> =
    LazyLock::new(|| sql::list("m.target IN (SELECT value FROM json_each($7))"));

/// The stored message a sender already sent with this idempotency key, if any.
pub(in crate::store) async fn find_by_client_msg_id(
    pool: &SqlitePool,
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

/// Stored messages matching `filter`, oldest first. With a `viewer`, only what that user may
/// see (the visibility rule, as `sync` applies it); without one (an admin), everything.
pub(in crate::store) async fn list(
    pool: &SqlitePool,
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
        .bind(serde_json::Value::from(unreadable).to_string())
        .fetch_all(pool)
        .await?;
    Ok(listed(rows))
}

/// A user's undelivered messages, oldest first, with when each was queued.
pub(in crate::store) async fn undelivered(
    pool: &SqlitePool,
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

/// Undelivered rows per user: the offline queue lengths, loaded once at start and then kept
/// in memory by the store.
pub(in crate::store) async fn queue_lengths(
    pool: &SqlitePool,
) -> Result<Vec<(String, u64)>, sqlx::Error> {
    let rows: Vec<(String, i64)> = sqlx::query_as(sql::QUEUE_LENGTHS).fetch_all(pool).await?;
    Ok(queue_lengths_of(rows))
}

/// The highest message id stored (0 if none).
pub(in crate::store) async fn last_stored_id(pool: &SqlitePool) -> Result<u64, sqlx::Error> {
    let max: i64 = sqlx::query_scalar(sql::LAST_STORED_ID)
        .fetch_one(pool)
        .await?;
    Ok(max.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use crate::config::DatabaseSettings;
    use crate::protocol::payloads::RoomName;
    use crate::protocol::wire::timestamp;
    use crate::store::{
        JoinedHow, ListFilter, MessageRecord, Reader, ReplayPage, Store, StoredMessage, Target,
    };

    /// A message from `sender` to `target`, as the hub would log it.
    fn record(id: u64, event: &str, target: Target, sender: &str) -> MessageRecord {
        MessageRecord {
            id,
            event: event.into(),
            target,
            sender_id: sender.into(),
            body: format!("m{id}"),
            kind: None,
            payload: "{}".into(),
            client_msg_id: None,
            live_recipients: 1,
            // Now, not a fixed date: retention runs at start and deletes old messages.
            created_at: crate::protocol::wire::now(),
            sender_session: None,
        }
    }

    #[tokio::test]
    async fn sync_and_the_message_listing_show_a_reader_the_same_messages() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        same_answer(&DatabaseSettings::at(dir.path().join("rule.db"))).await;
    }

    #[tokio::test]
    async fn sync_and_the_message_listing_show_a_reader_the_same_messages_on_postgres() {
        let name = "sync_and_the_message_listing_show_a_reader_the_same_messages_on_postgres";
        if let Some(db) = crate::store::postgres::testing::database(name).await {
            same_answer(&db.settings).await;
        }
    }

    async fn same_answer(settings: &DatabaseSettings) {
        // Arrange: one message of each kind the rule tells apart, and bob in room "a".
        let store = Store::open(settings, crate::metrics::Metrics::shared())
            .await
            .expect("open the store");
        store.room_joined("a", "bob", "2024-01-01T00:00:00Z", JoinedHow::default());
        let user = |id: &str| Target::User(id.into());
        let room = |name: &str| Target::Room(RoomName::parse(name).expect("a room name"));
        let role = |role: &str| Target::Role(role.into());
        let messages = [
            ("broadcast-message", Target::All, "alice"),
            ("private-message", user("bob"), "alice"),
            ("private-message", user("carol"), "bob"),
            ("notification", user("carol"), "bob"),
            ("private-message", user("carol"), "alice"),
            ("room-message", room("a"), "alice"),
            ("room-message", room("b"), "alice"),
            ("notification", role("ADMIN"), "system"),
            ("notification", role("USER"), "system"),
        ];
        let mut ids = Vec::new();
        for (event, target, sender) in messages {
            let id = store.allocate_message_id();
            let _ = store.log_message(record(id, event, target, sender));
            ids.push(id);
        }
        let bob = Reader {
            user_id: "bob",
            role: "USER",
            unreadable: &[],
        };

        // Act
        let (replayed, listed) = seen_by(&store, bob).await;

        // Assert
        let visible = [ids[0], ids[1], ids[2], ids[5], ids[8]];
        assert_eq!(replayed, visible, "what sync replays to bob");
        assert_eq!(
            listed, visible,
            "what GET /websocket/messages lists for bob"
        );
        store.close().await;
    }

    /// The ids `reader` gets from a replay from 0 (one page) and from the listing, in order.
    async fn seen_by(store: &Store, reader: Reader<'_>) -> (Vec<u64>, Vec<u64>) {
        let until = store.read_horizon().await;
        let replayed = store
            .replay_page(ReplayPage {
                reader,
                since: Some(0),
                undelivered: false,
                cursor: 0,
                until,
                limit: 100,
            })
            .await
            .expect("replay");
        let listed = store
            .list_messages(
                &ListFilter {
                    limit: 100,
                    ..ListFilter::default()
                },
                Some(reader),
            )
            .await
            .expect("list");
        let ids_of = |rows: &[StoredMessage]| rows.iter().map(|m| m.id).collect::<Vec<_>>();
        (ids_of(&replayed), ids_of(&listed))
    }

    #[tokio::test]
    async fn replay_and_listing_start_a_room_at_history_from_and_skip_unreadable_rooms() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        history_and_access(&DatabaseSettings::at(dir.path().join("access.db"))).await;
    }

    #[tokio::test]
    async fn replay_and_listing_start_a_room_at_history_from_and_skip_unreadable_rooms_on_pg() {
        let name =
            "replay_and_listing_start_a_room_at_history_from_and_skip_unreadable_rooms_on_pg";
        if let Some(db) = crate::store::postgres::testing::database(name).await {
            history_and_access(&db.settings).await;
        }
    }

    async fn history_and_access(settings: &DatabaseSettings) {
        // Arrange: bob reads "old" from its start, "new" from `from` on, and may not read
        // "shut" now; messages in each before, exactly at and after `from`. Times are recent:
        // retention runs at start and deletes old messages.
        let store = Store::open(settings, crate::metrics::Metrics::shared())
            .await
            .expect("open the store");
        let ago = |secs| timestamp(SystemTime::now() - Duration::from_secs(secs));
        let (before, from, after) = (ago(60), ago(30), ago(0));
        let joined = |history_from: Option<&String>| JoinedHow {
            by_server: true,
            history_from: history_from.cloned(),
        };
        store.room_joined("old", "bob", &before, joined(None));
        store.room_joined("new", "bob", &from, joined(Some(&from)));
        store.room_joined("shut", "bob", &before, joined(None));
        let room = |name: &str| Target::Room(RoomName::parse(name).expect("a room name"));
        let messages = [
            (room("old"), &before),
            (room("new"), &before),
            (room("shut"), &before),
            (Target::All, &before),
            (room("new"), &from),
            (room("old"), &after),
            (room("new"), &after),
            (room("shut"), &after),
        ];
        let mut ids = Vec::new();
        for (target, at) in messages {
            let id = store.allocate_message_id();
            let mut message = record(id, "room-message", target, "alice");
            message.created_at = at.clone();
            let _ = store.log_message(message);
            ids.push(id);
        }
        let unreadable = ["shut".to_owned()];
        let bob = Reader {
            user_id: "bob",
            role: "USER",
            unreadable: &unreadable,
        };

        // Act
        let (replayed, listed) = seen_by(&store, bob).await;

        // Assert: all of "old", "new" from `from` on (inclusive), none of "shut".
        let visible = [ids[0], ids[3], ids[4], ids[5], ids[6]];
        assert_eq!(replayed, visible, "what sync replays to bob");
        assert_eq!(
            listed, visible,
            "what GET /websocket/messages lists for bob"
        );
        store.close().await;
    }
}
