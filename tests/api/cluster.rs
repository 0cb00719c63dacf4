//! Several gateways on one PostgreSQL database (issue 13, the store's side): each node's
//! sessions carry its `NODE_ID`, so recovering from a crash closes only that node's rows, and
//! session ids come from a shared sequence, so two nodes never hand out the same one.
//! PostgreSQL only: a SQLite file belongs to one process.

use serde_json::Value;

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
