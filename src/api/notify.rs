//! The seed's three POST endpoints (admins only). Each stores a notification and answers
//! once it is committed; an `Idempotency-Key` header makes a retry return the original
//! result instead of sending twice.
//!
//! - `POST /websocket/send-notification { userId, message, type? }` →
//!   `{ success, delivered, queued, id }`
//! - `POST /websocket/broadcast { message, type? }` → `{ success, recipients, id }`
//! - `POST /websocket/send-to-role { role, message, type? }` → `{ success, recipients, id }`

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{Admin, ApiJson, IdempotencyKey};
use crate::app::AppState;
use crate::commands::notify::{Notify, notify};
use crate::hub::{Published, Target};
use crate::protocol::payloads::{MessageText, NotificationType, TargetUserId};

/// Body of `send-notification`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendNotification {
    user_id: String,
    message: String,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Body of `broadcast`.
#[derive(Debug, Deserialize)]
pub struct Broadcast {
    message: String,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Body of `send-to-role`.
#[derive(Debug, Deserialize)]
pub struct SendToRole {
    role: String,
    message: String,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Validated text and type, 400 naming the problem.
fn validate(
    app: &AppState,
    message: &str,
    kind: Option<&str>,
) -> Result<(MessageText, NotificationType), ApiError> {
    let message = MessageText::parse(message, app.settings.limits.max_message_chars)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let kind = kind
        .map(NotificationType::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?
        .unwrap_or_default();
    Ok((message, kind))
}

async fn send(
    app: &AppState,
    caller: &Admin,
    target: Target,
    message: &str,
    kind: Option<&str>,
    key: IdempotencyKey,
) -> Result<Published, ApiError> {
    let (message, kind) = validate(app, message, kind)?;
    let from = app.hub.user_object_of(&caller.0);
    Ok(notify(
        &app.hub,
        Notify {
            target,
            from: &from,
            message: &message,
            kind: &kind,
            idempotency_key: key.0.as_ref(),
            queue_limit: app.settings.limits.max_queued_per_user,
        },
    )
    .await?)
}

/// The answer of the broadcast and role endpoints: `{ success, recipients, id }`.
fn recipients_reply(published: &Published) -> Json<Value> {
    with_duplicate(
        json!({ "success": true, "recipients": published.delivered, "id": published.id }),
        published,
    )
}

fn with_duplicate(mut body: Value, published: &Published) -> Json<Value> {
    if published.duplicate {
        body["duplicate"] = true.into();
    }
    Json(body)
}

pub(super) async fn send_notification(
    State(app): State<AppState>,
    caller: Admin,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<SendNotification>,
) -> Result<Json<Value>, ApiError> {
    let user = TargetUserId::parse(&body.user_id)
        .map_err(|e| ApiError::bad_request(e.to_string().replace("\"to\"", "userId")))?;
    let published = send(
        &app,
        &caller,
        Target::User(user.as_str().to_owned()),
        &body.message,
        body.kind.as_deref(),
        key,
    )
    .await?;
    Ok(with_duplicate(
        json!({
            "success": true,
            "delivered": published.delivered,
            "queued": published.queued,
            "id": published.id,
        }),
        &published,
    ))
}

pub(super) async fn broadcast(
    State(app): State<AppState>,
    caller: Admin,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<Broadcast>,
) -> Result<Json<Value>, ApiError> {
    let published = send(
        &app,
        &caller,
        Target::All,
        &body.message,
        body.kind.as_deref(),
        key,
    )
    .await?;
    Ok(recipients_reply(&published))
}

pub(super) async fn send_to_role(
    State(app): State<AppState>,
    caller: Admin,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<SendToRole>,
) -> Result<Json<Value>, ApiError> {
    let role = body.role.trim();
    if role.is_empty() || role.chars().count() > 256 {
        return Err(ApiError::bad_request("role must be 1 to 256 characters"));
    }
    let published = send(
        &app,
        &caller,
        Target::Role(role.to_owned()),
        &body.message,
        body.kind.as_deref(),
        key,
    )
    .await?;
    Ok(recipients_reply(&published))
}
