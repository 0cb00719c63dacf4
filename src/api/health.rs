//! `/healthz` (the process answers) and `/readyz` (the store answers and the server is not
//! shutting down). Neither needs a token: load balancers call them.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;

/// The answer of `/healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Alive {
    /// Always `ok`.
    status: &'static str,
}

/// The answer of `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Readiness {
    /// `ready`, or `not ready` (with a 503).
    status: &'static str,
    /// Why it is not ready: `shutting down` or `database unreachable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    reason: Option<&'static str>,
}

impl Readiness {
    fn not_ready(reason: &'static str) -> (StatusCode, Json<Self>) {
        let body = Self {
            status: "not ready",
            reason: Some(reason),
        };
        (StatusCode::SERVICE_UNAVAILABLE, Json(body))
    }
}

/// The process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    security(),
    responses((status = 200, description = "alive", body = Alive))
)]
pub(super) async fn alive() -> Json<Alive> {
    Json(Alive { status: "ok" })
}

/// The database answers and the server is not shutting down.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    security(),
    responses(
        (status = 200, description = "ready", body = Readiness),
        (status = 503, description = "not ready (reason in the body)", body = Readiness),
    )
)]
pub(super) async fn ready(State(app): State<AppState>) -> (StatusCode, Json<Readiness>) {
    if app.stopping.is_cancelled() {
        return Readiness::not_ready("shutting down");
    }
    if !app.hub.store().is_reachable().await {
        return Readiness::not_ready("database unreachable");
    }
    let body = Readiness {
        status: "ready",
        reason: None,
    };
    (StatusCode::OK, Json(body))
}
