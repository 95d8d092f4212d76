//! `tradeplane-operator` binary: see [`tradeplane_operator::cli`].

/// mimalloc as the global allocator (feature `mimalloc`, off in the release image: see the Dockerfile).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;
use tradeplane_operator::cli::{Cli, Command, crd_yaml, read_input, render_yaml};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match crd_yaml() {
            Ok(y) => {
                print!("{y}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot serialize the CRD: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Render { file } => match read_input(&file).and_then(|s| render_yaml(&s)) {
            Ok(y) => {
                print!("{y}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Run(args) => tradeplane_operator::run::main(args),
    }
}
