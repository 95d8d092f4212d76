//! `tradeplane-platform`: the trading service binary. The command line lives in
//! [`tradeplane_platform::cli`]; this file only wires it to the implementations.

/// The global allocator of the release images (feature `mimalloc`).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;
use tradeplane_platform::backup::{self, EXIT_INTERNAL, EXIT_USAGE};
use tradeplane_platform::cli::{BackupAction, Cli, Command, ServeArgs};
use tradeplane_platform::config::Config;
use tradeplane_platform::{server, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tradeplane-platform: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    config.demo =
        cli.demo || matches!(&cli.command, Some(Command::Serve(ServeArgs { demo: true })));
    // Flushes the last spans when main returns (after the runtime has stopped).
    let _telemetry = match telemetry::init(config.log_format) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("tradeplane-platform: cannot initialise logging: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tradeplane-platform: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_INTERNAL);
        }
    };
    let code = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
            Command::Serve(_) => match server::run(config, server::termination_signal()).await {
                Ok(stopped) => stopped.exit_code(),
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "fatal");
                    eprintln!("tradeplane-platform: {e:#}");
                    EXIT_INTERNAL
                }
            },
            Command::Backup(args) => match &args.action {
                Some(BackupAction::Verify { backup }) => backup::command::verify(backup).await,
                Some(BackupAction::List { location }) => backup::command::list(location).await,
                None => backup::command::backup(&config, &args).await,
            },
            Command::Restore(args) => backup::command::restore(&config, &args).await,
            Command::RotateKeys => tradeplane_platform::mfa::rotate::run(&config).await,
            Command::Archive(args) => {
                tradeplane_platform::archive::command::run(&config, &args.action).await
            }
            Command::Migrate => {
                let stop = tokio_util::sync::CancellationToken::new();
                let signal = server::termination_signal();
                let on_signal = stop.clone();
                tokio::spawn(async move {
                    signal.await;
                    on_signal.cancel();
                });
                tradeplane_platform::migrate::run(&config, stop).await
            }
        }
    });
    ExitCode::from(code)
}
