//! A per-host workflow through the closure API: on every host, check free disk space,
//! and only where there is room, write a file and read it back; return a typed report.
//!
//! ```text
//! cargo run --example custom_workflow -- inventory/loopback.toml
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use rexec::{Error, ErrorKind, Event, Inventory, Pool, Session, Target};

enum Report {
    Written { free_kib: u64 },
    SkippedLowDisk { free_kib: u64 },
}

async fn workflow(session: Arc<Session>, target: Target) -> rexec::Result<Report> {
    let df = session
        .raw_command("df -Pk /tmp | awk 'NR==2 {print $4}'")
        .timeout(Duration::from_secs(10))
        .output()
        .await?
        .check()?;
    let free_kib: u64 = df.stdout_lossy().trim().parse().map_err(|_| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("unexpected df output {:?}", df.stdout_lossy()),
        )
    })?;
    if free_kib < 100 * 1024 {
        return Ok(Report::SkippedLowDisk { free_kib });
    }
    let path = format!("/tmp/rexec-example-{}", target.name());
    session
        .raw_command("cat >")
        .arg(&path)
        .stdin(format!("written by rexec for {}\n", target.name()))
        .output()
        .await?
        .check()?;
    let back = session.command("cat").arg(&path).output().await?.check()?;
    if back.stdout_lossy() != format!("written by rexec for {}\n", target.name()) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "the file read back differs",
        ));
    }
    session.command("rm").args(["-f", &path]).status().await?;
    Ok(Report::Written { free_kib })
}

#[tokio::main]
async fn main() -> ExitCode {
    let Some(inventory) = std::env::args().nth(1) else {
        eprintln!("usage: custom_workflow INVENTORY");
        return ExitCode::from(2);
    };
    let pool = match Inventory::load(&inventory) {
        Ok(inv) => Pool::new(inv.hosts()).concurrency(8),
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let results = pool
        .map(workflow)
        .observe(|event| {
            if let Event::Finished(r) = event {
                eprintln!("finished {} in {:?}", r.host, r.timings.total);
            }
        })
        .await;
    let mut ok = true;
    for r in results {
        match r.result {
            Ok(Report::Written { free_kib }) => {
                println!("{}: written ({free_kib} KiB free)", r.host)
            }
            Ok(Report::SkippedLowDisk { free_kib }) => {
                println!("{}: skipped, only {free_kib} KiB free", r.host)
            }
            Err(e) => {
                ok = false;
                println!("{e:#}");
            }
        }
    }
    ExitCode::from(if ok { 0 } else { 1 })
}
