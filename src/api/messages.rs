//! `GET /websocket/messages?room=&user=&since=&limit=`: stored messages, oldest first.
//! Admins see every message; anyone else sees what `sync` would replay to them (public
//! messages, private ones to or from them, their rooms, notifications to them or their role).
//! Returns `{ messages: [{ id, event, data }], count, lastMessageId, more }`.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::extract::{ApiQuery, Caller};
use super::limit::{check_limit, limit_schema};
use super::openapi::ListRefusals;
use crate::app::AppState;
use crate::protocol::payloads::RoomName;
use crate::store::{self, ListFilter, Reader};

/// The filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only messages to this room.
    room: Option<String>,
    /// Only messages from or to this user.
    user: Option<String>,
    /// Only messages after this id (the `lastMessageId` of the previous page).
    since: Option<u64>,
    /// How many at most (1 to 1000, default 100).
    #[param(schema_with = limit_schema)]
    limit: Option<u32>,
}

/// A page of stored messages.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct MessagePage {
    /// Oldest first.
    messages: Vec<StoredMessage>,
    /// Messages in this page.
    count: usize,
    /// The id of the last message in this page (or `since` when it is empty): the next
    /// page's `since`.
    last_message_id: u64,
    /// True when the page is full: ask again from `lastMessageId`.
    more: bool,
}

/// A stored message as the REST API shows it: the event it was delivered as, and its payload.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct StoredMessage {
    /// The message id.
    id: u64,
    /// The event it was delivered as (`broadcast-message`, `notification`, ...).
    event: String,
    /// The payload as it was delivered (for the built-in events, an object with `id`, `from`
    /// and `timestamp`).
    data: Value,
}

impl From<&store::StoredMessage> for StoredMessage {
    fn from(m: &store::StoredMessage) -> Self {
        Self {
            id: m.id,
            event: m.event.clone(),
            data: serde_json::from_str(&m.payload).unwrap_or(Value::Null),
        }
    }
}

/// Stored messages, oldest first.
///
/// Admins see every message; anyone else sees what `sync` would replay to them: public
/// messages, private ones to or from them, their rooms' messages, and notifications to them
/// or their role.
#[utoipa::path(
    get,
    path = "/websocket/messages",
    operation_id = "list_messages",
    tag = "messages",
    params(ListQuery),
    responses((status = 200, description = "messages", body = MessagePage), ListRefusals)
)]
pub(super) async fn list(
    State(app): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<MessagePage>, ApiError> {
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
    // An admin sees everything; anyone else not the rooms its user is still a member of
    // that this token may not read (asked of the hub only then).
    let admin = caller.is_admin(&app);
    let unreadable = if admin {
        Vec::new()
    } else {
        app.hub.unreadable_rooms(&caller.0)
    };
    let viewer = (!admin).then(|| Reader {
        user_id: &caller.0.user_id,
        role: &caller.0.role,
        unreadable: &unreadable,
    });
    let store = app.store.after_writes().await;
    let rows = store.list_messages(&filter, viewer).await.map_err(|e| {
        tracing::error!(error = %e, "could not list messages");
        ApiError::unavailable()
    })?;
    let last = rows.last().map_or(filter.since, |m| m.id);
    let more = rows.len() == filter.limit as usize;
    let messages: Vec<StoredMessage> = rows.iter().map(StoredMessage::from).collect();
    Ok(Json(MessagePage {
        count: messages.len(),
        last_message_id: last,
        more,
        messages,
    }))
}
