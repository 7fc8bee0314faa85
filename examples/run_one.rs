//! Connect to one host and run one command, as an automation script would.
//!
//! ```text
//! cargo run --example run_one -- HOST[:PORT] COMMAND...
//! ```
//!
//! Environment: `REXEC_USER` (default: the local user), `REXEC_IDENTITY` (a key file;
//! default: the ssh-agent and ~/.ssh/id_*), `REXEC_KNOWN_HOSTS` (default:
//! ~/.ssh/known_hosts), `REXEC_PASSWORD_ENV` (the name of a variable holding a password).

use std::process::ExitCode;
use std::time::Duration;

use rexec::{ConnectOptions, Credentials, ErrorKind, Identity, KnownHosts, Secret, Session};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(if e.kind() == ErrorKind::InvalidInput {
                2
            } else {
                3
            })
        }
    }
}

async fn run() -> rexec::Result<ExitCode> {
    let mut args = std::env::args().skip(1);
    let usage = || {
        rexec::Error::new(
            ErrorKind::InvalidInput,
            "usage: run_one HOST[:PORT] COMMAND...",
        )
    };
    let target = args.next().ok_or_else(usage)?;
    let command: Vec<String> = args.collect();
    if command.is_empty() {
        return Err(usage());
    }
    let (host, port) = match target.rsplit_once(':') {
        Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| usage())?),
        None => (target.clone(), 22),
    };

    let mut creds = Credentials::new();
    match std::env::var_os("REXEC_IDENTITY") {
        Some(path) => {
            creds = creds.identity(Identity::from_file(path, None)?);
        }
        None => {
            creds = creds.default_identities();
        }
    }
    if let Ok(var) = std::env::var("REXEC_PASSWORD_ENV") {
        creds = creds.password(Secret::from_env(&var)?);
    }
    let mut options = ConnectOptions::new(host)
        .port(port)
        .credentials(creds)
        .connect_timeout(Duration::from_secs(5));
    if let Ok(user) = std::env::var("REXEC_USER") {
        options = options.user(user);
    }
    if let Some(path) = std::env::var_os("REXEC_KNOWN_HOSTS") {
        options = options.known_hosts(KnownHosts::file(path));
    }

    let session = Session::connect(&options).await?;
    let output = session
        .raw_command(command.join(" "))
        .timeout(Duration::from_secs(60))
        .output()
        .await?;
    print!("{}", output.stdout_lossy());
    eprint!("{}", output.stderr_lossy());
    session.close().await.ok();
    eprintln!("{}: {}", session.host(), output.status);
    Ok(match output.status.code() {
        Some(0) => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    })
}
