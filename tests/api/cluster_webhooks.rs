//! Webhooks in a cluster (issue 22; one gateway is `webhooks.rs`): three nodes, the real
//! binary on one PostgreSQL database and one NATS server, share one endpoint, whose events
//! one node at a time sends (a lease in the database). Users on every node; the node holding
//! the lease is SIGKILLed while the endpoint holds its request open. Once the lease runs out
//! another node sends the rest: every event arrives, the only ids seen twice are those of the
//! request the dead node had under way, and the dead node's sessions are reported closed as
//! `node_lost`, with `user.offline` for the users who had no session elsewhere. Skips loudly
//! when PostgreSQL or NATS is unreachable (and fails with `CI=true`).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;

use crate::cluster_bus::{cluster_place, connect, node_with, presence};
use crate::helpers::*;
use crate::webhooks::{HOLD, KEY, all_sent, check_requests, is, seen};

/// `WEBHOOK_BATCH_MAX` of every node: the most events one request, and so one resend, holds.
const BATCH: usize = 10;
/// How long the other nodes may take to send once the lease holder died: its lease
/// (30 s, renewed before its last request) running out, then a node's next look (1 s).
const TAKEN_OVER: Duration = Duration::from_secs(60);
/// How long anything that crosses nodes may take to arrive.
const CROSS: Duration = Duration::from_secs(10);

/// The node holding the `default` endpoint's lease, if any.
async fn holder(sql: &Sql) -> Option<String> {
    sql.rows::<(String,)>(
        "SELECT holder FROM webhook_leases WHERE endpoint = 'default'",
        &[],
    )
    .await
    .pop()
    .map(|(holder,)| holder)
}

#[tokio::test]
async fn a_node_killed_mid_request_hands_its_events_on_and_its_sessions_are_reported_lost() {
    let test = "a_node_killed_mid_request_hands_its_events_on_and_its_sessions_are_reported_lost";
    let Some((place, prefix)) = cluster_place(test).await else {
        return;
    };
    let hook = Receiver::start(KEY).await;
    let (url, secret, batch) = (hook.url(), hook.secret(), BATCH.to_string());
    let env = [
        ("WEBHOOK_URL", url.as_str()),
        ("WEBHOOK_SECRET", secret.as_str()),
        ("WEBHOOK_BATCH_MAX", batch.as_str()),
    ];
    // C first: its sender takes the endpoint's lease before the others start.
    let c = node_with(&place, &prefix, "node-c", &nats_url(), &env).await;
    let sql = Sql::open(&place).await;
    eventually(CROSS, "node-c holding the lease", async || {
        holder(&sql).await.as_deref() == Some("node-c")
    })
    .await;
    let a = node_with(&place, &prefix, "node-a", &nats_url(), &env).await;
    let b = node_with(&place, &prefix, "node-b", &nats_url(), &env).await;

    let (mut alice, _) = connect(&a, "alice", "USER").await;
    let (_bob, _) = connect(&b, "bob", "USER").await;
    let (carol, _) = connect(&c, "carol", "USER").await;
    let (_dave_a, _) = connect(&a, "dave", "USER").await;
    let (dave_c, _) = connect(&c, "dave", "USER").await;
    eventually(CROSS, "the five sessions reported", async || {
        let events = seen(&hook, true);
        events
            .iter()
            .filter(|e| e["type"] == "session.opened")
            .count()
            == 5
    })
    .await;

    // The endpoint holds C's next request open: erin's arrival on B makes one.
    hook.slow_next(1, HOLD);
    let before = hook.requests().len();
    let (_erin, _) = connect(&b, "erin", "USER").await;
    let held = eventually(CROSS, "C's request with erin's arrival", async || {
        hook.requests().get(before).cloned()
    })
    .await;
    assert!(
        held.events()
            .iter()
            .any(|e| is(e, "session.opened", "erin")),
        "{held:?}"
    );
    assert_eq!(holder(&sql).await.as_deref(), Some("node-c"));

    c.kill();
    drop((carol, dave_c));
    // While nobody sends: C is declared lost, alice leaves.
    presence(&mut alice, "user-disconnected", "carol").await;
    alice.close().await;

    let done = |events: &[Value]| {
        let closed = |user: &str| {
            events
                .iter()
                .any(|e| is(e, "session.closed", user) && e["data"]["reason"] == "node_lost")
        };
        closed("carol")
            && closed("dave")
            && events.iter().any(|e| is(e, "user.offline", "carol"))
            && events.iter().any(|e| is(e, "user.offline", "alice"))
    };
    let events = eventually(TAKEN_OVER, "the rest sent by another node", async || {
        let events = seen(&hook, true);
        done(&events).then_some(events)
    })
    .await;
    let ids = all_sent(&sql, "default", &hook).await;
    let taken: HashSet<i64> = events.iter().filter_map(|e| e["id"].as_i64()).collect();
    assert_eq!(taken, ids.iter().copied().collect(), "every event arrived");
    let new_holder = holder(&sql).await;
    assert!(
        matches!(new_holder.as_deref(), Some("node-a" | "node-b")),
        "{new_holder:?}"
    );

    // Each id once, but for the request C had under way (its events went again).
    let mut copies: HashMap<i64, usize> = HashMap::new();
    for request in hook.requests().iter().filter(|r| r.signed) {
        for id in request.event_ids() {
            *copies.entry(id).or_default() += 1;
        }
    }
    let twice: HashSet<i64> = copies
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    let in_flight: HashSet<i64> = held.event_ids().into_iter().collect();
    assert!(
        twice.is_subset(&in_flight) && twice.len() <= BATCH,
        "seen twice: {twice:?}; C's last request: {in_flight:?}"
    );
    assert!(
        copies.values().all(|n| *n <= 2),
        "no id more than twice: {copies:?}"
    );
    // Ids are handed out in commit order across the nodes: with the copies dropped, the
    // endpoint heard them in increasing order.
    let mut first_seen: Vec<i64> = Vec::new();
    for request in hook.requests().iter().filter(|r| r.signed) {
        for id in request.event_ids() {
            if !first_seen.contains(&id) {
                first_seen.push(id);
            }
        }
    }
    assert!(
        first_seen.windows(2).all(|w| w[0] < w[1]),
        "in id order: {first_seen:?}"
    );
    assert_eq!(
        first_seen.first().copied().zip(first_seen.last().copied()),
        Some((1, first_seen.len() as i64)),
        "ids without holes: {first_seen:?}"
    );

    // C's sessions are reported lost; dave, still on A, stays online.
    let of = |kind: &str, user: &str| -> Vec<&Value> {
        events.iter().filter(|e| is(e, kind, user)).collect()
    };
    let carol_closed = of("session.closed", "carol");
    assert_eq!(carol_closed.len(), 1, "{events:#?}");
    assert_eq!(carol_closed[0]["data"]["reason"], "node_lost");
    assert_eq!(carol_closed[0]["data"]["node"], "node-c");
    let carol_offline = of("user.offline", "carol");
    assert_eq!(carol_offline.len(), 1, "{events:#?}");
    assert_eq!(carol_offline[0]["data"]["reason"], "node_lost");
    let dave_closed = of("session.closed", "dave");
    assert_eq!(dave_closed.len(), 1, "{events:#?}");
    assert_eq!(dave_closed[0]["data"]["node"], "node-c");
    assert!(of("user.offline", "dave").is_empty(), "{events:#?}");
    assert_eq!(of("user.online", "dave").len(), 1, "{events:#?}");
    for user in ["bob", "erin"] {
        assert!(of("session.closed", user).is_empty(), "{events:#?}");
    }
    check_requests(&hook);
    drop((a, b, place));
}
