//! `put`: local files and trees to the server, through a temporary file and an atomic
//! rename (or, in place, straight into the destination).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use futures_util::stream::{FuturesUnordered, StreamExt};
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use tokio::time::Instant;

use super::blocking::{off_thread, OffThreadReader, UploadSource};
use super::tree::{remote_name_of, scan_local, LocalKind};
use super::{
    is_status, join, local_error, metadata_of, mtime_secs, parent_and_name, sftp_error, temp_name,
    with_note, Progress, RemoteKind, RemoteTempGuard, Sftp, TransferOptions, TransferStats,
    CANCEL_CLEANUP, CLEANUP_TIMEOUT, WRITES_IN_FLIGHT,
};
use crate::error::{Error, ErrorKind, Result};

/// Bytes of upload data in flight at once across every upload of the process (read from
/// the source, not yet acknowledged by the server). Each upload keeps up to
/// [`WRITES_IN_FLIGHT`] chunks of 255 KiB in flight (4 MiB, twice the server's window);
/// a fan-out `put` to 20 hosts held 80 MiB of them. Every chunk in flight exists about
/// twice for a while (the read buffer and the SFTP packet russh queues until the window
/// opens), so the budget is half of the 64 MiB a fan-out upload may use: measured, 64 MiB
/// x 20 hosts peaked at 90-120 MiB RSS with a 64 MiB budget and 56-64 MiB with 32 MiB, at
/// the same speed (bench/RESULTS.md, "Upload buffer budget"). 32 MiB in flight is 640 MiB/s at 50 ms round trip, more than any link
/// rexec drives; one upload alone is limited by the server's 2 MiB window first. Not
/// counted here: the one block each upload reads ahead on the blocking pool
/// ([`OffThreadReader`]).
pub(crate) const UPLOAD_BUFFER_CAP: usize = 32 * 1024 * 1024;

/// The shared budget of [`UPLOAD_BUFFER_CAP`] bytes.
static UPLOAD_BUFFERS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(UPLOAD_BUFFER_CAP);

/// How an uploaded file is finished: final permission bits, modification time (none:
/// the server's clock), and whether to fsync.
#[derive(Clone, Copy)]
pub(super) struct Finish {
    pub(super) mode: u32,
    pub(super) mtime: Option<u32>,
    pub(super) fsync: bool,
}

impl Sftp {
    /// Uploads local file `local` to `remote`, like paramiko's `put`. If `remote` is an
    /// existing directory, the file goes inside it under its own name.
    ///
    /// # Errors
    /// Local errors before anything is sent ([`ErrorKind::NotFound`]; a directory without
    /// [`TransferOptions::recursive`], a device, FIFO or socket, or a name that is not
    /// UTF-8: [`ErrorKind::InvalidInput`]); remote errors with the path;
    /// [`ErrorKind::Disconnected`] with the bytes sent so far. The destination is
    /// unchanged after any error (unless [`TransferOptions::in_place`]).
    ///
    /// # Cancel safety
    /// As [`Sftp::put_with`]: dropping the future removes the temporary file of the file
    /// being uploaded (from a spawned task); files already completed stay.
    pub async fn put(&self, local: impl AsRef<Path>, remote: &str) -> Result<TransferStats> {
        self.put_with(local, remote, &TransferOptions::default())
            .await
    }

    /// [`Sftp::put`] with options (recursive directories, preserve, in place, progress,
    /// cancellation).
    ///
    /// The whole local source is checked first, as [`Sftp::check_local_source`] does:
    /// nothing is sent if a name in it is not UTF-8. Directories: `remote` becomes a copy
    /// of `local` (created if missing; if `remote` is an existing directory, the copy goes
    /// inside it under `local`'s name, like `scp -r`). Symbolic links are recreated as
    /// links with the same target, never followed; special files are skipped and counted
    /// in [`TransferStats::skipped`].
    ///
    /// # Errors
    /// As [`Sftp::put`]; [`ErrorKind::Interrupted`] when the token of
    /// [`TransferOptions::cancel_on`] is cancelled.
    ///
    /// # Cancel safety
    /// Dropping the future removes the temporary file of the file being uploaded (from a
    /// spawned task, so possibly after the drop); files already completed stay. Cancel
    /// through [`TransferOptions::cancel_on`] to have it removed before the call returns.
    pub async fn put_with(
        &self,
        local: impl AsRef<Path>,
        remote: &str,
        options: &TransferOptions,
    ) -> Result<TransferStats> {
        let local = local.as_ref();
        // A tree walk stats every file: on the blocking pool.
        let (root, walk_options) = (local.to_owned(), options.clone());
        let plan = off_thread(move || scan_local(&root, &walk_options))
            .await
            .map_err(|e| self.fail(e))?;
        for path in &plan.skipped {
            tracing::debug!("{}: skipping special file {}", self.host, path.display());
        }
        let remote = self.resolve(remote).await;
        let into_dir = matches!(self.stat(&remote).await, Ok(m) if m.kind == RemoteKind::Dir);
        let dest = if into_dir {
            join(&remote, &remote_name_of(local).map_err(|e| self.fail(e))?)
        } else {
            remote.into_owned()
        };
        let mut progress = Progress {
            callback: options.progress.as_ref(),
            done: 0,
            total: plan.stats().bytes,
        };
        let mut stats = TransferStats {
            skipped: plan.skipped.len() as u64,
            ..TransferStats::default()
        };
        for entry in &plan.entries {
            let target = if entry.relative.is_empty() {
                dest.clone()
            } else {
                join(&dest, &entry.relative)
            };
            if options.is_cancelled() {
                return Err(self.fail(Error::new(
                    ErrorKind::Interrupted,
                    format!("interrupted before the upload of {target}"),
                )));
            }
            match &entry.kind {
                LocalKind::Dir => {
                    let mode = if options.preserve {
                        entry.meta.permissions().mode() & 0o7777
                    } else {
                        0o755
                    };
                    self.ensure_remote_dir(&target, mode).await?;
                    stats.dirs += 1;
                }
                LocalKind::Symlink(link_target) => {
                    let _ = self.raw.remove(target.as_str()).await;
                    // OpenSSH's sftp-server takes SSH_FXP_SYMLINK's arguments in the
                    // reverse order of the draft (target first); russh-sftp sends
                    // (linkpath, targetpath), so they are swapped here.
                    self.raw
                        .symlink(link_target.as_str(), target.as_str())
                        .await
                        .map_err(|e| self.fail(sftp_error(e, "create symlink", &target)))?;
                    stats.symlinks += 1;
                }
                LocalKind::File => {
                    stats.bytes += self
                        .put_file(&entry.path, &entry.meta, &target, options, &mut progress)
                        .await?;
                    stats.files += 1;
                }
            }
        }
        Ok(stats)
    }

    /// Accepts an existing remote directory or creates it with `mode`.
    async fn ensure_remote_dir(&self, path: &str, mode: u32) -> Result<()> {
        match self.lstat(path).await {
            Ok(m) if m.kind == RemoteKind::Dir => Ok(()),
            Ok(_) => Err(self.fail(Error::new(
                ErrorKind::Sftp,
                format!("{path} exists and is not a directory"),
            ))),
            Err(e) if e.kind() == ErrorKind::NotFound => self.create_dir(path, mode).await,
            Err(e) => Err(e),
        }
    }

    /// Uploads one local file; returns the bytes sent.
    async fn put_file(
        &self,
        local: &Path,
        meta: &std::fs::Metadata,
        dest: &str,
        options: &TransferOptions,
        progress: &mut Progress<'_>,
    ) -> Result<u64> {
        // Opened here (one system call); read on the blocking pool, a chunk ahead: a
        // read that waits for the disk must not stall the runtime thread other hosts
        // share.
        let file = std::fs::File::open(local)
            .map_err(|e| self.fail(local_error(e, "cannot open", local)))?;
        let finish = Finish {
            mode: options.file_mode(meta.permissions().mode()),
            mtime: options.preserve.then(|| mtime_secs(meta)),
            fsync: options.fsync,
        };
        self.upload_from(dest, finish, meta.len(), file, progress, options)
            .await
    }

    /// The upload of one file: atomically through a temporary file, or in place.
    /// Returns the bytes sent.
    pub(super) async fn upload_from<R: UploadSource>(
        &self,
        dest: &str,
        finish: Finish,
        expected: u64,
        source: R,
        progress: &mut Progress<'_>,
        options: &TransferOptions,
    ) -> Result<u64> {
        let source = &mut OffThreadReader::new(source);
        if options.in_place {
            return self
                .upload_in_place(dest, finish, expected, source, progress, options)
                .await;
        }
        let (dir, name) = parent_and_name(dest);
        let temp = join(dir, &temp_name(name));
        let attrs = FileAttributes {
            permissions: Some(0o600),
            ..FileAttributes::empty()
        };
        let handle = match self
            .raw
            .open(
                temp.as_str(),
                OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::TRUNCATE,
                attrs,
            )
            .await
        {
            Ok(h) => h.handle,
            Err(e) => return Err(self.temp_file_error(e, dir, dest).await),
        };
        let mut guard = RemoteTempGuard {
            raw: Some(self.raw.clone()),
            path: temp.clone(),
        };
        let result: Result<u64> = async {
            let sent = self
                .write_all(&handle, source, expected, progress, dest, options)
                .await?;
            self.finish_file(&handle, dest, finish).await?;
            Ok(sent)
        }
        .await;
        let error = match result {
            Ok(sent) => {
                let done = match self.raw.close(handle.as_str()).await {
                    Ok(_) => self.rename(&temp, dest).await,
                    Err(e) => Err(self.fail(sftp_error(e, "cannot close", dest))),
                };
                match done {
                    Ok(()) => {
                        guard.disarm();
                        return Ok(sent);
                    }
                    Err(e) => {
                        guard.disarm();
                        if self.remove_temp(&temp).await {
                            return Err(e);
                        }
                        e
                    }
                }
            }
            Err(e) => {
                guard.disarm();
                let removed = if e.kind() == ErrorKind::Interrupted {
                    // Remove first, then close; both within the cancellation budget.
                    let deadline = Instant::now() + CANCEL_CLEANUP;
                    let removed = tokio::time::timeout_at(deadline, self.remove_temp(&temp))
                        .await
                        .unwrap_or(false);
                    let _ =
                        tokio::time::timeout_at(deadline, self.raw.close(handle.as_str())).await;
                    removed
                } else {
                    let _ = tokio::time::timeout(CLEANUP_TIMEOUT, self.raw.close(handle.as_str()))
                        .await;
                    self.remove_temp(&temp).await
                };
                if removed {
                    return Err(e);
                }
                e
            }
        };
        Err(with_note(
            error,
            &format!("the temporary file {temp} could not be removed and remains on the server"),
        ))
    }

    /// Writes `dest` directly: opened with truncation, written, attributes set, fsynced.
    async fn upload_in_place<R: UploadSource>(
        &self,
        dest: &str,
        finish: Finish,
        expected: u64,
        source: &mut OffThreadReader<R>,
        progress: &mut Progress<'_>,
        options: &TransferOptions,
    ) -> Result<u64> {
        match self
            .raw
            .lstat(dest)
            .await
            .map(|a| metadata_of(&a.attrs).kind)
        {
            Ok(RemoteKind::File) | Err(_) => {}
            Ok(kind) => {
                let what = match kind {
                    RemoteKind::Symlink => {
                        "a symbolic link (in-place mode does not write through links)"
                    }
                    RemoteKind::Dir => "a directory",
                    _ => "not a regular file",
                };
                return Err(self.fail(Error::new(
                    ErrorKind::InvalidInput,
                    format!("{dest} is {what}"),
                )));
            }
        }
        let attrs = FileAttributes {
            // For a new file; an existing one keeps its mode until `finish` sets it.
            permissions: Some(finish.mode),
            ..FileAttributes::empty()
        };
        let handle = self
            .raw
            .open(
                dest,
                OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
                attrs,
            )
            .await
            .map_err(|e| self.fail(sftp_error(e, "cannot write", dest)))?
            .handle;
        let written = self
            .write_all(&handle, source, expected, progress, dest, options)
            .await;
        let result = match written {
            Ok(sent) => self
                .finish_file(&handle, dest, finish)
                .await
                .map(|()| sent)
                .map_err(|e| with_note(e, "its contents were written in full")),
            Err(e) => Err(with_note(
                e,
                &format!("{dest} was written in place and is now incomplete"),
            )),
        };
        match result {
            Ok(sent) => {
                self.raw
                    .close(handle.as_str())
                    .await
                    .map_err(|e| self.fail(sftp_error(e, "cannot close", dest)))?;
                Ok(sent)
            }
            Err(e) => {
                let budget = if e.kind() == ErrorKind::Interrupted {
                    CANCEL_CLEANUP
                } else {
                    CLEANUP_TIMEOUT
                };
                let _ = tokio::time::timeout(budget, self.raw.close(handle.as_str())).await;
                Err(e)
            }
        }
    }

    /// The error for a temporary file that could not be created. When the directory
    /// refuses it but the destination itself is a writable file, says so and points at
    /// in-place mode.
    async fn temp_file_error(
        &self,
        e: russh_sftp::client::error::Error,
        dir: &str,
        dest: &str,
    ) -> Error {
        if is_status(&e, StatusCode::PermissionDenied) && self.is_writable_file(dest).await {
            let dir = if dir.is_empty() {
                "the login directory"
            } else {
                dir
            };
            return self.fail(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "cannot create a temporary file in {dir} (directory not writable); rexec \
                     writes to a temporary file and renames it over the destination so that an \
                     interrupted transfer never leaves a partial file; use --inplace to write \
                     the destination directly"
                ),
            ));
        }
        self.fail(sftp_error(e, "cannot write", dest))
    }

    /// Whether remote `path` is a regular file this user may open for writing (opened
    /// without truncation and closed again; nothing is written).
    async fn is_writable_file(&self, path: &str) -> bool {
        // Only a regular file: opening a FIFO for writing would block the server.
        match self.raw.lstat(path).await {
            Ok(a) if metadata_of(&a.attrs).kind == RemoteKind::File => {}
            _ => return false,
        }
        match self
            .raw
            .open(path, OpenFlags::WRITE, FileAttributes::empty())
            .await
        {
            Ok(h) => {
                let _ = self.raw.close(h.handle).await;
                true
            }
            Err(_) => false,
        }
    }

    /// The write pipeline: chunks read from `source`, up to [`WRITES_IN_FLIGHT`] writes
    /// in flight, until EOF or cancellation. Returns the bytes written.
    async fn write_all<R: UploadSource>(
        &self,
        handle: &str,
        source: &mut OffThreadReader<R>,
        expected: u64,
        progress: &mut Progress<'_>,
        dest: &str,
        options: &TransferOptions,
    ) -> Result<u64> {
        let mut in_flight = FuturesUnordered::new();
        let mut offset = 0u64;
        let mut acked = 0u64;
        let mut eof = false;
        let interrupted = |acked: u64| {
            self.fail(Error::new(
                ErrorKind::Interrupted,
                format!(
                    "interrupted: the upload of {dest} stopped after {acked} of {expected} bytes"
                ),
            ))
        };
        loop {
            while !eof && in_flight.len() < WRITES_IN_FLIGHT && !options.is_cancelled() {
                // A chunk's bytes come out of the shared budget before it is read and go
                // back when the server acknowledges it. An upload that has writes in
                // flight never waits for the budget (it waits for its own writes, which
                // return budget); one with none waits, holding none, so no deadlock.
                let permits = u32::try_from(self.chunk.min(UPLOAD_BUFFER_CAP)).unwrap_or(u32::MAX);
                let permit = match UPLOAD_BUFFERS.try_acquire_many(permits) {
                    Ok(permit) => permit,
                    Err(_) if !in_flight.is_empty() => break,
                    Err(_) => tokio::select! {
                        biased;
                        () = options.cancelled() => return Err(interrupted(acked)),
                        permit = UPLOAD_BUFFERS.acquire_many(permits) => {
                            permit.map_err(|_| {
                                Error::new(ErrorKind::LocalIo, "the upload buffer budget is closed")
                            })?
                        }
                    },
                };
                let buf = source.read(self.chunk).await.map_err(|e| {
                    self.fail(
                        Error::new(
                            ErrorKind::LocalIo,
                            format!("cannot read the source for {dest}"),
                        )
                        .with_source(e),
                    )
                })?;
                if buf.len() < self.chunk {
                    eof = true;
                }
                let filled = buf.len();
                if filled == 0 {
                    break;
                }
                let len = filled as u64;
                let raw = self.raw.clone();
                let handle = handle.to_owned();
                let at = offset;
                in_flight.push(async move {
                    let _permit = permit;
                    raw.write(handle, at, buf).await.map(|_| len)
                });
                offset += len;
            }
            let next = tokio::select! {
                biased;
                () = options.cancelled() => return Err(interrupted(acked)),
                next = in_flight.next() => next,
            };
            match next {
                None => break,
                Some(Ok(len)) => {
                    acked += len;
                    progress.add(len);
                }
                Some(Err(e)) => {
                    let mut err = sftp_error(e, "cannot write", dest);
                    if err.kind() == ErrorKind::Disconnected {
                        err = Error::new(
                            ErrorKind::Disconnected,
                            format!("connection lost after {acked} of {expected} bytes of {dest}"),
                        );
                    } else if err.kind() == ErrorKind::Sftp && self.out_of_space(dest).await {
                        err = Error::new(
                            ErrorKind::NoSpace,
                            format!("no space left on the device for {dest}"),
                        );
                    }
                    return Err(self.fail(err));
                }
            }
        }
        Ok(acked)
    }

    /// Removes an upload's temporary file: over this SFTP channel, or, if the channel died
    /// (the server's sftp process was killed) while the connection lives, over a new one.
    async fn remove_temp(&self, temp: &str) -> bool {
        // A live server answers in milliseconds; on a channel whose sftp-server died,
        // russh-sftp may leave the request waiting for its 60 s timeout.
        if let Ok(Ok(_)) = tokio::time::timeout(CLEANUP_TIMEOUT, self.raw.remove(temp)).await {
            return true;
        }
        if self.connection.is_closed() {
            return false;
        }
        match super::open_raw(&self.connection, &self.host).await {
            Ok((raw, _)) => {
                let removed = raw.remove(temp).await.is_ok();
                let _ = raw.close_session();
                removed
            }
            Err(_) => false,
        }
    }

    /// After a write failed with a generic status: is the file system full?
    async fn out_of_space(&self, dest: &str) -> bool {
        if !self.statvfs {
            return false;
        }
        let (dir, _) = parent_and_name(dest);
        let dir = if dir.is_empty() { "." } else { dir };
        match self.raw.statvfs(dir).await {
            Ok(vfs) => vfs.blocks_avail == 0 || vfs.blocks_free == 0,
            Err(_) => false,
        }
    }

    /// Sets the final mode and times on an open file and fsyncs it.
    async fn finish_file(&self, handle: &str, dest: &str, finish: Finish) -> Result<()> {
        let attrs = FileAttributes {
            permissions: Some(finish.mode),
            atime: finish.mtime,
            mtime: finish.mtime,
            ..FileAttributes::empty()
        };
        self.raw
            .fsetstat(handle, attrs)
            .await
            .map_err(|e| self.fail(sftp_error(e, "cannot set the mode of", dest)))?;
        if finish.fsync && self.fsync {
            self.raw
                .fsync(handle)
                .await
                .map_err(|e| self.fail(sftp_error(e, "cannot fsync", dest)))?;
        }
        Ok(())
    }
}
