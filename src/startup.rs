//! [`Gateway`]: opens the store, loads the JWT key, binds the listener (port 0 is fine) and
//! serves the router until told to stop, then shuts down in order.
//!
//! Building is where each shared thing gets its one owner: the metrics registry is made here
//! and handed to the store, the hub and the `AppState`; the store is opened here and handed
//! to the hub (for what it writes under its lock) and the `AppState` (for everyone else).
//!
//! - [`serve`]: the accept loop (header read timeout, connection cap, graceful drain).
//! - [`admission`]: the connection counts behind `MAX_CONNECTIONS` / `MAX_CONNECTIONS_PER_IP`.

mod admission;
mod serve;

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

use crate::access::{self, AccessError, JoinHook, RoomAccess};
use crate::app::{AppState, HandshakeGate};
use crate::auth::Verifier;
use crate::auth::keys::KeyError;
use crate::cluster::{self, Bus, Cluster, ClusterError};
use crate::config::{CorsOrigins, Settings};
use crate::handle::GatewayHandle;
use crate::hub::{CloseReason, Hub};
use crate::metrics::Metrics;
use crate::store::{Outbox, Store, StoreError};
use crate::transport;
use crate::webhooks::{WebhookError, Webhooks};

/// How long a stop waits for the webhook senders' requests under way.
const WEBHOOKS_STOP: std::time::Duration = std::time::Duration::from_secs(2);

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The JWT key could not be loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The webhook senders could not start.
    #[error("{0}")]
    Webhooks(String),
    /// The access settings were refused (`ROOM_POLICIES`, the join hook).
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The cluster could not be joined (`NATS_URL`).
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The address could not be bound.
    #[error("could not listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// The gateway without a listener: for applications that mount its router into their own
/// axum app and serve it themselves. [`Gateway`] is this plus a bound listener.
pub struct EmbeddedGateway {
    state: AppState,
    /// This node's membership of a cluster (`NATS_URL`).
    cluster: Option<Cluster>,
    /// The webhook senders, when an endpoint is configured.
    webhooks: Option<Webhooks>,
    socketio_layer: SocketIoLayer,
    socketio: SocketIo,
}

impl EmbeddedGateway {
    /// Opens the store (migrating it), loads the JWT key and builds the routes.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::build_with_bus(settings, None).await
    }

    /// [`EmbeddedGateway::build`], joining a cluster over `bus` instead of NATS (the tests'
    /// in-process bus, `cluster::memory`). `None`: as `build`.
    #[doc(hidden)]
    pub async fn build_with_bus(
        settings: Settings,
        bus: Option<Arc<dyn Bus>>,
    ) -> Result<Self, StartupError> {
        let mut database = settings.database.clone();
        database.ids_at_commit |= settings.cluster.nats_url.is_some() || bus.is_some();
        let metrics = Metrics::shared();
        let outbox = Outbox::new(database.node_id.as_str(), &settings.webhooks.endpoints);
        let store = Store::open_with_outbox(&database, outbox, metrics.clone()).await?;
        // After the store: for the default location it created the data directory that
        // holds a generated secret.
        let verifier = Verifier::from_settings(&settings.jwt)?;
        for (user_id, not_before) in store.token_revocations().await? {
            verifier.revocations().revoke(&user_id, not_before);
        }
        let hub = Hub::load(store.clone(), metrics.clone(), settings.presence.clone()).await?;
        let policies = access::load_policies(&settings)?;
        hub.set_room_access(RoomAccess::new(&settings, policies));
        let join_hook = JoinHook::from_settings(&settings.access, metrics.clone())?;
        let node_id = &settings.database.node_id;
        let webhooks = Webhooks::start(
            &settings.webhooks,
            &store,
            metrics.clone(),
            node_id.as_str(),
        )
        .map_err(|e: WebhookError| StartupError::Webhooks(e.to_string()))?;
        let cluster = match cluster::choose_bus(bus, node_id, &settings.cluster).await? {
            Some(bus) => Some(
                Cluster::join(
                    hub.clone(),
                    verifier.clone(),
                    node_id,
                    &settings.cluster,
                    bus,
                )
                .await?,
            ),
            None => None,
        };
        let state = AppState {
            hub,
            store,
            handshakes: HandshakeGate::new(&settings.handshake, metrics.clone()),
            metrics,
            verifier,
            settings: Arc::new(settings),
            stopping: CancellationToken::new(),
            connections: TaskTracker::new(),
            join_hook,
            webhook_health: webhooks.as_ref().map(Webhooks::health),
        };
        let (socketio_layer, socketio) = transport::socketio::layer(&state);
        Ok(Self {
            state,
            cluster,
            webhooks,
            socketio_layer,
            socketio,
        })
    }

    /// Every route of the gateway (`/ws`, `/socket.io/`, `/websocket/...`, `/admin/`,
    /// `/healthz`, `/readyz`). Merge it into your app, and serve with
    /// `into_make_service_with_connect_info::<SocketAddr>()` so peer addresses are recorded.
    /// The connection hygiene of [`Gateway`] (header read timeout, `MAX_CONNECTIONS`) belongs
    /// to its accept loop: your server must provide its own.
    pub fn router(&self) -> Router {
        router(self.state.clone(), self.socketio_layer.clone())
    }

    /// The handle for your own code: send to users, roles, everyone; query who is online.
    pub fn handle(&self) -> GatewayHandle {
        GatewayHandle::new(
            self.state.hub.clone(),
            self.state.store.clone(),
            self.state.settings.limits.max_queued_per_user,
        )
    }

    /// The hub: for the benches and tests, not API.
    #[doc(hidden)]
    pub fn hub(&self) -> Hub {
        self.state.hub.clone()
    }

    /// First half of a graceful stop: refuse new connections and ask every open one to
    /// close with reason `server_shutdown`. Call it when your server starts shutting down
    /// (axum's graceful shutdown does not wait for upgraded connections).
    pub fn begin_shutdown(&self) -> impl Future<Output = ()> + Send + 'static {
        let state = self.state.clone();
        let io = self.socketio.clone();
        async move {
            state.stopping.cancel();
            let spread = state.settings.limits.reconnect_spread;
            state
                .hub
                .close_all_spread(CloseReason::ServerShutdown, spread);
            // Socket.IO sessions say why (an `error` event) and end without a Socket.IO
            // DISCONNECT, after which socket.io-client would never reconnect; closing the
            // Engine.IO transports once they have (or after a bound) is what tells every
            // official client to come back by itself.
            state.connections.close();
            let said_goodbye = 2 * transport::socketio::CLOSE_GRACE;
            let _ = tokio::time::timeout(said_goodbye, state.connections.wait()).await;
            io.close().await;
        }
    }

    /// Second half: wait (up to `SHUTDOWN_TIMEOUT_SECS`) for the connections to close, then
    /// let the store commit its last writes.
    pub async fn finish_shutdown(self) {
        let state = self.state;
        state.stopping.cancel();
        state.hub.close_all(CloseReason::ServerShutdown);
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
        if let Some(cluster) = self.cluster {
            cluster.leave().await;
        }
        if let Some(webhooks) = self.webhooks {
            // A request still out after this is abandoned: its events stay pending and go
            // again at the next start (at least once).
            let _ = tokio::time::timeout(WEBHOOKS_STOP, webhooks.stop()).await;
        }
        if tokio::time::timeout(timeout, state.store.close())
            .await
            .is_err()
        {
            tracing::error!("the store did not finish its writes in time");
        }
    }
}

/// A bound, ready-to-run gateway.
pub struct Gateway {
    listener: TcpListener,
    embedded: EmbeddedGateway,
}

/// Connections the kernel may hold for the accept loop. tokio's `TcpListener::bind` asks for
/// 1,024, and a reconnect storm (2,000 arrivals a second while the loop also serves) overflowed
/// it: a dropped SYN is retried by the client's kernel after 1 s, which was the storm's p99.
/// Linux caps it at `net.core.somaxconn` (4,096 by default).
const LISTEN_BACKLOG: u32 = 4096;

/// A listening socket on `addr`, with [`LISTEN_BACKLOG`].
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restart may bind while the old sockets are in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

impl Gateway {
    /// Opens the store, loads the key and binds. Nothing is served until
    /// [`Gateway::run_until_stopped`].
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::build_with_bus(settings, None).await
    }

    /// [`Gateway::build`] over another bus than NATS: see
    /// [`EmbeddedGateway::build_with_bus`].
    #[doc(hidden)]
    pub async fn build_with_bus(
        settings: Settings,
        bus: Option<Arc<dyn Bus>>,
    ) -> Result<Self, StartupError> {
        let bind_addr = settings.bind_addr;
        let embedded = EmbeddedGateway::build_with_bus(settings, bus).await?;
        let listener = listen(bind_addr).map_err(|source| StartupError::Bind {
            addr: bind_addr,
            source,
        })?;
        Ok(Self { listener, embedded })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.embedded.state.settings.bind_addr)
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The hub: for the benches and tests, not API.
    #[doc(hidden)]
    pub fn hub(&self) -> Hub {
        self.embedded.hub()
    }

    /// The handle for application code.
    pub fn handle(&self) -> GatewayHandle {
        self.embedded.handle()
    }

    /// The router, for embedders that serve it themselves.
    pub fn router(&self) -> Router {
        self.embedded.router()
    }

    /// Serves until `stop` is cancelled, then: refuses new connections, closes every session
    /// with reason `server_shutdown` (close frames are sent), waits for them up to
    /// `SHUTDOWN_TIMEOUT_SECS`, and lets the store commit its last writes.
    pub async fn run_until_stopped(self, stop: CancellationToken) -> std::io::Result<()> {
        let Self { listener, embedded } = self;
        tracing::info!("listening on http://{}", listener.local_addr()?);
        let settings = embedded.state.settings.clone();
        let begin = embedded.begin_shutdown();
        let on_stop = async move {
            stop.cancelled().await;
            begin.await;
        };
        let drain_timeout = settings.limits.shutdown_timeout;
        serve::serve(
            listener,
            embedded.router(),
            &settings.connections,
            drain_timeout,
            on_stop,
        )
        .await;
        embedded.finish_shutdown().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The HTTP routes: `/ws`, `/socket.io/`, the REST API, the dashboard and `/healthz`, with CORS per `CORS_ORIGINS`. The
/// Origin and handshake guard sits outside socketioxide's layer, so that it sees Socket.IO
/// requests first, and inside CORS, so that preflights are still answered.
fn router(state: AppState, socketio: SocketIoLayer) -> Router {
    let cors = match &state.settings.cors_origins {
        CorsOrigins::Any => CorsLayer::new().allow_origin(Any),
        CorsOrigins::List(list) => CorsLayer::new().allow_origin(AllowOrigin::list(
            list.iter().filter_map(|o| HeaderValue::from_str(o).ok()),
        )),
    }
    .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
    .allow_headers(Any);
    let max_body = state.settings.limits.max_body_bytes;
    Router::new()
        .route("/ws", get(transport::ws::upgrade))
        .merge(crate::api::router(max_body))
        .with_state(state.clone())
        .layer(socketio)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            transport::handshake::socketio_guard,
        ))
        .layer(cors)
}
