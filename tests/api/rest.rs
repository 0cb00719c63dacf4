//! The REST API against the real server: every endpoint, every status, and that
//! notifications reach the right connections with the payloads of `docs/protocol.md` section 6.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

on_both_backends!(
    a_notification_to_an_offline_or_unknown_user_is_queued_and_delivered_on_connect,
    an_idempotency_key_makes_a_retry_return_the_original,
    session_history_queue_and_messages_follow_the_visibility_rules,
);

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("response");
    let status = response.status();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON body: {text}"));
    (status, body)
}

fn assert_timestamp(v: &Value) {
    let s = v.as_str().unwrap_or_default();
    assert!(s.len() == 24 && s.ends_with('Z'), "timestamp: {v}");
}

const PROTECTED: &[(&str, &str)] = &[
    ("GET", "/websocket/active-users"),
    ("GET", "/websocket/users-stats"),
    ("POST", "/websocket/send-notification"),
    ("POST", "/websocket/broadcast"),
    ("POST", "/websocket/send-to-role"),
    ("POST", "/websocket/publish"),
    ("GET", "/websocket/users/alice/sessions"),
    ("GET", "/websocket/users/alice/queue"),
    ("POST", "/websocket/users/alice/disconnect"),
    ("POST", "/websocket/users/alice/revoke"),
    ("GET", "/websocket/messages"),
    ("GET", "/websocket/admin/overview"),
    ("GET", "/websocket/admin/stream"),
    ("PUT", "/websocket/rooms/ops/members/alice"),
    ("DELETE", "/websocket/rooms/ops/members/alice"),
    ("GET", "/websocket/rooms/ops/members"),
    ("GET", "/websocket/users/alice/rooms"),
    ("GET", "/websocket/webhooks"),
    ("GET", "/websocket/webhooks/failed"),
    ("POST", "/websocket/webhooks/failed/resend"),
];

/// The documented path of a [`PROTECTED`] one: its user `alice` and room `ops` as parameters.
fn template(path: &str) -> String {
    let path = path.replace("/rooms/ops/", "/rooms/{room}/");
    let path = path.replace("/alice/", "/{userId}/");
    match path.strip_suffix("/alice") {
        Some(head) => format!("{head}/{{userId}}"),
        None => path,
    }
}

#[tokio::test]
async fn every_endpoint_refuses_a_missing_or_bad_token_with_401() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    for (method, path) in PROTECTED {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let (status, body) = send(client.request(method.clone(), app.url(path))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(body["error"], "missing token");
        let (status, body) =
            send(client.request(method, app.url(path)).bearer_auth("garbage")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(body["error"], "invalid token");
    }
}

#[tokio::test]
async fn post_endpoints_need_an_admin_role() {
    let app = spawn_app().await;
    for path in [
        "/websocket/send-notification",
        "/websocket/broadcast",
        "/websocket/send-to-role",
        "/websocket/publish",
        "/websocket/users/x/disconnect",
        "/websocket/users/x/revoke",
    ] {
        let (status, body) = send(
            app.rest(Method::POST, path, "bob", "USER")
                .json(&json!({"userId": "x", "role": "R", "message": "m"})),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("ADMIN_ROLES")),
            "{body}"
        );
    }
}

#[tokio::test]
async fn bad_bodies_get_400_413_415_naming_the_problem() {
    let app = spawn_app_with(|s| s.limits.max_body_bytes = 1024).await;
    let post = || {
        app.rest(
            Method::POST,
            "/websocket/send-notification",
            "root",
            "ADMIN",
        )
    };
    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            post()
                .header("content-type", "application/json")
                .body("{nope"),
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        (
            post().json(&json!({"message": "m"})),
            StatusCode::BAD_REQUEST,
            "missing field `userId`",
        ),
        (
            post().json(&json!({"userId": 5, "message": "m"})),
            StatusCode::BAD_REQUEST,
            "userId",
        ),
        (
            post().json(&json!({"userId": "a", "message": ""})),
            StatusCode::BAD_REQUEST,
            "message must not be empty",
        ),
        (
            post().json(&json!({"userId": "a", "message": "m", "type": "no spaces"})),
            StatusCode::BAD_REQUEST,
            "invalid type",
        ),
        (
            post().json(&json!({"userId": "", "message": "m"})),
            StatusCode::BAD_REQUEST,
            "userId",
        ),
        (
            post().header("content-type", "text/plain").body("hi"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type: application/json",
        ),
        (
            post().json(&json!({"userId": "a", "message": "x".repeat(2000)})),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too large",
        ),
        (
            post()
                .header("idempotency-key", "")
                .json(&json!({"userId": "a", "message": "m"})),
            StatusCode::BAD_REQUEST,
            "Idempotency-Key",
        ),
    ];
    for (request, status, expected) in cases {
        let (got, body) = send(request).await;
        assert_eq!(got, status, "{body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains(expected)),
            "{expected}: {body}"
        );
    }
    let (status, body) =
        send(app.rest(Method::GET, "/websocket/messages?limit=0", "root", "ADMIN")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("limit")),
        "{body}"
    );
    let (status, _) =
        send(app.rest(Method::GET, "/websocket/messages?since=-1", "root", "ADMIN")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn active_users_and_stats_describe_who_is_online() {
    let app = spawn_app().await;
    let (_alice, _) = app.user("alice", "ADMIN").await;
    let (_bob, _) = app.user("bob", "USER").await;
    let (status, body) =
        send(app.rest(Method::GET, "/websocket/active-users", "carol", "USER")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["count"], 2);
    assert_eq!(body["users"][0]["userId"], "alice");
    assert_eq!(body["stats"]["totalUsers"], 2);
    assert_eq!(body["stats"]["usersByRole"], json!({"ADMIN": 1, "USER": 1}));
    let (status, stats) =
        send(app.rest(Method::GET, "/websocket/users-stats", "carol", "USER")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats["totalUsers"], 2);
    assert_eq!(stats["connectionTimes"][1]["sessionsCount"], 1);
}

#[tokio::test]
async fn a_notification_reaches_each_connection_of_the_user_with_the_contract_payload() {
    let app = spawn_app().await;
    let (mut bob1, _) = app.user("bob", "USER").await;
    let (mut bob2, _) = app.user("bob", "USER").await;
    let (mut carol, _) = app.user("carol", "USER").await;
    let (status, body) = send(
        app.rest(
            Method::POST,
            "/websocket/send-notification",
            "root",
            "ADMIN",
        )
        .json(&json!({"userId": "bob", "message": "Your report is ready", "type": "success"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["delivered"], 2);
    assert_eq!(body["queued"], false);
    for bob in [&mut bob1, &mut bob2] {
        let n = bob.wait_for("notification").await;
        assert_eq!(n["id"], body["id"]);
        assert_eq!(n["message"], "Your report is ready");
        assert_eq!(n["type"], "success");
        assert_eq!(n["from"]["userId"], "root");
        assert_eq!(n["from"]["role"], "ADMIN");
        assert_timestamp(&n["timestamp"]);
    }
    carol.expect_silence().await;

    // The default type is info.
    let (_, body) = send(
        app.rest(
            Method::POST,
            "/websocket/send-notification",
            "root",
            "ADMIN",
        )
        .json(&json!({"userId": "carol", "message": "hi"})),
    )
    .await;
    let n = carol.wait_for("notification").await;
    assert_eq!(n["type"], "info");
    assert_eq!(n["id"], body["id"]);
}

async fn a_notification_to_an_offline_or_unknown_user_is_queued_and_delivered_on_connect(
    backend: Backend,
) {
    let Some(app) = spawn_on(backend, |_| {}).await else {
        return;
    };
    for user in ["dave", "never-seen"] {
        let (status, body) = send(
            app.rest(
                Method::POST,
                "/websocket/send-notification",
                "root",
                "ADMIN",
            )
            .json(&json!({"userId": user, "message": format!("for {user}")})),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["queued"], true);
        assert_eq!(body["delivered"], 0);
        let (status, queue) = send(app.rest(
            Method::GET,
            &format!("/websocket/users/{user}/queue"),
            user,
            "USER",
        ))
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(queue["count"], 1);
        assert_eq!(queue["messages"][0]["id"], body["id"]);
        assert_eq!(queue["messages"][0]["event"], "notification");
        let (mut client, _) = app.user(user, "USER").await;
        let n = client.expect("notification").await;
        assert_eq!(n["id"], body["id"]);
        assert_eq!(n["message"], format!("for {user}"));
    }
}

#[tokio::test]
async fn broadcast_and_role_notifications_reach_the_right_connections() {
    let app = spawn_app().await;
    let (mut admin, _) = app.user("ann", "ADMIN").await;
    let (mut user, _) = app.user("uma", "USER").await;
    admin.wait_for("user-connected").await;

    let (status, body) = send(
        app.rest(Method::POST, "/websocket/broadcast", "root", "ADMIN")
            .json(&json!({"message": "maintenance at 10", "type": "warning"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["recipients"], 2);
    for client in [&mut admin, &mut user] {
        let n = client.expect("broadcast-notification").await;
        assert_eq!(n["id"], body["id"]);
        assert_eq!(n["type"], "warning");
        assert_eq!(n["from"]["userId"], "root");
    }

    let (status, body) = send(
        app.rest(Method::POST, "/websocket/send-to-role", "root", "ADMIN")
            .json(&json!({"role": "ADMIN", "message": "admins only"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["recipients"], 1);
    let n = admin.expect("role-notification").await;
    assert_eq!(n["targetRole"], "ADMIN");
    assert_eq!(n["message"], "admins only");
    assert_eq!(n["id"], body["id"]);
    user.expect_silence().await;

    // Both are in the history: the user replays the broadcast, not the admins' notice.
    user.emit("sync", json!({"since": 0})).await;
    let replayed = user.expect("broadcast-notification").await;
    assert_eq!(replayed["message"], "maintenance at 10");
    assert_eq!(user.expect("sync-complete").await["count"], 1);
}

async fn an_idempotency_key_makes_a_retry_return_the_original(backend: Backend) {
    let Some(app) = spawn_on(backend, |_| {}).await else {
        return;
    };
    let (mut bob, _) = app.user("bob", "USER").await;
    let post = || {
        app.rest(Method::POST, "/websocket/broadcast", "root", "ADMIN")
            .header("idempotency-key", "deploy-42")
            .json(&json!({"message": "deployed"}))
    };
    let (_, first) = send(post()).await;
    let (status, again) = send(post()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["duplicate"], true);
    bob.expect("broadcast-notification").await;
    bob.expect_silence().await;
}

async fn session_history_queue_and_messages_follow_the_visibility_rules(backend: Backend) {
    let Some(app) = spawn_on(backend, |_| {}).await else {
        return;
    };
    let (mut alice, _) = app.user("alice", "USER").await;
    let (mut bob, _) = app.user("bob", "USER").await;
    alice.expect("user-connected").await;
    alice.emit("join-room", json!({"room": "team"})).await;
    alice.expect("joined-room").await;
    alice
        .say(json!({"message": "to bob", "to": "bob"}), 1)
        .await;
    alice
        .emit_ack(
            "room-message",
            json!({"room": "team", "message": "team only"}),
            2,
        )
        .await;
    alice.wait_for_ack(2).await;
    let public = alice.say(json!({"message": "everyone"}), 3).await;
    bob.wait_for("broadcast-message").await;

    // Sessions: oneself or an admin.
    let (status, body) = send(app.rest(
        Method::GET,
        "/websocket/users/alice/sessions",
        "alice",
        "USER",
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["count"], 1);
    assert_eq!(body["sessions"][0]["transport"], "ws");
    assert!(body["sessions"][0]["disconnectedAt"].is_null());
    let (status, _) = send(app.rest(
        Method::GET,
        "/websocket/users/alice/sessions",
        "bob",
        "USER",
    ))
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) =
        send(app.rest(Method::GET, "/websocket/users/alice/queue", "bob", "USER")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = send(app.rest(
        Method::GET,
        "/websocket/users/alice/sessions",
        "root",
        "ADMIN",
    ))
    .await;
    assert_eq!(status, StatusCode::OK);

    // Messages: an admin sees all three; carol only the public one.
    let (_, all) = send(app.rest(Method::GET, "/websocket/messages", "root", "ADMIN")).await;
    assert_eq!(all["count"], 3);
    let (_, carols) = send(app.rest(Method::GET, "/websocket/messages", "carol", "USER")).await;
    assert_eq!(carols["count"], 1);
    assert_eq!(carols["messages"][0]["id"], public["id"]);
    assert_eq!(carols["messages"][0]["event"], "broadcast-message");
    assert_eq!(carols["messages"][0]["data"]["message"], "everyone");
    let (_, bobs) = send(app.rest(Method::GET, "/websocket/messages", "bob", "USER")).await;
    assert_eq!(
        bobs["count"], 2,
        "the private one and the public one: {bobs}"
    );
    let (_, team) = send(app.rest(
        Method::GET,
        "/websocket/messages?room=team",
        "root",
        "ADMIN",
    ))
    .await;
    assert_eq!(team["count"], 1);
    assert_eq!(team["messages"][0]["data"]["room"], "team");
    let (_, page) =
        send(app.rest(Method::GET, "/websocket/messages?limit=2", "root", "ADMIN")).await;
    assert_eq!(page["count"], 2);
    assert_eq!(page["more"], true);
    let next = format!("/websocket/messages?since={}", page["lastMessageId"]);
    let (_, rest) = send(app.rest(Method::GET, &next, "root", "ADMIN")).await;
    assert_eq!(rest["count"], 1);
    let (_, by_user) =
        send(app.rest(Method::GET, "/websocket/messages?user=bob", "root", "ADMIN")).await;
    assert_eq!(by_user["count"], 1, "to or from bob: {by_user}");
}

#[tokio::test]
async fn an_admin_can_disconnect_a_user() {
    let app = spawn_app().await;
    let (mut watcher, _) = app.user("watcher", "USER").await;
    let (mut m1, _) = app.user("mallory", "USER").await;
    let (mut m2, _) = app.user("mallory", "USER").await;
    watcher.expect("user-connected").await;
    let (status, body) = send(app.rest(
        Method::POST,
        "/websocket/users/mallory/disconnect",
        "root",
        "ADMIN",
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["disconnected"], 2);
    for m in [&mut m1, &mut m2] {
        let close = m.expect_close().await.expect("close frame");
        assert_eq!(u16::from(close.code), 1008);
        assert!(close.reason.contains("operator"), "{}", close.reason);
    }
    assert_eq!(
        watcher.expect("user-disconnected").await["user"]["userId"],
        "mallory"
    );
}

#[tokio::test]
async fn health_readiness_and_the_openapi_document() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    let (status, body) = send(client.get(app.url("/healthz"))).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, body) = send(client.get(app.url("/readyz"))).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ready"))
    );
    assert_eq!(
        body["store"],
        json!({"reachable": true, "writes": "ok"}),
        "{body}"
    );

    let (status, doc) = send(client.get(app.url("/websocket/openapi.json"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    let checked_in: Value =
        serde_json::from_str(&std::fs::read_to_string(file).expect("read")).expect("JSON");
    assert!(
        doc == checked_in,
        "the served document is docs/openapi.json"
    );
    let paths = doc["paths"].as_object().expect("paths");
    let mut documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .expect("operations")
                .keys()
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    documented.sort();
    let mut routed: Vec<(String, String)> = PROTECTED
        .iter()
        .map(|(m, p)| (m.to_string(), template(p)))
        .chain([
            ("GET".into(), "/websocket/openapi.json".into()),
            ("GET".into(), "/healthz".into()),
            ("GET".into(), "/readyz".into()),
            ("GET".into(), "/metrics".into()),
        ])
        .collect();
    routed.sort();
    assert_eq!(documented, routed, "the document lists exactly the routes");
    // It says which need a token: the protected ones keep the global bearer requirement, the
    // others override it with none; `/metrics` asks for METRICS_TOKEN, or nothing when unset.
    for (method, path) in &documented {
        let needs_token = PROTECTED
            .iter()
            .any(|(m, p)| m == method && template(p) == *path);
        let operation = &paths[path][method.to_lowercase()];
        if path == "/metrics" {
            let either = json!([{}, {"metricsToken": []}]);
            assert_eq!(operation["security"], either, "{operation}");
            continue;
        }
        assert_eq!(
            operation["security"] != json!([]),
            needs_token,
            "{method} {path}: {operation}"
        );
    }
    // And every documented route exists: an admin request is never 404 or 405.
    for (method, path) in &documented {
        let path = path.replace("{userId}", "someone");
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let response = app
            .rest(method.clone(), &path, "root", "ADMIN")
            .json(&json!({"userId": "x", "role": "R", "message": "m"}))
            .send()
            .await
            .expect("response");
        assert!(
            !matches!(
                response.status(),
                StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
            ),
            "{method} {path}: {}",
            response.status()
        );
    }
}
