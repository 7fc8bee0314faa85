//! `rexec put` and `rexec get` over the pool: one SFTP session per host, per-host
//! destinations for downloads, a byte progress bar, the same summary and exit codes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rexec::{Error, ErrorKind, Outcome, Pool, RunExit, Target, Template, TransferOptions};

use super::args::{Action, Config};
use super::report::Reporter;

pub async fn run(
    config: &Config,
    pool: &Pool,
    targets: &[Target],
    action: &Action,
) -> Result<RunExit, Error> {
    let reporter = Arc::new(Reporter::new(
        config.mode,
        targets.len(),
        config.quiet,
        None,
    ));
    let total = match action {
        Action::Put { local, .. } => std::fs::metadata(local)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len() * targets.len() as u64),
        _ => None,
    };
    reporter.bytes_mode(total);
    let work = |session: Arc<rexec::Session>, target: Target| {
        let reporter = reporter.clone();
        async move {
            let last = Arc::new(AtomicU64::new(0));
            let mut options = TransferOptions::new();
            let (recursive, preserve, fsync) = match action {
                Action::Put {
                    recursive,
                    preserve,
                    fsync,
                    ..
                }
                | Action::Get {
                    recursive,
                    preserve,
                    fsync,
                    ..
                } => (*recursive, *preserve, *fsync),
                Action::Run(_) => (false, true, true),
            };
            options.recursive(recursive).preserve(preserve).fsync(fsync);
            let seen = last.clone();
            let bytes_to = reporter.clone();
            options.progress(Arc::new(move |done, _total| {
                let before = seen.swap(done, Ordering::Relaxed);
                bytes_to.add_bytes(done.saturating_sub(before));
            }));
            if session.is_local() {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "put and get need an ssh host (this one uses the local transport)",
                ));
            }
            let path = |p: &str| match config.raw {
                true => Ok(p.to_owned()),
                false => target.render_path(p),
            };
            let transfer = async {
                let sftp = session.sftp().await?;
                match action {
                    Action::Put { local, remote, .. } => {
                        let remote = path(remote)?;
                        sftp.put_with(local, &remote, &options).await
                    }
                    Action::Get {
                        remote, local_dir, ..
                    } => {
                        let remote = path(remote)?;
                        let per_host = !config.raw
                            && !Template::parse_path(local_dir).placeholders().is_empty();
                        let dir = if per_host {
                            PathBuf::from(path(local_dir)?)
                        } else {
                            PathBuf::from(local_dir).join(target.name())
                        };
                        std::fs::create_dir_all(&dir).map_err(|e| {
                            Error::new(
                                ErrorKind::LocalIo,
                                format!("cannot create {}", dir.display()),
                            )
                            .with_source(e)
                        })?;
                        sftp.get_with(&remote, &dir, &options).await
                    }
                    Action::Run(_) => Err(Error::new(ErrorKind::InvalidInput, "not a transfer")),
                }
            };
            match target.command_timeout {
                Some(limit) => tokio::time::timeout(limit, transfer)
                    .await
                    .unwrap_or_else(|_| {
                        Err(Error::new(
                            ErrorKind::Timeout,
                            format!(
                                "the transfer timed out after {}",
                                super::args::seconds(limit)
                            ),
                        ))
                    }),
                None => transfer.await,
            }
        }
    };
    let results = pool
        .run(targets, work, |event| reporter.transfer_event(event))
        .await;
    let outcomes: Vec<(String, Outcome)> = results
        .iter()
        .map(|r| (r.host.clone(), Outcome::of_result(&r.result)))
        .collect();
    let exit = RunExit::of(outcomes.iter().map(|(_, o)| *o));
    reporter.finish(&outcomes, exit, config.quiet);
    super::write_failed_hosts(config, &outcomes)?;
    Ok(exit)
}
