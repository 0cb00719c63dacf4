//! Webhooks (`docs/protocol.md` section 15): the senders that empty the store's outbox into
//! the configured endpoints. The store writes the events, in the same commit as the facts
//! they report (`store/outbox.rs`); this module only sends them: one task per endpoint
//! (`sender.rs`), each request built and signed by `request.rs`, and a housekeeping task
//! that publishes each endpoint's backlog as metrics and prunes old rows. What each sender
//! last did is kept in memory for the operators (`health.rs`, [`Webhooks::health`]).
//!
//! It sits beside `access`, above the store: it reads and marks outbox rows through the
//! store's API and knows nothing of the hub.

mod health;
mod request;
mod sender;

pub use health::{EndpointHealth, WebhookHealth};

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::WebhookSettings;
use crate::metrics::Metrics;
use crate::protocol::wire::timestamp;
use crate::store::Store;

/// How often each endpoint's backlog is read into the metrics.
const BACKLOG_EVERY: Duration = Duration::from_secs(10);
/// How often sent and failed rows past their retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The running senders; stopped by [`Webhooks::stop`].
pub struct Webhooks {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    health: WebhookHealth,
}

/// Why the senders could not start.
#[derive(Debug, thiserror::Error)]
#[error("webhooks: {0}")]
pub struct WebhookError(String);

impl Webhooks {
    /// Starts a sender per endpoint of `settings` (none configured: `None`, nothing runs).
    /// `holder` names this node in the endpoints' leases.
    pub fn start(
        settings: &WebhookSettings,
        store: &Store,
        metrics: Arc<Metrics>,
        holder: &str,
    ) -> Result<Option<Self>, WebhookError> {
        if settings.endpoints.is_empty() {
            return Ok(None);
        }
        let client = reqwest::Client::builder()
            // A signed request goes where it was configured to, and nowhere else.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WebhookError(e.to_string()))?;
        let settings = Arc::new(settings.clone());
        let (stop, stopping) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let health = WebhookHealth::default();
        for endpoint in &settings.endpoints {
            let sender = sender::Sender {
                endpoint: endpoint.clone(),
                store: store.clone(),
                settings: settings.clone(),
                client: client.clone(),
                metrics: metrics.clone(),
                holder: holder.to_owned(),
                health: health.clone(),
            };
            tasks.spawn(sender.run(stopping.clone()));
        }
        tasks.spawn(housekeeping(
            store.clone(),
            settings.clone(),
            metrics,
            stopping,
        ));
        Ok(Some(Self {
            stop,
            tasks,
            health,
        }))
    }

    /// What each endpoint's sender last did, live (a handle on the same map).
    pub fn health(&self) -> WebhookHealth {
        self.health.clone()
    }

    /// Stops the senders after the request each has under way, and hands the leases on.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Publishes the backlog of every endpoint as metrics, and prunes old rows, until stopped.
async fn housekeeping(
    store: Store,
    settings: Arc<WebhookSettings>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backlog = tokio::time::interval(BACKLOG_EVERY);
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            _ = backlog.tick() => {
                if let Ok(all) = store.webhook_backlog().await {
                    for endpoint in &settings.endpoints {
                        let found = all.iter().find(|b| b.endpoint == endpoint.name);
                        let (pending, failed) = found.map_or((0, 0), |b| (b.pending, b.failed));
                        metrics.webhooks().backlog(&endpoint.name, pending, failed);
                    }
                }
            }
            _ = prune.tick() => {
                let Some(keep) = settings.retention() else { continue };
                let Some(before) = SystemTime::now().checked_sub(keep) else { continue };
                match store.prune_webhook_events(&timestamp(before)).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "webhooks: pruned old outbox rows"),
                    Err(e) => tracing::warn!(error = %e, "webhooks: pruning failed"),
                }
            }
            _ = stop.changed() => break,
        }
    }
}
