//! `POST /websocket/publish` (`docs/protocol.md` section 12): a back end's event of its own
//! name reaches exactly the named target on both transports, is stored with an id (queued for
//! an offline user, replayed by `sync` to a room's members), answers a retry with the same
//! `Idempotency-Key` with the original, and refuses a bad body naming the problem.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

on_both_backends!(an_event_reaches_its_target_is_stored_and_replayed);

async fn publish(app: &TestApp, body: Value) -> (StatusCode, Value) {
    let response = app
        .rest(Method::POST, "/websocket/publish", "backend", "ADMIN")
        .json(&body)
        .send()
        .await
        .expect("the endpoint answers");
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

async fn an_event_reaches_its_target_is_stored_and_replayed(backend: Backend) {
    let Some(app) = spawn_on(backend, |_| {}).await else {
        return;
    };
    let (mut alice, _) = app.user("alice", "USER").await;
    let mut sio = SioClient::connect(app.addr, &app.token("sam", "STAFF")).await;
    sio.wait_for("connected").await;
    alice.emit("join-room", json!({"room": "orders"})).await;
    alice.wait_for("joined-room").await;

    // To a room: its member on /ws, nobody else.
    let (status, sent) = publish(
        &app,
        json!({"event": "order-shipped", "data": {"order": 42}, "room": "orders"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    assert_eq!(
        (sent["success"].clone(), sent["delivered"].clone()),
        (json!(true), json!(1))
    );
    let got = alice.wait_for("order-shipped").await;
    assert_eq!(got["order"], 42);
    assert_eq!(got["id"], sent["id"], "the payload carries the stored id");
    assert_eq!(got["from"]["userId"], "backend");

    // To a role: the Socket.IO client of that role.
    let (status, sent) = publish(
        &app,
        json!({"event": "shift.start", "data": {"at": "09:00"}, "role": "STAFF"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let got = sio.wait_for("shift.start").await;
    assert_eq!(
        (got["at"].clone(), got["id"].clone()),
        (json!("09:00"), sent["id"].clone())
    );

    // To a user who is offline: queued, delivered on connect.
    let (status, sent) = publish(
        &app,
        json!({"event": "invoice:paid", "data": {"n": 7}, "userId": "olga"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    assert_eq!(
        (sent["queued"].clone(), sent["delivered"].clone()),
        (json!(true), json!(0))
    );
    let (mut olga, _) = app.user("olga", "USER").await;
    assert_eq!(olga.wait_for("invoice:paid").await["id"], sent["id"]);

    // A retry with the same key: the original's answer, nothing sent again.
    let keyed = || {
        app.rest(Method::POST, "/websocket/publish", "backend", "ADMIN")
            .header("idempotency-key", "k-1")
            .json(&json!({"event": "ping", "data": {}, "everyone": true}))
    };
    let first: Value = keyed()
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    let again: Value = keyed()
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["duplicate"], true, "{again}");
    olga.wait_for("ping").await;
    olga.expect_silence().await;

    // The room's member replays the room's event with `sync`.
    alice.emit_ack("sync", json!({"since": 0}), 9).await;
    let mut replayed = Vec::new();
    loop {
        let (event, _) = alice.next_event().await;
        if event == "sync-complete" {
            break;
        }
        replayed.push(event);
    }
    assert!(
        replayed.contains(&"order-shipped".to_owned()),
        "{replayed:?}"
    );
    assert!(
        !replayed.contains(&"invoice:paid".to_owned()),
        "{replayed:?}"
    );
}

#[tokio::test]
async fn a_bad_body_is_refused_naming_the_problem() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"event": "room-message", "data": {}, "everyone": true}),
            "protocol's own",
        ),
        (
            json!({"event": "with space", "data": {}, "everyone": true}),
            "invalid event name",
        ),
        (json!({"event": "e", "data": {}}), "exactly one target"),
        (
            json!({"event": "e", "data": {}, "room": "r", "role": "R"}),
            "exactly one target",
        ),
        (
            json!({"event": "e", "data": [1], "everyone": true}),
            "\"data\" must be a JSON object",
        ),
        (
            json!({"event": "e", "data": {}, "room": "no space"}),
            "invalid room name",
        ),
        (
            json!({"event": "e", "data": {}, "everyone": false}),
            "\"everyone\" must be true",
        ),
        (json!({"event": "e", "data": {}, "userId": ""}), "userId"),
    ];
    for (body, needle) in cases {
        let (status, reply) = publish(&app, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
        let error = reply["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(needle),
            "{body}: {error:?} should say {needle:?}"
        );
    }
}
