//! Webhooks (issue 22): what the gateway did reaches the application's endpoints, a real HTTP
//! receiver in the test (`helpers/receiver.rs`) that checks every request's Standard Webhooks
//! signature itself. Every event type with its data, each endpoint getting only what its
//! filter takes; an endpoint that fails, answers late, or is down still gets every event, in
//! order, at least once (a retry carries the same `webhook-id`), until the give-up time marks
//! the old ones failed and the later ones go on; a SIGKILL mid-request loses nothing, and the
//! sessions it left open are reported closed (`server_restart`) after the restart; with no
//! endpoint nothing is written. On SQLite and PostgreSQL (the SIGKILL on SQLite); the
//! cluster's side is `cluster_webhooks.rs`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use axum::body::Bytes;
use reqwest::Method;
use serde_json::{Value, json};
use switchboard::Settings;
use switchboard::config::{NodeId, WebhookSettings};

use crate::cluster_bus::presence;
use crate::helpers::*;
use crate::metrics::sample;

/// The key the `default` endpoint's requests are signed with.
pub(crate) const KEY: &[u8] = b"webhook-test-key-0123456789";
/// The key of a second endpoint: each endpoint signs with its own.
const SEARCH_KEY: &[u8] = b"search-endpoint-key-9876543210";
/// How long events may take to reach an endpoint that failed before (backoff included).
const ARRIVES: Duration = Duration::from_secs(30);
/// How long a held request is kept open: longer than any test.
pub(crate) const HOLD: Duration = Duration::from_secs(600);

/// Webhook settings read as the binary reads them, from these variables.
fn webhook_settings(vars: &[(&str, &str)]) -> WebhookSettings {
    Settings::from_lookup(|name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    })
    .expect("valid webhook settings")
    .webhooks
}

/// The `default` endpoint at `receiver`, with more variables.
fn default_endpoint(receiver: &Receiver, more: &[(&str, &str)]) -> WebhookSettings {
    let (url, secret) = (receiver.url(), receiver.secret());
    let mut vars = vec![("WEBHOOK_URL", url.as_str()), ("WEBHOOK_SECRET", &secret)];
    vars.extend_from_slice(more);
    webhook_settings(&vars)
}

fn id_of(event: &Value) -> i64 {
    event["id"].as_i64().expect("an event id")
}

/// Every event `receiver` saw in a request with a valid signature (answered or not), each
/// once, in the order they first arrived.
pub(crate) fn seen(receiver: &Receiver, accepted_only: bool) -> Vec<Value> {
    let mut ids = HashSet::new();
    receiver
        .requests()
        .iter()
        .filter(|r| r.signed && (!accepted_only || r.accepted()))
        .flat_map(|r| r.events())
        .filter(|e| ids.insert(id_of(e)))
        .collect()
}

/// The events `receiver` took (answered 2xx), each once (its first copy: later ones are
/// resends), in the order they arrived; asserts that their ids increase, which is the
/// order of the endpoint's outbox.
fn delivered(receiver: &Receiver) -> Vec<Value> {
    let events = seen(receiver, true);
    let ids: Vec<i64> = events.iter().map(id_of).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "events arrive in the order of their ids once resends are dropped: {ids:?}"
    );
    events
}

/// Whether `event` is of `kind` about `user`.
pub(crate) fn is(event: &Value, kind: &str, user: &str) -> bool {
    event["type"] == kind && event["data"]["user"]["userId"] == user
}

/// `(type, userId)` of each event.
fn summary(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (text(&e["type"]), text(&e["data"]["user"]["userId"]))
        })
        .collect()
}

/// Turns `[("user.online", "alice"), ...]` into what [`summary`] returns.
fn expected(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, u)| ((*k).to_owned(), (*u).to_owned()))
        .collect()
}

/// Waits until the events `receiver` took satisfy `done`; returns them.
async fn delivered_until(
    receiver: &Receiver,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    eventually(ARRIVES, what, async || {
        let events = delivered(receiver);
        done(&events).then_some(events)
    })
    .await
}

/// One outbox row: `(event_id, type, sent_at, failed_at, last_error)`.
type Row = (i64, String, Option<String>, Option<String>, Option<String>);

/// `endpoint`'s outbox rows, in id order.
async fn outbox(sql: &Sql, endpoint: &str) -> Vec<Row> {
    sql.rows(
        "SELECT event_id, type, sent_at, failed_at, last_error FROM webhook_events
         WHERE endpoint = $1 ORDER BY event_id",
        &[endpoint],
    )
    .await
}

/// Waits until every row of `endpoint`'s outbox that was not given up on is marked sent
/// and was seen by `receiver` in a request it took; returns those rows' ids.
pub(crate) async fn all_sent(sql: &Sql, endpoint: &str, receiver: &Receiver) -> Vec<i64> {
    let what = format!("every event of {endpoint} sent and taken");
    eventually(ARRIVES, &what, async || {
        let rows = outbox(sql, endpoint).await;
        let taken: HashSet<i64> = seen(receiver, true).iter().map(id_of).collect();
        let live: Vec<i64> = rows
            .iter()
            .filter(|(_, _, _, failed, _)| failed.is_none())
            .map(|r| r.0)
            .collect();
        let done = rows.iter().all(|(id, _, sent, failed, _)| {
            failed.is_some() || (sent.is_some() && taken.contains(id))
        });
        done.then_some(live)
    })
    .await
}

/// Asserts the headers of every request `receiver` got: signed, JSON, and a `webhook-id`
/// made of the first and last event ids it carries, so a retry of the same events carries
/// the same one, with the same body byte for byte.
pub(crate) fn check_requests(receiver: &Receiver) {
    receiver.assert_all_signed();
    let mut bodies: HashMap<Vec<i64>, Bytes> = HashMap::new();
    for r in receiver.requests() {
        let first = bodies
            .entry(r.event_ids())
            .or_insert_with(|| r.body.clone());
        assert_eq!(first, &r.body, "a retry's body is the first one's: {r:?}");
        assert_eq!(r.path, "/hook", "the configured URL: {r:?}");
        assert_eq!(r.header("content-type"), "application/json", "{r:?}");
        assert!(
            r.header("webhook-timestamp").parse::<u64>().is_ok(),
            "{r:?}"
        );
        let ids = r.event_ids();
        let want = match ids.as_slice() {
            [one] => format!("evt_{one}"),
            [first, .., last] => format!("evt_{first}_{last}"),
            [] => panic!("a request without events: {r:?}"),
        };
        assert_eq!(r.header("webhook-id"), want, "{r:?}");
    }
}

/// The value of the series `name` with `labels` on the gateway at `base` (`http://addr`).
async fn metric(base: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("a text body");
    sample(&text, name, labels)
}

/// `(session_id, transport)` of each of `user`'s sessions, oldest first.
async fn sessions_of(sql: &Sql, user: &str) -> Vec<(i64, String)> {
    sql.rows(
        "SELECT session_id, transport FROM sessions WHERE user_id = $1 ORDER BY session_id",
        &[user],
    )
    .await
}

/// Asks for stats, which flush the store first: every write sent before is committed.
async fn flushed(client: &mut WsClient) {
    client.emit("get-users-stats", Value::Null).await;
    client.wait_for("users-stats").await;
}

/// `event` on `client` with ack `ack`; asserts it succeeded and returns the ack.
async fn acked(client: &mut WsClient, event: &str, data: Value, ack: u64) -> Value {
    client.emit_ack(event, data, ack).await;
    let reply = client.wait_for_ack(ack).await;
    assert_eq!(reply["ok"], true, "{event}: {reply}");
    reply
}

/// An admin's `method` on the membership of `user` in `room`.
async fn member(app: &TestApp, method: Method, room: &str, user: &str) {
    let path = format!("/websocket/rooms/{room}/members/{user}");
    let response = app
        .rest(method, &path, "root", "ADMIN")
        .send()
        .await
        .expect("answered");
    assert!(response.status().is_success(), "{path}: {response:?}");
}

on_both_backends!(
    every_event_type_reaches_the_endpoints_whose_filter_takes_it_in_order_and_signed,
    a_flaky_endpoint_gets_every_event_in_order_and_a_retry_carries_the_same_webhook_id,
    events_past_the_give_up_time_are_failed_and_later_ones_go_once_the_endpoint_is_back,
    with_no_endpoint_nothing_is_written_to_the_outbox,
);

async fn every_event_type_reaches_the_endpoints_whose_filter_takes_it_in_order_and_signed(
    backend: Backend,
) {
    // Two endpoints from a WEBHOOKS_FILE: "ops" takes the default set (all but
    // message.stored); "search" only room-messages and joins of ticket-* rooms.
    let ops = Receiver::start(KEY).await;
    let search = Receiver::start(SEARCH_KEY).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("webhooks.json");
    let endpoints = json!({"endpoints": [
        {"name": "ops", "url": ops.url(), "secret": ops.secret()},
        {"name": "search", "url": search.url(), "secret": search.secret(),
         "events": ["message.stored", "room.joined"], "messageEvents": ["room-message"],
         "rooms": ["ticket-*"]},
    ]});
    std::fs::write(&file, endpoints.to_string()).expect("write the webhooks file");
    let path = file.to_str().expect("a UTF-8 path");
    let Some(app) = spawn_on(backend, |s| {
        s.webhooks = webhook_settings(&[("WEBHOOKS_FILE", path)]);
        s.database.node_id = NodeId::parse("node-1").expect("a node id");
    })
    .await
    else {
        return;
    };

    // Sessions: bob comes and goes while alice watches.
    let (mut alice, _) = app.user("alice", "USER").await;
    let (bob, _) = app.user("bob", "USER").await;
    presence(&mut alice, "user-connected", "bob").await;
    bob.close().await;
    presence(&mut alice, "user-disconnected", "bob").await;
    // Rooms and messages.
    acked(&mut alice, "join-room", json!({"room": "ticket-1"}), 1).await;
    acked(&mut alice, "join-room", json!({"room": "lobby"}), 2).await;
    let stored = acked(
        &mut alice,
        "room-message",
        json!({"room": "ticket-1", "message": "hello ticket"}),
        3,
    )
    .await;
    let lobby = json!({"room": "lobby", "message": "not a ticket"});
    acked(&mut alice, "room-message", lobby, 4).await;
    acked(&mut alice, "send-message", json!({"message": "to all"}), 5).await;
    acked(&mut alice, "leave-room", json!({"room": "lobby"}), 6).await;
    // The application removes alice from ticket-1 and adds the offline bob to ticket-2.
    member(&app, Method::DELETE, "ticket-1", "alice").await;
    let left = alice.wait_for("left-room").await;
    assert_eq!(left["reason"], "removed", "{left}");
    member(&app, Method::PUT, "ticket-2", "bob").await;
    // A private message to the offline bob, delivered when he comes back.
    let private = json!({"message": "while you were away", "to": "bob"});
    let queued = acked(&mut alice, "send-message", private, 7).await;
    let (mut bob, _) = app.user("bob", "USER").await;
    let message = bob.wait_for("private-message").await;
    assert_eq!(message["id"], queued["id"], "{message}");
    delivered_until(&ops, "message.delivered", |events| {
        events.iter().any(|e| is(e, "message.delivered", "bob"))
    })
    .await;
    alice.close().await;

    let events = delivered_until(&ops, "alice's user.offline", |events| {
        events.iter().any(|e| is(e, "user.offline", "alice"))
    })
    .await;
    assert_eq!(
        summary(&events),
        expected(&[
            ("user.online", "alice"),
            ("session.opened", "alice"),
            ("user.online", "bob"),
            ("session.opened", "bob"),
            ("session.closed", "bob"),
            ("user.offline", "bob"),
            ("room.joined", "alice"),
            ("room.joined", "alice"),
            ("room.left", "alice"),
            ("room.left", "alice"),
            ("room.joined", "bob"),
            ("user.online", "bob"),
            ("session.opened", "bob"),
            ("message.delivered", "bob"),
            ("session.closed", "alice"),
            ("user.offline", "alice"),
        ]),
        "{events:#?}"
    );
    let sql = app.sql().await;
    let ids = all_sent(&sql, "ops", &ops).await;
    assert_eq!(
        ids,
        events.iter().map(id_of).collect::<Vec<_>>(),
        "nothing else was written for ops"
    );

    // The data of each event.
    let user = |id: &str| {
        let mut name = id.to_owned();
        name[..1].make_ascii_uppercase();
        json!({"userId": id, "username": name, "role": "USER"})
    };
    for e in &events {
        let who = e["data"]["user"]["userId"].as_str().expect("a user id");
        assert_eq!(e["data"]["user"], user(who), "{e}");
        assert!(
            e["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{e}"
        );
    }
    let alice_sessions = sessions_of(&sql, "alice").await;
    let bob_sessions = sessions_of(&sql, "bob").await;
    let session = |(id, transport): &(i64, String), reason: Option<&str>| {
        let mut data = json!({"sessionId": id, "transport": transport, "node": "node-1"});
        if let Some(reason) = reason {
            data["reason"] = json!(reason);
        }
        data
    };
    let without_user = |e: &Value| {
        let mut data = e["data"].clone();
        data.as_object_mut().expect("an object").remove("user");
        data
    };
    let data: Vec<Value> = events.iter().map(without_user).collect();
    assert_eq!(data[0], session(&alice_sessions[0], None));
    assert_eq!(data[1], session(&alice_sessions[0], None));
    assert_eq!(data[2], session(&bob_sessions[0], None));
    assert_eq!(data[3], session(&bob_sessions[0], None));
    assert_eq!(data[4], session(&bob_sessions[0], Some("client_closed")));
    assert_eq!(data[5], session(&bob_sessions[0], Some("client_closed")));
    assert_eq!(data[6], json!({"room": "ticket-1", "byServer": false}));
    assert_eq!(data[7], json!({"room": "lobby", "byServer": false}));
    assert_eq!(data[8], json!({"room": "lobby", "reason": "left"}));
    assert_eq!(data[9], json!({"room": "ticket-1", "reason": "removed"}));
    assert_eq!(data[10], json!({"room": "ticket-2", "byServer": true}));
    assert_eq!(data[11], session(&bob_sessions[1], None));
    assert_eq!(data[12], session(&bob_sessions[1], None));
    assert_eq!(data[13], json!({"id": queued["id"]}));
    assert_eq!(data[14], session(&alice_sessions[0], Some("client_closed")));
    assert_eq!(data[15], session(&alice_sessions[0], Some("client_closed")));

    // search: the ticket rooms' joins and room-messages, nothing else.
    let taken = delivered_until(&search, "bob's join of ticket-2", |events| {
        events.iter().any(|e| is(e, "room.joined", "bob"))
    })
    .await;
    assert_eq!(
        summary(&taken),
        expected(&[
            ("room.joined", "alice"),
            ("message.stored", "alice"),
            ("room.joined", "bob"),
        ]),
        "{taken:#?}"
    );
    let ids = all_sent(&sql, "search", &search).await;
    assert_eq!(ids, taken.iter().map(id_of).collect::<Vec<_>>());
    let message = &taken[1]["data"];
    assert_eq!(
        (
            &message["id"],
            &message["event"],
            &message["target"],
            &message["room"]
        ),
        (
            &stored["id"],
            &json!("room-message"),
            &json!("room"),
            &json!("ticket-1")
        ),
        "{message}"
    );
    assert_eq!(message["message"]["message"], "hello ticket", "{message}");
    assert_eq!(message["message"]["id"], stored["id"], "{message}");
    assert_eq!(message["message"]["room"], "ticket-1", "{message}");
    assert_eq!(message["message"]["from"]["userId"], "alice", "{message}");

    check_requests(&ops);
    check_requests(&search);
    let ids_of = |r: &Receiver| -> HashSet<i64> { seen(r, false).iter().map(id_of).collect() };
    assert!(
        ids_of(&ops).is_disjoint(&ids_of(&search)),
        "one row, one id, per event and endpoint"
    );
}

async fn a_flaky_endpoint_gets_every_event_in_order_and_a_retry_carries_the_same_webhook_id(
    backend: Backend,
) {
    // Three failures, then an answer slower than the gateway's timeout, then all is well.
    let hook = Receiver::start(KEY).await;
    hook.fail_next(3);
    hook.slow_next(1, Duration::from_millis(2500));
    let settings = default_endpoint(&hook, &[("WEBHOOK_TIMEOUT_MS", "1000")]);
    let Some(app) = spawn_on(backend, |s| s.webhooks = settings).await else {
        return;
    };

    let (mut alice, _) = app.user("alice", "USER").await;
    // Nothing else is written until three attempts failed: all three carry one batch.
    let first = eventually(ARRIVES, "three failed requests", async || {
        let requests = hook.requests();
        (requests.len() >= 3).then_some(requests)
    })
    .await;
    for retry in &first[1..3] {
        assert_eq!(retry.status, 500);
        assert_eq!(retry.header("webhook-id"), first[0].header("webhook-id"));
        assert_eq!(retry.body, first[0].body, "the same events, byte for byte");
    }
    assert_eq!(
        first[0].event_ids().len(),
        2,
        "user.online and session.opened"
    );

    let (bob, _) = app.user("bob", "USER").await;
    presence(&mut alice, "user-connected", "bob").await;
    acked(&mut alice, "join-room", json!({"room": "r1"}), 1).await;
    acked(&mut alice, "leave-room", json!({"room": "r1"}), 2).await;
    bob.close().await;
    presence(&mut alice, "user-disconnected", "bob").await;
    alice.close().await;

    let events = delivered_until(&hook, "alice's user.offline", |events| {
        events.iter().any(|e| is(e, "user.offline", "alice"))
    })
    .await;
    assert_eq!(
        summary(&events),
        expected(&[
            ("user.online", "alice"),
            ("session.opened", "alice"),
            ("user.online", "bob"),
            ("session.opened", "bob"),
            ("room.joined", "alice"),
            ("room.left", "alice"),
            ("session.closed", "bob"),
            ("user.offline", "bob"),
            ("session.closed", "alice"),
            ("user.offline", "alice"),
        ]),
        "{events:#?}"
    );
    let sql = app.sql().await;
    let ids = all_sent(&sql, "default", &hook).await;
    assert_eq!(ids, events.iter().map(id_of).collect::<Vec<_>>());
    check_requests(&hook);
    let requests = hook.requests();
    assert!(
        requests[3].status.is_success() && requests.len() > 4,
        "the slow answer came too late: its events went again {requests:#?}"
    );

    let base = &app.url("");
    let endpoint = [("endpoint", "default")];
    let retried = metric(base, "switchboard_webhook_events_retried_total", &endpoint).await;
    assert!(
        retried >= 6.0,
        "three failures of two events, then more: {retried}"
    );
    let errors = [("endpoint", "default"), ("result", "error")];
    let failed_requests = metric(base, "switchboard_webhook_requests_total", &errors).await;
    assert!(failed_requests >= 4.0, "{failed_requests}");
    let sent = metric(base, "switchboard_webhook_events_sent_total", &endpoint).await;
    assert_eq!(
        sent,
        ids.len() as f64,
        "each event counted once, when acknowledged"
    );
}

/// Waits until exactly `n` rows of the `default` endpoint are failed; returns them.
async fn failed_rows(sql: &Sql, n: usize) -> Vec<Row> {
    let what = format!("{n} events failed");
    eventually(ARRIVES, &what, async || {
        let rows = outbox(sql, "default").await;
        let failed: Vec<Row> = rows.into_iter().filter(|r| r.3.is_some()).collect();
        (failed.len() == n).then_some(failed)
    })
    .await
}

async fn events_past_the_give_up_time_are_failed_and_later_ones_go_once_the_endpoint_is_back(
    backend: Backend,
) {
    let hook = Receiver::start(KEY).await;
    hook.fail_next(usize::MAX);
    let settings = default_endpoint(
        &hook,
        &[
            ("WEBHOOK_GIVE_UP_SECS", "1"),
            ("WEBHOOK_TIMEOUT_MS", "1000"),
        ],
    );
    let Some(app) = spawn_on(backend, |s| s.webhooks = settings).await else {
        return;
    };
    let sql = app.sql().await;
    let base = &app.url("");
    // An endpoint answering 500.
    let (_alice, _) = app.user("alice", "USER").await;
    let failed = failed_rows(&sql, 2).await;
    for (_, _, sent, _, error) in &failed {
        assert_eq!((sent, error.as_deref()), (&None, Some("HTTP 500")));
    }
    // An endpoint that is down.
    hook.stop_listening().await;
    let (_bob, _) = app.user("bob", "USER").await;
    let failed = failed_rows(&sql, 4).await;
    for (_, _, sent, _, error) in &failed[2..] {
        assert!(sent.is_none(), "{failed:?}");
        let error = error.as_deref().unwrap_or_default();
        assert!(!error.is_empty() && error != "HTTP 500", "{error}");
    }
    let endpoint = [("endpoint", "default")];
    let given_up = metric(base, "switchboard_webhook_events_failed_total", &endpoint).await;
    assert_eq!(given_up, 4.0);

    // Back: the next events go, the failed ones stay failed.
    hook.listen_again().await;
    hook.fail_next(0);
    let (_carol, _) = app.user("carol", "USER").await;
    let events = delivered_until(&hook, "carol's session.opened", |events| {
        events.iter().any(|e| is(e, "session.opened", "carol"))
    })
    .await;
    assert_eq!(
        summary(&events),
        expected(&[("user.online", "carol"), ("session.opened", "carol")])
    );
    all_sent(&sql, "default", &hook).await;
    let rows = outbox(&sql, "default").await;
    assert_eq!(rows.len(), 6, "{rows:?}");
    assert!(rows[..4].iter().all(|r| r.3.is_some() && r.2.is_none()));
    check_requests(&hook);
    assert_eq!(
        metric(base, "switchboard_webhook_events_sent_total", &endpoint).await,
        2.0
    );
}

#[tokio::test]
async fn a_sigkill_mid_request_loses_no_event_and_the_sessions_it_left_are_closed_after_restart() {
    let test =
        "a_sigkill_mid_request_loses_no_event_and_the_sessions_it_left_are_closed_after_restart";
    let Some((place, _dir)) = Place::fresh(Backend::Sqlite, test).await else {
        return;
    };
    // The first request is held open until the gateway is gone.
    let hook = Receiver::start(KEY).await;
    hook.slow_next(1, HOLD);
    let (url, secret) = (hook.url(), hook.secret());
    let env = [
        ("WEBHOOK_URL", url.as_str()),
        ("WEBHOOK_SECRET", secret.as_str()),
        ("WEBHOOK_TIMEOUT_MS", "60000"),
    ];
    let server = BinaryServer::start_at(&place, &env).await;
    let mut alice = server.user("alice", "").await;
    alice.expect("connected").await;
    eventually(WAIT, "the first request under way", async || {
        !hook.requests().is_empty()
    })
    .await;
    let mut clients = Vec::new();
    for user in ["bob", "carol"] {
        let mut client = server.user(user, "").await;
        client.expect("connected").await;
        clients.push(client);
    }
    acked(&mut alice, "join-room", json!({"room": "r"}), 1).await;
    flushed(&mut alice).await;
    let requests = hook.requests();
    assert_eq!(requests.len(), 1, "one request at a time: {requests:#?}");
    assert!(!requests[0].answered);

    server.kill();
    drop((alice, clients));
    let _restarted = BinaryServer::start_at(&place, &env).await;

    let users = ["alice", "bob", "carol"];
    let events = delivered_until(&hook, "every user offline", |events| {
        users
            .iter()
            .all(|u| events.iter().any(|e| is(e, "user.offline", u)))
    })
    .await;
    let sql = Sql::open(&place).await;
    let ids = all_sent(&sql, "default", &hook).await;
    assert_eq!(ids, events.iter().map(id_of).collect::<Vec<_>>());
    assert_eq!(
        summary(&events[..7]),
        expected(&[
            ("user.online", "alice"),
            ("session.opened", "alice"),
            ("user.online", "bob"),
            ("session.opened", "bob"),
            ("user.online", "carol"),
            ("session.opened", "carol"),
            ("room.joined", "alice"),
        ]),
        "{events:#?}"
    );
    assert_eq!(events.len(), 13, "{events:#?}");
    for user in users {
        let at = |kind: &str| {
            events
                .iter()
                .position(|e| is(e, kind, user))
                .unwrap_or_else(|| panic!("no {kind} for {user}: {events:#?}"))
        };
        let (opened, closed, offline) = (
            at("session.opened"),
            at("session.closed"),
            at("user.offline"),
        );
        assert!(closed < offline, "{user}: {events:#?}");
        let closed = &events[closed]["data"];
        assert_eq!(closed["reason"], "server_restart", "{closed}");
        assert_eq!(closed["sessionId"], events[opened]["data"]["sessionId"]);
        assert_eq!(events[offline]["data"]["reason"], "server_restart");
    }
    check_requests(&hook);
}

async fn with_no_endpoint_nothing_is_written_to_the_outbox(backend: Backend) {
    let Some(app) = spawn_on(backend, |_| {}).await else {
        return;
    };
    let (mut alice, _) = app.user("alice", "USER").await;
    let (bob, _) = app.user("bob", "USER").await;
    presence(&mut alice, "user-connected", "bob").await;
    bob.close().await;
    presence(&mut alice, "user-disconnected", "bob").await;
    acked(&mut alice, "join-room", json!({"room": "r"}), 1).await;
    acked(
        &mut alice,
        "room-message",
        json!({"room": "r", "message": "hi"}),
        2,
    )
    .await;
    let private = json!({"message": "later", "to": "bob"});
    acked(&mut alice, "send-message", private, 3).await;
    let (mut bob, _) = app.user("bob", "USER").await;
    bob.wait_for("private-message").await;
    acked(&mut alice, "leave-room", json!({"room": "r"}), 4).await;
    bob.close().await;
    presence(&mut alice, "user-disconnected", "bob").await;
    flushed(&mut alice).await;

    let sql = app.sql().await;
    let messages: i64 = sql.scalar("SELECT COUNT(*) FROM messages", &[]).await;
    assert_eq!(messages, 2, "the traffic was stored");
    let events: i64 = sql.scalar("SELECT COUNT(*) FROM webhook_events", &[]).await;
    assert_eq!(events, 0);
    let written = metric(
        &app.url(""),
        "switchboard_webhook_events_written_total",
        &[],
    )
    .await;
    assert_eq!(written, 0.0);
}
