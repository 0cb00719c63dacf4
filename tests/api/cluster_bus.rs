//! Three gateways as one (`docs/protocol.md` section 13): the real binary three times on one
//! PostgreSQL database and one NATS server, each node with its own `NODE_ID` and the test with a
//! subject prefix of its own. Clients on different nodes must see what clients of one gateway see:
//! presence, active users and stats over the whole cluster, broadcasts, private messages and the
//! offline queue, rooms, REST notifications and kicks, one increasing id sequence that every node
//! delivers in order, and, when a node is killed, its users leaving presence, its sessions closed
//! as `node_lost` and no acknowledged message lost.
//!
//! A node hears the others over NATS, or from PostgreSQL within about a second when a bus
//! message is lost: every cross-node wait below is bounded ([`CROSS`]), never a sleep. Each
//! test skips loudly when PostgreSQL or NATS is unreachable (and fails with `CI=true`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::helpers::*;

/// `NODE_TIMEOUT_SECS` of every node: how long a silent node lasts before the others declare
/// it lost.
pub(crate) const NODE_TIMEOUT_SECS: u64 = 2;
/// How long anything that crosses nodes may take to arrive.
const CROSS: Duration = Duration::from_secs(10);
/// How long "this does not arrive" is watched for on a connection, where no later event of
/// the same origin can stand as a fence.
const ABSENT: Duration = Duration::from_millis(1500);

/// An event as read: `(name, data)`.
pub(crate) type Event = (String, Value);

/// Three nodes on one fresh database and one subject prefix of their own.
struct Cluster {
    /// Dropped last: the database goes once the nodes are killed.
    place: Place,
    a: BinaryServer,
    b: BinaryServer,
    c: BinaryServer,
}

/// Starts `node-a`, `node-b` and `node-c`; `None` (after a loud SKIPPED line) when NATS or
/// PostgreSQL is unreachable outside CI.
async fn cluster(test: &str) -> Option<Cluster> {
    let (place, prefix) = cluster_place(test).await?;
    // One after the other: the first applies the migrations.
    let a = node(&place, &prefix, "node-a").await;
    let b = node(&place, &prefix, "node-b").await;
    let c = node(&place, &prefix, "node-c").await;
    Some(Cluster { place, a, b, c })
}

/// A fresh PostgreSQL database and a NATS subject prefix of the test's own; `None` (after a
/// loud SKIPPED line) when NATS or PostgreSQL is unreachable outside CI.
pub(crate) async fn cluster_place(test: &str) -> Option<(Place, String)> {
    if !nats_reachable(test) {
        return None;
    }
    let (place, _) = Place::fresh(Backend::Postgres, test).await?;
    Some((place, subject_prefix()))
}

/// A NATS subject prefix of the test's own.
fn subject_prefix() -> String {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).expect("random bytes");
    format!("sb_test_{:016x}", u64::from_le_bytes(random))
}

/// One cluster node (rate limits out of the way: the tests pipeline hundreds of messages).
async fn node(place: &Place, prefix: &str, node_id: &str) -> BinaryServer {
    node_via(place, prefix, node_id, &nats_url()).await
}

/// [`node`], reaching NATS at `nats`.
pub(crate) async fn node_via(
    place: &Place,
    prefix: &str,
    node_id: &str,
    nats: &str,
) -> BinaryServer {
    node_with(place, prefix, node_id, nats, &[]).await
}

/// [`node_via`] with more settings.
pub(crate) async fn node_with(
    place: &Place,
    prefix: &str,
    node_id: &str,
    nats: &str,
    more: &[(&str, &str)],
) -> BinaryServer {
    let timeout = NODE_TIMEOUT_SECS.to_string();
    let mut env = vec![
        ("NATS_URL", nats),
        ("NATS_SUBJECT_PREFIX", prefix),
        ("NODE_ID", node_id),
        ("NODE_TIMEOUT_SECS", timeout.as_str()),
        ("RATE_LIMIT_PER_SEC", "100000"),
        ("RATE_LIMIT_BURST", "100000"),
    ];
    env.extend_from_slice(more);
    BinaryServer::start_at(place, &env).await
}

/// Connects to `node` as `user` with `role` and reads the `connected` frame.
pub(crate) async fn connect(node: &BinaryServer, user: &str, role: &str) -> (WsClient, Value) {
    let mut client = node.user_with_role(user, role).await;
    let connected = client.expect("connected").await;
    (client, connected)
}

/// Reads events until one satisfies `want`, for at most `bound`; returns its data and the
/// events read before it. Fails, listing what it read, when none does.
async fn until(
    client: &mut WsClient,
    what: &str,
    bound: Duration,
    want: impl Fn(&str, &Value) -> bool,
) -> (Value, Vec<Event>) {
    let deadline = Instant::now() + bound;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.next_event_within(left).await {
            Ok(Some((name, data))) if want(&name, &data) => return (data, before),
            Ok(Some(event)) => before.push(event),
            Ok(None) => panic!("no {what} within {bound:?}; read instead: {before:#?}"),
            Err(end) => panic!("connection {end} while waiting for {what}; read: {before:#?}"),
        }
    }
}

/// Waits (up to [`CROSS`]) for the event `name`.
async fn next_named(client: &mut WsClient, name: &str) -> (Value, Vec<Event>) {
    until(client, name, CROSS, |n, _| n == name).await
}

/// Waits (up to [`CROSS`]) for the event `name` carrying the stored message `id`.
pub(crate) async fn message(client: &mut WsClient, name: &str, id: &Value) -> (Value, Vec<Event>) {
    let what = format!("{name} {id}");
    until(client, &what, CROSS, |n, d| n == name && &d["id"] == id).await
}

/// Whether `event` is the presence event `name` about `user`.
fn is_presence(event: &Event, name: &str, user: &str) -> bool {
    event.0 == name && event.1["user"]["userId"] == user
}

/// Waits (up to [`CROSS`]) for the presence event `name` about `user`.
pub(crate) async fn presence(client: &mut WsClient, name: &str, user: &str) -> (Value, Vec<Event>) {
    let what = format!("{name} for {user}");
    until(client, &what, CROSS, |n, d| {
        n == name && d["user"]["userId"] == user
    })
    .await
}

/// Every event that arrives within `window`; the connection must stay open.
async fn during(client: &mut WsClient, window: Duration) -> Vec<Event> {
    let deadline = Instant::now() + window;
    let mut read = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.next_event_within(left).await {
            Ok(Some(event)) => read.push(event),
            Ok(None) => return read,
            Err(end) => panic!("connection {end}; read: {read:#?}"),
        }
    }
}

/// Sends `event` (no data) and waits for `reply`; returns it and the events read before it.
async fn ask(client: &mut WsClient, event: &str, reply: &str) -> (Value, Vec<Event>) {
    client.emit(event, Value::Null).await;
    next_named(client, reply).await
}

/// `(userId, sessions)` of a user list, sorted, after checking that it names each user once
/// and that `count` (when given) counts them.
fn listed(users: &Value, count: &Value) -> Vec<(String, u64)> {
    let users = users.as_array().expect("a list of users");
    let mut pairs: Vec<(String, u64)> = users
        .iter()
        .map(|u| {
            let id = u["userId"].as_str().expect("userId").to_owned();
            let sessions = u["sessions"].as_u64().expect("sessions");
            (id, sessions)
        })
        .collect();
    pairs.sort();
    let distinct: BTreeSet<&String> = pairs.iter().map(|(id, _)| id).collect();
    assert_eq!(
        distinct.len(),
        pairs.len(),
        "each user listed once: {users:?}"
    );
    if !count.is_null() {
        assert_eq!(
            count,
            &json!(pairs.len()),
            "count counts the list: {users:?}"
        );
    }
    pairs
}

fn owned(expected: &[(&str, u64)]) -> Vec<(String, u64)> {
    let mut pairs: Vec<(String, u64)> = expected
        .iter()
        .map(|(u, s)| ((*u).to_owned(), *s))
        .collect();
    pairs.sort();
    pairs
}

/// Asks `client`'s node for its active users until they are `expected` (`(userId,
/// sessions)`), within [`CROSS`]; every answer on the way must list each user once. Returns
/// the other events read meanwhile.
async fn converge(client: &mut WsClient, expected: &[(&str, u64)]) -> Vec<Event> {
    let expected = owned(expected);
    let what = format!("active users being {expected:?}");
    let mut read = Vec::new();
    eventually(CROSS, &what, async || {
        let (list, before) = ask(client, "get-active-users", "active-users").await;
        read.extend(before);
        listed(&list["users"], &list["count"]) == expected
    })
    .await;
    read
}

/// Like [`converge`], over REST (`GET /websocket/active-users`) on `node`.
pub(crate) async fn converge_rest(node: &BinaryServer, expected: &[(&str, u64)]) {
    let expected = &owned(expected);
    let what = format!("active users on {} being {expected:?}", node.addr);
    eventually(CROSS, &what, || async move {
        let (status, body) = send(rest(node, Method::GET, "/websocket/active-users")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        listed(&body["users"], &body["count"]) == *expected
    })
    .await;
}

/// A REST request to `node` as the admin `root`.
pub(crate) fn rest(node: &BinaryServer, method: Method, path: &str) -> reqwest::RequestBuilder {
    let token = sign(
        Algorithm::HS256,
        &json!({"sub": "root", "username": "root", "role": "ADMIN", "exp": in_an_hour()}),
    );
    reqwest::Client::new()
        .request(method, format!("http://{}{path}", node.addr))
        .bearer_auth(token)
        .timeout(WAIT)
}

pub(crate) async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("response");
    let status = response.status();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON body: {text}"));
    (status, body)
}

/// A POST of `body` to `node` that must succeed; returns the answer.
async fn post(node: &BinaryServer, path: &str, body: Value) -> Value {
    let (status, answer) = send(rest(node, Method::POST, path).json(&body)).await;
    assert_eq!(status, StatusCode::OK, "{path}: {answer}");
    answer
}

/// A successful ack's message id.
pub(crate) fn acked_id(ack: &Value) -> u64 {
    assert_eq!(ack["ok"], true, "{ack}");
    ack["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("an id in {ack}"))
}

/// Whether any of `events` is a `name` carrying the message id `id`.
fn carries(events: &[Event], name: &str, id: &Value) -> bool {
    events.iter().any(|(n, d)| n == name && &d["id"] == id)
}

fn user_ids(events: &[Event], name: &str) -> Vec<String> {
    events
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, d)| d["user"]["userId"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn presence_active_users_and_stats_span_the_cluster() {
    let test = "presence_active_users_and_stats_span_the_cluster";
    let Some(cluster) = cluster(test).await else {
        return;
    };
    let Cluster { a, b, c, .. } = &cluster;
    let (mut bob, _) = connect(b, "bob", "USER").await;
    let (mut carol, _) = connect(c, "carol", "USER").await;
    presence(&mut bob, "user-connected", "carol").await;
    converge(&mut carol, &[("bob", 1), ("carol", 1)]).await;

    // Alice's first connection, on A: news on B and on C.
    let (mut alice_a, _) = connect(a, "alice", "USER").await;
    for watcher in [&mut bob, &mut carol] {
        let (joined, _) = presence(watcher, "user-connected", "alice").await;
        assert_eq!(joined["user"]["sessions"], 1, "{joined}");
        assert_eq!(joined["activeUsersCount"], 3, "bob, carol, alice: {joined}");
    }

    // Her second, on C: C counts both; nobody is told she arrived again.
    let (alice_c, connected) = connect(c, "alice", "USER").await;
    assert_eq!(connected["user"]["sessions"], 2, "{connected}");
    // Dave, after her on C: bob hears of him, and of nothing about alice before him.
    let (_dave, _) = connect(c, "dave", "USER").await;
    let (joined, before) = presence(&mut bob, "user-connected", "dave").await;
    assert_eq!(joined["activeUsersCount"], 4, "{joined}");
    assert!(
        !before
            .iter()
            .any(|e| is_presence(e, "user-connected", "alice")),
        "alice's second connection was announced: {before:?}"
    );

    // Every node lists each user once, alice with her two sessions.
    let everyone = [("alice", 2), ("bob", 1), ("carol", 1), ("dave", 1)];
    for client in [&mut alice_a, &mut bob, &mut carol] {
        let read = converge(client, &everyone).await;
        assert!(
            !read
                .iter()
                .any(|e| is_presence(e, "user-connected", "alice")),
            "alice announced twice: {read:?}"
        );
    }
    converge_rest(c, &everyone).await;
    // Stats on B count her sessions on A and C (history written by those nodes: asked
    // until it is there).
    eventually(
        CROSS,
        "alice's two sessions counted in B's stats",
        async || {
            let (stats, _) = ask(&mut bob, "get-users-stats", "users-stats").await;
            assert_eq!(stats["totalUsers"], 4, "{stats}");
            assert_eq!(stats["usersByRole"], json!({"USER": 4}), "{stats}");
            let times = stats["connectionTimes"]
                .as_array()
                .expect("connectionTimes");
            let ids: BTreeSet<&str> = times
                .iter()
                .map(|t| t["userId"].as_str().expect("userId"))
                .collect();
            assert_eq!(ids.len(), times.len(), "each user once: {stats}");
            assert_eq!(
                ids,
                BTreeSet::from(["alice", "bob", "carol", "dave"]),
                "{stats}"
            );
            let alice = times.iter().find(|t| t["userId"] == "alice");
            alice.is_some_and(|t| t["sessionsCount"] == 2)
        },
    )
    .await;

    // Her connection on A closes: she is still online (on C), so no departure.
    alice_a.close().await;
    let still = [("alice", 1), ("bob", 1), ("carol", 1), ("dave", 1)];
    let mut read = converge(&mut bob, &still).await;
    read.extend(converge(&mut carol, &still).await);
    read.extend(during(&mut bob, ABSENT).await);
    assert!(
        !read
            .iter()
            .any(|e| is_presence(e, "user-disconnected", "alice")),
        "alice left while connected on C: {read:?}"
    );

    // Her last connection closes: now she leaves, on every node.
    alice_c.close().await;
    for watcher in [&mut bob, &mut carol] {
        let (left, _) = presence(watcher, "user-disconnected", "alice").await;
        assert_eq!(left["user"]["sessions"], 0, "{left}");
        assert_eq!(left["activeUsersCount"], 3, "{left}");
    }
    converge_rest(a, &[("bob", 1), ("carol", 1), ("dave", 1)]).await;
}

#[tokio::test]
async fn broadcasts_private_messages_and_the_offline_queue_cross_nodes() {
    let test = "broadcasts_private_messages_and_the_offline_queue_cross_nodes";
    let Some(cluster) = cluster(test).await else {
        return;
    };
    let Cluster { a, b, c, .. } = &cluster;
    let (mut alice, _) = connect(a, "alice", "USER").await;
    let (mut bob, _) = connect(b, "bob", "USER").await;
    let (mut carol, _) = connect(c, "carol", "USER").await;
    // Dave is known (he connected once, on A, as C saw) and offline.
    let (dave, _) = connect(a, "dave", "USER").await;
    presence(&mut carol, "user-connected", "dave").await;
    dave.close().await;
    presence(&mut carol, "user-disconnected", "dave").await;
    let everyone = [("alice", 1), ("bob", 1), ("carol", 1)];
    for client in [&mut alice, &mut bob, &mut carol] {
        converge(client, &everyone).await;
    }

    // A broadcast from A reaches B and C.
    let hello = alice.say(json!({"message": "hello cluster"}), 1).await;
    let hello_id = json!(acked_id(&hello));
    assert_eq!(hello["queued"], false, "{hello}");
    for client in [&mut bob, &mut carol] {
        let (msg, _) = message(client, "broadcast-message", &hello_id).await;
        assert_eq!(msg["message"], "hello cluster");
        assert_eq!(msg["from"]["userId"], "alice");
    }

    // A private message from A reaches its recipient on C, live.
    let psst = alice
        .say(json!({"message": "psst", "to": "carol"}), 2)
        .await;
    let psst_id = json!(acked_id(&psst));
    assert_eq!(psst["queued"], false, "carol is online, on C: {psst}");
    let (msg, _) = message(&mut carol, "private-message", &psst_id).await;
    assert_eq!(msg["message"], "psst");
    assert_eq!(msg["from"]["userId"], "alice");

    // One from C reaches each connection of its recipient: on B and on A.
    let (mut bob_a, _) = connect(a, "bob", "USER").await;
    converge(&mut carol, &[("alice", 1), ("bob", 2), ("carol", 1)]).await;
    let both = carol
        .say(json!({"message": "to both of you", "to": "bob"}), 3)
        .await;
    let both_id = json!(acked_id(&both));
    assert_eq!(both["queued"], false, "{both}");
    for client in [&mut bob, &mut bob_a] {
        let (msg, before) = message(client, "private-message", &both_id).await;
        assert_eq!(msg["message"], "to both of you");
        assert_eq!(msg["from"]["userId"], "carol");
        // Ids only grow, so alice's earlier message to carol would have come first.
        assert!(
            !carries(&before, "private-message", &psst_id),
            "bob got alice's message to carol: {before:?}"
        );
    }
    // Nobody else gets it, nor their own broadcast: carol's broadcast is alice's fence.
    let fence = json!(acked_id(&carol.say(json!({"message": "fence"}), 4).await));
    let (_, before) = message(&mut alice, "broadcast-message", &fence).await;
    assert!(
        !carries(&before, "private-message", &both_id),
        "alice got carol's message to bob: {before:?}"
    );
    assert!(
        !carries(&before, "broadcast-message", &hello_id),
        "alice got her own broadcast: {before:?}"
    );

    // To dave, offline: queued, then delivered once he connects, on B.
    let queued = carol
        .say(json!({"message": "while you were out", "to": "dave"}), 5)
        .await;
    let queued_id = json!(acked_id(&queued));
    assert_eq!(queued["queued"], true, "dave is offline: {queued}");
    let (mut dave, _) = connect(b, "dave", "USER").await;
    let (msg, _) = message(&mut dave, "private-message", &queued_id).await;
    assert_eq!(msg["message"], "while you were out");
    assert_eq!(msg["from"]["userId"], "carol");
    // Stats flush B's store: the delivery is recorded before he leaves.
    ask(&mut dave, "get-users-stats", "users-stats").await;
    dave.close().await;
    presence(&mut carol, "user-disconnected", "dave").await;

    // Reconnecting on C, he does not get it again...
    let (mut dave, _) = connect(c, "dave", "USER").await;
    let read = during(&mut dave, ABSENT).await;
    assert!(
        !carries(&read, "private-message", &queued_id),
        "the queued message came twice: {read:?}"
    );
    // ...though his connection works: a new one reaches him, and it alone.
    let live = alice
        .say(json!({"message": "welcome back", "to": "dave"}), 6)
        .await;
    let live_id = json!(acked_id(&live));
    let (msg, before) = message(&mut dave, "private-message", &live_id).await;
    assert_eq!(msg["message"], "welcome back");
    assert!(
        !carries(&before, "private-message", &queued_id),
        "the queued message came twice: {before:?}"
    );
}

#[tokio::test]
async fn room_membership_and_room_messages_span_the_cluster() {
    let test = "room_membership_and_room_messages_span_the_cluster";
    let Some(cluster) = cluster(test).await else {
        return;
    };
    let Cluster { a, b, c, .. } = &cluster;
    let (mut alice, _) = connect(a, "alice", "USER").await;
    let (mut bob_a, _) = connect(a, "bob", "USER").await;
    let (mut bob_b, _) = connect(b, "bob", "USER").await;
    let (mut carol, _) = connect(c, "carol", "USER").await;
    let (mut dave, _) = connect(c, "dave", "USER").await;
    let everyone = [("alice", 1), ("bob", 2), ("carol", 1), ("dave", 1)];
    for client in [&mut alice, &mut bob_b, &mut carol] {
        converge(client, &everyone).await;
    }

    alice.emit_ack("join-room", json!({"room": "ops"}), 1).await;
    assert_eq!(next_named(&mut alice, "joined-room").await.0["room"], "ops");
    assert_eq!(alice.wait_for_ack(1).await["ok"], true);

    // Bob joins on A: alice hears it on A, and so does his own connection on B.
    bob_a.emit("join-room", json!({"room": "ops"})).await;
    next_named(&mut bob_a, "joined-room").await;
    for client in [&mut alice, &mut bob_b] {
        let (note, _) = next_named(client, "user-joined-room").await;
        assert_eq!(note["room"], "ops", "{note}");
        assert_eq!(note["user"]["userId"], "bob", "{note}");
    }
    // Dave joins on C: members on A and B hear it.
    dave.emit("join-room", json!({"room": "ops"})).await;
    next_named(&mut dave, "joined-room").await;
    for client in [&mut alice, &mut bob_a, &mut bob_b] {
        let (note, _) = until(client, "dave's user-joined-room", CROSS, |n, d| {
            n == "user-joined-room" && d["user"]["userId"] == "dave"
        })
        .await;
        assert_eq!(note["room"], "ops", "{note}");
    }

    // A room message from C reaches every member's connections, on A and on B.
    dave.emit_ack(
        "room-message",
        json!({"room": "ops", "message": "from C"}),
        2,
    )
    .await;
    let from_c = json!(acked_id(&dave.wait_for_ack(2).await));
    for client in [&mut alice, &mut bob_a, &mut bob_b] {
        let (msg, _) = message(client, "room-message", &from_c).await;
        assert_eq!(msg["room"], "ops");
        assert_eq!(msg["message"], "from C");
        assert_eq!(msg["from"]["userId"], "dave");
    }
    // Carol, on C with dave, is not a member: she cannot send to it...
    carol
        .emit_ack(
            "room-message",
            json!({"room": "ops", "message": "let me in"}),
            3,
        )
        .await;
    let (error, _) = next_named(&mut carol, "error").await;
    assert_eq!(error["code"], "not_member", "{error}");
    assert_eq!(carol.wait_for_ack(3).await["ok"], false);

    // Alice's new connection, on C, is back in the room.
    let (mut alice_c, connected) = connect(c, "alice", "USER").await;
    assert_eq!(connected["rooms"], json!(["ops"]), "{connected}");

    // Bob leaves on B: alice (A) and dave (C) hear it, and he hears the room no more.
    bob_b.emit("leave-room", json!({"room": "ops"})).await;
    assert_eq!(next_named(&mut bob_b, "left-room").await.0["room"], "ops");
    for client in [&mut alice, &mut dave] {
        let (note, _) = until(client, "bob's user-left-room", CROSS, |n, d| {
            n == "user-left-room" && d["user"]["userId"] == "bob"
        })
        .await;
        assert_eq!(note["room"], "ops", "{note}");
    }
    dave.emit_ack(
        "room-message",
        json!({"room": "ops", "message": "bob has left"}),
        4,
    )
    .await;
    let after = json!(acked_id(&dave.wait_for_ack(4).await));
    for client in [&mut alice, &mut alice_c] {
        let (msg, _) = message(client, "room-message", &after).await;
        assert_eq!(msg["message"], "bob has left");
    }
    // Dave's broadcast after it fences the non-members: no room message before it.
    let fence = json!(acked_id(&dave.say(json!({"message": "fence"}), 5).await));
    let (_, before) = message(&mut carol, "broadcast-message", &fence).await;
    assert!(
        !before.iter().any(|(n, _)| n == "room-message"),
        "carol heard the room: {before:?}"
    );
    for client in [&mut bob_a, &mut bob_b] {
        let (_, before) = message(client, "broadcast-message", &fence).await;
        assert!(
            !carries(&before, "room-message", &after),
            "bob heard the room after leaving it: {before:?}"
        );
    }
}

#[tokio::test]
async fn rest_notifications_and_kicks_reach_every_node() {
    let test = "rest_notifications_and_kicks_reach_every_node";
    let Some(cluster) = cluster(test).await else {
        return;
    };
    let Cluster { a, b, c, .. } = &cluster;
    let (mut ann, _) = connect(a, "ann", "ADMIN").await;
    let (mut uma, _) = connect(b, "uma", "USER").await;
    let (mut bob_b, _) = connect(b, "bob", "USER").await;
    let (mut bob_c, _) = connect(c, "bob", "USER").await;
    let everyone = [("ann", 1), ("bob", 2), ("uma", 1)];
    for client in [&mut ann, &mut uma, &mut bob_c] {
        converge(client, &everyone).await;
    }

    // A notification posted on A reaches bob on B and on C.
    let sent = post(
        a,
        "/websocket/send-notification",
        json!({"userId": "bob", "message": "report ready", "type": "success"}),
    )
    .await;
    assert_eq!(sent["success"], true, "{sent}");
    assert_eq!(sent["queued"], false, "bob is online: {sent}");
    for client in [&mut bob_b, &mut bob_c] {
        let (n, _) = message(client, "notification", &sent["id"]).await;
        assert_eq!(n["message"], "report ready");
        assert_eq!(n["type"], "success");
        assert_eq!(n["from"]["userId"], "root");
    }

    // A broadcast posted on B reaches every connection on every node.
    let everyone_note = post(
        b,
        "/websocket/broadcast",
        json!({"message": "maintenance at 10", "type": "warning"}),
    )
    .await;
    assert_eq!(everyone_note["success"], true, "{everyone_note}");
    for client in [&mut ann, &mut uma, &mut bob_b, &mut bob_c] {
        let (n, before) = message(client, "broadcast-notification", &everyone_note["id"]).await;
        assert_eq!(n["message"], "maintenance at 10");
        assert_eq!(n["type"], "warning");
        assert!(
            !before.iter().any(|(n, _)| n == "notification"),
            "bob's notification went elsewhere: {before:?}"
        );
    }

    // A role notification posted on C reaches the admin on A, and no user.
    let admins = post(
        c,
        "/websocket/send-to-role",
        json!({"role": "ADMIN", "message": "admins only"}),
    )
    .await;
    let (n, _) = message(&mut ann, "role-notification", &admins["id"]).await;
    assert_eq!(n["targetRole"], "ADMIN");
    assert_eq!(n["message"], "admins only");
    let fence = post(c, "/websocket/broadcast", json!({"message": "fence"})).await;
    for client in [&mut uma, &mut bob_b, &mut bob_c] {
        let (_, before) = message(client, "broadcast-notification", &fence["id"]).await;
        assert!(
            !before.iter().any(|(n, _)| n == "role-notification"),
            "a USER got the admins' notice: {before:?}"
        );
    }

    // One for a user never seen, posted on C: queued, delivered when she connects on A.
    let waiting = post(
        c,
        "/websocket/send-notification",
        json!({"userId": "zoe", "message": "welcome"}),
    )
    .await;
    assert_eq!(waiting["queued"], true, "{waiting}");
    assert_eq!(waiting["delivered"], 0, "{waiting}");
    let (mut zoe, _) = connect(a, "zoe", "USER").await;
    let (n, _) = message(&mut zoe, "notification", &waiting["id"]).await;
    assert_eq!(n["message"], "welcome");

    // The kick endpoint on A closes bob's connections on B and on C.
    let (status, body) = send(rest(a, Method::POST, "/websocket/users/bob/disconnect")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for client in [&mut bob_b, &mut bob_c] {
        let close = client.expect_close().await.expect("a close frame");
        assert_eq!(u16::from(close.code), 1008, "{close:?}");
    }
    let (left, _) = presence(&mut ann, "user-disconnected", "bob").await;
    assert_eq!(left["user"]["sessions"], 0, "{left}");
    converge(&mut uma, &[("ann", 1), ("uma", 1), ("zoe", 1)]).await;
}

/// Messages per sender in the ordering test.
const BURST: u64 = 200;
/// Frames a sender has out before it reads an ack.
const WINDOW: u64 = 32;

/// Sends [`BURST`] broadcasts `"{tag}-{n}"` with acks 1..=BURST, pipelined; returns the ids
/// acknowledged (in send order) and the broadcast ids it received meanwhile.
async fn burst(client: &mut WsClient, tag: &str) -> (Vec<u64>, Vec<u64>) {
    let mut next = 1;
    let mut acked = Vec::new();
    let mut heard = Vec::new();
    while (acked.len() as u64) < BURST {
        while next <= BURST && next - 1 - (acked.len() as u64) < WINDOW {
            client
                .emit_ack(
                    "send-message",
                    json!({"message": format!("{tag}-{next}")}),
                    next,
                )
                .await;
            next += 1;
        }
        let (name, data) = client.next_event().await;
        match name.as_str() {
            "ack" => {
                assert_eq!(data["ack"], acked.len() as u64 + 1, "acks in order: {data}");
                acked.push(acked_id(&data));
            }
            "broadcast-message" => heard.push(data["id"].as_u64().expect("an id")),
            _ => {}
        }
    }
    (acked, heard)
}

/// The `(id, text)` of the first `n` broadcasts `client` receives, within 30 s.
async fn collect(client: &mut WsClient, n: usize) -> Vec<(u64, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.next_event_within(left).await {
            Ok(Some((name, data))) if name == "broadcast-message" => got.push((
                data["id"].as_u64().expect("an id"),
                data["message"].as_str().expect("a text").to_owned(),
            )),
            Ok(Some(_)) => {}
            Ok(None) => panic!("{} of {n} broadcasts within 30 s", got.len()),
            Err(end) => panic!("receiver's connection {end} after {}", got.len()),
        }
    }
    got
}

/// The ids of the stored messages replayed up to `sync-complete`, and that event.
async fn replayed(client: &mut WsClient) -> (Vec<u64>, Value) {
    let mut ids = Vec::new();
    loop {
        let (name, data) = client.next_event().await;
        match name.as_str() {
            "sync-complete" => return (ids, data),
            "broadcast-message" => ids.push(data["id"].as_u64().expect("an id")),
            _ => {}
        }
    }
}

/// The ids `client` gets in its catch-up (up to `sync-complete`, which is returned), then
/// live, until it has `n`. A node's catch-up reads up to what that node has delivered, which
/// may lag behind what another node acknowledged a moment ago; the rest follows live, and
/// together they are what the protocol promises: everything, once, in order.
async fn caught_up(client: &mut WsClient, n: usize) -> (Vec<u64>, Value) {
    let (mut ids, done) = replayed(client).await;
    assert_eq!(done["count"], ids.len(), "{done}");
    if let Some(last) = ids.last() {
        assert_eq!(done["lastMessageId"], json!(last), "{done}");
    }
    let rest = collect(client, n.saturating_sub(ids.len())).await;
    ids.extend(rest.iter().map(|(id, _)| *id));
    (ids, done)
}

fn strictly_increasing(ids: &[u64]) -> bool {
    ids.windows(2).all(|w| w[0] < w[1])
}

#[tokio::test]
async fn ids_are_one_sequence_delivered_in_order_on_every_node() {
    let test = "ids_are_one_sequence_delivered_in_order_on_every_node";
    let Some(cluster) = cluster(test).await else {
        return;
    };
    let Cluster { a, b, c, .. } = &cluster;
    let (mut ana, _) = connect(a, "ana", "USER").await;
    let (mut ben, _) = connect(b, "ben", "USER").await;
    let (mut cat, _) = connect(c, "cat", "USER").await;
    converge(&mut cat, &[("ana", 1), ("ben", 1), ("cat", 1)]).await;

    // Two senders on A and B at once; the receiver on C reads as they go.
    let ((from_a, heard_a), (from_b, heard_b), live) = tokio::join!(
        burst(&mut ana, "a"),
        burst(&mut ben, "b"),
        collect(&mut cat, 2 * BURST as usize),
    );

    // Each sender's messages got growing ids in the order it sent them.
    assert!(strictly_increasing(&from_a), "{from_a:?}");
    assert!(strictly_increasing(&from_b), "{from_b:?}");
    let mut texts = BTreeMap::new();
    for (tag, ids) in [("a", &from_a), ("b", &from_b)] {
        for (n, id) in ids.iter().enumerate() {
            let previous = texts.insert(*id, format!("{tag}-{}", n + 1));
            assert!(previous.is_none(), "id {id} acknowledged twice");
        }
    }
    // The receiver got every acknowledged id, once, in increasing order, with its text.
    let live_ids: Vec<u64> = live.iter().map(|(id, _)| *id).collect();
    assert!(
        strictly_increasing(&live_ids),
        "delivered out of order: {live_ids:?}"
    );
    let acked: Vec<u64> = texts.keys().copied().collect();
    assert_eq!(live_ids, acked, "every acknowledged id, and only those");
    for (id, text) in &live {
        assert_eq!(Some(text), texts.get(id), "the text of {id}");
    }
    // The senders heard each other in increasing order too.
    assert!(strictly_increasing(&heard_a), "A delivered {heard_a:?}");
    assert!(strictly_increasing(&heard_b), "B delivered {heard_b:?}");

    // A newcomer on A catching up from 0 gets them all, in the same order.
    let mut late = a.user("late", "&lastMessageId=0").await;
    late.expect("connected").await;
    let (ids, done) = caught_up(&mut late, live_ids.len()).await;
    assert_eq!(ids, live_ids, "the catch-up on A, then live");
    assert_eq!(done["more"], false, "{done}");
    // `sync` from 0 on C, which delivered them all to cat already: the same, all replayed.
    cat.emit("sync", json!({"since": 0})).await;
    let (ids, done) = replayed(&mut cat).await;
    assert_eq!(ids, live_ids, "sync on C");
    assert_eq!(done["count"], live_ids.len(), "{done}");
    // Reconnecting on B from the middle: exactly the second half.
    let middle = live_ids[live_ids.len() / 2 - 1];
    let mut resumed = b.user("cat", &format!("&lastMessageId={middle}")).await;
    resumed.expect("connected").await;
    let (ids, _) = caught_up(&mut resumed, live_ids.len() / 2).await;
    assert_eq!(ids, live_ids[live_ids.len() / 2..], "the rest, from B");
}

/// What a sender task shares: the ids acknowledged so far.
type Acked = Arc<Mutex<Vec<u64>>>;

/// Sends private messages `"{from}-{n}"` to `to`, one at a time, each once the previous is
/// acknowledged, until `stop`. A sender whose node may be killed (`may_die`) ends quietly
/// when its connection does; any other failure fails the test.
async fn keep_sending(
    mut client: WsClient,
    from: &'static str,
    to: &'static str,
    stop: Arc<AtomicBool>,
    acked: Acked,
    may_die: bool,
) {
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let data = json!({"message": format!("{from}-{n}"), "to": to});
        if !client.try_emit_ack("send-message", data, n).await {
            assert!(may_die, "{from} could not send message {n}");
            return;
        }
        loop {
            match client.next_event_within(CROSS).await {
                Ok(Some((name, data))) if name == "ack" && data["ack"] == n => {
                    let id = acked_id(&data);
                    acked.lock().expect("acked ids").push(id);
                    break;
                }
                Ok(Some(_)) => {}
                Ok(None) => panic!("{from}: no ack for message {n} within {CROSS:?}"),
                Err(end) => {
                    assert!(may_die, "{from}'s connection {end} at message {n}");
                    return;
                }
            }
        }
        // The pace: about 100 messages a second per sender.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Records the id of every private message `client` receives, until `stop`.
async fn keep_receiving(mut client: WsClient, stop: Arc<AtomicBool>, received: Acked) {
    while !stop.load(Ordering::SeqCst) {
        match client.next_event_within(Duration::from_millis(100)).await {
            Ok(Some((name, data))) if name == "private-message" => received
                .lock()
                .expect("received ids")
                .push(data["id"].as_u64().expect("an id")),
            Ok(_) => {}
            Err(end) => panic!("the receiver's connection {end}"),
        }
    }
}

fn snapshot(ids: &Acked) -> Vec<u64> {
    ids.lock().expect("ids").clone()
}

/// The rows of the sessions `node_id` opened: `(session_id, user_id, connected_at,
/// disconnected_at, disconnect_reason)`.
type SessionRow = (i64, String, String, Option<String>, Option<String>);

async fn sessions_of(sql: &Sql, node_id: &str) -> Vec<SessionRow> {
    sql.rows(
        "SELECT session_id, user_id, connected_at, disconnected_at, disconnect_reason
         FROM sessions WHERE node_id = $1 ORDER BY session_id",
        &[node_id],
    )
    .await
}

#[tokio::test]
async fn a_killed_node_leaves_presence_its_sessions_close_and_no_acked_message_is_lost() {
    let test = "a_killed_node_leaves_presence_its_sessions_close_and_no_acked_message_is_lost";
    let Some(Cluster { place, a, b, c }) = cluster(test).await else {
        return;
    };
    let (mut wes, _) = connect(&a, "wes", "USER").await;
    let (rex, _) = connect(&a, "rex", "USER").await;
    let (sam, _) = connect(&a, "sam", "USER").await;
    let (mut sue, _) = connect(&b, "sue", "USER").await;
    let (sid, _) = connect(&c, "sid", "USER").await;
    let (_carol, _) = connect(&c, "carol", "USER").await;
    let (_dave, _) = connect(&c, "dave", "USER").await;
    let (_erin_a, _) = connect(&a, "erin", "USER").await;
    let (mut erin_c, _) = connect(&c, "erin", "USER").await;
    let before = [
        ("carol", 1),
        ("dave", 1),
        ("erin", 2),
        ("rex", 1),
        ("sam", 1),
        ("sid", 1),
        ("sue", 1),
        ("wes", 1),
    ];
    // Every node knows every user (rex above all, the recipient) before anyone sends.
    for client in [&mut wes, &mut sue, &mut erin_c] {
        converge(client, &before).await;
    }
    // Stats flush C's store: its session rows are committed before it dies.
    ask(&mut erin_c, "get-users-stats", "users-stats").await;

    // Senders on A, B and C to rex on A.
    let stop = Arc::new(AtomicBool::new(false));
    let stop_receiving = Arc::new(AtomicBool::new(false));
    let received: Acked = Arc::default();
    let receiver = tokio::spawn(keep_receiving(
        rex,
        stop_receiving.clone(),
        received.clone(),
    ));
    let mut senders = Vec::new();
    let mut acked = Vec::new();
    for (client, name, may_die) in [(sam, "sam", false), (sue, "sue", false), (sid, "sid", true)] {
        let ids: Acked = Arc::default();
        acked.push((name, ids.clone()));
        senders.push(tokio::spawn(keep_sending(
            client,
            name,
            "rex",
            stop.clone(),
            ids,
            may_die,
        )));
    }
    eventually(CROSS, "every sender 20 messages under way", || {
        std::future::ready(acked.iter().all(|(_, ids)| snapshot(ids).len() >= 20))
    })
    .await;

    // SIGKILL node C in the middle of it.
    let at_kill: Vec<usize> = acked.iter().map(|(_, ids)| snapshot(ids).len()).collect();
    c.kill();
    let killed = Instant::now();
    let lost_by = killed + Duration::from_secs(NODE_TIMEOUT_SECS + 5);

    // Those only on C leave presence on A; erin, also on A, stays.
    let mut gone = BTreeSet::new();
    let mut read = Vec::new();
    while gone.len() < 3 {
        let left = lost_by.saturating_duration_since(Instant::now());
        match wes.next_event_within(left).await {
            Ok(Some(event)) => {
                if event.0 == "user-disconnected" {
                    let user = event.1["user"]["userId"].as_str().unwrap_or_default();
                    assert!(
                        ["carol", "dave", "sid"].contains(&user),
                        "{user} left: {event:?}"
                    );
                    assert!(gone.insert(user.to_owned()), "{user} left twice");
                }
                read.push(event);
            }
            Ok(None) => panic!(
                "within {NODE_TIMEOUT_SECS} s + 5 s of the kill, only {gone:?} left; read {read:?}"
            ),
            Err(end) => panic!("wes's connection {end}"),
        }
    }
    let after = [("erin", 1), ("rex", 1), ("sam", 1), ("sue", 1), ("wes", 1)];
    let read = converge(&mut wes, &after).await;
    assert!(
        user_ids(&read, "user-disconnected").is_empty(),
        "more departures: {read:?}"
    );
    converge_rest(&b, &after).await;

    // C's open sessions are closed as node_lost; no one else's is closed.
    let sql = Sql::open(&place).await;
    let lost = loop {
        let rows = sessions_of(&sql, "node-c").await;
        if !rows.is_empty() && rows.iter().all(|r| r.4.as_deref() == Some("node_lost")) {
            break rows;
        }
        assert!(
            Instant::now() < lost_by,
            "node-c's sessions within {NODE_TIMEOUT_SECS} s + 5 s of the kill: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let closed_at = Instant::now();
    let users: BTreeSet<&str> = lost.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(
        users,
        BTreeSet::from(["carol", "dave", "erin", "sid"]),
        "{lost:?}"
    );
    for row in &lost {
        let ended = row.3.as_deref().expect("disconnected_at set");
        assert!(ended >= row.2.as_str(), "{row:?}");
    }
    let closed_elsewhere: i64 = sql
        .scalar(
            "SELECT COUNT(*) FROM sessions WHERE node_id <> 'node-c'
             AND (disconnected_at IS NOT NULL OR disconnect_reason IS NOT NULL)",
            &[],
        )
        .await;
    assert_eq!(closed_elsewhere, 0, "live sessions of A and B were closed");

    // A and B kept working after the loss.
    eventually(
        CROSS,
        "A's and B's senders 20 more messages on after the kill",
        || {
            std::future::ready(
                acked[..2]
                    .iter()
                    .zip(&at_kill)
                    .all(|((_, ids), before)| snapshot(ids).len() >= before + 20),
            )
        },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for sender in senders {
        sender.await.expect("a sender ends cleanly");
    }

    // Every acknowledged message is stored...
    let all_acked: BTreeSet<u64> = acked.iter().flat_map(|(_, ids)| snapshot(ids)).collect();
    let stored: Vec<(i64,)> = sql.rows("SELECT message_id FROM messages", &[]).await;
    let stored: BTreeSet<u64> = stored
        .into_iter()
        .map(|(id,)| u64::try_from(id).expect("a positive id"))
        .collect();
    let unstored: Vec<&u64> = all_acked.difference(&stored).collect();
    assert!(
        unstored.is_empty(),
        "acknowledged, not stored: {unstored:?}"
    );
    // ...and reached rex (sid's last ones, committed by C, through PostgreSQL)...
    eventually(CROSS, "every acknowledged message delivered to rex", || {
        let got: BTreeSet<u64> = snapshot(&received).into_iter().collect();
        std::future::ready(all_acked.is_subset(&got))
    })
    .await;
    stop_receiving.store(true, Ordering::SeqCst);
    receiver.await.expect("the receiver ends cleanly");
    // ...in increasing id order, each once.
    let rex_ids = snapshot(&received);
    assert!(
        strictly_increasing(&rex_ids),
        "rex's messages out of order: {rex_ids:?}"
    );

    // C's sessions were closed once: a node-timeout later, they have not changed.
    tokio::time::sleep_until(closed_at + Duration::from_secs(NODE_TIMEOUT_SECS)).await;
    assert_eq!(
        sessions_of(&sql, "node-c").await,
        lost,
        "node-c's sessions were closed again"
    );
    drop((a, b, place));
}

/// Runs the binary with `DATABASE_URL` and `NATS_URL`, expecting it to refuse to start:
/// returns its exit status and what it wrote to stderr. Fails if it starts listening or is
/// still running after 30 s.
async fn refusal(database_url: &str, nats: &str) -> (std::process::ExitStatus, String) {
    use std::io::{BufRead, BufReader};
    let binary = std::env::var("SWITCHBOARD_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_switchboard").to_owned());
    let mut child = std::process::Command::new(binary)
        .env_clear()
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("DATABASE_URL", database_url)
        .env("JWT_SECRET", SECRET)
        .env("NATS_URL", nats)
        .env("NODE_ID", "node-refused")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stderr = child.stderr.take().expect("stderr");
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let listening = Arc::new(AtomicBool::new(false));
    let drain = std::thread::spawn({
        let (log, listening) = (log.clone(), listening.clone());
        move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if parse_listen_line(&line).is_some() {
                    listening.store(true, Ordering::SeqCst);
                }
                log.lock().expect("log lines").push(line);
            }
        }
    });
    let text = |log: &Arc<Mutex<Vec<String>>>| log.lock().expect("log lines").join("\n");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("the child's status") {
            let _ = drain.join();
            return (status, text(&log));
        }
        if listening.load(Ordering::SeqCst) || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "it started (or ran for 30 s) instead of refusing; its log:\n{}",
                text(&log)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn nats_with_a_sqlite_database_is_refused_at_startup() {
    let dir = tempfile::tempdir().expect("temp dir");
    let database = format!("sqlite://{}", dir.path().join("switchboard.db").display());
    let (status, stderr) = refusal(&database, &nats_url()).await;
    assert!(!status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains("NATS_URL"),
        "the error names NATS_URL: {stderr}"
    );
}

#[tokio::test]
async fn an_unreachable_nats_server_is_refused_at_startup() {
    let test = "an_unreachable_nats_server_is_refused_at_startup";
    let Some((place, _)) = Place::fresh(Backend::Postgres, test).await else {
        return;
    };
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let (status, stderr) = refusal(&place.url(), &format!("nats://127.0.0.1:{port}")).await;
    assert!(!status.success(), "{status}: {stderr}");
    assert!(stderr.contains("NATS"), "the error names NATS: {stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")),
        "the error names the server it could not reach: {stderr}"
    );
}

#[tokio::test]
async fn socketio_and_websocket_clients_on_different_nodes_talk_and_resends_stay_single() {
    let test = "socketio_and_websocket_clients_on_different_nodes_talk_and_resends_stay_single";
    let Some(cluster) = cluster(test).await else {
        return;
    };
    let Cluster { a, b, c, .. } = &cluster;
    let token = |sub: &str| {
        sign(
            Algorithm::HS256,
            &json!({"sub": sub, "username": sub, "role": "USER", "exp": in_an_hour()}),
        )
    };
    // Socket.IO on A, plain WebSocket on B and C.
    let mut sio = SioClient::connect(a.addr, &token("sia")).await;
    sio.wait_for("connected").await;
    let (mut wes, _) = connect(b, "wes", "USER").await;
    let (mut cid, _) = connect(c, "cid", "USER").await;
    presence(&mut wes, "user-connected", "cid").await;

    // Socket.IO → WebSocket on another node.
    sio.emit_ack(
        "send-message",
        json!({"message": "from socket.io", "to": "wes"}),
        1,
    )
    .await;
    let ack = sio.wait_for_ack(1).await;
    let id = json!(acked_id(&ack));
    assert_eq!(ack["queued"], false, "wes is online on B: {ack}");
    let (msg, _) = message(&mut wes, "private-message", &id).await;
    assert_eq!(msg["message"], "from socket.io");
    // WebSocket on C → Socket.IO on A.
    let ack = cid
        .say(json!({"message": "to socket.io", "to": "sia"}), 2)
        .await;
    let id = json!(acked_id(&ack));
    loop {
        let msg = sio.wait_for("private-message").await;
        if msg["id"] == id {
            assert_eq!(msg["message"], "to socket.io");
            break;
        }
    }

    // A resend with the same key, on another node of the same user: the original's ack,
    // stored and delivered once.
    let first = cid
        .say(
            json!({"message": "once", "to": "wes", "clientMsgId": "k-1"}),
            3,
        )
        .await;
    let (mut cid_on_a, _) = connect(a, "cid", "USER").await;
    let again = cid_on_a
        .say(
            json!({"message": "once", "to": "wes", "clientMsgId": "k-1"}),
            4,
        )
        .await;
    assert_eq!(again["id"], first["id"], "{again} vs {first}");
    assert_eq!(again["duplicate"], true, "{again}");
    let id = json!(acked_id(&first));
    message(&mut wes, "private-message", &id).await;
    // Fence: a later message from A arrives next, without a second copy before it.
    let fence = cid_on_a
        .say(json!({"message": "fence", "to": "wes"}), 5)
        .await;
    let (_, before) = message(&mut wes, "private-message", &json!(acked_id(&fence))).await;
    assert!(!carries(&before, "private-message", &id), "{before:?}");
    let sql = Sql::open(&cluster.place).await;
    let stored: i64 = sql
        .scalar(
            "SELECT COUNT(*) FROM messages WHERE client_msg_id = 'k-1'",
            &[],
        )
        .await;
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn the_offline_queue_bound_follows_deliveries_made_on_other_nodes() {
    let test = "the_offline_queue_bound_follows_deliveries_made_on_other_nodes";
    let Some((place, prefix)) = cluster_place(test).await else {
        return;
    };
    let bound = [("MAX_QUEUED_PER_USER", "3")];
    let a = node_with(&place, &prefix, "node-a", &nats_url(), &bound).await;
    let b = node_with(&place, &prefix, "node-b", &nats_url(), &bound).await;
    // Dave is known (he connected once), then offline.
    let (dave, _) = connect(&b, "dave", "USER").await;
    dave.close().await;
    let (mut ann, _) = connect(&a, "ann", "USER").await;

    // A queues three for him, then refuses the fourth: his queue is full.
    for ack in 1..=3 {
        let queued = ann
            .say(json!({"message": format!("q{ack}"), "to": "dave"}), ack)
            .await;
        assert_eq!(queued["queued"], true, "{queued}");
    }
    let full = ann.say(json!({"message": "q4", "to": "dave"}), 4).await;
    assert_eq!(full["ok"], false, "{full}");
    assert_eq!(full["code"], "queue_full", "{full}");

    // He takes them on B (B marks them delivered), and leaves again.
    let (mut dave, _) = connect(&b, "dave", "USER").await;
    for _ in 0..3 {
        next_named(&mut dave, "private-message").await;
    }
    ask(&mut dave, "get-users-stats", "users-stats").await;
    dave.close().await;
    presence(&mut ann, "user-disconnected", "dave").await;

    // A learns his queue emptied (from the database, within its refresh) and queues again.
    let mut ack = 4;
    let what = "A counting dave's delivered messages as no longer queued";
    eventually(CROSS, what, async || {
        ack += 1;
        let again = ann
            .say(json!({"message": "again", "to": "dave"}), ack)
            .await;
        if again["ok"] == false {
            assert_eq!(again["code"], "queue_full", "{again}");
            return false;
        }
        assert_eq!(again["queued"], true, "{again}");
        true
    })
    .await;
}
