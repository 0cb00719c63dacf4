//! The binary as a user meets it: `switchboard token` mints a token the server accepts, and
//! start-up refuses a database whose directory is missing with a clear error.

use std::process::Command;

use switchboard::config::{DatabaseSettings, PostgresUrl};
use switchboard::internals::Store;

use crate::helpers::*;

#[tokio::test]
async fn the_token_command_mints_a_token_the_server_accepts() {
    let app = spawn_app().await;
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "token",
            "--sub",
            "alice",
            "--username",
            "Alice",
            "--role",
            "ADMIN",
            "--ttl",
            "1h",
        ])
        .env_clear()
        .env("JWT_SECRET", SECRET)
        .output()
        .expect("the binary runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).expect("utf-8");
    let connected = app.ws(token.trim()).await.expect("connected").await;
    assert_eq!(connected["user"]["userId"], "alice");
    assert_eq!(connected["user"]["username"], "Alice");
    assert_eq!(connected["user"]["role"], "ADMIN");
}

#[tokio::test]
async fn without_a_secret_the_token_command_and_the_server_share_a_generated_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(args)
            .current_dir(dir.path())
            .env_clear()
            .output()
            .expect("the binary runs")
    };
    let minted = run(&["token", "--sub", "bob"]);
    assert!(
        minted.status.success(),
        "{}",
        String::from_utf8_lossy(&minted.stderr)
    );
    let secret_file = dir.path().join("data/jwt-secret");
    let secret = std::fs::read_to_string(&secret_file).expect("the secret was generated");
    assert_eq!(secret.len(), 64, "256 bits, hex");

    // A server on the same data directory verifies with that secret.
    let app = spawn_app_with(|s| {
        s.jwt.key = switchboard::config::JwtKeySource::GeneratedSecretFile(secret_file.clone());
    })
    .await;
    let token = String::from_utf8(minted.stdout).expect("utf-8");
    let connected = app.ws(token.trim()).await.expect("connected").await;
    assert_eq!(connected["user"]["userId"], "bob");
    // ...and a token signed with anything else is refused.
    let forged = sign(
        jsonwebtoken::Algorithm::HS256,
        &serde_json::json!({"sub": "bob", "exp": in_an_hour()}),
    );
    let refused = app
        .connect(
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                format!("{}?token={forged}", app.ws_url()),
            )
            .expect("request"),
        )
        .await;
    assert!(
        refused.is_err(),
        "a token signed with another secret is refused"
    );
}

#[tokio::test]
async fn a_database_in_a_missing_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = DatabaseSettings::at(dir.path().join("no/such/dir/db.sqlite"));
    let error = Store::open(&settings, switchboard::internals::Metrics::shared())
        .await
        .err()
        .expect("refused");
    assert!(error.to_string().contains("does not exist"), "{error}");

    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .env_clear()
        .env("JWT_SECRET", SECRET)
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("DATABASE_URL", settings.location.to_string())
        .output()
        .expect("the binary runs");
    assert!(!output.status.success(), "non-zero exit");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("does not exist"), "{stderr}");
}

#[tokio::test]
async fn an_unreachable_postgresql_is_a_clear_error_that_hides_the_password() {
    // Port 1 on loopback refuses at once: no PostgreSQL is needed for this one.
    let url = PostgresUrl::parse("postgres://switchboard:hunter2@127.0.0.1:1/switchboard")
        .expect("a postgres URL");
    let error = Store::open(
        &DatabaseSettings::postgres(url),
        switchboard::internals::Metrics::shared(),
    )
    .await
    .err()
    .expect("refused");
    let said = error.to_string();
    assert!(said.contains("could not connect"), "{said}");
    assert!(
        said.contains("refused"),
        "the cause, not a pool timeout: {said}"
    );
    assert!(said.contains("switchboard:***@127.0.0.1:1"), "{said}");
    assert!(!said.contains("hunter2"), "{said}");
}

#[tokio::test]
async fn a_bad_setting_stops_the_binary_with_its_name() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("check-config")
        .env_clear()
        .env("MAX_FRAME_BYTES", "lots")
        .output()
        .expect("the binary runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("MAX_FRAME_BYTES"), "{stderr}");
}
