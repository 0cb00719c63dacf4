//! Connection hygiene and handshake validation, over raw TCP sockets: sockets that never
//! finish a request are closed, the connection cap answers 503 and lets go when connections
//! close, WebSocket handshakes are checked, the Origin policy stops a foreign Socket.IO client
//! before any session exists, and Engine.IO session ids stay out of the logs.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use switchboard::config::CorsOrigins;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};

use crate::helpers::*;

/// The header timeout the slow-socket tests configure.
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// A valid key (RFC 6455's example).
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

async fn connect(app: &TestApp) -> TcpStream {
    tokio::time::timeout(WAIT, TcpStream::connect(app.addr))
        .await
        .expect("connect within the timeout")
        .expect("connect")
}

/// Sends `request` on a new socket and returns everything the server sent before closing.
async fn exchange(app: &TestApp, request: &str) -> String {
    let mut stream = connect(app).await;
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request written");
    read_until_closed(&mut stream).await
}

/// The JSON body of a raw HTTP response.
fn body_of(response: &str) -> Value {
    let (_, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    serde_json::from_str(body).unwrap_or_else(|_| panic!("a JSON body: {response:?}"))
}

/// A `GET` that asks for a WebSocket upgrade, with `headers` ("Name: value\r\n" lines) added;
/// `close` asks the server to close after a refusal.
fn upgrade_request(path: &str, headers: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, close\r\n\
         Upgrade: websocket\r\n{headers}\r\n"
    )
}

// --- slow and silent sockets -------------------------------------------------------------

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let app = spawn_app_with(|s| s.connections.header_timeout = HEADER_TIMEOUT).await;
    let mut silent = connect(&app).await;
    let opened = Instant::now();

    let received = read_until_closed(&mut silent).await;

    assert_eq!(received, "", "closed without an answer");
    assert!(
        opened.elapsed() >= HEADER_TIMEOUT - Duration::from_millis(100),
        "not closed before the timeout: {:?}",
        opened.elapsed()
    );
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_closed_after_the_header_timeout() {
    let app = spawn_app_with(|s| s.connections.header_timeout = HEADER_TIMEOUT).await;
    let mut slow = connect(&app).await;
    // 40 bytes at one per 100 ms would take 4 s: longer than the timeout.
    let request = format!("GET /healthz HTTP/1.1\r\nX-Slow: {}", "a".repeat(16));
    let opened = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut sent = 0;
    let mut buf = [0_u8; 256];

    let closed = tokio::time::timeout(WAIT, async {
        loop {
            tokio::select! {
                read = slow.read(&mut buf) => break read.map_or(0, |n| n),
                _ = tick.tick(), if sent < request.len() => {
                    if slow.write_all(&request.as_bytes()[sent..=sent]).await.is_err() {
                        break 0;
                    }
                    sent += 1;
                }
            }
        }
    })
    .await
    .expect("the trickling connection is closed within the timeout");

    assert_eq!(closed, 0, "closed, with no response");
    assert!(
        sent < request.len(),
        "closed before the headers were complete"
    );
    assert!(opened.elapsed() >= HEADER_TIMEOUT - Duration::from_millis(100));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let app = spawn_app_with(|s| s.connections.header_timeout = HEADER_TIMEOUT).await;
    let mut client = connect(&app).await;
    client
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("request written");

    // The response comes at once; the connection then idles until the server closes it.
    let received = read_until_closed(&mut client).await;

    assert_eq!(status_of(&received), 200);
    assert_eq!(body_of(&received)["status"], "ok");
}

// --- the connection cap ------------------------------------------------------------------

#[tokio::test]
async fn past_max_connections_the_next_one_gets_503_and_the_open_ones_keep_working() {
    let app = spawn_app_with(|s| s.connections.max_connections = 2).await;
    let (mut alice, _) = app.user("alice", "USER").await;
    let (bob, _) = app.user("bob", "USER").await;
    alice.expect("user-connected").await;

    let refused = exchange(&app, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(status_of(&refused), 503);
    assert!(
        body_of(&refused)["error"]
            .as_str()
            .is_some_and(|e| e.contains("too many connections")),
        "{refused}"
    );
    let mut request = app.ws_url().into_client_request().expect("request");
    let token = format!("Bearer {}", app.token("carol", "USER"));
    let token = HeaderValue::from_str(&token).expect("header");
    request.headers_mut().insert("authorization", token);
    let (status, _) = app
        .connect(request.clone())
        .await
        .err()
        .expect("a WebSocket client is refused too");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    alice
        .emit("get-active-users", serde_json::Value::Null)
        .await;
    assert_eq!(alice.expect("active-users").await["count"], 2);

    bob.close().await;
    alice.expect("user-disconnected").await;
    let mut carol = tokio::time::timeout(WAIT, async {
        // The slot is freed when bob's socket is dropped; try until it is.
        let mut retry = tokio::time::interval(Duration::from_millis(50));
        loop {
            retry.tick().await;
            if let Ok(client) = app.connect(request.clone()).await {
                break client;
            }
        }
    })
    .await
    .expect("a new connection is accepted once one closed");
    carol.expect("connected").await;
}

#[tokio::test]
async fn past_max_connections_per_ip_that_address_gets_503() {
    let app = spawn_app_with(|s| s.connections.max_connections_per_ip = Some(1)).await;
    let (mut alice, _) = app.user("alice", "USER").await;

    let refused = exchange(&app, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await;

    assert_eq!(status_of(&refused), 503);
    assert!(
        body_of(&refused)["error"]
            .as_str()
            .is_some_and(|e| e.contains("from your address")),
        "{refused}"
    );
    alice
        .emit("get-active-users", serde_json::Value::Null)
        .await;
    assert_eq!(alice.expect("active-users").await["count"], 1);
}

// --- the WebSocket handshake --------------------------------------------------------------

#[tokio::test]
async fn a_bad_sec_websocket_key_gets_400_naming_the_header_on_both_doors() {
    let app = spawn_app().await;
    let auth = format!("Authorization: Bearer {}\r\n", app.token("alice", "USER"));
    let cases = [
        ("", "missing"),
        ("Sec-WebSocket-Key: not-base64!\r\n", "not base64"),
        ("Sec-WebSocket-Key: YWJj\r\n", "base64 of 3 bytes"),
    ];
    for path in ["/ws", "/socket.io/?EIO=4&transport=websocket"] {
        for (key, case) in cases {
            let headers = format!("{auth}Sec-WebSocket-Version: 13\r\n{key}");
            let response = exchange(&app, &upgrade_request(path, &headers)).await;
            assert_eq!(status_of(&response), 400, "{path}, {case}: {response}");
            let error = body_of(&response)["error"].as_str().map(String::from);
            assert!(
                error.is_some_and(|e| e.contains("Sec-WebSocket-Key")),
                "{path}, {case}: {response}"
            );
        }
    }
}

#[tokio::test]
async fn an_unsupported_websocket_version_gets_426_with_the_supported_version() {
    let app = spawn_app().await;
    let auth = format!("Authorization: Bearer {}\r\n", app.token("alice", "USER"));
    for path in ["/ws", "/socket.io/?EIO=4&transport=websocket"] {
        let headers = format!("{auth}Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: {KEY}\r\n");
        let response = exchange(&app, &upgrade_request(path, &headers)).await;

        assert_eq!(status_of(&response), 426, "{path}: {response}");
        assert!(
            response
                .to_ascii_lowercase()
                .contains("\r\nsec-websocket-version: 13\r\n"),
            "{path}: {response}"
        );
    }
}

// --- the Origin policy for Socket.IO -----------------------------------------------------

#[tokio::test]
async fn an_origin_that_is_not_text_is_refused_by_both_doors_under_a_list() {
    let app = spawn_app_with(|s| {
        s.cors_origins = CorsOrigins::List(vec!["https://app.example".into()]);
    })
    .await;
    let token = app.token("alice", "USER");
    // 0xFF is a legal header byte (obs-text) but not UTF-8.
    let with_origin = |target: String| {
        let mut request = format!(
            "GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\
             Origin: "
        )
        .into_bytes();
        request.extend_from_slice(b"https://app.example\xff\r\n\r\n");
        request
    };
    for target in [
        format!("/ws?token={token}"),
        "/socket.io/?EIO=4&transport=websocket".to_string(),
    ] {
        let mut stream = connect(&app).await;
        stream
            .write_all(&with_origin(target.clone()))
            .await
            .expect("request written");
        let response = read_until_closed(&mut stream).await;
        assert_eq!(status_of(&response), 403, "{target}: {response}");
        assert!(
            response.contains("origin not allowed"),
            "{target}: {response}"
        );
    }
}

#[tokio::test]
async fn a_foreign_origin_is_refused_before_a_socketio_upgrade_or_polling_session() {
    let app = spawn_app_with(|s| {
        s.cors_origins = CorsOrigins::List(vec!["https://app.example".into()]);
    })
    .await;
    let upgrade = |origin: &'static str| {
        let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", app.addr);
        let mut request = url.into_client_request().expect("request");
        let origin = HeaderValue::from_static(origin);
        request.headers_mut().insert("origin", origin);
        request
    };
    let polling = |origin: &str| {
        format!(
            "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: localhost\r\n\
             Origin: {origin}\r\nConnection: close\r\n\r\n"
        )
    };

    let (status, body) = app
        .connect(upgrade("https://evil.example"))
        .await
        .err()
        .expect("the foreign upgrade is refused");
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("origin not allowed"), "{body}");
    let refused = exchange(&app, &polling("https://evil.example")).await;
    assert_eq!(status_of(&refused), 403, "{refused}");

    let (mut allowed, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async(upgrade("https://app.example")),
    )
    .await
    .expect("handshake within the timeout")
    .expect("the allowed origin is upgraded");
    let open = tokio::time::timeout(WAIT, allowed.next())
        .await
        .expect("the Engine.IO open packet within the timeout")
        .expect("stream open")
        .expect("frame readable");
    let open = open.into_text().expect("a text frame");
    assert!(open.starts_with("0{"), "the Engine.IO open packet: {open}");
    let answered = exchange(&app, &polling("https://app.example")).await;
    assert_eq!(status_of(&answered), 200, "{answered}");
}

// --- Engine.IO session ids and the logs --------------------------------------------------

#[tokio::test]
async fn engine_io_session_ids_never_reach_the_logs() {
    // The real binary at TRACE, its stderr captured whole: everything the server, socketioxide,
    // engineioxide and hyper log, with no in-process subscriber to race other tests.
    let dir = tempfile::tempdir().expect("temp dir");
    let server = BinaryServer::start(&dir.path().join("logs.db"), &[("RUST_LOG", "trace")]).await;
    let addr = server.addr;

    // A polling client: handshake, connect with a token, read the answer, send an event.
    let token = sign(
        jsonwebtoken::Algorithm::HS256,
        &serde_json::json!({"sub": "alice", "username": "alice", "role": "USER", "exp": in_an_hour()}),
    );
    let (sid, with_sid) = polling_connect(addr, &token).await;
    poll_until(addr, &with_sid, "40").await;
    let event = r#"42["get-active-users"]"#;
    assert_eq!(poll_at(addr, "POST", &with_sid, event).await, "ok");
    poll_until(addr, &with_sid, "active-users").await;

    let log = server.kill_and_read_log().join("\n");
    assert!(
        log.contains("listening on") && log.contains("DEBUG"),
        "the capture works, verbose levels included: {log}"
    );
    assert!(!log.contains(&sid), "the sid {sid} was logged:\n{log}");
}
