//! Connection reuse: connect to every selected host once, then run a command several
//! times over the same sessions (the handshake and authentication are paid once), as
//! paramiko's `SSHClient` or parallel-ssh's `ParallelSSHClient` do. Prints one line per
//! run, and the hosts that failed.
//!
//! ```text
//! cargo run --example reuse -- inventory/loopback.toml all 2 uptime
//! ```
//! Arguments: INVENTORY PATTERN RUNS COMMAND [FORKS]

use std::process::ExitCode;
use std::time::Instant;

use rexec::{Inventory, Pool};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (inventory, pattern, runs, command, forks) = match args.as_slice() {
        [i, p, r, c] => (i, p, r, c, None),
        [i, p, r, c, f] => (i, p, r, c, Some(f)),
        _ => {
            eprintln!("usage: reuse INVENTORY PATTERN RUNS COMMAND [FORKS]");
            return ExitCode::from(2);
        }
    };
    let (Ok(runs), Ok(forks)) = (
        runs.parse::<usize>(),
        forks.map_or(Ok(Pool::DEFAULT_CONCURRENCY), |f| f.parse::<usize>()),
    ) else {
        eprintln!("RUNS and FORKS are numbers");
        return ExitCode::from(2);
    };
    let pool = match Inventory::load(inventory).and_then(|inv| Ok(Pool::new(inv.select(pattern)?)))
    {
        Ok(pool) => pool.concurrency(forks),
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let sessions = pool.connect_all(|_| {}).await;
    println!(
        "connected {}/{} hosts in {:.2}s",
        sessions.connected(),
        sessions.len(),
        started.elapsed().as_secs_f64()
    );
    let mut all_ok = true;
    for run in 1..=runs {
        let started = Instant::now();
        let results = sessions.run(command).await;
        let ok = results.succeeded().count();
        println!(
            "run {run}: {ok}/{} ok in {:.2}s",
            results.len(),
            started.elapsed().as_secs_f64()
        );
        for r in results.failed() {
            all_ok = false;
            match &r.result {
                Ok(out) => eprintln!("{}: {}", r.host, out.status),
                Err(e) => eprintln!("{e:#}"),
            }
        }
    }
    sessions.close().await;
    ExitCode::from(if all_ok { 0 } else { 1 })
}
