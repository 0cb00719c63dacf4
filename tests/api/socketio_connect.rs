//! A Socket.IO client may emit the moment it reads the namespace's CONNECT packet (the
//! official client flushes its buffered emits right then). socketioxide sends that packet and
//! only then spawns the connect handler, so an event read in between found no handler and was
//! dropped without a word: a `join-room` whose `joined-room` never came. Events must be taken
//! from the moment the client is told it is connected.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

/// Clients connecting at once: enough to keep the server's two workers busy while connect
/// handlers are still queued, which is when the race shows.
const CLIENTS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_emitted_as_soon_as_socketio_says_connected_is_answered() {
    // Arrange: limits out of the way, so that every refusal would be a bug.
    let app = spawn_app_with(|s| {
        s.limits.rate_limit_per_sec = 1_000_000;
        s.limits.rate_limit_burst = 1_000_000;
        s.connections.max_connections_per_ip = None;
    })
    .await;

    // Act: every client emits `join-room` in the same breath as it reads CONNECT.
    let mut clients = tokio::task::JoinSet::new();
    for n in 0..CLIENTS {
        let token = app.token(&format!("user{n}"), "USER");
        let addr = app.addr;
        clients.spawn(async move {
            let mut client = SioClient::connect(addr, &token).await;
            client
                .emit_ack("join-room", json!({ "room": "lobby" }), 1)
                .await;
            let joined =
                tokio::time::timeout(Duration::from_secs(10), client.wait_for("joined-room")).await;
            (n, joined)
        });
    }

    // Assert: every one of them got its reply.
    let mut unanswered = Vec::new();
    while let Some(done) = clients.join_next().await {
        let (n, joined) = done.expect("a client task ends without panicking");
        match joined {
            Ok(reply) => assert_eq!(reply["room"], "lobby", "{reply}"),
            Err(_) => unanswered.push(n),
        }
    }
    assert!(
        unanswered.is_empty(),
        "{} of {CLIENTS} clients never got `joined-room`: {unanswered:?}",
        unanswered.len()
    );
}
