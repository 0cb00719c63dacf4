//! Who is online, statistics, and per-user views of the store.
//!
//! - `GET /websocket/active-users` → `{ users, count, stats }` (any authenticated caller)
//! - `GET /websocket/users-stats` → the statistics object (any authenticated caller)
//! - `GET /websocket/users/{userId}/sessions?limit=` → session history (admin or that user)
//! - `GET /websocket/users/{userId}/queue?limit=` → undelivered messages (admin or that user)
//! - `POST /websocket/users/{userId}/disconnect` → closes every connection (admin)
//! - `POST /websocket/users/{userId}/revoke` → refuses the user's tokens issued so far and
//!   closes every connection (admin)

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::extract::{Admin, ApiQuery, Caller};
use super::limit::{check_limit, limit_schema};
use super::messages::StoredMessage;
use super::openapi::{AdminRefusals, CallerRefusals, PerUserRefusals};
use crate::app::AppState;
use crate::commands::users_stats as compute_stats;
use crate::hub::{CloseReason, Hub};
use crate::protocol::wire::{self, UserObject, UsersStats};
use crate::store::{AfterWrites, SessionRow, Store, StoreError};

/// `?limit=` (1 to 1000, default 100).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// How many at most (1 to 1000, default 100).
    #[param(schema_with = limit_schema)]
    limit: Option<u32>,
}

/// The answer of `active-users`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct OnlineUsers {
    /// One entry per online user, whatever their number of connections.
    users: Vec<UserObject>,
    /// How many.
    count: usize,
    /// The same statistics as `GET /websocket/users-stats`.
    stats: UsersStats,
}

/// A user's session history.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct UserSessions {
    /// The user asked about.
    user_id: String,
    /// Sessions in this answer.
    count: usize,
    /// Newest first.
    sessions: Vec<Session>,
}

/// One connection of a user, live or ended.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Session {
    /// Session id.
    session_id: i64,
    /// `ws` or `socketio`.
    #[schema(schema_with = transport_schema)]
    transport: String,
    /// The client's address, when known.
    remote_addr: Option<String>,
    /// The client's `User-Agent`, when sent.
    user_agent: Option<String>,
    /// When it opened.
    #[schema(format = DateTime)]
    connected_at: String,
    /// When it ended; null while it is live.
    #[schema(format = DateTime)]
    disconnected_at: Option<String>,
    /// Why it ended (`client_closed`, `kicked`, `slow_consumer`, ...; see the README's close
    /// reasons); null while it is live.
    disconnect_reason: Option<String>,
}

impl From<SessionRow> for Session {
    fn from(row: SessionRow) -> Self {
        Self {
            session_id: row.session_id,
            transport: row.transport,
            remote_addr: row.remote_addr,
            user_agent: row.user_agent,
            connected_at: row.connected_at,
            disconnected_at: row.disconnected_at,
            disconnect_reason: row.disconnect_reason,
        }
    }
}

fn transport_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(["ws", "socketio"]))
        .description(Some("`ws` or `socketio`."))
        .build()
}

/// A user's undelivered messages.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct UserQueue {
    /// The user asked about.
    user_id: String,
    /// Messages in this answer.
    count: usize,
    /// Oldest first.
    messages: Vec<QueuedMessage>,
}

/// A stored message waiting for its recipient.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct QueuedMessage {
    #[serde(flatten)]
    message: StoredMessage,
    /// When it was queued.
    #[schema(format = DateTime)]
    queued_at: String,
}

/// The answer of `disconnect`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Disconnected {
    /// Always true.
    success: bool,
    /// The user asked about.
    user_id: String,
    /// Connections closed (0 when the user was offline).
    disconnected: usize,
}

/// The answer of `revoke`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct TokensRevoked {
    /// Always true.
    success: bool,
    /// The user asked about.
    user_id: String,
    /// From now on this user's tokens need an `iat` of at least this (seconds since the
    /// epoch: the second after the revoke, as `iat` has one-second resolution); older ones
    /// and ones without `iat` are refused on connect, on `refresh-token` and on REST calls.
    not_before: u64,
    /// When the revoke was recorded.
    #[schema(format = DateTime)]
    revoked_at: String,
    /// Connections closed (reason `revoked`; 0 when the user was offline).
    disconnected: usize,
}

/// Online users, one entry per user, with the statistics.
///
/// Any authenticated caller.
#[utoipa::path(
    get,
    path = "/websocket/active-users",
    tag = "presence",
    responses((status = 200, description = "users", body = OnlineUsers), CallerRefusals)
)]
pub(super) async fn active_users(
    State(hub): State<Hub>,
    State(store): State<Store>,
    _: Caller,
) -> Json<OnlineUsers> {
    let users: Vec<_> = hub.online_users().into_iter().map(|u| u.user).collect();
    let stats = compute_stats(&hub, &store).await;
    Json(OnlineUsers {
        count: users.len(),
        users,
        stats,
    })
}

/// Statistics over online users, with their stored history.
///
/// `totalConnectedSeconds`, `sessionsCount` and `firstSeen` come from the session history,
/// live sessions included. Any authenticated caller.
#[utoipa::path(
    get,
    path = "/websocket/users-stats",
    tag = "presence",
    responses((status = 200, description = "stats", body = UsersStats), CallerRefusals)
)]
pub(super) async fn users_stats(
    State(hub): State<Hub>,
    State(store): State<Store>,
    _: Caller,
) -> Json<UsersStats> {
    Json(compute_stats(&hub, &store).await)
}

/// A per-user view (admin or that user): checks access and `limit`, reads after the writes
/// already sent (so a session that just opened or a message just queued is in it), and logs
/// a failed read behind a 503.
async fn per_user_read<'a, T, Fut>(
    app: &'a AppState,
    caller: &Caller,
    user_id: &str,
    limit: Option<u32>,
    what: &'static str,
    read: impl FnOnce(AfterWrites<'a>, u32) -> Fut,
) -> Result<T, ApiError>
where
    Fut: Future<Output = Result<T, StoreError>>,
{
    caller.require_admin_or(app, user_id)?;
    let limit = check_limit(limit)?;
    let store = app.store.after_writes().await;
    read(store, limit).await.map_err(|e| {
        tracing::error!(error = %e, what, "could not read the store");
        ApiError::unavailable()
    })
}

/// A user's session history, newest first.
///
/// An admin, or the user themselves.
#[utoipa::path(
    get,
    path = "/websocket/users/{userId}/sessions",
    tag = "users",
    params(("userId" = String, Path, description = "The user's id (`sub`)."), LimitQuery),
    responses((status = 200, description = "sessions", body = UserSessions), PerUserRefusals)
)]
pub(super) async fn sessions(
    State(app): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
    ApiQuery(query): ApiQuery<LimitQuery>,
) -> Result<Json<UserSessions>, ApiError> {
    let user = user_id.as_str();
    let rows = per_user_read(
        &app,
        &caller,
        &user_id,
        query.limit,
        "sessions",
        |store, limit| async move { store.sessions_of(user, limit).await },
    )
    .await?;
    Ok(Json(UserSessions {
        user_id,
        count: rows.len(),
        sessions: rows.into_iter().map(Session::from).collect(),
    }))
}

/// A user's undelivered messages, oldest first.
///
/// What they will receive when they next connect. An admin, or the user themselves.
#[utoipa::path(
    get,
    path = "/websocket/users/{userId}/queue",
    tag = "users",
    params(("userId" = String, Path, description = "The user's id (`sub`)."), LimitQuery),
    responses((status = 200, description = "queue", body = UserQueue), PerUserRefusals)
)]
pub(super) async fn queue(
    State(app): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
    ApiQuery(query): ApiQuery<LimitQuery>,
) -> Result<Json<UserQueue>, ApiError> {
    let user = user_id.as_str();
    let rows = per_user_read(
        &app,
        &caller,
        &user_id,
        query.limit,
        "offline queue",
        |store, limit| async move { store.undelivered(user, limit).await },
    )
    .await?;
    let messages: Vec<QueuedMessage> = rows
        .iter()
        .map(|(m, queued_at)| QueuedMessage {
            message: m.into(),
            queued_at: queued_at.clone(),
        })
        .collect();
    Ok(Json(UserQueue {
        user_id,
        count: messages.len(),
        messages,
    }))
}

/// Close every connection of a user (reason `kicked`).
///
/// `/ws` clients get close code 1008. Admins only.
#[utoipa::path(
    post,
    path = "/websocket/users/{userId}/disconnect",
    tag = "users",
    params(("userId" = String, Path, description = "The user's id (`sub`).")),
    responses((status = 200, description = "how many", body = Disconnected), AdminRefusals)
)]
pub(super) async fn disconnect(
    State(hub): State<Hub>,
    _: Admin,
    Path(user_id): Path<String>,
) -> Json<Disconnected> {
    let disconnected = hub.close_user(&user_id, CloseReason::Kicked);
    Json(Disconnected {
        success: true,
        user_id,
        disconnected,
    })
}

/// Revoke every token of a user issued so far, and close their connections (reason `revoked`).
///
/// Stored before the answer (it survives a restart): from now on the user's tokens with an
/// `iat` before `notBefore` (the second after this call), or without `iat`, are refused on
/// connect (`/ws`: 401, Socket.IO: `connect_error`), on `refresh-token` and on REST calls.
/// A token issued later works. `/ws` clients are closed with code 4003. Admins only.
#[utoipa::path(
    post,
    path = "/websocket/users/{userId}/revoke",
    tag = "users",
    params(("userId" = String, Path, description = "The user's id (`sub`).")),
    responses((status = 200, description = "revoked", body = TokensRevoked), AdminRefusals)
)]
pub(super) async fn revoke(
    State(app): State<AppState>,
    _: Admin,
    Path(user_id): Path<String>,
) -> Result<Json<TokensRevoked>, ApiError> {
    let now = SystemTime::now();
    let not_before = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) + 1;
    let revoked_at = wire::timestamp(now);
    let mut commit = app.store.tokens_revoked(&user_id, not_before, &revoked_at);
    if !commit.durable().await {
        tracing::error!(
            user_id,
            "the revocation could not be stored; nothing was revoked"
        );
        return Err(ApiError::unavailable());
    }
    // Refused first, then closed: a connection admitted meanwhile is closed by the session
    // core, which checks again once it is registered.
    app.verifier.revocations().revoke(&user_id, not_before);
    let disconnected = app.hub.revoke_user(&user_id, not_before);
    tracing::info!(user_id, disconnected, not_before, "tokens revoked");
    Ok(Json(TokensRevoked {
        success: true,
        user_id,
        not_before,
        revoked_at,
        disconnected,
    }))
}
