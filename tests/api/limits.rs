//! Limits: oversized frames, the rate limit, slow consumers and idle connections each end
//! only the offending connection, with a close reason, and are recorded.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

#[tokio::test]
async fn an_oversized_frame_closes_only_that_connection_with_1009() {
    let app = spawn_app_with(|s| s.limits.max_frame_bytes = 1024).await;
    let (mut alice, _) = app.user("alice", "USER").await;
    let (mut mallory, _) = app.user("mallory", "USER").await;
    alice.expect("user-connected").await;

    mallory.send(Message::text("x".repeat(2048))).await;
    let close = mallory.expect_close().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1009);
    assert!(close.reason.contains("too large"), "{}", close.reason);

    let left = alice.expect("user-disconnected").await;
    assert_eq!(left["user"]["userId"], "mallory");
    alice.emit_ack("get-active-users", Value::Null, 1).await;
    assert_eq!(alice.expect("active-users").await["count"], 1);
    assert_eq!(
        reason_of(&app, &mut alice, "mallory").await.as_deref(),
        Some("frame_too_large")
    );
}

#[tokio::test]
async fn the_rate_limit_refuses_then_disconnects_sustained_abuse() {
    let app = spawn_app_with(|s| {
        s.limits.rate_limit_per_sec = 1;
        s.limits.rate_limit_burst = 3;
        s.limits.rate_limit_max_strikes = 4;
    })
    .await;
    let (mut alice, _) = app.user("alice", "USER").await;
    let (mut spammer, _) = app.user("spammer", "USER").await;
    alice.expect("user-connected").await;

    for _ in 0..3 {
        spammer
            .emit("send-message", json!({"message": "spam"}))
            .await;
    }
    spammer
        .emit_ack("send-message", json!({"message": "spam"}), 1)
        .await;
    let error = spammer.expect("error").await;
    assert_eq!(
        error["message"],
        "rate limit exceeded: at most 1 events per second"
    );
    assert_eq!(error["code"], "rate_limited");
    assert_eq!(spammer.expect_ack(1).await["code"], "rate_limited");
    for _ in 0..3 {
        spammer
            .emit("send-message", json!({"message": "spam"}))
            .await;
    }
    let close = spammer.expect_close().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1008);

    // Alice got the three admitted messages and nothing else, then the departure.
    for _ in 0..3 {
        alice.expect("broadcast-message").await;
    }
    alice.expect("user-disconnected").await;
    assert_eq!(
        reason_of(&app, &mut alice, "spammer").await.as_deref(),
        Some("rate_limited")
    );
}

#[tokio::test]
async fn a_client_that_does_not_read_is_dropped_without_stalling_others() {
    const QUEUE: usize = 16;
    let app = spawn_app_with(|s| {
        s.limits.outbound_queue_capacity = QUEUE;
        s.limits.rate_limit_per_sec = 100_000;
        s.limits.rate_limit_burst = 100_000;
    })
    .await;
    let (_sleeper, _) = app.user("sleeper", "USER").await;
    let (mut sender, _) = app.user("sender", "USER").await;
    let (mut watcher, _) = app.user("watcher", "USER").await;
    sender.expect("user-connected").await;

    // Enough bytes to fill the socket buffers and then the sleeper's queue. The watcher
    // reads each message as it comes, so it never falls behind.
    let big = "z".repeat(4000);
    let mut sent = 0;
    let departed = loop {
        sender.emit("send-message", json!({"message": big})).await;
        sent += 1;
        assert!(sent < 20_000, "the sleeper was never dropped");
        let (event, data) = watcher.next_event().await;
        if event == "user-disconnected" {
            assert_eq!(data["user"]["userId"], "sleeper");
            break sent;
        }
        assert_eq!(event, "broadcast-message");
    };
    // Dropped because its queue overflowed, not before: the socket's buffers and then all
    // of its queue must have filled first, so more messages than the queue holds were sent.
    assert!(
        departed > QUEUE,
        "the sleeper was dropped after {departed} messages, before its queue of {QUEUE} could fill"
    );
    assert_eq!(
        reason_of(&app, &mut watcher, "sleeper").await.as_deref(),
        Some("slow_consumer")
    );
    sender.emit_ack("get-active-users", Value::Null, 1).await;
    assert_eq!(sender.wait_for("active-users").await["count"], 2);
}

#[tokio::test]
async fn a_socketio_client_that_does_not_read_is_dropped_as_a_slow_consumer() {
    let app = spawn_app_with(|s| {
        s.limits.outbound_queue_capacity = 16;
        s.limits.rate_limit_per_sec = 100_000;
        s.limits.rate_limit_burst = 100_000;
    })
    .await;
    // A raw Engine.IO websocket: it connects to the namespace, takes `connected`, and then
    // never reads again, so socketioxide's queue fills and then ours overflows.
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", app.addr);
    let (mut sleeper, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("upgrade within the timeout")
        .expect("upgrade accepted");
    let connect = json!({ "token": app.token("sleeper", "USER") });
    sleeper
        .send(Message::text(format!("40{connect}")))
        .await
        .expect("connect packet sent");
    loop {
        let frame = tokio::time::timeout(WAIT, sleeper.next())
            .await
            .expect("a frame within the timeout")
            .expect("stream open")
            .expect("frame readable");
        if frame
            .to_text()
            .is_ok_and(|t| t.starts_with(r#"42["connected""#))
        {
            break;
        }
    }
    let (mut sender, _) = app.user("sender", "USER").await;
    let (mut watcher, _) = app.user("watcher", "USER").await;
    sender.expect("user-connected").await;

    let big = "z".repeat(4000);
    let mut sent = 0;
    loop {
        sender.emit("send-message", json!({"message": big})).await;
        sent += 1;
        assert!(sent < 20_000, "the sleeper was never dropped");
        let (event, data) = watcher.next_event().await;
        if event == "user-disconnected" {
            assert_eq!(data["user"]["userId"], "sleeper");
            break;
        }
        assert_eq!(event, "broadcast-message");
    }
    assert_eq!(
        reason_of(&app, &mut watcher, "sleeper").await.as_deref(),
        Some("slow_consumer")
    );
    sender.emit_ack("get-active-users", Value::Null, 1).await;
    assert_eq!(sender.wait_for("active-users").await["count"], 2);
    drop(sleeper);
}

#[tokio::test]
async fn an_idle_connection_is_closed_but_a_reading_one_is_kept() {
    let app = spawn_app_with(|s| {
        s.limits.ping_interval = Duration::from_secs(1);
        s.limits.idle_timeout = Duration::from_secs(3);
    })
    .await;
    let (mut idle, _) = app.user("idle", "USER").await;
    let (mut awake, _) = app.user("awake", "USER").await;

    // `awake` keeps reading, so it answers pings; `idle` reads nothing at all.
    let left = awake.wait_for("user-disconnected").await;
    assert_eq!(left["user"]["userId"], "idle");
    // Whether the close frame is still readable depends on the kernel (the idle client never
    // read its pings); when it is, it names the reason.
    if let Some(close) = idle.expect_close().await {
        assert!(close.reason.contains("idle"), "{}", close.reason);
    }
    awake.emit_ack("get-active-users", Value::Null, 1).await;
    assert_eq!(awake.wait_for("active-users").await["count"], 1);
    assert_eq!(
        reason_of(&app, &mut awake, "idle").await.as_deref(),
        Some("idle_timeout")
    );
}
