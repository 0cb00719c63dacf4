//! Catch-up across every kind of target at once: the replay reads one arm per way a message
//! reaches a user (public, to it, private from it, its role, each of its rooms, its offline
//! queue) and merges them, so these tests pin what that merge could get wrong: the order
//! across kinds, a message two arms share, a page that ends exactly at the limit, and rooms
//! the user is not in.

use serde_json::{Value, json};

use crate::helpers::*;

on_both_backends!(
    one_catch_up_replays_every_kind_once_interleaved_in_id_order,
    a_page_that_ends_exactly_at_the_limit_is_followed_by_an_empty_one,
);

/// Creates the users (they are "known" once they have connected) and disconnects them.
async fn register(app: &TestApp, users: &[&str]) {
    for user in users {
        let (client, _) = app.user(user, "USER").await;
        client.close().await;
    }
}

/// An admin's REST notification; returns its id.
async fn notify(app: &TestApp, path: &str, body: Value) -> u64 {
    let response = app
        .rest(reqwest::Method::POST, path, "root", "ADMIN")
        .json(&body)
        .send()
        .await
        .expect("response");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    let body: Value = response.json().await.expect("JSON body");
    body["id"].as_u64().expect("an id")
}

/// Joins `room` and waits for the confirmation.
async fn join(client: &mut WsClient, room: &str) {
    client.emit("join-room", json!({"room": room})).await;
    client.wait_for("joined-room").await;
}

/// Sends a room message and returns its id once it is stored.
async fn in_room(client: &mut WsClient, room: &str, ack: u64) -> u64 {
    client
        .emit_ack(
            "room-message",
            json!({"room": room, "message": format!("in {room}")}),
            ack,
        )
        .await;
    client.wait_for_ack(ack).await["id"]
        .as_u64()
        .expect("an id")
}

/// The `(event, id)` of everything replayed up to `sync-complete`, and that event.
async fn replayed(client: &mut WsClient) -> (Vec<(String, u64)>, Value) {
    let mut seen = Vec::new();
    loop {
        let (event, data) = client.next_event().await;
        match event.as_str() {
            "sync-complete" => return (seen, data),
            "ack" => {}
            _ => seen.push((event, data["id"].as_u64().expect("an id"))),
        }
    }
}

fn id_of(ack: &Value) -> u64 {
    ack["id"].as_u64().expect("an id")
}

async fn one_catch_up_replays_every_kind_once_interleaved_in_id_order(backend: Backend) {
    // Arrange: bob in rooms a and b; alice also in c, which bob is not in.
    let Some(app) = spawn_on(backend, |_| {}).await else {
        return;
    };
    register(&app, &["carol"]).await;
    let (mut bob, _) = app.user("bob", "USER").await;
    let (mut alice, _) = app.user("alice", "USER").await;
    for room in ["a", "b"] {
        join(&mut bob, room).await;
    }
    for room in ["a", "b", "c", "late"] {
        join(&mut alice, room).await;
    }
    let seen = id_of(&alice.say(json!({"message": "seen"}), 1).await);
    bob.wait_for("broadcast-message").await;
    // Sent to "late" before bob joins it: joining opens a room's history.
    let late = in_room(&mut alice, "late", 2).await;
    join(&mut bob, "late").await;
    let to_carol = id_of(&bob.say(json!({"message": "hi", "to": "carol"}), 3).await);
    // To himself: both "to him" and "from him"; replayed once.
    let to_self = id_of(&bob.say(json!({"message": "note", "to": "bob"}), 4).await);
    bob.close().await;
    alice.wait_for("user-disconnected").await;

    // While bob is away, every kind, interleaved, with what he may not see in between.
    let p1 = id_of(&alice.say(json!({"message": "public 1"}), 5).await);
    let in_a = in_room(&mut alice, "a", 6).await;
    in_room(&mut alice, "c", 7).await;
    let queued = id_of(
        &alice
            .say(json!({"message": "for bob", "to": "bob"}), 8)
            .await,
    );
    alice
        .say(json!({"message": "for carol", "to": "carol"}), 9)
        .await;
    let to_users = notify(
        &app,
        "/websocket/send-to-role",
        json!({"role": "USER", "message": "users"}),
    )
    .await;
    notify(
        &app,
        "/websocket/send-to-role",
        json!({"role": "ADMIN", "message": "admins"}),
    )
    .await;
    let in_b = in_room(&mut alice, "b", 10).await;
    let noticed = notify(
        &app,
        "/websocket/send-notification",
        json!({"userId": "bob", "message": "for bob"}),
    )
    .await;
    let public = notify(&app, "/websocket/broadcast", json!({"message": "everyone"})).await;
    in_room(&mut alice, "c", 11).await;

    // Act: reconnecting from `seen` (queue and history merged), then `sync` from `seen`.
    let (mut bob, _) = app.user_since("bob", seen).await;
    let (on_connect, done) = replayed(&mut bob).await;
    bob.emit("sync", json!({"since": seen})).await;
    let (on_sync, synced) = replayed(&mut bob).await;

    // Assert
    let expected: Vec<(String, u64)> = [
        ("room-message", late),
        ("private-message", to_carol),
        ("private-message", to_self),
        ("broadcast-message", p1),
        ("room-message", in_a),
        ("private-message", queued),
        ("role-notification", to_users),
        ("room-message", in_b),
        ("notification", noticed),
        ("broadcast-notification", public),
    ]
    .into_iter()
    .map(|(event, id)| (event.to_owned(), id))
    .collect();
    assert_eq!(on_connect, expected, "the catch-up on connect");
    assert_eq!(done["count"], expected.len());
    assert_eq!(done["lastMessageId"], public);
    assert_eq!(done["more"], false);
    assert_eq!(on_sync, expected, "sync from the same id");
    assert_eq!(synced["count"], expected.len());
    bob.expect_silence().await;
}

async fn a_page_that_ends_exactly_at_the_limit_is_followed_by_an_empty_one(backend: Backend) {
    // Arrange: exactly one page (1000) of what bob may see, every kind in turn, each
    // followed by a message of a room he is not in; and one more of those at the end.
    let Some(app) = spawn_on(backend, |s| {
        s.limits.rate_limit_per_sec = 100_000;
        s.limits.rate_limit_burst = 100_000;
    })
    .await
    else {
        return;
    };
    let (mut bob, _) = app.user("bob", "USER").await;
    let (mut alice, _) = app.user("alice", "USER").await;
    join(&mut bob, "a").await;
    for room in ["a", "x"] {
        join(&mut alice, room).await;
    }
    let seen = id_of(&alice.say(json!({"message": "seen"}), 1).await);
    bob.wait_for("broadcast-message").await;
    bob.close().await;
    alice.wait_for("user-disconnected").await;
    for n in 0..1000 {
        let (event, data) = match n % 3 {
            0 => ("send-message", json!({"message": format!("p{n}")})),
            1 => (
                "room-message",
                json!({"room": "a", "message": format!("a{n}")}),
            ),
            _ => (
                "send-message",
                json!({"message": format!("d{n}"), "to": "bob"}),
            ),
        };
        alice.emit(event, data).await;
        alice
            .emit("room-message", json!({"room": "x", "message": "not his"}))
            .await;
    }
    let after = in_room(&mut alice, "x", 2).await;

    // Act: the catch-up on connect, then two `sync` pages from `seen`.
    let (mut bob, _) = app.user_since("bob", seen).await;
    let (on_connect, done) = replayed(&mut bob).await;
    bob.emit("sync", json!({"since": seen})).await;
    let (first, first_done) = replayed(&mut bob).await;
    bob.emit("sync", json!({"since": first_done["lastMessageId"]}))
        .await;
    let (second, second_done) = replayed(&mut bob).await;

    // Assert
    assert_eq!(on_connect.len(), 1000);
    assert!(
        on_connect.windows(2).all(|w| w[0].1 < w[1].1),
        "in id order"
    );
    let last = on_connect.last().map(|(_, id)| *id).expect("a last id");
    assert!(last < after);
    assert_eq!(done["count"], 1000);
    assert_eq!(done["lastMessageId"], last);
    assert_eq!(
        done["more"], false,
        "the empty page after a full one ends it"
    );
    assert_eq!(first, on_connect, "a sync page of exactly the limit");
    assert_eq!(first_done["count"], 1000);
    assert_eq!(first_done["lastMessageId"], last);
    assert_eq!(
        first_done["more"], true,
        "a full page says there may be more"
    );
    assert!(second.is_empty(), "nothing of room x: {second:?}");
    assert_eq!(second_done["count"], 0);
    assert_eq!(second_done["lastMessageId"], last, "the since asked for");
    assert_eq!(second_done["more"], false);
}
