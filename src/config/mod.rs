//! The settings tree. Every setting is read from the environment (or `.env`, loaded by the
//! binary) and validated once here, so that nothing else in the crate reads raw configuration.
//!
//! Each variable is declared once, with its default and its doc, as a clap argument: the
//! limits and the retention policy on their own fields below, the settings that need assembling
//! (a URL into a path, a secret into a key source) in `env.rs`. clap parses them and shows the
//! same docs in `switchboard --help`; a test keeps `.env.example` equal to the declarations.

mod access;
mod cluster;
mod connections;
mod env;
mod handshake;
mod node;
mod presence;
mod webhooks;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::Algorithm;

pub use access::{AccessSettings, RoomJoinDefault};
pub use cluster::{ClusterSettings, NatsUrl};
pub use connections::ConnectionLimits;
pub(crate) use env::help as env_help;
use env::{at_least, days_or_forever, seconds, zero_is_none};
pub use handshake::HandshakeLimits;
pub use node::NodeId;
pub use presence::{PresenceMode, PresenceSettings};
pub use webhooks::{
    DEFAULT_ENDPOINT, Subscription, WebhookEndpoint, WebhookEvent, WebhookSecret, WebhookSettings,
    shown_url,
};

/// A configuration value that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid {name}={value:?}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub name: String,
    /// What it was set to.
    pub value: String,
    /// Why it was refused.
    pub reason: String,
}

/// Everything the gateway needs to know to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `BIND_ADDR`: where the HTTP server listens (port 0 picks a free port).
    pub bind_addr: SocketAddr,
    /// Where the data lives (a SQLite file or PostgreSQL) and how long it is kept.
    pub database: DatabaseSettings,
    /// How tokens are verified (and minted by `switchboard token`).
    pub jwt: JwtSettings,
    /// `ADMIN_ROLES`: roles allowed to call the REST POST endpoints.
    pub admin_roles: Vec<String>,
    /// Room access: `ROOM_JOIN_DEFAULT`, `ROOM_POLICIES`, `BROADCAST_ROLES`, the join hook.
    pub access: AccessSettings,
    /// `CORS_ORIGINS`: which browser origins may connect.
    pub cors_origins: CorsOrigins,
    /// `METRICS_TOKEN`: when set, the bearer token `GET /metrics` requires.
    pub metrics_token: Option<MetricsToken>,
    /// `LOG_FORMAT`: how log lines look.
    pub log_format: LogFormat,
    /// Every limit a client can run into.
    pub limits: Limits,
    /// Header timeout and connection caps, applied before any HTTP is parsed.
    pub connections: ConnectionLimits,
    /// How many handshakes run at once, and how long the others wait for a turn.
    pub handshake: HandshakeLimits,
    /// Which presence events connections get (`PRESENCE_EVENTS`).
    pub presence: PresenceSettings,
    /// Whether and how this node joins a cluster (`NATS_URL`, ...).
    pub cluster: ClusterSettings,
    /// Where the gateway's events are sent (`WEBHOOK_URL`, `WEBHOOKS_FILE`, ...).
    pub webhooks: WebhookSettings,
}

/// Where the data lives and how long it is kept.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `DATABASE_URL`: a SQLite file or a PostgreSQL database.
    pub location: DatabaseLocation,
    /// `SQLITE_SYNCHRONOUS`: how durable a commit is (SQLite only).
    pub synchronous: Synchronous,
    /// How long messages are kept.
    pub retention: RetentionSettings,
    /// `NODE_ID`: which node's rows this process writes and recovers (PostgreSQL only).
    pub node_id: NodeId,
    /// Whether message ids are assigned when messages commit rather than reserved ahead in
    /// blocks: a cluster's (`NATS_URL` set), whose nodes would otherwise each leave a hole
    /// of a block in the sequence as they start.
    pub ids_at_commit: bool,
}

/// Which database `DATABASE_URL` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// One SQLite file, written by this process alone (the default).
    Sqlite {
        /// The file.
        path: PathBuf,
        /// True for the default location `data/switchboard.db`: only then is the directory
        /// created, so that a typo in an explicit path is an error, not a new empty database.
        is_default: bool,
    },
    /// A PostgreSQL database (`postgres://` or `postgresql://`), which cluster mode shares
    /// between nodes.
    Postgres(PostgresUrl),
}

/// A `postgres://` URL. Its `Debug` and `Display` hide the password, so that the settings
/// can be printed (`switchboard check-config`) and the location named in errors.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    /// Accepts `postgres://...` and `postgresql://...`; `None` for anything else.
    pub fn parse(url: &str) -> Option<Self> {
        let url = url.trim();
        (url.starts_with("postgres://") || url.starts_with("postgresql://"))
            .then(|| Self(url.to_owned()))
    }

    /// The whole URL, password included: only for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // scheme://user:password@host... -> scheme://user:***@host...
        let (scheme, rest) = self.0.split_once("://").unwrap_or(("postgres", &self.0));
        match rest.split_once('@') {
            Some((userinfo, host)) if userinfo.contains(':') => {
                let user = userinfo.split(':').next().unwrap_or_default();
                write!(f, "{scheme}://{user}:***@{host}")
            }
            _ => write!(f, "{scheme}://{rest}"),
        }
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

impl std::fmt::Display for DatabaseLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite { path, .. } => write!(f, "{}", path.display()),
            Self::Postgres(url) => write!(f, "{url}"),
        }
    }
}

impl DatabaseSettings {
    /// A SQLite database at `path` with every other setting at its default.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        Self {
            location: DatabaseLocation::Sqlite {
                is_default: path == Path::new(DEFAULT_DATABASE_PATH),
                path,
            },
            ..Settings::defaults().database
        }
    }

    /// A PostgreSQL database with every other setting at its default.
    pub fn postgres(url: PostgresUrl) -> Self {
        Self {
            location: DatabaseLocation::Postgres(url),
            ..Settings::defaults().database
        }
    }

    /// The SQLite file, if the data lives in one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match &self.location {
            DatabaseLocation::Sqlite { path, .. } => Some(path),
            DatabaseLocation::Postgres(_) => None,
        }
    }

    /// Whether this is the default location, whose directory is created when missing.
    pub fn is_default(&self) -> bool {
        matches!(
            self.location,
            DatabaseLocation::Sqlite {
                is_default: true,
                ..
            }
        )
    }

    /// The directory that holds the SQLite file (and the generated JWT secret). With
    /// PostgreSQL there is none: the secret must be given (`JWT_SECRET`), since every node
    /// on the database must share it.
    pub fn data_dir(&self) -> Option<PathBuf> {
        let path = self.sqlite_path()?;
        Some(match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        })
    }
}

/// SQLite's `synchronous` pragma, as offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Synchronous {
    /// Durable against a process crash; the default.
    Normal,
    /// Durable against power loss too.
    Full,
}

/// Message retention. (`::std::option::Option` is spelled out so that clap reads the field
/// as one value with a default, not as an optional argument.)
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct RetentionSettings {
    /// Messages older than this many days are deleted (0 keeps them forever).
    #[arg(long, env = "MESSAGE_RETENTION_DAYS", default_value = "30", value_parser = days_or_forever)]
    pub max_age: ::std::option::Option<Duration>,
    /// Everything beyond the newest this many messages is deleted too (0: no limit). Messages
    /// still waiting in an offline queue are never deleted.
    #[arg(long, env = "MESSAGE_RETENTION_COUNT", default_value = "1000000", value_parser = zero_is_none)]
    pub max_count: ::std::option::Option<u64>,
    /// Seconds between retention passes.
    #[arg(long, env = "RETENTION_INTERVAL_SECS", default_value = "60", value_parser = seconds)]
    pub interval: Duration,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Settings::defaults().database.retention
    }
}

/// How tokens are verified. Its `Debug` never shows the secret.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// `JWT_ALGORITHM`: the only algorithm accepted (never taken from the token header).
    pub algorithm: Algorithm,
    /// Where the verification key comes from.
    pub key: JwtKeySource,
    /// `JWT_PRIVATE_KEY_FILE`: PEM private key used only by `switchboard token` for
    /// RS*/ES*/EdDSA; the server itself never needs it.
    pub private_key_file: Option<PathBuf>,
    /// `JWT_ISSUER`: when set, tokens must carry this `iss`.
    pub issuer: Option<String>,
    /// `JWT_AUDIENCE`: when set, tokens must carry this `aud`.
    pub audience: Option<String>,
    /// `JWT_LEEWAY_SECS`: clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// `TOKEN_EXPIRY_WARNING_SECS`: how long before a live connection's `exp` it is sent
    /// `token-expiring`.
    pub expiry_warning: Duration,
}

/// Where the JWT verification key comes from.
#[derive(Clone)]
pub enum JwtKeySource {
    /// `JWT_SECRET`: a shared secret for HS256/HS384/HS512.
    Secret(String),
    /// No secret configured for an HS* algorithm: a random secret is generated once into
    /// this file (inside the data directory) and reused, so forged tokens are never accepted.
    GeneratedSecretFile(PathBuf),
    /// `JWT_PUBLIC_KEY_FILE`: a PEM public key for RS*, PS*, ES* or EdDSA.
    PublicKeyFile(PathBuf),
}

impl std::fmt::Debug for JwtKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Secret(_) => f.write_str("Secret([redacted])"),
            Self::GeneratedSecretFile(p) => write!(f, "GeneratedSecretFile({})", p.display()),
            Self::PublicKeyFile(p) => write!(f, "PublicKeyFile({})", p.display()),
        }
    }
}

/// The secret `GET /metrics` asks for (`METRICS_TOKEN`). Its `Debug` never shows it.
#[derive(Clone)]
pub struct MetricsToken(String);

impl MetricsToken {
    /// A token with this text.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// Whether `presented` is this token, compared in constant time: how long the comparison
    /// takes depends on the token's length only, never on how much of it a guess got right.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        let mut difference = expected.len() ^ presented.len();
        for (i, byte) in expected.iter().enumerate() {
            let other = presented.get(i).copied().unwrap_or(0);
            difference |= usize::from(byte ^ other);
        }
        difference == 0
    }
}

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken([redacted])")
    }
}

/// Which browser origins may connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Any origin (the default: browsers' origins are not checked).
    Any,
    /// Only these origins, exactly as browsers send them (`https://app.example.com`).
    List(Vec<String>),
}

impl CorsOrigins {
    /// Whether a request with this `Origin` header may proceed. Requests without `Origin`
    /// (non-browser clients) are always allowed: CORS protects browsers, not servers.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        match (self, origin) {
            (Self::Any, _) | (_, None) => true,
            (Self::List(list), Some(o)) => list.iter().any(|allowed| allowed == o),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[value(alias = "text")]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Every limit a client can run into, each with its variable and default.
#[derive(Debug, Clone, clap::Args)]
pub struct Limits {
    /// Hard cap on one WebSocket message or Socket.IO packet (and polling body), in bytes; a
    /// larger one closes the connection (code 1009 on /ws). 1 MiB, like socket.io's
    /// maxHttpBufferSize, so that anything a socket.io client sends with its defaults gets an
    /// answer: an over-long message is an `error` (MAX_MESSAGE_CHARS), not a disconnect.
    /// Buffers grow to it only on demand (the read buffer stays WS_READ_BUFFER_BYTES).
    #[arg(long, env = "MAX_FRAME_BYTES", default_value = "1048576", value_parser = at_least(256_usize))]
    pub max_frame_bytes: usize,
    /// Longest `message` text, in characters.
    #[arg(long, env = "MAX_MESSAGE_CHARS", default_value = "4000", value_parser = at_least(1_usize))]
    pub max_message_chars: usize,
    /// Rooms one user may be a member of at once.
    #[arg(long, env = "MAX_ROOMS_PER_USER", default_value = "100", value_parser = at_least(1_usize))]
    pub max_rooms_per_user: usize,
    /// Largest REST request body, in bytes; larger gets 413.
    #[arg(long, env = "MAX_BODY_BYTES", default_value = "65536", value_parser = at_least(256_usize))]
    pub max_body_bytes: usize,
    /// Undelivered messages kept for one offline user; a private message past it is refused
    /// with `error` and not stored.
    #[arg(long, env = "MAX_QUEUED_PER_USER", default_value = "1000", value_parser = at_least(1_u64))]
    pub max_queued_per_user: u64,
    /// Frames queued for one connection before it counts as a slow consumer and is closed
    /// (code 1008).
    #[arg(long, env = "OUTBOUND_QUEUE_CAPACITY", default_value = "1024", value_parser = at_least(8_usize))]
    pub outbound_queue_capacity: usize,
    /// Client events per second per connection, sustained.
    #[arg(long, env = "RATE_LIMIT_PER_SEC", default_value = "50", value_parser = at_least(1_u32))]
    pub rate_limit_per_sec: u32,
    /// Client events a connection may send at once, on top of the sustained rate.
    #[arg(long, env = "RATE_LIMIT_BURST", default_value = "100", value_parser = at_least(1_u32))]
    pub rate_limit_burst: u32,
    /// Refused events in a row after which the connection is closed (code 1008) as abusive.
    #[arg(long, env = "RATE_LIMIT_MAX_STRIKES", default_value = "200", value_parser = at_least(1_u32))]
    pub rate_limit_max_strikes: u32,
    /// Seconds between the server's pings to each connection.
    #[arg(long, env = "PING_INTERVAL_SECS", default_value = "25", value_parser = seconds)]
    pub ping_interval: Duration,
    /// Seconds after which a connection that sends nothing (not even a pong) is closed; must
    /// be longer than PING_INTERVAL_SECS.
    #[arg(long, env = "IDLE_TIMEOUT_SECS", default_value = "60", value_parser = seconds)]
    pub idle_timeout: Duration,
    /// Seconds a graceful shutdown waits for connections to close and the store to finish
    /// before giving up.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECS", default_value = "10", value_parser = seconds)]
    pub shutdown_timeout: Duration,
    /// On a graceful stop each client is told to come back after a delay drawn from 1 s (a
    /// restart's own time) to 1 s plus this many seconds (`retryAfterMs` on Socket.IO's `error`, "retry after N ms" in the
    /// `/ws` close frame), so that returns are spread instead of arriving in one second;
    /// 0: no hint.
    #[arg(long, env = "RECONNECT_SPREAD_SECS", default_value = "10", value_parser = seconds)]
    pub reconnect_spread: Duration,
    /// Per-connection read buffer, in bytes (tungstenite's default of 128 KiB would dominate
    /// the memory of idle connections).
    #[arg(long, env = "WS_READ_BUFFER_BYTES", default_value = "2048", value_parser = at_least(512_usize))]
    pub ws_read_buffer_bytes: usize,
    /// Bytes collected before a write reaches the socket; queued frames are coalesced into one
    /// write up to this size.
    #[arg(long, env = "WS_WRITE_BUFFER_BYTES", default_value = "16384", value_parser = at_least(0_usize))]
    pub ws_write_buffer_bytes: usize,
    /// Bytes a connection may have pending in its write buffer before the write fails and the
    /// connection is dropped; must be larger than WS_WRITE_BUFFER_BYTES.
    #[arg(long, env = "WS_MAX_WRITE_BUFFER_BYTES", default_value = "1048576", value_parser = at_least(1024_usize))]
    pub ws_max_write_buffer_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Settings::defaults().limits
    }
}

/// Default database file, relative to the working directory.
pub const DEFAULT_DATABASE_PATH: &str = "data/switchboard.db";
/// Name of the generated secret file inside the data directory.
pub const GENERATED_SECRET_FILE: &str = "jwt-secret";

impl Settings {
    /// Settings for a given database file with every other value at its default, port 0 and
    /// a known JWT secret. Meant for tests and embedders that build settings in code.
    pub fn for_database(path: impl Into<PathBuf>, jwt_secret: impl Into<String>) -> Self {
        let mut settings = Self::defaults();
        settings.bind_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        settings.database = DatabaseSettings::at(path);
        settings.jwt.key = JwtKeySource::Secret(jwt_secret.into());
        settings
    }

    /// Reads every setting from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads every setting through `lookup` (the environment, or a map in tests). A variable
    /// that is unset or blank takes its default.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let settings = env::EnvSettings::read(&lookup)?.into_settings()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Every setting at its declared default, with no environment read.
    fn defaults() -> Self {
        Self::from_lookup(|_| None).expect("the declared defaults are valid (a unit test checks)")
    }

    /// Cross-field checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let refuse = |name: &str, value: String, reason: &str| {
            Err(ConfigError {
                name: name.into(),
                value,
                reason: reason.into(),
            })
        };
        if l.ws_max_write_buffer_bytes <= l.ws_write_buffer_bytes {
            return refuse(
                "WS_MAX_WRITE_BUFFER_BYTES",
                l.ws_max_write_buffer_bytes.to_string(),
                "must be larger than WS_WRITE_BUFFER_BYTES",
            );
        }
        if l.idle_timeout <= l.ping_interval {
            return refuse(
                "IDLE_TIMEOUT_SECS",
                l.idle_timeout.as_secs().to_string(),
                "must be longer than PING_INTERVAL_SECS, or healthy clients get cut off",
            );
        }
        if self.cors_origins == CorsOrigins::List(Vec::new()) {
            return refuse(
                "CORS_ORIGINS",
                String::new(),
                "use * for any origin or list at least one",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashMap};

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_need_no_environment_and_generate_a_secret_next_to_the_database() {
        let s = load(&[]).expect("defaults are valid");
        assert_eq!(s.bind_addr.to_string(), "127.0.0.1:3000");
        assert!(s.database.is_default());
        assert!(matches!(
            s.jwt.key,
            JwtKeySource::GeneratedSecretFile(ref p) if p.ends_with("data/jwt-secret")
        ));
        assert_eq!(s.admin_roles, vec!["ADMIN"]);
        assert_eq!(s.access.join_default, RoomJoinDefault::Anyone);
        assert_eq!(s.cors_origins, CorsOrigins::Any);
        assert_eq!(
            s.database.retention.max_age,
            Some(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(s.limits.max_frame_bytes, 1_048_576);
        assert_eq!(s.limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.connections.header_timeout, Duration::from_secs(10));
        assert_eq!(s.connections.max_connections, 10_000);
        assert_eq!(s.connections.max_connections_per_ip, None);
        assert_eq!(s.handshake.concurrency, 64);
        assert_eq!(s.handshake.queue, 10_000);
        assert_eq!(s.handshake.wait, Duration::from_millis(5000));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases = [
            ("BIND_ADDR", "nope", "BIND_ADDR"),
            ("JWT_ALGORITHM", "none", "JWT_ALGORITHM"),
            ("JWT_ALGORITHM", "RS256", "JWT_ALGORITHM"),
            ("JWT_SECRET", "short", "JWT_SECRET"),
            ("MAX_FRAME_BYTES", "-1", "MAX_FRAME_BYTES"),
            ("MAX_FRAME_BYTES", "255", "MAX_FRAME_BYTES"),
            ("IDLE_TIMEOUT_SECS", "0", "IDLE_TIMEOUT_SECS"),
            ("IDLE_TIMEOUT_SECS", "25", "IDLE_TIMEOUT_SECS"),
            ("HTTP_HEADER_TIMEOUT_SECS", "0", "HTTP_HEADER_TIMEOUT_SECS"),
            ("MAX_CONNECTIONS", "0", "MAX_CONNECTIONS"),
            ("MAX_CONNECTIONS_PER_IP", "-1", "MAX_CONNECTIONS_PER_IP"),
            ("MESSAGE_RETENTION_DAYS", "soon", "MESSAGE_RETENTION_DAYS"),
            (
                "WS_MAX_WRITE_BUFFER_BYTES",
                "16384",
                "WS_MAX_WRITE_BUFFER_BYTES",
            ),
            ("CORS_ORIGINS", " , ", "CORS_ORIGINS"),
            ("SQLITE_SYNCHRONOUS", "off", "SQLITE_SYNCHRONOUS"),
            ("LOG_FORMAT", "xml", "LOG_FORMAT"),
            ("ROOM_JOIN_DEFAULT", "members", "ROOM_JOIN_DEFAULT"),
            ("DATABASE_URL", "sqlite::memory:", "DATABASE_URL"),
        ];
        for (name, value, expected) in cases {
            let err = load(&[(name, value)]).expect_err(name);
            assert_eq!(err.name, expected, "{name}={value}");
        }
    }

    #[test]
    fn a_refused_value_is_reported_with_the_rule_and_a_secret_never_is() {
        let err = load(&[("MAX_FRAME_BYTES", "-1")]).expect_err("negative");
        assert_eq!(
            err.to_string(),
            r#"invalid MAX_FRAME_BYTES="-1": expected a whole number"#
        );

        let err = load(&[("JWT_SECRET", "short")]).expect_err("short secret");
        assert!(!err.to_string().contains("short"), "{err}");
    }

    #[test]
    fn blank_values_take_the_default_and_numbers_and_names_are_trimmed() {
        let s = load(&[
            ("JWT_SECRET", "  "),
            ("MAX_FRAME_BYTES", " 1024 "),
            ("LOG_FORMAT", " JSON"),
            ("JWT_ALGORITHM", "hs384 "),
            ("JWT_ISSUER", " issuer "),
        ])
        .expect("valid");
        assert!(matches!(s.jwt.key, JwtKeySource::GeneratedSecretFile(_)));
        assert_eq!(s.limits.max_frame_bytes, 1024);
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.jwt.algorithm, Algorithm::HS384);
        assert_eq!(
            s.jwt.issuer.as_deref(),
            Some(" issuer "),
            "free text is kept as given"
        );
    }

    #[test]
    fn every_algorithm_is_accepted_by_its_name_in_any_case() {
        let s = load(&[("JWT_ALGORITHM", "EdDSA"), ("JWT_PUBLIC_KEY_FILE", "k.pem")]);
        assert_eq!(s.expect("EdDSA").jwt.algorithm, Algorithm::EdDSA);
        let s = load(&[("JWT_ALGORITHM", "es256"), ("JWT_PUBLIC_KEY_FILE", "k.pem")]);
        assert_eq!(s.expect("es256").jwt.algorithm, Algorithm::ES256);
    }

    #[test]
    fn zero_turns_retention_off_and_lists_are_split_on_commas() {
        let s = load(&[
            ("MESSAGE_RETENTION_DAYS", "0"),
            ("MESSAGE_RETENTION_COUNT", "0"),
            ("ADMIN_ROLES", "ADMIN, OPS,,"),
            ("CORS_ORIGINS", "https://a.example, https://b.example"),
            ("SQLITE_SYNCHRONOUS", "FULL"),
        ])
        .expect("valid");
        assert_eq!(s.database.retention.max_age, None);
        assert_eq!(s.database.retention.max_count, None);
        assert_eq!(s.admin_roles, vec!["ADMIN", "OPS"]);
        let origins = vec!["https://a.example".into(), "https://b.example".into()];
        assert_eq!(s.cors_origins, CorsOrigins::List(origins));
        assert_eq!(s.database.synchronous, Synchronous::Full);
    }

    #[test]
    fn the_metrics_token_matches_only_itself_and_never_prints() {
        let s = load(&[("METRICS_TOKEN", "scrape-me-0123456789")]).expect("valid");
        let token = s.metrics_token.expect("set");
        assert!(token.matches(b"scrape-me-0123456789"));
        for wrong in [
            &b"scrape-me-012345678"[..],
            b"scrape-me-0123456789x",
            b"",
            b"x",
        ] {
            assert!(
                !token.matches(wrong),
                "{:?}",
                String::from_utf8_lossy(wrong)
            );
        }
        assert!(!format!("{token:?}").contains("scrape"));
        assert!(load(&[]).expect("valid").metrics_token.is_none());
        let short = load(&[("METRICS_TOKEN", "short")]).expect_err("too short");
        assert_eq!(short.name, "METRICS_TOKEN");
        assert_eq!(
            short.value, "[redacted]",
            "the refusal does not echo the token"
        );
    }

    #[test]
    fn env_example_lists_exactly_the_defaults() {
        // `NAME=value` sets a default; `# NAME=` names a variable that has none.
        let mut from_example = BTreeMap::new();
        for line in include_str!("../../.env.example").lines() {
            let (line, commented) = match line.strip_prefix("# ") {
                Some(rest) => (rest, true),
                None => (line, false),
            };
            let Some((name, value)) = line.split_once('=') else {
                continue;
            };
            let is_name =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
            if is_name && (!commented || value.is_empty()) {
                let default = (!commented).then(|| value.to_string());
                from_example.insert(name.to_string(), default);
            }
        }
        let mut declared: BTreeMap<String, Option<String>> = env::command()
            .get_arguments()
            .filter_map(|arg| {
                let default = arg.get_default_values().first();
                Some((
                    env::env_name(arg)?,
                    default.map(|v| v.to_string_lossy().into()),
                ))
            })
            .collect();
        // Read by tracing's `EnvFilter` (telemetry.rs), not a setting.
        declared.insert("RUST_LOG".into(), Some("info".into()));
        assert_eq!(from_example, declared);
    }

    #[test]
    fn help_lists_every_variable() {
        let help = env_help();
        for arg in env::command().get_arguments() {
            let name = env::env_name(arg).expect("every argument has a variable");
            assert!(help.contains(&format!("\n  {name}=")), "{name}");
        }
    }

    #[test]
    fn settings_built_in_code_match_the_declared_defaults() {
        let s = Settings::for_database("x/y.db", "a-secret-of-16-bytes");
        let d = Settings::defaults();
        assert_eq!(format!("{:?}", s.limits), format!("{:?}", d.limits));
        assert_eq!(s.database.retention, d.database.retention);
        assert_eq!(s.connections, d.connections);
        assert_eq!(s.handshake, d.handshake);
        assert!(!s.database.is_default());
        assert_eq!(s.bind_addr.port(), 0);
    }

    #[test]
    fn a_postgres_url_selects_postgresql_needs_a_jwt_secret_and_hides_its_password() {
        for url in [
            "postgres://sb:hunter2@db.internal:5432/switchboard",
            "postgresql://sb:hunter2@db.internal:5432/switchboard",
        ] {
            let s = load(&[
                ("DATABASE_URL", url),
                ("JWT_SECRET", "a-secret-of-16-bytes"),
            ])
            .expect(url);
            let DatabaseLocation::Postgres(pg) = &s.database.location else {
                panic!("{url} is PostgreSQL");
            };
            assert_eq!(pg.expose(), url);
            assert!(s.database.sqlite_path().is_none());
            let shown = format!("{} {:?} {s:?}", s.database.location, s.database.location);
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(
                shown.contains("sb:***@db.internal:5432/switchboard"),
                "{shown}"
            );
        }
        let error = load(&[("DATABASE_URL", "postgres://localhost/switchboard")])
            .expect_err("no JWT_SECRET");
        assert_eq!(error.name, "JWT_SECRET");
    }

    #[test]
    fn database_url_forms_all_name_a_file() {
        for url in [
            "sqlite://x/y.db",
            "sqlite:x/y.db",
            "x/y.db",
            "sqlite://x/y.db?mode=rwc",
        ] {
            let s = load(&[("DATABASE_URL", url)]).expect(url);
            assert_eq!(s.database.sqlite_path(), Some(Path::new("x/y.db")), "{url}");
        }
    }
}
