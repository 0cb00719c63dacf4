//! `/healthz` (the process answers) and `/readyz` (the store answers and the server is not
//! shutting down). Neither needs a token: load balancers call them.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::app::AppState;

pub(super) async fn alive() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub(super) async fn ready(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
    if app.stopping.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready", "reason": "shutting down" })),
        );
    }
    if !app.hub.store().is_reachable().await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready", "reason": "database unreachable" })),
        );
    }
    (StatusCode::OK, Json(json!({ "status": "ready" })))
}
