//! `GET /metrics`: each figure moves when the thing it counts happens, read through the
//! endpoint as Prometheus would (the text format, parsed line by line), and `METRICS_TOKEN`
//! guards it. Counters start at zero on a fresh gateway, so "before" is asserted too: a
//! figure that moved without its cause would fail.

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchboard::config::MetricsToken;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::helpers::*;

const TOKEN: &str = "scrape-token-0123456789";

/// The metrics text, as a scraper without a token gets it.
async fn scrape(app: &TestApp) -> String {
    let response = reqwest::Client::new()
        .get(app.url("/metrics"))
        .timeout(WAIT)
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.expect("a text body")
}

/// The value of the sample `name{labels}` (labels exactly these, in any order), or 0 when
/// the series does not exist yet (a labelled counter appears with its first count).
pub(crate) fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut wanted: Vec<(&str, &str)> = labels.to_vec();
    wanted.sort_unstable();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (series_name, label_text) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}').unwrap_or(rest)),
            None => (series, ""),
        };
        if series_name != name {
            continue;
        }
        let mut found: Vec<(&str, &str)> = label_text
            .split(',')
            .filter(|pair| !pair.is_empty())
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        found.sort_unstable();
        if found == wanted {
            return value.parse().expect("a number");
        }
    }
    0.0
}

/// Scrapes until `name{labels}` reads `want` (figures that move after the client already
/// heard of the event: a close, a replayed page, a receipt's commit); fails after `WAIT`.
async fn wait_for_sample(app: &TestApp, name: &str, labels: &[(&str, &str)], want: f64) {
    let what = format!("{name}{labels:?} reading {want}");
    eventually(WAIT, &what, || async move {
        sample(&scrape(app).await, name, labels) == want
    })
    .await;
}

const WS: &[(&str, &str)] = &[("transport", "ws")];
const SOCKETIO: &[(&str, &str)] = &[("transport", "socketio")];

#[tokio::test]
async fn a_ws_connection_is_counted_while_open_and_by_its_close_reason() {
    let app = spawn_app().await;
    let before = scrape(&app).await;
    assert_eq!(sample(&before, "switchboard_connections", WS), 0.0);
    assert_eq!(sample(&before, "switchboard_users_online", &[]), 0.0);

    let (alice, _) = app.user("alice", "USER").await;
    let open = scrape(&app).await;
    assert_eq!(sample(&open, "switchboard_connections", WS), 1.0);
    assert_eq!(sample(&open, "switchboard_connections", SOCKETIO), 0.0);
    assert_eq!(sample(&open, "switchboard_users_online", &[]), 1.0);
    assert_eq!(
        sample(&open, "switchboard_connections_opened_total", WS),
        1.0
    );
    assert_eq!(
        sample(&open, "switchboard_handshake_seconds_count", WS),
        1.0
    );

    alice.close().await;
    wait_for_sample(&app, "switchboard_connections", WS, 0.0).await;
    let closed = scrape(&app).await;
    let client_closed = [("transport", "ws"), ("reason", "client_closed")];
    assert_eq!(
        sample(
            &closed,
            "switchboard_connections_closed_total",
            &client_closed
        ),
        1.0
    );
    assert_eq!(sample(&closed, "switchboard_users_online", &[]), 0.0);
}

#[tokio::test]
async fn a_socketio_connection_is_counted_under_its_own_transport() {
    // A raw Engine.IO polling client: handshake, Socket.IO connect with a token, disconnect.
    let app = spawn_app().await;
    let (_, with_sid) = polling_connect(app.addr, &app.token("alice", "USER")).await;
    poll_until(app.addr, &with_sid, "connected").await;

    let text = scrape(&app).await;
    assert_eq!(sample(&text, "switchboard_connections", SOCKETIO), 1.0);
    assert_eq!(sample(&text, "switchboard_connections", WS), 0.0);
    assert_eq!(
        sample(&text, "switchboard_connections_opened_total", SOCKETIO),
        1.0
    );
    assert_eq!(
        sample(&text, "switchboard_handshake_seconds_count", SOCKETIO),
        1.0
    );

    assert_eq!(poll_at(app.addr, "POST", &with_sid, "41").await, "ok");
    wait_for_sample(&app, "switchboard_connections", SOCKETIO, 0.0).await;
    let closed = [("transport", "socketio"), ("reason", "client_closed")];
    wait_for_sample(&app, "switchboard_connections_closed_total", &closed, 1.0).await;
}

#[tokio::test]
async fn refused_connections_are_counted_by_their_code() {
    let app = spawn_app().await;
    let expired = sign(
        jsonwebtoken::Algorithm::HS256,
        &json!({"sub": "alice", "username": "Alice", "role": "USER", "exp": now_secs() - 3600}),
    );
    let cases = [
        (None, "missing_token"),
        (Some("not-a-jwt".to_string()), "malformed_token"),
        (Some(expired), "token_expired"),
    ];
    for (token, code) in cases {
        let mut request = app.ws_url().into_client_request().expect("request");
        if let Some(token) = token {
            let header = HeaderValue::from_str(&format!("Bearer {token}")).expect("header");
            request.headers_mut().insert("authorization", header);
        }
        let refused = app.connect(request).await.err().expect("refused");
        assert_eq!(refused.0.as_u16(), 401, "{code}");
        let text = scrape(&app).await;
        assert_eq!(
            sample(
                &text,
                "switchboard_auth_refusals_total",
                &[("reason", code)]
            ),
            1.0,
            "{code}"
        );
    }
    let text = scrape(&app).await;
    assert_eq!(
        sample(&text, "switchboard_connections_opened_total", WS),
        0.0
    );
}

#[tokio::test]
async fn client_events_are_counted_by_name_and_outcome() {
    let app = spawn_app().await;
    let (mut alice, _) = app.user("alice", "USER").await;

    alice.emit_ack("get-active-users", Value::Null, 1).await;
    assert_eq!(alice.wait_for_ack(1).await["ok"], true);
    alice
        .emit_ack("leave-room", json!({"room": "nowhere"}), 2)
        .await;
    assert_eq!(alice.wait_for_ack(2).await["code"], "not_member");
    alice.emit_ack("no-such-event", Value::Null, 3).await;
    assert_eq!(alice.wait_for_ack(3).await["code"], "unknown_event");

    let text = scrape(&app).await;
    let events = "switchboard_client_events_total";
    let cases = [
        ("get-active-users", "ok"),
        ("leave-room", "not_member"),
        ("unknown", "unknown_event"),
    ];
    for (event, outcome) in cases {
        let labels = [("event", event), ("outcome", outcome)];
        assert_eq!(sample(&text, events, &labels), 1.0, "{event} {outcome}");
    }
    let never = [("event", "leave-room"), ("outcome", "ok")];
    assert_eq!(sample(&text, events, &never), 0.0);
}

#[tokio::test]
async fn a_room_message_is_counted_as_stored_and_delivered_live_and_commits_are_timed() {
    let app = spawn_app().await;
    let (mut alice, _) = app.user("alice", "USER").await;
    let (mut bob, _) = app.user("bob", "USER").await;
    for (client, ack) in [(&mut alice, 1), (&mut bob, 2)] {
        client
            .emit_ack("join-room", json!({"room": "lobby"}), ack)
            .await;
        assert_eq!(client.wait_for_ack(ack).await["ok"], true);
    }
    let before = scrape(&app).await;
    let stored = [("event", "room-message")];
    assert_eq!(
        sample(&before, "switchboard_messages_stored_total", &stored),
        0.0
    );

    alice
        .emit_ack("room-message", json!({"room": "lobby", "message": "hi"}), 3)
        .await;
    let ack = alice.wait_for_ack(3).await;
    assert_eq!(ack["delivered"], 1, "{ack}");
    bob.wait_for("room-message").await;

    let text = scrape(&app).await;
    assert_eq!(
        sample(&text, "switchboard_messages_stored_total", &stored),
        1.0
    );
    let live = [("kind", "live")];
    assert_eq!(sample(&text, "switchboard_deliveries_total", &live), 1.0);
    assert_eq!(sample(&text, "switchboard_rooms_with_members", &[]), 1.0);
    assert!(sample(&text, "switchboard_store_batch_size_count", &[]) > 0.0);
    assert!(sample(&text, "switchboard_store_commit_seconds_count", &[]) > 0.0);
}

#[tokio::test]
async fn a_message_to_an_offline_user_is_counted_queued_then_replayed() {
    let app = spawn_app().await;
    let (mut alice, _) = app.user("alice", "USER").await;
    let (bob, _) = app.user("bob", "USER").await;
    bob.close().await;
    alice.wait_for("user-disconnected").await;

    alice
        .emit_ack("send-message", json!({"message": "later", "to": "bob"}), 1)
        .await;
    assert_eq!(alice.wait_for_ack(1).await["queued"], true);
    let queued = scrape(&app).await;
    let kind = |k| [("kind", k)];
    assert_eq!(
        sample(&queued, "switchboard_deliveries_total", &kind("queued")),
        1.0
    );
    assert_eq!(
        sample(&queued, "switchboard_deliveries_total", &kind("live")),
        0.0
    );
    assert_eq!(
        sample(&queued, "switchboard_offline_queue_messages", &[]),
        1.0
    );
    assert_eq!(
        sample(&queued, "switchboard_offline_queue_max_per_user", &[]),
        1.0
    );

    let (mut bob, _) = app.user("bob", "USER").await;
    bob.wait_for("private-message").await;
    wait_for_sample(&app, "switchboard_deliveries_total", &kind("replayed"), 1.0).await;
    wait_for_sample(&app, "switchboard_offline_queue_messages", &[], 0.0).await;
    let text = scrape(&app).await;
    assert_eq!(
        sample(&text, "switchboard_offline_queue_max_per_user", &[]),
        0.0
    );
}

#[tokio::test]
async fn kicks_and_rate_limit_disconnects_are_counted_by_reason() {
    let app = spawn_app_with(|s| {
        s.limits.rate_limit_per_sec = 1;
        s.limits.rate_limit_burst = 1;
        s.limits.rate_limit_max_strikes = 2;
    })
    .await;
    let (mut carol, _) = app.user("carol", "USER").await;
    let kicked = app
        .rest(
            reqwest::Method::POST,
            "/websocket/users/carol/disconnect",
            "ops",
            "ADMIN",
        )
        .send()
        .await
        .expect("disconnect");
    assert_eq!(kicked.status(), StatusCode::OK);
    carol.expect_close().await;
    let reason = |r| [("transport", "ws"), ("reason", r)];
    wait_for_sample(
        &app,
        "switchboard_connections_closed_total",
        &reason("kicked"),
        1.0,
    )
    .await;

    let (mut dave, _) = app.user("dave", "USER").await;
    for _ in 0..4 {
        dave.emit("get-active-users", Value::Null).await;
    }
    dave.expect_close().await;
    wait_for_sample(
        &app,
        "switchboard_connections_closed_total",
        &reason("rate_limited"),
        1.0,
    )
    .await;
    let text = scrape(&app).await;
    assert_eq!(
        sample(&text, "switchboard_rate_limit_disconnects_total", &[]),
        1.0
    );
    assert_eq!(
        sample(&text, "switchboard_slow_consumer_disconnects_total", &[]),
        0.0
    );
    let refused = [("event", "get-active-users"), ("outcome", "rate_limited")];
    assert!(sample(&text, "switchboard_client_events_total", &refused) >= 1.0);
}

#[tokio::test]
async fn the_metrics_text_is_prometheus_0_0_4() {
    let app = spawn_app().await;
    let response = reqwest::get(app.url("/metrics")).await.expect("GET");
    let content_type = response.headers()["content-type"].to_str().expect("text");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.expect("body");
    assert!(text.contains("# TYPE switchboard_connections_opened_total counter\n"));
    assert!(!text.contains("# EOF"));
}

#[tokio::test]
async fn with_metrics_token_set_only_a_scraper_that_presents_it_gets_the_metrics() {
    let app = spawn_app_with(|s| s.metrics_token = Some(MetricsToken::new(TOKEN))).await;
    let get = || {
        reqwest::Client::new()
            .get(app.url("/metrics"))
            .timeout(WAIT)
    };
    let cases = [
        (get(), "no Authorization header"),
        (
            get().bearer_auth("scrape-token-wrong-0000"),
            "a wrong token",
        ),
        (get().bearer_auth(app.token("ops", "ADMIN")), "a user's JWT"),
        (
            get().basic_auth("x", Some(TOKEN)),
            "the token, not as a bearer",
        ),
    ];
    for (request, case) in cases {
        let response = request.send().await.expect("answered");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
        let body: Value = response.json().await.expect("a JSON error body");
        assert!(body["error"].as_str().is_some(), "{case}: {body}");
    }
    let allowed = get().bearer_auth(TOKEN).send().await.expect("answered");
    assert_eq!(allowed.status(), StatusCode::OK);
    let text = allowed.text().await.expect("text");
    assert!(text.contains("switchboard_connections"), "{text}");
}
