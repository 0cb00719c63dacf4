//! The harness: spawn the real gateway (in-process or as the binary), mint tokens, drive real
//! clients whose every wait has a bound, and wait for a condition with [`eventually`]. One
//! file per subject; everything is re-exported here, so a test says `use crate::helpers::*`.

mod binary;
mod db;
mod nats;
mod polling;
mod proxy;
mod receiver;
mod sio;
mod tokens;
mod ws;

pub use binary::*;
pub use db::*;
pub use nats::*;
pub use polling::*;
pub use proxy::*;
pub use receiver::*;
pub use sio::*;
pub use tokens::*;
pub use ws::*;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use sqlx::SqlitePool;
use switchboard::{Gateway, Settings};
use tempfile::TempDir;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_util::sync::CancellationToken;

/// The HS256 secret every test server uses.
pub const SECRET: &str = "integration-test-secret-0123456789abcdef";
/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long "nothing arrives" is watched for.
pub const QUIET: Duration = Duration::from_millis(300);

static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        switchboard::telemetry::init(switchboard::config::LogFormat::Pretty);
    }
});

/// How often [`eventually`] probes.
const PROBE_EVERY: Duration = Duration::from_millis(25);

/// What a probe of [`eventually`] may answer: `Some(value)` or `true` when the awaited
/// condition holds.
pub trait Probed {
    /// What [`eventually`] returns once the condition holds.
    type Value;
    /// The value, when the condition holds.
    fn found(self) -> Option<Self::Value>;
}

impl<T> Probed for Option<T> {
    type Value = T;
    fn found(self) -> Option<T> {
        self
    }
}

impl Probed for bool {
    type Value = ();
    fn found(self) -> Option<()> {
        self.then_some(())
    }
}

/// Runs `probe` every few milliseconds until it answers `Some(value)` (or `true`), and
/// returns that value; fails the test, naming `what` was awaited, once `bound` has passed.
/// The probe runs at least once, however short the bound. For conditions a test can only
/// poll (a row written, a metric counted, a node noticed); an event on a client is awaited
/// on the client itself. The probe is an async closure, so it may borrow a client mutably.
pub async fn eventually<P: Probed>(
    bound: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> P,
) -> P::Value {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        if let Some(value) = probe().await.found() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {bound:?}: {what}"
        );
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// A running gateway on a fresh database.
pub struct TestApp {
    pub addr: SocketAddr,
    /// The SQLite file (empty on PostgreSQL: see [`TestApp::place`]).
    pub db_path: PathBuf,
    place: Place,
    stop: CancellationToken,
    server: Option<tokio::task::JoinHandle<()>>,
    _dir: Option<TempDir>,
}

/// Starts a gateway with default test settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts a gateway after `tweak` adjusted the settings.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let db_path = dir.path().join("switchboard.db");
    let mut app = spawn_app_on(&db_path, tweak).await;
    app._dir = Some(dir);
    app
}

/// Starts a gateway on an existing database file (for restarts).
pub async fn spawn_app_on(db_path: &Path, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_at(&Place::Sqlite(db_path.to_path_buf()), tweak).await
}

/// The database a test runs on.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A database of its own on the local PostgreSQL.
    Postgres,
}

/// Runs each `async fn name(backend: Backend)` listed as two tests, `sqlite::name` and
/// `postgres::name`: the same assertions on both stores.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::helpers::Backend::Sqlite).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::helpers::Backend::Postgres).await
            })*
        }
    };
}
pub(crate) use on_both_backends;

/// Starts a gateway on `backend` with default test settings adjusted by `tweak`; `None`
/// when the test must be skipped (PostgreSQL unreachable outside CI).
pub async fn spawn_on(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> Option<TestApp> {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let (place, dir) = Place::fresh(backend, &test).await?;
    let mut app = spawn_app_at(&place, tweak).await;
    app._dir = dir;
    Some(app)
}

/// Starts a gateway on the data at `place` (for restarts).
pub async fn spawn_app_at(place: &Place, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = test_settings(place);
    tweak(&mut settings);
    let gateway = Gateway::build(settings).await.expect("gateway starts");
    spawn_built(place, gateway)
}

/// The test settings of a gateway on the data at `place`: port 0, the test secret.
pub fn test_settings(place: &Place) -> Settings {
    LazyLock::force(&TRACING);
    let mut settings = Settings::for_database("unused.db", SECRET);
    settings.database = place.settings();
    settings
}

/// Runs `gateway`, built by the test on the data at `place`, until the app is stopped.
pub fn spawn_built(place: &Place, gateway: Gateway) -> TestApp {
    let addr = gateway.local_addr();
    let stop = CancellationToken::new();
    let server = tokio::spawn({
        let stop = stop.clone();
        async move {
            gateway.run_until_stopped(stop).await.expect("server runs");
        }
    });
    TestApp {
        addr,
        db_path: match place {
            Place::Sqlite(path) => path.clone(),
            Place::Postgres(_) => PathBuf::new(),
        },
        place: place.clone(),
        stop,
        server: Some(server),
        _dir: None,
    }
}

impl TestApp {
    /// A valid HS256 token for `sub` with `role` (username = `sub` capitalised).
    pub fn token(&self, sub: &str, role: &str) -> String {
        let mut name = sub.to_string();
        if let Some(first) = name.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        sign(
            Algorithm::HS256,
            &json!({"sub": sub, "username": name, "role": role, "exp": in_an_hour()}),
        )
    }

    /// The `/ws` URL.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Connects with a token in the `Authorization` header; panics on refusal.
    pub async fn ws(&self, token: &str) -> WsClient {
        self.ws_query(token, "").await
    }

    /// Like [`TestApp::ws`], with a query string (`?lastMessageId=...`).
    pub async fn ws_query(&self, token: &str, query: &str) -> WsClient {
        self.try_ws_query(token, query)
            .await
            .expect("connection accepted")
    }

    /// Like [`TestApp::ws_query`]; a refusal returns the HTTP status and body.
    pub async fn try_ws_query(
        &self,
        token: &str,
        query: &str,
    ) -> Result<WsClient, (StatusCode, String)> {
        let mut request = format!("{}{query}", self.ws_url())
            .into_client_request()
            .expect("request");
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
        );
        self.connect(request).await
    }

    /// Connects as `sub` with `role` and reads the `connected` frame.
    pub async fn user(&self, sub: &str, role: &str) -> (WsClient, Value) {
        let mut client = self.ws(&self.token(sub, role)).await;
        let connected = client.expect("connected").await;
        (client, connected)
    }

    /// Connects as `sub` (role USER) passing the last message id it saw.
    pub async fn user_since(&self, sub: &str, last_message_id: u64) -> (WsClient, Value) {
        let query = format!("?lastMessageId={last_message_id}");
        let mut client = self.ws_query(&self.token(sub, "USER"), &query).await;
        let connected = client.expect("connected").await;
        (client, connected)
    }

    /// Connects with any request; a refusal returns the HTTP status and body.
    pub async fn connect(
        &self,
        request: tungstenite::handshake::client::Request,
    ) -> Result<WsClient, (StatusCode, String)> {
        match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .expect("handshake within the timeout")
        {
            Ok((stream, _)) => Ok(WsClient { stream }),
            Err(tungstenite::Error::Http(response)) => {
                let status = response.status();
                let body = response
                    .into_body()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                Err((status, body))
            }
            Err(e) => panic!("unexpected handshake error: {e}"),
        }
    }

    /// An absolute URL on the server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A REST request with a bearer token for `sub` / `role`.
    pub fn rest(
        &self,
        method: reqwest::Method,
        path: &str,
        sub: &str,
        role: &str,
    ) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .request(method, self.url(path))
            .bearer_auth(self.token(sub, role))
            .timeout(WAIT)
    }

    /// Opens the database file directly, as an operator with sqlite3 would.
    pub async fn db(&self) -> SqlitePool {
        open_db(&self.db_path).await
    }

    /// Where the data lives: restart on it with [`spawn_app_at`].
    pub fn place(&self) -> Place {
        self.place.clone()
    }

    /// The database directly, SQLite or PostgreSQL, as an operator would query it.
    pub async fn sql(&self) -> Sql {
        Sql::open(&self.place).await
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(15), server)
                .await
                .expect("server stops in time")
                .expect("server task");
        }
    }

    /// Keeps the temp dir alive beyond this app (for a restart on the same file).
    pub fn take_dir(&mut self) -> Option<TempDir> {
        self._dir.take()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The recorded end of `user_id`'s latest session. Call it after a live client saw the
/// user's `user-disconnected`: the close was handed to the store before that event, and the
/// stats request made here through `flusher` flushes the store behind it.
pub async fn reason_of(app: &TestApp, flusher: &mut WsClient, user_id: &str) -> Option<String> {
    flusher.emit("get-users-stats", Value::Null).await;
    flusher.wait_for("users-stats").await;
    app.sql()
        .await
        .scalar(
            "SELECT disconnect_reason FROM sessions WHERE user_id = $1
             ORDER BY session_id DESC LIMIT 1",
            &[user_id],
        )
        .await
}
