//! `put` and `get` on every host of a pool ([`Pool::put`], [`Pool::get`]): local checks
//! before connecting, one SFTP session per host (or sudo for hosts with `become`),
//! per-host destinations for downloads, progress as events, the host's deadline. A
//! deadline or a cancellation stops a transfer through its token, so it removes its
//! temporary file before the host's result is reported.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::ssh::{Session, Sftp, TransferOptions, TransferStats};
use crate::template::Template;

use super::run::Direction;
use super::{Event, Pool, Target};

/// Sees a transfer run's events.
type TransferObserver<'o> = dyn Fn(Event<'_, TransferStats>) + 'o;

/// How long a transfer stopped by its deadline may take to clean up (the SFTP layer
/// bounds its own cleanup at about 2 s) before its result is reported without waiting.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// See [`TransferRun::check`](super::TransferRun::check).
pub(crate) fn check(
    pool: &Pool,
    direction: &Direction,
    options: &TransferOptions,
    raw: bool,
) -> Result<Option<TransferStats>> {
    let targets = pool.targets();
    check_sudo(direction, options, targets)?;
    if !raw {
        for t in targets.iter().filter(|t| t.failing.is_none()) {
            match direction {
                Direction::Put { remote, .. } => {
                    t.render_path(remote)?;
                }
                Direction::Get {
                    remote, local_dir, ..
                } => {
                    t.render_path(remote)?;
                    t.render_path(local_dir)?;
                }
            }
        }
    }
    match direction {
        Direction::Put { local, .. } => check_put_source(local, options).map(Some),
        Direction::Get { local_dir, .. } => {
            check_get_destination(local_dir, targets, raw)?;
            Ok(None)
        }
    }
}

/// Local problems of `put` that can be seen before connecting: a missing source, a
/// directory without recursion, a device, FIFO or socket, names that are not UTF-8.
/// Returns what one host will be sent.
fn check_put_source(local: &Path, options: &TransferOptions) -> Result<TransferStats> {
    let meta = std::fs::metadata(local).map_err(|e| {
        Error::new(
            ErrorKind::NotFound,
            format!("cannot read {}", local.display()),
        )
        .with_source(e)
    })?;
    if meta.is_dir() && !options.recursive {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} is a directory: use put -r", local.display()),
        ));
    }
    Sftp::check_local_source(local, options)
}

/// `get`: every local directory the hosts' copies go to must be creatable and writable
/// before anything connects. Nothing is created here: the deepest existing ancestor of
/// each directory must be a directory this process can write.
fn check_get_destination(local_dir: &str, targets: &[Target], raw: bool) -> Result<()> {
    let mut dirs = Vec::new();
    if !raw && !Template::parse_path(local_dir).placeholders().is_empty() {
        for t in targets.iter().filter(|t| t.failing.is_none()) {
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
fn get_dir(raw: bool, target: &Target, local_dir: &str) -> Result<PathBuf> {
    let per_host = !raw && !Template::parse_path(local_dir).placeholders().is_empty();
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

/// Transfers through sudo copy single files, replacing the destination atomically:
/// recursion on a directory and `in_place` are refused before connecting.
fn check_sudo(direction: &Direction, options: &TransferOptions, targets: &[Target]) -> Result<()> {
    if targets.iter().all(|t| t.sudo.is_none()) {
        return Ok(());
    }
    if options.in_place {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "--inplace does not apply with --become: the file is replaced atomically as \
                 the target user",
        ));
    }
    match direction {
        Direction::Put { local, .. } if options.recursive && local.is_dir() => Err(Error::new(
            ErrorKind::InvalidInput,
            "put -r with --become is not supported: transfers through sudo copy single files",
        )),
        Direction::Get { .. } if options.recursive => Err(Error::new(
            ErrorKind::InvalidInput,
            "get -r with --become is not supported: transfers through sudo copy single files",
        )),
        _ => Ok(()),
    }
}

/// One host's transfer, with its deadline, cancellation and progress events.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn one_host(
    pool: &Pool,
    index: usize,
    session: Arc<Session>,
    target: Target,
    direction: &Direction,
    options: &TransferOptions,
    raw: bool,
    observer: Option<&TransferObserver<'_>>,
) -> Result<TransferStats> {
    if session.is_local() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "put and get need an ssh host (this one uses the local transport)",
        ));
    }
    // Cancelled by the pool's token or by this host's deadline.
    let stop = pool.cancel_token().child_token();
    let mut options = options.clone();
    options = options.cancel_on(stop.clone());
    let (progress_to, mut progress) = tokio::sync::mpsc::unbounded_channel::<(u64, u64)>();
    if observer.is_some() {
        options = options.progress(Arc::new(move |done, total| {
            let _ = progress_to.send((done, total));
        }));
    }
    let path = |p: &str| match raw {
        true => Ok(p.to_owned()),
        false => target.render_path(p),
    };
    let transfer = async {
        if let Some(b) = &target.sudo {
            return match direction {
                Direction::Put { local, remote } => {
                    session.sudo_put(local, &path(remote)?, b, &options).await
                }
                Direction::Get { remote, local_dir } => {
                    let dir = get_dir(raw, &target, local_dir)?;
                    session.sudo_get(&path(remote)?, &dir, b, &options).await
                }
            };
        }
        let sftp = session.sftp().await?;
        match direction {
            Direction::Put { local, remote } => {
                let remote = path(remote)?;
                sftp.put_with(local, &remote, &options).await
            }
            Direction::Get { remote, local_dir } => {
                let remote = path(remote)?;
                let dir = get_dir(raw, &target, local_dir)?;
                sftp.get_with(&remote, &dir, &options).await
            }
        }
    };
    let mut transfer = std::pin::pin!(transfer);
    // Progress events are reported here, on the run's task, as they come.
    let mut sent = 0u64;
    let mut report = |done: u64, total: u64| {
        if let Some(observer) = observer {
            observer(Event::Progress {
                index,
                host: target.name(),
                bytes: done.saturating_sub(sent),
                done,
                total,
            });
        }
        sent = sent.max(done);
    };
    let deadline = async {
        match target.command_timeout {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    let mut deadline = std::pin::pin!(deadline);
    loop {
        tokio::select! {
            result = &mut transfer => {
                while let Ok((done, total)) = progress.try_recv() {
                    report(done, total);
                }
                return result;
            }
            Some((done, total)) = progress.recv() => report(done, total),
            () = &mut deadline => break,
        }
    }
    // The deadline passed: stop the transfer and let it clean up.
    let limit = target.command_timeout.unwrap_or_default();
    stop.cancel();
    let stopped = tokio::time::timeout(STOP_GRACE, &mut transfer).await;
    let mut message = format!("the transfer timed out after {:.2}s", limit.as_secs_f64());
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
