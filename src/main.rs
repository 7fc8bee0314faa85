//! The `rexec` binary: parse arguments, call the library, map the outcome to an exit code.

mod cli;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::args::Args::parse();
    cli::log::init();
    let outcome = match args.into_config() {
        Ok(config) => cli::run(config).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) => {
            eprintln!("rexec: {e:#}");
            // Errors before anything ran: bad usage, inventory, local files, secrets.
            ExitCode::from(rexec::RunExit::Usage.code())
        }
    }
}
