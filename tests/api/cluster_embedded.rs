//! The embedded API in a cluster (README "Embedding in your Rust service", `docs/protocol.md`
//! section 13): an application that embeds the gateway as one node reaches users connected to other
//! nodes through its handle, sees them among the active users, and disconnects them.

use serde_json::json;
use switchboard::config::{NatsUrl, NodeId};
use switchboard::{Gateway, Settings};
use tokio_util::sync::CancellationToken;

use crate::cluster_bus::{cluster_place, connect, message, node_via};
use crate::helpers::*;

#[tokio::test]
async fn an_embedding_application_reaches_users_on_other_nodes() {
    let test = "an_embedding_application_reaches_users_on_other_nodes";
    let Some((place, prefix)) = cluster_place(test).await else {
        return;
    };
    let mut settings = Settings::for_database("unused.db", SECRET);
    settings.database = place.settings();
    settings.database.node_id = NodeId::parse("embedded").expect("a node id");
    settings.cluster.nats_url = Some(NatsUrl::new(&nats_url()).expect("a NATS URL"));
    settings.cluster.subject_prefix = prefix.clone();
    let gateway = Gateway::build(settings)
        .await
        .expect("the embedded node joins");
    let handle = gateway.handle();
    let stop = CancellationToken::new();
    let server = tokio::spawn({
        let stop = stop.clone();
        async move { gateway.run_until_stopped(stop).await }
    });
    let b = node_via(&place, &prefix, "node-b", &nats_url()).await;
    let (mut bob, _) = connect(&b, "bob", "USER").await;

    // Bob, on B, is among the embedded node's active users once B has told it.
    let bound = std::time::Duration::from_secs(10);
    eventually(bound, "bob among the embedded node's active users", || {
        std::future::ready(handle.active_users().iter().any(|u| u.user_id == "bob"))
    })
    .await;
    assert_eq!(handle.active_users_count(), 1);

    let sent = handle
        .publish(
            switchboard::Target::User("bob".into()),
            "notification",
            &json!({"message": "from the app", "type": "info"}),
        )
        .await
        .expect("stored");
    assert!(!sent.queued, "bob is online on another node");
    let (note, _) = message(&mut bob, "notification", &json!(sent.id)).await;
    assert_eq!(note["message"], "from the app");
    assert_eq!(note["from"]["userId"], "system");

    assert_eq!(
        handle.disconnect_user("bob"),
        1,
        "bob's one connection, on B"
    );
    let frame = bob
        .close_frame_within(std::time::Duration::from_secs(10))
        .await
        .expect("a close frame");
    assert_eq!(u16::from(frame.code), 1008, "kicked: {frame:?}");

    stop.cancel();
    let _ = server.await;
    drop((b, place));
}
