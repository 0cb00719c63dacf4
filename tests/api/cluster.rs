//! Several gateways on one PostgreSQL database (issue 13, the store's side): each node's
//! sessions carry its `NODE_ID`, so recovering from a crash closes only that node's rows, and
//! session ids come from a shared sequence, so two nodes never hand out the same one.
//! PostgreSQL only: a SQLite file belongs to one process.

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn a_crashed_node_closes_only_its_own_sessions_on_restart() {
    let test = "a_crashed_node_closes_only_its_own_sessions_on_restart";
    let Some((place, _)) = Place::fresh(Backend::Postgres, test).await else {
        return;
    };
    let node_a = BinaryServer::start_at(&place, &[("NODE_ID", "node-a")]).await;
    let node_b = BinaryServer::start_at(&place, &[("NODE_ID", "node-b")]).await;
    let alice = connected_and_stored(node_a.user("alice", "").await).await;
    let mut bob = connected_and_stored(node_b.user("bob", "").await).await;

    node_a.kill();
    drop(alice);
    let restarted = BinaryServer::start_at(&place, &[("NODE_ID", "node-a")]).await;

    let sql = Sql::open(&place).await;
    let rows: Vec<(String, String, Option<String>)> = sql
        .rows(
            "SELECT user_id, node_id, disconnect_reason FROM sessions ORDER BY user_id",
            &[],
        )
        .await;
    assert_eq!(
        rows,
        vec![
            (
                "alice".into(),
                "node-a".into(),
                Some("server_restart".into())
            ),
            ("bob".into(), "node-b".into(), None),
        ],
        "node-a's crash closed its own session and left node-b's live one open"
    );
    // Bob's connection was never disturbed.
    flushed(&mut bob).await;
    drop((restarted, node_b));
}

/// `client` once its `connected` came and its session row is committed (stats flush the
/// store first).
async fn connected_and_stored(mut client: WsClient) -> WsClient {
    client.expect("connected").await;
    flushed(&mut client).await;
    client
}

/// Asks for stats, which flush the store first, and waits for them: every write the
/// client's node was sent before is committed.
async fn flushed(client: &mut WsClient) {
    client.emit("get-users-stats", Value::Null).await;
    client.wait_for("users-stats").await;
}

#[tokio::test]
async fn two_nodes_on_one_database_never_hand_out_the_same_session_id() {
    let test = "two_nodes_on_one_database_never_hand_out_the_same_session_id";
    let Some((place, _)) = Place::fresh(Backend::Postgres, test).await else {
        return;
    };
    let node = |id: &'static str| {
        let place = place.clone();
        async move {
            spawn_app_at(&place, |s| {
                s.database.node_id = switchboard::config::NodeId::parse(id).expect("a node id")
            })
            .await
        }
    };
    let (node_a, node_b) = (node("node-a").await, node("node-b").await);

    // More connections per node than a block of session ids holds, interleaved, so that
    // each node takes a second block after the other took one.
    const PER_NODE: usize = 130;
    let mut clients = Vec::new();
    for n in 0..PER_NODE {
        for (name, app) in [("a", &node_a), ("b", &node_b)] {
            let (client, _) = app.user(&format!("{name}{n}"), "USER").await;
            clients.push(client);
        }
    }
    for app in [&node_a, &node_b] {
        let (mut client, _) = app.user("flusher", "USER").await;
        flushed(&mut client).await;
    }

    let sql = Sql::open(&place).await;
    let (rows, distinct): (i64, i64) = sql
        .row(
            "SELECT COUNT(*), COUNT(DISTINCT session_id) FROM sessions WHERE user_id <> 'flusher'",
            &[],
        )
        .await;
    assert_eq!(
        (rows, distinct),
        (2 * PER_NODE as i64, 2 * PER_NODE as i64),
        "every connection's row is stored under an id of its own"
    );
    let per_node: Vec<(String, i64)> = sql
        .rows(
            "SELECT node_id, COUNT(*) FROM sessions WHERE user_id <> 'flusher'
             GROUP BY node_id ORDER BY node_id",
            &[],
        )
        .await;
    assert_eq!(
        per_node,
        vec![
            ("node-a".into(), PER_NODE as i64),
            ("node-b".into(), PER_NODE as i64)
        ]
    );
    drop(clients);
    node_a.stop().await;
    node_b.stop().await;
}

#[tokio::test]
async fn a_retention_pass_runs_on_one_node_at_a_time() {
    use std::time::Duration;

    use sqlx::Connection;
    use switchboard::config::{NodeId, RetentionSettings};
    use switchboard::internals::{Store, retention};

    let test = "a_retention_pass_runs_on_one_node_at_a_time";
    let Some((place, _)) = Place::fresh(Backend::Postgres, test).await else {
        return;
    };
    // Arrange: five public messages, stored through a gateway, then aged past a day.
    let app = spawn_app_at(&place, |_| {}).await;
    let (mut alice, _) = app.user("alice", "USER").await;
    for n in 0..5 {
        alice.say(json!({"message": format!("m{n}")}), n).await;
    }
    app.stop().await;
    let sql = Sql::open(&place).await;
    let aged: Vec<(i64,)> = sql
        .rows(
            "UPDATE messages SET created_at = '2020-01-01T00:00:00.000Z' RETURNING message_id",
            &[],
        )
        .await;
    assert_eq!(aged.len(), 5);
    // Two nodes' stores with their own retention tasks off: the test runs their passes.
    let node = |id: &str| {
        let mut settings = place.settings();
        settings.node_id = NodeId::parse(id).expect("a node id");
        settings.retention.max_age = None;
        settings.retention.max_count = None;
        settings
    };
    let node_a = Store::open(&node("node-a"), switchboard::internals::Metrics::shared())
        .await
        .expect("node-a opens");
    let node_b = Store::open(&node("node-b"), switchboard::internals::Metrics::shared())
        .await
        .expect("node-b opens");
    let by_age = RetentionSettings {
        max_age: Some(Duration::from_secs(86_400)),
        max_count: None,
        interval: Duration::from_secs(60),
    };
    // A third session holds the lock, as a node in the middle of its pass would.
    let mut holder = sqlx::PgConnection::connect(&place.url())
        .await
        .expect("connects");
    let lock = |sql: &'static str| sqlx::query_scalar::<_, bool>(sql).bind(retention::CLUSTER_LOCK);

    // Act and assert: while it is held, both nodes skip their turn.
    let taken = lock("SELECT pg_try_advisory_lock($1)")
        .fetch_one(&mut holder)
        .await
        .expect("asks for the lock");
    assert!(taken, "no pass holds the lock yet");
    let (a, b) = tokio::join!(
        retention::prune(&node_a, &by_age),
        retention::prune(&node_b, &by_age)
    );
    for report in [a.expect("node-a's pass"), b.expect("node-b's pass")] {
        assert!(report.skipped, "{report:?}");
        assert_eq!(report.deleted, 0, "{report:?}");
    }
    let left: i64 = sql.scalar("SELECT COUNT(*) FROM messages", &[]).await;
    assert_eq!(
        left, 5,
        "nothing was deleted while another pass held the lock"
    );

    // Released: the passes delete the five between them, and leave the lock free.
    assert!(
        lock("SELECT pg_advisory_unlock($1)")
            .fetch_one(&mut holder)
            .await
            .expect("unlocks")
    );
    let (a, b) = tokio::join!(
        retention::prune(&node_a, &by_age),
        retention::prune(&node_b, &by_age)
    );
    let (a, b) = (a.expect("node-a's pass"), b.expect("node-b's pass"));
    assert!(!(a.skipped && b.skipped), "one of them ran: {a:?} {b:?}");
    assert_eq!(a.deleted + b.deleted, 5, "{a:?} {b:?}");
    let left: i64 = sql.scalar("SELECT COUNT(*) FROM messages", &[]).await;
    assert_eq!(left, 0);
    let free = lock("SELECT pg_try_advisory_lock($1)")
        .fetch_one(&mut holder)
        .await
        .expect("asks for the lock");
    assert!(free, "a pass released the lock when it ended");
    node_a.close().await;
    node_b.close().await;
}
