//! The webhook endpoints as operators see them (admins only; `docs/protocol.md` section 15):
//!
//! - `GET /websocket/webhooks` → each configured endpoint: its filter, its backlog in the
//!   outbox, and what its sender last did ([`WebhookHealth`], this node's memory)
//! - `GET /websocket/webhooks/failed?endpoint=&after=&limit=` → the events given up on, oldest
//!   first, a page at a time
//! - `POST /websocket/webhooks/failed/resend` → makes failed events pending again, so the
//!   sender takes them in its next batch
//!
//! Never a secret: an endpoint is shown by its name, URL (a password in it masked) and filter.
//! A resend reaches only configured endpoints: an event made pending under a name no sender
//! has would wait for ever.
//! The reads go straight to the store: the sender's marks are committed before it goes on, so
//! what it did is already there.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::extract::{Admin, ApiJson, ApiQuery};
use super::limit::{check_limit, limit_schema};
use super::openapi::{AdminRefusals, FailedListRefusals, ResendRefusals};
use crate::app::AppState;
use crate::config::WebhookEndpoint;
use crate::protocol::wire::timestamp;
use crate::store::{FailedEvent, StoreError};
use crate::webhooks::EndpointHealth;

/// Most ids one resend may name (a page of failed events at most).
const MAX_RESEND_IDS: usize = 1000;

/// The configured endpoints.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct WebhookEndpoints {
    /// In the order they are configured (`WEBHOOK_URL`'s `default` first, then
    /// `WEBHOOKS_FILE`'s).
    endpoints: Vec<EndpointEntry>,
}

/// One endpoint: what it gets, what waits for it, how its sender fares.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct EndpointEntry {
    /// Its name (the outbox keys its events by it).
    name: String,
    /// Where its events are POSTed (a password in it shown as `***`).
    url: String,
    /// The event types it gets.
    events: Vec<&'static str>,
    /// For `message.stored`: only messages sent as these event names (empty: any).
    message_events: Vec<String>,
    /// Only events naming a room that matches one of these patterns (empty: any room).
    rooms: Vec<String>,
    /// Events waiting to be sent (in all nodes' outbox: the database's).
    pending: u64,
    /// Events given up on: listed by `GET /websocket/webhooks/failed`, sendable again.
    failed: u64,
    /// When the oldest waiting event happened.
    #[schema(format = DateTime)]
    oldest_pending_at: Option<String>,
    /// What this node's sender for it last did.
    health: HealthEntry,
}

/// What an endpoint's sender on this node last did; all empty until its first request since
/// this process started (or when another node holds the endpoint's lease).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct HealthEntry {
    /// When its last request went out.
    #[schema(format = DateTime)]
    last_attempt_at: Option<String>,
    /// How that request went.
    last_result: Option<AttemptResult>,
    /// Why it failed (`HTTP 500`, `timed out`, ...).
    last_error: Option<String>,
    /// Requests failed in a row since the last one that succeeded.
    consecutive_failures: u32,
    /// When the sender tries again, while it waits out a backoff after a failure.
    #[schema(format = DateTime)]
    next_attempt_at: Option<String>,
}

/// How a request went.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum AttemptResult {
    /// The endpoint answered 2xx.
    Ok,
    /// It did not (see `lastError`).
    Error,
}

/// The filters of the failed list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FailedQuery {
    /// Only this endpoint's (by name; 404 `unknown_endpoint` when none is configured so).
    endpoint: Option<String>,
    /// Only events with ids above this (the `next` of the previous page).
    after: Option<u64>,
    /// How many at most (1 to 1000, default 100).
    #[param(schema_with = limit_schema)]
    limit: Option<u32>,
}

/// A page of failed events.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct FailedPage {
    /// Oldest first (by id).
    events: Vec<FailedEntry>,
    /// When the page is full: the `after` of the next one (more may follow); else null.
    next: Option<i64>,
}

/// An event its endpoint never took within `WEBHOOK_GIVE_UP_SECS`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct FailedEntry {
    /// The event's id (its `id` in the body, `evt_<id>` in `webhook-id`).
    id: i64,
    /// The endpoint's name.
    endpoint: String,
    /// The event type (`user.online`, ...).
    #[serde(rename = "type")]
    kind: String,
    /// When the fact happened (the event's `timestamp`).
    #[schema(format = DateTime)]
    timestamp: String,
    /// The event's `data`, as it is sent.
    #[schema(value_type = Object)]
    data: Value,
    /// Requests that carried it.
    attempts: i32,
    /// Why the last one failed.
    last_error: Option<String>,
    /// When it was given up on.
    #[schema(format = DateTime)]
    failed_at: String,
}

impl From<FailedEvent> for FailedEntry {
    fn from(e: FailedEvent) -> Self {
        Self {
            // Written by the store from a JSON value; a string if it ever were not.
            data: serde_json::from_str(&e.data).unwrap_or(Value::String(e.data)),
            id: e.id,
            endpoint: e.endpoint,
            kind: e.kind,
            timestamp: e.occurred_at,
            attempts: e.attempts,
            last_error: e.last_error,
            failed_at: e.failed_at,
        }
    }
}

/// Body of the resend.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resend {
    /// Only this endpoint's failed events (by name; 404 `unknown_endpoint` when none is
    /// configured so). Absent: every configured endpoint's.
    endpoint: Option<String>,
    /// Only these events (1 to 1000 ids; ids of events that are not failed are skipped).
    /// Absent: all of them.
    #[schema(min_items = 1, max_items = 1000)]
    ids: Option<Vec<i64>>,
}

/// The answer of a resend.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Resent {
    /// Failed events made pending again (at most 10,000 a call: call again for more).
    resent: u64,
}

/// The webhook endpoints.
///
/// Each configured endpoint with its filter (never its secret), its backlog (pending and
/// failed events, the oldest pending one) and what this node's sender for it last did: when,
/// with what result, failures in a row, and when it tries again. Admins only.
#[utoipa::path(
    get,
    path = "/websocket/webhooks",
    operation_id = "list_webhook_endpoints",
    tag = "webhooks",
    responses((status = 200, description = "endpoints", body = WebhookEndpoints), AdminRefusals)
)]
pub(super) async fn endpoints(
    State(app): State<AppState>,
    _: Admin,
) -> Result<Json<WebhookEndpoints>, ApiError> {
    let backlog = app
        .store
        .webhook_backlog()
        .await
        .map_err(unavailable("could not read the webhook backlog"))?;
    let endpoints = app
        .settings
        .webhooks
        .endpoints
        .iter()
        .map(|endpoint| {
            let waiting = backlog.iter().find(|b| b.endpoint == endpoint.name);
            let health = app
                .webhook_health
                .as_ref()
                .map(|h| h.of(&endpoint.name))
                .unwrap_or_default();
            EndpointEntry {
                name: endpoint.name.clone(),
                url: endpoint.shown_url(),
                events: endpoint
                    .subscription
                    .events
                    .iter()
                    .map(|e| e.as_str())
                    .collect(),
                message_events: endpoint.subscription.message_events.clone(),
                rooms: endpoint.subscription.rooms.clone(),
                pending: waiting.map_or(0, |b| b.pending),
                failed: waiting.map_or(0, |b| b.failed),
                oldest_pending_at: waiting.and_then(|b| b.oldest_pending_at.clone()),
                health: health.into(),
            }
        })
        .collect();
    Ok(Json(WebhookEndpoints { endpoints }))
}

/// The failed webhook events.
///
/// Events an endpoint never took within `WEBHOOK_GIVE_UP_SECS`, oldest first, of one endpoint
/// or all; page with `after` = the previous page's `next`. They stay until sent again or
/// pruned (`WEBHOOK_RETENTION_DAYS`). Admins only.
#[utoipa::path(
    get,
    path = "/websocket/webhooks/failed",
    operation_id = "list_failed_webhook_events",
    tag = "webhooks",
    params(FailedQuery),
    responses((status = 200, description = "failed events", body = FailedPage), FailedListRefusals)
)]
pub(super) async fn failed(
    State(app): State<AppState>,
    _: Admin,
    ApiQuery(query): ApiQuery<FailedQuery>,
) -> Result<Json<FailedPage>, ApiError> {
    let limit = check_limit(query.limit)?;
    if let Some(name) = &query.endpoint {
        configured(&app, name)?;
    }
    let after = query
        .after
        .map_or(0, |a| i64::try_from(a).unwrap_or(i64::MAX));
    let rows = app
        .store
        .failed_webhooks(query.endpoint.as_deref(), after, limit)
        .await
        .map_err(unavailable("could not list the failed webhook events"))?;
    let next = (rows.len() == limit as usize)
        .then(|| rows.last().map(|e| e.id))
        .flatten();
    Ok(Json(FailedPage {
        events: rows.into_iter().map(FailedEntry::from).collect(),
        next,
    }))
}

/// Send failed webhook events again.
///
/// Makes failed events pending again, oldest first: the endpoint's sender takes them in its
/// next batch, as it would new events (a receiver that deduplicates by id sees them once).
/// Of one endpoint or every configured one; only `ids` when given. Admins only.
#[utoipa::path(
    post,
    path = "/websocket/webhooks/failed/resend",
    operation_id = "resend_failed_webhook_events",
    tag = "webhooks",
    request_body = Resend,
    responses((status = 200, description = "made pending again", body = Resent), ResendRefusals)
)]
pub(super) async fn resend(
    State(app): State<AppState>,
    _: Admin,
    ApiJson(body): ApiJson<Resend>,
) -> Result<Json<Resent>, ApiError> {
    if let Some(ids) = &body.ids
        && !(1..=MAX_RESEND_IDS).contains(&ids.len())
    {
        return Err(ApiError::bad_request(format!(
            "ids must name 1 to {MAX_RESEND_IDS} events; leave it out to send all again"
        )));
    }
    let ids = body.ids.as_deref();
    let endpoints: Vec<&WebhookEndpoint> = match &body.endpoint {
        Some(name) => vec![configured(&app, name)?],
        None => app.settings.webhooks.endpoints.iter().collect(),
    };
    let mut resent = 0;
    for endpoint in endpoints {
        resent += app
            .store
            .resend_webhooks(Some(&endpoint.name), ids)
            .await
            .map_err(unavailable("could not send failed webhook events again"))?;
    }
    Ok(Json(Resent { resent }))
}

/// The configured endpoint named `name`, or 404 `unknown_endpoint`.
fn configured<'a>(app: &'a AppState, name: &str) -> Result<&'a WebhookEndpoint, ApiError> {
    let endpoints = &app.settings.webhooks.endpoints;
    endpoints.iter().find(|e| e.name == name).ok_or_else(|| {
        let names: Vec<&str> = endpoints.iter().map(|e| e.name.as_str()).collect();
        ApiError {
            code: Some("unknown_endpoint"),
            ..ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "no webhook endpoint is named {name:?} (configured: {})",
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                ),
            )
        }
    })
}

fn unavailable(what: &'static str) -> impl FnOnce(StoreError) -> ApiError {
    move |e| {
        tracing::error!(error = %e, "{what}");
        ApiError::unavailable()
    }
}

impl From<EndpointHealth> for HealthEntry {
    fn from(h: EndpointHealth) -> Self {
        let last_result = h.last_attempt_at.map(|_| {
            if h.last_error.is_some() {
                AttemptResult::Error
            } else {
                AttemptResult::Ok
            }
        });
        Self {
            last_attempt_at: h.last_attempt_at.map(timestamp),
            last_result,
            last_error: h.last_error,
            consecutive_failures: h.consecutive_failures,
            next_attempt_at: h.next_attempt_at.map(timestamp),
        }
    }
}
