//! `rexec put` and `rexec get` over the pool: local checks before connecting, one SFTP
//! session per host, per-host destinations for downloads, a byte progress bar, the same
//! summary and exit codes. Ctrl-C and `-t` stop a transfer through its cancellation token,
//! so it removes its temporary file before the host's result is reported.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rexec::{
    Error, ErrorKind, Outcome, Pool, RunExit, Sftp, Target, Template, TransferOptions,
    TransferStats,
};

use super::args::{seconds, Action, Config};
use super::report::Reporter;

/// How long a transfer stopped by its deadline may take to clean up (the library bounds
/// its own cleanup at about 2 s) before its result is reported without waiting.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Local problems of `put` that can be seen before connecting (exit 2): a missing
/// source, a directory without `-r`, a device, FIFO or socket, names that are not UTF-8.
/// Returns what one host will be sent. Special files inside a tree are logged here, once.
pub fn check_put_source(action: &Action) -> Result<Option<TransferStats>, Error> {
    let Action::Put {
        local, recursive, ..
    } = action
    else {
        return Ok(None);
    };
    let meta = std::fs::metadata(local).map_err(|e| {
        Error::new(
            ErrorKind::NotFound,
            format!("cannot read {}", local.display()),
        )
        .with_source(e)
    })?;
    if meta.is_dir() && !recursive {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} is a directory: use put -r", local.display()),
        ));
    }
    let mut options = TransferOptions::new();
    options.recursive(*recursive);
    Sftp::check_local_source(local, &options).map(Some)
}

/// `get`: every local directory the hosts' copies go to must be creatable and writable
/// before anything connects (exit 2). Nothing is created here: the deepest existing
/// ancestor of each directory must be a directory this process can write.
pub fn check_get_destination(action: &Action, targets: &[Target], raw: bool) -> Result<(), Error> {
    let Action::Get { local_dir, .. } = action else {
        return Ok(());
    };
    let mut dirs = Vec::new();
    if !raw && !Template::parse_path(local_dir).placeholders().is_empty() {
        for t in targets {
            dirs.push(PathBuf::from(t.render_path(local_dir)?));
        }
        dirs.sort();
        dirs.dedup();
    } else {
        dirs.push(PathBuf::from(local_dir));
    }
    for dir in &dirs {
        check_writable_dir(dir)?;
    }
    Ok(())
}

fn check_writable_dir(dir: &Path) -> Result<(), Error> {
    let mut existing = dir;
    loop {
        let at = if existing.as_os_str().is_empty() {
            Path::new(".")
        } else {
            existing
        };
        match std::fs::metadata(at) {
            Ok(m) if m.is_dir() => {
                existing = at;
                break;
            }
            Ok(_) => {
                return Err(Error::new(
                    ErrorKind::LocalIo,
                    format!(
                        "cannot create {}: {} is not a directory",
                        dir.display(),
                        at.display()
                    ),
                ))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                match existing.parent() {
                    Some(parent) => existing = parent,
                    None => {
                        return Err(Error::new(
                            ErrorKind::LocalIo,
                            format!("cannot create {}", dir.display()),
                        )
                        .with_source(e))
                    }
                }
            }
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::LocalIo,
                    format!("cannot create {}", dir.display()),
                )
                .with_source(e))
            }
        }
    }
    // Whether files can be created there: create and remove an empty probe file.
    let probe = existing.join(format!(".rexec-probe-{}.tmp", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => {
            let kind = if e.kind() == std::io::ErrorKind::PermissionDenied {
                ErrorKind::PermissionDenied
            } else {
                ErrorKind::LocalIo
            };
            let message = if existing == dir {
                format!("cannot write to {}", dir.display())
            } else {
                format!(
                    "cannot create {}: cannot write to {}",
                    dir.display(),
                    existing.display()
                )
            };
            Err(Error::new(kind, message).with_source(e))
        }
    }
}

/// `get`: the local directory of one host's copy (LOCAL_DIR/<host>, or LOCAL_DIR rendered
/// for the host when it has placeholders), created.
fn get_dir(config: &Config, target: &Target, local_dir: &str) -> Result<PathBuf, Error> {
    let per_host = !config.raw && !Template::parse_path(local_dir).placeholders().is_empty();
    let dir = if per_host {
        PathBuf::from(target.render_path(local_dir)?)
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
    Ok(dir)
}

/// Transfers through sudo copy single files, replacing the destination atomically: `-r`
/// on a directory and `--inplace` are refused before connecting (exit 2).
pub fn check_sudo_transfer(action: &Action, targets: &[Target]) -> Result<(), Error> {
    if targets.iter().all(|t| t.sudo.is_none()) {
        return Ok(());
    }
    match action {
        Action::Put { in_place: true, .. } | Action::Get { in_place: true, .. } => Err(Error::new(
            ErrorKind::InvalidInput,
            "--inplace does not apply with --become: the file is replaced atomically as \
                 the target user",
        )),
        Action::Put {
            local,
            recursive: true,
            ..
        } if local.is_dir() => Err(Error::new(
            ErrorKind::InvalidInput,
            "put -r with --become is not supported: transfers through sudo copy single files",
        )),
        Action::Get {
            recursive: true, ..
        } => Err(Error::new(
            ErrorKind::InvalidInput,
            "get -r with --become is not supported: transfers through sudo copy single files",
        )),
        _ => Ok(()),
    }
}

/// Runs a `put` or `get` on every target; `source` is what [`check_put_source`] found.
pub async fn run(
    config: &Config,
    pool: &Pool,
    targets: &[Target],
    action: &Action,
    source: Option<TransferStats>,
    interrupted: &AtomicBool,
) -> Result<RunExit, Error> {
    let reporter = Arc::new(
        Reporter::new(config.mode, targets.len(), config.quiet, None)
            .with_shard(super::shard_summary(config))
            .rollout(&config.rollout, targets.len()),
    );
    // `put`: what check_put_source found, sent to every host.
    reporter.bytes_mode(source.map(|s| s.bytes * targets.len() as u64));
    let cancel = pool.cancel_token();
    let work = |session: Arc<rexec::Session>, target: Target| {
        let reporter = reporter.clone();
        // Cancelled by Ctrl-C (through the pool's token) or by this host's deadline.
        let stop = cancel.child_token();
        async move {
            let last = Arc::new(AtomicU64::new(0));
            let mut options = TransferOptions::new();
            let (recursive, preserve, fsync, in_place) = match action {
                Action::Put {
                    recursive,
                    preserve,
                    fsync,
                    in_place,
                    ..
                }
                | Action::Get {
                    recursive,
                    preserve,
                    fsync,
                    in_place,
                    ..
                } => (*recursive, *preserve, *fsync, *in_place),
                Action::Run(_) => (false, true, true, false),
            };
            if let Action::Put {
                mode: Some(mode), ..
            } = action
            {
                options.mode(*mode);
            }
            options
                .recursive(recursive)
                .preserve(preserve)
                .fsync(fsync)
                .in_place(in_place)
                .cancel_on(stop.clone());
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
                if let Some(b) = &target.sudo {
                    return match action {
                        Action::Put { local, remote, .. } => {
                            session.sudo_put(local, &path(remote)?, b, &options).await
                        }
                        Action::Get {
                            remote, local_dir, ..
                        } => {
                            let dir = get_dir(config, &target, local_dir)?;
                            session.sudo_get(&path(remote)?, &dir, b, &options).await
                        }
                        Action::Run(_) => {
                            Err(Error::new(ErrorKind::InvalidInput, "not a transfer"))
                        }
                    };
                }
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
                        let dir = get_dir(config, &target, local_dir)?;
                        sftp.get_with(&remote, &dir, &options).await
                    }
                    Action::Run(_) => Err(Error::new(ErrorKind::InvalidInput, "not a transfer")),
                }
            };
            let mut transfer = std::pin::pin!(transfer);
            let Some(limit) = target.command_timeout else {
                return transfer.await;
            };
            tokio::select! {
                result = &mut transfer => result,
                () = tokio::time::sleep(limit) => {
                    stop.cancel();
                    let stopped = tokio::time::timeout(STOP_GRACE, &mut transfer).await;
                    let mut message = format!("the transfer timed out after {}", seconds(limit));
                    match stopped {
                        // Finished right at the deadline.
                        Ok(Ok(stats)) => return Ok(stats),
                        Ok(Err(e)) => {
                            message.push_str(": ");
                            message.push_str(e.message().trim_start_matches("interrupted: "));
                        }
                        Err(_) => {}
                    }
                    Err(Error::new(ErrorKind::Timeout, message))
                }
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
    let exit = super::with_interrupt(RunExit::of(outcomes.iter().map(|(_, o)| *o)), interrupted);
    reporter.finish(&outcomes, exit, config.quiet);
    super::write_failed_hosts(config, &outcomes)?;
    Ok(exit)
}
