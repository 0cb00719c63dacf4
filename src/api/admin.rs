//! The operator dashboard's data (admins only; the page itself is [`super::dashboard`]):
//!
//! - `GET /websocket/admin/overview` → one [`AdminOverview`] snapshot
//! - `GET /websocket/admin/stream` → the same snapshot as Server-Sent Events, right away and
//!   then every second, so the page is live without polling. The page reads it with `fetch()`
//!   and a stream reader, so the token travels in the `Authorization` header (an
//!   `EventSource` could only put it in the URL, where logs and history keep it).
//!
//! A snapshot is cheap on purpose, since every open dashboard takes one a second: live state
//! comes from one bounded walk of the hub ([`Hub::overview`]), the offline queues from the
//! store's memory, the counters from the metrics, and the one SQL read is the last
//! [`RECENT_SESSIONS`] session rows (by primary key). Every list is bounded; the totals
//! beside each say how much was left out.

use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use futures_util::stream;
use serde::Serialize;
use tokio::time::{Interval, MissedTickBehavior};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::Admin;
use super::openapi::AdminRefusals;
use super::users::Session;
use crate::app::AppState;
use crate::auth::Identity;
use crate::hub::{LiveRoom, LiveSession, LiveUser, OverviewLimits};
use crate::protocol::wire::{self, UserObject};
use crate::store::{OfflineQueues, RecentSession, StoreError};

/// How much a snapshot lists at most.
const LIMITS: OverviewLimits = OverviewLimits {
    users: 200,
    rooms: 100,
    members_per_room: 50,
};
/// Offline queues listed (the longest).
const QUEUES_LISTED: usize = 20;
/// Session rows listed in the history (the newest).
const RECENT_SESSIONS: u32 = 50;
/// How often the stream sends a snapshot.
const STREAM_EVERY: Duration = Duration::from_secs(1);

/// Everything the dashboard shows, at one moment.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct AdminOverview {
    /// When the snapshot was taken.
    #[schema(format = DateTime)]
    server_time: String,
    /// Counters that only grow; the page charts rates from their change between snapshots.
    counters: Counters,
    /// Online users (connected longest first, at most 200), each with their connections.
    users: Vec<OnlineUserEntry>,
    /// Users online in all.
    users_total: usize,
    /// Live connections in all.
    sessions_total: usize,
    /// Rooms with members (most members first, at most 100).
    rooms: Vec<RoomEntry>,
    /// Rooms with at least one member in all.
    rooms_total: usize,
    /// Undelivered messages waiting for offline users.
    offline_queues: QueuesEntry,
    /// The 50 newest sessions of anyone, newest first, live ones included.
    recent_sessions: Vec<RecentSessionEntry>,
}

/// Growing counters since this process started (the gateway's metrics), to chart rates from.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Counters {
    /// Messages committed.
    messages_stored: u64,
    /// Connections registered.
    connections_opened: u64,
}

/// An online user and their connections.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct OnlineUserEntry {
    #[serde(flatten)]
    user: UserObject,
    /// Their live connections, oldest first.
    connections: Vec<ConnectionEntry>,
}

/// One live connection.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ConnectionEntry {
    /// Session id (as in the session history).
    session_id: u64,
    /// `ws` or `socketio`.
    transport: &'static str,
    /// The client's address, when known.
    remote_addr: Option<String>,
    /// When it opened.
    #[schema(format = DateTime)]
    connected_at: String,
}

/// A room and its members.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct RoomEntry {
    /// The room's name.
    name: String,
    /// Members in all (membership outlives connections).
    members_total: usize,
    /// Members online now.
    online_total: usize,
    /// Who may join, who may post, what a member replays (`ROOM_POLICIES`).
    policy: PolicyEntry,
    /// Online members first, at most 50.
    members: Vec<MemberEntry>,
}

/// A room's policy, as `switchboard check-config` prints it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct PolicyEntry {
    /// The pattern of the policy that matched the room (`*` for the default).
    pattern: String,
    /// Who may join: `anyone`, `token`, `roles A,B`, `members`, `hook`.
    join: String,
    /// Who may post: `members`, `roles A,B`, `server`.
    post: String,
    /// What a member replays: `all` or `since_join`.
    history: String,
}

/// A member of a room.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct MemberEntry {
    /// The member's user id.
    user_id: String,
    /// Whether they are connected.
    online: bool,
    /// Whether the application added them (REST, the embedded API).
    added_by_server: bool,
}

/// The offline queues.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct QueuesEntry {
    /// The longest queues first, at most 20.
    largest: Vec<QueueEntry>,
    /// Users with undelivered messages.
    users: usize,
    /// Undelivered messages in all.
    messages: u64,
}

/// One user's offline queue.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct QueueEntry {
    /// The user.
    user_id: String,
    /// Messages waiting for them.
    pending: u64,
}

/// A stored session, with whose it is.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct RecentSessionEntry {
    /// The user it belongs to.
    user_id: String,
    #[serde(flatten)]
    session: Session,
}

/// A snapshot for the operator dashboard.
///
/// Online users with their connections, rooms with their members, offline queues, the newest
/// sessions with why they ended, and growing counters to chart rates from. Lists are bounded.
/// Admins only.
#[utoipa::path(
    get,
    path = "/websocket/admin/overview",
    tag = "admin",
    responses((status = 200, description = "snapshot", body = AdminOverview), AdminRefusals)
)]
pub(super) async fn overview(
    State(app): State<AppState>,
    _: Admin,
) -> Result<Json<AdminOverview>, ApiError> {
    // Like the other REST reads: what was sent to the store before the call is in it.
    let recent = app
        .store
        .after_writes()
        .await
        .recent_sessions(RECENT_SESSIONS)
        .await;
    snapshot(&app, recent).map(Json)
}

/// The dashboard's snapshot, live, as Server-Sent Events.
///
/// One `overview` event (its data: the JSON of `GET /websocket/admin/overview`) right away,
/// then one a second. If the history cannot be read, that second's event is an `error` event
/// with the error body instead. The stream ends when the caller's token expires or is
/// revoked, or the server stops. Admins only.
#[utoipa::path(
    get,
    path = "/websocket/admin/stream",
    tag = "admin",
    responses(
        (status = 200, description = "`text/event-stream` of `overview` events",
            content_type = "text/event-stream", body = AdminOverview),
        AdminRefusals
    )
)]
pub(super) async fn stream(
    State(app): State<AppState>,
    Admin(caller): Admin,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut every = tokio::time::interval(STREAM_EVERY);
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let expires = UNIX_EPOCH + Duration::from_secs(caller.exp);
    let ticks = Ticks {
        app,
        every,
        expires,
        caller,
    };
    Sse::new(stream::unfold(ticks, Ticks::next)).keep_alive(KeepAlive::default())
}

/// The stream's state: what to read, when, and until when.
struct Ticks {
    app: AppState,
    every: Interval,
    /// The caller's token's `exp`: an admin's stream lasts no longer than their token.
    expires: SystemTime,
    /// Who asked: a revocation of their tokens ends the stream too.
    caller: Identity,
}

impl Ticks {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        tokio::select! {
            () = self.app.stopping.cancelled() => return None,
            _ = self.every.tick() => {}
        }
        if SystemTime::now() >= self.expires
            || self.app.verifier.revocations().refuses(&self.caller)
        {
            return None;
        }
        // Without waiting for the writer: a second-old row is fine here, a stream stuck
        // behind a stuck disk is not.
        let recent = self.app.store.recent_sessions(RECENT_SESSIONS).await;
        let event = match snapshot(&self.app, recent) {
            Ok(overview) => Event::default().event("overview").json_data(&overview),
            Err(e) => Event::default().event("error").json_data(ErrorBody {
                error: &e.message,
                code: None,
            }),
        };
        // Serializing our own types cannot fail; an event without data is the fallback.
        Some((Ok(event.unwrap_or_default()), self))
    }
}

/// The snapshot around `recent`, the newest session rows as the caller read them.
fn snapshot(
    app: &AppState,
    recent: Result<Vec<RecentSession>, StoreError>,
) -> Result<AdminOverview, ApiError> {
    let recent = recent.map_err(|e| {
        tracing::error!(error = %e, "could not read the recent sessions");
        ApiError::unavailable()
    })?;
    let live = app.hub.overview(LIMITS);
    let totals = app.metrics.totals();
    Ok(AdminOverview {
        server_time: wire::now(),
        counters: Counters {
            messages_stored: totals.messages_stored,
            connections_opened: totals.connections_opened,
        },
        users_total: live.users_total,
        sessions_total: live.sessions_total,
        rooms_total: live.rooms_total,
        users: live.users.into_iter().map(OnlineUserEntry::from).collect(),
        rooms: live.rooms.into_iter().map(RoomEntry::from).collect(),
        offline_queues: app.store.offline_queues(QUEUES_LISTED).into(),
        recent_sessions: recent.into_iter().map(RecentSessionEntry::from).collect(),
    })
}

impl From<LiveUser> for OnlineUserEntry {
    fn from(live: LiveUser) -> Self {
        Self {
            user: live.user,
            connections: live
                .sessions
                .into_iter()
                .map(ConnectionEntry::from)
                .collect(),
        }
    }
}

impl From<LiveSession> for ConnectionEntry {
    fn from(s: LiveSession) -> Self {
        Self {
            session_id: s.session_id,
            transport: s.transport.as_str(),
            remote_addr: s.remote_addr.map(|a| a.to_string()),
            connected_at: wire::timestamp(s.connected_at),
        }
    }
}

impl From<LiveRoom> for RoomEntry {
    fn from(room: LiveRoom) -> Self {
        Self {
            name: room.name,
            members_total: room.members_total,
            online_total: room.online_total,
            policy: PolicyEntry {
                pattern: room.policy.pattern,
                join: room.policy.join.to_string(),
                post: room.policy.post.to_string(),
                history: room.policy.history.to_string(),
            },
            members: room
                .members
                .into_iter()
                .map(|m| MemberEntry {
                    user_id: m.user_id,
                    online: m.online,
                    added_by_server: m.by_server,
                })
                .collect(),
        }
    }
}

impl From<OfflineQueues> for QueuesEntry {
    fn from(q: OfflineQueues) -> Self {
        Self {
            largest: q
                .largest
                .into_iter()
                .map(|(user_id, pending)| QueueEntry { user_id, pending })
                .collect(),
            users: q.users,
            messages: q.messages,
        }
    }
}

impl From<RecentSession> for RecentSessionEntry {
    fn from(row: RecentSession) -> Self {
        Self {
            user_id: row.user_id,
            session: row.session.into(),
        }
    }
}
