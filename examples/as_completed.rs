//! Handle results as each host finishes (Python's `imap_unordered`): print a line per
//! host the moment it is done, and stop early once three hosts have failed. COMMAND is a
//! template (`{{name}}` and the other placeholders rendered per host).
//!
//! ```text
//! cargo run --example as_completed -- inventory/loopback.toml 'echo {{name}}; uptime'
//! ```

use std::process::ExitCode;

use futures_util::StreamExt;
use rexec::{HostSettings, Inventory, Outcome, Pool, TargetBuilder, Template};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [inventory, command] = args.as_slice() else {
        eprintln!("usage: as_completed INVENTORY COMMAND");
        return ExitCode::from(2);
    };
    let setup = Inventory::from_file(inventory, &HostSettings::default())
        .and_then(|inv| TargetBuilder::new().build_all(inv.hosts()))
        .and_then(|targets| Ok((targets, Template::parse(command)?)));
    let (targets, command) = match setup {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let pool = Pool::new(16);
    let stop = pool.cancel_token();
    let work = |session: std::sync::Arc<rexec::Session>, target: rexec::Target| {
        let stop = stop.clone();
        let command = &command;
        async move {
            let mut cmd = session.command(target.render(command)?);
            cmd.cancel_on(stop);
            cmd.output().await
        }
    };
    let mut results = Box::pin(pool.stream(&targets, work, |_| {}));
    let mut failures = 0;
    while let Some(r) = results.next().await {
        let outcome = Outcome::of_command(&r.result);
        match &r.result {
            Ok(out) => println!("{:>10} {}: {}", outcome, r.host, out.stdout_lossy().trim()),
            Err(e) => println!("{outcome:>10} {e:#}"),
        }
        if outcome != Outcome::Ok {
            failures += 1;
            if failures == 3 {
                eprintln!("three failures: stopping the rest");
                pool.cancel_token().cancel();
            }
        }
    }
    ExitCode::from(if failures == 0 { 0 } else { 1 })
}
