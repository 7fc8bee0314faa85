//! Roll a change out as an operator would: upload a file, restart a service and check it,
//! one host first, then 25% of the group at a time, with a pause between batches, and
//! stop starting hosts once more than one host has failed. The hosts that failed or never
//! started are printed for a retry (`rexec -l @FILE`).
//!
//! ```text
//! cargo run --example rollout -- inventory/loopback.toml nodes ./app.conf 'systemctl restart app'
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use rexec::{Batches, Event, FailureBudget, HostCount, Inventory, Pool, RunExit};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [inventory, group, file, restart] = args.as_slice() else {
        eprintln!("usage: rollout INVENTORY GROUP FILE RESTART_COMMAND");
        return ExitCode::from(2);
    };
    match run(inventory, group, PathBuf::from(file), restart).await {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(inventory: &str, group: &str, file: PathBuf, restart: &str) -> rexec::Result<RunExit> {
    let inventory = Inventory::load(inventory)?;
    let pool = Pool::try_new(inventory.select(group)?)?
        .concurrency(16)
        .batches("1,25%".parse::<Batches>()?)
        .pause(Duration::from_secs(5))
        .max_failures(FailureBudget::new(HostCount::hosts(1)))
        .stagger(Duration::from_millis(50));

    let file = &file;
    let results = pool
        .map(|session, _target| async move {
            // Upload, restart, check: any error (or non-zero exit, through check())
            // fails the host and counts against the budget.
            let sftp = session.sftp().await?;
            sftp.put(file, "/tmp/").await?;
            session.raw_command(restart).output().await?.check()?;
            let status = session.raw_command("uptime").output().await?.check()?;
            Ok(status.stdout_lossy().trim().to_owned())
        })
        .observe(|event| match event {
            Event::BatchStarted {
                batch,
                batches,
                hosts,
            } => eprintln!("batch {batch}/{batches}: {hosts} hosts"),
            Event::BudgetExceeded { failed, .. } => {
                eprintln!("{failed} hosts failed: no new hosts start")
            }
            Event::Finished(r) => match &r.result {
                Ok(uptime) => println!("{}: {uptime}", r.host),
                Err(e) => eprintln!("{e:#}"),
            },
            _ => {}
        })
        .await;

    let retry: Vec<&str> = results.failed().map(|r| r.host()).collect();
    if !retry.is_empty() {
        println!("retry: {}", retry.join(","));
    }
    Ok(results.exit_code())
}
