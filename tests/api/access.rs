//! Room access (`docs/protocol.md` section 14): the token's `rooms` claim and
//! `ROOM_JOIN_DEFAULT` decide who joins and who posts, checked at `join-room`, at every
//! `room-message`, when a connection opens and at `refresh-token`; refusals are `forbidden`
//! on both transports and say nothing about the room. `sync` of a room's history is not
//! filtered by access yet (a later part: "history follows access").

use serde_json::{Value, json};
use switchboard::Settings;
use switchboard::config::RoomJoinDefault;

use crate::helpers::*;

fn token_mode(s: &mut Settings) {
    s.access.join_default = RoomJoinDefault::Token;
}

/// A token for `sub` with `role` and, when given, a `rooms` claim.
fn token_with(sub: &str, role: &str, rooms: Option<Value>) -> String {
    let mut claims = json!({"sub": sub, "username": sub, "role": role, "exp": in_an_hour()});
    if let Some(rooms) = rooms {
        claims["rooms"] = rooms;
    }
    sign(jsonwebtoken::Algorithm::HS256, &claims)
}

/// Connects with `token` and returns the client and its `connected` data.
async fn connect(app: &TestApp, token: &str) -> (WsClient, Value) {
    let mut client = app.ws(token).await;
    let connected = client.expect("connected").await;
    (client, connected)
}

/// `join-room` with ack `ack`; the refusal's `(error, ack)` or the ack of a success.
async fn join(client: &mut WsClient, room: &str, ack: u64) -> Result<Value, (Value, Value)> {
    client
        .emit_ack("join-room", json!({ "room": room }), ack)
        .await;
    let (event, data) = client.next_event().await;
    match event.as_str() {
        "joined-room" => Ok(client.expect_ack(ack).await),
        "error" => Err((data, client.expect_ack(ack).await)),
        other => panic!("join-room answered {other} {data}"),
    }
}

/// Asserts the `forbidden` refusal of a join, and returns its message.
async fn refused_join(client: &mut WsClient, room: &str, ack: u64) -> String {
    let (error, reply) = join(client, room, ack)
        .await
        .expect_err("the join is refused");
    assert_eq!(error["code"], "forbidden", "{room}: {error}");
    assert_eq!(reply["ok"], false, "{room}");
    assert_eq!(reply["code"], "forbidden", "{room}");
    assert_eq!(reply["error"], error["message"], "{room}");
    error["message"].as_str().expect("a message").to_owned()
}

#[tokio::test]
async fn under_room_join_default_token_a_user_without_the_room_is_refused_alike_whether_it_exists_or_not()
 {
    let app = spawn_app_with(token_mode).await;
    // An admin goes anywhere: "general" exists, with a member.
    let (mut admin, _) = connect(&app, &token_with("root", "ADMIN", None)).await;
    join(&mut admin, "general", 1)
        .await
        .expect("an admin joins");

    let (mut user, _) = connect(&app, &token_with("bob", "USER", None)).await;
    let existing = refused_join(&mut user, "general", 1).await;
    let missing = refused_join(&mut user, "no-such-room", 2).await;
    assert_eq!(existing, "not allowed to join this room");
    assert_eq!(existing, missing, "the refusal says nothing about the room");
    admin.wait_for("user-connected").await;
    admin.expect_silence().await;

    // Socket.IO: the same refusal through the other door.
    let mut sio = SioClient::connect(app.addr, &token_with("carol", "USER", None)).await;
    sio.emit_ack("join-room", json!({"room": "general"}), 7)
        .await;
    let error = sio.wait_for("error").await;
    assert_eq!(error["code"], "forbidden");
    assert_eq!(error["message"], existing);
    let reply = sio.wait_for_ack(7).await;
    assert_eq!(
        (&reply["ok"], &reply["code"]),
        (&json!(false), &json!("forbidden"))
    );
}

#[tokio::test]
async fn a_token_granting_a_pattern_joins_its_rooms_only_even_when_anyone_may_join() {
    let app = spawn_app().await;
    let (mut user, _) = connect(&app, &token_with("ann", "USER", Some(json!(["team-42:*"])))).await;
    let ack = join(&mut user, "team-42:alpha", 1).await.expect("granted");
    assert_eq!(ack["joined"], true);
    refused_join(&mut user, "team-43:x", 2).await;
    refused_join(&mut user, "general", 3).await;

    // A token without the claim still goes anywhere under the default.
    let (mut free, _) = connect(&app, &app.token("fred", "USER")).await;
    join(&mut free, "general", 1)
        .await
        .expect("the seed's rule");
}

#[tokio::test]
async fn a_read_only_grant_joins_and_hears_but_cannot_post() {
    let app = spawn_app_with(token_mode).await;
    let reader = token_with(
        "rita",
        "USER",
        Some(json!([{"room": "news", "publish": false}])),
    );
    let (mut rita, _) = connect(&app, &reader).await;
    join(&mut rita, "news", 1)
        .await
        .expect("read-only still joins");
    let (mut editor, _) = connect(&app, &token_with("ed", "USER", Some(json!(["news"])))).await;
    join(&mut editor, "news", 1).await.expect("granted");
    rita.wait_for("user-joined-room").await;

    rita.emit_ack("room-message", json!({"room": "news", "message": "hi"}), 2)
        .await;
    let error = rita.expect("error").await;
    assert_eq!(error["code"], "forbidden");
    assert_eq!(error["message"], "not allowed to post in this room");
    assert_eq!(rita.expect_ack(2).await["code"], "forbidden");
    editor.expect_silence().await;

    editor
        .emit_ack(
            "room-message",
            json!({"room": "news", "message": "extra"}),
            2,
        )
        .await;
    assert_eq!(rita.wait_for("room-message").await["message"], "extra");
    assert_eq!(editor.wait_for_ack(2).await["ok"], true);
}

#[tokio::test]
async fn an_admin_joins_any_room_whatever_its_token_lists() {
    let app = spawn_app_with(token_mode).await;
    let (mut admin, _) = connect(&app, &token_with("root", "ADMIN", Some(json!(["x"])))).await;
    for (ack, room) in [(1, "general"), (2, "team-43:x"), (3, "x")] {
        join(&mut admin, room, ack)
            .await
            .expect("an admin goes anywhere");
    }
}

#[tokio::test]
async fn a_refreshed_token_that_lost_a_room_leaves_it_at_once() {
    let app = spawn_app_with(token_mode).await;
    let both = token_with("ann", "USER", Some(json!(["a", "b"])));
    let (mut ann, _) = connect(&app, &both).await;
    join(&mut ann, "a", 1).await.expect("granted");
    join(&mut ann, "b", 2).await.expect("granted");
    let (mut root, _) = connect(&app, &token_with("root", "ADMIN", None)).await;
    join(&mut root, "a", 1).await.expect("admin");
    join(&mut root, "b", 2).await.expect("admin");

    let narrower = token_with("ann", "USER", Some(json!(["b"])));
    ann.emit_ack("refresh-token", json!({ "token": narrower }), 3)
        .await;
    let left = ann.wait_for("left-room").await;
    assert_eq!(left["room"], "a");
    assert_eq!(left["reason"], "not_granted");
    assert_eq!(ann.wait_for_ack(3).await["ok"], true);
    let seen = root.wait_for("user-left-room").await;
    assert_eq!(
        (&seen["room"], &seen["user"]["userId"]),
        (&json!("a"), &json!("ann"))
    );

    // No more messages from the room left; the kept one still delivers.
    for (ack, room) in [(4, "a"), (5, "b")] {
        root.emit_ack("room-message", json!({"room": room, "message": room}), ack)
            .await;
        assert_eq!(root.wait_for_ack(ack).await["ok"], true);
    }
    assert_eq!(ann.wait_for("room-message").await["room"], "b");
    refused_join(&mut ann, "a", 6).await;
}

#[tokio::test]
async fn a_reconnect_with_a_token_lacking_a_stored_room_drops_it_and_it_stays_dropped() {
    let app = spawn_app_with(token_mode).await;
    let both = token_with("ann", "USER", Some(json!(["a", "b"])));
    let (mut ann, _) = connect(&app, &both).await;
    join(&mut ann, "a", 1).await.expect("granted");
    join(&mut ann, "b", 2).await.expect("granted");
    ann.close().await;

    let (mut ann, connected) = connect(&app, &token_with("ann", "USER", Some(json!(["b"])))).await;
    assert_eq!(
        connected["rooms"],
        json!(["b"]),
        "connected lists what is kept"
    );
    let left = ann.expect("left-room").await;
    assert_eq!(left["room"], "a");
    assert_eq!(left["reason"], "not_granted");
    assert!(left["message"].as_str().is_some_and(|m| !m.is_empty()));
    ann.close().await;

    // Stored as left: a token granting both again finds only "b".
    let (_ann, connected) = connect(&app, &both).await;
    assert_eq!(connected["rooms"], json!(["b"]));
}

#[tokio::test]
async fn a_malformed_rooms_claim_is_refused_at_the_handshake_naming_the_claim() {
    let app = spawn_app().await;
    let cases = [
        json!("team-42:*"),
        json!([7]),
        json!([""]),
        json!(["x".repeat(129)]),
        json!([{"room": "a", "publish": "no"}]),
        json!([{"publish": false}]),
    ];
    for rooms in cases {
        let token = token_with("mal", "USER", Some(rooms.clone()));
        let Err((status, body)) = app.try_ws_query(&token, "").await else {
            panic!("accepted a rooms claim of {rooms}");
        };
        assert_eq!(status, 401, "{rooms}");
        let body: Value = serde_json::from_str(&body).expect("a JSON body");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with("invalid token: claim \"rooms\""),
            "{rooms}: {error}"
        );
    }
}
