//! Presence at scale (`docs/protocol.md` section 9): the `diff` and `off` modes over `/ws`, and the
//! rule that presence traffic never makes a slow consumer of a client. (Socket.IO: the same
//! modes in tests/socketio/interop.test.js.)

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};
use switchboard::config::PresenceMode;

use crate::helpers::*;

fn user_ids(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list of users")
        .iter()
        .map(|u| u["userId"].as_str().expect("userId").to_owned())
        .collect()
}

#[tokio::test]
async fn diff_mode_merges_one_window_into_one_presence_diff() {
    let app = spawn_app_with(|s| {
        s.presence.mode = PresenceMode::Diff;
        s.presence.diff_interval = Duration::from_millis(1500);
    })
    .await;
    let (mut alice, _) = app.user("alice", "USER").await;
    // Every connection gets the same diff: alice's own arrival included.
    let own = alice.expect("presence-diff").await;
    assert_eq!(user_ids(&own["joins"]), ["alice"], "{own}");
    // All inside one window, which opens with bob's arrival.
    let (bob, _) = app.user("bob", "USER").await;
    let (carol, _) = app.user("carol", "USER").await;
    let (dave, _) = app.user("dave", "USER").await;
    dave.close().await;

    let (name, diff) = alice.next_event().await;
    assert_eq!(name, "presence-diff", "{diff}");
    assert_eq!(user_ids(&diff["joins"]), ["bob", "carol"], "{diff}");
    assert_eq!(
        user_ids(&diff["leaves"]),
        Vec::<String>::new(),
        "dave joined and left inside the window: in neither list"
    );
    assert_eq!(diff["activeUsersCount"], 3);
    assert!(diff["timestamp"].is_string());
    alice.expect_silence().await;

    // The next window: bob's departure alone.
    bob.close().await;
    let left = alice.expect("presence-diff").await;
    assert_eq!(user_ids(&left["joins"]), Vec::<String>::new());
    assert_eq!(user_ids(&left["leaves"]), ["bob"]);
    assert_eq!(left["activeUsersCount"], 2);
    carol.close().await;
}

#[tokio::test]
async fn off_mode_sends_no_presence_but_get_active_users_answers() {
    let app = spawn_app_with(|s| s.presence.mode = PresenceMode::Off).await;
    let (mut alice, _) = app.user("alice", "USER").await;
    let (bob, _) = app.user("bob", "USER").await;
    let (carol, _) = app.user("carol", "USER").await;
    carol.close().await;

    // Carol's departure reaches the hub just after her close handshake: ask until it has.
    let mut online = Vec::new();
    for _ in 0..100 {
        alice.emit("get-active-users", json!(null)).await;
        let (name, data) = alice.next_event().await;
        assert_eq!(
            name, "active-users",
            "no presence event, only replies: {data}"
        );
        online = user_ids(&data["users"]);
        if online.len() == 2 {
            break;
        }
    }
    online.sort();
    assert_eq!(online, ["alice", "bob"]);
    alice.expect_silence().await;
    bob.close().await;
}

/// A client catching up holds its live events until the replay ends, at most a queue's worth
/// (OUTBOUND_QUEUE_CAPACITY) before it counts as a slow consumer. Presence must not count:
/// 60 changes arrive while the replay is stuck behind a client that does not read.
#[tokio::test]
async fn presence_never_makes_a_slow_consumer_of_a_client_catching_up() {
    const QUEUED: u64 = 2500;
    let app = spawn_app_with(|s| {
        s.limits.outbound_queue_capacity = 8;
        s.limits.max_queued_per_user = 10_000;
        s.limits.rate_limit_per_sec = 1_000_000;
        s.limits.rate_limit_burst = 1_000_000;
    })
    .await;
    let (alice, _) = app.user("alice", "USER").await;
    alice.close().await;

    // ~10 MB waiting for alice: more than the socket buffers between her and the server.
    let (mut sender, _) = app.user("sender", "USER").await;
    let text = "x".repeat(4000);
    for ack in 1..=QUEUED {
        sender
            .emit_ack("send-message", json!({"message": text, "to": "alice"}), ack)
            .await;
    }
    let last = sender.wait_for_ack(QUEUED).await;
    assert_eq!(last["queued"], true, "{last}");

    // Alice connects and reads only `connected`: her replay backs up into the socket.
    let (mut alice, _) = app.user("alice", "USER").await;
    join_all((0..30).map(|i| {
        let app = &app;
        async move {
            let (visitor, _) = app.user(&format!("visitor{i}"), "USER").await;
            visitor.close().await;
        }
    }))
    .await;

    let mut replayed = 0;
    let mut presence = 0;
    while replayed < QUEUED {
        let (name, data) = alice.next_event().await;
        match name.as_str() {
            "private-message" => replayed += 1,
            "user-connected" | "user-disconnected" => presence += 1,
            other => panic!("unexpected {other}: {data}"),
        }
    }
    // Still open, and every visitor's arrival and departure reached her.
    alice.emit("get-active-users", json!(null)).await;
    let mut answered = false;
    while !answered || presence < 60 {
        let (name, data) = alice.next_event().await;
        match name.as_str() {
            "active-users" => answered = true,
            "user-connected" | "user-disconnected" => presence += 1,
            other => panic!("unexpected {other}: {data}"),
        }
    }
    assert_eq!(presence, 60);
    sender.close().await;
}

/// A presence storm (section 9): with a budget of one delivery per second, any change with
/// more than one connection to hear it passes it, and goes out as a `presence-summary` with
/// counts instead of a `user-connected` / `user-disconnected` with names.
#[tokio::test]
async fn past_the_storm_budget_changes_go_out_as_a_summary_with_counts() {
    let app = spawn_app_with(|s| s.presence.storm_budget = 1).await;
    let (mut alice, _) = app.user("alice", "USER").await;
    let (carol, _) = app.user("carol", "USER").await;
    let (bob, _) = app.user("bob", "USER").await;
    // Carol's arrival (two readers) and bob's (three) are summed up, one summary a flush:
    // alice reads until the count says both are in.
    let summary = loop {
        let (name, data) = alice.next_event().await;
        assert_eq!(name, "presence-summary", "no names in a storm: {data}");
        assert_eq!(data["disconnected"], 0, "{data}");
        assert!(data["timestamp"].is_string(), "{data}");
        if data["activeUsersCount"] == 3 {
            break data;
        }
    };
    assert!(summary["connected"].as_u64() >= Some(1), "{summary}");

    bob.close().await;
    let left = alice.expect("presence-summary").await;
    assert_eq!(left["connected"], 0, "{left}");
    assert_eq!(left["disconnected"], 1, "{left}");
    assert_eq!(left["activeUsersCount"], 2, "{left}");
    // What was summed up is never sent by name afterwards.
    alice.expect_silence().await;

    // The list stays one question away.
    alice.emit("get-active-users", json!(null)).await;
    let active = alice.expect("active-users").await;
    let mut online = user_ids(&active["users"]);
    online.sort();
    assert_eq!(online, ["alice", "carol"]);
    carol.close().await;
}

/// The same in `diff` mode: a window whose users would pass the budget goes out as a summary.
#[tokio::test]
async fn diff_mode_sums_up_a_window_past_the_storm_budget() {
    let app = spawn_app_with(|s| {
        s.presence.mode = PresenceMode::Diff;
        s.presence.diff_interval = Duration::from_millis(100);
        s.presence.storm_budget = 1;
    })
    .await;
    let (mut alice, _) = app.user("alice", "USER").await;
    // Alice's own arrival, one reader: a tenth of a delivery's budget, still past it.
    let own = alice.expect("presence-summary").await;
    assert_eq!(own["connected"], 1, "{own}");
    let (bob, _) = app.user("bob", "USER").await;
    let joined = alice.expect("presence-summary").await;
    assert_eq!(joined["connected"], 1, "{joined}");
    assert_eq!(joined["activeUsersCount"], 2, "{joined}");
    bob.close().await;
    let left = alice.expect("presence-summary").await;
    assert_eq!(left["disconnected"], 1, "{left}");
    assert_eq!(left["activeUsersCount"], 1, "{left}");
    alice.expect_silence().await;
}

/// Under the budget nothing changes: the default budget lets a small crowd's arrivals through
/// one by one, by name.
#[tokio::test]
async fn under_the_storm_budget_every_change_goes_out_by_name() {
    let app = spawn_app().await;
    let (mut alice, _) = app.user("alice", "USER").await;
    let mut others = Vec::new();
    for i in 0..20 {
        others.push(app.user(&format!("u{i}"), "USER").await.0);
    }
    for i in 0..20 {
        let event = alice.expect("user-connected").await;
        assert_eq!(event["user"]["userId"], format!("u{i}"), "{event}");
    }
    for other in others {
        other.close().await;
    }
}
