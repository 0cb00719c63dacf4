//! Room membership made by the application (`docs/protocol.md` section 12, "Room members"):
//! `PUT` / `DELETE /websocket/rooms/{room}/members/{userId}` add and remove a user, online or
//! not, with live effect on both transports (`joined-room`; `left-room` with reason
//! `removed`, and nothing of the room after it), the two listings, admins only, a
//! `"join": "members"` room that only such members are in, and memberships that survive a
//! restart on SQLite and PostgreSQL.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchboard::Settings;

use crate::helpers::*;

on_both_backends!(a_server_membership_survives_a_restart);

/// `PUT` (or `DELETE` with `remove`) of `user` in `room` by an admin; the status and body.
async fn member(app: &TestApp, method: Method, room: &str, user: &str) -> (StatusCode, Value) {
    let path = format!("/websocket/rooms/{room}/members/{user}");
    let response = app
        .rest(method, &path, "root", "ADMIN")
        .send()
        .await
        .expect("answered");
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

/// Adds `user` to `room` and asserts the answer.
async fn add(app: &TestApp, room: &str, user: &str, new: bool) {
    let (status, body) = member(app, Method::PUT, room, user).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"room": room, "userId": user, "added": new}));
}

/// Removes `user` from `room` and asserts the answer.
async fn remove(app: &TestApp, room: &str, user: &str, was: bool) {
    let (status, body) = member(app, Method::DELETE, room, user).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"room": room, "userId": user, "removed": was}));
}

/// `GET path` by an admin; its JSON body.
async fn listing(app: &TestApp, path: &str) -> Value {
    let response = app
        .rest(Method::GET, path, "root", "ADMIN")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.json().await.expect("a JSON body")
}

/// A notification to `user` by REST: a marker that every connection of `user` gets after
/// whatever the server sent it before.
async fn marker(app: &TestApp, user: &str, text: &str) {
    let response = app
        .rest(
            Method::POST,
            "/websocket/send-notification",
            "root",
            "ADMIN",
        )
        .json(&json!({"userId": user, "message": text}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
}

/// `join-room` of `room` on `client` (ack 1), confirmed.
async fn joins(client: &mut WsClient, room: &str) {
    client
        .emit_ack("join-room", json!({ "room": room }), 1)
        .await;
    client.wait_for("joined-room").await;
    assert_eq!(client.wait_for_ack(1).await["ok"], true);
}

/// Settings with a `ROOM_POLICIES` file in which `ticket-*` rooms take only the members the
/// application adds; the file lives in `dir`.
fn members_only(dir: &tempfile::TempDir) -> impl FnOnce(&mut Settings) {
    let path = dir.path().join("policies.json");
    let table = json!({"rooms": [{"match": "ticket-*", "join": "members"}]});
    std::fs::write(&path, table.to_string()).expect("policy file written");
    move |s: &mut Settings| s.access.policies_file = Some(path)
}

#[tokio::test]
async fn an_added_user_hears_joined_room_on_every_connection_and_then_the_rooms_messages() {
    let app = spawn_app().await;
    let (mut bob, _) = app.user("bob", "USER").await;
    joins(&mut bob, "ops").await;
    let (mut alice_ws, _) = app.user("alice", "USER").await;
    let mut alice_sio = SioClient::connect(app.addr, &app.token("alice", "USER")).await;
    bob.wait_for("user-connected").await;

    add(&app, "ops", "alice", true).await;

    let joined = alice_ws.wait_for("joined-room").await;
    assert_eq!(joined["room"], "ops");
    assert!(joined["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(alice_sio.wait_for("joined-room").await["room"], "ops");
    let seen = bob.wait_for("user-joined-room").await;
    assert_eq!(
        (
            &seen["room"],
            &seen["user"]["userId"],
            &seen["user"]["sessions"]
        ),
        (&json!("ops"), &json!("alice"), &json!(2))
    );

    bob.emit_ack("room-message", json!({"room": "ops", "message": "hi"}), 2)
        .await;
    assert_eq!(bob.wait_for_ack(2).await["delivered"], 2);
    assert_eq!(alice_ws.wait_for("room-message").await["message"], "hi");
    assert_eq!(alice_sio.wait_for("room-message").await["message"], "hi");

    // Again: already a member, nothing new to tell anyone.
    add(&app, "ops", "alice", false).await;
    alice_ws.expect_silence().await;
    bob.expect_silence().await;
}

#[tokio::test]
async fn a_removed_member_hears_left_room_removed_and_nothing_of_the_room_after_it() {
    let app = spawn_app().await;
    let (mut bob, _) = app.user("bob", "USER").await;
    joins(&mut bob, "ops").await;
    let (mut alice_ws, _) = app.user("alice", "USER").await;
    joins(&mut alice_ws, "ops").await;
    let mut alice_sio = SioClient::connect(app.addr, &app.token("alice", "USER")).await;
    bob.wait_for("user-joined-room").await;

    remove(&app, "ops", "alice", true).await;

    let left = alice_ws.wait_for("left-room").await;
    assert_eq!(
        (&left["room"], &left["reason"]),
        (&json!("ops"), &json!("removed"))
    );
    let left = alice_sio.wait_for("left-room").await;
    assert_eq!(
        (&left["room"], &left["reason"]),
        (&json!("ops"), &json!("removed"))
    );
    let seen = bob.wait_for("user-left-room").await;
    assert_eq!(
        (&seen["room"], &seen["user"]["userId"]),
        (&json!("ops"), &json!("alice"))
    );

    bob.emit_ack(
        "room-message",
        json!({"room": "ops", "message": "after"}),
        2,
    )
    .await;
    assert_eq!(bob.wait_for_ack(2).await["delivered"], 0);
    marker(&app, "alice", "marker").await;
    // What follows the removal on each connection is the marker, not the room's message.
    assert_eq!(alice_ws.expect("notification").await["message"], "marker");
    let (event, data) = alice_sio.next_event().await;
    assert_eq!(
        (event.as_str(), &data["message"]),
        ("notification", &json!("marker"))
    );

    alice_ws
        .emit_ack("room-message", json!({"room": "ops", "message": "x"}), 3)
        .await;
    assert_eq!(alice_ws.wait_for_ack(3).await["code"], "not_member");
    remove(&app, "ops", "alice", false).await;
}

#[tokio::test]
async fn a_user_added_before_ever_connecting_finds_the_room_on_connect_and_can_post() {
    let app = spawn_app().await;
    let (mut bob, _) = app.user("bob", "USER").await;
    joins(&mut bob, "ops").await;

    add(&app, "ops", "newbie", true).await;
    let seen = bob.wait_for("user-joined-room").await;
    assert_eq!(
        (&seen["user"]["userId"], &seen["user"]["sessions"]),
        (&json!("newbie"), &json!(0)),
        "an offline user: no sessions, named by its id ({seen})"
    );
    assert_eq!(seen["user"]["username"], "newbie");

    let (mut newbie, connected) = app.user("newbie", "USER").await;
    assert_eq!(connected["rooms"], json!(["ops"]));
    newbie
        .emit_ack(
            "room-message",
            json!({"room": "ops", "message": "hello"}),
            1,
        )
        .await;
    assert_eq!(newbie.wait_for_ack(1).await["ok"], true);
    assert_eq!(bob.wait_for("room-message").await["message"], "hello");
}

#[tokio::test]
async fn a_members_only_room_refuses_join_room_but_the_added_member_is_in() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = spawn_app_with(members_only(&dir)).await;
    let mut alice = SioClient::connect(app.addr, &app.token("alice", "USER")).await;
    let (mut carol, _) = app.user("carol", "USER").await;

    alice
        .emit_ack("join-room", json!({"room": "ticket-1"}), 1)
        .await;
    assert_eq!(alice.wait_for_ack(1).await["code"], "forbidden");
    carol
        .emit_ack("join-room", json!({"room": "ticket-1"}), 1)
        .await;
    assert_eq!(carol.wait_for("error").await["code"], "forbidden");
    carol.wait_for_ack(1).await;

    add(&app, "ticket-1", "alice", true).await;
    assert_eq!(alice.wait_for("joined-room").await["room"], "ticket-1");
    alice
        .emit_ack("join-room", json!({"room": "ticket-1"}), 2)
        .await;
    let again = alice.wait_for_ack(2).await;
    assert_eq!(
        (&again["ok"], &again["joined"]),
        (&json!(true), &json!(false))
    );
    alice
        .emit_ack(
            "room-message",
            json!({"room": "ticket-1", "message": "help"}),
            3,
        )
        .await;
    assert_eq!(alice.wait_for_ack(3).await["ok"], true);

    carol
        .emit_ack("join-room", json!({"room": "ticket-1"}), 2)
        .await;
    assert_eq!(carol.wait_for_ack(2).await["code"], "forbidden");
}

#[tokio::test]
async fn the_listings_show_a_rooms_members_and_a_users_rooms() {
    let app = spawn_app().await;
    let (mut bob, _) = app.user("bob", "USER").await;
    joins(&mut bob, "ops").await;
    add(&app, "ops", "dave", true).await;
    add(&app, "sales", "dave", true).await;

    assert_eq!(
        listing(&app, "/websocket/rooms/ops/members").await,
        json!({"room": "ops", "members": [
            {"userId": "bob", "online": true, "addedByServer": false},
            {"userId": "dave", "online": false, "addedByServer": true},
        ]})
    );
    assert_eq!(
        listing(&app, "/websocket/users/dave/rooms").await,
        json!({"userId": "dave", "rooms": ["ops", "sales"]})
    );
    assert_eq!(
        listing(&app, "/websocket/rooms/empty/members").await,
        json!({"room": "empty", "members": []})
    );
    assert_eq!(
        listing(&app, "/websocket/users/nobody/rooms").await,
        json!({"userId": "nobody", "rooms": []})
    );

    // An application's add over a self-join makes it the application's.
    add(&app, "ops", "bob", false).await;
    let members = listing(&app, "/websocket/rooms/ops/members").await;
    assert_eq!(members["members"][0]["addedByServer"], true, "{members}");
}

#[tokio::test]
async fn bad_room_names_and_user_ids_are_refused_with_bad_payload() {
    let app = spawn_app().await;
    let long_user = "u".repeat(257);
    let cases = [
        (
            Method::PUT,
            "/websocket/rooms/a%20b/members/alice",
            "room name",
        ),
        (
            Method::DELETE,
            "/websocket/rooms/a%20b/members/alice",
            "room name",
        ),
        (Method::GET, "/websocket/rooms/a%20b/members", "room name"),
        (
            Method::PUT,
            &format!("/websocket/rooms/ops/members/{long_user}"),
            "user id",
        ),
        (
            Method::GET,
            &format!("/websocket/users/{long_user}/rooms"),
            "user id",
        ),
    ];
    for (method, path, what) in cases {
        let response = app
            .rest(method.clone(), path, "root", "ADMIN")
            .send()
            .await
            .expect("answered");
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{method} {path}"
        );
        let body: Value = response.json().await.expect("a JSON body");
        assert_eq!(body["code"], "bad_payload", "{method} {path}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(what), "{method} {path}: {error}");
    }
}

#[tokio::test]
async fn only_admins_may_add_remove_or_list_members() {
    let app = spawn_app().await;
    let paths = [
        (Method::PUT, "/websocket/rooms/ops/members/alice"),
        (Method::DELETE, "/websocket/rooms/ops/members/alice"),
        (Method::GET, "/websocket/rooms/ops/members"),
        (Method::GET, "/websocket/users/alice/rooms"),
    ];
    for (method, path) in paths {
        let as_user = app
            .rest(method.clone(), path, "alice", "USER")
            .send()
            .await
            .expect("answered");
        assert_eq!(as_user.status(), StatusCode::FORBIDDEN, "{method} {path}");
        let anonymous = reqwest::Client::new()
            .request(method.clone(), app.url(path))
            .timeout(WAIT)
            .send()
            .await
            .expect("answered");
        assert_eq!(
            anonymous.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
    }
    assert_eq!(
        listing(&app, "/websocket/users/alice/rooms").await["rooms"],
        json!([]),
        "nothing was added"
    );
}

async fn a_server_membership_survives_a_restart(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("policies.json");
    let table = json!({"rooms": [{"match": "ticket-*", "join": "members"}]});
    std::fs::write(&path, table.to_string()).expect("policy file written");
    let policies = |s: &mut Settings| s.access.policies_file = Some(path.clone());
    let Some(mut app) = spawn_on(backend, policies).await else {
        return;
    };
    let data = app.take_dir();
    add(&app, "ticket-7", "alice", true).await;
    let place = app.place();
    app.stop().await;

    let app = spawn_app_at(&place, policies).await;
    assert_eq!(
        listing(&app, "/websocket/rooms/ticket-7/members").await["members"],
        json!([{"userId": "alice", "online": false, "addedByServer": true}])
    );
    let (mut alice, connected) = app.user("alice", "USER").await;
    assert_eq!(
        connected["rooms"],
        json!(["ticket-7"]),
        "kept, though join-room is refused there"
    );
    alice
        .emit_ack(
            "room-message",
            json!({"room": "ticket-7", "message": "still here"}),
            1,
        )
        .await;
    assert_eq!(alice.wait_for_ack(1).await["ok"], true);
    drop(data);
}
