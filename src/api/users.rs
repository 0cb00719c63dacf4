//! Who is online, statistics, and per-user views of the store.
//!
//! - `GET /websocket/active-users` → `{ users, count, stats }` (any authenticated caller)
//! - `GET /websocket/users-stats` → the statistics object (any authenticated caller)
//! - `GET /websocket/users/{userId}/sessions?limit=` → session history (admin or that user)
//! - `GET /websocket/users/{userId}/queue?limit=` → undelivered messages (admin or that user)
//! - `POST /websocket/users/{userId}/disconnect` → closes every connection (admin)

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{Admin, ApiQuery, Caller};
use crate::app::AppState;
use crate::commands::users_stats as compute_stats;
use crate::hub::CloseReason;
use crate::store::StoreError;

/// Default and largest `limit` of the list endpoints.
pub(super) const DEFAULT_LIMIT: u32 = 100;
pub(super) const MAX_LIMIT: u32 = 1000;

/// `?limit=` (1 to 1000, default 100).
#[derive(Debug, Deserialize)]
pub struct LimitQuery {
    limit: Option<u32>,
}

pub(super) fn check_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        ))),
    }
}

pub(super) async fn active_users(State(app): State<AppState>, _: Caller) -> Json<Value> {
    let users: Vec<_> = app.hub.online_users().into_iter().map(|u| u.user).collect();
    let stats = compute_stats(&app.hub).await;
    Json(json!({ "count": users.len(), "users": users, "stats": stats }))
}

pub(super) async fn users_stats(State(app): State<AppState>, _: Caller) -> Json<Value> {
    Json(json!(compute_stats(&app.hub).await))
}

/// A per-user view (admin or that user): checks access and `limit`, flushes the store so the
/// read sees every write already sent, and logs a failed read behind a 503.
async fn per_user_read<T, Fut>(
    app: &AppState,
    caller: &Caller,
    user_id: &str,
    limit: Option<u32>,
    what: &'static str,
    read: impl FnOnce(u32) -> Fut,
) -> Result<T, ApiError>
where
    Fut: Future<Output = Result<T, StoreError>>,
{
    caller.require_admin_or(app, user_id)?;
    let limit = check_limit(limit)?;
    app.hub.store().flush().await;
    read(limit).await.map_err(|e| {
        tracing::error!(error = %e, what, "could not read the store");
        ApiError::unavailable()
    })
}

pub(super) async fn sessions(
    State(app): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
    ApiQuery(query): ApiQuery<LimitQuery>,
) -> Result<Json<Value>, ApiError> {
    let store = app.hub.store();
    let rows = per_user_read(&app, &caller, &user_id, query.limit, "sessions", |limit| {
        store.sessions_of(&user_id, limit)
    })
    .await?;
    Ok(Json(
        json!({ "userId": user_id, "count": rows.len(), "sessions": rows }),
    ))
}

pub(super) async fn queue(
    State(app): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
    ApiQuery(query): ApiQuery<LimitQuery>,
) -> Result<Json<Value>, ApiError> {
    let store = app.hub.store();
    let rows = per_user_read(
        &app,
        &caller,
        &user_id,
        query.limit,
        "offline queue",
        |limit| store.undelivered(&user_id, limit),
    )
    .await?;
    let messages: Vec<Value> = rows
        .iter()
        .map(|(m, queued_at)| {
            let mut entry = super::stored_json(m);
            entry["queuedAt"] = queued_at.as_str().into();
            entry
        })
        .collect();
    Ok(Json(
        json!({ "userId": user_id, "count": messages.len(), "messages": messages }),
    ))
}

pub(super) async fn disconnect(
    State(app): State<AppState>,
    _: Admin,
    Path(user_id): Path<String>,
) -> Json<Value> {
    let disconnected = app.hub.close_user(&user_id, CloseReason::Kicked);
    Json(json!({ "success": true, "userId": user_id, "disconnected": disconnected }))
}
