//! Handshake admission (docs/protocol.md section 2, "Busy"): at most `HANDSHAKE_CONCURRENCY`
//! handshakes at once, the next connections waiting for a turn in order, and those that
//! cannot get one in time (or find `HANDSHAKE_QUEUE` full) refused with `busy` and a hint.
//!
//! The one turn (`HANDSHAKE_CONCURRENCY=1`) is held deterministically, without timing: a
//! Socket.IO client over long-polling resumes from message 0 with more messages owed than its
//! queues hold (`OUTBOUND_QUEUE_CAPACITY=8`, and socketioxide's hand-off as many) and does not
//! poll, so its catch-up waits for room and keeps the turn; once it polls, its catch-up ends
//! and gives the turn back. (A turn is also given back 5 s into a catch-up; each test here
//! is done with the holder well before that.)

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::metrics::sample;

/// Messages the holder is owed: several times what its two queues hold.
const OWED: usize = 60;

async fn gated(concurrency: usize, queue: usize, wait_ms: u64) -> TestApp {
    spawn_app_with(|s| {
        s.handshake.concurrency = concurrency;
        s.handshake.queue = queue;
        s.handshake.wait = Duration::from_millis(wait_ms);
        s.limits.outbound_queue_capacity = 8;
    })
    .await
}

async fn scrape(app: &TestApp) -> String {
    reqwest::Client::new()
        .get(app.url("/metrics"))
        .timeout(WAIT)
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("a text body")
}

async fn gauge(app: &TestApp, name: &str) -> f64 {
    sample(&scrape(app).await, name, &[])
}

/// Stores [`OWED`] broadcasts, then connects a Socket.IO polling client that resumes from
/// message 0 and does not poll; returns its `&sid=` query once its handshake holds the turn.
async fn hold_the_turn(app: &TestApp) -> String {
    for i in 0..OWED {
        let response = app
            .rest(Method::POST, "/websocket/broadcast", "root", "ADMIN")
            .json(&json!({ "message": format!("owed {i}") }))
            .send()
            .await
            .expect("broadcast");
        assert!(response.status().is_success(), "{}", response.status());
    }
    let with_sid = polling_open(app.addr).await;
    // Engine.IO's first ping goes out as its session starts, into the queue the replay will
    // fill: answered first, or a full queue would make it a heartbeat timeout (then a slow
    // consumer) on a loaded machine. The next one is PING_INTERVAL_SECS (25 s) away.
    assert_eq!(poll_at(app.addr, "GET", &with_sid, "").await, "2");
    assert_eq!(poll_at(app.addr, "POST", &with_sid, "3").await, "ok");
    let connect = json!({ "token": app.token("holder", "USER"), "lastMessageId": 0 });
    assert_eq!(
        poll_at(app.addr, "POST", &with_sid, &format!("40{connect}")).await,
        "ok"
    );
    eventually(WAIT, "the holder's handshake holds the turn", async || {
        gauge(app, "switchboard_handshakes_in_progress").await == 1.0
    })
    .await;
    with_sid
}

/// The Engine.IO handshake of a polling client; its `&sid=` query.
async fn polling_open(addr: SocketAddr) -> String {
    let open = poll_at(addr, "GET", "", "").await;
    let handshake: Value = serde_json::from_str(open.trim_start_matches('0')).expect("open");
    format!("&sid={}", handshake["sid"].as_str().expect("a sid"))
}

/// Polls for the holder until its catch-up is complete, which gives the turn back.
async fn drain(app: &TestApp, with_sid: &str) {
    for _ in 0..200 {
        if poll_at(app.addr, "GET", with_sid, "")
            .await
            .contains("sync-complete")
        {
            return;
        }
    }
    panic!("the holder's catch-up did not complete within 200 polls");
}

/// `GET /ws` as `sub`, as a client's probe does: the admission answer before the upgrade.
async fn refusal_of_ws(app: &TestApp, sub: &str) -> (StatusCode, Option<String>, Value) {
    let response = app
        .rest(Method::GET, "/ws", sub, "USER")
        .send()
        .await
        .expect("GET /ws");
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("text").to_owned());
    let body = response.json().await.expect("a JSON body");
    (status, retry_after, body)
}

/// A `busy` refusal of `/ws`: 503, `Retry-After` in whole seconds rounded up, and the body.
fn assert_busy_ws((status, retry_after, body): (StatusCode, Option<String>, Value)) {
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let ms = body["retryAfterMs"].as_u64().expect("retryAfterMs");
    assert!((1000..=3000).contains(&ms), "{ms}");
    assert_eq!(
        body,
        json!({ "error": format!("server busy; retry after {ms} ms"), "code": "busy", "retryAfterMs": ms })
    );
    assert_eq!(retry_after, Some(ms.div_ceil(1000).to_string()));
}

#[tokio::test]
async fn a_connection_waits_for_the_turn_and_opens_once_the_holder_has_caught_up() {
    let app = gated(1, 10, 30_000).await;
    let holder = hold_the_turn(&app).await;

    let carol = app.user("carol", "USER");
    let meanwhile = async {
        eventually(WAIT, "carol waits for a turn", async || {
            gauge(&app, "switchboard_handshakes_waiting").await == 1.0
        })
        .await;
        drain(&app, &holder).await;
    };
    let ((carol, connected), ()) = tokio::join!(carol, meanwhile);

    assert_eq!(connected["user"]["userId"], "carol", "{connected}");
    eventually(WAIT, "every turn is given back", async || {
        let text = scrape(&app).await;
        sample(&text, "switchboard_handshakes_in_progress", &[]) == 0.0
            && sample(&text, "switchboard_handshakes_waiting", &[]) == 0.0
    })
    .await;
    let text = scrape(&app).await;
    assert_eq!(
        sample(&text, "switchboard_handshake_wait_seconds_count", &[]),
        2.0,
        "the holder's turn and carol's"
    );
    assert_eq!(
        sample(
            &text,
            "switchboard_auth_refusals_total",
            &[("reason", "busy")]
        ),
        0.0
    );
    carol.close().await;
}

#[tokio::test]
async fn no_turn_in_time_is_busy_on_both_doors_and_the_freed_turn_lets_the_next_in() {
    let app = gated(1, 10, 100).await;
    let holder = hold_the_turn(&app).await;

    assert_busy_ws(refusal_of_ws(&app, "carol").await);

    let with_sid = polling_open(app.addr).await;
    let connect = json!({ "token": app.token("dave", "USER") });
    assert_eq!(
        poll_at(app.addr, "POST", &with_sid, &format!("40{connect}")).await,
        "ok"
    );
    let payload = poll_until(app.addr, &with_sid, "server busy").await;
    let packet = payload
        .split('\u{1e}')
        .find_map(|p| p.strip_prefix("44"))
        .expect("a CONNECT_ERROR packet");
    let error: Value = serde_json::from_str(packet).expect("its JSON");
    let message = error["message"].as_str().expect("a message");
    let ms: u64 = message
        .strip_prefix("server busy; retry after ")
        .and_then(|rest| rest.strip_suffix(" ms"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a busy refusal: {message}"));
    assert!((1000..=3000).contains(&ms), "{ms}");

    assert_eq!(
        sample(
            &scrape(&app).await,
            "switchboard_auth_refusals_total",
            &[("reason", "busy")]
        ),
        2.0
    );

    drain(&app, &holder).await;
    let mut erin = eventually(WAIT, "a connection gets the freed turn", async || {
        app.try_ws_query(&app.token("erin", "USER"), "").await.ok()
    })
    .await;
    erin.expect("connected").await;
    erin.close().await;
}

#[tokio::test]
async fn with_no_queue_a_connection_that_finds_every_turn_taken_is_refused_at_once() {
    // A minute's wait would outlast the client's own bound: only the queue refuses in time.
    let app = gated(1, 0, 60_000).await;
    let holder = hold_the_turn(&app).await;
    assert_busy_ws(refusal_of_ws(&app, "carol").await);
    drain(&app, &holder).await;
}
