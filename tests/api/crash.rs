//! Crash safety, on SQLite and on PostgreSQL: the release binary is killed with SIGKILL in
//! the middle of a burst; on the same data, every acknowledged message is stored, queued ones
//! are delivered, and public ones are replayable with `sync`.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::helpers::*;

const BURST: u64 = 3000;
const KILL_AFTER_ACKS: usize = 800;

on_both_backends!(every_acknowledged_message_survives_a_sigkill);

async fn every_acknowledged_message_survives_a_sigkill(backend: Backend) {
    let test = "every_acknowledged_message_survives_a_sigkill";
    let Some((place, _dir)) = Place::fresh(backend, test).await else {
        return;
    };
    let unlimited = [
        ("RATE_LIMIT_PER_SEC", "1000000"),
        ("RATE_LIMIT_BURST", "1000000"),
        ("OUTBOUND_QUEUE_CAPACITY", "100000"),
        ("MAX_QUEUED_PER_USER", "100000"),
    ];
    let server = BinaryServer::start_at(&place, &unlimited).await;
    let bob = server.user("bob", "").await;
    bob.close().await;
    let mut alice = server.user("alice", "").await;
    alice.expect("connected").await;

    // Fire the whole burst, alternating queued private messages and public ones, then
    // read acks until enough came back, and kill the server mid-stream.
    for n in 0..BURST {
        let data = if n % 2 == 0 {
            json!({"message": format!("private {n}"), "to": "bob"})
        } else {
            json!({"message": format!("public {n}")})
        };
        alice.emit_ack("send-message", data, n).await;
    }
    let mut acked_private = BTreeSet::new();
    let mut acked_public = BTreeSet::new();
    while acked_private.len() + acked_public.len() < KILL_AFTER_ACKS {
        let ack = alice.wait_for("ack").await;
        assert_eq!(ack["ok"], true, "{ack}");
        let id = ack["id"].as_u64().expect("id");
        if ack["ack"].as_u64().expect("ack id") % 2 == 0 {
            acked_private.insert(id);
        } else {
            acked_public.insert(id);
        }
    }
    server.kill();
    drop(alice);

    let app = spawn_app_at(&place, |_| {}).await;
    let stored: BTreeSet<u64> = app
        .sql()
        .await
        .rows::<(i64,)>("SELECT message_id FROM messages", &[])
        .await
        .into_iter()
        .map(|(id,)| id as u64)
        .collect();
    let missing: Vec<_> = acked_private
        .union(&acked_public)
        .filter(|id| !stored.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {missing:?}"
    );

    eprintln!(
        "burst {BURST}, acked {}, stored after the kill {}",
        acked_private.len() + acked_public.len(),
        stored.len()
    );
    // Queued: bob gets every acknowledged private message on his next connection.
    let (mut bob, _) = app.user("bob", "USER").await;
    let mut received = BTreeSet::new();
    loop {
        let (event, data) = bob.next_event().await;
        if event == "private-message" {
            received.insert(data["id"].as_u64().expect("id"));
            if acked_private.is_subset(&received) {
                break;
            }
        }
    }

    // Replayable: alice's sync from 0 holds every acknowledged public message.
    let (mut alice, _) = app.user("alice", "USER").await;
    let mut replayed = BTreeSet::new();
    let mut since = 0;
    loop {
        alice.emit("sync", json!({"since": since})).await;
        let done = loop {
            let (event, data) = alice.next_event().await;
            match event.as_str() {
                "broadcast-message" => {
                    replayed.insert(data["id"].as_u64().expect("id"));
                }
                "sync-complete" => break data,
                _ => {}
            }
        };
        if done["more"] != Value::Bool(true) {
            break;
        }
        since = done["lastMessageId"].as_u64().expect("cursor");
    }
    let lost: Vec<_> = acked_public.difference(&replayed).collect();
    assert!(lost.is_empty(), "acknowledged but not replayed: {lost:?}");
}
