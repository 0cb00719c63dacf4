//! Socket.IO acks when socketioxide's queue for the socket is full: the ack waits for room and
//! arrives once the client reads, instead of being dropped. A raw Engine.IO polling client
//! makes "not reading" exact: nothing leaves the server's queue until it polls.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn an_ack_waits_for_room_in_a_full_socketio_queue_instead_of_being_lost() {
    let app = spawn_app_with(|s| {
        s.limits.rate_limit_per_sec = 100_000;
        s.limits.rate_limit_burst = 100_000;
    })
    .await;
    // Alice over Socket.IO (polling), connected, then not reading.
    let (_, with_sid) = polling_connect(app.addr, &app.token("alice", "USER")).await;
    poll_until(app.addr, &with_sid, "connected").await;

    // More broadcasts than socketioxide's queue for her holds (128); the rest wait in ours.
    let (mut bob, _) = app.user("bob", "USER").await;
    let sent = 300;
    for n in 1..=sent {
        let ack = bob.say(json!({ "message": format!("m{n}") }), n).await;
        assert_eq!(ack["ok"], true, "{ack}");
    }

    // Her event with an ack (id 7) is answered while her queue is full.
    assert_eq!(
        poll_at(app.addr, "POST", &with_sid, "427[\"get-active-users\"]").await,
        "ok"
    );

    // She reads: every broadcast arrives, and the ack too. Bounded as a whole: once nothing
    // is left to send, a poll would wait for Engine.IO's next ping.
    let mut broadcasts = 0;
    let mut acked = false;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(15), async {
        while !(acked && broadcasts == sent) {
            let payload = poll_at(app.addr, "GET", &with_sid, "").await;
            for packet in payload.split('\u{1e}') {
                if packet.starts_with("42[\"broadcast-message\"") {
                    broadcasts += 1;
                }
                if packet.starts_with("437[") {
                    acked = true;
                }
            }
        }
    })
    .await;
    assert_eq!(broadcasts, sent, "every broadcast reaches her");
    assert!(acked, "the ack of her event reaches her once she reads");
    bob.close().await;
}
