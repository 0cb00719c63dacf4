//! The embedded API, through `examples/notification_service.rs` run as a real process: an
//! application that mounts the gateway beside its own routes and notifies users from its
//! code, as a back end's notification service does.

use std::path::PathBuf;

use serde_json::Value;

use crate::helpers::*;

/// The example binary cargo built next to this test.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join("examples").join("notification_service");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build --examples` (scripts/test does)",
        path.display()
    );
    path
}

async fn post(url: String, body: &str) -> Value {
    reqwest::Client::new()
        .post(url)
        .body(body.to_owned())
        .timeout(WAIT)
        .send()
        .await
        .expect("response")
        .json()
        .await
        .expect("JSON")
}

#[tokio::test]
async fn the_notification_service_example_notifies_users_roles_and_everyone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server =
        BinaryServer::start_program(&example_binary(), &dir.path().join("e.db"), &[]).await;
    let base = format!("http://{}", server.addr);
    let mut alice = server.user_with_role("alice", "USER").await;
    alice.expect("connected").await;
    let mut ann = server.user_with_role("ann", "ADMIN").await;
    ann.expect("connected").await;
    alice.expect("user-connected").await;

    let sent = post(format!("{base}/app/notify/alice"), "Your report is ready").await;
    assert_eq!(sent["delivered"], true);
    let n = alice.expect("notification").await;
    assert_eq!(n["message"], "Your report is ready");
    assert_eq!(n["type"], "info");
    assert!(n["id"].is_u64(), "stored, with an id: {n}");
    assert_eq!(n["from"]["userId"], "system");
    assert_eq!(n["from"]["role"], "SYSTEM");

    let announced = post(format!("{base}/app/announce"), "Deploy at 10:00").await;
    assert_eq!(announced["recipients"], 2);
    for client in [&mut alice, &mut ann] {
        assert_eq!(
            client.expect("announcement").await["message"],
            "Deploy at 10:00"
        );
    }

    let admins = post(format!("{base}/app/notify-admins"), "Disk almost full").await;
    assert_eq!(admins["recipients"], 1);
    assert_eq!(
        ann.expect("admin-notification").await["message"],
        "Disk almost full"
    );
    alice.expect_silence().await;

    let count: Value = reqwest::get(format!("{base}/app/active-count"))
        .await
        .expect("response")
        .json()
        .await
        .expect("JSON");
    assert_eq!(count["activeUsers"], 2);

    // An offline user gets it on their next connection.
    let offline = post(format!("{base}/app/notify/olga"), "While you were away").await;
    assert_eq!(offline["delivered"], false);
    let mut olga = server.user_with_role("olga", "USER").await;
    olga.expect("connected").await;
    assert_eq!(
        olga.expect("notification").await["message"],
        "While you were away"
    );
}
