//! Room membership made by the application, across three nodes (in one process over the
//! memory bus, on one PostgreSQL database): an add or a removal on one node has the same
//! effect for the user's connections on the others (`joined-room`; `left-room` with reason
//! `removed`, and delivery stops), since the bus carries who made the change and why.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::cluster_memory::Cluster;
use crate::helpers::*;

/// Long enough that no node is lost while the test runs.
const NODE_TIMEOUT: Duration = Duration::from_secs(60);

/// `method` on `/websocket/rooms/{room}/members/{user}` of `node`, by an admin.
async fn member(node: &TestApp, method: Method, room: &str, user: &str) -> Value {
    let path = format!("/websocket/rooms/{room}/members/{user}");
    let response = node
        .rest(method, &path, "root", "ADMIN")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("a JSON body")
}

#[tokio::test]
async fn an_add_and_a_removal_on_one_node_reach_the_users_connections_on_the_others() {
    let Some(cluster) = Cluster::new("memory_server_members", NODE_TIMEOUT).await else {
        return;
    };
    let [a, b, c] = cluster.three().await;
    let (mut alice_b, _) = b.user("alice", "USER").await;
    let (mut alice_c, _) = c.user("alice", "USER").await;
    let (mut carol, _) = c.user("carol", "USER").await;
    carol.emit_ack("join-room", json!({"room": "ops"}), 1).await;
    assert_eq!(carol.wait_for_ack(1).await["ok"], true);

    // Added on A, where alice has no connection.
    assert_eq!(member(&a, Method::PUT, "ops", "alice").await["added"], true);
    for alice in [&mut alice_b, &mut alice_c] {
        assert_eq!(alice.wait_for("joined-room").await["room"], "ops");
    }
    let seen = carol.wait_for("user-joined-room").await;
    assert_eq!(seen["user"]["userId"], "alice");
    carol
        .emit_ack(
            "room-message",
            json!({"room": "ops", "message": "before"}),
            2,
        )
        .await;
    assert_eq!(carol.wait_for_ack(2).await["ok"], true);
    for alice in [&mut alice_b, &mut alice_c] {
        assert_eq!(alice.wait_for("room-message").await["message"], "before");
    }

    // Removed on A: told on B and C, where delivery stops under each node's lock.
    assert_eq!(
        member(&a, Method::DELETE, "ops", "alice").await["removed"],
        true
    );
    for alice in [&mut alice_b, &mut alice_c] {
        let left = alice.wait_for("left-room").await;
        assert_eq!(
            (&left["room"], &left["reason"]),
            (&json!("ops"), &json!("removed"))
        );
    }
    assert_eq!(
        carol.wait_for("user-left-room").await["user"]["userId"],
        "alice"
    );

    // Sent on C after the removal; a notification to alice follows it in id order on every
    // node, so it is the next thing alice's connections hear, not the room's message.
    carol
        .emit_ack(
            "room-message",
            json!({"room": "ops", "message": "after"}),
            3,
        )
        .await;
    assert_eq!(carol.wait_for_ack(3).await["ok"], true);
    let marker = c
        .rest(
            Method::POST,
            "/websocket/send-notification",
            "root",
            "ADMIN",
        )
        .json(&json!({"userId": "alice", "message": "marker"}))
        .send()
        .await
        .expect("answered");
    assert_eq!(marker.status(), StatusCode::OK);
    for alice in [&mut alice_b, &mut alice_c] {
        let (event, data) = alice.next_event().await;
        assert_eq!(
            (event.as_str(), &data["message"]),
            ("notification", &json!("marker"))
        );
    }
    for node in [&a, &b, &c] {
        let members = node
            .rest(Method::GET, "/websocket/rooms/ops/members", "root", "ADMIN")
            .send()
            .await
            .expect("answered");
        let body: Value = members.json().await.expect("a JSON body");
        assert_eq!(
            body["members"],
            json!([{"userId": "carol", "online": true, "addedByServer": false}])
        );
    }
}
