//! [`Gateway`]: opens the store, loads the JWT key, binds the listener (port 0 is fine) and
//! serves the router until told to stop, then shuts down in order.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, Method};
use axum::routing::get;
use socketioxide::SocketIo;
use socketioxide::layer::SocketIoLayer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use crate::auth::Verifier;
use crate::auth::keys::KeyError;
use crate::commands::CommandLimits;
use crate::config::{CorsOrigins, Settings};
use crate::hub::{CloseReason, Hub};
use crate::protocol::events::ParseLimits;
use crate::store::{Store, StoreError};
use crate::transport;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The JWT key could not be loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The address could not be bound.
    #[error("could not listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Live state and routing.
    pub hub: Hub,
    /// Token verification.
    pub verifier: Verifier,
    /// The configuration.
    pub settings: Arc<Settings>,
    /// Cancelled when the server starts shutting down: no new connections after that.
    pub stopping: CancellationToken,
    /// Every upgraded connection, so shutdown can wait for them (axum's graceful shutdown
    /// does not: upgraded sockets leave hyper's books).
    pub connections: TaskTracker,
}

impl AppState {
    /// The limits commands need.
    pub fn command_limits(&self) -> CommandLimits {
        CommandLimits {
            parse: ParseLimits {
                max_message_chars: self.settings.limits.max_message_chars,
            },
            max_rooms_per_user: self.settings.limits.max_rooms_per_user,
            max_queued_per_user: self.settings.limits.max_queued_per_user,
        }
    }
}

/// A bound, ready-to-run gateway.
pub struct Gateway {
    listener: TcpListener,
    state: AppState,
    store: Store,
    socketio: (SocketIoLayer, SocketIo),
}

impl Gateway {
    /// Opens the store, loads the key and binds. Nothing is served until
    /// [`Gateway::run_until_stopped`].
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let store = Store::open(&settings.database).await?;
        // After the store: for the default location it created the data directory that
        // holds a generated secret.
        let verifier = Verifier::from_settings(&settings.jwt)?;
        let listener = TcpListener::bind(settings.bind_addr)
            .await
            .map_err(|source| StartupError::Bind {
                addr: settings.bind_addr,
                source,
            })?;
        let state = AppState {
            hub: Hub::load(store.clone()).await?,
            verifier,
            settings: Arc::new(settings),
            stopping: CancellationToken::new(),
            connections: TaskTracker::new(),
        };
        let socketio = transport::socketio::layer(&state);
        Ok(Self {
            listener,
            state,
            store,
            socketio,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.state.settings.bind_addr)
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The hub, for embedders and tests.
    pub fn hub(&self) -> Hub {
        self.state.hub.clone()
    }

    /// The router (`/ws`, `/socket.io/`, `/healthz`), for embedders that serve it themselves.
    pub fn router(&self) -> Router {
        router(self.state.clone(), self.socketio.0.clone())
    }

    /// Serves until `stop` is cancelled, then: refuses new connections, closes every session
    /// with reason `server_shutdown` (close frames are sent), waits for them up to
    /// `SHUTDOWN_TIMEOUT_SECS`, and lets the store commit its last writes.
    pub async fn run_until_stopped(self, stop: CancellationToken) -> std::io::Result<()> {
        let Self {
            listener,
            state,
            store,
            socketio: (layer, io),
        } = self;
        tracing::info!("listening on http://{}", listener.local_addr()?);
        let app = router(state.clone(), layer).into_make_service_with_connect_info::<SocketAddr>();
        let on_stop = {
            let state = state.clone();
            async move {
                stop.cancelled().await;
                state.stopping.cancel();
                state.hub.close_all(CloseReason::ServerShutdown);
                io.close().await;
            }
        };
        axum::serve(listener, app)
            .with_graceful_shutdown(on_stop)
            .await?;
        state.connections.close();
        let timeout = state.settings.limits.shutdown_timeout;
        if tokio::time::timeout(timeout, state.connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = state.hub.session_count(),
                "connections did not close in time"
            );
        }
        if tokio::time::timeout(timeout, store.close()).await.is_err() {
            tracing::error!("the store did not finish its writes in time");
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// The HTTP routes: `/ws`, `/socket.io/` and `/healthz`, with CORS per `CORS_ORIGINS`.
pub fn router(state: AppState, socketio: SocketIoLayer) -> Router {
    let cors = match &state.settings.cors_origins {
        CorsOrigins::Any => CorsLayer::new().allow_origin(Any),
        CorsOrigins::List(list) => CorsLayer::new().allow_origin(AllowOrigin::list(
            list.iter().filter_map(|o| HeaderValue::from_str(o).ok()),
        )),
    }
    .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
    .allow_headers(Any);
    Router::new()
        .route("/ws", get(transport::ws::upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
        .layer(socketio)
        .layer(cors)
}
