//! Handle results as each host finishes (Python's `imap_unordered`): print a line per
//! host the moment it is done, and stop early once three hosts have failed. COMMAND is a
//! template (`{{name}}` and the other placeholders rendered per host).
//!
//! ```text
//! cargo run --example as_completed -- inventory/loopback.toml 'echo {{name}}; uptime'
//! ```

use std::process::ExitCode;

use futures_util::StreamExt;
use rexec::{Inventory, Outcome, Pool, Template};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [inventory, command] = args.as_slice() else {
        eprintln!("usage: as_completed INVENTORY COMMAND");
        return ExitCode::from(2);
    };
    let setup = Inventory::load(inventory)
        .and_then(|inv| Ok((Pool::new(inv.hosts()), Template::parse(command)?)));
    let (pool, command) = match setup {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let pool = pool.concurrency(16);
    let mut results = pool.run(&command).stream();
    let mut failures = 0;
    while let Some(r) = results.next().await {
        match &r.result {
            Ok(out) => println!(
                "{:>10} {}: {}",
                r.outcome(),
                r.host,
                out.stdout_lossy().trim()
            ),
            Err(e) => println!("{:>10} {e:#}", r.outcome()),
        }
        if r.outcome() != Outcome::Ok {
            failures += 1;
            if failures == 3 {
                eprintln!("three failures: stopping the rest");
                pool.cancel_token().cancel();
            }
        }
    }
    ExitCode::from(if failures == 0 { 0 } else { 1 })
}
