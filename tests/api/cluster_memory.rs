//! Three gateways in one process over the in-process bus (`switchboard::internals::memory`),
//! each with its real store on one fresh PostgreSQL database and real WebSocket clients: the
//! cluster logic (presence merge, `Hello` and `Bye`, read-back of a lost message, node loss
//! and cut-off) with the network under the test's control. The bus drops, delays or cuts on
//! demand, which NATS cannot be made to do on cue; `cluster_bus.rs` and `cluster_failover.rs`
//! keep the end-to-end checks on the real binary and NATS.
//!
//! Every wait is bounded ([`CROSS`]); each test skips loudly when PostgreSQL is unreachable
//! (and fails with `CI=true`).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchboard::Gateway;
use switchboard::config::NodeId;
use switchboard::internals::memory::{Fault, MemoryBus, Route};

use crate::cluster_bus::{acked_id, message, presence};
use crate::helpers::*;
use crate::metrics::sample;

/// How long anything that crosses nodes may take to arrive.
const CROSS: Duration = Duration::from_secs(10);
/// `NODE_TIMEOUT_SECS` where a test waits for a node to be lost.
const SHORT: Duration = Duration::from_secs(1);
/// `NODE_TIMEOUT_SECS` where only a goodbye can explain a quick departure.
const LONG: Duration = Duration::from_secs(60);
/// What marks a batch of committed messages on the bus (`wire.rs`: the body's tag).
const COMMITTED: &str = r#""body":{"messages""#;
/// What marks a change a node announces (a user's connections, a room, a kick).
const EVENT: &str = r#""body":{"event""#;
/// What marks a node asking for everyone's users.
const HELLO: &str = r#""body":"hello""#;
/// What marks a node telling another that it declared it lost.
const LOST: &str = r#""body":{"lost""#;

/// Nodes on one database and one memory bus (`cluster_members.rs` uses it too).
pub(crate) struct Cluster {
    place: Place,
    bus: MemoryBus,
    timeout: Duration,
}

impl Cluster {
    /// A fresh database and bus; `None` (after a loud SKIPPED line) when PostgreSQL is
    /// unreachable outside CI.
    pub(crate) async fn new(test: &str, timeout: Duration) -> Option<Self> {
        let (place, _) = Place::fresh(Backend::Postgres, test).await?;
        Some(Self {
            place,
            bus: MemoryBus::new(),
            timeout,
        })
    }

    /// Starts the gateway `id` on the bus.
    async fn node(&self, id: &str) -> TestApp {
        let mut settings = test_settings(&self.place);
        settings.database.node_id = NodeId::parse(id).expect("a node id");
        settings.cluster.node_timeout = self.timeout;
        let gateway = Gateway::build_with_bus(settings, Some(self.bus.attach(id)))
            .await
            .expect("the node joins");
        spawn_built(&self.place, gateway)
    }

    /// Starts `node-a`, `node-b` and `node-c`, one after the other (the first migrates).
    pub(crate) async fn three(&self) -> [TestApp; 3] {
        [
            self.node("node-a").await,
            self.node("node-b").await,
            self.node("node-c").await,
        ]
    }
}

/// Asks `client`'s node for its active users until they are exactly `users` (for at most
/// [`CROSS`]).
async fn lists(client: &mut WsClient, users: &[&str]) {
    let mut want: Vec<String> = users.iter().map(|u| u.to_string()).collect();
    want.sort();
    let deadline = tokio::time::Instant::now() + CROSS;
    loop {
        client.emit("get-active-users", Value::Null).await;
        let list = client.wait_for("active-users").await;
        let mut got: Vec<String> = list["users"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|u| u["userId"].as_str().expect("userId").to_owned())
            .collect();
        got.sort();
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "active users never became {want:?}: last {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_user_on_one_node_is_seen_on_the_other_two() {
    let Some(cluster) = Cluster::new("memory_presence_merge", SHORT * 2).await else {
        return;
    };
    let [a, b, c] = cluster.three().await;
    let (mut bob, _) = b.user("bob", "USER").await;
    let (mut carol, _) = c.user("carol", "USER").await;

    let (_alice, _) = a.user("alice", "USER").await;

    for client in [&mut bob, &mut carol] {
        let (joined, _) = presence(client, "user-connected", "alice").await;
        assert_eq!(joined["user"]["sessions"], 1, "{joined}");
    }
    lists(&mut carol, &["alice", "bob", "carol"]).await;
    lists(&mut bob, &["alice", "bob", "carol"]).await;
}

#[tokio::test]
async fn a_node_that_stops_says_goodbye_and_a_new_node_asks_who_is_online() {
    let Some(cluster) = Cluster::new("memory_hello_bye", LONG).await else {
        return;
    };
    let [a, b, c] = cluster.three().await;
    let (_alice, _) = a.user("alice", "USER").await;
    let (mut bob, _) = b.user("bob", "USER").await;
    let (_carol, _) = c.user("carol", "USER").await;
    presence(&mut bob, "user-connected", "carol").await;

    // C stops, and its announcement that carol left is lost on the way to B: only its
    // goodbye can take carol out of presence there before the 60 s timeout.
    cluster.bus.fault(
        Route::any().from("node-c").to("node-b").containing(EVENT),
        Fault::Drop,
        1,
    );
    c.stop().await;
    assert_eq!(cluster.bus.faulted_to("node-b"), 1, "the bus dropped one");
    let (left, _) = presence(&mut bob, "user-disconnected", "carol").await;
    assert_eq!(left["user"]["sessions"], 0, "{left}");

    // D joins later and learns, by asking, who is online elsewhere.
    let d = cluster.node("node-d").await;
    let (mut dave, _) = d.user("dave", "USER").await;
    lists(&mut dave, &["alice", "bob", "dave"]).await;
}

#[tokio::test]
async fn a_committed_message_lost_on_its_way_to_a_node_arrives_there_read_back_in_order() {
    let Some(cluster) = Cluster::new("memory_read_back", SHORT * 2).await else {
        return;
    };
    let [a, b, c] = cluster.three().await;
    let (mut alice, _) = a.user("alice", "USER").await;
    let (mut bob, _) = b.user("bob", "USER").await;
    let (mut carol, _) = c.user("carol", "USER").await;
    // The next batch of committed messages from A to B is lost.
    cluster.bus.fault(
        Route::any()
            .from("node-a")
            .to("node-b")
            .containing(COMMITTED),
        Fault::Drop,
        1,
    );

    let first = json!(acked_id(&alice.say(json!({"message": "first"}), 1).await));
    let second = json!(acked_id(&alice.say(json!({"message": "second"}), 2).await));

    assert_eq!(cluster.bus.faulted_to("node-b"), 1, "the bus dropped one");
    for client in [&mut bob, &mut carol] {
        let (got, before) = message(client, "broadcast-message", &first).await;
        assert_eq!(got["message"], "first");
        assert!(
            !before.iter().any(|(_, d)| d["id"] == second),
            "in id order: {before:?}"
        );
        message(client, "broadcast-message", &second).await;
    }
    let metrics = reqwest::get(b.url("/metrics"))
        .await
        .expect("a response")
        .text()
        .await
        .expect("a body");
    assert!(
        sample(&metrics, "switchboard_bus_read_back_messages_total", &[]) >= 1.0,
        "B read the lost message back"
    );
    drop(a);
}

#[tokio::test]
async fn a_node_cut_off_past_the_timeout_is_declared_lost_and_cuts_itself_off() {
    let Some(cluster) = Cluster::new("memory_node_loss", SHORT).await else {
        return;
    };
    let [a, _b, c] = cluster.three().await;
    let (mut alice, _) = a.user("alice", "USER").await;
    let (mut carol, _) = c.user("carol", "USER").await;
    presence(&mut alice, "user-connected", "carol").await;

    cluster.bus.cut("node-c");

    // A declares C lost: carol leaves presence there.
    let (left, _) = presence(&mut alice, "user-disconnected", "carol").await;
    assert_eq!(left["user"]["sessions"], 0, "{left}");
    // C, not hearing even itself, closes its connections and refuses new ones.
    let frame = carol
        .close_frame_within(CROSS)
        .await
        .expect("C closes carol's connection with a frame");
    assert_eq!(u16::from(frame.code), 1013, "try again later: {frame:?}");
    let c = &c;
    let (status, _) = eventually(CROSS, "C refuses connections while cut off", async || {
        c.try_ws_query(&c.token("carl", "USER"), "").await.err()
    })
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // Carol's session row is closed as node_lost (by C as it closed, or by A or B).
    let sql = &Sql::open(&cluster.place).await;
    eventually(CROSS, "carol's row closed as node_lost", async || {
        let reason: Option<String> = sql
            .scalar(
                "SELECT disconnect_reason FROM sessions WHERE user_id = 'carol'",
                &[],
            )
            .await;
        reason.is_some_and(|r| r == "node_lost")
    })
    .await;

    // Restored, C takes connections again and A hears of them.
    cluster.bus.restore("node-c");
    let mut carol = eventually(
        CROSS,
        "C takes connections once its bus is back",
        async || c.try_ws_query(&c.token("carol", "USER"), "").await.ok(),
    )
    .await;
    carol.expect("connected").await;
    presence(&mut alice, "user-connected", "carol").await;
}

/// Reads `sql` until `user` has exactly `open` session rows not closed.
async fn open_rows(sql: &Sql, user: &str, open: i64) {
    let what = format!("{user} with {open} open session rows");
    eventually(CROSS, &what, async || {
        let count: i64 = sql
            .scalar(
                "SELECT COUNT(*) FROM sessions WHERE user_id = $1 AND disconnected_at IS NULL",
                &[user],
            )
            .await;
        count == open
    })
    .await;
}

#[tokio::test]
async fn a_node_declared_lost_while_it_still_serves_learns_it_and_cuts_itself_off() {
    let Some(cluster) = Cluster::new("memory_declared_lost", SHORT).await else {
        return;
    };
    let [a, b, c] = cluster.three().await;
    let (mut alice, _) = a.user("alice", "USER").await;
    let (mut carol, _) = c.user("carol", "USER").await;
    presence(&mut alice, "user-connected", "carol").await;
    // What A and B see of a node paused past the timeout: nothing from C reaches them,
    // while C, which still hears itself and them, has no reason to think anything is
    // wrong. And the first announcements of its loss (one from A, one from B) are lost on
    // their way to C.
    let all = usize::MAX;
    for other in ["node-a", "node-b"] {
        let from_c = Route::any().from("node-c").to(other);
        cluster.bus.fault(from_c, Fault::Drop, all);
    }
    let lost_to_c = Route::any().to("node-c").containing(LOST);
    cluster.bus.fault(lost_to_c, Fault::Drop, 2);

    let (left, _) = presence(&mut alice, "user-disconnected", "carol").await;
    assert_eq!(left["user"]["sessions"], 0, "{left}");
    let sql = &Sql::open(&cluster.place).await;
    open_rows(sql, "carol", 0).await;
    eventually(
        CROSS,
        "both announcements of C's loss dropped",
        async || cluster.bus.faulted_to("node-c") == 2,
    )
    .await;
    // C is heard again (it resumed): told once more that it was lost, it closes its
    // connections, which the database already counts closed.
    cluster.bus.heal();
    let frame = carol
        .close_frame_within(CROSS)
        .await
        .expect("C closes carol's connection with a frame");
    assert_eq!(u16::from(frame.code), 1013, "try again later: {frame:?}");

    // It comes back as a new run: carol reconnects, and every node and the database agree.
    let c = &c;
    let mut carol = eventually(CROSS, "C takes connections again", async || {
        c.try_ws_query(&c.token("carol", "USER"), "").await.ok()
    })
    .await;
    carol.expect("connected").await;
    presence(&mut alice, "user-connected", "carol").await;
    let (mut bob, _) = b.user("bob", "USER").await;
    lists(&mut bob, &["alice", "bob", "carol"]).await;
    lists(&mut carol, &["alice", "bob", "carol"]).await;
    open_rows(sql, "carol", 1).await;
}

#[tokio::test]
async fn a_node_that_rejoins_gets_every_list_even_when_its_hellos_are_lost() {
    let Some(cluster) = Cluster::new("memory_rejoin_lists", SHORT).await else {
        return;
    };
    let [a, _b, c] = cluster.three().await;
    let mut alice = Vec::new();
    for n in 0..10 {
        let (client, _) = a.user(&format!("alice-{n}"), "USER").await;
        alice.push(client);
    }
    let mut everyone: Vec<String> = (0..10).map(|n| format!("alice-{n}")).collect();
    everyone.push("carol".into());
    let everyone: Vec<&str> = everyone.iter().map(String::as_str).collect();
    let (mut carol, _) = c.user("carol", "USER").await;
    lists(&mut carol, &everyone).await;
    // Every request for users on its way to A is lost: A never hears C ask.
    cluster.bus.fault(
        Route::any().to("node-a").containing(HELLO),
        Fault::Drop,
        usize::MAX,
    );

    // C loses the bus past the timeout, cuts itself off (forgetting A's users) and rejoins.
    cluster.bus.cut("node-c");
    let frame = carol
        .close_frame_within(CROSS)
        .await
        .expect("C closes carol's connection with a frame");
    assert_eq!(u16::from(frame.code), 1013, "try again later: {frame:?}");
    cluster.bus.restore("node-c");
    let c = &c;
    let mut carol = eventually(CROSS, "C takes connections again", async || {
        c.try_ws_query(&c.token("carol", "USER"), "").await.ok()
    })
    .await;
    carol.expect("connected").await;

    // A noticed it missed some of C's messages and sent its list unasked.
    lists(&mut carol, &everyone).await;
    assert!(cluster.bus.faulted_to("node-a") >= 1, "a Hello was dropped");
    drop(alice);
}

#[tokio::test]
async fn a_revocation_lost_on_its_way_to_a_node_still_closes_the_user_there() {
    let Some(cluster) = Cluster::new("memory_lost_revocation", SHORT * 2).await else {
        return;
    };
    let [a, _b, c] = cluster.three().await;
    let (mut alice, _) = a.user("alice", "USER").await;
    let (mut mallory, _) = c.user("mallory", "USER").await;
    presence(&mut alice, "user-connected", "mallory").await;
    // A's announcement of the revocation never reaches C.
    let revoked = Route::any()
        .from("node-a")
        .to("node-c")
        .containing(r#""revoked""#);
    cluster.bus.fault(revoked, Fault::Drop, 1);

    let response = a
        .rest(
            reqwest::Method::POST,
            "/websocket/users/mallory/revoke",
            "root",
            "ADMIN",
        )
        .send()
        .await
        .expect("revoke answers");
    assert_eq!(response.status(), StatusCode::OK);

    // C notices the hole in A's numbering, reads the revocations and closes mallory.
    let frame = mallory
        .close_frame_within(CROSS)
        .await
        .expect("C closes mallory's connection with a frame");
    assert_eq!(u16::from(frame.code), 4003, "revoked: {frame:?}");
    assert_eq!(cluster.bus.faulted_to("node-c"), 1, "the bus dropped it");
}

#[tokio::test]
async fn a_node_cut_off_before_its_first_timeout_closes_no_live_node_sessions_when_back() {
    let Some(cluster) = Cluster::new("memory_orphans_after_cut", SHORT).await else {
        return;
    };
    let a = cluster.node("node-a").await;
    let (_alice, _) = a.user("alice", "USER").await;
    // C starts and loses the bus before a timeout has passed: it has not looked for the
    // sessions of nodes it never heard yet, and forgets A as it cuts itself off.
    let c = cluster.node("node-c").await;
    cluster.bus.cut("node-c");
    let c = &c;
    eventually(CROSS, "C cut off", async || {
        c.try_ws_query(&c.token("carl", "USER"), "").await.is_err()
    })
    .await;
    cluster.bus.restore("node-c");
    let mut carl = eventually(CROSS, "C takes connections again", async || {
        c.try_ws_query(&c.token("carl", "USER"), "").await.ok()
    })
    .await;
    carl.expect("connected").await;
    lists(&mut carl, &["alice", "carl"]).await;

    // Well past a timeout after its return, A's live session is still open.
    tokio::time::sleep(SHORT * 3).await;
    let sql = &Sql::open(&cluster.place).await;
    open_rows(sql, "alice", 1).await;
}
