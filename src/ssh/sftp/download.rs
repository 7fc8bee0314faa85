//! `get`: remote files and trees to local disk, through a local temporary file and
//! `rename(2)` (or, in place, straight into the destination).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use futures_util::stream::{FuturesOrdered, StreamExt};
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};

use super::blocking::{off_thread, OffThreadWriter};
use super::tree::{ensure_real_dir, PlannedEntry};
use super::{
    io_kind, is_status, local_error, parent_and_name, safe_name, sftp_error, temp_name, with_note,
    Progress, RemoteKind, RemoteMetadata, Sftp, TransferOptions, TransferStats, CANCEL_CLEANUP,
    CLEANUP_TIMEOUT, READS_IN_FLIGHT,
};
use crate::error::{Error, ErrorKind, Result};

impl Sftp {
    /// Downloads remote file `remote` to `local`, like paramiko's `get`. If `local` is an
    /// existing directory, the file goes inside it under its remote name.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] and other remote errors with the path; a remote device,
    /// FIFO or socket: [`ErrorKind::InvalidInput`]; local errors with the local path;
    /// [`ErrorKind::Disconnected`] with the bytes received. The local destination is
    /// unchanged after any error (unless [`TransferOptions::in_place`]).
    ///
    /// # Cancel safety
    /// As [`Sftp::get_with`]: dropping the future removes the local temporary file of the
    /// file being downloaded; files already completed stay.
    pub async fn get(&self, remote: &str, local: impl AsRef<Path>) -> Result<TransferStats> {
        self.get_with(remote, local, &TransferOptions::default())
            .await
    }

    /// [`Sftp::get`] with options. Directories (recursive): the whole remote tree is
    /// listed first and names are checked before anything is written: `..`, absolute
    /// names, names with `/`, empty names, duplicates, and names (or link targets) that
    /// are not UTF-8, which the SFTP library cannot carry, are refused
    /// ([`ErrorKind::Sftp`]); nothing is ever written outside `local`. Remote symlinks
    /// become local symlinks with the same target, never followed or written through;
    /// special files are skipped and counted in [`TransferStats::skipped`].
    ///
    /// # Errors
    /// As [`Sftp::get`]; [`ErrorKind::Interrupted`] when the token of
    /// [`TransferOptions::cancel_on`] is cancelled (the local temporary file is removed).
    ///
    /// # Cancel safety
    /// Dropping the future removes the local temporary file of the file being
    /// downloaded; files already completed stay.
    pub async fn get_with(
        &self,
        remote: &str,
        local: impl AsRef<Path>,
        options: &TransferOptions,
    ) -> Result<TransferStats> {
        let local = local.as_ref();
        let remote = self.resolve(remote).await;
        let remote = remote.as_ref();
        let meta = self.stat(remote).await?;
        let (_, name) = parent_and_name(remote);
        let dest = if local.is_dir() {
            if !safe_name(name) {
                return Err(self.fail(Error::new(
                    ErrorKind::InvalidInput,
                    format!("cannot derive a local name from remote path {remote:?}"),
                )));
            }
            local.join(name)
        } else {
            local.to_owned()
        };
        let mut stats = TransferStats::default();
        match meta.kind {
            RemoteKind::Dir => {
                if !options.recursive {
                    return Err(self.fail(Error::new(
                        ErrorKind::InvalidInput,
                        format!("{remote} is a directory (copy it recursively)"),
                    )));
                }
                let (plan, skipped) = self.plan_remote_tree(remote).await?;
                stats.skipped = skipped;
                let mut progress = Progress {
                    callback: options.progress.as_ref(),
                    done: 0,
                    total: plan.iter().map(|e| e.size).sum(),
                };
                self.get_tree(&dest, meta.mode, &plan, options, &mut stats, &mut progress)
                    .await?;
            }
            RemoteKind::File | RemoteKind::Symlink => {
                let mut progress = Progress {
                    callback: options.progress.as_ref(),
                    done: 0,
                    total: meta.size,
                };
                stats.bytes = self
                    .get_file(remote, &dest, &meta, options, &mut progress)
                    .await?;
                stats.files = 1;
            }
            RemoteKind::Other => {
                return Err(self.fail(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "{remote} is not a regular file or directory (a device, FIFO or socket \
                         has no fixed content or size)"
                    ),
                )))
            }
        }
        Ok(stats)
    }

    async fn get_tree(
        &self,
        dest: &Path,
        root_mode: u32,
        plan: &[PlannedEntry],
        options: &TransferOptions,
        stats: &mut TransferStats,
        progress: &mut Progress<'_>,
    ) -> Result<()> {
        let dir_mode = |m: u32| if options.preserve { m | 0o700 } else { 0o755 };
        ensure_real_dir(dest, dir_mode(root_mode)).map_err(|e| self.fail(e))?;
        stats.dirs += 1;
        for entry in plan {
            if options.is_cancelled() {
                return Err(self.fail(Error::new(
                    ErrorKind::Interrupted,
                    format!("interrupted before the download of {}", entry.remote),
                )));
            }
            let local = dest.join(&entry.relative);
            // Every parent was created by this transfer as a real directory (sorted plan).
            match entry.kind {
                RemoteKind::Dir => {
                    ensure_real_dir(&local, dir_mode(entry.mode)).map_err(|e| self.fail(e))?;
                    stats.dirs += 1;
                }
                RemoteKind::Symlink => {
                    let target = entry.target.as_deref().unwrap_or_default();
                    if let Ok(m) = std::fs::symlink_metadata(&local) {
                        if m.is_dir() {
                            return Err(self.fail(Error::new(
                                ErrorKind::LocalIo,
                                format!(
                                    "{} is a directory; not replacing it with a link",
                                    local.display()
                                ),
                            )));
                        }
                        let _ = std::fs::remove_file(&local);
                    }
                    std::os::unix::fs::symlink(target, &local)
                        .map_err(|e| self.fail(local_error(e, "cannot create link", &local)))?;
                    stats.symlinks += 1;
                }
                RemoteKind::File => {
                    let meta = RemoteMetadata {
                        size: entry.size,
                        mode: entry.mode,
                        mtime: entry.mtime,
                        kind: RemoteKind::File,
                    };
                    stats.bytes += self
                        .get_file(&entry.remote, &local, &meta, options, progress)
                        .await?;
                    stats.files += 1;
                }
                RemoteKind::Other => {}
            }
        }
        Ok(())
    }

    /// Downloads one file to `dest`; returns the bytes received.
    async fn get_file(
        &self,
        remote: &str,
        dest: &Path,
        meta: &RemoteMetadata,
        options: &TransferOptions,
        progress: &mut Progress<'_>,
    ) -> Result<u64> {
        if let Ok(m) = std::fs::symlink_metadata(dest) {
            if m.is_dir() {
                return Err(self.fail(Error::new(
                    ErrorKind::LocalIo,
                    format!("{} is a directory", dest.display()),
                )));
            }
        }
        if options.in_place {
            return self
                .get_file_in_place(remote, dest, meta, options, progress)
                .await;
        }
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "download".to_owned());
        let temp = dir.join(temp_name(&name));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| self.local_temp_error(e, dir, dest, &temp))?;
        let mut guard = LocalTempGuard {
            path: Some(temp.clone()),
        };
        let sink = WritebackFile::new(file, options.fsync);
        let (bytes, sink) = self
            .download_to(remote, sink, Some(progress), options)
            .await?;
        let finish = LocalFinish::new(meta, options);
        let (temp_path, dest_path) = (temp.clone(), dest.to_owned());
        // The fsync and the rename wait for the disk: on the blocking pool, not on a
        // runtime thread that other hosts' transfers share.
        off_thread(move || {
            finish.apply(sink.file, &temp_path)?;
            std::fs::rename(&temp_path, &dest_path)
                .map_err(|e| local_error(e, "cannot rename into", &dest_path))
        })
        .await
        .map_err(|e| self.fail(e))?;
        guard.path = None;
        Ok(bytes)
    }

    /// Writes local `dest` directly: opened with truncation (never through a symbolic
    /// link), written, fsynced, mode and times set.
    async fn get_file_in_place(
        &self,
        remote: &str,
        dest: &Path,
        meta: &RemoteMetadata,
        options: &TransferOptions,
        progress: &mut Progress<'_>,
    ) -> Result<u64> {
        if let Ok(m) = std::fs::symlink_metadata(dest) {
            let what = if m.file_type().is_symlink() {
                Some("a symbolic link (in-place mode does not write through links)")
            } else if !m.is_file() {
                Some("not a regular file")
            } else {
                None
            };
            if let Some(what) = what {
                return Err(self.fail(Error::new(
                    ErrorKind::InvalidInput,
                    format!("local {} is {what}", dest.display()),
                )));
            }
        }
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dest)
            .map_err(|e| self.fail(local_error(e, "cannot write", dest)))?;
        let sink = WritebackFile::new(file, options.fsync);
        let incomplete = || {
            format!(
                "local {} was written in place and is now incomplete",
                dest.display()
            )
        };
        let (bytes, sink) = self
            .download_to(remote, sink, Some(progress), options)
            .await
            .map_err(|e| with_note(e, &incomplete()))?;
        let finish = LocalFinish::new(meta, options);
        let dest_path = dest.to_owned();
        off_thread(move || finish.apply(sink.file, &dest_path))
            .await
            .map_err(|e| self.fail(with_note(e, "its contents were written in full")))?;
        Ok(bytes)
    }

    /// The error for a local temporary file that could not be created. When the
    /// directory refuses it but the destination itself is a writable file, says so and
    /// points at in-place mode.
    fn local_temp_error(&self, e: std::io::Error, dir: &Path, dest: &Path, temp: &Path) -> Error {
        let writable_file = e.kind() == std::io::ErrorKind::PermissionDenied
            && std::fs::symlink_metadata(dest).is_ok_and(|m| m.is_file())
            && OpenOptions::new().write(true).open(dest).is_ok();
        if writable_file {
            return self.fail(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "cannot create a temporary file in local {} (directory not writable); rexec \
                     writes to a temporary file and renames it over the destination so that an \
                     interrupted transfer never leaves a partial file; use --inplace to write \
                     the destination directly",
                    dir.display()
                ),
            ));
        }
        self.fail(local_error(e, "cannot create", temp))
    }

    /// The download pipeline: up to [`READS_IN_FLIGHT`] reads in flight, results written
    /// in order on the blocking pool ([`OffThreadWriter`]), until EOF or cancellation.
    /// Returns the bytes written and the sink, every byte written to it.
    pub(super) async fn download_to<W: std::io::Write + Send + 'static>(
        &self,
        remote: &str,
        sink: W,
        mut progress: Option<&mut Progress<'_>>,
        options: &TransferOptions,
    ) -> Result<(u64, W)> {
        let mut sink = OffThreadWriter::new(sink);
        let write_error = |e: std::io::Error| {
            let msg = format!("cannot write the download of {remote}");
            self.fail(Error::new(io_kind(&e), msg).with_source(e))
        };
        let handle = self
            .raw
            .open(remote, OpenFlags::READ, FileAttributes::empty())
            .await
            .map_err(|e| self.fail(sftp_error(e, "cannot read", remote)))?
            .handle;
        let chunk = u32::try_from(self.chunk).unwrap_or(32768);
        let mut in_flight = FuturesOrdered::new();
        let mut next_offset = 0u64;
        let mut written = 0u64;
        let mut eof = false;
        let result: Result<()> = async {
            loop {
                while !eof && in_flight.len() < READS_IN_FLIGHT {
                    let raw = self.raw.clone();
                    let h = handle.clone();
                    let at = next_offset;
                    in_flight.push_back(async move { (at, raw.read(h, at, chunk).await) });
                    next_offset += u64::from(chunk);
                }
                let next = tokio::select! {
                    biased;
                    () = options.cancelled() => {
                        return Err(self.fail(Error::new(
                            ErrorKind::Interrupted,
                            format!(
                                "interrupted: the download of {remote} stopped after {written} bytes"
                            ),
                        )));
                    }
                    next = in_flight.next() => next,
                };
                let Some((at, reply)) = next else {
                    break;
                };
                if at != written {
                    // A reply past a short read or EOF: ignore it.
                    continue;
                }
                match reply {
                    Ok(data) if data.data.is_empty() => eof = true,
                    Ok(data) => {
                        let n = data.data.len() as u64;
                        sink.write(data.data).await.map_err(write_error)?;
                        written += n;
                        if let Some(p) = progress.as_deref_mut() {
                            p.add(n);
                        }
                        if n < u64::from(chunk) {
                            // Short read: drop the requests after it and continue from here.
                            in_flight = FuturesOrdered::new();
                            next_offset = written;
                        }
                    }
                    Err(e) if is_status(&e, StatusCode::Eof) => eof = true,
                    Err(e) => {
                        let err = sftp_error(e, "cannot read", remote);
                        return Err(self.fail(if err.kind() == ErrorKind::Disconnected {
                            Error::new(
                                ErrorKind::Disconnected,
                                format!("connection lost after {written} bytes of {remote}"),
                            )
                        } else {
                            err
                        }));
                    }
                }
                if eof {
                    in_flight = FuturesOrdered::new();
                }
            }
            Ok(())
        }
        .await;
        drop(in_flight);
        let budget = match &result {
            Err(e) if e.kind() == ErrorKind::Interrupted => CANCEL_CLEANUP,
            _ => CLEANUP_TIMEOUT,
        };
        let _ = tokio::time::timeout(budget, self.raw.close(handle)).await;
        result?;
        let sink = sink.finish().await.map_err(write_error)?;
        Ok((written, sink))
    }
}

/// What is done to a downloaded file once its bytes are written: fsync, times, mode.
struct LocalFinish {
    fsync: bool,
    mtime: Option<u32>,
    mode: u32,
}

impl LocalFinish {
    fn new(meta: &RemoteMetadata, options: &TransferOptions) -> LocalFinish {
        LocalFinish {
            fsync: options.fsync,
            mtime: options.preserve.then_some(meta.mtime),
            mode: options.file_mode(meta.mode),
        }
    }

    /// Fsyncs the file and sets its times and mode (through the open file, so a read-only
    /// mode does not get in the way). Blocking: waits for the disk.
    fn apply(&self, file: File, path: &Path) -> Result<()> {
        if self.fsync {
            file.sync_all()
                .map_err(|e| local_error(e, "cannot write", path))?;
        }
        if let Some(mtime) = self.mtime {
            let when = UNIX_EPOCH + Duration::from_secs(u64::from(mtime));
            file.set_times(
                std::fs::FileTimes::new()
                    .set_modified(when)
                    .set_accessed(when),
            )
            .map_err(|e| local_error(e, "cannot set the time of", path))?;
        }
        file.set_permissions(std::fs::Permissions::from_mode(self.mode))
            .map_err(|e| local_error(e, "cannot set the mode of", path))
    }
}

/// Removes a local temporary file unless disarmed.
struct LocalTempGuard {
    path: Option<PathBuf>,
}

impl Drop for LocalTempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A local file that, when it will be fsynced at the end, asks the kernel every 32 MiB to
/// start writing what came so far (`sync_file_range`), so the disk works while the network
/// does and the final fsync has little left to wait for.
struct WritebackFile {
    file: File,
    enabled: bool,
    written: u64,
    started: u64,
}

impl WritebackFile {
    const STEP: u64 = 32 * 1024 * 1024;

    fn new(file: File, enabled: bool) -> WritebackFile {
        WritebackFile {
            file,
            enabled,
            written: 0,
            started: 0,
        }
    }
}

impl std::io::Write for WritebackFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.enabled && self.written - self.started >= Self::STEP {
            use std::os::unix::io::AsRawFd;
            let (from, len) = (self.started, self.written - self.started);
            // SAFETY: a valid descriptor owned by `self.file`; the call only starts
            // writeback of a range (a hint: errors are ignored, fsync reports them later).
            unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    i64::try_from(from).unwrap_or(i64::MAX),
                    i64::try_from(len).unwrap_or(i64::MAX),
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.started = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}
