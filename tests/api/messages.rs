//! The message log: ids, acks after commit, the offline queue, stored room membership,
//! recovery with `lastMessageId` and `sync`, idempotent resends, and visibility (nothing
//! leaks to someone who may not see it).

use serde_json::{Value, json};

use crate::helpers::*;

on_both_backends!(
    every_stored_message_carries_a_growing_id_in_payload_and_ack,
    a_private_message_to_an_offline_user_is_queued_and_delivered_in_order_on_connect,
    room_membership_survives_reconnects_and_restarts,
    reconnecting_with_last_message_id_replays_exactly_what_the_user_may_see,
    sync_replays_the_callers_view_and_nothing_else,
    a_resend_with_the_same_client_msg_id_is_acknowledged_but_not_stored_twice,
    ids_keep_growing_across_restarts,
    retention_prunes_old_messages_keeps_queued_ones_and_sync_reports_the_hole,
);

/// Flushes the store behind everything `client` caused (a stats request flushes it).
async fn settle(client: &mut WsClient) {
    client.emit("get-users-stats", Value::Null).await;
    client.wait_for("users-stats").await;
}

/// Creates the users (they are "known" once they have connected) and disconnects them.
async fn register(app: &TestApp, users: &[&str]) {
    for user in users {
        let (client, _) = app.user(user, "USER").await;
        client.close().await;
    }
}

async fn every_stored_message_carries_a_growing_id_in_payload_and_ack(backend: Backend) {
    let Some(app) = spawn_on(backend, |_| {}).await else {
        return;
    };
    let (mut alice, _) = app.user("alice", "USER").await;
    let (mut bob, _) = app.user("bob", "USER").await;
    alice.expect("user-connected").await;
    alice.emit("join-room", json!({"room": "r"})).await;
    alice.expect("joined-room").await;
    bob.emit("join-room", json!({"room": "r"})).await;
    bob.expect("joined-room").await;
    alice.expect("user-joined-room").await;

    let a1 = alice.say(json!({"message": "public"}), 1).await;
    let b1 = bob.expect("broadcast-message").await;
    let a2 = alice
        .say(json!({"message": "private", "to": "bob"}), 2)
        .await;
    let b2 = bob.expect("private-message").await;
    alice
        .emit_ack("room-message", json!({"room": "r", "message": "room"}), 3)
        .await;
    let a3 = alice.expect_ack(3).await;
    let b3 = bob.expect("room-message").await;

    let ids: Vec<u64> = [&a1, &a2, &a3]
        .iter()
        .map(|a| a["id"].as_u64().expect("id"))
        .collect();
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "{ids:?}");
    assert_eq!(b1["id"], a1["id"]);
    assert_eq!(b2["id"], a2["id"]);
    assert_eq!(b3["id"], a3["id"]);
    assert_eq!(a2["delivered"], 1);
    assert_eq!(a2["queued"], false);

    // Acknowledged means committed: the rows are there without any further flush.
    let stored: Vec<(i64, String, String, Option<String>)> = app
        .sql()
        .await
        .rows(
            "SELECT message_id, event, target_kind, target FROM messages ORDER BY message_id",
            &[],
        )
        .await;
    let expected = vec![
        (
            ids[0] as i64,
            "broadcast-message".into(),
            "all".into(),
            None,
        ),
        (
            ids[1] as i64,
            "private-message".into(),
            "user".into(),
            Some("bob".into()),
        ),
        (
            ids[2] as i64,
            "room-message".into(),
            "room".into(),
            Some("r".into()),
        ),
    ];
    assert_eq!(stored, expected);
}

async fn a_private_message_to_an_offline_user_is_queued_and_delivered_in_order_on_connect(
    backend: Backend,
) {
    let Some(app) = spawn_on(backend, |_| {}).await else {
        return;
    };
    register(&app, &["bob"]).await;
    let (mut alice, _) = app.user("alice", "USER").await;
    let mut ids = Vec::new();
    for (n, text) in ["one", "two", "three"].iter().enumerate() {
        let ack = alice
            .say(json!({"message": text, "to": "bob"}), n as u64)
            .await;
        assert_eq!(ack["ok"], true);
        assert_eq!(ack["queued"], true, "{ack}");
        assert_eq!(ack["delivered"], 0);
        ids.push(ack["id"].clone());
    }

    let (mut bob, _) = app.user("bob", "USER").await;
    for (n, text) in ["one", "two", "three"].iter().enumerate() {
        let msg = bob.expect("private-message").await;
        assert_eq!(msg["message"], *text);
        assert_eq!(msg["id"], ids[n]);
        assert_eq!(msg["from"]["userId"], "alice");
    }
    bob.expect_silence().await;
    bob.close().await;

    // Taken once, never again; and the rows say when.
    let (mut bob, _) = app.user("bob", "USER").await;
    bob.expect_silence().await;
    settle(&mut bob).await;
    let undelivered: i64 = app
        .sql()
        .await
        .scalar(
            "SELECT COUNT(*) FROM deliveries WHERE user_id = 'bob' AND delivered_at IS NULL",
            &[],
        )
        .await;
    assert_eq!(undelivered, 0);
}

#[tokio::test]
async fn live_messages_sent_during_catch_up_follow_the_queued_ones() {
    let app = spawn_app().await;
    register(&app, &["bob"]).await;
    let (mut alice, _) = app.user("alice", "USER").await;
    for n in 0..50 {
        alice
            .say(json!({"message": format!("queued {n}"), "to": "bob"}), n)
            .await;
    }
    // Bob connects (his catch-up starts) while alice keeps sending: whatever arrives, ids
    // only grow, and nothing is missing.
    let mut bob = app.ws(&app.token("bob", "USER")).await;
    for n in 50..60 {
        alice
            .emit(
                "send-message",
                json!({"message": format!("live {n}"), "to": "bob"}),
            )
            .await;
    }
    bob.expect("connected").await;
    let mut last = 0;
    for _ in 0..60 {
        let msg = bob.wait_for("private-message").await;
        let id = msg["id"].as_u64().expect("id");
        assert!(id > last, "ids arrive in order: {id} after {last}");
        last = id;
    }
}

#[tokio::test]
async fn the_offline_queue_is_bounded_and_the_sender_is_told() {
    let app = spawn_app_with(|s| s.limits.max_queued_per_user = 3).await;
    register(&app, &["bob"]).await;
    let (mut alice, _) = app.user("alice", "USER").await;
    for n in 0..3 {
        assert_eq!(
            alice.say(json!({"message": "x", "to": "bob"}), n).await["ok"],
            true
        );
    }
    alice
        .emit_ack("send-message", json!({"message": "x", "to": "bob"}), 9)
        .await;
    let error = alice.expect("error").await;
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("offline queue of user \"bob\" is full")),
        "{error}"
    );
    assert_eq!(error["code"], "queue_full");
    assert_eq!(alice.expect_ack(9).await["ok"], false);

    let (mut bob, _) = app.user("bob", "USER").await;
    for _ in 0..3 {
        bob.expect("private-message").await;
    }
    bob.expect_silence().await;
    // Delivered, the queue has room again (bob is online now, so this goes live).
    assert_eq!(
        alice.say(json!({"message": "y", "to": "bob"}), 10).await["ok"],
        true
    );
}

async fn room_membership_survives_reconnects_and_restarts(backend: Backend) {
    let Some(mut app) = spawn_on(backend, |_| {}).await else {
        return;
    };
    let dir = app.take_dir();
    let (mut alice, _) = app.user("alice", "USER").await;
    alice.emit("join-room", json!({"room": "general"})).await;
    alice.expect("joined-room").await;
    alice.emit("join-room", json!({"room": "ops"})).await;
    alice.expect("joined-room").await;
    alice.emit("leave-room", json!({"room": "ops"})).await;
    alice.expect("left-room").await;
    alice.close().await;

    let (alice, connected) = app.user("alice", "USER").await;
    assert_eq!(connected["rooms"], json!(["general"]));
    alice.close().await;

    let place = app.place();
    app.stop().await;
    let app = spawn_app_at(&place, |_| {}).await;
    let (_alice, connected) = app.user("alice", "USER").await;
    assert_eq!(connected["rooms"], json!(["general"]));
    let (mut bob, _) = app.user("bob", "USER").await;
    bob.emit("join-room", json!({"room": "general"})).await;
    bob.expect("joined-room").await;
    bob.emit_ack(
        "room-message",
        json!({"room": "general", "message": "hi"}),
        1,
    )
    .await;
    assert_eq!(
        bob.expect_ack(1).await["delivered"],
        1,
        "alice is back in the room"
    );
    drop(dir);
}

async fn reconnecting_with_last_message_id_replays_exactly_what_the_user_may_see(backend: Backend) {
    let Some(app) = spawn_on(backend, |_| {}).await else {
        return;
    };
    register(&app, &["carol"]).await;
    let (mut alice, _) = app.user("alice", "USER").await;
    let (mut bob, _) = app.user("bob", "USER").await;
    alice.expect("user-connected").await;
    for room in ["mine", "other"] {
        alice.emit("join-room", json!({"room": room})).await;
        alice.expect("joined-room").await;
    }
    bob.emit("join-room", json!({"room": "mine"})).await;
    bob.expect("joined-room").await;
    alice.expect("user-joined-room").await;
    let seen = alice.say(json!({"message": "before"}), 1).await["id"]
        .as_u64()
        .expect("id");
    bob.wait_for("broadcast-message").await;
    bob.close().await;
    alice.wait_for("user-disconnected").await;

    // While bob is away: what he may see, and what he may not.
    let p1 = alice.say(json!({"message": "public 1"}), 2).await;
    alice
        .emit_ack(
            "room-message",
            json!({"room": "mine", "message": "in mine"}),
            3,
        )
        .await;
    let r1 = alice.wait_for_ack(3).await;
    alice
        .emit_ack(
            "room-message",
            json!({"room": "other", "message": "in other"}),
            4,
        )
        .await;
    alice.wait_for_ack(4).await;
    alice
        .say(json!({"message": "for carol", "to": "carol"}), 5)
        .await;
    let d1 = alice
        .say(json!({"message": "for bob", "to": "bob"}), 6)
        .await;
    let p2 = alice.say(json!({"message": "public 2"}), 7).await;

    let (mut bob, _) = app.user_since("bob", seen).await;
    let expected = [
        ("broadcast-message", &p1),
        ("room-message", &r1),
        ("private-message", &d1),
        ("broadcast-message", &p2),
    ];
    for (event, ack) in expected {
        let msg = bob.expect(event).await;
        assert_eq!(msg["id"], ack["id"], "{event}");
    }
    let done = bob.expect("sync-complete").await;
    assert_eq!(done["count"], 4);
    assert_eq!(done["lastMessageId"], p2["id"]);
    assert_eq!(done["more"], false);
    assert_eq!(done["complete"], true);
    bob.expect_silence().await;
}

async fn sync_replays_the_callers_view_and_nothing_else(backend: Backend) {
    let Some(app) = spawn_on(backend, |_| {}).await else {
        return;
    };
    register(&app, &["carol"]).await;
    let (mut alice, _) = app.user("alice", "USER").await;
    let (mut bob, _) = app.user("bob", "USER").await;
    alice.expect("user-connected").await;
    bob.emit("join-room", json!({"room": "left-behind"})).await;
    bob.expect("joined-room").await;
    alice
        .emit("join-room", json!({"room": "left-behind"}))
        .await;
    alice.expect("joined-room").await;
    bob.wait_for("user-joined-room").await;
    alice
        .emit(
            "room-message",
            json!({"room": "left-behind", "message": "old room"}),
        )
        .await;
    bob.wait_for("room-message").await;
    bob.emit("leave-room", json!({"room": "left-behind"})).await;
    bob.wait_for("left-room").await;
    alice
        .say(json!({"message": "secret", "to": "carol"}), 1)
        .await;
    let mine = bob
        .say(json!({"message": "from bob", "to": "alice"}), 2)
        .await;
    let public = alice.say(json!({"message": "everyone"}), 3).await;
    bob.wait_for("broadcast-message").await;

    bob.emit_ack("sync", json!({"since": 0}), 4).await;
    let first = bob.expect("private-message").await;
    assert_eq!(first["id"], mine["id"], "his own private message, to alice");
    let second = bob.expect("broadcast-message").await;
    assert_eq!(second["id"], public["id"]);
    let done = bob.expect("sync-complete").await;
    assert_eq!(
        done["count"], 2,
        "no room he left, no message to carol: {done}"
    );
    assert_eq!(done["lastMessageId"], public["id"]);
    let ack = bob.expect_ack(4).await;
    assert_eq!(ack["count"], 2);
    assert_eq!(ack["complete"], true);
}

#[tokio::test]
async fn sync_pages_by_a_thousand() {
    let app = spawn_app_with(|s| {
        s.limits.rate_limit_per_sec = 100_000;
        s.limits.rate_limit_burst = 100_000;
    })
    .await;
    let (mut alice, _) = app.user("alice", "USER").await;
    for n in 0..1004 {
        alice
            .emit("send-message", json!({"message": format!("m{n}")}))
            .await;
    }
    alice.say(json!({"message": "last"}), 1).await;

    alice.emit("sync", json!({"since": 0})).await;
    let mut count = 0;
    let done = loop {
        let (event, data) = alice.next_event().await;
        match event.as_str() {
            "broadcast-message" => count += 1,
            "sync-complete" => break data,
            "ack" => {}
            other => panic!("unexpected {other}"),
        }
    };
    assert_eq!(count, 1000);
    assert_eq!(done["count"], 1000);
    assert_eq!(done["more"], true);
    alice
        .emit("sync", json!({"since": done["lastMessageId"]}))
        .await;
    let mut rest = 0;
    let done = loop {
        let (event, data) = alice.next_event().await;
        match event.as_str() {
            "broadcast-message" => rest += 1,
            "sync-complete" => break data,
            other => panic!("unexpected {other}"),
        }
    };
    assert_eq!(rest, 5);
    assert_eq!(done["more"], false);
}

#[tokio::test]
async fn bad_sync_requests_are_refused_and_the_largest_id_finds_nothing() {
    let app = spawn_app().await;
    let (mut alice, _) = app.user("alice", "USER").await;
    alice.say(json!({"message": "m"}), 1).await;
    let cases = [
        (json!({"since": -1}), "non-negative integer"),
        (json!({"since": "abc"}), "not a string"),
        (json!({"since": 1e30}), "non-negative integer"),
        (json!({}), "missing field \"since\""),
        (json!("5"), "expects an object"),
    ];
    for (data, expected) in cases {
        alice.emit("sync", data.clone()).await;
        let error = alice.expect("error").await;
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains(expected)),
            "{data}: {error}"
        );
    }
    // Ids are SQLite integers: the largest id is accepted and finds nothing, one more is not.
    alice.emit("sync", json!({"since": u64::MAX})).await;
    let error = alice.expect("error").await;
    assert_eq!(error["code"], "bad_payload", "{error}");
    alice.emit("sync", json!({"since": i64::MAX})).await;
    let done = alice.expect("sync-complete").await;
    assert_eq!(done["count"], 0);
    assert_eq!(done["complete"], true);
    assert_eq!(done["lastMessageId"], i64::MAX);
}

#[tokio::test]
async fn bad_last_message_id_is_refused_before_the_upgrade() {
    let app = spawn_app().await;
    let url = format!(
        "{}?lastMessageId=-3&token={}",
        app.ws_url(),
        app.token("a", "USER")
    );
    let request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
            .expect("request");
    let (status, body) = app.connect(request).await.err().expect("refused");
    assert_eq!(status.as_u16(), 400);
    assert!(body.contains("lastMessageId"), "{body}");
}

async fn a_resend_with_the_same_client_msg_id_is_acknowledged_but_not_stored_twice(
    backend: Backend,
) {
    let Some(mut app) = spawn_on(backend, |_| {}).await else {
        return;
    };
    let dir = app.take_dir();
    let (mut alice, _) = app.user("alice", "USER").await;
    let (mut bob, _) = app.user("bob", "USER").await;
    alice.expect("user-connected").await;

    let first = alice
        .say(json!({"message": "once", "clientMsgId": "k-1"}), 1)
        .await;
    let again = alice
        .say(json!({"message": "once", "clientMsgId": "k-1"}), 2)
        .await;
    assert_eq!(first["id"], again["id"]);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["delivered"], first["delivered"]);
    bob.expect("broadcast-message").await;
    bob.expect_silence().await;

    // Another user's key space is their own.
    let bobs = bob
        .say(json!({"message": "mine", "clientMsgId": "k-1"}), 3)
        .await;
    assert_ne!(bobs["id"], first["id"]);

    // After a restart the key is still known (found in the database).
    let place = app.place();
    app.stop().await;
    let app = spawn_app_at(&place, |_| {}).await;
    let (mut alice, _) = app.user("alice", "USER").await;
    let after = alice
        .say(json!({"message": "once", "clientMsgId": "k-1"}), 4)
        .await;
    assert_eq!(after["id"], first["id"]);
    assert_eq!(after["duplicate"], true);
    let rows: i64 = app
        .sql()
        .await
        .scalar(
            "SELECT COUNT(*) FROM messages WHERE sender_id = 'alice'",
            &[],
        )
        .await;
    assert_eq!(rows, 1);
    drop(dir);
}

async fn ids_keep_growing_across_restarts(backend: Backend) {
    let Some(mut app) = spawn_on(backend, |_| {}).await else {
        return;
    };
    let dir = app.take_dir();
    let (mut alice, _) = app.user("alice", "USER").await;
    let before = alice.say(json!({"message": "a"}), 1).await["id"]
        .as_u64()
        .expect("id");
    let place = app.place();
    let sql = app.sql().await;
    app.stop().await;
    let reserved: i64 = sql
        .scalar(
            "SELECT value FROM counters WHERE name = 'message_id_reserved_through'",
            &[],
        )
        .await;
    let app = spawn_app_at(&place, |_| {}).await;
    let (mut alice, _) = app.user("alice", "USER").await;
    let after = alice.say(json!({"message": "b"}), 1).await["id"]
        .as_u64()
        .expect("id");
    assert!(after > before, "{after} > {before}");
    assert!(
        after > reserved as u64,
        "{after} continues past the first run's reservation {reserved}"
    );
    drop(dir);
}

async fn retention_prunes_old_messages_keeps_queued_ones_and_sync_reports_the_hole(
    backend: Backend,
) {
    use std::time::Duration;
    use switchboard::config::RetentionSettings;
    use switchboard::internals::{Store, retention};

    let Some(mut app) = spawn_on(backend, |_| {}).await else {
        return;
    };
    let dir = app.take_dir();
    register(&app, &["bob"]).await;
    let (mut alice, _) = app.user("alice", "USER").await;
    let queued = alice
        .say(json!({"message": "for bob", "to": "bob"}), 1)
        .await;
    let mut public = Vec::new();
    for n in 0..5 {
        public.push(alice.say(json!({"message": format!("p{n}")}), 10 + n).await);
    }
    let place = app.place();
    app.stop().await;

    // One pass keeping the newest two messages. The store's own retention task is off: on
    // PostgreSQL its first pass, at once, would hold the cluster's retention lock and this
    // one would be skipped.
    let mut settings = place.settings();
    settings.retention.max_age = None;
    settings.retention.max_count = None;
    let store = Store::open(&settings, switchboard::internals::Metrics::shared())
        .await
        .expect("store");
    let report = retention::prune(
        &store,
        &RetentionSettings {
            max_age: None,
            max_count: Some(2),
            interval: Duration::from_secs(60),
        },
    )
    .await
    .expect("prune");
    store.close().await;
    assert_eq!(
        report.deleted, 3,
        "p0..p2 go; the queued one stays: {report:?}"
    );
    assert_eq!(report.highest_id, public[2]["id"].as_u64().expect("id"));

    let app = spawn_app_at(&place, |_| {}).await;
    let (mut bob, _) = app.user("bob", "USER").await;
    assert_eq!(bob.expect("private-message").await["id"], queued["id"]);
    bob.emit("sync", json!({"since": 0})).await;
    let mut ids = Vec::new();
    let done = loop {
        let (event, data) = bob.next_event().await;
        if event == "sync-complete" {
            break data;
        }
        ids.push(data["id"].clone());
    };
    assert_eq!(
        ids,
        vec![
            queued["id"].clone(),
            public[3]["id"].clone(),
            public[4]["id"].clone()
        ]
    );
    assert_eq!(
        done["complete"], false,
        "retention pruned part of what bob asked for"
    );

    // A client that already has everything up to the pruned point has no hole.
    bob.emit("sync", json!({"since": public[2]["id"]})).await;
    let done = bob.wait_for("sync-complete").await;
    assert_eq!(done["complete"], true);
    assert_eq!(done["count"], 2);
    drop(dir);
}
