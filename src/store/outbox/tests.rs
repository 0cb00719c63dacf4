//! The outbox on both backends: every fact once, in order, and nothing without endpoints.

use std::sync::Arc;

use crate::auth::Identity;
use crate::config::{DatabaseSettings, Subscription, WebhookEndpoint, WebhookEvent, WebhookSecret};
use crate::metrics::Metrics;
use crate::protocol::wire::now;
use crate::store::{NewSession, Outbox, Store};

fn endpoint(name: &str, events: Vec<WebhookEvent>, rooms: &[&str]) -> WebhookEndpoint {
    WebhookEndpoint {
        name: name.into(),
        url: "http://127.0.0.1:9/".into(),
        secret: WebhookSecret::parse("whsec_c2VjcmV0").expect("secret"),
        subscription: Subscription {
            events,
            message_events: Vec::new(),
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
        },
    }
}

fn user(id: &str) -> Identity {
    Identity {
        user_id: id.into(),
        username: format!("{id}'s name").into(),
        role: "USER".into(),
        exp: u64::MAX,
        iat: None,
        grants: None,
    }
}

fn open_session(store: &Store, id: u64, who: &Identity) {
    store.session_opened(NewSession {
        session_id: id,
        identity: who,
        transport: "ws",
        remote_addr: None,
        user_agent: None,
        at: &now(),
    });
}

async fn types(store: &Store, endpoint: &str) -> Vec<String> {
    store.flush().await;
    let events = store
        .pending_webhooks(endpoint, 1000, usize::MAX)
        .await
        .expect("read the outbox");
    events.into_iter().map(|e| e.kind).collect()
}

/// Online and offline follow the user's first and last session, across batches and
/// within one; rooms filter what names a room; no endpoint, no rows.
async fn reports_each_fact_once(settings: DatabaseSettings) {
    let endpoints = [
        endpoint("all", WebhookEvent::ALL.to_vec(), &[]),
        endpoint("tickets", vec![WebhookEvent::RoomJoined], &["ticket-*"]),
    ];
    let store = Store::open_with_outbox(
        &settings,
        Outbox::new("node-a", &endpoints),
        Metrics::shared(),
    )
    .await
    .expect("open the store");
    let ann = user("ann");

    open_session(&store, 1, &ann);
    store.flush().await;
    open_session(&store, 2, &ann);
    store.room_joined("ticket-7", "ann", &now(), Default::default());
    store.room_joined("lobby", "ann", &now(), Default::default());
    store.room_left("lobby", "ann", "left", &now());
    store.session_closed(1, "client_closed", &now());
    store.flush().await;
    store.session_closed(2, "idle_timeout", &now());
    // A second close of the same session reports nothing.
    store.session_closed(2, "kicked", &now());
    // Opened and closed in one batch: online, then offline.
    let bob = user("bob");
    open_session(&store, 3, &bob);
    store.session_closed(3, "client_closed", &now());

    assert_eq!(
        types(&store, "all").await,
        [
            "user.online",
            "session.opened",
            "session.opened",
            "room.joined",
            "room.joined",
            "room.left",
            "session.closed",
            "session.closed",
            "user.offline",
            "user.online",
            "session.opened",
            "session.closed",
            "user.offline",
        ]
    );
    assert_eq!(types(&store, "tickets").await, ["room.joined"]);
    let all = store
        .pending_webhooks("all", 1000, usize::MAX)
        .await
        .expect("read");
    let offline: serde_json::Value = serde_json::from_str(&all[8].data).expect("data is JSON");
    assert_eq!(offline["user"]["userId"], "ann");
    assert_eq!(offline["user"]["username"], "ann's name");
    assert_eq!(offline["reason"], "idle_timeout");
    assert_eq!(offline["node"], "node-a");
    store.close().await;

    // Without endpoints nothing is written, and the events no endpoint will send any more are
    // failed (listed, prunable, sendable again once their endpoint is back).
    let store = Store::open(&settings, Arc::new(Metrics::new()))
        .await
        .expect("open again");
    open_session(&store, 4, &ann);
    store.session_closed(4, "client_closed", &now());
    store.flush().await;
    let backlog = store.webhook_backlog().await.expect("backlog");
    let (pending, failed) = backlog
        .iter()
        .fold((0, 0), |(p, f), b| (p + b.pending, f + b.failed));
    assert_eq!((pending, failed), (0, 13 + 1), "{backlog:?}");
    let unconfigured = store
        .failed_webhooks(Some("tickets"), 0, 10)
        .await
        .expect("failed");
    assert_eq!(
        unconfigured[0].last_error.as_deref(),
        Some(Outbox::UNCONFIGURED)
    );
    store.close().await;
}

#[tokio::test]
async fn sqlite_reports_each_fact_once() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    reports_each_fact_once(DatabaseSettings::at(dir.path().join("outbox.db"))).await;
}

#[tokio::test]
async fn postgres_reports_each_fact_once() {
    let Some(db) = crate::store::postgres::testing::database("outbox").await else {
        return;
    };
    reports_each_fact_once(db.settings.clone()).await;
}
