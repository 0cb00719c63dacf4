//! `GET /metrics`: the gateway's Prometheus metrics in the text format (0.0.4). The counters
//! and histograms are kept by [`Metrics`](crate::metrics::Metrics) as things happen; the
//! gauges (connections, users online, rooms, offline queues) are read from the hub and the
//! store now, at scrape time. With `METRICS_TOKEN` set, the scraper must present it as a
//! bearer token; no JWT is involved (a scraper is not a user).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;

use super::error::ApiError;
use crate::app::AppState;
use crate::config::MetricsToken;
use crate::metrics::CONTENT_TYPE;

/// Prometheus metrics.
///
/// Text exposition format 0.0.4; the README lists every metric. Needs
/// `Authorization: Bearer <METRICS_TOKEN>` when that setting is set, nothing otherwise.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    security((), ("metricsToken" = [])),
    responses(
        (status = 200, description = "the metrics", content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, description = "METRICS_TOKEN is set and the request does not carry it", body = super::error::ErrorBody),
    )
)]
pub(super) async fn metrics(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    if let Some(token) = &app.settings.metrics_token {
        check(token, &headers)?;
    }
    let text = app.metrics.render(&app.hub.live_figures());
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text))
}

/// `Authorization: Bearer <token>` (the scheme in any case, as for JWTs), or 401.
fn check(token: &MetricsToken, headers: &HeaderMap) -> Result<(), ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| {
            let (scheme, rest) = v.as_bytes().split_at_checked(7)?;
            scheme.eq_ignore_ascii_case(b"bearer ").then_some(rest)
        })
        .map(<[u8]>::trim_ascii);
    match presented {
        Some(presented) if token.matches(presented) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid metrics token",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing metrics token: send Authorization: Bearer <METRICS_TOKEN>",
        )),
    }
}
