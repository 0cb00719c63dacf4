//! Session history, on SQLite and on PostgreSQL: rows per connection, statistics that grow
//! over reconnects, a graceful stop that closes every row, and a crash whose open rows the
//! next start closes.

use serde_json::Value;

use crate::helpers::*;

on_both_backends!(
    every_connection_gets_a_session_row_with_its_details_and_end,
    statistics_count_past_sessions_after_reconnects,
    a_graceful_stop_sends_close_frames_and_closes_every_row,
    a_restart_after_a_crash_closes_the_rows_left_open,
);

async fn every_connection_gets_a_session_row_with_its_details_and_end(backend: Backend) {
    let Some(app) = spawn_on(backend, |_| {}).await else {
        return;
    };
    let (alice, _) = app.user("alice", "ADMIN").await;
    alice.close().await;
    let (mut bob, _) = app.user("bob", "USER").await;
    // A stats request flushes the store, so alice's closing write is committed by now.
    bob.emit("get-users-stats", Value::Null).await;
    bob.expect("users-stats").await;

    let sql = app.sql().await;
    let row: (
        String,
        Option<String>,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
    ) = sql
        .row(
            "SELECT transport, remote_addr, user_agent, connected_at, disconnected_at,
                    disconnect_reason
             FROM sessions WHERE user_id = 'alice'",
            &[],
        )
        .await;
    assert_eq!(row.0, "ws");
    let remote = row.1.clone().unwrap_or_default();
    assert!(remote.starts_with("127.0.0.1:"), "{remote}");
    assert!(row.3.ends_with('Z'), "{}", row.3);
    assert!(
        row.4.as_deref().is_some_and(|d| d >= row.3.as_str()),
        "{row:?}"
    );
    assert_eq!(row.5.as_deref(), Some("client_closed"));

    let user: (String, String) = sql
        .row(
            "SELECT username, role FROM users WHERE user_id = 'alice'",
            &[],
        )
        .await;
    assert_eq!(user, ("Alice".into(), "ADMIN".into()));
}

async fn statistics_count_past_sessions_after_reconnects(backend: Backend) {
    let Some(app) = spawn_on(backend, |_| {}).await else {
        return;
    };
    let (mut watcher, _) = app.user("watcher", "USER").await;
    let mut first_seen = None;
    let mut last_total = 0;
    for round in 1..=3u64 {
        let (alice, _) = app.user("alice", "USER").await;
        watcher.expect("user-connected").await;
        watcher.emit("get-users-stats", Value::Null).await;
        let stats = watcher.expect("users-stats").await;
        let entry = stats["connectionTimes"]
            .as_array()
            .expect("array")
            .iter()
            .find(|t| t["userId"] == "alice")
            .cloned()
            .expect("alice is listed");
        assert_eq!(entry["sessionsCount"], round, "{entry}");
        let seen = entry["firstSeen"].as_str().expect("firstSeen").to_string();
        assert_eq!(
            first_seen.get_or_insert(seen.clone()),
            &seen,
            "firstSeen stays put"
        );
        let total = entry["totalConnectedSeconds"].as_u64().expect("seconds");
        assert!(total >= last_total, "total connected time never shrinks");
        last_total = total;
        alice.close().await;
        watcher.expect("user-disconnected").await;
    }
}

async fn a_graceful_stop_sends_close_frames_and_closes_every_row(backend: Backend) {
    let Some(mut app) = spawn_on(backend, |_| {}).await else {
        return;
    };
    let dir = app.take_dir();
    let place = app.place();
    let (mut alice, _) = app.user("alice", "USER").await;
    let (mut bob, _) = app.user("bob", "USER").await;
    alice.expect("user-connected").await;
    let sql = app.sql().await;

    app.stop().await;
    for client in [&mut alice, &mut bob] {
        let close = client.expect_close().await.expect("a close frame");
        assert_eq!(u16::from(close.code), 1001);
    }
    let reasons: Vec<(String, Option<String>)> = sql
        .rows(
            "SELECT user_id, disconnect_reason FROM sessions ORDER BY user_id",
            &[],
        )
        .await;
    assert_eq!(
        reasons,
        vec![
            ("alice".into(), Some("server_shutdown".into())),
            ("bob".into(), Some("server_shutdown".into())),
        ]
    );
    let stopped: Option<String> = sql
        .scalar(
            "SELECT stopped_at FROM server_runs ORDER BY run_id DESC LIMIT 1",
            &[],
        )
        .await;
    assert!(stopped.is_some(), "the run records its stop");
    drop((dir, place));
}

async fn a_restart_after_a_crash_closes_the_rows_left_open(backend: Backend) {
    let test = "a_restart_after_a_crash_closes_the_rows_left_open";
    let Some((place, _dir)) = Place::fresh(backend, test).await else {
        return;
    };

    let server = BinaryServer::start_at(&place, &[]).await;
    let mut alice = server.user("alice", "").await;
    alice.expect("connected").await;
    // Stats flush the store: the session row is committed before the crash.
    alice.emit("get-users-stats", Value::Null).await;
    alice.wait_for("users-stats").await;
    server.kill();

    let restarted = spawn_app_at(&place, |_| {}).await;
    let sql = restarted.sql().await;
    let row: (Option<String>, Option<String>, String) = sql
        .row(
            "SELECT disconnect_reason, disconnected_at, connected_at FROM sessions
             WHERE user_id = 'alice'",
            &[],
        )
        .await;
    assert_eq!(row.0.as_deref(), Some("server_restart"));
    let ended = row.1.expect("closed at some time");
    assert!(ended >= row.2, "{ended} is not before {}", row.2);
    let open: i64 = sql
        .scalar(
            "SELECT COUNT(*) FROM sessions WHERE disconnected_at IS NULL",
            &[],
        )
        .await;
    assert_eq!(open, 0);
    restarted.stop().await;
}
