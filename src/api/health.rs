//! `/healthz` (the process answers) and `/readyz` (the store answers, its writes commit, and
//! the server is not shutting down). Neither needs a token: load balancers call them.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::store::Store;

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
    /// Why it is not ready: `shutting down`, `database unreachable`, `store writes failing`
    /// or, in a cluster, `cut off from the cluster` (the bus is gone).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    reason: Option<&'static str>,
    /// The store's state, in every answer.
    store: StoreState,
}

/// The store as `/readyz` sees it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct StoreState {
    /// Whether the database answers a trivial read.
    reachable: bool,
    /// Whether the writer's most recent attempt committed.
    writes: Writes,
    /// Since when writes fail (ISO 8601); only while failing.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    failing_since: Option<String>,
    /// The database's error for the most recent failed write; only while failing.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    last_error: Option<String>,
}

/// How the store's writes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum Writes {
    /// The writer's most recent attempt committed.
    Ok,
    /// Writes fail (a full disk, a read-only file, ...): messages are answered `not_stored`.
    Failing,
}

impl StoreState {
    async fn of(store: &Store, probe: bool) -> Self {
        let reachable = store.is_reachable().await;
        // A probe write is only worth it while the server still takes traffic.
        let health = if probe {
            store.write_health().await
        } else {
            store.last_write_health()
        };
        Self {
            reachable,
            writes: if health.is_ok() {
                Writes::Ok
            } else {
                Writes::Failing
            },
            failing_since: health.failing_since,
            last_error: health.last_error,
        }
    }
}

impl Readiness {
    fn answer(reason: Option<&'static str>, store: StoreState) -> (StatusCode, Json<Self>) {
        let (status, code) = match reason {
            None => ("ready", StatusCode::OK),
            Some(_) => ("not ready", StatusCode::SERVICE_UNAVAILABLE),
        };
        let body = Self {
            status,
            reason,
            store,
        };
        (code, Json(body))
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

/// The database answers, writes reach it, and the server is not shutting down.
///
/// While writes fail, each call first tries one small write, so the answer turns 200 as soon
/// as the disk takes writes again.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    security(),
    responses(
        (status = 200, description = "ready", body = Readiness),
        (status = 503, description = "not ready (reason and store state in the body)", body = Readiness),
    )
)]
pub(super) async fn ready(State(app): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let stopping = app.stopping.is_cancelled();
    let store = StoreState::of(&app.store, !stopping).await;
    let reason = if stopping {
        Some("shutting down")
    } else if !store.reachable {
        Some("database unreachable")
    } else if store.writes == Writes::Failing {
        Some("store writes failing")
    } else if app.hub.is_cut_off() {
        Some("cut off from the cluster")
    } else {
        None
    };
    Readiness::answer(reason, store)
}
