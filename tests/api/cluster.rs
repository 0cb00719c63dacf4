//! Several gateways on one PostgreSQL database (issue 13, the store's side): each node's
//! sessions carry its `NODE_ID`, so recovering from a crash closes only that node's rows.
//! PostgreSQL only: a SQLite file belongs to one process.

use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn a_crashed_node_closes_only_its_own_sessions_on_restart() {
    let test = "a_crashed_node_closes_only_its_own_sessions_on_restart";
    let Some((place, _)) = Place::fresh(Backend::Postgres, test).await else {
        return;
    };
    // One after the other: each node continues session ids after the highest it read at
    // start, so node-b starts once alice's row is stored.
    let node_a = BinaryServer::start_at(&place, &[("NODE_ID", "node-a")]).await;
    let alice = connected_and_stored(node_a.user("alice", "").await).await;
    let node_b = BinaryServer::start_at(&place, &[("NODE_ID", "node-b")]).await;
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
    bob.emit("get-users-stats", Value::Null).await;
    bob.wait_for("users-stats").await;
    drop((restarted, node_b));
}

/// `client` once its `connected` came and its session row is committed (stats flush the
/// store first).
async fn connected_and_stored(mut client: WsClient) -> WsClient {
    client.expect("connected").await;
    client.emit("get-users-stats", Value::Null).await;
    client.wait_for("users-stats").await;
    client
}
