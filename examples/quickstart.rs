//! The six-line script: run a command on a group, print the failures, upload a file to
//! the same hosts, exit with the run's code. With no arguments it is exactly:
//!
//! ```rust,ignore
//! let inv = Inventory::load("hosts.toml")?;
//! let pool = Pool::new(&inv.select("web:!web03")?).concurrency(50);
//! let report = pool.run("systemctl is-active nginx").await;      // one result per host, in order
//! for r in report.failed() { eprintln!("{}: {}", r.host(), r.outcome()); }
//! pool.put("app.tar.gz", "/srv/app/").await?.check()?;           // fan-out upload, same report type
//! std::process::exit(report.exit_code().into());
//! ```
//!
//! Each value can be given instead, in this order:
//!
//! ```text
//! cargo run --example quickstart -- hosts.toml 'web:!web03' 'systemctl is-active nginx' app.tar.gz /srv/app/
//! ```

use rexec::{Inventory, Pool};

#[tokio::main]
async fn main() -> rexec::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut arg = |default: &str| args.next().unwrap_or_else(|| default.to_owned());
    let (inventory, pattern, command) = (
        arg("hosts.toml"),
        arg("web:!web03"),
        arg("systemctl is-active nginx"),
    );
    let (file, destination) = (arg("app.tar.gz"), arg("/srv/app/"));

    let inv = Inventory::load(&inventory)?;
    let pool = Pool::new(&inv.select(&pattern)?).concurrency(50);
    let report = pool.run(&command).await; // one result per host, in order
    for r in report.failed() {
        eprintln!("{}: {}", r.host(), r.outcome());
    }
    pool.put(&file, &destination).await?.check()?; // fan-out upload, same report type
    std::process::exit(report.exit_code().into());
}
