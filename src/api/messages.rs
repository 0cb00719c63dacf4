//! `GET /websocket/messages?room=&user=&since=&limit=`: stored messages, oldest first.
//! Admins see every message; anyone else sees what `sync` would replay to them (public
//! messages, private ones to or from them, their rooms, notifications to them or their role).
//! Returns `{ messages: [{ id, event, data }], count, lastMessageId, more }`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{ApiQuery, Caller};
use super::users::check_limit;
use crate::app::AppState;
use crate::protocol::payloads::RoomName;
use crate::store::{ListFilter, Reader};

/// The filters.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    room: Option<String>,
    user: Option<String>,
    since: Option<u64>,
    limit: Option<u32>,
}

pub(super) async fn list(
    State(app): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let room = query
        .room
        .as_deref()
        .map(RoomName::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let filter = ListFilter {
        room: room.map(|r| r.as_str().to_owned()),
        user: query.user,
        since: query.since.unwrap_or(0),
        limit: check_limit(query.limit)?,
    };
    let viewer = (!caller.is_admin(&app)).then(|| Reader {
        user_id: &caller.0.user_id,
        role: &caller.0.role,
    });
    let store = app.hub.store();
    store.read_horizon().await;
    let rows = store.list_messages(&filter, viewer).await.map_err(|e| {
        tracing::error!(error = %e, "could not list messages");
        ApiError::unavailable()
    })?;
    let last = rows.last().map_or(filter.since, |m| m.id);
    let more = rows.len() == filter.limit as usize;
    let messages: Vec<Value> = rows.iter().map(super::stored_json).collect();
    Ok(Json(json!({
        "count": messages.len(),
        "lastMessageId": last,
        "more": more,
        "messages": messages,
    })))
}
