//! The REST management API under `/websocket/`, for operators and back-end services: the
//! seed's five endpoints, what a persistent gateway adds (session history, stored messages,
//! a user's offline queue, force-disconnect), health checks and the OpenAPI document.
//! Handlers are thin: they authenticate ([`extract`]), validate, and call the same hub and
//! command functions as the transports and the embedded API.

pub mod error;
pub mod extract;
mod health;
mod messages;
mod notify;
mod users;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::app::AppState;

/// The OpenAPI 3 document of this API (checked in, verified against the routes by a test).
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// The REST routes, health checks and the OpenAPI document.
pub fn router(max_body_bytes: usize) -> Router<AppState> {
    Router::new()
        .route("/websocket/active-users", get(users::active_users))
        .route("/websocket/users-stats", get(users::users_stats))
        .route(
            "/websocket/send-notification",
            post(notify::send_notification),
        )
        .route("/websocket/broadcast", post(notify::broadcast))
        .route("/websocket/send-to-role", post(notify::send_to_role))
        .route("/websocket/users/{user_id}/sessions", get(users::sessions))
        .route("/websocket/users/{user_id}/queue", get(users::queue))
        .route(
            "/websocket/users/{user_id}/disconnect",
            post(users::disconnect),
        )
        .route("/websocket/messages", get(messages::list))
        .route("/websocket/openapi.json", get(openapi))
        .route("/healthz", get(health::alive))
        .route("/readyz", get(health::ready))
        .layer(DefaultBodyLimit::max(max_body_bytes))
}

/// A stored message as the REST API shows it: `{ id, event, data }`.
fn stored_json(m: &crate::store::StoredMessage) -> serde_json::Value {
    serde_json::json!({
        "id": m.id,
        "event": m.event,
        "data": serde_json::from_str::<serde_json::Value>(&m.payload)
            .unwrap_or(serde_json::Value::Null),
    })
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}
