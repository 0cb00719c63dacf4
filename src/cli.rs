//! The command line: `switchboard [serve]` runs the server, `switchboard token` mints a token
//! with the configured key, `switchboard check-config` validates the configuration,
//! `switchboard backup <file>` copies the live database.

use std::error::Error;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::auth::claims::Claims;
use crate::auth::keys::Minter;
use crate::config::{JwtKeySource, Settings, env_help};
use crate::{Gateway, shutdown, telemetry};

/// Any failure of a subcommand, printed by `main`.
pub type CliError = Box<dyn Error + Send + Sync>;

/// switchboard: a self-hosted real-time gateway (WebSocket, JWT, rooms, SQLite).
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about, after_long_help = env_help())]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Default, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    #[default]
    #[command(after_long_help = env_help())]
    Serve,
    /// Mint a JWT with the configured key, to try the server.
    #[command(after_long_help = env_help())]
    Token(TokenArgs),
    /// Check the configuration and the key, then exit.
    #[command(after_long_help = env_help())]
    CheckConfig,
    /// Copy the SQLite database (DATABASE_URL) to a new file while the server runs, and check
    /// the copy. Restore by stopping the server and putting the copy in place of the database.
    /// (PostgreSQL: use pg_dump.)
    #[command(after_long_help = env_help())]
    Backup(BackupArgs),
}

/// `switchboard backup` options.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The file to write; it must not exist.
    pub file: std::path::PathBuf,
}

/// `switchboard token` options.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// User id (`sub`).
    #[arg(long)]
    pub sub: String,
    /// Display name (`username`); defaults to the user id.
    #[arg(long)]
    pub username: Option<String>,
    /// Role (`role`).
    #[arg(long, default_value = "USER")]
    pub role: String,
    /// Lifetime, e.g. `30m`, `1h`, `7days`.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
}

/// `switchboard serve`.
pub async fn serve() -> Result<(), CliError> {
    let settings = Settings::from_env()?;
    telemetry::init(settings.log_format);
    let gateway = Gateway::build(settings).await?;
    let stop = CancellationToken::new();
    shutdown::cancel_on_signal(stop.clone());
    gateway.run_until_stopped(stop).await?;
    Ok(())
}

/// `switchboard token`: prints a token on stdout.
pub fn token(args: TokenArgs) -> Result<(), CliError> {
    let settings = Settings::from_env()?;
    prepare_generated_secret_dir(&settings)?;
    let minter = Minter::from_settings(&settings.jwt)?;
    let claims = Claims {
        sub: Some(args.sub),
        username: args.username,
        role: Some(args.role),
        iss: settings.jwt.issuer.clone(),
        aud: settings.jwt.audience.clone(),
        ..Claims::default()
    };
    println!("{}", minter.mint(claims, args.ttl)?);
    Ok(())
}

/// `switchboard check-config`.
pub fn check_config() -> Result<(), CliError> {
    let settings = Settings::from_env()?;
    prepare_generated_secret_dir(&settings)?;
    crate::auth::Verifier::from_settings(&settings.jwt)?;
    let policies = crate::access::load_policies(&settings)?;
    println!("configuration is valid:\n{settings:#?}");
    println!("\nroom policies (first match wins):\n{policies}");
    Ok(())
}

/// `switchboard backup`: prints what the copy holds on stdout.
pub async fn backup(args: BackupArgs) -> Result<(), CliError> {
    let settings = Settings::from_env()?;
    let Some(path) = settings.database.sqlite_path() else {
        return Err(
            "switchboard backup copies a SQLite file; DATABASE_URL names a PostgreSQL \
                    database, whose backups are PostgreSQL's own: use pg_dump (for example \
                    `pg_dump --format=custom --file=switchboard.dump \"$DATABASE_URL\"`) \
                    and pg_restore"
                .into(),
        );
    };
    let report = crate::store::backup::backup(path, &args.file).await?;
    print!("{report}");
    Ok(())
}

/// With the default database location, the data directory (and the generated secret in it)
/// may not exist yet when `token` runs before the first `serve`.
fn prepare_generated_secret_dir(settings: &Settings) -> Result<(), CliError> {
    if settings.database.is_default()
        && let JwtKeySource::GeneratedSecretFile(file) = &settings.jwt.key
        && let Some(dir) = file.parent()
    {
        std::fs::create_dir_all(dir)?;
    }
    Ok(())
}
