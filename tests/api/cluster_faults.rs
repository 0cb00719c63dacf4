//! Faults one after another under load, on three real binaries (one PostgreSQL database, NATS
//! reached by node C through a relay the test cuts), with the checks that say the cluster
//! kept its promises after each: every acknowledged message reached every receiver exactly
//! once and in id order, one id per `clientMsgId`, presence on every node equals the users
//! connected, and the open session rows equal the live connections.
//!
//! The load: a `/ws` sender on A and a Socket.IO sender on B send broadcasts with a
//! `clientMsgId` each, one at a time, resending the same one until it is acknowledged; a `/ws`
//! receiver on each node, the one on C reconnecting with its `lastMessageId` whenever a fault
//! closes its connection. The faults, on C (the database for all): SIGKILL and restart, the
//! NATS link cut past the timeout, every database connection terminated, SIGTERM and restart,
//! SIGSTOP past the timeout, and the NATS link cut for a moment (the bus messages of that
//! moment lost).
//!
//! Seeded: the order of the faults and when each strikes in its round come from
//! `FAULT_SEED` (printed at the start; a failure names it), so a failure can be replayed with
//! `FAULT_SEED=<seed> cargo test --test api cluster_faults`. Bounded: about a minute.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::cluster_bus::{NODE_TIMEOUT_SECS, cluster_place, converge_rest, node_via, rest, send};
use crate::helpers::*;

/// Messages each sender sends per round.
const PER_ROUND: u64 = 25;
/// How long anything may take to settle after a fault (a restart, a rejoin, a catch-up).
const SETTLE: Duration = Duration::from_secs(30);
/// Past the timeout: long enough for the others to declare a node lost.
const PAST_TIMEOUT: Duration = Duration::from_millis(NODE_TIMEOUT_SECS * 1_000 + 1_500);

#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill,
    NatsCut,
    DatabaseConnectionsTerminated,
    Term,
    Pause,
    BusBlip,
}

const FAULTS: [Fault; 6] = [
    Fault::Kill,
    Fault::NatsCut,
    Fault::DatabaseConnectionsTerminated,
    Fault::Term,
    Fault::Pause,
    Fault::BusBlip,
];

/// xorshift64*: enough to shuffle six faults and pick delays, and replayable from its seed.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed() -> u64 {
    if let Ok(seed) = std::env::var("FAULT_SEED") {
        return seed.parse().expect("FAULT_SEED is a number");
    }
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).expect("random bytes");
    u64::from_le_bytes(random) | 1
}

fn token(user: &str) -> String {
    sign(
        Algorithm::HS256,
        &json!({"sub": user, "username": user, "role": "USER", "exp": in_an_hour()}),
    )
}

/// What a receiver got: every broadcast id, in the order it arrived.
type Received = Arc<Mutex<Vec<u64>>>;

/// Reads broadcasts on `addr`'s node until `stop`; when the connection ends, reconnects
/// (to wherever `addr` points by then) with its `lastMessageId`.
async fn receive(
    user: &'static str,
    addr: Arc<Mutex<SocketAddr>>,
    got: Received,
    stop: Arc<AtomicBool>,
) {
    let mut client: Option<WsClient> = None;
    while !stop.load(Ordering::Acquire) {
        let Some(connected) = client.as_mut() else {
            let last = got.lock().expect("ids").last().copied().unwrap_or(0);
            let at = *addr.lock().expect("addr");
            match try_connect_at(at, &token(user), &format!("&lastMessageId={last}")).await {
                Ok(c) => client = Some(c),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
            continue;
        };
        match connected
            .next_event_within(Duration::from_millis(200))
            .await
        {
            Ok(Some((name, data))) if name == "broadcast-message" => {
                let id = data["id"].as_u64().expect("an id");
                got.lock().expect("ids").push(id);
            }
            Ok(_) => {}
            Err(_) => client = None,
        }
    }
}

/// A session row as a failure shows it: id, user, node, why it ended.
type SessionSummary = (i64, String, String, Option<String>);

/// The ids acknowledged, per `clientMsgId`.
type Acked = BTreeMap<String, u64>;

/// Sends `"{tag}-{n}"` for n in `range`, each with its `clientMsgId`, resending the same
/// until acknowledged (`not_stored` while the database is away); records each ack.
async fn send_ws(client: &mut WsClient, tag: &str, range: std::ops::Range<u64>, acked: &mut Acked) {
    for n in range {
        let cid = format!("{tag}-{n}");
        let data = json!({"message": cid, "clientMsgId": cid});
        let id = loop {
            let ack = client.say(data.clone(), n).await;
            if ack["ok"] == true {
                break ack["id"].as_u64().expect("an id");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        record(acked, cid, id);
    }
}

/// [`send_ws`] over Socket.IO.
async fn send_sio(
    client: &mut SioClient,
    tag: &str,
    range: std::ops::Range<u64>,
    acked: &mut Acked,
) {
    for n in range {
        let cid = format!("{tag}-{n}");
        let data = json!({"message": cid, "clientMsgId": cid});
        let id = loop {
            client.emit_ack("send-message", data.clone(), n).await;
            let ack = client.wait_for_ack(n).await;
            if ack["ok"] == true {
                break ack["id"].as_u64().expect("an id");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        record(acked, cid, id);
    }
}

/// One id per `clientMsgId`, whatever the resends.
fn record(acked: &mut Acked, cid: String, id: u64) {
    if let Some(before) = acked.insert(cid.clone(), id) {
        assert_eq!(before, id, "{cid} acknowledged with two ids");
    }
}

/// C and what the test can do to it.
struct NodeC {
    server: Option<BinaryServer>,
    relay: TcpProxy,
    addr: Arc<Mutex<SocketAddr>>,
}

impl NodeC {
    fn server(&mut self) -> &mut BinaryServer {
        self.server.as_mut().expect("C runs")
    }

    async fn restart(&mut self, place: &Place, prefix: &str) {
        let via = format!("nats://{}", self.relay.addr);
        let server = node_via(place, prefix, "node-c", &via).await;
        *self.addr.lock().expect("addr") = server.addr;
        self.server = Some(server);
    }

    async fn ready(&mut self) {
        let node = &*self.server();
        eventually(SETTLE, "C ready", || async move {
            send(rest(node, Method::GET, "/readyz")).await.0 == StatusCode::OK
        })
        .await;
    }

    async fn strike(&mut self, fault: Fault, place: &Place, prefix: &str) {
        match fault {
            Fault::Kill => {
                self.server.take().expect("C runs").kill();
                tokio::time::sleep(PAST_TIMEOUT).await;
                self.restart(place, prefix).await;
            }
            Fault::NatsCut => {
                self.relay.cut();
                tokio::time::sleep(PAST_TIMEOUT).await;
                self.relay.restore();
            }
            Fault::DatabaseConnectionsTerminated => {
                let sql = Sql::open(place).await;
                let _: i64 = sql
                    .scalar(
                        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
                         WHERE datname = current_database() AND pid <> pg_backend_pid()",
                        &[],
                    )
                    .await;
            }
            Fault::Term => {
                let mut server = self.server.take().expect("C runs");
                server.signal("TERM");
                let status = server.exits_within(SETTLE).await;
                assert!(status.success(), "{status:?}");
                self.restart(place, prefix).await;
            }
            Fault::Pause => {
                self.server().signal("STOP");
                tokio::time::sleep(PAST_TIMEOUT).await;
                self.server().signal("CONT");
            }
            Fault::BusBlip => {
                self.relay.cut();
                tokio::time::sleep(Duration::from_millis(300)).await;
                self.relay.restore();
            }
        }
        self.ready().await;
    }
}

#[tokio::test]
async fn faults_one_after_another_under_load_keep_every_promise() {
    let test = "faults_one_after_another_under_load_keep_every_promise";
    let seed = seed();
    eprintln!("{test}: FAULT_SEED={seed}");
    let Some((place, prefix)) = cluster_place(test).await else {
        return;
    };
    let mut rng = Seeded(seed);
    let relay = TcpProxy::start(crate::cluster_failover::nats_addr()).await;
    let a = node_via(&place, &prefix, "node-a", &nats_url()).await;
    let b = node_via(&place, &prefix, "node-b", &nats_url()).await;
    let via = format!("nats://{}", relay.addr);
    let c = node_via(&place, &prefix, "node-c", &via).await;
    let mut node_c = NodeC {
        addr: Arc::new(Mutex::new(c.addr)),
        server: Some(c),
        relay,
    };

    let stop = Arc::new(AtomicBool::new(false));
    let mut receivers = Vec::new();
    let mut tasks = Vec::new();
    for (user, addr) in [
        ("recv-a", Arc::new(Mutex::new(a.addr))),
        ("recv-b", Arc::new(Mutex::new(b.addr))),
        ("recv-c", node_c.addr.clone()),
    ] {
        let got = Received::default();
        receivers.push((user, got.clone()));
        tasks.push(tokio::spawn(receive(user, addr, got, stop.clone())));
    }
    let mut on_a = a.user("send-ws", "").await;
    on_a.expect("connected").await;
    let mut on_b = SioClient::connect(b.addr, &token("send-sio")).await;
    on_b.wait_for("connected").await;
    let everyone = [
        ("recv-a", 1),
        ("recv-b", 1),
        ("recv-c", 1),
        ("send-sio", 1),
        ("send-ws", 1),
    ];

    let mut order = FAULTS.to_vec();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut acked = Acked::new();
    for (round, fault) in order.into_iter().enumerate() {
        let context = format!("round {round}, {fault:?}, FAULT_SEED={seed}");
        eprintln!("{test}: {context}");
        let strike_after = Duration::from_millis(rng.below(300));
        let range = round as u64 * PER_ROUND + 1..(round as u64 + 1) * PER_ROUND + 1;
        let (mut from_a, mut from_b) = (Acked::new(), Acked::new());
        tokio::join!(
            send_ws(&mut on_a, "ws", range.clone(), &mut from_a),
            send_sio(&mut on_b, "sio", range, &mut from_b),
            async {
                tokio::time::sleep(strike_after).await;
                node_c.strike(fault, &place, &prefix).await;
            },
        );
        for (cid, id) in from_a.into_iter().chain(from_b) {
            record(&mut acked, cid, id);
        }
        check(&acked, &receivers, &context).await;
        for node in [&a, &b, node_c.server()] {
            converge_rest(node, &everyone).await;
        }
        let sql = &Sql::open(&place).await;
        let what = format!("5 open session rows, as many as connections ({context})");
        eventually(SETTLE, &what, async || {
            let open: i64 = sql
                .scalar(
                    "SELECT COUNT(*) FROM sessions WHERE disconnected_at IS NULL",
                    &[],
                )
                .await;
            if open != 5 {
                let rows: Vec<SessionSummary> = sql
                    .rows(
                        "SELECT session_id, user_id, node_id, disconnect_reason
                         FROM sessions ORDER BY session_id",
                        &[],
                    )
                    .await;
                // Printed with the failure, should the count never match.
                eprintln!("{open} open session rows ({context}): {rows:?}");
            }
            open == 5
        })
        .await;
    }
    stop.store(true, Ordering::Release);
    for task in tasks {
        task.await.expect("a receiver ends cleanly");
    }
    drop((a, b, node_c, place));
}

/// Every receiver got every acknowledged id, each once, in increasing order.
async fn check(acked: &Acked, receivers: &[(&str, Received)], context: &str) {
    let mut want: Vec<u64> = acked.values().copied().collect();
    want.sort_unstable();
    let distinct = want.windows(2).all(|w| w[0] < w[1]);
    assert!(distinct, "one message per id ({context})");
    for (user, got) in receivers {
        let what = format!("{user} holding every acknowledged id ({context})");
        eventually(SETTLE, &what, async || {
            let got = got.lock().expect("ids");
            want.iter().all(|id| got.contains(id))
        })
        .await;
        let got = got.lock().expect("ids").clone();
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "{user} got ids out of order or twice ({context}): {got:?}"
        );
    }
}
