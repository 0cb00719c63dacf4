//! The settings as the environment spells them, for the ones that need assembling into the
//! [`Settings`] tree (the limits and the retention policy are read straight into theirs), and
//! the reading itself: one clap definition gives each variable its type, default and doc.

use std::error::Error as _;
use std::fmt::{Display, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::builder::Resettable;
use clap::error::{ContextKind, ContextValue};
use clap::{Arg, Args, Command, FromArgMatches, ValueEnum};
use jsonwebtoken::Algorithm;

use super::{
    AccessSettings, ClusterSettings, ConfigError, ConnectionLimits, CorsOrigins,
    DEFAULT_DATABASE_PATH, DatabaseLocation, DatabaseSettings, GENERATED_SECRET_FILE,
    HandshakeLimits, JwtKeySource, JwtSettings, Limits, LogFormat, MetricsToken, NodeId,
    PostgresUrl, PresenceSettings, RetentionSettings, Settings, Synchronous, WebhookSettings,
};

/// Every variable, in the order of `.env.example`. No `Debug`: it holds the JWT secret.
#[derive(Args)]
pub(super) struct EnvSettings {
    /// Address and port to listen on (port 0 picks a free one).
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:3000", value_parser = socket_addr)]
    bind_addr: SocketAddr,
    /// The SQLite file: `sqlite://path`, `sqlite:path` or a plain path. With the default, the
    /// ./data directory is created; an explicit path whose directory is missing is an error.
    /// Or a PostgreSQL database: `postgres://user:password@host:port/dbname` (also
    /// `postgresql://`; the database must exist, the tables are created), which needs
    /// JWT_SECRET.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://data/switchboard.db", value_parser = database_location)]
    database_url: DatabaseLocation,
    /// `normal`: a commit survives a crash of the process (WAL); `full`: also a power loss (an
    /// fsync per group commit, slower).
    #[arg(long, env = "SQLITE_SYNCHRONOUS", default_value = "normal", value_parser = choice::<Synchronous>)]
    sqlite_synchronous: Synchronous,
    /// This gateway's name among the nodes sharing a PostgreSQL database (1 to 64 letters,
    /// digits, '-', '_', '.'): its sessions are stored under it, and after a crash it closes
    /// only its own. Default: the host name (else `default`). Give each node its own.
    #[arg(long, env = "NODE_ID", value_parser = NodeId::parse)]
    node_id: Option<NodeId>,
    #[command(flatten)]
    retention: RetentionSettings,
    /// The only algorithm accepted (the token header never chooses): HS256, HS384, HS512,
    /// RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA.
    #[arg(long, env = "JWT_ALGORITHM", default_value = "HS256", value_parser = algorithm)]
    jwt_algorithm: Algorithm,
    /// Shared secret for HS*, at least 16 bytes (32+ recommended). When unset, a random secret
    /// is generated once into <data dir>/jwt-secret (mode 0600) and reused; `switchboard token`
    /// uses it.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// PEM public key file for RS*/PS*/ES*/EdDSA (required with those algorithms).
    #[arg(long, env = "JWT_PUBLIC_KEY_FILE")]
    jwt_public_key_file: Option<PathBuf>,
    /// PEM private key file, used only by `switchboard token` with an asymmetric algorithm.
    #[arg(long, env = "JWT_PRIVATE_KEY_FILE")]
    jwt_private_key_file: Option<PathBuf>,
    /// When set, tokens must carry this `iss` (and tokens minted by `switchboard token` do).
    #[arg(long, env = "JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// When set, tokens must carry this `aud` (and tokens minted by `switchboard token` do).
    #[arg(long, env = "JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[arg(long, env = "JWT_LEEWAY_SECS", default_value = "5", value_parser = at_least(0_u64))]
    jwt_leeway_secs: u64,
    /// Seconds before a live connection's token expires at which the server sends
    /// `token-expiring { exp, secondsLeft }` (at once when less is left): time to send
    /// `refresh-token`. The connection is closed (token_expired) at exp + JWT_LEEWAY_SECS.
    #[arg(long, env = "TOKEN_EXPIRY_WARNING_SECS", default_value = "60", value_parser = at_least(0_u64))]
    token_expiry_warning_secs: u64,
    /// Roles allowed to use the REST POST endpoints (comma-separated).
    #[arg(long, env = "ADMIN_ROLES", default_value = "ADMIN", value_parser = list)]
    admin_roles: ::std::vec::Vec<String>,
    /// `*` for any origin, or a comma-separated list of exact origins. A list also refuses
    /// WebSocket upgrades and Socket.IO connections from other origins; clients that send no
    /// Origin are not browsers and pass.
    #[arg(long, env = "CORS_ORIGINS", default_value = "*", value_parser = cors_origins)]
    cors_origins: CorsOrigins,
    /// When set, `GET /metrics` requires `Authorization: Bearer <this token>` (401 otherwise),
    /// at least 16 bytes. Unset, the metrics are open to whoever reaches the port.
    #[arg(long, env = "METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// `pretty` (readable lines) or `json` (one object per line). Logs go to stderr.
    #[arg(long, env = "LOG_FORMAT", default_value = "pretty", value_parser = choice::<LogFormat>)]
    log_format: LogFormat,
    #[command(flatten)]
    limits: Limits,
    #[command(flatten)]
    connections: ConnectionLimits,
    #[command(flatten)]
    handshake: HandshakeLimits,
    #[command(flatten)]
    presence: PresenceSettings,
    #[command(flatten)]
    access: AccessSettings,
    #[command(flatten)]
    cluster: ClusterSettings,
    #[command(flatten)]
    webhooks: WebhookSettings,
}

impl EnvSettings {
    /// Reads every variable through `lookup`; a blank value counts as unset. clap's own `env`
    /// reads the process environment when the command is built, so it is switched off here and
    /// each value is passed as `--name=value` instead: one parser for the process and tests.
    pub(super) fn read(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let cmd = command();
        let args: Vec<String> = cmd
            .get_arguments()
            .filter_map(|arg| {
                let value = lookup(&env_name(arg)?).filter(|v| !v.trim().is_empty())?;
                Some(format!("--{}={value}", arg.get_long()?))
            })
            .collect();
        let matches = cmd
            .clone()
            .mut_args(|arg| arg.env(Resettable::Reset))
            .try_get_matches_from(args)
            .map_err(|e| config_error(&cmd, &e))?;
        Self::from_arg_matches(&matches).map_err(|e| config_error(&cmd, &e))
    }

    /// Assembles the tree: the database path decides the data directory, which holds the
    /// generated secret, and the algorithm decides which key is needed.
    pub(super) fn into_settings(self) -> Result<Settings, ConfigError> {
        let database = DatabaseSettings {
            location: self.database_url,
            synchronous: self.sqlite_synchronous,
            retention: self.retention,
            node_id: self.node_id.unwrap_or_else(NodeId::from_host),
            ids_at_commit: self.cluster.nats_url.is_some(),
        };
        if let Some(url) = &self.cluster.nats_url
            && database.data_dir().is_some()
        {
            return Err(ConfigError {
                name: "NATS_URL".into(),
                value: url.redacted(),
                reason: "needs a PostgreSQL DATABASE_URL: the nodes of a cluster share one \
                         database, and a SQLite file belongs to one process"
                    .into(),
            });
        }
        let algorithm = self.jwt_algorithm;
        let is_hmac = matches!(
            algorithm,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        );
        let key = match (is_hmac, self.jwt_secret, self.jwt_public_key_file) {
            (true, Some(secret), _) if secret.len() < 16 => {
                return Err(ConfigError {
                    name: "JWT_SECRET".into(),
                    value: "[redacted]".into(),
                    reason: "must be at least 16 bytes (32 or more recommended)".into(),
                });
            }
            (true, Some(secret), _) => JwtKeySource::Secret(secret),
            (true, None, _) => match database.data_dir() {
                Some(dir) => JwtKeySource::GeneratedSecretFile(dir.join(GENERATED_SECRET_FILE)),
                None => {
                    return Err(ConfigError {
                        name: "JWT_SECRET".into(),
                        value: String::new(),
                        reason: "must be set with a PostgreSQL DATABASE_URL: a secret generated \
                                 into one machine's data directory would not be shared by the \
                                 other nodes on the database"
                            .into(),
                    });
                }
            },
            (false, _, Some(file)) => JwtKeySource::PublicKeyFile(file),
            (false, _, None) => {
                return Err(ConfigError {
                    name: "JWT_ALGORITHM".into(),
                    value: format!("{algorithm:?}"),
                    reason: "an asymmetric algorithm needs JWT_PUBLIC_KEY_FILE".into(),
                });
            }
        };
        let metrics_token = match self.metrics_token {
            Some(token) if token.len() < 16 => {
                return Err(ConfigError {
                    name: "METRICS_TOKEN".into(),
                    value: "[redacted]".into(),
                    reason: "must be at least 16 bytes".into(),
                });
            }
            token => token.map(MetricsToken::new),
        };
        Ok(Settings {
            bind_addr: self.bind_addr,
            database,
            jwt: JwtSettings {
                algorithm,
                key,
                private_key_file: self.jwt_private_key_file,
                issuer: self.jwt_issuer,
                audience: self.jwt_audience,
                leeway_secs: self.jwt_leeway_secs,
                expiry_warning: Duration::from_secs(self.token_expiry_warning_secs),
            },
            admin_roles: self.admin_roles,
            access: self.access,
            cors_origins: self.cors_origins,
            metrics_token,
            log_format: self.log_format,
            limits: self.limits,
            connections: self.connections,
            handshake: self.handshake,
            presence: self.presence,
            cluster: self.cluster,
            webhooks: self.webhooks.resolve()?,
        })
    }
}

/// The clap definition of every variable (built, so that its arguments can be displayed).
pub(super) fn command() -> Command {
    let cmd = Command::new("switchboard")
        .no_binary_name(true)
        .disable_help_flag(true);
    let mut cmd = EnvSettings::augment_args(cmd);
    cmd.build();
    cmd
}

/// The variable an argument is read from.
pub(super) fn env_name(arg: &Arg) -> Option<String> {
    arg.get_env()
        .map(|name| name.to_string_lossy().into_owned())
}

/// Every variable with its default and doc, for the end of `switchboard --help`.
pub(crate) fn help() -> String {
    let mut out = String::from("Settings (environment or .env; the value shown is the default):\n");
    for arg in command().get_arguments() {
        let default = arg.get_default_values().first();
        let default = default.map(|v| v.to_string_lossy()).unwrap_or_default();
        let _ = writeln!(out, "\n  {}={default}", env_name(arg).unwrap_or_default());
        let doc = arg
            .get_long_help()
            .or(arg.get_help())
            .map(ToString::to_string);
        let mut line = String::new();
        for word in doc.as_deref().unwrap_or_default().split_whitespace() {
            if !line.is_empty() && line.len() + word.len() >= 80 {
                let _ = writeln!(out, "         {line}");
                line.clear();
            }
            line.push(' ');
            line.push_str(word);
        }
        let _ = writeln!(out, "         {line}");
    }
    out
}

/// A clap failure as a `ConfigError` that names the variable, not the synthetic flag.
fn config_error(cmd: &Command, err: &clap::Error) -> ConfigError {
    let context = |kind| match err.get(kind) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    let arg = context(ContextKind::InvalidArg);
    let name = cmd.get_arguments().find(|a| a.to_string() == arg);
    ConfigError {
        name: name.and_then(env_name).unwrap_or(arg),
        value: context(ContextKind::InvalidValue),
        reason: err
            .source()
            .map_or_else(|| err.kind().to_string(), ToString::to_string),
    }
}

// The value parsers. Each trims its input, so `MAX_FRAME_BYTES=" 100 "` is 100; the free-text
// variables (secret, paths, issuer, audience) are taken exactly as given.

/// A whole number no smaller than `min`.
pub(super) fn at_least<T>(min: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync
where
    T: FromStr + PartialOrd + Display + Copy + Send + Sync + 'static,
{
    move |s| {
        let n: T = s.trim().parse().map_err(|_| "expected a whole number")?;
        if n < min {
            return Err(format!("must be at least {min}"));
        }
        Ok(n)
    }
}

/// Whole seconds, at least one.
pub(super) fn seconds(s: &str) -> Result<Duration, String> {
    at_least(1_u64)(s).map(Duration::from_secs)
}

/// Whole days; 0 means forever.
pub(super) fn days_or_forever(s: &str) -> Result<Option<Duration>, String> {
    let days = at_least(0_u64)(s)?;
    Ok((days > 0).then(|| Duration::from_secs(days.saturating_mul(86_400))))
}

/// A count; 0 means no limit.
pub(super) fn zero_is_none(s: &str) -> Result<Option<u64>, String> {
    Ok(Some(at_least(0_u64)(s)?).filter(|&n| n > 0))
}

fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim()
        .parse()
        .map_err(|e| format!("{e}; expected host:port"))
}

/// One of an enum's names, in any case.
pub(super) fn choice<E: ValueEnum>(s: &str) -> Result<E, String> {
    E::from_str(s.trim(), true).map_err(|_| {
        let names: Vec<_> = E::value_variants()
            .iter()
            .filter_map(|v| Some(v.to_possible_value()?.get_name().to_owned()))
            .collect();
        format!("expected {}", names.join(" or "))
    })
}

/// In any case: `hs256` and `EDDSA` work too.
fn algorithm(s: &str) -> Result<Algorithm, String> {
    use Algorithm::*;
    let all = [
        HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
    ];
    let name = |a: &Algorithm| format!("{a:?}");
    let found = all.iter().find(|a| name(a).eq_ignore_ascii_case(s.trim()));
    found.copied().ok_or_else(|| {
        let names: Vec<_> = all.iter().map(name).collect();
        format!("expected one of {}", names.join(", "))
    })
}

fn database_location(url: &str) -> Result<DatabaseLocation, String> {
    if let Some(url) = PostgresUrl::parse(url) {
        return Ok(DatabaseLocation::Postgres(url));
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path == ":memory:" {
        return Err("must name a file (switchboard keeps its history on disk)".into());
    }
    let path = PathBuf::from(path);
    Ok(DatabaseLocation::Sqlite {
        // Spelling out the default path (as `.env.example` does) still counts as the default.
        is_default: path == Path::new(DEFAULT_DATABASE_PATH),
        path,
    })
}

/// A comma-separated list; blanks between commas are dropped.
pub(super) fn list(s: &str) -> Result<Vec<String>, String> {
    Ok(s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect())
}

fn cors_origins(s: &str) -> Result<CorsOrigins, String> {
    Ok(match s.trim() {
        "*" => CorsOrigins::Any,
        _ => CorsOrigins::List(list(s)?),
    })
}
