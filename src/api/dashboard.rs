//! The operator dashboard's page, `GET /admin/`: three files of our own (`web/admin/`: the
//! HTML, the script, the style sheet) compiled into the binary with `include_str!`, so
//! `cargo run --release` serves it with nothing to build or install. The page needs no
//! token; every datum it shows comes from the admin-only endpoints of [`super::admin`], with
//! the token the operator pastes (kept in the tab's `sessionStorage`).
//!
//! Every answer carries a strict `Content-Security-Policy`: scripts, styles and fetches from
//! this origin only, no inline script or style, no framing. A script injected through a user
//! name the page displays could not run, nor send the token anywhere.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;

const INDEX_HTML: &str = include_str!("../../web/admin/index.html");
const ADMIN_JS: &str = include_str!("../../web/admin/admin.js");
const ADMIN_CSS: &str = include_str!("../../web/admin/admin.css");

/// Self only; `connect-src 'self'` covers the page's `fetch()` of the API and its stream.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// `/admin` (redirected to `/admin/`), the page and its two assets.
pub(super) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/admin", get(|| async { Redirect::permanent("/admin/") }))
        .route(
            "/admin/",
            get(|| async { page("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/admin/admin.js",
            get(|| async { page("text/javascript; charset=utf-8", ADMIN_JS) }),
        )
        .route(
            "/admin/admin.css",
            get(|| async { page("text/css; charset=utf-8", ADMIN_CSS) }),
        )
}

fn page(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            // A new binary may serve a new page: revalidate instead of running a stale script.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}
