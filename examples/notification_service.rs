//! The seed's `NotificationService`, in Rust: an application that embeds switchboard, mounts
//! its routes next to its own, and notifies users from its own code through a
//! [`GatewayHandle`].
//!
//! ```sh
//! JWT_SECRET=change-me-to-a-long-secret cargo run --example notification_service
//! curl -X POST --data 'Your report is ready' http://127.0.0.1:3000/app/notify/alice
//! curl -X POST --data 'Deploy at 10:00'      http://127.0.0.1:3000/app/announce
//! curl -X POST --data 'Disk almost full'     http://127.0.0.1:3000/app/notify-admins
//! curl http://127.0.0.1:3000/app/active-count
//! ```
//!
//! The `/app/...` routes stand for the application's own code paths; a real application
//! protects them with its own authentication.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use switchboard::protocol::wire;
use switchboard::{EmbeddedGateway, GatewayHandle, Settings, shutdown, telemetry};
use tokio_util::sync::CancellationToken;

/// The seed's service: notify a user, broadcast an announcement, notify admins, count users.
struct NotificationService {
    gateway: GatewayHandle,
}

impl NotificationService {
    async fn notify_user(&self, user_id: &str, message: &str) -> bool {
        self.gateway
            .send_to_user(
                user_id,
                "notification",
                &json!({ "message": message, "type": "info", "timestamp": wire::now() }),
            )
            .await
    }

    async fn broadcast_announcement(&self, message: &str) -> usize {
        self.gateway
            .broadcast_to_all(
                "announcement",
                &json!({ "message": message, "timestamp": wire::now() }),
            )
            .await
    }

    async fn notify_admins(&self, message: &str) -> usize {
        self.gateway
            .broadcast_to_role(
                "ADMIN",
                "admin-notification",
                &json!({ "message": message, "timestamp": wire::now() }),
            )
            .await
    }

    fn get_active_users_count(&self) -> usize {
        self.gateway.active_users_count()
    }
}

type Service = State<Arc<NotificationService>>;

async fn notify(State(s): Service, Path(user): Path<String>, message: String) -> Json<Value> {
    Json(json!({ "delivered": s.notify_user(&user, &message).await }))
}

async fn announce(State(s): Service, message: String) -> Json<Value> {
    Json(json!({ "recipients": s.broadcast_announcement(&message).await }))
}

async fn notify_admins(State(s): Service, message: String) -> Json<Value> {
    Json(json!({ "recipients": s.notify_admins(&message).await }))
}

async fn active_count(State(s): Service) -> Json<Value> {
    Json(json!({ "activeUsers": s.get_active_users_count() }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let _ = dotenvy::dotenv();
    let settings = Settings::from_env()?;
    telemetry::init(settings.log_format);
    let bind_addr = settings.bind_addr;

    // The gateway, from the application's own configuration.
    let gateway = EmbeddedGateway::build(settings).await?;
    let service = Arc::new(NotificationService {
        gateway: gateway.handle(),
    });

    // The application's routes, with the gateway's mounted beside them.
    let app = Router::new()
        .route("/app/notify/{user}", post(notify))
        .route("/app/announce", post(announce))
        .route("/app/notify-admins", post(notify_admins))
        .route("/app/active-count", get(active_count))
        .with_state(service)
        .merge(gateway.router());

    let listener = tokio::net::TcpListener::bind(bind_addr).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    let stop = CancellationToken::new();
    shutdown::cancel_on_signal(stop.clone());
    // axum's graceful shutdown does not wait for upgraded connections: the gateway closes
    // them itself when the shutdown begins, and commits its store when it ends.
    let begin = gateway.begin_shutdown();
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        stop.cancelled().await;
        begin.await;
    })
    .await?;
    gateway.finish_shutdown().await;
    Ok(())
}
