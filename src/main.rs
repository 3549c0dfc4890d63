//! The `narrowgate` binary: parse the command line, set up logging, run.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = narrowgate::cli::Cli::parse();
    narrowgate::telemetry::init();
    narrowgate::cli::run(cli)
}
