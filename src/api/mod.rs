//! The REST management API under `/websocket/`, for operators and back-end services: the five
//! basic endpoints (who is online, statistics, three notifications), what a persistent gateway
//! adds (session history, stored messages, a user's offline queue, force-disconnect), room
//! members the application adds and removes ([`rooms`]), the webhook endpoints' health and
//! failed events ([`webhooks`]), health checks, the Prometheus
//! metrics and the OpenAPI document (`docs/protocol.md` section 12). Handlers are thin: they
//! authenticate ([`extract`]), validate, and call the same hub and command functions as the
//! transports and the embedded API. Each answers with a typed body and carries its
//! `#[utoipa::path]`; the OpenAPI document is derived from those ([`openapi`]), never written
//! by hand. The operator dashboard's page (`/admin/`, [`dashboard`]) is served from here too:
//! its data is this API's ([`admin`]).

mod admin;
mod dashboard;
pub mod error;
pub mod extract;
mod health;
mod limit;
mod messages;
mod metrics;
mod notify;
mod openapi;
mod publish;
mod rooms;
mod users;
mod webhooks;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;

/// The REST routes, health checks, `/metrics`, the OpenAPI document and the dashboard's page.
pub fn router(max_body_bytes: usize) -> Router<AppState> {
    let (router, _) = documented_routes().split_for_parts();
    router
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .merge(dashboard::router())
}

/// The OpenAPI 3 document of this API, derived from the handlers and their body types.
fn openapi() -> utoipa::openapi::OpenApi {
    documented_routes().into_openapi()
}

/// Every route with its OpenAPI path item: `routes!` registers a handler under the path its
/// `#[utoipa::path]` names and adds that path item to the document, so the two cannot drift.
fn documented_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(users::active_users))
        .routes(routes!(users::users_stats))
        .routes(routes!(notify::send_notification))
        .routes(routes!(notify::broadcast))
        .routes(routes!(notify::send_to_role))
        .routes(routes!(publish::publish))
        .routes(routes!(users::sessions))
        .routes(routes!(users::queue))
        .routes(routes!(users::disconnect))
        .routes(routes!(users::revoke))
        .routes(routes!(rooms::add_member, rooms::remove_member))
        .routes(routes!(rooms::members))
        .routes(routes!(rooms::user_rooms))
        .routes(routes!(messages::list))
        .routes(routes!(admin::overview))
        .routes(routes!(admin::stream))
        .routes(routes!(webhooks::endpoints))
        .routes(routes!(webhooks::failed))
        .routes(routes!(webhooks::resend))
        .routes(routes!(openapi::document))
        .routes(routes!(health::alive))
        .routes(routes!(health::ready))
        .routes(routes!(metrics::metrics))
}
