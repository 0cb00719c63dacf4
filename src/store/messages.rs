//! The message log (`messages`) and the offline queue (`deliveries`): what a message row
//! holds, the idempotency lookup, the offline queue, and the listings of the REST API. What
//! a user may see is one rule, [`VISIBLE_TO_READER`], applied as written by the listing and
//! split into index-backed arms by the replay behind `sync` (`replay.rs`, where a page must
//! not cost more as history grows); the tests below hold the two to the same answer on every
//! kind of message, so that `sync` and `GET /websocket/messages` cannot disagree. Rows are
//! inserted by the writer's batched INSERTs (`writer.rs`) and deleted by retention
//! (`retention.rs`).

use std::sync::LazyLock;

use sqlx::SqlitePool;

/// Where a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// Everyone.
    All,
    /// One user.
    User,
    /// A room's members.
    Room,
    /// Everyone with a role.
    Role,
}

impl TargetKind {
    /// The kind a stored `messages.target_kind` names.
    pub fn parse(stored: &str) -> Option<Self> {
        Some(match stored {
            "all" => Self::All,
            "user" => Self::User,
            "room" => Self::Room,
            "role" => Self::Role,
            _ => return None,
        })
    }

    /// The value stored in `messages.target_kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::User => "user",
            Self::Room => "room",
            Self::Role => "role",
        }
    }
}

/// One message to store, with its delivery row if it is addressed to a user.
#[derive(Debug)]
pub struct MessageRecord {
    /// The wire id; 0 while sequenced at commit (`sequence.rs`), which assigns it.
    pub id: u64,
    /// The event name it was delivered as.
    pub event: String,
    /// Target kind.
    pub target_kind: TargetKind,
    /// User id, room or role (`None` for all).
    pub target: Option<String>,
    /// The sender's user id.
    pub sender_id: String,
    /// The text.
    pub body: String,
    /// Notification type.
    pub kind: Option<String>,
    /// The JSON payload as delivered.
    pub payload: String,
    /// The sender's idempotency key.
    pub client_msg_id: Option<String>,
    /// Connections it was sent to live.
    pub live_recipients: u64,
    /// When.
    pub created_at: String,
    /// The user whose offline queue / delivery record gets a row.
    pub recipient: Option<String>,
    /// The sending connection, left out of delivery once sequenced (`None`: REST, embedded).
    pub sender_session: Option<u64>,
}

impl MessageRecord {
    /// The user whose offline-queue count ([`Store::queued_for`](super::Store::queued_for))
    /// this message adds to. Sequenced (a cluster, id 0 until the commit), a message the
    /// recipient takes live on another node is marked delivered there, out of this node's
    /// sight, so only one that waits for the recipient is counted.
    pub(super) fn counted_recipient(&self) -> Option<&str> {
        let waits = self.id != 0 || self.live_recipients == 0;
        self.recipient.as_deref().filter(|_| waits)
    }
}

/// What the original of a resent message was acknowledged with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalAck {
    /// Its id.
    pub id: u64,
    /// Connections it reached live.
    pub delivered: u64,
    /// Whether it was queued for an offline user.
    pub queued: bool,
}

/// The stored message a sender already sent with this idempotency key, if any.
pub(super) async fn find_by_client_msg_id(
    pool: &SqlitePool,
    sender_id: &str,
    client_msg_id: &str,
) -> Result<Option<OriginalAck>, sqlx::Error> {
    let row: Option<(i64, i64, String)> = sqlx::query_as(
        "SELECT message_id, live_recipients, target_kind FROM messages
         WHERE sender_id = ?1 AND client_msg_id = ?2",
    )
    .bind(sender_id)
    .bind(client_msg_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(original_ack))
}

/// What the original was acknowledged with, from its `(message_id, live_recipients,
/// target_kind)`: queued when it went to a user nobody received live.
pub(super) fn original_ack((id, live, kind): (i64, i64, String)) -> OriginalAck {
    OriginalAck {
        id: id as u64,
        delivered: live as u64,
        queued: kind == "user" && live == 0,
    }
}

/// A stored message as it is replayed.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// Its id.
    pub id: u64,
    /// The original event name.
    pub event: String,
    /// The original payload.
    pub payload: String,
    /// Whether it is addressed to the reader (its delivery is recorded when taken).
    pub to_reader: bool,
}

/// Who is reading, for the visibility rule.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    /// User id.
    pub user_id: &'a str,
    /// Current role.
    pub role: &'a str,
}

/// The visibility rule: whether the reader whose user id is bound as `$1` and whose role is
/// bound as `$2` may see the message `m`. Written once for both backends (`$n` is a
/// positional parameter to SQLite through sqlx as to PostgreSQL). A reader sees
/// - public messages (`all`);
/// - messages to it, and the private messages it sent (only `private-message`: a
///   notification to a user is not replayed to whoever sent it);
/// - the messages of the rooms it is a member of *now* (joining a room opens its history,
///   leaving closes it);
/// - notifications to its role (its role now, as its token says).
///
/// Every query that applies it binds the reader at `$1` and `$2` and uses the alias `m` for
/// `messages`. `replay.rs` (and `postgres/replay.rs`) state it again as one arm per line
/// above: a change here is a change there.
const VISIBLE_TO_READER: &str = "(
    m.target_kind = 'all'
    OR (m.target_kind = 'user' AND (m.target = $1
        OR (m.sender_id = $1 AND m.event = 'private-message')))
    OR (m.target_kind = 'room'
        AND m.target IN (SELECT room FROM room_members WHERE user_id = $1))
    OR (m.target_kind = 'role' AND m.target = $2))";

/// [`list`]'s query, for both backends: `$1` viewer user (NULL: an admin, who sees
/// everything), `$2` its role, `$3` since, `$4` room filter, `$5` user filter, `$6` limit.
pub(super) static LIST: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT m.message_id, m.event, m.payload
         FROM messages m
         WHERE m.message_id > $3
           AND ($4 IS NULL OR (m.target_kind = 'room' AND m.target = $4))
           AND ($5 IS NULL OR m.sender_id = $5 OR (m.target_kind = 'user' AND m.target = $5))
           AND ($1 IS NULL OR {VISIBLE_TO_READER})
         ORDER BY m.message_id
         LIMIT $6"
    )
});

/// SQLite integers are i64; ids never come near the top of that range.
pub(super) fn clamp(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

/// Filters for listing stored messages.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only messages to this room.
    pub room: Option<String>,
    /// Only messages from or to this user.
    pub user: Option<String>,
    /// Only ids above this.
    pub since: u64,
    /// At most this many.
    pub limit: u32,
}

/// Stored messages matching `filter`, oldest first. With a `viewer`, only what that user may
/// see ([`VISIBLE_TO_READER`], the `sync` rule); without one (an admin), everything.
pub(super) async fn list(
    pool: &SqlitePool,
    filter: &ListFilter,
    viewer: Option<Reader<'_>>,
) -> Result<Vec<StoredMessage>, sqlx::Error> {
    let rows: Vec<(i64, String, String)> = sqlx::query_as(LIST.as_str())
        .bind(viewer.map(|v| v.user_id))
        .bind(viewer.map(|v| v.role))
        .bind(clamp(filter.since))
        .bind(&filter.room)
        .bind(&filter.user)
        .bind(i64::from(filter.limit))
        .fetch_all(pool)
        .await?;
    Ok(listed(rows))
}

/// Listed rows `(message_id, event, payload)` as messages.
pub(super) fn listed(rows: Vec<(i64, String, String)>) -> Vec<StoredMessage> {
    rows.into_iter()
        .map(|(id, event, payload)| StoredMessage {
            id: id as u64,
            event,
            payload,
            to_reader: false,
        })
        .collect()
}

/// A user's undelivered messages, oldest first, with when each was queued.
pub(super) async fn undelivered(
    pool: &SqlitePool,
    user_id: &str,
    limit: u32,
) -> Result<Vec<(StoredMessage, String)>, sqlx::Error> {
    let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
        "SELECT m.message_id, m.event, m.payload, d.queued_at
         FROM deliveries d JOIN messages m ON m.message_id = d.message_id
         WHERE d.user_id = ?1 AND d.delivered_at IS NULL
         ORDER BY m.message_id LIMIT ?2",
    )
    .bind(user_id)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    Ok(queued(rows))
}

/// Offline-queue rows `(message_id, event, payload, queued_at)` as messages to the reader.
pub(super) fn queued(rows: Vec<(i64, String, String, String)>) -> Vec<(StoredMessage, String)> {
    rows.into_iter()
        .map(|(id, event, payload, queued_at)| {
            (
                StoredMessage {
                    id: id as u64,
                    event,
                    payload,
                    to_reader: true,
                },
                queued_at,
            )
        })
        .collect()
}

/// Undelivered rows per user: the offline queue lengths, loaded once at start and then kept
/// in memory by the store.
pub(super) async fn queue_lengths(pool: &SqlitePool) -> Result<Vec<(String, u64)>, sqlx::Error> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT user_id, COUNT(*) FROM deliveries WHERE delivered_at IS NULL GROUP BY user_id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(user, n)| (user, n.max(0) as u64))
        .collect())
}

/// The highest message id stored (0 if none).
pub(super) async fn last_stored_id(pool: &SqlitePool) -> Result<u64, sqlx::Error> {
    let max: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(message_id), 0) FROM messages")
        .fetch_one(pool)
        .await?;
    Ok(max.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatabaseSettings;
    use crate::store::{ReplayPage, Store};

    /// A message from `sender` to `target`, as the hub would log it.
    fn record(
        id: u64,
        event: &str,
        target: (TargetKind, Option<&str>),
        sender: &str,
    ) -> MessageRecord {
        let (target_kind, target) = target;
        MessageRecord {
            id,
            event: event.into(),
            target_kind,
            target: target.map(String::from),
            sender_id: sender.into(),
            body: format!("m{id}"),
            kind: None,
            payload: "{}".into(),
            client_msg_id: None,
            live_recipients: 1,
            // Now, not a fixed date: retention runs at start and deletes old messages.
            created_at: crate::protocol::wire::now(),
            recipient: None,
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
        let store = Store::open(settings).await.expect("open the store");
        store.room_joined("a", "bob", "2024-01-01T00:00:00Z");
        let messages = [
            ("broadcast-message", (TargetKind::All, None), "alice"),
            ("private-message", (TargetKind::User, Some("bob")), "alice"),
            ("private-message", (TargetKind::User, Some("carol")), "bob"),
            ("notification", (TargetKind::User, Some("carol")), "bob"),
            (
                "private-message",
                (TargetKind::User, Some("carol")),
                "alice",
            ),
            ("room-message", (TargetKind::Room, Some("a")), "alice"),
            ("room-message", (TargetKind::Room, Some("b")), "alice"),
            ("notification", (TargetKind::Role, Some("ADMIN")), "system"),
            ("notification", (TargetKind::Role, Some("USER")), "system"),
        ];
        let mut ids = Vec::new();
        for (event, target, sender) in messages {
            let id = store.allocate_message_id();
            let _ = store.log_message(record(id, event, target, sender));
            ids.push(id);
        }
        let until = store.read_horizon().await;
        let bob = Reader {
            user_id: "bob",
            role: "USER",
        };

        // Act
        let replayed = store
            .replay_page(ReplayPage {
                reader: bob,
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
                Some(bob),
            )
            .await
            .expect("list");

        // Assert
        let visible = [ids[0], ids[1], ids[2], ids[5], ids[8]];
        let ids_of = |rows: &[StoredMessage]| rows.iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(ids_of(&replayed), visible, "what sync replays to bob");
        assert_eq!(
            ids_of(&listed),
            visible,
            "what GET /websocket/messages lists for bob"
        );
        store.close().await;
    }
}
