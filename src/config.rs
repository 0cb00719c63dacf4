//! The settings tree. Every setting is read from the environment (or `.env`, loaded by the
//! binary), has its default next to it, and is validated once here, so that nothing else in the
//! crate reads raw configuration. `.env.example` lists the same names and defaults.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::Algorithm;

/// A configuration value that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid {name}={value:?}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub name: &'static str,
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
    /// Where the SQLite file lives.
    pub database: DatabaseSettings,
    /// How tokens are verified (and minted by `switchboard token`).
    pub jwt: JwtSettings,
    /// `ADMIN_ROLES`: roles allowed to call the REST POST endpoints (comma-separated).
    pub admin_roles: Vec<String>,
    /// `CORS_ORIGINS`: `*` (any origin, like the seed) or a comma-separated list of origins.
    pub cors_origins: CorsOrigins,
    /// `LOG_FORMAT`: `pretty` (default) or `json`.
    pub log_format: LogFormat,
    /// Every limit a client can run into.
    pub limits: Limits,
}

/// Where the SQLite file lives.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `DATABASE_URL`: `sqlite://path/to/file.db`, `sqlite:file.db` or a plain path.
    /// Default `sqlite://data/switchboard.db`.
    pub path: PathBuf,
    /// True for the default location `data/switchboard.db`: only then is the directory
    /// created, so that a typo in an explicit path is an error, not a new empty database.
    pub is_default: bool,
    /// `SQLITE_SYNCHRONOUS` (default `normal`): `normal` makes a commit durable against a
    /// crash of the process (WAL); `full` also against power loss, at an fsync per commit.
    pub synchronous: Synchronous,
    /// How long messages are kept.
    pub retention: RetentionSettings,
}

impl DatabaseSettings {
    /// A database at `path` with every other setting at its default.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        Self {
            is_default: path == Path::new(DEFAULT_DATABASE_PATH),
            path,
            synchronous: Synchronous::Normal,
            retention: RetentionSettings::default(),
        }
    }
}

/// SQLite's `synchronous` pragma, as offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// Durable against a process crash; the default.
    Normal,
    /// Durable against power loss too.
    Full,
}

/// Message retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionSettings {
    /// `MESSAGE_RETENTION_DAYS` (default 30; 0 keeps messages forever).
    pub max_age: Option<Duration>,
    /// `MESSAGE_RETENTION_COUNT` (default 1000000; 0 for no limit): newest messages kept.
    pub max_count: Option<u64>,
    /// `RETENTION_INTERVAL_SECS` (default 60): time between pruning passes.
    pub interval: Duration,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            max_age: Some(Duration::from_secs(30 * 86_400)),
            max_count: Some(1_000_000),
            interval: Duration::from_secs(60),
        }
    }
}

impl DatabaseSettings {
    /// The directory that holds the database file (and the generated JWT secret).
    pub fn data_dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }
}

/// How tokens are verified.
#[derive(Clone)]
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
    /// `JWT_LEEWAY_SECS` (default 5): clock skew tolerated on `exp` and `nbf`.
    pub leeway_secs: u64,
}

impl fmt::Debug for JwtSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSettings")
            .field("algorithm", &self.algorithm)
            .field("key", &self.key)
            .field("private_key_file", &self.private_key_file)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_secs", &self.leeway_secs)
            .finish()
    }
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

impl fmt::Debug for JwtKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Secret(_) => f.write_str("Secret([redacted])"),
            Self::GeneratedSecretFile(p) => write!(f, "GeneratedSecretFile({})", p.display()),
            Self::PublicKeyFile(p) => write!(f, "PublicKeyFile({})", p.display()),
        }
    }
}

/// Which browser origins may connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Any origin (the seed's behaviour).
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Every limit a client can run into, with its default.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `MAX_FRAME_BYTES` (default 65536): largest WebSocket message accepted; a larger one
    /// closes the connection with code 1009.
    pub max_frame_bytes: usize,
    /// `MAX_MESSAGE_CHARS` (default 4000): longest `message` text, in characters.
    pub max_message_chars: usize,
    /// `MAX_ROOMS_PER_USER` (default 100): rooms one user may be a member of at once.
    pub max_rooms_per_user: usize,
    /// `MAX_BODY_BYTES` (default 65536): largest REST request body; larger gets 413.
    pub max_body_bytes: usize,
    /// `MAX_QUEUED_PER_USER` (default 1000): undelivered messages kept for one offline user;
    /// a private message past it is refused with `error` and not stored.
    pub max_queued_per_user: u64,
    /// `OUTBOUND_QUEUE_CAPACITY` (default 1024): frames queued for one connection before it
    /// is treated as a slow consumer and disconnected.
    pub outbound_queue_capacity: usize,
    /// `RATE_LIMIT_PER_SEC` (default 50): client events per second per connection, sustained.
    pub rate_limit_per_sec: u32,
    /// `RATE_LIMIT_BURST` (default 100): client events a connection may send at once.
    pub rate_limit_burst: u32,
    /// `RATE_LIMIT_MAX_STRIKES` (default 200): refused events in a row after which the
    /// connection is closed (code 1008) as abusive.
    pub rate_limit_max_strikes: u32,
    /// `PING_INTERVAL_SECS` (default 25): how often the server pings each connection.
    pub ping_interval: Duration,
    /// `IDLE_TIMEOUT_SECS` (default 60): a connection that sends nothing (not even a pong)
    /// for this long is closed.
    pub idle_timeout: Duration,
    /// `SHUTDOWN_TIMEOUT_SECS` (default 10): how long a graceful shutdown waits for
    /// connections to close and the store to finish before giving up.
    pub shutdown_timeout: Duration,
    /// `WS_READ_BUFFER_BYTES` (default 2048): per-connection read buffer (tungstenite's
    /// default is 128 KiB, which would dominate the memory of idle connections).
    pub ws_read_buffer_bytes: usize,
    /// `WS_WRITE_BUFFER_BYTES` (default 16384): bytes collected before a write reaches the
    /// socket; queued frames are coalesced into one write up to this size.
    pub ws_write_buffer_bytes: usize,
    /// `WS_MAX_WRITE_BUFFER_BYTES` (default 1048576): bytes a connection may have pending in
    /// its write buffer before the write fails and the connection is dropped.
    pub ws_max_write_buffer_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 * 1024,
            max_message_chars: 4000,
            max_rooms_per_user: 100,
            max_queued_per_user: 1000,
            max_body_bytes: 64 * 1024,
            outbound_queue_capacity: 1024,
            rate_limit_per_sec: 50,
            rate_limit_burst: 100,
            rate_limit_max_strikes: 200,
            ping_interval: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(10),
            ws_read_buffer_bytes: 2048,
            ws_write_buffer_bytes: 16 * 1024,
            ws_max_write_buffer_bytes: 1024 * 1024,
        }
    }
}

/// Default database file, relative to the working directory.
pub const DEFAULT_DATABASE_PATH: &str = "data/switchboard.db";
/// Name of the generated secret file inside the data directory.
pub const GENERATED_SECRET_FILE: &str = "jwt-secret";

impl Settings {
    /// Settings for a given database file with every other value at its default and a known
    /// JWT secret. Meant for tests and embedders that build settings in code.
    pub fn for_database(path: impl Into<PathBuf>, jwt_secret: impl Into<String>) -> Self {
        Self {
            bind_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            database: DatabaseSettings::at(path),
            jwt: JwtSettings {
                algorithm: Algorithm::HS256,
                key: JwtKeySource::Secret(jwt_secret.into()),
                private_key_file: None,
                issuer: None,
                audience: None,
                leeway_secs: 5,
            },
            admin_roles: vec!["ADMIN".into()],
            cors_origins: CorsOrigins::Any,
            log_format: LogFormat::Pretty,
            limits: Limits::default(),
        }
    }

    /// Reads every setting from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads every setting through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let path = match env.get("DATABASE_URL") {
            Some(url) => parse_database_url(&url)?,
            None => PathBuf::from(DEFAULT_DATABASE_PATH),
        };
        // Spelling out the default path (as `.env.example` does) still counts as the default.
        let mut database = DatabaseSettings::at(path);
        database.synchronous = env.parse_with("SQLITE_SYNCHRONOUS", Synchronous::Normal, |s| {
            match s.to_ascii_lowercase().as_str() {
                "normal" => Ok(Synchronous::Normal),
                "full" => Ok(Synchronous::Full),
                _ => Err("expected normal or full".into()),
            }
        })?;
        let days: u64 = env.number("MESSAGE_RETENTION_DAYS", 30, 0)?;
        let count: u64 = env.number("MESSAGE_RETENTION_COUNT", 1_000_000, 0)?;
        database.retention = RetentionSettings {
            max_age: (days > 0).then(|| Duration::from_secs(days.saturating_mul(86_400))),
            max_count: (count > 0).then_some(count),
            interval: env.seconds(
                "RETENTION_INTERVAL_SECS",
                RetentionSettings::default().interval,
            )?,
        };
        let algorithm = env.parse_with("JWT_ALGORITHM", Algorithm::HS256, |s| {
            Algorithm::from_str(&s.to_ascii_uppercase()).map_err(|_| {
                "expected one of HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, \
                 PS512, ES256, ES384, EdDSA"
                    .to_string()
            })
        })?;
        let is_hmac = matches!(
            algorithm,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        );
        let key = match (
            is_hmac,
            env.get("JWT_SECRET"),
            env.get("JWT_PUBLIC_KEY_FILE"),
        ) {
            (true, Some(secret), _) => {
                if secret.len() < 16 {
                    return Err(ConfigError {
                        name: "JWT_SECRET",
                        value: "[redacted]".into(),
                        reason: "must be at least 16 bytes (32 or more recommended)".into(),
                    });
                }
                JwtKeySource::Secret(secret)
            }
            (true, None, _) => {
                JwtKeySource::GeneratedSecretFile(database.data_dir().join(GENERATED_SECRET_FILE))
            }
            (false, _, Some(file)) => JwtKeySource::PublicKeyFile(PathBuf::from(file)),
            (false, _, None) => {
                return Err(ConfigError {
                    name: "JWT_ALGORITHM",
                    value: format!("{algorithm:?}"),
                    reason: "an asymmetric algorithm needs JWT_PUBLIC_KEY_FILE".into(),
                });
            }
        };
        let limits = {
            let d = Limits::default();
            Limits {
                max_frame_bytes: env.number("MAX_FRAME_BYTES", d.max_frame_bytes, 256)?,
                max_message_chars: env.number("MAX_MESSAGE_CHARS", d.max_message_chars, 1)?,
                max_rooms_per_user: env.number("MAX_ROOMS_PER_USER", d.max_rooms_per_user, 1)?,
                max_body_bytes: env.number("MAX_BODY_BYTES", d.max_body_bytes, 256)?,
                max_queued_per_user: env.number("MAX_QUEUED_PER_USER", d.max_queued_per_user, 1)?,
                outbound_queue_capacity: env.number(
                    "OUTBOUND_QUEUE_CAPACITY",
                    d.outbound_queue_capacity,
                    8,
                )?,
                rate_limit_per_sec: env.number("RATE_LIMIT_PER_SEC", d.rate_limit_per_sec, 1)?,
                rate_limit_burst: env.number("RATE_LIMIT_BURST", d.rate_limit_burst, 1)?,
                rate_limit_max_strikes: env.number(
                    "RATE_LIMIT_MAX_STRIKES",
                    d.rate_limit_max_strikes,
                    1,
                )?,
                ping_interval: env.seconds("PING_INTERVAL_SECS", d.ping_interval)?,
                idle_timeout: env.seconds("IDLE_TIMEOUT_SECS", d.idle_timeout)?,
                shutdown_timeout: env.seconds("SHUTDOWN_TIMEOUT_SECS", d.shutdown_timeout)?,
                ws_read_buffer_bytes: env.number(
                    "WS_READ_BUFFER_BYTES",
                    d.ws_read_buffer_bytes,
                    512,
                )?,
                ws_write_buffer_bytes: env.number(
                    "WS_WRITE_BUFFER_BYTES",
                    d.ws_write_buffer_bytes,
                    0,
                )?,
                ws_max_write_buffer_bytes: env.number(
                    "WS_MAX_WRITE_BUFFER_BYTES",
                    d.ws_max_write_buffer_bytes,
                    1024,
                )?,
            }
        };
        let settings = Self {
            bind_addr: env.parse_with(
                "BIND_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 3000)),
                |s| s.parse().map_err(|e| format!("{e}; expected host:port")),
            )?,
            database,
            jwt: JwtSettings {
                algorithm,
                key,
                private_key_file: env.get("JWT_PRIVATE_KEY_FILE").map(PathBuf::from),
                issuer: env.get("JWT_ISSUER"),
                audience: env.get("JWT_AUDIENCE"),
                leeway_secs: env.number("JWT_LEEWAY_SECS", 5, 0)?,
            },
            admin_roles: env
                .get("ADMIN_ROLES")
                .map(|s| split_list(&s))
                .unwrap_or_else(|| vec!["ADMIN".into()]),
            cors_origins: match env.get("CORS_ORIGINS") {
                None => CorsOrigins::Any,
                Some(s) if s.trim() == "*" => CorsOrigins::Any,
                Some(s) => CorsOrigins::List(split_list(&s)),
            },
            log_format: env.parse_with("LOG_FORMAT", LogFormat::Pretty, |s| {
                match s.to_ascii_lowercase().as_str() {
                    "pretty" | "text" => Ok(LogFormat::Pretty),
                    "json" => Ok(LogFormat::Json),
                    _ => Err("expected pretty or json".into()),
                }
            })?,
            limits,
        };
        settings.validate()?;
        Ok(settings)
    }

    /// Cross-field checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        if l.ws_max_write_buffer_bytes <= l.ws_write_buffer_bytes {
            return Err(ConfigError {
                name: "WS_MAX_WRITE_BUFFER_BYTES",
                value: l.ws_max_write_buffer_bytes.to_string(),
                reason: "must be larger than WS_WRITE_BUFFER_BYTES".into(),
            });
        }
        if l.idle_timeout <= l.ping_interval {
            return Err(ConfigError {
                name: "IDLE_TIMEOUT_SECS",
                value: l.idle_timeout.as_secs().to_string(),
                reason: "must be longer than PING_INTERVAL_SECS, or healthy clients get cut off"
                    .into(),
            });
        }
        if self.cors_origins == CorsOrigins::List(Vec::new()) {
            return Err(ConfigError {
                name: "CORS_ORIGINS",
                value: String::new(),
                reason: "use * for any origin or list at least one".into(),
            });
        }
        Ok(())
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn parse_database_url(url: &str) -> Result<PathBuf, ConfigError> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path == ":memory:" {
        return Err(ConfigError {
            name: "DATABASE_URL",
            value: url.into(),
            reason: "must name a file (switchboard keeps its history on disk)".into(),
        });
    }
    Ok(PathBuf::from(path))
}

/// A thin reader over the lookup function that turns every failure into a `ConfigError`.
struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    fn parse_with<T>(
        &self,
        name: &'static str,
        default: T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(value) => parse(value.trim()).map_err(|reason| ConfigError {
                name,
                value,
                reason,
            }),
        }
    }

    fn number<T>(&self, name: &'static str, default: T, min: T) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        self.parse_with(name, default, |s| {
            let n: T = s
                .parse()
                .map_err(|_| "expected a whole number".to_string())?;
            if n < min {
                return Err(format!("must be at least {min}"));
            }
            Ok(n)
        })
    }

    fn seconds(&self, name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        self.number(name, default.as_secs(), 1)
            .map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

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
        assert!(s.database.is_default);
        assert!(matches!(
            s.jwt.key,
            JwtKeySource::GeneratedSecretFile(ref p) if p.ends_with("data/jwt-secret")
        ));
        assert_eq!(s.admin_roles, vec!["ADMIN"]);
        assert_eq!(s.cors_origins, CorsOrigins::Any);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases = [
            ("BIND_ADDR", "nope", "BIND_ADDR"),
            ("JWT_ALGORITHM", "none", "JWT_ALGORITHM"),
            ("JWT_ALGORITHM", "RS256", "JWT_ALGORITHM"),
            ("JWT_SECRET", "short", "JWT_SECRET"),
            ("MAX_FRAME_BYTES", "-1", "MAX_FRAME_BYTES"),
            ("LOG_FORMAT", "xml", "LOG_FORMAT"),
            ("DATABASE_URL", "sqlite::memory:", "DATABASE_URL"),
        ];
        for (name, value, expected) in cases {
            let err = load(&[(name, value)]).expect_err(name);
            assert_eq!(err.name, expected, "{name}={value}");
        }
    }

    #[test]
    fn env_example_lists_exactly_the_defaults() {
        let example = include_str!("../.env.example");
        let pairs: Vec<(&str, &str)> = example
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .collect();
        assert!(pairs.len() > 15, "the example sets the defaults explicitly");
        let from_example = load(&pairs).expect("the example is valid");
        let defaults = load(&[]).expect("defaults are valid");
        assert_eq!(format!("{from_example:?}"), format!("{defaults:?}"));
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
            assert_eq!(s.database.path, PathBuf::from("x/y.db"), "{url}");
        }
    }
}
