//! Checks on the HTTP request that opens a connection, which the libraries leave out:
//!
//! - **The WebSocket handshake** (RFC 6455 4.2.1). axum's `WebSocketUpgrade` accepts any
//!   `Sec-WebSocket-Key` and answers a wrong `Sec-WebSocket-Version` with a bare 400;
//!   engineioxide checks neither. [`check_upgrade`] refuses a missing or malformed key (400,
//!   naming the header) and any version but 13 (426 with `Sec-WebSocket-Version: 13`, which
//!   tells the client what to retry with).
//! - **The Origin policy for Socket.IO** ([`socketio_guard`]). `/ws` refuses a foreign
//!   `Origin` before its upgrade (403); socketioxide would upgrade, or open a polling
//!   session, and refuse only at the Socket.IO connect. The guard refuses both transports
//!   before socketioxide sees the request, and applies the handshake checks to its WebSocket
//!   upgrades. What it lets through it hands on detached from hyper's read buffer
//!   ([`detach_request`](super::socketio::detach_request)): engineioxide keeps the request,
//!   stamped with when it arrived ([`Opened`]: the Socket.IO handshake is timed from it).

use std::time::Instant;

use axum::Json;
use axum::extract::{OriginalUri, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use super::session::Refusal;
use crate::app::AppState;

/// The WebSocket version this server speaks.
const WEBSOCKET_VERSION: &str = "13";
/// Where socketioxide serves (its default `req_path`, which `socketio::layer` keeps).
const SOCKETIO_PATH: &str = "/socket.io";

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// For a request that asks for a WebSocket upgrade (`Upgrade: websocket`): a refusal when its
/// `Sec-WebSocket-Version` is not 13 or its `Sec-WebSocket-Key` is not the base64 encoding of
/// 16 bytes. Other requests pass; whatever else the upgrade lacks, the extractor names.
#[allow(clippy::result_large_err)] // The refusal is the response; it is built once, on failure.
pub(crate) fn check_upgrade(headers: &HeaderMap) -> Result<(), Response> {
    let wants_websocket = headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("websocket"));
    if !wants_websocket {
        return Ok(());
    }
    let version = headers.get(header::SEC_WEBSOCKET_VERSION);
    if version.is_none_or(|v| v.as_bytes().trim_ascii() != WEBSOCKET_VERSION.as_bytes()) {
        let message = match version {
            None => "missing Sec-WebSocket-Version header".to_string(),
            Some(v) => format!(
                "unsupported Sec-WebSocket-Version {:?}",
                String::from_utf8_lossy(v.as_bytes())
            ),
        };
        let mut response = refuse(
            StatusCode::UPGRADE_REQUIRED,
            format!("{message}: this server speaks version {WEBSOCKET_VERSION}"),
        );
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static(WEBSOCKET_VERSION),
        );
        return Err(response);
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "missing Sec-WebSocket-Key header",
        ));
    };
    if !is_websocket_key(key.as_bytes()) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "invalid Sec-WebSocket-Key header: must be the base64 encoding of 16 bytes",
        ));
    }
    Ok(())
}

/// Whether `key` is the base64 encoding of 16 bytes (24 characters, padded).
fn is_websocket_key(key: &[u8]) -> bool {
    STANDARD
        .decode(key.trim_ascii())
        .is_ok_and(|bytes| bytes.len() == 16)
}

/// When the request that opened a Socket.IO connection arrived, in its extensions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Opened(pub Instant);

/// Middleware in front of socketioxide: a request for `/socket.io/` from an `Origin` outside
/// `CORS_ORIGINS` gets 403 before any polling session or upgrade exists (counted as a
/// refusal, as `/ws` counts its own), and a WebSocket upgrade there gets [`check_upgrade`].
/// Every other request passes untouched.
pub(crate) async fn socketio_guard(
    State(app): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if !is_socketio_path(request.uri().path()) {
        return next.run(request).await;
    }
    let opened = Opened(Instant::now());
    let headers = request.headers();
    let origin = headers
        .get(header::ORIGIN)
        .map(|o| o.to_str().unwrap_or_default());
    if !app.settings.cors_origins.allows(origin) {
        let refusal = Refusal::OriginNotAllowed;
        app.metrics.auth_refused(refusal.code());
        return refuse(refusal.status(), refusal.to_string());
    }
    if let Err(refusal) = check_upgrade(headers) {
        return refusal;
    }
    let mut request = detach_request(request);
    request.extensions_mut().insert(opened);
    next.run(request).await
}

/// The request with its URI (and axum's copy of it, `OriginalUri`) and header values copied
/// into allocations of their own. hyper parses them as slices of the connection's read buffer
/// (8 KiB at least), and engineioxide keeps the opening request's parts for the whole
/// connection: without the copy, every idle Socket.IO connection would hold on to that buffer.
fn detach_request(request: Request) -> Request {
    let (mut parts, body) = request.into_parts();
    let mut headers = HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        let copy = match HeaderValue::from_bytes(value.as_bytes()) {
            Ok(mut copy) => {
                copy.set_sensitive(value.is_sensitive());
                copy
            }
            // Cannot happen for a value hyper accepted; sharing it is still correct.
            Err(_) => value.clone(),
        };
        headers.append(name.clone(), copy);
    }
    parts.headers = headers;
    if let Ok(uri) = Uri::try_from(parts.uri.to_string()) {
        parts.uri = uri;
    }
    if let Some(OriginalUri(original)) = parts.extensions.get_mut::<OriginalUri>()
        && let Ok(uri) = Uri::try_from(original.to_string())
    {
        *original = uri;
    }
    Request::from_parts(parts, body)
}

/// The rule socketioxide matches its path with: `/socket.io` itself or anything below it.
fn is_socketio_path(path: &str) -> bool {
    path.strip_prefix(SOCKETIO_PATH)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade(version: Option<&str>, key: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Some(v) = version {
            headers.insert(header::SEC_WEBSOCKET_VERSION, v.parse().expect("value"));
        }
        if let Some(k) = key {
            headers.insert(header::SEC_WEBSOCKET_KEY, k.parse().expect("value"));
        }
        headers
    }

    #[test]
    fn each_bad_handshake_gets_its_status() {
        let good_key = "dGhlIHNhbXBsZSBub25jZQ==";
        let cases = [
            (Some("13"), Some(good_key), None, "the RFC's example passes"),
            (Some("13"), None, Some(400), "a missing key"),
            (
                Some("13"),
                Some("not base64!"),
                Some(400),
                "a key that is not base64",
            ),
            (Some("13"), Some("YWJj"), Some(400), "base64 of 3 bytes"),
            (
                Some("13"),
                Some("dGhlIHNhbXBsZSBub25jZQ"),
                Some(400),
                "unpadded",
            ),
            (Some("8"), Some(good_key), Some(426), "an old version"),
            (None, Some(good_key), Some(426), "no version"),
        ];
        for (version, key, expected, case) in cases {
            let status = check_upgrade(&upgrade(version, key))
                .err()
                .map(|r| r.status());
            assert_eq!(status.map(|s| s.as_u16()), expected, "{case}");
        }
    }

    #[test]
    fn an_unsupported_version_is_answered_with_the_supported_one() {
        let refusal = check_upgrade(&upgrade(Some("8"), None)).expect_err("refused");
        assert_eq!(refusal.headers()[header::SEC_WEBSOCKET_VERSION], "13");
    }

    #[test]
    fn a_request_that_is_no_upgrade_passes() {
        assert!(check_upgrade(&HeaderMap::new()).is_ok());
    }

    #[test]
    fn the_guard_matches_socketio_paths_only() {
        assert!(is_socketio_path("/socket.io"));
        assert!(is_socketio_path("/socket.io/"));
        assert!(!is_socketio_path("/socket.iox"));
        assert!(!is_socketio_path("/ws"));
    }
}
