//! `tradeplane-platform`: the trading service binary.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tradeplane_platform::config::Config;
use tradeplane_platform::{server, telemetry};

/// Tradeplane trading service.
#[derive(Debug, Parser)]
#[command(name = "tradeplane-platform", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API, health endpoints and metrics (the default).
    Serve,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tradeplane-platform: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = telemetry::init(config.log_format) {
        eprintln!("tradeplane-platform: cannot initialise logging: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tradeplane-platform: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => server::run(config, server::termination_signal()).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "fatal");
            eprintln!("tradeplane-platform: {e:#}");
            ExitCode::FAILURE
        }
    }
}
