//! The store's own words, shared by every backend: what a message, a session and a page of
//! replay are as the rest of the crate sees them, the filters it reads with, the names of the
//! durable counters, and the mapping of rows (as both backends read them) to these records.
//! No SQL and no pool here: a backend folder (`sqlite/`, `postgres/`) turns these into
//! statements, the writer (`batch.rs`) into rows.

use std::collections::HashMap;

use crate::protocol::payloads::RoomName;

/// Counter name: ids reserved so far (see `ids.rs`).
pub(super) const RESERVED_THROUGH: &str = "message_id_reserved_through";
/// Counter name: the highest id retention deleted, so that `sync` can say history is
/// incomplete.
pub(super) const PRUNED_THROUGH: &str = "pruned_through_message_id";
/// Counter name: the identity of the cluster sharing this database (PostgreSQL).
pub(super) const CLUSTER_IDENTITY: &str = "cluster_identity";

/// Where a message goes: the one description of a target that routing (the hub), storage
/// (this store) and the cluster bus share. Stored as two columns, `messages.target_kind` and
/// `messages.target` ([`Target::kind`], [`Target::key`]); [`Target::from_columns`] reads them
/// back, the one place that knows how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every connection (but the sender's).
    All,
    /// Every connection of one user; queued while the user is offline.
    User(String),
    /// Every connection of the room's members (but the sender's).
    Room(RoomName),
    /// Every connection whose user has this role (but the sender's).
    Role(String),
}

/// Stored target columns that name no target: an unknown kind, or a kind without its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable message target: kind {kind:?}, key {key:?}")]
pub struct BadTarget {
    /// `messages.target_kind` as read.
    pub kind: String,
    /// `messages.target` as read.
    pub key: Option<String>,
}

impl Target {
    /// The value stored in `messages.target_kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::All => "all",
            Self::User(_) => "user",
            Self::Room(_) => "room",
            Self::Role(_) => "role",
        }
    }

    /// The value stored in `messages.target`: the user id, room or role; `None` for all.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::All => None,
            Self::User(user_id) => Some(user_id),
            Self::Room(room) => Some(room.as_str()),
            Self::Role(role) => Some(role),
        }
    }

    /// The target two stored columns name (as [`Target::kind`] and [`Target::key`] wrote
    /// them). A key beside `all` is ignored, as delivery always ignored it; a room that is
    /// no valid room name is refused (no connection could be in it).
    pub fn from_columns(kind: &str, key: Option<String>) -> Result<Self, BadTarget> {
        let bad = |key: Option<String>| BadTarget {
            kind: kind.to_owned(),
            key,
        };
        match (kind, key) {
            ("all", _) => Ok(Self::All),
            ("user", Some(user_id)) => Ok(Self::User(user_id)),
            ("role", Some(role)) => Ok(Self::Role(role)),
            ("room", Some(room)) => RoomName::parse(&room)
                .map(Self::Room)
                .map_err(|_| bad(Some(room))),
            (_, key) => Err(bad(key)),
        }
    }

    /// The user a message to this target is addressed to: the one whose offline queue and
    /// delivery record it gets.
    pub fn user(&self) -> Option<&str> {
        match self {
            Self::User(user_id) => Some(user_id),
            Self::All | Self::Room(_) | Self::Role(_) => None,
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
    /// Where it goes; a message to a user also gets a row in that user's deliveries
    /// (its offline queue until taken).
    pub target: Target,
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
        self.target.user().filter(|_| waits)
    }
}

/// What the original of a resent message was acknowledged with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalAck {
    pub id: u64,
    /// Connections it reached live.
    pub delivered: u64,
    /// Whether it was queued for an offline user.
    pub queued: bool,
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
    pub id: u64,
    /// The original event name.
    pub event: String,
    /// The original payload.
    pub payload: String,
    /// Whether it is addressed to the reader (its delivery is recorded when taken).
    pub to_reader: bool,
}

/// Who is reading, for the visibility rule (`sql.rs`, `VISIBLE_TO_READER`).
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    pub user_id: &'a str,
    /// Current role.
    pub role: &'a str,
    /// Rooms the reader is a stored member of but may not read now (its token no longer
    /// grants them, its role is no longer allowed: the hub decides from the access rules).
    /// Their messages are neither replayed nor listed to it, while the membership stays.
    pub unreadable: &'a [String],
}

/// How a user became a member of a room, as [`Store::room_joined`](super::Store::room_joined)
/// records it (the `room_members.by_server` and `history_from` columns).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinedHow {
    /// The application added the member (REST, the embedded API), not the user's own
    /// `join-room`. Kept true once either join said so: an application add over a self-join
    /// makes it a server membership.
    pub by_server: bool,
    /// The member reads only the room's messages created at or after this wire timestamp
    /// (`protocol::wire::now()`'s format); `None`, all of its stored history. A repeated
    /// join keeps the first one.
    pub history_from: Option<String>,
}

/// One stored room membership, as the hub loads it at start.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredMembership {
    pub room: String,
    pub user_id: String,
    /// When the user first joined (a wire timestamp).
    pub joined_at: String,
    /// See [`JoinedHow::by_server`].
    pub by_server: bool,
    /// See [`JoinedHow::history_from`].
    pub history_from: Option<String>,
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

/// One page of replay, named field by field (two ids, two bounds and a flag are easy to swap
/// when passed by position).
#[derive(Debug, Clone, Copy)]
pub struct ReplayPage<'a> {
    /// Whose view: the visibility rule and the offline queue are this user's.
    pub reader: Reader<'a>,
    /// Every message the reader may see (the visibility rule) with an id above this.
    pub since: Option<u64>,
    /// Also everything still in the reader's offline queue.
    pub undelivered: bool,
    /// Ids above this only: the last id of the previous page.
    pub cursor: u64,
    /// Ids up to this only: a [`Store::read_horizon`](super::Store::read_horizon), or a point
    /// the caller flushed past.
    pub until: u64,
    /// Most rows; a page shorter than this is the last.
    pub limit: u32,
}

impl ReplayPage<'_> {
    /// The lower bound of the visible arms (public, to the reader, ..., its rooms): past the
    /// cursor and past `since`; `None` without `since`, when only the queue is read.
    pub(super) fn visible_after(&self) -> Option<u64> {
        self.since.map(|since| since.max(self.cursor))
    }
}

/// Database integers are i64; ids never come near the top of that range.
pub(super) fn clamp(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
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

/// Replayed rows `(message_id, event, payload, to the reader)` as messages.
pub(super) fn replayed(rows: Vec<(i64, String, String, bool)>) -> Vec<StoredMessage> {
    rows.into_iter()
        .map(|(id, event, payload, to_reader)| StoredMessage {
            id: id as u64,
            event,
            payload,
            to_reader,
        })
        .collect()
}

/// Undelivered rows per user, `(user_id, count)`, as queue lengths.
pub(super) fn queue_lengths_of(rows: Vec<(String, i64)>) -> Vec<(String, u64)> {
    rows.into_iter()
        .map(|(user, n)| (user, n.max(0) as u64))
        .collect()
}

/// What the stored history says about one user. Live sessions count too: their rows are open
/// and measured up to `now`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserHistory {
    /// Sessions ever opened.
    pub sessions_count: u64,
    /// Seconds connected, summed over every session.
    pub total_connected_seconds: u64,
    /// When the user was first seen.
    pub first_seen: String,
}

/// Per user, `(user_id, sessions, seconds connected, first seen)` as both backends read it.
pub(super) type HistoryRow = (String, i64, f64, String);

/// The history rows, keyed by user.
pub(super) fn history_of(rows: Vec<HistoryRow>) -> HashMap<String, UserHistory> {
    rows.into_iter()
        .map(|(user_id, count, seconds, first_seen)| {
            (
                user_id,
                UserHistory {
                    sessions_count: count.max(0) as u64,
                    total_connected_seconds: seconds.max(0.0).round() as u64,
                    first_seen,
                },
            )
        })
        .collect()
}

/// One stored session, as the REST API lists it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct SessionRow {
    pub session_id: i64,
    /// `ws` or `socketio`.
    pub transport: String,
    /// Peer address.
    pub remote_addr: Option<String>,
    /// `User-Agent`.
    pub user_agent: Option<String>,
    /// When it opened.
    pub connected_at: String,
    /// When it ended (`null` while connected).
    pub disconnected_at: Option<String>,
    /// Why it ended.
    pub disconnect_reason: Option<String>,
}

/// A stored session with whose it is, as the operator dashboard's history lists it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecentSession {
    /// The user it belonged to.
    pub user_id: String,
    #[sqlx(flatten)]
    pub session: SessionRow,
}

/// Which messages a retention chunk deletes (besides those still queued, which stay).
pub(super) enum Cutoff {
    /// Created before this wire timestamp.
    OlderThan(String),
    /// Beyond the newest this many.
    BeyondNewest(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_reads_back_from_its_columns_as_it_was_written() {
        let room = RoomName::parse("ops").expect("a room name");
        for target in [
            Target::All,
            Target::User("alice".into()),
            Target::Room(room),
            Target::Role("ADMIN".into()),
        ] {
            let read = Target::from_columns(target.kind(), target.key().map(String::from));
            assert_eq!(read, Ok(target.clone()), "{target:?}");
        }
    }

    #[test]
    fn columns_that_name_no_target_are_refused() {
        let cases = [
            ("everyone", None, "an unknown kind"),
            ("user", None, "a user without an id"),
            ("room", None, "a room without a name"),
            ("role", None, "a role without its name"),
            ("room", Some("not a room!"), "a room name no room can have"),
        ];
        for (kind, key, why) in cases {
            assert!(
                Target::from_columns(kind, key.map(String::from)).is_err(),
                "{why}"
            );
        }
        assert_eq!(
            Target::from_columns("all", Some("x".into())),
            Ok(Target::All),
            "a key beside `all` is ignored, as delivery always did"
        );
    }
}
