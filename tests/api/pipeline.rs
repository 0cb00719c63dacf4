//! The per-connection pipeline on `/ws`: a client may send many messages without waiting;
//! the server reads on while earlier ones wait for their commit, and the acks still come in
//! frame order, each once its own message is in the database, a refusal in its place.

use serde_json::{Value, json};
use sqlx::SqlitePool;

use crate::helpers::*;

/// Acks a connection may owe before its reader stops (`transport::pipeline::MAX_IN_FLIGHT`).
const MAX_IN_FLIGHT: usize = 32;

async fn spawn_unlimited() -> TestApp {
    spawn_app_with(|s| {
        s.limits.rate_limit_per_sec = 10_000;
        s.limits.rate_limit_burst = 10_000;
    })
    .await
}

async fn is_stored(db: &SqlitePool, id: u64) -> bool {
    let found: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE message_id = ?1")
        .bind(id as i64)
        .fetch_one(db)
        .await
        .expect("read the database file");
    found == 1
}

/// Reads `client`'s events up to the ack of frame `last`, and returns the acks in arrival
/// order, each with whether an `error` event came right before it.
async fn acks_through(client: &mut WsClient, last: u64) -> Vec<(Value, bool)> {
    let mut acks = Vec::new();
    let mut after_error = false;
    loop {
        let (event, data) = client.next_event().await;
        match event.as_str() {
            "error" => after_error = true,
            "ack" => {
                let done = data["ack"] == last;
                acks.push((data, std::mem::take(&mut after_error)));
                if done {
                    return acks;
                }
            }
            _ => after_error = false,
        }
    }
}

#[tokio::test]
async fn back_to_back_messages_are_acked_in_frame_order_each_after_its_commit() {
    // Arrange: bob in room r; alice will join it in her first frame.
    let app = spawn_unlimited().await;
    let db = app.db().await;
    let (mut bob, _) = app.user("bob", "USER").await;
    bob.emit_ack("join-room", json!({"room": "r"}), 1).await;
    bob.wait_for_ack(1).await;
    let (mut alice, _) = app.user("alice", "USER").await;

    // Act: 51 frames without waiting: the join, then private and room messages in turn,
    // frame 26 refused (an empty message).
    alice.emit_ack("join-room", json!({"room": "r"}), 1).await;
    for frame in 2..=51u64 {
        let data = match frame {
            26 => json!({"message": "", "to": "bob"}),
            f if f % 2 == 0 => json!({"message": format!("m{f}"), "to": "bob"}),
            f => json!({"room": "r", "message": format!("m{f}")}),
        };
        let event = if frame % 2 == 1 {
            "room-message"
        } else {
            "send-message"
        };
        alice.emit_ack(event, data, frame).await;
    }

    // Assert: every ack in frame order; each stored message is in the file when its ack
    // arrives; the refusal is answered in its place, after its `error`.
    let mut last_id = 0;
    let mut acks = 0;
    let mut pending = acks_through(&mut alice, 51).await.into_iter();
    for frame in 1..=51u64 {
        let (ack, after_error) = pending.next().expect("an ack for every frame");
        assert_eq!(ack["ack"], frame, "acks in frame order: {ack}");
        acks += 1;
        match frame {
            1 => assert_eq!(ack["ok"], true, "{ack}"),
            26 => {
                assert_eq!(ack["ok"], false, "{ack}");
                assert_eq!(ack["code"], "bad_payload", "{ack}");
                assert!(
                    after_error,
                    "the refusal's error event comes just before its ack"
                );
            }
            _ => {
                assert_eq!(ack["ok"], true, "{ack}");
                let id = ack["id"].as_u64().expect("a message id");
                assert!(id > last_id, "ids follow frame order: {id} after {last_id}");
                last_id = id;
                // The file, not the API: the API would wait for the commit itself.
                assert!(
                    is_stored(&db, id).await,
                    "message {id} acked before its commit"
                );
            }
        }
    }
    assert_eq!(acks, 51);
    // The room messages prove the join (frame 1) ran before them: bob got every one.
    let mut received = 0;
    while received < 49 {
        let (event, data) = bob.next_event().await;
        if event == "private-message" || event == "room-message" {
            assert!(data["id"].as_u64().is_some(), "{data}");
            received += 1;
        }
    }
}

#[tokio::test]
async fn a_connection_reads_on_while_commits_wait_up_to_its_window() {
    // Arrange: both connected (their session rows written), then the database's write lock
    // held from outside, so that no commit can happen.
    let app = spawn_unlimited().await;
    let (mut bob, _) = app.user("bob", "USER").await;
    let (mut alice, _) = app.user("alice", "USER").await;
    bob.wait_for("user-connected").await;
    alice.emit_ack("get-users-stats", Value::Null, 100).await;
    alice.wait_for_ack(100).await;
    let db = app.db().await;
    let mut lock = db.acquire().await.expect("a connection to the file");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *lock)
        .await
        .expect("take the write lock");

    // Act
    let sent = 50u64;
    for frame in 1..=sent {
        let message = json!({"message": format!("m{frame}"), "to": "bob"});
        alice.emit_ack("send-message", message, frame).await;
    }

    // Assert: the reader went on past the first uncommitted message, up to its window, and
    // stopped there; no ack went out before its commit.
    for _ in 0..MAX_IN_FLIGHT {
        bob.expect("private-message").await;
    }
    bob.expect_silence().await;
    alice.expect_silence().await;

    // Act: commits can happen again.
    sqlx::query("ROLLBACK")
        .execute(&mut *lock)
        .await
        .expect("release the write lock");
    drop(lock);

    // Assert: every ack, in order, each message stored; bob gets the rest.
    let mut last_id = 0;
    for frame in 1..=sent {
        let ack = alice.expect_ack(frame).await;
        assert_eq!(ack["ok"], true, "{ack}");
        let id = ack["id"].as_u64().expect("a message id");
        assert!(id > last_id, "{id} after {last_id}");
        last_id = id;
        assert!(
            is_stored(&db, id).await,
            "message {id} acked before its commit"
        );
    }
    for _ in MAX_IN_FLIGHT as u64..sent {
        bob.expect("private-message").await;
    }
}
