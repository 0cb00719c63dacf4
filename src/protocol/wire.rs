//! The objects the server sends, with the field names of `docs/protocol.md` (camelCase), and the
//! timestamp format: ISO-8601 UTC with milliseconds, e.g. `2026-11-26T07:01:02.345Z`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Formats a time as the wire's timestamp (`docs/protocol.md` section 3).
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The current time as the wire's timestamp.
pub fn now() -> String {
    timestamp(SystemTime::now())
}

/// The user object: who someone is and how they are connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = User)]
pub struct UserObject {
    /// User id (`sub`).
    pub user_id: String,
    /// Display name.
    pub username: String,
    /// Role.
    pub role: String,
    /// Time of the user's oldest live connection.
    #[schema(format = DateTime)]
    pub connected_at: String,
    /// Number of live connections.
    pub sessions: usize,
}

/// `connected`: first frame on every connection.
#[derive(Debug, Serialize)]
pub struct Connected<'a> {
    /// A greeting.
    pub message: String,
    /// The caller.
    pub user: &'a UserObject,
    /// When.
    pub timestamp: String,
    /// Rooms the user is back in.
    pub rooms: Vec<String>,
}

/// `user-connected` / `user-disconnected`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Presence<'a> {
    /// Who.
    pub user: &'a UserObject,
    /// When.
    pub timestamp: String,
    /// Distinct users online after the change.
    pub active_users_count: usize,
}

/// `presence-diff`: every presence change of one window (`PRESENCE_EVENTS=diff`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceDiff<'a> {
    /// Users whose first connection opened in the window (and who are still online).
    pub joins: &'a [UserObject],
    /// Users whose last connection closed in the window (and who are still offline).
    pub leaves: &'a [UserObject],
    /// Distinct users online at the end of the window.
    pub active_users_count: usize,
    /// When the window closed.
    pub timestamp: &'a str,
}

/// `presence-summary`: the presence changes of a storm, counted instead of named (section 9,
/// "Presence storms"); the client's list of users is out of date until it asks again.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceSummary {
    /// Users whose first connection opened among the changes summed up.
    pub connected: u64,
    /// Users whose last connection closed among them.
    pub disconnected: u64,
    /// Distinct users online after the last of them.
    pub active_users_count: usize,
    /// When the summary was made.
    pub timestamp: String,
}

/// `active-users`.
#[derive(Debug, Serialize)]
pub struct ActiveUsers {
    /// One entry per online user.
    pub users: Vec<UserObject>,
    /// How many.
    pub count: usize,
}

/// One entry of `connectionTimes` in the statistics.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionTime {
    /// User id.
    pub user_id: String,
    /// Display name.
    pub username: String,
    /// Oldest live connection.
    #[schema(format = DateTime)]
    pub connected_at: String,
    /// Seconds since `connectedAt`.
    pub connected_seconds: u64,
    /// Seconds connected over the whole stored history, live sessions included.
    pub total_connected_seconds: u64,
    /// Sessions over the whole stored history, live ones included.
    pub sessions_count: u64,
    /// When the user was first seen.
    #[schema(format = DateTime)]
    pub first_seen: String,
}

/// `users-stats` (and `GET /websocket/users-stats`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Stats)]
pub struct UsersStats {
    /// Distinct users connected now.
    pub total_users: usize,
    /// Online users per role.
    pub users_by_role: BTreeMap<String, usize>,
    /// One entry per connected user.
    pub connection_times: Vec<ConnectionTime>,
}

/// `broadcast-message`, `private-message` and `room-message`.
#[derive(Debug, Serialize)]
pub struct ChatMessage<'a> {
    /// The message id (the recovery cursor).
    pub id: u64,
    /// The sender.
    pub from: &'a UserObject,
    /// The text.
    pub message: &'a str,
    /// The room (`room-message` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<&'a str>,
    /// When it was sent.
    pub timestamp: &'a str,
}

/// `joined-room` / `left-room`: the caller's confirmation.
#[derive(Debug, Serialize)]
pub struct RoomConfirmation<'a> {
    /// The room.
    pub room: &'a str,
    /// A readable sentence.
    pub message: String,
}

impl<'a> RoomConfirmation<'a> {
    /// The `joined-room` every connection of a user hears when the application adds it to
    /// `room` (REST, the embedded API).
    pub fn added(room: &'a str) -> Self {
        Self {
            room,
            message: format!("Added to room {room} by the server"),
        }
    }
}

/// `left-room` for a membership the server ended (the token no longer grants the room, the
/// application removed the user): told to every connection of the user, on every node.
#[derive(Debug, Serialize)]
pub struct RoomDropped<'a> {
    /// The room.
    pub room: &'a str,
    /// A readable sentence.
    pub message: String,
    /// Why, as a stable code.
    pub reason: LeftReason,
}

impl<'a> RoomDropped<'a> {
    /// The `left-room` of `room` ended for `reason`, with its sentence.
    pub fn new(room: &'a str, reason: LeftReason) -> Self {
        let message = match reason {
            LeftReason::NotGranted => format!("Left room {room}: your token does not grant it"),
            LeftReason::Removed => format!("Removed from room {room} by the server"),
        };
        Self {
            room,
            message,
            reason,
        }
    }
}

/// Why the server ended a membership (`left-room`'s `reason`); it also travels between the
/// nodes of a cluster, so that every node tells the user's connections alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeftReason {
    /// The user's newest token no longer grants the room.
    NotGranted,
    /// The application removed the member (REST, the embedded API).
    Removed,
}

/// `user-joined-room` / `user-left-room`: told to the room's other members.
#[derive(Debug, Serialize)]
pub struct RoomPresence<'a> {
    /// Who.
    pub user: &'a UserObject,
    /// The room.
    pub room: &'a str,
    /// When.
    pub timestamp: String,
}

/// `notification`, `broadcast-notification` and `role-notification`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification<'a> {
    /// The message id.
    pub id: u64,
    /// Who sent it: the REST caller, or the `system` user for the embedded API.
    pub from: &'a UserObject,
    /// The text.
    pub message: &'a str,
    /// `info`, `warning`, ... (free-form, default `info`).
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// The role it was sent to (`role-notification` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_role: Option<&'a str>,
    /// When.
    pub timestamp: &'a str,
}

/// The sender of messages from the embedded API.
pub fn system_user() -> UserObject {
    UserObject {
        user_id: "system".into(),
        username: "system".into(),
        role: "SYSTEM".into(),
        connected_at: now(),
        sessions: 0,
    }
}

/// `sync-complete`: the end of a replay.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncComplete {
    /// The highest id replayed (or the `since` asked for, when nothing was): the next
    /// `since`.
    pub last_message_id: u64,
    /// Messages replayed by this call.
    pub count: usize,
    /// True when the limit cut the replay short: call `sync` again from `lastMessageId`.
    pub more: bool,
    /// False when retention already deleted messages after `since`: the history the client
    /// holds has a hole, and it should reload rather than trust it.
    pub complete: bool,
}

/// `token-expiring`: the connection's token expires soon; send `refresh-token`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenExpiring {
    /// The token's `exp` (seconds since the epoch).
    pub exp: u64,
    /// Whole seconds until then (0 when already past; the connection closes at
    /// `exp` + `JWT_LEEWAY_SECS`).
    pub seconds_left: u64,
}

/// `error`.
#[derive(Debug, Serialize)]
pub struct ErrorPayload<'a> {
    /// What was refused and why.
    pub message: &'a str,
    /// The stable snake_case code of the refusal (the README's "Error codes").
    pub code: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_are_iso_8601_utc_with_milliseconds() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_676_462_345);
        assert_eq!(timestamp(t), "2026-11-26T07:01:02.345Z");
    }
}
