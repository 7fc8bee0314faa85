//! The `rexec` binary: parse arguments, call the library, map the outcome to an exit code.

mod cli;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = match cli::args::Args::try_parse() {
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
