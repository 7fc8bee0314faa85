//! Run a command on a group and act on the failures, as an automation script would:
//! restart a service everywhere, then collect the hosts where it failed and retry them
//! once, then report. COMMAND is a template, as on rexec's command line: `{{name}}` and
//! the other placeholders are rendered per host.
//!
//! ```text
//! cargo run --example group_failures -- inventory/loopback.toml nodes 'systemctl restart nginx && echo {{name}} ok'
//! ```

use std::process::ExitCode;

use rexec::{HostSettings, Inventory, Outcome, Pool, RunExit, TargetBuilder, Template};

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
    let inventory = Inventory::from_file(inventory, &HostSettings::default())?;
    let hosts = inventory.select(group)?;
    let targets = TargetBuilder::new().build_all(hosts)?;
    let pool = Pool::new(32);
    // Refused placeholders (see Template) fail here, before anything connects.
    let command = Template::parse(command)?;

    let results = pool
        .run_command(&targets, &command, |_, _| {}, |_| {})
        .await;
    let failed: Vec<_> = results
        .iter()
        .filter(|r| r.outcome() != Outcome::Ok)
        .map(|r| r.index)
        .collect();
    for r in results.iter().filter(|r| r.outcome() != Outcome::Ok) {
        match &r.result {
            Ok(out) => eprintln!("{}: {} {}", r.host, out.status, out.stderr_lossy().trim()),
            Err(e) => eprintln!("{e:#}"),
        }
    }
    if failed.is_empty() {
        println!("all {} hosts ok", results.len());
        return Ok(RunExit::Success);
    }

    // Retry the failures once (only they run again).
    let retry: Vec<_> = failed.iter().map(|&i| targets[i].clone()).collect();
    let again = pool.run_command(&retry, &command, |_, _| {}, |_| {}).await;
    for r in &again {
        println!("retry {}: {}", r.host, r.outcome());
    }
    Ok(RunExit::of(again.iter().map(|r| r.outcome())))
}
