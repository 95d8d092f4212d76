//! `run`: placeholder until the controller lands.

use std::process::ExitCode;

use crate::cli::RunArgs;

/// Runs the operator.
pub fn main(_args: RunArgs) -> ExitCode {
    eprintln!("error: run is not implemented yet");
    ExitCode::FAILURE
}
