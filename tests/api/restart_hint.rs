//! A graceful stop tells each client when to come back (`docs/protocol.md` section 11):
//! a delay drawn from 0 to `RECONNECT_SPREAD_SECS`, in the `/ws` close frame ("server shutting
//! down; retry after N ms") and as `retryAfterMs` in Socket.IO's `error` before the transport
//! closes, so that a restart's returns are spread; with a spread of 0 there is no hint.

use std::time::Duration;

use crate::helpers::*;

/// The hint of a `/ws` close sentence, in milliseconds.
fn hint_of(sentence: &str) -> Option<u64> {
    let rest = sentence.strip_prefix("server shutting down; retry after ")?;
    rest.strip_suffix(" ms")?.parse().ok()
}

#[tokio::test]
async fn each_client_is_told_to_come_back_within_the_spread_on_both_transports() {
    let app = spawn_app_with(|s| s.limits.reconnect_spread = Duration::from_secs(3)).await;
    let mut ws_clients = Vec::new();
    for user in ["a", "b", "c", "d"] {
        ws_clients.push(app.user(user, "USER").await.0);
    }
    let mut sio = SioClient::connect(app.addr, &app.token("s", "USER")).await;
    sio.wait_for("connected").await;

    app.stop().await;
    let mut hints = Vec::new();
    for client in &mut ws_clients {
        let close = client.expect_close().await.expect("a close frame");
        assert_eq!(u16::from(close.code), 1001);
        let hint = hint_of(close.reason.as_str())
            .unwrap_or_else(|| panic!("no hint in {:?}", close.reason.as_str()));
        assert!(
            (1000..=4000).contains(&hint),
            "{hint} ms is within the floor and the spread"
        );
        hints.push(hint);
    }
    let error = sio.wait_for("error").await;
    assert_eq!(error["code"], "server_shutdown", "{error}");
    let hint = error["retryAfterMs"].as_u64().expect("retryAfterMs");
    assert!(
        (1000..=4000).contains(&hint),
        "{hint} ms is within the floor and the spread"
    );
    hints.push(hint);
    // Drawn per connection: five draws from 3,001 values all equal would be a broken draw.
    hints.dedup();
    assert!(hints.len() > 1, "the hints are spread: {hints:?}");
}

#[tokio::test]
async fn a_spread_of_zero_gives_no_hint() {
    let app = spawn_app_with(|s| s.limits.reconnect_spread = Duration::ZERO).await;
    let (mut client, _) = app.user("a", "USER").await;
    app.stop().await;
    let close = client.expect_close().await.expect("a close frame");
    assert_eq!(close.reason.as_str(), "server shutting down");
}
