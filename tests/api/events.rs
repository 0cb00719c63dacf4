//! Every client event over `/ws`, with every payload field `docs/protocol.md` names.

use serde_json::{Value, json};

use crate::helpers::*;

fn assert_user_object(user: &Value, id: &str, name: &str, role: &str, sessions: u64) {
    assert_eq!(user["userId"], id, "{user}");
    assert_eq!(user["username"], name, "{user}");
    assert_eq!(user["role"], role, "{user}");
    assert_eq!(user["sessions"], sessions, "{user}");
    assert_timestamp(&user["connectedAt"]);
}

fn assert_timestamp(v: &Value) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("timestamp string, got {v}"));
    // 2026-11-26T07:01:02.345Z
    assert_eq!(s.len(), 24, "{s}");
    assert!(
        s.ends_with('Z') && s.as_bytes()[10] == b'T' && s.as_bytes()[19] == b'.',
        "{s}"
    );
}

#[tokio::test]
async fn connected_is_the_first_frame_and_names_the_user() {
    let app = spawn_app().await;
    let (_alice, connected) = app.user("alice", "ADMIN").await;
    assert!(connected["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_user_object(&connected["user"], "alice", "Alice", "ADMIN", 1);
    assert_timestamp(&connected["timestamp"]);
    assert_eq!(connected["rooms"], json!([]));
}

#[tokio::test]
async fn presence_is_announced_on_a_users_first_and_last_connection_only() {
    let app = spawn_app().await;
    let (mut alice, _) = app.user("alice", "USER").await;

    let (bob1, _) = app.user("bob", "USER").await;
    let joined = alice.expect("user-connected").await;
    assert_user_object(&joined["user"], "bob", "Bob", "USER", 1);
    assert_eq!(joined["activeUsersCount"], 2);
    assert_timestamp(&joined["timestamp"]);

    // A second device of the same user is not news to anyone.
    let (bob2, connected2) = app.user("bob", "USER").await;
    assert_eq!(connected2["user"]["sessions"], 2);
    alice.expect_silence().await;

    bob1.close().await;
    alice.expect_silence().await;

    bob2.close().await;
    let left = alice.expect("user-disconnected").await;
    assert_user_object(&left["user"], "bob", "Bob", "USER", 0);
    assert_eq!(left["activeUsersCount"], 1);
    assert_timestamp(&left["timestamp"]);
}

#[tokio::test]
async fn get_active_users_lists_each_user_once_with_its_session_count() {
    let app = spawn_app().await;
    let (mut alice, _) = app.user("alice", "ADMIN").await;
    let (_bob1, _) = app.user("bob", "USER").await;
    let (_bob2, _) = app.user("bob", "USER").await;
    alice.expect("user-connected").await;

    alice.emit_ack("get-active-users", Value::Null, 1).await;
    let list = alice.expect("active-users").await;
    assert_eq!(list["count"], 2);
    let users = list["users"].as_array().expect("users array");
    assert_eq!(users.len(), 2);
    assert_user_object(&users[0], "alice", "Alice", "ADMIN", 1);
    assert_user_object(&users[1], "bob", "Bob", "USER", 2);
    let ack = alice.expect_ack(1).await;
    assert_eq!(ack["ok"], true);
    assert_eq!(ack["count"], 2);
}

#[tokio::test]
async fn get_users_stats_reports_roles_and_connection_times() {
    let app = spawn_app().await;
    let (mut alice, _) = app.user("alice", "ADMIN").await;
    let (_bob, _) = app.user("bob", "USER").await;
    let (_carol, _) = app.user("carol", "USER").await;
    alice.expect("user-connected").await;
    alice.expect("user-connected").await;

    alice.emit("get-users-stats", Value::Null).await;
    let stats = alice.expect("users-stats").await;
    assert_eq!(stats["totalUsers"], 3);
    assert_eq!(stats["usersByRole"], json!({"ADMIN": 1, "USER": 2}));
    let times = stats["connectionTimes"].as_array().expect("array");
    assert_eq!(times.len(), 3);
    for t in times {
        for field in ["userId", "username", "connectedAt", "firstSeen"] {
            assert!(t[field].is_string(), "{field} in {t}");
        }
        for field in ["connectedSeconds", "totalConnectedSeconds", "sessionsCount"] {
            assert!(t[field].is_u64(), "{field} in {t}");
        }
        assert_eq!(t["sessionsCount"], 1);
    }
}

#[tokio::test]
async fn a_public_message_reaches_every_other_connection_but_not_the_sender() {
    let app = spawn_app().await;
    let (mut alice, _) = app.user("alice", "USER").await;
    let (mut bob, _) = app.user("bob", "USER").await;
    let (mut alice2, _) = app.user("alice", "USER").await;
    alice.expect("user-connected").await;

    alice
        .emit_ack("send-message", json!({"message": "Hello everyone!"}), 7)
        .await;
    let ack = alice.expect_ack(7).await;
    assert_eq!(ack["ok"], true);
    assert_eq!(ack["delivered"], 2);
    assert_eq!(ack["queued"], false);

    for receiver in [&mut bob, &mut alice2] {
        let msg = receiver.expect("broadcast-message").await;
        assert_eq!(msg["message"], "Hello everyone!");
        assert_user_object(&msg["from"], "alice", "Alice", "USER", 2);
        assert_timestamp(&msg["timestamp"]);
    }
    alice.expect_silence().await;
}

#[tokio::test]
async fn a_private_message_reaches_each_connection_of_the_target_only() {
    let app = spawn_app().await;
    let (mut alice, _) = app.user("alice", "USER").await;
    let (mut bob1, _) = app.user("bob", "USER").await;
    let (mut bob2, _) = app.user("bob", "USER").await;
    let (mut carol, _) = app.user("carol", "USER").await;
    alice.expect("user-connected").await;
    alice.expect("user-connected").await;
    bob1.expect("user-connected").await;
    bob2.expect("user-connected").await;

    alice
        .emit_ack("send-message", json!({"message": "psst", "to": "bob"}), 1)
        .await;
    let ack = alice.expect_ack(1).await;
    assert_eq!(ack["ok"], true);
    assert_eq!(ack["delivered"], 2);
    for bob in [&mut bob1, &mut bob2] {
        let msg = bob.expect("private-message").await;
        assert_eq!(msg["message"], "psst");
        assert_eq!(msg["from"]["userId"], "alice");
        assert_timestamp(&msg["timestamp"]);
    }
    carol.expect_silence().await;
}

#[tokio::test]
async fn a_private_message_to_a_user_never_seen_is_an_error() {
    let app = spawn_app().await;
    let (mut alice, _) = app.user("alice", "USER").await;
    alice
        .emit_ack("send-message", json!({"message": "hi", "to": "nobody"}), 3)
        .await;
    let error = alice.expect("error").await;
    assert_eq!(
        error["message"],
        "unknown user \"nobody\": nobody with that id has ever connected"
    );
    assert_eq!(error["code"], "unknown_user");
    let ack = alice.expect_ack(3).await;
    assert_eq!(ack["ok"], false);
    assert_eq!(ack["error"], error["message"]);
    assert_eq!(ack["code"], "unknown_user");
}

#[tokio::test]
async fn rooms_confirm_joins_and_leaves_and_tell_the_other_members() {
    let app = spawn_app().await;
    let (mut alice, _) = app.user("alice", "USER").await;
    let (mut bob, _) = app.user("bob", "USER").await;
    alice.expect("user-connected").await;

    alice
        .emit_ack("join-room", json!({"room": "general"}), 1)
        .await;
    let joined = alice.expect("joined-room").await;
    assert_eq!(joined["room"], "general");
    assert!(joined["message"].is_string());
    assert_eq!(alice.expect_ack(1).await["ok"], true);
    bob.expect_silence().await;

    bob.emit("join-room", json!({"room": "general"})).await;
    bob.expect("joined-room").await;
    let note = alice.expect("user-joined-room").await;
    assert_eq!(note["room"], "general");
    assert_user_object(&note["user"], "bob", "Bob", "USER", 1);
    assert_timestamp(&note["timestamp"]);

    bob.emit("leave-room", json!({"room": "general"})).await;
    let left = bob.expect("left-room").await;
    assert_eq!(left["room"], "general");
    assert!(left["message"].is_string());
    let note = alice.expect("user-left-room").await;
    assert_eq!(note["room"], "general");
    assert_eq!(note["user"]["userId"], "bob");
    assert_timestamp(&note["timestamp"]);
}

#[tokio::test]
async fn a_room_message_reaches_the_other_members_only() {
    let app = spawn_app().await;
    let (mut alice, _) = app.user("alice", "USER").await;
    let (mut bob, _) = app.user("bob", "USER").await;
    let (mut carol, _) = app.user("carol", "USER").await;
    alice.expect("user-connected").await;
    alice.expect("user-connected").await;
    bob.expect("user-connected").await;

    alice.emit("join-room", json!({"room": "general"})).await;
    alice.expect("joined-room").await;
    bob.emit("join-room", json!({"room": "general"})).await;
    bob.expect("joined-room").await;
    alice.expect("user-joined-room").await;

    alice
        .emit_ack(
            "room-message",
            json!({"room": "general", "message": "Hello room!"}),
            9,
        )
        .await;
    let ack = alice.expect_ack(9).await;
    assert_eq!(ack["ok"], true);
    assert_eq!(ack["delivered"], 1);
    let msg = bob.expect("room-message").await;
    assert_eq!(msg["message"], "Hello room!");
    assert_eq!(msg["room"], "general");
    assert_eq!(msg["from"]["userId"], "alice");
    assert_timestamp(&msg["timestamp"]);
    carol.expect_silence().await;
    alice.expect_silence().await;
}

#[tokio::test]
async fn a_non_member_cannot_send_to_or_leave_a_room() {
    let app = spawn_app().await;
    let (mut alice, _) = app.user("alice", "USER").await;
    let (mut bob, _) = app.user("bob", "USER").await;
    alice.expect("user-connected").await;
    alice.emit("join-room", json!({"room": "secret"})).await;
    alice.expect("joined-room").await;

    bob.emit_ack(
        "room-message",
        json!({"room": "secret", "message": "let me in"}),
        1,
    )
    .await;
    let error = bob.expect("error").await;
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("not a member of room \"secret\"")),
        "{error}"
    );
    assert_eq!(error["code"], "not_member");
    let ack = bob.expect_ack(1).await;
    assert_eq!(
        (&ack["ok"], &ack["code"]),
        (&json!(false), &json!("not_member"))
    );
    alice.expect_silence().await;

    bob.emit("leave-room", json!({"room": "secret"})).await;
    assert!(
        bob.expect("error").await["message"]
            .as_str()
            .is_some_and(|m| m.contains("not a member"))
    );
}

#[tokio::test]
async fn room_membership_belongs_to_the_user_so_every_session_hears_the_room() {
    let app = spawn_app().await;
    let (mut alice, _) = app.user("alice", "USER").await;
    let (mut bob1, _) = app.user("bob", "USER").await;
    let (mut bob2, _) = app.user("bob", "USER").await;
    alice.expect("user-connected").await;
    bob1.emit("join-room", json!({"room": "r"})).await;
    bob1.expect("joined-room").await;
    // Bob's other device is in the room too, and learns that Bob joined it.
    assert_eq!(
        bob2.expect("user-joined-room").await["user"]["userId"],
        "bob"
    );
    alice.emit("join-room", json!({"room": "r"})).await;
    alice.expect("joined-room").await;
    bob1.expect("user-joined-room").await;
    bob2.expect("user-joined-room").await;

    alice
        .emit(
            "room-message",
            json!({"room": "r", "message": "both of you"}),
        )
        .await;
    bob1.expect("room-message").await;
    bob2.expect("room-message").await;

    // Joining again is harmless and tells nobody.
    bob2.emit_ack("join-room", json!({"room": "r"}), 4).await;
    bob2.expect("joined-room").await;
    let ack = bob2.expect_ack(4).await;
    assert_eq!(ack["joined"], false);
    alice.expect_silence().await;
}

#[tokio::test]
async fn a_role_change_in_a_newer_token_is_picked_up() {
    let app = spawn_app().await;
    let (_old, _) = app.user("dave", "USER").await;
    let (_new, connected) = app.user("dave", "ADMIN").await;
    assert_eq!(connected["user"]["role"], "ADMIN");
}
