//! Deploy a configuration file as root on every host and restart a service, asking for
//! the sudo password once (Ansible's `become` with `--ask-become-pass`): the file lands
//! owned by root with mode 0640, replaced atomically; a host where sudo refuses is
//! reported as such, not as a failed command.
//!
//! ```text
//! cargo run --example sudo_deploy -- inventory/loopback.toml app.conf /etc/app/app.conf 'systemctl reload app'
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use rexec::{Become, ErrorKind, Inventory, Pool, Secret, Session, Target, TransferOptions};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [inventory, local, remote, reload] = args.as_slice() else {
        eprintln!("usage: sudo_deploy INVENTORY LOCAL_FILE REMOTE_PATH RELOAD_COMMAND");
        return ExitCode::from(2);
    };
    let setup = Inventory::load(inventory)
        .and_then(|inv| Pool::try_new(inv.hosts()))
        .and_then(|pool| Ok((pool, Secret::prompt("BECOME password: ")?)));
    let (pool, password) = match setup {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let root = Become::root().password(password);
    let work = |session: Arc<Session>, _target: Target| {
        let root = root.clone();
        async move {
            let options = TransferOptions::new().mode(0o640);
            session.sudo_put(local, remote, &root, &options).await?;
            session
                .raw_command(reload.as_str())
                .sudo(root)
                .output()
                .await?
                .check()
        }
    };
    let results = pool.concurrency(16).map(work).await;
    let mut ok = true;
    for r in results {
        match r.result {
            Ok(_) => println!("{}: deployed", r.host),
            Err(e) if e.kind() == ErrorKind::Become => {
                ok = false;
                println!("{}: sudo refused: {e}", r.host);
            }
            Err(e) => {
                ok = false;
                println!("{}: {e:#}", r.host);
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
