//! The command line: `switchboard [serve]` runs the server, `switchboard token` mints a token
//! with the configured key, `switchboard check-config` validates the configuration,
//! `switchboard backup <file>` copies the live database.

use std::error::Error;
use std::fmt::Write as _;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::auth::claims::Claims;
use crate::auth::keys::Minter;
use crate::config::{JwtKeySource, Settings, WebhookEndpoint, env_help, shown_url};
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
    println!("configuration is valid:\n{:#?}", redacted(&settings));
    println!(
        "\nwebhook endpoints (secrets not shown):\n{}",
        webhook_table(&settings.webhooks.endpoints)
    );
    println!("room policies (first match wins):\n{policies}");
    Ok(())
}

/// The settings with the secrets kept as typed text (`WEBHOOK_SECRET`, `JOIN_HOOK_SECRET`)
/// replaced and the passwords in webhook URLs masked, so that printing them shows none (the
/// keys parsed from the secrets redact themselves).
fn redacted(settings: &Settings) -> Settings {
    let hidden = || Some("[redacted]".to_owned());
    let mut shown = settings.clone();
    if shown.webhooks.secret.is_some() {
        shown.webhooks.secret = hidden();
    }
    if shown.access.join_hook_secret.is_some() {
        shown.access.join_hook_secret = hidden();
    }
    shown.webhooks.url = shown.webhooks.url.as_deref().map(shown_url);
    for endpoint in &mut shown.webhooks.endpoints {
        endpoint.url = endpoint.shown_url();
    }
    shown
}

/// One line per endpoint: name, URL (a password masked), events, and the two filters (`any`
/// when empty); columns two spaces apart, lists joined by commas.
fn webhook_table(endpoints: &[WebhookEndpoint]) -> String {
    if endpoints.is_empty() {
        return "(none: set WEBHOOK_URL and WEBHOOK_SECRET, or WEBHOOKS_FILE)\n".to_owned();
    }
    let list = |items: &[String]| {
        if items.is_empty() {
            "any".to_owned()
        } else {
            items.join(",")
        }
    };
    let rows: Vec<[String; 5]> = endpoints
        .iter()
        .map(|e| {
            let events: Vec<&str> = e.subscription.events.iter().map(|t| t.as_str()).collect();
            [
                e.name.clone(),
                e.shown_url(),
                events.join(","),
                list(&e.subscription.message_events),
                list(&e.subscription.rooms),
            ]
        })
        .collect();
    let header = ["name", "url", "events", "messageEvents", "rooms"].map(str::to_owned);
    let mut widths = [0; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut table = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        table.push_str(line.trim_end());
        table.push('\n');
    }
    table
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
