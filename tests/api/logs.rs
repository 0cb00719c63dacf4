//! Structured logs: with `LOG_FORMAT=json`, what a connection logs carries its `session`
//! span, so a line can be traced to its `sessions` row. The real binary, its stderr captured
//! whole (an in-process subscriber would be shared by every test of this binary).

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::helpers::*;

/// The closed session rows of `user_id`: `(session_id, disconnect_reason)`.
async fn closed_sessions(db_path: &std::path::Path, user_id: &str) -> Vec<(i64, String)> {
    sqlx::query_as(
        "SELECT session_id, disconnect_reason FROM sessions
         WHERE user_id = ? AND disconnect_reason IS NOT NULL",
    )
    .bind(user_id)
    .fetch_all(&open_db(db_path).await)
    .await
    .expect("sessions")
}

#[tokio::test]
async fn a_connections_json_log_lines_carry_its_session_span() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db_path = dir.path().join("logs.db");
    let env = [
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "info,switchboard=debug"),
    ];
    let server = BinaryServer::start(&db_path, &env).await;
    let token = sign(
        Algorithm::HS256,
        &json!({"sub": "alice", "username": "Alice", "role": "USER", "exp": in_an_hour()}),
    );

    let mut alice = server.connect_with(&token, "").await;
    alice.expect("connected").await;
    alice.close().await;
    // The row is closed after the close is logged: once it is, the line is written.
    let path = db_path.as_path();
    let (session_id, reason) = eventually(WAIT, "alice's session row closed", || async move {
        closed_sessions(path, "alice").await.pop()
    })
    .await;
    assert_eq!(reason, "client_closed");

    let log = server.kill_and_read_log();
    let lines: Vec<Value> = log
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("JSON: {line}")))
        .collect();
    for message in ["connection opened", "connection closed"] {
        let line = lines
            .iter()
            .find(|l| l["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("a {message:?} line in {log:#?}"));
        let span = &line["span"];
        assert_eq!(span["name"], "session", "{line}");
        assert_eq!(span["session_id"], session_id, "{line}");
        assert_eq!(span["user_id"], "alice", "{line}");
        assert_eq!(span["transport"], "ws", "{line}");
        let addr = span["remote_addr"].as_str().unwrap_or_default();
        assert!(addr.starts_with("127.0.0.1:"), "{line}");
        assert_eq!(line["spans"][0]["session_id"], session_id, "{line}");
    }
    assert!(
        !log.iter().any(|line| line.contains(&token)),
        "the token was logged"
    );
}
