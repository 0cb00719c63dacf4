//! History follows access (`docs/protocol.md`, access control): `sync`, the catch-up on
//! connect and `GET /websocket/messages` never return a room's messages to a reader who may
//! not read the room now, and a room whose policy says `"history": "since_join"` shows a
//! member only what was stored after it joined, across a restart too. On both stores.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::helpers::*;

on_both_backends!(
    since_join_history_shows_a_member_only_what_came_after_its_join_across_a_restart,
    a_room_the_token_no_longer_grants_never_appears_in_sync_catch_up_or_the_listing,
);

/// Writes a `ROOM_POLICIES` file into `dir`.
fn policy_file(dir: &Path, body: Value) -> PathBuf {
    let path = dir.join("rooms.json");
    std::fs::write(&path, body.to_string()).expect("write the policy file");
    path
}

/// A token for `sub` with a `rooms` claim.
fn token_granting(sub: &str, rooms: Value) -> String {
    sign(
        jsonwebtoken::Algorithm::HS256,
        &json!({"sub": sub, "username": sub, "role": "USER", "exp": in_an_hour(), "rooms": rooms}),
    )
}

async fn join(client: &mut WsClient, room: &str) {
    client.emit("join-room", json!({ "room": room })).await;
    client.wait_for("joined-room").await;
}

/// Posts in `room` and waits for the ack (the message is committed then).
async fn post(client: &mut WsClient, room: &str, text: &str, ack: u64) {
    client
        .emit_ack("room-message", json!({"room": room, "message": text}), ack)
        .await;
    let reply = client.wait_for_ack(ack).await;
    assert_eq!(reply["ok"], true, "{text}: {reply}");
}

/// The texts of the room messages a `sync { since: 0 }` replays.
async fn synced_texts(client: &mut WsClient, ack: u64) -> Vec<String> {
    client.emit_ack("sync", json!({"since": 0}), ack).await;
    texts_until(client, "sync-complete").await
}

/// The texts of the `room-message` events `client` receives before `end`.
async fn texts_until(client: &mut WsClient, end: &str) -> Vec<String> {
    let mut texts = Vec::new();
    loop {
        let (event, data) = client.next_event().await;
        if event == end {
            return texts;
        }
        if event == "room-message" {
            texts.push(data["message"].as_str().unwrap_or_default().to_owned());
        }
    }
}

/// The texts of the room messages `GET /websocket/messages?room=` shows the holder of `token`.
async fn listed_texts(app: &TestApp, token: &str, room: &str) -> Vec<String> {
    let response = reqwest::Client::new()
        .get(app.url(&format!("/websocket/messages?room={room}")))
        .bearer_auth(token)
        .timeout(WAIT)
        .send()
        .await
        .expect("the listing answers");
    assert!(response.status().is_success(), "{}", response.status());
    let body: Value = response.json().await.expect("a JSON body");
    body["messages"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|m| m["data"]["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn since_join_history_shows_a_member_only_what_came_after_its_join_across_a_restart(
    backend: Backend,
) {
    let files = tempfile::tempdir().expect("temp dir");
    let policies = policy_file(
        files.path(),
        json!({"rooms": [{"match": "ticket-*", "history": "since_join"}]}),
    );
    let with_policies = |s: &mut switchboard::Settings| {
        s.access.policies_file = Some(policies.clone());
    };
    let Some(mut app) = spawn_on(backend, with_policies).await else {
        return;
    };
    let (mut alice, _) = app.user("alice", "USER").await;
    join(&mut alice, "ticket-1").await;
    post(&mut alice, "ticket-1", "before-1", 1).await;
    post(&mut alice, "ticket-1", "before-2", 2).await;
    let (mut bob, _) = app.user("bob", "USER").await;
    join(&mut bob, "ticket-1").await;
    post(&mut alice, "ticket-1", "after-1", 3).await;
    assert_eq!(bob.wait_for("room-message").await["message"], "after-1");

    assert_eq!(
        synced_texts(&mut bob, 10).await,
        ["after-1"],
        "bob joined later"
    );
    assert_eq!(
        synced_texts(&mut alice, 10).await,
        ["before-1", "before-2", "after-1"],
        "alice was there from the start"
    );
    let bob_token = app.token("bob", "USER");
    assert_eq!(
        listed_texts(&app, &bob_token, "ticket-1").await,
        ["after-1"]
    );

    // Restart on the same data: the join time is stored with the membership.
    let place = app.place();
    let dir = app.take_dir();
    bob.close().await;
    alice.close().await;
    app.stop().await;
    let app = spawn_app_at(&place, with_policies).await;
    let mut bob = app.ws_query(&bob_token, "?lastMessageId=0").await;
    bob.expect("connected").await;
    assert_eq!(
        texts_until(&mut bob, "sync-complete").await,
        ["after-1"],
        "catch-up"
    );
    assert_eq!(synced_texts(&mut bob, 11).await, ["after-1"], "sync");
    assert_eq!(
        listed_texts(&app, &bob_token, "ticket-1").await,
        ["after-1"]
    );
    drop(dir);
}

async fn a_room_the_token_no_longer_grants_never_appears_in_sync_catch_up_or_the_listing(
    backend: Backend,
) {
    let Some(app) = spawn_on(backend, |_| {}).await else {
        return;
    };
    let granted = token_granting("bob", json!(["team-*"]));
    let mut bob = app.ws(&granted).await;
    bob.expect("connected").await;
    join(&mut bob, "team-1").await;
    let (mut alice, _) = app.user("alice", "USER").await;
    join(&mut alice, "team-1").await;
    post(&mut alice, "team-1", "secret", 1).await;
    assert_eq!(bob.wait_for("room-message").await["message"], "secret");
    assert_eq!(listed_texts(&app, &granted, "team-1").await, ["secret"]);
    bob.close().await;

    // A new token without the room: the stored membership is still there until bob
    // connects with it, but the listing already leaves the room out.
    let narrowed = token_granting("bob", json!(["other-*"]));
    assert_eq!(
        listed_texts(&app, &narrowed, "team-1").await,
        Vec::<String>::new()
    );

    let mut bob = app.ws_query(&narrowed, "?lastMessageId=0").await;
    let connected = bob.expect("connected").await;
    assert_eq!(connected["rooms"], json!([]), "{connected}");
    let mut replayed = Vec::new();
    loop {
        let (event, data) = bob.next_event().await;
        match event.as_str() {
            "sync-complete" => break,
            "room-message" => replayed.push(data["message"].clone()),
            "left-room" => assert_eq!(data["reason"], "not_granted", "{data}"),
            _ => {}
        }
    }
    assert!(replayed.is_empty(), "catch-up replayed {replayed:?}");
    assert!(synced_texts(&mut bob, 2).await.is_empty(), "sync");
    assert_eq!(
        listed_texts(&app, &narrowed, "team-1").await,
        Vec::<String>::new()
    );
}
