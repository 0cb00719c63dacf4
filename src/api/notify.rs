//! The three notification endpoints (admins only; `docs/protocol.md` section 12). Each stores a
//! notification and answers once it is committed; an `Idempotency-Key` header makes a retry return
//! the original result instead of sending twice.
//!
//! - `POST /websocket/send-notification { userId, message, type? }` →
//!   `{ success, delivered, queued, id }` ([`NotificationSent`])
//! - `POST /websocket/broadcast { message, type? }` → `{ success, recipients, id }` ([`Sent`])
//! - `POST /websocket/send-to-role { role, message, type? }` → `{ success, recipients, id }`

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{Admin, ApiJson, IdempotencyKey};
use super::openapi::{SendRefusals, notification_type_schema};
use crate::app::AppState;
use crate::commands::notify::{Notify, notify};
use crate::hub::{Published, Target};
use crate::protocol::payloads::{MessageText, NotificationType, UserId};

/// Body of `send-notification`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendNotification {
    /// The recipient's user id; they need not have connected yet.
    user_id: String,
    /// The text: 1 to `MAX_MESSAGE_CHARS` characters, not only whitespace.
    #[schema(min_length = 1)]
    message: String,
    /// Free-form kind for the client (`info`, `warning`, `success`, ...).
    #[serde(rename = "type")]
    #[schema(schema_with = notification_type_schema)]
    kind: Option<String>,
}

/// Body of `broadcast`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Broadcast {
    /// The text: 1 to `MAX_MESSAGE_CHARS` characters, not only whitespace.
    #[schema(min_length = 1)]
    message: String,
    /// Free-form kind for the client (`info`, `warning`, `success`, ...).
    #[serde(rename = "type")]
    #[schema(schema_with = notification_type_schema)]
    kind: Option<String>,
}

/// Body of `send-to-role`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SendToRole {
    /// The role whose users receive it: 1 to 256 characters once trimmed, matched exactly.
    #[schema(min_length = 1)]
    role: String,
    /// The text: 1 to `MAX_MESSAGE_CHARS` characters, not only whitespace.
    #[schema(min_length = 1)]
    message: String,
    /// Free-form kind for the client (`info`, `warning`, `success`, ...).
    #[serde(rename = "type")]
    #[schema(schema_with = notification_type_schema)]
    kind: Option<String>,
}

/// The answer of `send-notification`, once the notification is stored.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct NotificationSent {
    /// Always true (a failure is an error status).
    success: bool,
    /// Connections of the user that took it live.
    delivered: usize,
    /// True when the user had no connection: it waits in their offline queue.
    queued: bool,
    /// The message id.
    id: u64,
    /// Present (and true) when an `Idempotency-Key` matched an earlier request: this is that
    /// request's answer, and nothing was sent again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    duplicate: bool,
}

/// The answer of `broadcast` and `send-to-role`, once the notification is stored.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Sent {
    /// Always true (a failure is an error status).
    success: bool,
    /// Connections that took it live.
    recipients: usize,
    /// The message id.
    id: u64,
    /// Present (and true) when an `Idempotency-Key` matched an earlier request: this is that
    /// request's answer, and nothing was sent again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    duplicate: bool,
}

impl From<&Published> for NotificationSent {
    fn from(published: &Published) -> Self {
        Self {
            success: true,
            delivered: published.delivered,
            queued: published.queued,
            id: published.id,
            duplicate: published.duplicate,
        }
    }
}

impl From<&Published> for Sent {
    fn from(published: &Published) -> Self {
        Self {
            success: true,
            recipients: published.delivered,
            id: published.id,
            duplicate: published.duplicate,
        }
    }
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

/// Send `notification` to every connection of a user.
///
/// Queued while the user is offline (a user never seen is queued too) and delivered when
/// they connect. Admins only.
#[utoipa::path(
    post,
    path = "/websocket/send-notification",
    tag = "notifications",
    params(IdempotencyKey),
    request_body = SendNotification,
    responses(
        (status = 200, description = "stored (and delivered or queued)", body = NotificationSent),
        SendRefusals,
    )
)]
pub(super) async fn send_notification(
    State(app): State<AppState>,
    caller: Admin,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<SendNotification>,
) -> Result<Json<NotificationSent>, ApiError> {
    let user = UserId::parse_named(&body.user_id, "userId")
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let published = send(
        &app,
        &caller,
        Target::User(user.as_str().to_owned()),
        &body.message,
        body.kind.as_deref(),
        key,
    )
    .await?;
    Ok(Json(NotificationSent::from(&published)))
}

/// Send `broadcast-notification` to every connection.
///
/// Stored, so clients that `sync` later replay it. Admins only.
#[utoipa::path(
    post,
    path = "/websocket/broadcast",
    tag = "notifications",
    params(IdempotencyKey),
    request_body = Broadcast,
    responses(
        (status = 200, description = "stored and delivered", body = Sent),
        SendRefusals,
    )
)]
pub(super) async fn broadcast(
    State(app): State<AppState>,
    caller: Admin,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<Broadcast>,
) -> Result<Json<Sent>, ApiError> {
    let published = send(
        &app,
        &caller,
        Target::All,
        &body.message,
        body.kind.as_deref(),
        key,
    )
    .await?;
    Ok(Json(Sent::from(&published)))
}

/// Send `role-notification` to every connection whose user has the role.
///
/// The payload carries `targetRole`. Admins only.
#[utoipa::path(
    post,
    path = "/websocket/send-to-role",
    tag = "notifications",
    params(IdempotencyKey),
    request_body = SendToRole,
    responses(
        (status = 200, description = "stored and delivered", body = Sent),
        SendRefusals,
    )
)]
pub(super) async fn send_to_role(
    State(app): State<AppState>,
    caller: Admin,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<SendToRole>,
) -> Result<Json<Sent>, ApiError> {
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
    Ok(Json(Sent::from(&published)))
}
