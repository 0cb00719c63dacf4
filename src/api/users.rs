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
use crate::commands::users_stats as compute_stats;
use crate::hub::CloseReason;
use crate::startup::AppState;
use crate::store::{messages, sessions};

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

pub(super) async fn sessions(
    State(app): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
    ApiQuery(query): ApiQuery<LimitQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin_or(&app, &user_id)?;
    let limit = check_limit(query.limit)?;
    app.hub.store().flush().await;
    let rows = sessions::sessions_of(app.hub.store().pool(), &user_id, limit)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "could not read sessions");
            ApiError::unavailable()
        })?;
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
    caller.require_admin_or(&app, &user_id)?;
    let limit = check_limit(query.limit)?;
    app.hub.store().flush().await;
    let rows = messages::undelivered(app.hub.store().pool(), &user_id, limit)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "could not read the offline queue");
            ApiError::unavailable()
        })?;
    let messages: Vec<Value> = rows
        .into_iter()
        .map(|(m, queued_at)| {
            json!({
                "id": m.id,
                "event": m.event,
                "data": serde_json::from_str::<Value>(&m.payload).unwrap_or(Value::Null),
                "queuedAt": queued_at,
            })
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
