//! `POST /websocket/publish` (admins only; `docs/protocol.md` section 12): a back end publishes
//! an event of its own name with any JSON object to one user, a room, a role or everyone. It
//! is stored and answered once committed, like the notifications, with an id, the live
//! deliveries and whether it waits in an offline queue; `Idempotency-Key` makes a retry
//! return the original. Exactly one of `userId`, `room`, `role`, `everyone: true` names the
//! recipients, so that a missing field never widens a message to everyone.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{Admin, ApiJson, IdempotencyKey};
use super::openapi::SendRefusals;
use crate::app::AppState;
use crate::commands::CommandError;
use crate::commands::publish_event::{BackendEvent, publish_event};
use crate::hub::{Publish, Published, Target};
use crate::protocol::payloads::{EventName, RoomName, UserId};

/// Body of `publish`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishEvent {
    /// The event name clients receive: 1 to 64 ASCII letters, digits, `-`, `_`, `.` or `:`,
    /// and none of the protocol's own server events.
    #[schema(min_length = 1, max_length = 64)]
    event: String,
    /// The payload: a JSON object; `id`, `from` and `timestamp` are added unless present.
    #[schema(value_type = Object)]
    data: Value,
    /// To every connection of this user (queued while offline; a user never seen too).
    user_id: Option<String>,
    /// To every member of this room, online or not (they replay it with `sync`).
    room: Option<String>,
    /// To every connection whose user has this role.
    role: Option<String>,
    /// To every connection.
    everyone: Option<bool>,
}

/// The answer of `publish`, once the event is stored.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct EventPublished {
    /// Always true (a failure is an error status).
    success: bool,
    /// The message id.
    id: u64,
    /// Connections that took it live.
    delivered: usize,
    /// True when a user target had no connection: it waits in their offline queue.
    queued: bool,
    /// Present (and true) when an `Idempotency-Key` matched an earlier request: this is that
    /// request's answer, and nothing was sent again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    duplicate: bool,
}

impl From<&Published> for EventPublished {
    fn from(published: &Published) -> Self {
        Self {
            success: true,
            id: published.id,
            delivered: published.delivered,
            queued: published.queued,
            duplicate: published.duplicate,
        }
    }
}

impl PublishEvent {
    /// The one target the body names, 400 otherwise.
    fn target(&self) -> Result<Target, ApiError> {
        let named = [
            self.user_id.is_some(),
            self.room.is_some(),
            self.role.is_some(),
            self.everyone.is_some(),
        ];
        if named.iter().filter(|n| **n).count() != 1 {
            return Err(ApiError::bad_request(
                "name exactly one target: \"userId\", \"room\", \"role\" or \"everyone\": true",
            ));
        }
        let bad = |e: crate::protocol::ProtocolError| ApiError::bad_request(e.to_string());
        if let Some(user) = &self.user_id {
            let user = UserId::parse_named(user, "userId").map_err(bad)?;
            return Ok(Target::User(user.as_str().to_owned()));
        }
        if let Some(room) = &self.room {
            return Ok(Target::Room(RoomName::parse(room).map_err(bad)?));
        }
        if let Some(role) = &self.role {
            let role = role.trim();
            if role.is_empty() || role.chars().count() > 256 {
                return Err(ApiError::bad_request("role must be 1 to 256 characters"));
            }
            return Ok(Target::Role(role.to_owned()));
        }
        match self.everyone {
            Some(true) => Ok(Target::All),
            _ => Err(ApiError::bad_request(
                "\"everyone\" must be true when it is the target",
            )),
        }
    }
}

/// Publish an event of the application's own name to a user, a room, a role or everyone.
///
/// Stored, given an id, queued for an offline user and replayed by `sync` like every message.
/// Admins only.
#[utoipa::path(
    post,
    path = "/websocket/publish",
    tag = "notifications",
    params(IdempotencyKey),
    request_body = PublishEvent,
    responses(
        (status = 200, description = "stored (and delivered or queued)", body = EventPublished),
        SendRefusals,
    )
)]
pub(super) async fn publish(
    State(app): State<AppState>,
    caller: Admin,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<PublishEvent>,
) -> Result<Json<EventPublished>, ApiError> {
    let event = EventName::parse(&body.event).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let target = body.target()?;
    if !body.data.is_object() {
        return Err(ApiError::bad_request("\"data\" must be a JSON object"));
    }
    let from = app.hub.user_object_of(&caller.0);
    let sender = caller.0.user_id.clone();
    let published = publish_event(
        &app.hub,
        Publish::notification(sender, app.settings.limits.max_queued_per_user),
        BackendEvent {
            target,
            event: event.as_str(),
            payload: body.data,
            from: serde_json::to_value(&from).map_err(|_| ApiError::unavailable())?,
            idempotency_key: key.0.as_ref().map(|k| k.as_str()),
        },
    )
    .await
    .map_err(CommandError::from)?;
    Ok(Json(EventPublished::from(&published)))
}
