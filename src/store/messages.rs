//! The message log: what a message row holds, the idempotency lookup, and the replay query
//! behind the offline queue and `sync`.

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
    /// The wire id.
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
pub async fn find_by_client_msg_id(
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
    Ok(row.map(|(id, live, kind)| OriginalAck {
        id: id as u64,
        delivered: live as u64,
        queued: kind == "user" && live == 0,
    }))
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

/// One page of replay for `reader`, oldest first, ids in `(cursor, until]`:
/// - every message the reader may see with an id above `since` (public ones, private ones to
///   or from it, its rooms' messages as of its membership now, notifications to it or its
///   role), when `since` is given;
/// - plus, when `undelivered` is set, everything still in its offline queue.
pub async fn replay_page(
    pool: &SqlitePool,
    reader: Reader<'_>,
    since: Option<u64>,
    undelivered: bool,
    cursor: u64,
    until: u64,
    limit: u32,
) -> Result<Vec<StoredMessage>, sqlx::Error> {
    // SQLite integers are i64; ids never come near the top of that range.
    let clamp = |v: u64| v.min(i64::MAX as u64) as i64;
    let rows: Vec<(i64, String, String, bool)> = sqlx::query_as(
        "SELECT m.message_id, m.event, m.payload, (m.target_kind = 'user' AND m.target = ?1)
         FROM messages m
         WHERE m.message_id > ?5 AND m.message_id <= ?6 AND (
             (?3 IS NOT NULL AND m.message_id > ?3 AND (
                 m.target_kind = 'all'
                 OR (m.target_kind = 'user' AND (m.target = ?1
                     OR (m.sender_id = ?1 AND m.event = 'private-message')))
                 OR (m.target_kind = 'room'
                     AND m.target IN (SELECT room FROM room_members WHERE user_id = ?1))
                 OR (m.target_kind = 'role' AND m.target = ?2)))
             OR (?4 AND m.message_id IN (SELECT message_id FROM deliveries
                                         WHERE user_id = ?1 AND delivered_at IS NULL)))
         ORDER BY m.message_id
         LIMIT ?7",
    )
    .bind(reader.user_id)
    .bind(reader.role)
    .bind(since.map(clamp))
    .bind(undelivered)
    .bind(clamp(cursor))
    .bind(clamp(until))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, event, payload, to_reader)| StoredMessage {
            id: id as u64,
            event,
            payload,
            to_reader,
        })
        .collect())
}

/// Undelivered rows per user, to enforce the offline queue bound.
pub async fn pending_counts(pool: &SqlitePool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT user_id, COUNT(*) FROM deliveries WHERE delivered_at IS NULL GROUP BY user_id",
    )
    .fetch_all(pool)
    .await
}

/// Every stored room membership `(room, user_id)`.
pub async fn memberships(pool: &SqlitePool) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT room, user_id FROM room_members ORDER BY room, user_id")
        .fetch_all(pool)
        .await
}

/// Every user ever seen.
pub async fn known_users(pool: &SqlitePool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT user_id FROM users")
        .fetch_all(pool)
        .await
}

/// Reads a named counter.
pub async fn counter(pool: &SqlitePool, name: &str) -> Result<u64, sqlx::Error> {
    let value: Option<i64> = sqlx::query_scalar("SELECT value FROM counters WHERE name = ?1")
        .bind(name)
        .fetch_optional(pool)
        .await?;
    Ok(value.unwrap_or(0).max(0) as u64)
}

/// Raises a named counter to at least `value` (inside the caller's transaction or not).
pub async fn raise_counter<'e, E>(executor: E, name: &str, value: u64) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    sqlx::query(
        "INSERT INTO counters (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)",
    )
    .bind(name)
    .bind(value.min(i64::MAX as u64) as i64)
    .execute(executor)
    .await?;
    Ok(())
}

/// Counter name: ids reserved so far.
pub const RESERVED_THROUGH: &str = "message_id_reserved_through";
/// Counter name: the highest id retention deleted.
pub const PRUNED_THROUGH: &str = "pruned_through_message_id";

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
/// see (the `sync` rule); without one (an admin), everything.
pub async fn list(
    pool: &SqlitePool,
    filter: &ListFilter,
    viewer: Option<Reader<'_>>,
) -> Result<Vec<StoredMessage>, sqlx::Error> {
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT m.message_id, m.event, m.payload
         FROM messages m
         WHERE m.message_id > ?1
           AND (?2 IS NULL OR (m.target_kind = 'room' AND m.target = ?2))
           AND (?3 IS NULL OR m.sender_id = ?3 OR (m.target_kind = 'user' AND m.target = ?3))
           AND (?4 IS NULL OR
                m.target_kind = 'all'
                OR (m.target_kind = 'user' AND (m.target = ?4
                    OR (m.sender_id = ?4 AND m.event = 'private-message')))
                OR (m.target_kind = 'room'
                    AND m.target IN (SELECT room FROM room_members WHERE user_id = ?4))
                OR (m.target_kind = 'role' AND m.target = ?5))
         ORDER BY m.message_id
         LIMIT ?6",
    )
    .bind(filter.since.min(i64::MAX as u64) as i64)
    .bind(&filter.room)
    .bind(&filter.user)
    .bind(viewer.map(|v| v.user_id))
    .bind(viewer.map(|v| v.role))
    .bind(i64::from(filter.limit))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, event, payload)| StoredMessage {
            id: id as u64,
            event,
            payload,
            to_reader: false,
        })
        .collect())
}

/// A user's undelivered messages, oldest first, with when each was queued.
pub async fn undelivered(
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
    Ok(rows
        .into_iter()
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
        .collect())
}
