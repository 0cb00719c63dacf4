//! The harness: spawn the real gateway (in-process or as the release binary), mint tokens,
//! and drive real WebSocket clients whose every wait has a timeout.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sqlx::postgres::PgRow;
use sqlx::sqlite::{SqliteConnectOptions, SqliteRow};
use sqlx::{Connection, FromRow, PgConnection, PgPool, Postgres, Sqlite, SqlitePool};
use switchboard::config::{DatabaseSettings, PostgresUrl};
use switchboard::{Gateway, Settings};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
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

/// Where a gateway's data lives; a clone restarts a gateway on the same data. A PostgreSQL
/// database is dropped once the last clone is gone.
#[derive(Clone)]
pub enum Place {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres(std::sync::Arc<PgDatabase>),
}

impl Place {
    /// Settings that open a store on it (every other setting at its default).
    pub fn settings(&self) -> DatabaseSettings {
        match self {
            Self::Sqlite(path) => DatabaseSettings::at(path),
            Self::Postgres(db) => DatabaseSettings::postgres(db.url.clone()),
        }
    }

    /// `DATABASE_URL` for a child process.
    pub fn url(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("sqlite://{}", path.display()),
            Self::Postgres(db) => db.url.expose().to_owned(),
        }
    }

    /// A fresh place on `backend`; `None` when PostgreSQL is unreachable (outside CI), after
    /// a loud SKIPPED line naming `test`. The temporary directory of a SQLite file goes to
    /// the caller to keep.
    pub async fn fresh(backend: Backend, test: &str) -> Option<(Self, Option<TempDir>)> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join("switchboard.db");
                Some((Self::Sqlite(path), Some(dir)))
            }
            Backend::Postgres => {
                let db = PgDatabase::create(test).await?;
                Some((Self::Postgres(std::sync::Arc::new(db)), None))
            }
        }
    }
}

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

/// Calls `probe` until it gives a value, every 50 ms for at most `bound`; `None` when it
/// never did. For states that have no event to wait for (a row written, a door reopened).
pub async fn eventually<T, F>(bound: Duration, mut probe: impl FnMut() -> F) -> Option<T>
where
    F: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A test database of its own on the local PostgreSQL (`TEST_POSTGRES_URL`, else
/// `postgres://postgres@127.0.0.1:5432`), dropped when this drops, even after a failure.
pub struct PgDatabase {
    name: String,
    url: PostgresUrl,
}

/// Says loudly that `test` did not run on PostgreSQL. Written to stderr itself, not through
/// `eprintln!`, which the test harness captures (and hides) for a test that passes.
fn skipped(test: &str, cause: &dyn std::fmt::Display) {
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "\n!! SKIPPED {test} on PostgreSQL: unreachable ({cause}); with CI=true this fails !!\n"
    );
}

fn postgres_server() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

impl PgDatabase {
    /// Creates one; `None` after a loud SKIPPED line when PostgreSQL is unreachable, except
    /// with `CI=true`, where that fails the test.
    pub async fn create(test: &str) -> Option<Self> {
        let mut admin =
            match PgConnection::connect(&format!("{}/postgres", postgres_server())).await {
                Ok(conn) => conn,
                Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                    panic!("PostgreSQL is unreachable and CI=true: {e}")
                }
                Err(e) => {
                    skipped(test, &e);
                    return None;
                }
            };
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).expect("random bytes");
        let name = format!("sb_test_{:016x}", u64::from_le_bytes(random));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let url = PostgresUrl::parse(&format!("{}/{name}", postgres_server())).expect("a URL");
        Some(Self { name, url })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Drop is not async, and may run while a failed test unwinds: a thread with its own
        // runtime. FORCE ends the connections a gateway still holds.
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let mut admin =
                    PgConnection::connect(&format!("{}/postgres", postgres_server())).await?;
                sqlx::query(&sql).execute(&mut admin).await.map(|_| ())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

/// A connection pool to either database, for assertions written once: `$1`, `$2`, ... are
/// positional parameters on both.
pub enum Sql {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Sql {
    /// The database at `place`, without a gateway on it.
    pub async fn open(place: &Place) -> Self {
        match place {
            Place::Sqlite(path) => Self::Sqlite(open_db(path).await),
            Place::Postgres(db) => Self::Postgres(
                PgPool::connect(db.url.expose())
                    .await
                    .expect("database opens"),
            ),
        }
    }

    /// Every row of `sql`, binding `binds` as `$1`, `$2`, ...
    pub async fn rows<T>(&self, sql: &str, binds: &[&str]) -> Vec<T>
    where
        T: Send + Unpin + for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow>,
    {
        match self {
            Self::Sqlite(pool) => {
                let mut query = sqlx::query_as::<Sqlite, T>(sql);
                for b in binds {
                    query = query.bind(*b);
                }
                query.fetch_all(pool).await
            }
            Self::Postgres(pool) => {
                let mut query = sqlx::query_as::<Postgres, T>(sql);
                for b in binds {
                    query = query.bind(*b);
                }
                query.fetch_all(pool).await
            }
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The one row of `sql`.
    pub async fn row<T>(&self, sql: &str, binds: &[&str]) -> T
    where
        T: Send + Unpin + for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow>,
    {
        let mut rows = self.rows::<T>(sql, binds).await;
        assert_eq!(rows.len(), 1, "{sql}: one row");
        rows.remove(0)
    }

    /// The one value of `sql` (a one-column row).
    pub async fn scalar<T>(&self, sql: &str, binds: &[&str]) -> T
    where
        T: Send + Unpin,
        (T,): for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow>,
    {
        self.row::<(T,)>(sql, binds).await.0
    }
}

/// Opens a database file read-write for assertions.
pub async fn open_db(path: &Path) -> SqlitePool {
    SqlitePool::connect_with(SqliteConnectOptions::new().filename(path))
        .await
        .expect("database opens")
}

/// `exp` one hour from now.
pub fn in_an_hour() -> u64 {
    now_secs() + 3600
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Signs claims with the test secret (HS*) or the fixture RSA key (RS*).
pub fn sign(alg: Algorithm, claims: &Value) -> String {
    let key = match alg {
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => {
            EncodingKey::from_rsa_pem(include_bytes!("../fixtures/rsa_private.pem"))
                .expect("fixture key")
        }
        _ => EncodingKey::from_secret(SECRET.as_bytes()),
    };
    jsonwebtoken::encode(&Header::new(alg), claims, &key).expect("token signs")
}

/// A token with `alg: none` and no signature.
pub fn unsigned_token(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{body}.")
}

/// A token signed with HMAC under an arbitrary key (for the RS256/HS256 confusion attack).
pub fn sign_hmac_with(key: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(key),
    )
    .expect("token signs")
}

/// A real WebSocket client with timeouts on every wait.
pub struct WsClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    /// Sends `{"event", "data"}`.
    pub async fn emit(&mut self, event: &str, data: Value) {
        self.send_json(json!({"event": event, "data": data})).await;
    }

    /// Sends `{"event", "data", "ack"}`.
    pub async fn emit_ack(&mut self, event: &str, data: Value, ack: u64) {
        self.send_json(json!({"event": event, "data": data, "ack": ack}))
            .await;
    }

    /// Sends `send-message` (with ack) and returns the ack once it arrives, skipping other
    /// events on the way.
    pub async fn say(&mut self, data: Value, ack: u64) -> Value {
        self.emit_ack("send-message", data, ack).await;
        self.wait_for_ack(ack).await
    }

    /// Skips events until the ack for `id` arrives.
    pub async fn wait_for_ack(&mut self, id: u64) -> Value {
        loop {
            let data = self.wait_for("ack").await;
            if data["ack"] == id {
                return data;
            }
        }
    }

    /// Sends a JSON value as a text frame.
    pub async fn send_json(&mut self, value: Value) {
        self.send(Message::text(value.to_string())).await;
    }

    /// Sends any frame.
    pub async fn send(&mut self, message: Message) {
        tokio::time::timeout(WAIT, self.stream.send(message))
            .await
            .expect("send within the timeout")
            .expect("send succeeds");
    }

    /// The next server event `(name, data)`, skipping pings.
    pub async fn next_event(&mut self) -> (String, Value) {
        loop {
            let message = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("an event within the timeout")
                .expect("stream open")
                .expect("frame readable");
            match message {
                Message::Text(text) => {
                    let v: Value = serde_json::from_str(&text).expect("server sends JSON");
                    let name = v["event"].as_str().expect("event name").to_string();
                    return (name, v["data"].clone());
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected an event, got {other:?}"),
            }
        }
    }

    /// The next event, which must be `name`; returns its data.
    pub async fn expect(&mut self, name: &str) -> Value {
        let (event, data) = self.next_event().await;
        assert_eq!(event, name, "expected {name}, got {event} {data}");
        data
    }

    /// Skips events until `name` arrives; returns its data.
    pub async fn wait_for(&mut self, name: &str) -> Value {
        loop {
            let (event, data) = self.next_event().await;
            if event == name {
                return data;
            }
        }
    }

    /// The ack for `id`, which must be the next event.
    pub async fn expect_ack(&mut self, id: u64) -> Value {
        let data = self.expect("ack").await;
        assert_eq!(data["ack"], id, "ack id: {data}");
        data
    }

    /// Asserts that no event arrives for a short while.
    pub async fn expect_silence(&mut self) {
        match tokio::time::timeout(QUIET, self.next_event_or_close()).await {
            Err(_) => {}
            Ok(got) => panic!("expected silence, got {got:?}"),
        }
    }

    async fn next_event_or_close(&mut self) -> Option<Message> {
        loop {
            match self.stream.next().await {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(m)) => return Some(m),
                _ => return None,
            }
        }
    }

    /// Reads until the server closes; returns its close frame. Events before it are skipped.
    pub async fn expect_close(&mut self) -> Option<CloseFrame> {
        loop {
            let next = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("close within the timeout");
            match next {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Closes from the client side and waits for the server's answer.
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
        let _ = tokio::time::timeout(WAIT, async {
            while let Some(Ok(_)) = self.stream.next().await {}
        })
        .await;
    }
}

/// The real binary as a child process (for crash tests: it can be killed with SIGKILL).
/// `SWITCHBOARD_BIN` picks the binary (the test script points it at the release build);
/// otherwise the one cargo built for these tests.
pub struct BinaryServer {
    child: std::process::Child,
    pub addr: SocketAddr,
    /// Every line the server wrote to stderr, kept by a thread that drains the pipe.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    drain: Option<std::thread::JoinHandle<()>>,
}

impl BinaryServer {
    /// Starts the binary on `db_path` with extra environment, and waits for its listen line.
    pub async fn start(db_path: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_at(&Place::Sqlite(db_path.to_path_buf()), env).await
    }

    /// Starts the binary on the data at `place`.
    pub async fn start_at(place: &Place, env: &[(&str, &str)]) -> Self {
        let binary = std::env::var("SWITCHBOARD_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_switchboard").to_string());
        Self::start_program_at(Path::new(&binary), place, env).await
    }

    /// Starts any program that serves the gateway (the binary, or an example embedding it).
    pub async fn start_program(program: &Path, db_path: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_program_at(program, &Place::Sqlite(db_path.to_path_buf()), env).await
    }

    async fn start_program_at(program: &Path, place: &Place, env: &[(&str, &str)]) -> Self {
        use std::io::{BufRead, BufReader};
        let mut command = std::process::Command::new(program);
        command
            .env_clear()
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("DATABASE_URL", place.url())
            .env("JWT_SECRET", SECRET)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("the binary starts");
        let stderr = child.stderr.take().expect("stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (listening, found) = tokio::sync::oneshot::channel();
        let drain = std::thread::spawn({
            let log = log.clone();
            move || {
                // Keeps draining after the listen line so the child never blocks on a full
                // pipe; ends when the child exits.
                let mut listening = Some(listening);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(addr) = parse_listen_line(&line)
                        && let Some(tx) = listening.take()
                    {
                        let _ = tx.send(addr);
                    }
                    log.lock().expect("log lines").push(line);
                }
            }
        });
        let addr = match tokio::time::timeout(Duration::from_secs(30), found).await {
            Ok(Ok(addr)) => addr,
            _ => {
                // Not left running behind the failed test.
                let _ = child.kill();
                let _ = child.wait();
                panic!("no listen line in: {:#?}", log.lock().expect("log lines"))
            }
        };
        Self {
            child,
            addr,
            log,
            drain: Some(drain),
        }
    }

    /// SIGKILL, then everything the server logged.
    pub fn kill_and_read_log(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(drain) = self.drain.take() {
            let _ = drain.join();
        }
        self.log.lock().expect("log lines").clone()
    }

    /// Connects as `sub` with role USER, passing `query` (e.g. `&lastMessageId=5`).
    pub async fn user(&self, sub: &str, query: &str) -> WsClient {
        self.connect_as(sub, "USER", query).await
    }

    /// Connects as `sub` with `role`.
    pub async fn user_with_role(&self, sub: &str, role: &str) -> WsClient {
        self.connect_as(sub, role, "").await
    }

    async fn connect_as(&self, sub: &str, role: &str, query: &str) -> WsClient {
        let token = sign(
            Algorithm::HS256,
            &json!({"sub": sub, "username": sub, "role": role, "exp": in_an_hour()}),
        );
        self.connect_with(&token, query).await
    }

    /// Connects with `token` in `?token=`, passing `query` too.
    pub async fn connect_with(&self, token: &str, query: &str) -> WsClient {
        let url = format!("ws://{}/ws?token={token}{query}", self.addr);
        let request = url.into_client_request().expect("request");
        let (stream, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .expect("handshake in time")
            .expect("connects");
        WsClient { stream }
    }

    /// Like [`BinaryServer::connect_with`], but a refused handshake is an error naming it.
    pub async fn try_connect_with(&self, token: &str, query: &str) -> Result<WsClient, String> {
        let url = format!("ws://{}/ws?token={token}{query}", self.addr);
        let request = url.into_client_request().map_err(|e| e.to_string())?;
        match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request)).await {
            Ok(Ok((stream, _))) => Ok(WsClient { stream }),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no handshake in time".into()),
        }
    }

    /// SIGKILL: nothing gets to clean up.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server's stderr line that says where it listens.
pub fn parse_listen_line(line: &str) -> Option<SocketAddr> {
    let rest = line.split("listening on http://").nth(1)?;
    // Up to whatever ends the address: a space, or the quote of a JSON log line.
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
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

// --- raw HTTP and Engine.IO polling --------------------------------------------------------

/// Reads until the server closes the socket (a reset counts as closed); fails after `WAIT`.
pub async fn read_until_closed(stream: &mut TcpStream) -> String {
    read_until_closed_within(stream, WAIT).await
}

/// A long-poll GET may rightly wait until Engine.IO's ping (25 s) when nothing is queued yet,
/// and a loaded machine (a server logging at TRACE among a parallel suite) can take seconds to
/// queue the answer: a poll is bounded by this, not by `WAIT`.
const POLL_WAIT: Duration = Duration::from_secs(30);

/// [`read_until_closed`] with its own bound.
pub async fn read_until_closed_within(stream: &mut TcpStream, bound: Duration) -> String {
    let mut received = Vec::new();
    let mut buf = [0_u8; 4096];
    tokio::time::timeout(bound, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closes the socket within the timeout");
    String::from_utf8_lossy(&received).into_owned()
}

/// The status code of a raw HTTP response.
pub fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}

/// One polling request with `Connection: close` to the server at `addr`; returns the body.
pub async fn poll_at(addr: std::net::SocketAddr, method: &str, query: &str, body: &str) -> String {
    let request = format!(
        "{method} /socket.io/?EIO=4&transport=polling{query} HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect within the timeout")
        .expect("connect");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request written");
    let response = read_until_closed_within(&mut stream, POLL_WAIT).await;
    assert_eq!(status_of(&response), 200, "{response}");
    let (_, body) = response.split_once("\r\n\r\n").expect("a body");
    body.to_string()
}

/// A raw Engine.IO polling client's start: the handshake, then the Socket.IO connect with
/// `token` (accepted as posted). Returns the Engine.IO session id and its `&sid=` query.
pub async fn polling_connect(addr: std::net::SocketAddr, token: &str) -> (String, String) {
    let open = poll_at(addr, "GET", "", "").await;
    let handshake: Value = serde_json::from_str(open.trim_start_matches('0')).expect("open");
    let sid = handshake["sid"].as_str().expect("a sid").to_string();
    let with_sid = format!("&sid={sid}");
    let connect = format!("40{{\"token\":\"{token}\"}}");
    assert_eq!(poll_at(addr, "POST", &with_sid, &connect).await, "ok");
    (sid, with_sid)
}

/// Long-polls until a payload containing `needle` arrives (a poll may return other packets
/// first, e.g. `connected` before the answer); bounded.
pub async fn poll_until(addr: std::net::SocketAddr, with_sid: &str, needle: &str) -> String {
    for _ in 0..10 {
        let payload = poll_at(addr, "GET", with_sid, "").await;
        if payload.contains(needle) {
            return payload;
        }
    }
    panic!("no {needle:?} within 10 polls");
}

// --- cluster mode: the NATS bus -------------------------------------------------------------

/// `NATS_URL` for the nodes a test starts: the environment's, else the local server.
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// Whether the NATS server of [`nats_url`] accepts a TCP connection. When it does not, says
/// so loudly (`SKIPPED <test>: NATS not reachable at ...`) and returns false, except with
/// `CI=true`, where that fails the test.
pub fn nats_reachable(test: &str) -> bool {
    use std::io::Write as _;
    use std::net::ToSocketAddrs;
    let url = nats_url();
    // nats://[user:password@]host:port[,...]: the first server of the list.
    let first = url.split(',').next().unwrap_or_default();
    let rest = first.split_once("://").map_or(first, |(_, rest)| rest);
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let host_port = host_port.trim_end_matches('/');
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:4222")
    };
    let reached = host_port
        .to_socket_addrs()
        .map_err(|e| e.to_string())
        .and_then(|addrs| {
            let mut last = String::from("no address");
            for addr in addrs {
                match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                    Ok(_) => return Ok(()),
                    Err(e) => last = e.to_string(),
                }
            }
            Err(last)
        });
    match reached {
        Ok(()) => true,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("NATS is not reachable at {url} and CI=true: {e}")
        }
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "\n!! SKIPPED {test}: NATS not reachable at {url} ({e}); with CI=true this fails !!\n"
            );
            false
        }
    }
}

impl WsClient {
    /// The next server event `(name, data)` within `bound`, pings skipped: `Ok(None)` when
    /// nothing came in time, `Err` saying how when the connection ended (a close frame, a
    /// reset, the end of the stream). For waits longer than [`WAIT`] and for connections that
    /// may rightly die (their server killed).
    pub async fn next_event_within(
        &mut self,
        bound: Duration,
    ) -> Result<Option<(String, Value)>, String> {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let Ok(next) = tokio::time::timeout_at(deadline, self.stream.next()).await else {
                return Ok(None);
            };
            match next {
                Some(Ok(Message::Text(text))) => {
                    let v: Value = serde_json::from_str(&text).expect("server sends JSON");
                    let name = v["event"].as_str().expect("event name").to_string();
                    return Ok(Some((name, v["data"].clone())));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(frame))) => return Err(format!("closed: {frame:?}")),
                Some(Ok(other)) => panic!("expected an event, got {other:?}"),
                Some(Err(e)) => return Err(format!("failed: {e}")),
                None => return Err("ended".to_owned()),
            }
        }
    }

    /// Reads until the server closes, for at most `bound` (skipping events); its close frame.
    pub async fn close_frame_within(&mut self, bound: Duration) -> Option<CloseFrame> {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .unwrap_or_else(|_| panic!("no close within {bound:?}"));
            match next {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Like [`WsClient::emit_ack`], but says whether the frame went out instead of failing
    /// the test: for a client whose server may be killed under it.
    pub async fn try_emit_ack(&mut self, event: &str, data: Value, ack: u64) -> bool {
        let frame = json!({"event": event, "data": data, "ack": ack}).to_string();
        matches!(
            tokio::time::timeout(WAIT, self.stream.send(Message::text(frame))).await,
            Ok(Ok(()))
        )
    }
}

/// A TCP relay on a loopback port to `target` that a test can cut (every relayed connection
/// dropped, new ones refused) and restore: a network failure between one process and a
/// service, without touching the service others share.
pub struct TcpProxy {
    pub addr: SocketAddr,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    relays: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Starts relaying to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let relays = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let accept = tokio::spawn({
            let (cut, relays) = (cut.clone(), relays.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if cut.load(Ordering::Acquire) {
                        // Refused: closed at once.
                        continue;
                    }
                    let relay = tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    relays.lock().expect("relays").push(relay);
                }
            }
        });
        Self {
            addr,
            cut,
            relays,
            accept,
        }
    }

    /// Drops every relayed connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::Release);
        for relay in self.relays.lock().expect("relays").drain(..) {
            relay.abort();
        }
    }

    /// Relays again.
    pub fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::Release);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// A Socket.IO client over a WebSocket (Engine.IO 4, Socket.IO 5, default namespace), enough
/// to exchange events and acks with the gateway from Rust tests (the Node suite uses the
/// official client).
pub struct SioClient {
    stream: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
}

impl SioClient {
    /// Connects to the gateway at `addr` with `token` in the CONNECT packet's `auth`.
    pub async fn connect(addr: SocketAddr, token: &str) -> Self {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (stream, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("handshake in time")
            .expect("connects");
        let mut client = Self { stream };
        let open = client.packet().await;
        assert!(open.starts_with('0'), "Engine.IO open first: {open}");
        client
            .send(format!("40{}", json!({ "token": token })))
            .await;
        let connect = client.packet().await;
        assert!(connect.starts_with("40"), "namespace joined: {connect}");
        client
    }

    async fn send(&mut self, text: String) {
        tokio::time::timeout(WAIT, self.stream.send(Message::text(text)))
            .await
            .expect("sent in time")
            .expect("sent");
    }

    /// The next Engine.IO packet but pings (answered).
    async fn packet(&mut self) -> String {
        loop {
            let next = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("a packet within the timeout");
            match next {
                Some(Ok(Message::Text(text))) if text.as_str() == "2" => {
                    self.send("3".into()).await;
                }
                Some(Ok(Message::Text(text))) => return text.to_string(),
                Some(Ok(_)) => continue,
                other => panic!("the Socket.IO connection ended: {other:?}"),
            }
        }
    }

    /// Emits `event` with `data`, asking for ack `id`.
    pub async fn emit_ack(&mut self, event: &str, data: Value, id: u64) {
        self.send(format!("42{id}{}", json!([event, data]))).await;
    }

    /// The next event `(name, data)`, acks skipped.
    pub async fn next_event(&mut self) -> (String, Value) {
        loop {
            let packet = self.packet().await;
            if let Some(body) = packet.strip_prefix("42") {
                let v: Value = serde_json::from_str(body).expect("an event array");
                return (v[0].as_str().expect("a name").to_owned(), v[1].clone());
            }
        }
    }

    /// Reads until event `name`; its data.
    pub async fn wait_for(&mut self, name: &str) -> Value {
        loop {
            let (event, data) = self.next_event().await;
            if event == name {
                return data;
            }
        }
    }

    /// Reads until the ack `id` (events before it skipped); its first argument.
    pub async fn wait_for_ack(&mut self, id: u64) -> Value {
        let prefix = format!("43{id}");
        loop {
            let packet = self.packet().await;
            if let Some(body) = packet.strip_prefix(&prefix)
                && body.starts_with('[')
            {
                let v: Value = serde_json::from_str(body).expect("an ack array");
                return v[0].clone();
            }
        }
    }
}
