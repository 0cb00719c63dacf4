//! The operator dashboard: its page is served with a strict CSP, and its data endpoints
//! (`/websocket/admin/overview`, `/websocket/admin/stream`) refuse non-admins and show live
//! state. The page's behaviour in a browser is tested in `tests/browser`.

use std::time::Duration;

use reqwest::Method;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION};
use serde_json::{Value, json};

use crate::helpers::{Backend, WAIT, on_both_backends, spawn_app, spawn_on};

async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON body: {text}"));
    (status, body)
}

/// Proves the page and both assets are served from the binary with their content types and
/// a CSP that allows nothing inline and nothing from elsewhere, and that `/admin` leads there.
#[tokio::test]
async fn the_dashboard_page_is_served_with_a_strict_content_security_policy() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(WAIT)
        .build()
        .expect("client");

    let redirect = client
        .get(app.url("/admin"))
        .send()
        .await
        .expect("response");
    assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(redirect.headers()[LOCATION], "/admin/");

    for (path, content_type) in [
        ("/admin/", "text/html; charset=utf-8"),
        ("/admin/admin.js", "text/javascript; charset=utf-8"),
        ("/admin/admin.css", "text/css; charset=utf-8"),
    ] {
        let response = client.get(app.url(path)).send().await.expect("response");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()[CONTENT_TYPE], content_type, "{path}");
        let csp = response.headers()[CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("ASCII");
        for rule in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(rule), "{path}: {rule} missing from {csp}");
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        let body = response.text().await.expect("body");
        assert!(!body.is_empty(), "{path}");
        if path == "/admin/" {
            // No inline script: every <script> has a src (the CSP would block one anyway).
            let scripts = body.matches("<script").count();
            assert_eq!(scripts, body.matches("<script src=").count(), "{body}");
            assert!(scripts > 0 && !body.contains("style="), "{body}");
        }
    }
}

/// Proves both data endpoints need an admin (401 without a valid token, 403 with another
/// role, each with the API's error body), while the page itself needs no token.
#[tokio::test]
async fn the_dashboard_data_refuses_a_missing_token_and_a_non_admin() {
    let app = spawn_app().await;
    for path in ["/websocket/admin/overview", "/websocket/admin/stream"] {
        let anonymous = reqwest::Client::new().get(app.url(path)).timeout(WAIT);
        let (status, body) = json_of(anonymous.send().await.expect("response")).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("missing token")),
            "{path}"
        );
        let user = app.rest(Method::GET, path, "bob", "USER");
        let (status, body) = json_of(user.send().await.expect("response")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("ADMIN_ROLES")),
            "{path}: {body}"
        );
    }
}

on_both_backends!(the_overview_shows_users_rooms_queues_and_history);

/// Proves the overview shows who is online with which connection, the rooms with their
/// members, the offline queues, the session history with why sessions ended, and counters
/// that grow with messages and connections; on SQLite and on PostgreSQL.
async fn the_overview_shows_users_rooms_queues_and_history(backend: Backend) {
    // Arrange: bob came and went (so a notification to him is queued); alice is online in a room.
    let Some(app) = spawn_on(backend, |_| {}).await else {
        return;
    };
    let (bob, _) = app.user("bob", "USER").await;
    bob.close().await;
    let (mut alice, _) = app.user("alice", "USER").await;
    alice.emit("join-room", json!({"room": "lobby"})).await;
    alice.expect("joined-room").await;
    let (status, _) = json_of(
        app.rest(
            Method::POST,
            "/websocket/send-notification",
            "root",
            "ADMIN",
        )
        .json(&json!({"userId": "bob", "message": "while you were away"}))
        .send()
        .await
        .expect("response"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Act
    let overview = app.rest(Method::GET, "/websocket/admin/overview", "root", "ADMIN");
    let (status, o) = json_of(overview.send().await.expect("response")).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{o}");
    assert_eq!(
        (o["usersTotal"].as_u64(), o["sessionsTotal"].as_u64()),
        (Some(1), Some(1))
    );
    let user = &o["users"][0];
    assert_eq!(
        (user["userId"].as_str(), user["sessions"].as_u64()),
        (Some("alice"), Some(1))
    );
    let connection = &user["connections"][0];
    assert_eq!(connection["transport"], "ws");
    assert!(
        connection["remoteAddr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{connection}"
    );
    assert_eq!(o["roomsTotal"], 1);
    assert_eq!(
        o["rooms"][0],
        json!({"name": "lobby", "membersTotal": 1, "onlineTotal": 1,
               "policy": {"pattern": "*", "join": "anyone", "post": "members", "history": "all"},
               "members": [{"userId": "alice", "online": true, "addedByServer": false}]})
    );
    assert_eq!(
        o["offlineQueues"],
        json!({"largest": [{"userId": "bob", "pending": 1}], "users": 1, "messages": 1})
    );
    let history = o["recentSessions"].as_array().expect("history");
    assert_eq!(history.len(), 2, "{o}");
    assert_eq!(
        (
            history[0]["userId"].as_str(),
            &history[0]["disconnectReason"]
        ),
        (Some("alice"), &Value::Null),
        "newest first, live"
    );
    assert_eq!(
        (
            history[1]["userId"].as_str(),
            history[1]["disconnectReason"].as_str()
        ),
        (Some("bob"), Some("client_closed"))
    );
    assert_eq!(o["counters"]["connectionsOpened"], 2);
    assert_eq!(o["counters"]["messagesStored"], 1, "the notification");
}

/// Reads a Server-Sent Events body one `overview` event at a time.
struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    /// The next `overview` event's data, within `WAIT`.
    async fn next_overview(&mut self) -> Value {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    if block.lines().any(|l| l == "event: overview") {
                        let data: String = block
                            .lines()
                            .filter_map(|l| l.strip_prefix("data: "))
                            .collect();
                        return serde_json::from_str(&data).expect("JSON data");
                    }
                    continue;
                }
                let chunk = self.response.chunk().await.expect("read").expect("open");
                self.buffer.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .expect("an overview event within the timeout")
    }
}

/// Proves the stream sends a snapshot as soon as it opens, and then keeps sending them, so a
/// user who connects appears without the page asking.
#[tokio::test]
async fn the_stream_sends_a_snapshot_at_once_and_shows_a_user_who_connects() {
    let app = spawn_app().await;
    let response = app
        .rest(Method::GET, "/websocket/admin/stream", "root", "ADMIN")
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], "text/event-stream");
    let mut stream = SseReader {
        response,
        buffer: String::new(),
    };
    let first = stream.next_overview().await;
    assert_eq!(first["usersTotal"], 0, "{first}");

    let (_alice, _) = app.user("alice", "USER").await;

    let seen = tokio::time::timeout(WAIT, async {
        loop {
            let next = stream.next_overview().await;
            if next["usersTotal"] != 0 {
                return next;
            }
        }
    })
    .await
    .expect("alice shown within the timeout");
    assert_eq!(seen["users"][0]["userId"], "alice", "{seen}");
    assert!(seen["serverTime"].as_str() > first["serverTime"].as_str());
}
