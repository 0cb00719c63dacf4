//! The `switchboard` binary: command line -> configuration -> telemetry -> gateway.

use std::process::ExitCode;

use clap::Parser;
use switchboard::cli::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    // A missing .env is normal; a broken one should be visible.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("error: could not read .env: {e}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or_default() {
        Command::Serve => switchboard::cli::serve().await,
        Command::Token(args) => switchboard::cli::token(args),
        Command::CheckConfig => switchboard::cli::check_config(),
        Command::Backup(args) => switchboard::cli::backup(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
