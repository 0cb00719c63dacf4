//! [`AppState`]: what the request handlers of every door (the two transports, the REST API)
//! share, built once by [`startup`](crate::startup) and handed down. It lives here, below
//! everything that uses it and above the layers it bundles, so that dependencies point one
//! way: `startup → {api, transport, handle} → app → commands → hub → store`.
//!
//! One owner per dependency, as zero2prod keeps one `web::Data<T>` for each: the hub (live
//! state, routing), the store (everything durable: the doors read history from it here, not
//! through the hub), the metrics (made at start-up, the same set the store and the hub
//! record in), the verifier, the settings and the webhook senders' health. Handlers that need only a part take that part:
//! axum's `FromRef` turns the whole state into a [`Hub`], a [`Store`], the [`Metrics`], a
//! [`Verifier`] or the [`Settings`] on demand (each a cheap clone).
//!
//! [`handshake_gate`]: the one gate both transports' handshakes take turns at.

mod handshake_gate;

use std::sync::Arc;

use axum::extract::FromRef;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access::JoinHook;
use crate::auth::Verifier;
use crate::commands::CommandLimits;
use crate::config::Settings;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::protocol::events::ParseLimits;
use crate::store::Store;
use crate::webhooks::WebhookHealth;
pub(crate) use handshake_gate::{HandshakeGate, Turn};

/// What every request handler shares; cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState {
    pub hub: Hub,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub verifier: Verifier,
    pub settings: Arc<Settings>,
    /// Cancelled when the server starts shutting down: no new connections after that.
    pub stopping: CancellationToken,
    /// Every upgraded connection, so shutdown can wait for them (axum's graceful shutdown
    /// does not: upgraded sockets leave hyper's books).
    pub connections: TaskTracker,
    /// Handshakes under way and the connections waiting for a turn (`HANDSHAKE_*`).
    pub handshakes: Arc<HandshakeGate>,
    /// The application's join hook (`JOIN_HOOK_URL`), when one is configured.
    pub join_hook: Option<Arc<JoinHook>>,
    /// What each webhook endpoint's sender last did, when endpoints are configured (the
    /// operators' view: `GET /websocket/webhooks`, the dashboard).
    pub webhook_health: Option<WebhookHealth>,
}

impl AppState {
    /// The per-connection limits the commands enforce, from the configuration.
    pub fn command_limits(&self) -> CommandLimits {
        let limits = &self.settings.limits;
        CommandLimits {
            parse: ParseLimits {
                max_message_chars: limits.max_message_chars,
            },
            max_rooms_per_user: limits.max_rooms_per_user,
            max_queued_per_user: limits.max_queued_per_user,
        }
    }
}

impl FromRef<AppState> for Hub {
    fn from_ref(app: &AppState) -> Self {
        app.hub.clone()
    }
}

impl FromRef<AppState> for Store {
    fn from_ref(app: &AppState) -> Self {
        app.store.clone()
    }
}

impl FromRef<AppState> for Arc<Metrics> {
    fn from_ref(app: &AppState) -> Self {
        app.metrics.clone()
    }
}

impl FromRef<AppState> for Verifier {
    fn from_ref(app: &AppState) -> Self {
        app.verifier.clone()
    }
}

impl FromRef<AppState> for Arc<Settings> {
    fn from_ref(app: &AppState) -> Self {
        app.settings.clone()
    }
}
