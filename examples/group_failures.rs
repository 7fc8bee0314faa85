//! Run a command on a group and act on the failures, as an automation script would:
//! restart a service everywhere, then collect the hosts where it failed and retry them
//! once, then report. COMMAND is a template, as on rexec's command line: `{{name}}` and
//! the other placeholders are rendered per host.
//!
//! ```text
//! cargo run --example group_failures -- inventory/loopback.toml nodes 'systemctl restart nginx && echo {{name}} ok'
//! ```

use std::process::ExitCode;

use rexec::{Inventory, Pool, RunExit, Template};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [inventory, group, command] = args.as_slice() else {
        eprintln!("usage: group_failures INVENTORY GROUP COMMAND");
        return ExitCode::from(2);
    };
    match run(inventory, group, command).await {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(inventory: &str, group: &str, command: &str) -> rexec::Result<RunExit> {
    let inventory = Inventory::load(inventory)?;
    let pool = Pool::new(inventory.select(group)?).concurrency(32);
    // Refused placeholders (see Template) fail here, before anything connects.
    let command = Template::parse(command)?;

    let report = pool.run(&command).await;
    for r in report.failed() {
        match &r.result {
            Ok(out) => eprintln!("{}: {} {}", r.host, out.status, out.stderr_lossy().trim()),
            Err(e) => eprintln!("{e:#}"),
        }
    }
    if report.all_ok() {
        println!("all {} hosts ok", report.len());
        return Ok(RunExit::Success);
    }

    // Retry the failures once (only they run again).
    let again = pool.subset(report.failed()).run(&command).await;
    for r in &again {
        println!("retry {}: {}", r.host, r.outcome());
    }
    Ok(again.exit_code())
}
