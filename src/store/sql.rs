//! The statements both dialects accept, written once. They use `$n` parameters, which sqlx
//! gives SQLite positionally too (`$2` is the second bound value, as on PostgreSQL), so one
//! text serves both; each backend folder binds and runs them next to its own dialect's
//! statements, under the same function names. A statement that must differ (SQLite's `MAX`
//! against PostgreSQL's `GREATEST`, `json_each` against arrays, the replay's arms) stays in
//! its backend's file; the listing differs in one fragment only (how a list of rooms is
//! bound), which each backend hands to [`list`], so the visibility rule is still written once.

// ---- Messages and the offline queue ----

/// The visibility rule: whether the reader whose user id is bound as `$1` and whose role is
/// bound as `$2` may see the message `m`. A reader sees
/// - public messages (`all`);
/// - messages to it, and the private messages it sent (only `private-message`: a
///   notification to a user is not replayed to whoever sent it);
/// - the messages of the rooms it is a member of *now* (joining a room opens its history,
///   leaving closes it), from the membership's `history_from` on (all of them when NULL),
///   but none of a room the access rules keep it from reading now (`Reader::unreadable`,
///   bound at `$7`: `unreadable` is the dialect's "`m.target` is one of them");
/// - notifications to its role (its role now, as its token says).
///
/// `created_at >= history_from` compares text on both backends (both columns are TEXT,
/// `migrations/postgres/0002_messages.sql` too): wire timestamps are fixed-width ISO-8601
/// UTC (`protocol::wire::timestamp`), so their text order is their time order.
///
/// Every query that applies it binds the reader at `$1` and `$2` and uses the alias `m` for
/// `messages`. The replay (`sqlite/replay.rs`, `postgres/replay.rs`) states it again as one
/// index-backed arm per line above, so that a page costs the same however long the log: a
/// change here is a change there. The tests of `sqlite/messages.rs` hold the two to the same
/// answer on every kind of message, on both backends.
fn visible_to_reader(unreadable: &str) -> String {
    format!(
        "(
    m.target_kind = 'all'
    OR (m.target_kind = 'user' AND (m.target = $1
        OR (m.sender_id = $1 AND m.event = 'private-message')))
    OR (m.target_kind = 'room' AND NOT ({unreadable})
        AND EXISTS (SELECT 1 FROM room_members rm
            WHERE rm.user_id = $1 AND rm.room = m.target
              AND (rm.history_from IS NULL OR m.created_at >= rm.history_from)))
    OR (m.target_kind = 'role' AND m.target = $2))"
    )
}

/// The message listing of the REST API: `$1` viewer user (NULL: an admin, who sees
/// everything), `$2` its role, `$3` since, `$4` room filter, `$5` user filter, `$6` limit,
/// `$7` the rooms the viewer may not read, which `unreadable` says `m.target` is one of
/// (SQLite has no arrays: a JSON array there, `m.target IN (SELECT value FROM json_each($7))`;
/// PostgreSQL binds a `text[]`, `m.target = ANY($7)`). Each backend builds it once.
pub(super) fn list(unreadable: &str) -> String {
    let visible = visible_to_reader(unreadable);
    format!(
        "SELECT m.message_id, m.event, m.payload
         FROM messages m
         WHERE m.message_id > $3
           AND ($4 IS NULL OR (m.target_kind = 'room' AND m.target = $4))
           AND ($5 IS NULL OR m.sender_id = $5 OR (m.target_kind = 'user' AND m.target = $5))
           AND ($1 IS NULL OR {visible})
         ORDER BY m.message_id
         LIMIT $6"
    )
}

/// The message `$1` (sender) already sent with the idempotency key `$2`:
/// `(message_id, live_recipients, target_kind)`.
pub(super) const FIND_BY_CLIENT_MSG_ID: &str =
    "SELECT message_id, live_recipients, target_kind FROM messages
     WHERE sender_id = $1 AND client_msg_id = $2";

/// User `$1`'s undelivered messages, oldest first, at most `$2`:
/// `(message_id, event, payload, queued_at)`.
pub(super) const UNDELIVERED: &str = "SELECT m.message_id, m.event, m.payload, d.queued_at
     FROM deliveries d JOIN messages m ON m.message_id = d.message_id
     WHERE d.user_id = $1 AND d.delivered_at IS NULL
     ORDER BY m.message_id LIMIT $2";

/// Undelivered rows per user: the offline queue lengths.
pub(super) const QUEUE_LENGTHS: &str =
    "SELECT user_id, COUNT(*) FROM deliveries WHERE delivered_at IS NULL GROUP BY user_id";

/// The highest message id stored (0 if none).
pub(super) const LAST_STORED_ID: &str = "SELECT COALESCE(MAX(message_id), 0) FROM messages";

// ---- Sessions and server runs ----

/// Run `$1` is alive at `$2` (the time a crash would close its sessions at).
pub(super) const RUN_ALIVE: &str = "UPDATE server_runs SET last_alive_at = $2 WHERE run_id = $1";

/// Run `$1` ended cleanly at `$2`.
pub(super) const RUN_STOPPED: &str =
    "UPDATE server_runs SET last_alive_at = $2, stopped_at = $2 WHERE run_id = $1";

/// Closes session `$1` at `$2` for reason `$3`; a row already closed keeps its first ending.
/// Returns `(user_id, transport)` of the session it closed (no row: none).
pub(super) const CLOSE_SESSION: &str =
    "UPDATE sessions SET disconnected_at = $2, disconnect_reason = $3
     WHERE session_id = $1 AND disconnected_at IS NULL
     RETURNING user_id, transport";

/// User `$1`'s sessions, newest first, at most `$2`.
pub(super) const SESSIONS_OF: &str =
    "SELECT session_id, transport, remote_addr, user_agent, connected_at, disconnected_at,
            disconnect_reason
     FROM sessions WHERE user_id = $1 ORDER BY session_id DESC LIMIT $2";

/// The `$1` newest sessions of anyone, newest first (the primary key's order: ids grow with
/// time).
pub(super) const RECENT_SESSIONS: &str =
    "SELECT user_id, session_id, transport, remote_addr, user_agent, connected_at,
            disconnected_at, disconnect_reason
     FROM sessions ORDER BY session_id DESC LIMIT $1";

// ---- Rooms, users, counters ----

/// Every stored room membership, as a `StoredMembership`.
pub(super) const MEMBERSHIPS: &str =
    "SELECT room, user_id, joined_at, by_server, history_from FROM room_members
     ORDER BY room, user_id";

/// Makes `$2` a member of room `$1` at `$3`, added by the application if `$4`, reading the
/// room's messages from `$5` on (NULL: all). Joining twice keeps the first `joined_at` and
/// `history_from`; `by_server` becomes true if either join says so (SQLite's 0/1 integers
/// and PostgreSQL's `BOOLEAN` both take `OR` and `NOT`), and a join that changes nothing
/// writes nothing. Returns the row's `joined_at` when it wrote one: `$3` for a new
/// membership (no row: nothing changed).
pub(super) const JOIN_ROOM: &str =
    "INSERT INTO room_members (room, user_id, joined_at, by_server, history_from)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (room, user_id) DO UPDATE
     SET by_server = room_members.by_server OR excluded.by_server
     WHERE excluded.by_server AND NOT room_members.by_server
     RETURNING joined_at";

/// Ends the membership of `$2` in room `$1`.
pub(super) const LEAVE_ROOM: &str = "DELETE FROM room_members WHERE room = $1 AND user_id = $2";

/// Every user ever seen.
pub(super) const KNOWN_USERS: &str = "SELECT user_id FROM users";

/// Every token revocation, `(user_id, not_before)`.
pub(super) const TOKEN_REVOCATIONS: &str = "SELECT user_id, not_before FROM token_revocations";

/// The value of the counter named `$1` (no row: never written).
pub(super) const COUNTER: &str = "SELECT value FROM counters WHERE name = $1";

// ---- The webhook outbox ----

/// Endpoint `$1`'s pending events, oldest first, at most `$2` (the partial index
/// `webhook_events_pending` holds exactly these).
pub(super) const PENDING_WEBHOOKS: &str =
    "SELECT event_id, type, occurred_at, COALESCE(resent_at, occurred_at) AS retried_since, data
     FROM webhook_events
     WHERE endpoint = $1 AND sent_at IS NULL AND failed_at IS NULL
     ORDER BY event_id LIMIT $2";

/// Failed events of endpoint `$1` (NULL: every endpoint) with ids above `$2`, oldest first,
/// at most `$3`.
pub(super) const FAILED_WEBHOOKS: &str =
    "SELECT event_id, endpoint, type, occurred_at, data, attempts, last_error, failed_at
     FROM webhook_events
     WHERE failed_at IS NOT NULL AND ($1 IS NULL OR endpoint = $1) AND event_id > $2
     ORDER BY event_id LIMIT $3";

/// The ids of [`FAILED_WEBHOOKS`]' rows from the start, without their data (a resend).
pub(super) const FAILED_WEBHOOK_IDS: &str = "SELECT event_id FROM webhook_events
     WHERE failed_at IS NOT NULL AND ($1 IS NULL OR endpoint = $1)
     ORDER BY event_id LIMIT $2";

/// Per endpoint: pending events and when the oldest happened.
pub(super) const WEBHOOK_PENDING_COUNTS: &str =
    "SELECT endpoint, COUNT(*), MIN(occurred_at) FROM webhook_events
     WHERE sent_at IS NULL AND failed_at IS NULL GROUP BY endpoint ORDER BY endpoint";

/// Per endpoint: failed events.
pub(super) const WEBHOOK_FAILED_COUNTS: &str = "SELECT endpoint, COUNT(*) FROM webhook_events
     WHERE failed_at IS NOT NULL GROUP BY endpoint ORDER BY endpoint";

/// Deletes up to 2,000 sent or failed events that happened before `$1`.
pub(super) const PRUNE_WEBHOOK_EVENTS: &str = "DELETE FROM webhook_events WHERE event_id IN (
         SELECT event_id FROM webhook_events
         WHERE (sent_at IS NOT NULL OR failed_at IS NOT NULL) AND occurred_at < $1
         LIMIT 2000)";
