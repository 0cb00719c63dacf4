//! The operators' side of webhooks (`docs/protocol.md` section 15, README "REST API"): the
//! endpoint list with its backlog and the sender's health, the failed events a page at a time,
//! and sending them again; admins only, bad queries refused by name, an unknown endpoint 404
//! `unknown_endpoint`, no secret ever shown; and `switchboard check-config`'s endpoint table.
//! The receiver is a real HTTP server (axum on 127.0.0.1:0) that refuses with 500 until the
//! test lets it take events; `WEBHOOK_GIVE_UP_SECS` is 1, so refused events fail quickly.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use reqwest::Method;
use serde_json::{Value, json};
use switchboard::Settings;
use switchboard::config::{Subscription, WebhookEndpoint, WebhookEvent, WebhookSecret};

use crate::helpers::*;

/// The endpoint's secret: `whsec_` + base64 of "rest-test-key".
const WHSEC: &str = "whsec_cmVzdC10ZXN0LWtleQ==";
/// How long events take to fail and to be sent again: the give-up time, backoffs and the
/// sender's idle look, with room for a loaded machine.
const DELIVERY: Duration = Duration::from_secs(20);

/// The application's receiver: refuses (500) until `accept` is set, then records the events
/// it took.
#[derive(Default)]
struct Receiver {
    accept: AtomicBool,
    events: Mutex<Vec<Value>>,
}

/// A running receiver; stops when dropped.
struct Running {
    addr: SocketAddr,
    receiver: Arc<Receiver>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Running {
    async fn start() -> Self {
        let receiver = Arc::new(Receiver::default());
        let router = axum::Router::new()
            .route("/hook", axum::routing::post(take))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("the receiver's address");
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("the receiver serves");
        });
        Self {
            addr,
            receiver,
            task,
        }
    }

    /// The gateway's settings with this receiver as endpoint `ops` (the default event set).
    fn configure(&self, settings: &mut Settings) {
        settings.webhooks.give_up = Duration::from_secs(1);
        settings.webhooks.endpoints.push(WebhookEndpoint {
            name: "ops".into(),
            url: format!("http://{}/hook", self.addr),
            secret: WebhookSecret::parse(WHSEC).expect("secret"),
            subscription: Subscription {
                events: WebhookEvent::default_set(),
                message_events: Vec::new(),
                rooms: Vec::new(),
            },
        });
    }

    /// The `(type, id)` of every event taken so far.
    fn taken(&self) -> Vec<(String, i64)> {
        let events = self.receiver.events.lock().expect("events");
        events
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap_or_default().to_owned(),
                    e["id"].as_i64().unwrap_or_default(),
                )
            })
            .collect()
    }
}

async fn take(State(receiver): State<Arc<Receiver>>, body: Bytes) -> StatusCode {
    if !receiver.accept.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let events = match body.get("events") {
        Some(Value::Array(batch)) => batch.clone(),
        _ => vec![body],
    };
    receiver.events.lock().expect("events").extend(events);
    StatusCode::NO_CONTENT
}

/// An admin's GET of `path`: the status and the body, as JSON and as text.
async fn admin_get(app: &TestApp, path: &str) -> (StatusCode, Value, String) {
    let response = app
        .rest(Method::GET, path, "root", "ADMIN")
        .send()
        .await
        .expect("response");
    let status = response.status();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON: {text}"));
    (status, body, text)
}

async fn resend(app: &TestApp, body: Value) -> (StatusCode, Value) {
    let response = app
        .rest(
            Method::POST,
            "/websocket/webhooks/failed/resend",
            "root",
            "ADMIN",
        )
        .json(&body)
        .send()
        .await
        .expect("response");
    let status = response.status();
    (status, response.json().await.expect("JSON body"))
}

/// Endpoint `ops` as `GET /websocket/webhooks` lists it.
async fn ops(app: &TestApp) -> Value {
    let (status, body, text) = admin_get(app, "/websocket/webhooks").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!text.contains("whsec_"), "never the secret: {text}");
    body["endpoints"][0].clone()
}

on_both_backends!(failed_events_are_listed_with_the_senders_health_and_arrive_when_sent_again);

/// Proves the round trip an operator makes: events a refusing endpoint never took are
/// listed as failed (with the endpoint's failing health beside them, a page at a time), and
/// once the endpoint is back, sending one again by id and then the rest by endpoint delivers
/// them and leaves nothing failed; on SQLite and on PostgreSQL.
async fn failed_events_are_listed_with_the_senders_health_and_arrive_when_sent_again(
    backend: Backend,
) {
    // Arrange: a receiver that refuses; alice connects, which makes session.opened and
    // user.online for it.
    let receiver = Running::start().await;
    let Some(app) = spawn_on(backend, |s| receiver.configure(s)).await else {
        return;
    };
    let (_alice, _) = app.user("alice", "USER").await;

    // Act: wait until both events failed.
    let endpoint = eventually(DELIVERY, "both events failed", async || {
        let endpoint = ops(&app).await;
        (endpoint["failed"].as_u64() == Some(2)).then_some(endpoint)
    })
    .await;

    // Assert: the endpoint, its backlog and its failing health.
    assert_eq!(endpoint["name"], "ops");
    assert_eq!(endpoint["url"], format!("http://{}/hook", receiver.addr));
    assert_eq!(
        endpoint["events"],
        json!(
            WebhookEvent::default_set()
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>()
        )
    );
    assert_eq!(
        (endpoint["messageEvents"].clone(), endpoint["rooms"].clone()),
        (json!([]), json!([]))
    );
    assert_eq!(endpoint["pending"], 0, "{endpoint}");
    let health = &endpoint["health"];
    assert_eq!(health["lastResult"], "error", "{endpoint}");
    assert!(
        health["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("500")),
        "{endpoint}"
    );
    assert!(
        health["consecutiveFailures"].as_u64() >= Some(1),
        "{endpoint}"
    );
    assert!(health["lastAttemptAt"].is_string(), "{endpoint}");

    // The failed events, a page at a time.
    let (status, all, _) = admin_get(&app, "/websocket/webhooks/failed?endpoint=ops").await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let events = all["events"].as_array().expect("events");
    let mut types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    types.sort_unstable();
    assert_eq!(types, ["session.opened", "user.online"], "{all}");
    assert_eq!(all["next"], Value::Null, "one page holds them");
    for event in events {
        assert_eq!(event["endpoint"], "ops");
        assert_eq!(event["data"]["user"]["userId"], "alice", "{event}");
        assert!(event["attempts"].as_i64() >= Some(1), "{event}");
        assert!(
            event["lastError"]
                .as_str()
                .is_some_and(|e| e.contains("500")),
            "{event}"
        );
        assert!(event["timestamp"].is_string() && event["failedAt"].is_string());
    }
    let (first, second) = (events[0]["id"].clone(), events[1]["id"].clone());
    let taken = |i: usize| {
        let event = &events[i];
        let kind = event["type"].as_str().unwrap_or_default().to_owned();
        (kind, event["id"].as_i64().unwrap_or(-1))
    };
    let (taken_first, taken_second) = (taken(0), taken(1));
    let (_, page, _) = admin_get(&app, "/websocket/webhooks/failed?limit=1").await;
    assert_eq!(
        (page["events"][0]["id"].clone(), page["next"].clone()),
        (first.clone(), first.clone())
    );
    let (_, page, _) = admin_get(
        &app,
        &format!("/websocket/webhooks/failed?limit=1&after={first}"),
    )
    .await;
    assert_eq!(page["events"][0]["id"], second);

    // Act: the endpoint is back; send the first again by id, then the rest by endpoint.
    receiver.receiver.accept.store(true, Ordering::SeqCst);
    let (status, answer) = resend(&app, json!({"ids": [first]})).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({"resent": 1})));
    eventually(DELIVERY, "the first event arrives", async || {
        receiver.taken() == [taken_first.clone()]
    })
    .await;
    let (status, answer) = resend(&app, json!({"endpoint": "ops"})).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({"resent": 1})));

    // Assert: both arrived, nothing is failed or pending, and the sender is healthy.
    eventually(DELIVERY, "the second event arrives", async || {
        receiver.taken().len() == 2
    })
    .await;
    assert_eq!(receiver.taken(), [taken_first, taken_second], "in order");
    let endpoint = eventually(DELIVERY, "the endpoint is clear", async || {
        let endpoint = ops(&app).await;
        (endpoint["failed"] == 0 && endpoint["pending"] == 0).then_some(endpoint)
    })
    .await;
    let health = &endpoint["health"];
    assert_eq!(
        (
            health["lastResult"].clone(),
            health["lastError"].clone(),
            health["consecutiveFailures"].clone(),
            health["nextAttemptAt"].clone()
        ),
        (json!("ok"), Value::Null, json!(0), Value::Null),
        "{endpoint}"
    );
    let (_, none, _) = admin_get(&app, "/websocket/webhooks/failed").await;
    assert_eq!(none, json!({"events": [], "next": null}));
}

/// Proves the three endpoints are for admins (401 without a token, 403 for another role),
/// that a gateway without endpoints lists none, and that each bad query or body is one 400
/// naming it, an unknown endpoint one 404 with its code.
#[tokio::test]
async fn the_webhook_endpoints_refuse_non_admins_bad_queries_and_unknown_endpoints() {
    let app = spawn_app().await;
    let paths = [
        (Method::GET, "/websocket/webhooks"),
        (Method::GET, "/websocket/webhooks/failed"),
        (Method::POST, "/websocket/webhooks/failed/resend"),
    ];
    for (method, path) in &paths {
        let anonymous = reqwest::Client::new()
            .request(method.clone(), app.url(path))
            .json(&json!({}))
            .timeout(WAIT);
        let status = anonymous.send().await.expect("response").status();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        let user = app
            .rest(method.clone(), path, "bob", "USER")
            .json(&json!({}));
        let response = user.send().await.expect("response");
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
        let body: Value = response.json().await.expect("JSON");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("ADMIN_ROLES")),
            "{path}: {body}"
        );
    }

    let (status, list, _) = admin_get(&app, "/websocket/webhooks").await;
    assert_eq!((status, list), (StatusCode::OK, json!({"endpoints": []})));
    let (status, answer) = resend(&app, json!({})).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({"resent": 0})));

    for (query, names) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("after=-1", "after"),
    ] {
        let (status, body, _) =
            admin_get(&app, &format!("/websocket/webhooks/failed?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains(names)),
            "{query}: {body}"
        );
    }
    for body in [
        json!({"ids": []}),
        json!({"ids": ["one"]}),
        json!({"endpoints": "ops"}),
    ] {
        let (status, answer) = resend(&app, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
    }

    let (status, body, _) = admin_get(&app, "/websocket/webhooks/failed?endpoint=nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "unknown_endpoint");
    let (status, body) = resend(&app, json!({"endpoint": "nope"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "unknown_endpoint");
}

/// Proves `switchboard check-config` prints each webhook endpoint's name, URL, events and
/// filters, and none of the secrets (nor a password in a URL).
#[tokio::test]
async fn check_config_prints_the_webhook_endpoints_and_no_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("hooks.json");
    std::fs::write(
        &file,
        json!({"endpoints": [{
            "name": "search",
            "url": "https://bot:hunter2@search.example/in",
            "secret": "whsec_c2VhcmNoLXNlY3JldA==",
            "events": ["message.stored"],
            "messageEvents": ["room-message"],
            "rooms": ["ticket-*", "support"],
        }]})
        .to_string(),
    )
    .expect("write the file");
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("check-config")
        .env_clear()
        .env("JWT_SECRET", SECRET)
        .env("DATABASE_URL", dir.path().join("c.db"))
        .env("WEBHOOK_URL", "http://127.0.0.1:9/hook")
        .env("WEBHOOK_SECRET", WHSEC)
        .env("WEBHOOKS_FILE", &file)
        .env("JOIN_HOOK_SECRET", "whsec_am9pbi1ob29r")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let table: Vec<Vec<&str>> = stdout
        .split("webhook endpoints (secrets not shown):")
        .nth(1)
        .and_then(|rest| rest.split("room policies").next())
        .expect("the endpoint table precedes the policies")
        .lines()
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .filter(|cells: &Vec<&str>| !cells.is_empty())
        .collect();
    let default_events: Vec<&str> = WebhookEvent::default_set()
        .iter()
        .map(|e| e.as_str())
        .collect();
    let default_events = default_events.join(",");
    assert_eq!(
        table,
        vec![
            vec!["name", "url", "events", "messageEvents", "rooms"],
            vec![
                "default",
                "http://127.0.0.1:9/hook",
                &default_events,
                "any",
                "any"
            ],
            vec![
                "search",
                "https://bot:***@search.example/in",
                "message.stored",
                "room-message",
                "ticket-*,support"
            ],
        ],
        "{stdout}"
    );
    for secret in [
        WHSEC,
        "whsec_c2VhcmNoLXNlY3JldA==",
        "whsec_am9pbi1ob29r",
        "hunter2",
    ] {
        assert!(!stdout.contains(secret), "{secret} shown:\n{stdout}");
    }
}
