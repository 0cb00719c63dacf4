//! When the disk fails: failures injected into the real SQLite file of a running server, and
//! bad files at start-up. Live traffic goes on, unstored messages are answered `not_stored`
//! (never a false ok, never a hang), `/readyz` says so, and the server recovers by itself.
//!
//! How the failures are injected, and why that is honest:
//! - **A full file**: SQLite's own limit (`PRAGMA max_page_count`) holds per connection, so a
//!   second connection cannot set it on the server's. Instead, triggers created through a
//!   second connection make every insert, update and delete of every table fail with
//!   SQLite's "database or disk is full" text, as a full disk would: every write statement
//!   of the server fails, the transaction is rolled back, nothing commits. What differs from
//!   a real `SQLITE_FULL` is only the result code, which the writer does not look at; the
//!   real code through the writer's own connections is covered at the unit level
//!   (`src/store/writer/tests.rs`, `a_full_database_...`).
//! - **A write error mid-batch**: a trigger that refuses one message body.
//! - **Bad files at start-up**: real files (random bytes, another program's SQLite database,
//!   a read-only file or directory) and the real binary, whose stderr is read.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::SqlitePool;

use crate::helpers::*;

/// The tables whose every write the "full disk" triggers refuse.
async fn tables(db: &SqlitePool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table'
         AND name NOT LIKE 'sqlite!_%' ESCAPE '!' AND name != '_sqlx_migrations'",
    )
    .fetch_all(db)
    .await
    .expect("list tables")
}

/// Makes every write of the server fail as on a full disk (see the module doc).
async fn fill_the_disk(db: &SqlitePool) {
    for table in tables(db).await {
        for op in ["INSERT", "UPDATE", "DELETE"] {
            let sql = format!(
                "CREATE TRIGGER full_{table}_{op} BEFORE {op} ON {table}
                 BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
            );
            sqlx::query(&sql).execute(db).await.expect("create trigger");
        }
    }
}

/// Gives the space back.
async fn free_the_disk(db: &SqlitePool) {
    for table in tables(db).await {
        for op in ["INSERT", "UPDATE", "DELETE"] {
            let sql = format!("DROP TRIGGER full_{table}_{op}");
            sqlx::query(&sql).execute(db).await.expect("drop trigger");
        }
    }
}

/// `GET /readyz`: status and body.
async fn readyz(app: &TestApp) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .get(app.url("/readyz"))
        .timeout(WAIT)
        .send()
        .await
        .expect("readyz answers");
    let status = response.status();
    (status, response.json().await.expect("JSON body"))
}

/// Sends `send-message` with an ack and returns the ack, checking that a refusal comes with
/// its `error` event first; fails if the answer takes longer than the writer's bound.
async fn say(client: &mut WsClient, data: Value, ack: u64) -> Value {
    let started = Instant::now();
    let answer = client.say(data, ack).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered after {:?}",
        started.elapsed()
    );
    answer
}

async fn stored_bodies(db: &SqlitePool) -> Vec<String> {
    sqlx::query_scalar("SELECT body FROM messages ORDER BY message_id")
        .fetch_all(db)
        .await
        .expect("read messages")
}

#[tokio::test]
async fn on_a_full_disk_messages_are_answered_not_stored_live_traffic_goes_on_and_writes_recover_by_themselves()
 {
    // Arrange
    let app = spawn_app().await;
    let db = app.db().await;
    let (mut alice, _) = app.user("alice", "USER").await;
    let (mut bob, _) = app.user("bob", "USER").await;
    alice.expect("user-connected").await;
    assert_eq!(
        say(&mut alice, json!({"message": "before"}), 1).await["ok"],
        true
    );
    bob.expect("broadcast-message").await;

    // Act: the disk fills up.
    fill_the_disk(&db).await;
    alice
        .emit_ack("send-message", json!({"message": "lost"}), 2)
        .await;

    // Assert: the sender is told, the online recipient still gets it live.
    let error = alice.expect("error").await;
    assert_eq!(error["code"], "not_stored", "{error}");
    let ack = alice.expect_ack(2).await;
    assert_eq!(
        (&ack["ok"], &ack["code"]),
        (&json!(false), &json!("not_stored")),
        "{ack}"
    );
    assert!(
        ack["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{ack}"
    );
    let live = bob.expect("broadcast-message").await;
    assert_eq!(
        live["message"], "lost",
        "live delivery does not wait for the disk"
    );

    let (status, body) = readyz(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["reason"], "store writes failing", "{body}");
    assert_eq!(body["store"]["reachable"], true, "{body}");
    assert_eq!(body["store"]["writes"], "failing", "{body}");
    assert!(body["store"]["failingSince"].is_string(), "{body}");
    assert!(
        body["store"]["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("database or disk is full")),
        "{body}"
    );

    // Connections stay and new ones are admitted; a private message is refused the same way.
    let (mut carol, _) = app.user("carol", "USER").await;
    let ack = say(&mut alice, json!({"message": "lost too", "to": "carol"}), 3).await;
    assert_eq!(
        (&ack["ok"], &ack["code"]),
        (&json!(false), &json!("not_stored"))
    );
    assert_eq!(
        carol.wait_for("private-message").await["message"],
        "lost too"
    );
    let started = Instant::now();
    let response = app
        .rest(
            reqwest::Method::POST,
            "/websocket/send-notification",
            "root",
            "ADMIN",
        )
        .json(&json!({"userId": "carol", "message": "lost as well"}))
        .send()
        .await
        .expect("a REST answer");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(body["code"], "not_stored", "{body}");
    assert_eq!(
        carol.wait_for("notification").await["message"],
        "lost as well"
    );

    // A resend with the same key is not answered as a duplicate of what was not stored.
    let keyed = json!({"message": "keyed", "clientMsgId": "k1"});
    let ack = say(&mut alice, keyed.clone(), 5).await;
    assert_eq!(
        (&ack["ok"], &ack["code"]),
        (&json!(false), &json!("not_stored"))
    );
    let ack = say(&mut alice, keyed.clone(), 6).await;
    assert_eq!(
        (&ack["ok"], &ack["code"]),
        (&json!(false), &json!("not_stored")),
        "never a false ok for a resend: {ack}"
    );

    // Act: space comes back; nothing is restarted.
    free_the_disk(&db).await;

    // Assert: ready again, and new messages are stored and acknowledged.
    let (status, body) = readyz(&app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["store"]["writes"], "ok", "{body}");
    assert!(body["store"].get("lastError").is_none(), "{body}");
    let ack = say(&mut alice, json!({"message": "after"}), 4).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ack = say(&mut alice, keyed, 7).await;
    assert_eq!(ack["ok"], true, "the resend is stored now: {ack}");
    assert!(ack.get("duplicate").is_none_or(|d| d == false), "{ack}");
    assert_eq!(
        stored_bodies(&db).await,
        ["before", "after", "keyed"],
        "what was answered not_stored is not in the log; what was acknowledged is"
    );
}

#[tokio::test]
async fn a_message_that_cannot_be_written_is_answered_not_stored_and_its_neighbours_are_stored() {
    // Arrange
    let app = spawn_app().await;
    let db = app.db().await;
    sqlx::query(
        "CREATE TRIGGER poison BEFORE INSERT ON messages WHEN NEW.body = 'poison'
         BEGIN SELECT RAISE(ABORT, 'injected'); END",
    )
    .execute(&db)
    .await
    .expect("create trigger");
    let (mut alice, _) = app.user("alice", "USER").await;

    // Act: three messages sent back to back, likely one batch of the writer.
    for (ack, body) in [(1, "first"), (2, "poison"), (3, "last")] {
        alice
            .emit_ack("send-message", json!({"message": body}), ack)
            .await;
    }

    // Assert
    let mut acks = Vec::new();
    while acks.len() < 3 {
        let (event, data) = alice.next_event().await;
        if event == "ack" {
            acks.push(data);
        }
    }
    acks.sort_by_key(|a| a["ack"].as_u64());
    let outcomes: Vec<(&Value, &Value)> = acks.iter().map(|a| (&a["ok"], &a["code"])).collect();
    assert_eq!(
        outcomes,
        [
            (&json!(true), &Value::Null),
            (&json!(false), &json!("not_stored")),
            (&json!(true), &Value::Null),
        ],
        "{acks:?}"
    );
    assert_eq!(stored_bodies(&db).await, ["first", "last"]);
}

// ---- Start-up with a bad file: the real binary fails fast with one clear line ----

/// Runs the binary on `db_path` (as `uid` when given) and returns its stderr once it exited,
/// which must be with a failure and within a few seconds.
fn start_expecting_failure(db_path: &Path, uid: Option<u32>) -> String {
    use std::os::unix::process::CommandExt;
    let binary = std::env::var("SWITCHBOARD_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_switchboard").to_string());
    let mut command = Command::new(binary);
    command
        .env_clear()
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("DATABASE_URL", format!("sqlite://{}", db_path.display()))
        .env("JWT_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(uid) = uid {
        command.uid(uid).gid(uid);
    }
    let mut child = command.spawn().expect("the binary starts");
    // Its stderr ends when it exits: wait for that, bounded, instead of polling the process.
    let mut pipe = child.stderr.take().expect("stderr");
    let (done, exited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
        let _ = done.send(text);
    });
    let Ok(stderr) = exited.recv_timeout(Duration::from_secs(15)) else {
        let _ = child.kill();
        panic!("start-up on a bad file hangs");
    };
    let status = child.wait().expect("wait for the binary");
    assert!(
        !status.success(),
        "the binary started on a bad file: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// The one `error:` line, which must name the file and contain each of `words`.
fn the_error_line(stderr: &str, db_path: &Path, words: &[&str]) {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    let line = errors[0];
    assert!(
        line.contains(&db_path.display().to_string()),
        "names the file: {line}"
    );
    for word in words {
        assert!(line.contains(word), "says {word:?}: {line}");
    }
}

/// A migrated switchboard database, closed.
async fn a_switchboard_database(path: &Path) {
    let settings = switchboard::config::DatabaseSettings::at(path);
    let store =
        switchboard::internals::Store::open(&settings, switchboard::internals::Metrics::shared())
            .await
            .expect("open");
    store.close().await;
}

/// Whether this process may write `path` despite its permissions (root may): the read-only
/// cases then run the binary as `nobody`, for whom the permissions hold.
fn permissions_are_bypassed(path: &Path) -> bool {
    std::fs::OpenOptions::new().write(true).open(path).is_ok()
}

const NOBODY: u32 = 65534;

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[tokio::test]
async fn a_corrupt_file_stops_start_up_with_one_clear_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("corrupt.db");
    // Not a SQLite header, then noise: what a disk error or a wrong file leaves.
    let noise: Vec<u8> = (0u32..65_536)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, noise).expect("write the file");

    let stderr = start_expecting_failure(&path, None);

    the_error_line(&stderr, &path, &["not a SQLite database"]);
}

#[tokio::test]
async fn another_programs_sqlite_file_stops_start_up_with_one_clear_line() {
    for (case, schema) in [
        (
            "unrelated tables",
            "CREATE TABLE recipes (name TEXT, steps TEXT)",
        ),
        (
            "a conflicting messages table",
            "CREATE TABLE messages (id INTEGER PRIMARY KEY, text TEXT)",
        ),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("foreign.db");
        let db = SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true),
        )
        .await
        .expect("create the foreign file");
        sqlx::query(schema).execute(&db).await.expect("its schema");
        db.close().await;

        let stderr = start_expecting_failure(&path, None);

        the_error_line(&stderr, &path, &["not a switchboard database"]);
        let db = open_db(&path).await;
        assert_eq!(
            tables(&db).await.len(),
            1,
            "{case}: nothing of ours was added to the file"
        );
    }
}

#[tokio::test]
async fn a_read_only_database_file_stops_start_up_with_one_clear_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("switchboard.db");
    a_switchboard_database(&path).await;
    // The directory is writable for everybody: only the file is read-only.
    chmod(dir.path(), 0o777);
    chmod(&path, 0o444);
    let uid = permissions_are_bypassed(&path).then_some(NOBODY);

    let stderr = start_expecting_failure(&path, uid);

    chmod(dir.path(), 0o755);
    the_error_line(&stderr, &path, &["read-only"]);
}

#[tokio::test]
async fn a_read_only_directory_stops_start_up_with_one_clear_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    let path = data.join("switchboard.db");
    a_switchboard_database(&path).await;
    // The file is writable for everybody; its directory is not, so SQLite cannot create
    // the -wal and -shm files beside it.
    chmod(dir.path(), 0o755);
    chmod(&path, 0o666);
    chmod(&data, 0o555);
    let probe = data.join("probe");
    let uid = std::fs::write(&probe, b"").is_ok().then_some(NOBODY);

    let stderr = start_expecting_failure(&path, uid);

    chmod(&data, 0o755);
    the_error_line(&stderr, &path, &["directory"]);
}
