//! What a node does when it loses the NATS bus (`docs/protocol.md` section 13, README "Running a
//! cluster"): node B reaches NATS through a relay the test cuts. The other node declares B
//! lost after `NODE_TIMEOUT_SECS` (B's users leave presence, its sessions are closed with
//! reason `node_lost`); B, which can no longer tell the cluster about its connections, closes
//! them itself (close code 1013, try again later) and refuses new ones with 503 until the bus
//! is back; `/readyz` says why. With the bus restored, B takes connections again and its users
//! reappear on the other nodes. A node that is alone meanwhile keeps serving.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::cluster_bus::{
    NODE_TIMEOUT_SECS, acked_id, cluster_place, connect, message, node_via, presence, rest, send,
};
use crate::helpers::*;
use crate::metrics::sample;

/// How long a node has to notice its bus is gone, or back.
const NOTICE: Duration = Duration::from_secs(NODE_TIMEOUT_SECS + 8);
/// How long a node stopped while its bus is unreachable may take to exit.
const STOPS_WITHIN: Duration = Duration::from_secs(10);

/// The NATS server's address, for the relay.
pub(crate) fn nats_addr() -> std::net::SocketAddr {
    let url = nats_url();
    let host = url.trim_start_matches("nats://");
    let host = host.rsplit('@').next().unwrap_or(host);
    use std::net::ToSocketAddrs;
    host.to_socket_addrs()
        .expect("NATS_URL resolves")
        .next()
        .expect("an address")
}

/// `node`'s Prometheus text.
async fn metrics_of(node: &BinaryServer) -> String {
    reqwest::get(format!("http://{}/metrics", node.addr))
        .await
        .expect("a response")
        .text()
        .await
        .expect("a body")
}

/// `/readyz` of `node`: its status and body.
async fn readiness(node: &BinaryServer) -> (StatusCode, Value) {
    send(rest(node, Method::GET, "/readyz")).await
}

/// Asks `/readyz` until it answers `want`, for at most [`NOTICE`].
async fn ready_becomes(node: &BinaryServer, want: StatusCode) -> Value {
    let what = format!("/readyz of {} answering {want}", node.addr);
    eventually(NOTICE, &what, || async move {
        let (status, body) = readiness(node).await;
        (status == want).then_some(body)
    })
    .await
}

#[tokio::test]
async fn a_node_that_loses_the_bus_is_cut_off_and_comes_back_when_it_returns() {
    let test = "a_node_that_loses_the_bus_is_cut_off_and_comes_back_when_it_returns";
    let Some((place, prefix)) = cluster_place(test).await else {
        return;
    };
    let relay = TcpProxy::start(nats_addr()).await;
    let a = node_via(&place, &prefix, "node-a", &nats_url()).await;
    let b = node_via(&place, &prefix, "node-b", &format!("nats://{}", relay.addr)).await;

    let (mut alice, _) = connect(&a, "alice", "USER").await;
    let (mut bob, _) = connect(&b, "bob", "USER").await;
    presence(&mut alice, "user-connected", "bob").await;

    relay.cut();

    // B closes its connections itself: nobody else would know they exist.
    let frame = bob
        .close_frame_within(NOTICE)
        .await
        .expect("B closes bob's connection with a frame once its bus is gone for the timeout");
    assert_eq!(u16::from(frame.code), 1013, "try again later: {frame:?}");
    assert!(frame.reason.contains("lost contact"), "{frame:?}");
    // A declares B lost: bob leaves presence there.
    let (left, _) = presence(&mut alice, "user-disconnected", "bob").await;
    assert_eq!(left["user"]["sessions"], 0, "{left}");
    // B refuses connections and says why.
    let body = ready_becomes(&b, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["reason"], "cut off from the cluster", "{body}");
    let token = sign(
        jsonwebtoken::Algorithm::HS256,
        &json!({"sub": "bob", "username": "bob", "role": "USER", "exp": in_an_hour()}),
    );
    let Err(refused) = b.try_connect_with(&token, "").await else {
        panic!("B refuses a connection while cut off");
    };
    assert!(refused.contains("503"), "{refused}");
    // Bob's session is closed as node_lost (by B as it closed, or by A as it declared B lost).
    // Written in a task of its own on either node: waited for, not read once.
    let sql = &Sql::open(&place).await;
    eventually(NOTICE, "bob's session closed as node_lost", async || {
        let reason: Option<String> = sql
            .scalar(
                "SELECT disconnect_reason FROM sessions WHERE user_id = 'bob'",
                &[],
            )
            .await;
        reason.is_some_and(|r| r == "node_lost")
    })
    .await;
    // A counts it: one node lost, none heard now.
    // The gauge is set at the end of the check that announced the departure: waited for.
    let node_a = &a;
    let text = eventually(NOTICE, "A counting no node", || async move {
        let text = metrics_of(node_a).await;
        (sample(&text, "switchboard_cluster_nodes", &[]) == 0.0).then_some(text)
    })
    .await;
    assert_eq!(sample(&text, "switchboard_nodes_lost_total", &[]), 1.0);
    assert!(
        sample(
            &text,
            "switchboard_bus_messages_total",
            &[("direction", "received")]
        ) > 0.0
    );
    // A, alone, keeps serving.
    let ack = alice.say(json!({"message": "still here"}), 1).await;
    assert!(acked_id(&ack) > 0, "{ack}");

    relay.restore();

    ready_becomes(&b, StatusCode::OK).await;
    let (mut bob, _) = connect(&b, "bob", "USER").await;
    presence(&mut alice, "user-connected", "bob").await;
    // The gauge follows within a check interval.
    eventually(NOTICE, "A counting B again", || async move {
        sample(&metrics_of(node_a).await, "switchboard_cluster_nodes", &[]) == 1.0
    })
    .await;
    // Messages cross again: a broadcast from A reaches bob on B.
    let ack = alice.say(json!({"message": "welcome back"}), 2).await;
    let id = json!(acked_id(&ack));
    let (msg, _) = message(&mut bob, "broadcast-message", &id).await;
    assert_eq!(msg["message"], "welcome back");
    drop((a, b, place));
}

#[tokio::test]
async fn a_node_stopped_while_its_bus_is_cut_stops_in_time_and_records_a_clean_stop() {
    let test = "a_node_stopped_while_its_bus_is_cut_stops_in_time_and_records_a_clean_stop";
    let Some((place, prefix)) = cluster_place(test).await else {
        return;
    };
    let relay = TcpProxy::start(nats_addr()).await;
    let a = node_via(&place, &prefix, "node-a", &nats_url()).await;
    let mut b = node_via(&place, &prefix, "node-b", &format!("nats://{}", relay.addr)).await;
    let (mut bob, _) = connect(&b, "bob", "USER").await;

    relay.cut();
    b.logs_within("disconnected from NATS", NOTICE).await;
    // Stopped (as systemd stops it) before the timeout would cut it off.
    b.signal("TERM");

    let frame = bob
        .close_frame_within(NOTICE)
        .await
        .expect("B closes bob's connection with a frame");
    assert_eq!(u16::from(frame.code), 1001, "going away: {frame:?}");
    // The goodbye cannot leave; the stop is bounded all the same (goodbye 2 s, bus tasks
    // 1 s, the store's last writes), well before the bus returns.
    let status = b.exits_within(STOPS_WITHIN).await;
    assert!(status.success(), "{status:?}: {:#?}", b.log_lines());
    // A clean stop, recorded as one: the run has its end, bob's row its reason.
    let sql = Sql::open(&place).await;
    let stopped: Option<String> = sql
        .scalar(
            "SELECT stopped_at FROM server_runs WHERE node_id = 'node-b'",
            &[],
        )
        .await;
    assert!(stopped.is_some(), "node-b's run has no stopped_at");
    let reason: Option<String> = sql
        .scalar(
            "SELECT disconnect_reason FROM sessions WHERE user_id = 'bob'",
            &[],
        )
        .await;
    assert_eq!(reason.as_deref(), Some("server_shutdown"));
    drop((a, relay, place));
}
