//! The `rexec` binary: parse arguments, call the library, map the outcome to an exit code.

mod cli;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

fn main() -> ExitCode {
    let matches = match cli::args::Args::command().try_get_matches() {
        Ok(matches) => matches,
        Err(e) => return cli::args::report_clap_error(&e),
    };
    let args = match cli::args::Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => return cli::args::report_clap_error(&e),
    };
    if let Some(kind) = args.generate {
        return match cli::generate::write(kind, &mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                ExitCode::from(rexec::RunExit::OutputClosed.code())
            }
            Err(e) => {
                eprintln!("rexec: --generate: {e}");
                ExitCode::from(rexec::RunExit::Usage.code())
            }
        };
    }
    if matches.subcommand_name() == Some("merge") {
        return merge(args, &matches);
    }
    let config = match args.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("rexec: {e:#}\n{}", cli::args::HELP_HINT);
            return ExitCode::from(rexec::RunExit::Usage.code());
        }
    };
    cli::log::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("rexec: cannot start: {e}");
            return ExitCode::from(rexec::RunExit::Usage.code());
        }
    };
    let outcome = runtime.block_on(cli::run(config));
    // A name lookup that never answers keeps a blocking thread busy (getaddrinfo cannot
    // be cancelled): its host already failed at the connect deadline, so do not wait for
    // it here.
    runtime.shutdown_background();
    let _ = std::io::stdout().flush();
    match outcome {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) => {
            // Errors before anything ran: bad usage, inventory, local files, secrets.
            eprintln!("rexec: {e:#}");
            ExitCode::from(rexec::RunExit::Usage.code())
        }
    }
}

/// `rexec merge FILE...`: no hosts, no connections, no runtime.
fn merge(args: cli::args::Args, matches: &clap::ArgMatches) -> ExitCode {
    let config = match args.into_merge_config(matches) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("rexec: {e:#}\n{}", cli::args::HELP_HINT);
            return ExitCode::from(rexec::RunExit::Usage.code());
        }
    };
    let outcome = cli::merge::run(&config);
    let _ = std::io::stdout().flush();
    match outcome {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) => {
            eprintln!("rexec: merge: {e:#}");
            ExitCode::from(rexec::RunExit::Usage.code())
        }
    }
}
