//! `switchboard backup <file>` against a server under write load, and the id rules of a
//! restored copy: ids continue past every id the original server handed out (after the copy
//! too), and never below a stored id whatever the reservation counter says.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

/// Runs the real binary's `backup` subcommand against `db` (as an operator would, from
/// another process), returning its exit success and its stdout + stderr.
async fn run_backup(db: &Path, file: &Path) -> (bool, String) {
    run_backup_of(
        &format!("sqlite://{}", db.display()),
        db.parent().expect("db dir"),
        file,
    )
    .await
}

/// `switchboard backup <file>` against `database_url`, run in `dir`.
async fn run_backup_of(database_url: &str, dir: &Path, file: &Path) -> (bool, String) {
    let binary = std::env::var("SWITCHBOARD_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_switchboard").to_string());
    let mut command = std::process::Command::new(binary);
    command
        .env_clear()
        .current_dir(dir)
        .env("DATABASE_URL", database_url)
        .env("JWT_SECRET", SECRET)
        .arg("backup")
        .arg(file);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("the binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// One writer: sends broadcast messages one after another and records each acked id.
async fn spawn_writer(
    app: &TestApp,
    user: &str,
    acked: Arc<Mutex<Vec<u64>>>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (mut client, _) = app.user(user, "USER").await;
    tokio::spawn(async move {
        let mut n = 0;
        while !stop.is_cancelled() {
            n += 1;
            let ack = client.say(json!({ "message": format!("m{n}") }), n).await;
            assert_eq!(ack["ok"], true, "{ack}");
            let id = ack["id"].as_u64().expect("acked id");
            acked.lock().expect("acked ids").push(id);
        }
        client.close().await;
    })
}

async fn wait_for_acks(acked: &Mutex<Vec<u64>>, at_least: usize) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while acked.lock().expect("acked ids").len() < at_least {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the writers get their acks");
}

#[tokio::test]
async fn a_backup_under_write_load_is_consistent_and_a_restored_copy_never_reuses_an_id() {
    // The writers send as fast as their acks come back, for as long as the copy takes: the
    // rate limit is lifted so that a fast machine (or a slow copy) does not make them refused.
    let mut app = spawn_app_with(|s| {
        s.limits.rate_limit_per_sec = 1_000_000;
        s.limits.rate_limit_burst = 1_000_000;
    })
    .await;
    let dir = app.take_dir().expect("temp dir");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = CancellationToken::new();
    let mut writers = Vec::new();
    for i in 0..3 {
        writers.push(spawn_writer(&app, &format!("writer{i}"), acked.clone(), stop.clone()).await);
    }
    wait_for_acks(&acked, 60).await;

    // Every message acked before the copy starts is committed, so it must be in the copy.
    let acked_before: Vec<u64> = acked.lock().expect("acked ids").clone();
    let copy = dir.path().join("copy.db");
    let (ok, report) = run_backup(&app.db_path, &copy).await;
    assert!(ok, "backup failed: {report}");
    assert!(report.contains("integrity_check: ok"), "{report}");
    // The writers were not held up by the copy: acks keep coming after it.
    let after_copy = acked.lock().expect("acked ids").len();
    wait_for_acks(&acked, after_copy + 30).await;
    stop.cancel();
    for writer in writers {
        writer.await.expect("writer");
    }
    let last_acked: u64 = *acked
        .lock()
        .expect("acked ids")
        .iter()
        .max()
        .expect("some ids");

    let copied = open_db(&copy).await;
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
        .fetch_one(&copied)
        .await
        .expect("count");
    assert!(
        report.contains(&format!("rows messages: {stored}")),
        "the report's row count is the copy's: {report}"
    );
    for id in &acked_before {
        let found: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE message_id = ?1")
            .bind(*id as i64)
            .fetch_one(&copied)
            .await
            .expect("lookup");
        assert_eq!(found, 1, "message {id} was acked before the copy");
    }
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&copied)
        .await
        .expect("check");
    assert_eq!(check, "ok");
    copied.close().await;

    // A backup never overwrites.
    let (ok, refusal) = run_backup(&app.db_path, &copy).await;
    assert!(!ok, "a second backup onto the same file must fail");
    assert!(refusal.contains("exists already"), "{refusal}");

    // The original server goes on after the copy, across a restart: a restart starts ids past
    // its whole reservation, so these ids lie beyond anything the copy's counter knows of.
    let original = app.db_path.clone();
    app.stop().await;
    let again = spawn_app_on(&original, |_| {}).await;
    let (mut client, _) = again.user("writer0", "USER").await;
    let mut last_acked = last_acked;
    for n in 1..=3 {
        let ack = client
            .say(json!({ "message": format!("later {n}") }), n)
            .await;
        last_acked = last_acked.max(ack["id"].as_u64().expect("id"));
    }
    client.close().await;
    again.stop().await;

    // Restore: the original is lost, the copy takes its place.
    let restored_path = dir.path().join("restored.db");
    std::fs::rename(&copy, &restored_path).expect("restore the copy");
    let restored = spawn_app_on(&restored_path, |_| {}).await;
    let (mut client, _) = restored.user("afterwards", "USER").await;
    let ack = client
        .say(json!({ "message": "after the restore" }), 1)
        .await;
    let id = ack["id"].as_u64().expect("id");
    assert!(
        id > last_acked,
        "id {id} after the restore; the original server acked up to {last_acked}"
    );
    client.close().await;
    let marker: Option<i64> =
        sqlx::query_scalar("SELECT value FROM counters WHERE name = 'backup_taken_at_ms'")
            .fetch_optional(&restored.db().await)
            .await
            .expect("counters");
    assert_eq!(
        marker, None,
        "the restore moves ids once, then forgets the mark"
    );
    restored.stop().await;
}

#[tokio::test]
async fn ids_never_start_below_the_highest_stored_message_whatever_the_counter_says() {
    let mut app = spawn_app().await;
    let dir = app.take_dir().expect("temp dir");
    let (mut client, _) = app.user("alice", "USER").await;
    let mut last = 0;
    for n in 1..=5 {
        last = client.say(json!({ "message": format!("m{n}") }), n).await["id"]
            .as_u64()
            .expect("id");
    }
    client.close().await;
    let path = app.db_path.clone();
    app.stop().await;

    // A file whose reservation fell behind its messages (edited, or put together by hand).
    let db = open_db(&path).await;
    sqlx::query("UPDATE counters SET value = 1 WHERE name = 'message_id_reserved_through'")
        .execute(&db)
        .await
        .expect("rewind the counter");
    db.close().await;

    let restarted = spawn_app_on(&path, |_| {}).await;
    let (mut client, _) = restarted.user("alice", "USER").await;
    let id = client.say(json!({ "message": "next" }), 1).await["id"]
        .as_u64()
        .expect("id");
    assert!(id > last, "id {id} reuses the stored range up to {last}");
    client.close().await;
    restarted.stop().await;
    drop(dir);
}

#[tokio::test]
async fn a_backup_of_a_postgresql_database_is_refused_with_a_pointer_to_pg_dump() {
    // Arrange: no server needed, the refusal comes before any connection.
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("copy.db");

    // Act
    let url = "postgres://switchboard:hunter2@127.0.0.1:5432/switchboard";
    let (ok, said) = run_backup_of(url, dir.path(), &copy).await;

    // Assert
    assert!(!ok, "a non-zero exit: {said}");
    assert!(said.contains("pg_dump"), "{said}");
    assert!(!said.contains("hunter2"), "the password stays out: {said}");
    assert!(!copy.exists(), "nothing written");
}
