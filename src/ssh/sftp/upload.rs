//! `put`: local files and trees to the server, through a temporary file and an atomic
//! rename.

use super::tree::local_tree_size;
use super::*;

impl Sftp {
    /// Uploads local file `local` to `remote`, like paramiko's `put`. If `remote` is an
    /// existing directory, the file goes inside it under its own name.
    ///
    /// # Errors
    /// Local errors before anything is sent ([`ErrorKind::NotFound`], a directory without
    /// [`TransferOptions::recursive`]: [`ErrorKind::InvalidInput`]); remote errors with
    /// the path; [`ErrorKind::Disconnected`] with the bytes sent so far. The destination
    /// is unchanged after any error.
    pub async fn put(&self, local: impl AsRef<Path>, remote: &str) -> Result<TransferStats> {
        self.put_with(local, remote, &TransferOptions::default())
            .await
    }

    /// [`Sftp::put`] with options (recursive directories, preserve, progress).
    ///
    /// Directories: `remote` becomes a copy of `local` (created if missing; if `remote`
    /// is an existing directory, the copy goes inside it under `local`'s name, like
    /// `scp -r`). Symbolic links are recreated as links with the same target, never
    /// followed; other special files are skipped with a warning.
    ///
    /// # Errors
    /// As [`Sftp::put`].
    ///
    /// # Cancel safety
    /// Dropping the future removes the temporary file of the file being uploaded (from a
    /// spawned task); files already completed stay.
    pub async fn put_with(
        &self,
        local: impl AsRef<Path>,
        remote: &str,
        options: &TransferOptions,
    ) -> Result<TransferStats> {
        let local = local.as_ref();
        let meta = std::fs::metadata(local)
            .map_err(|e| self.fail(local_error(e, "cannot read", local)))?;
        let name = local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "upload".to_owned());
        let into_dir = match self.stat(remote).await {
            Ok(m) => m.kind == RemoteKind::Dir,
            Err(_) => false,
        };
        let dest = if into_dir {
            join(remote, &name)
        } else {
            remote.to_owned()
        };
        let mut stats = TransferStats::default();
        if meta.is_dir() {
            if !options.recursive {
                return Err(self.fail(Error::new(
                    ErrorKind::InvalidInput,
                    format!("{} is a directory (copy it recursively)", local.display()),
                )));
            }
            let total = local_tree_size(local);
            let mut progress = Progress {
                callback: options.progress.as_ref(),
                done: 0,
                total,
            };
            self.put_dir(local, &dest, options, &mut stats, &mut progress)
                .await?;
        } else {
            let mut progress = Progress {
                callback: options.progress.as_ref(),
                done: 0,
                total: meta.len(),
            };
            self.put_file(local, &meta, &dest, options, &mut progress)
                .await?;
            stats.files = 1;
            stats.bytes = meta.len();
        }
        Ok(stats)
    }

    async fn put_dir(
        &self,
        local: &Path,
        remote: &str,
        options: &TransferOptions,
        stats: &mut TransferStats,
        progress: &mut Progress<'_>,
    ) -> Result<()> {
        // Depth-first with an explicit stack (no recursion in async fns).
        let mut stack = vec![(local.to_owned(), remote.to_owned())];
        while let Some((dir, rdir)) = stack.pop() {
            let meta = std::fs::metadata(&dir)
                .map_err(|e| self.fail(local_error(e, "cannot read", &dir)))?;
            let mode = if options.preserve {
                meta.permissions().mode() & 0o7777
            } else {
                0o755
            };
            match self.lstat(&rdir).await {
                Ok(m) if m.kind == RemoteKind::Dir => {}
                Ok(_) => {
                    return Err(self.fail(Error::new(
                        ErrorKind::Sftp,
                        format!("{rdir} exists and is not a directory"),
                    )))
                }
                Err(e) if e.kind() == ErrorKind::NotFound => self.create_dir(&rdir, mode).await?,
                Err(e) => return Err(e),
            }
            stats.dirs += 1;
            let mut entries: Vec<_> = std::fs::read_dir(&dir)
                .map_err(|e| self.fail(local_error(e, "cannot list", &dir)))?
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(|e| self.fail(local_error(e, "cannot list", &dir)))?;
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                let rpath = join(&rdir, &name);
                let lmeta = std::fs::symlink_metadata(&path)
                    .map_err(|e| self.fail(local_error(e, "cannot read", &path)))?;
                let ft = lmeta.file_type();
                if ft.is_symlink() {
                    let target = std::fs::read_link(&path)
                        .map_err(|e| self.fail(local_error(e, "cannot read link", &path)))?;
                    let _ = self.raw.remove(rpath.as_str()).await;
                    // OpenSSH's sftp-server takes SSH_FXP_SYMLINK's arguments in the
                    // reverse order of the draft (target first); russh-sftp sends
                    // (linkpath, targetpath), so they are swapped here.
                    self.raw
                        .symlink(target.to_string_lossy().into_owned(), rpath.clone())
                        .await
                        .map_err(|e| self.fail(sftp_error(e, "create symlink", &rpath)))?;
                    stats.symlinks += 1;
                } else if ft.is_dir() {
                    stack.push((path, rpath));
                } else if ft.is_file() {
                    self.put_file(&path, &lmeta, &rpath, options, progress)
                        .await?;
                    stats.files += 1;
                    stats.bytes += lmeta.len();
                } else {
                    tracing::warn!("{}: skipping special file {}", self.host, path.display());
                }
            }
        }
        Ok(())
    }

    async fn put_file(
        &self,
        local: &Path,
        meta: &std::fs::Metadata,
        dest: &str,
        options: &TransferOptions,
        progress: &mut Progress<'_>,
    ) -> Result<()> {
        // Plain blocking reads: from the page cache they take microseconds, less than a
        // hop to tokio's blocking pool per chunk.
        let mut file = std::fs::File::open(local)
            .map_err(|e| self.fail(local_error(e, "cannot open", local)))?;
        let mode = if options.preserve {
            meta.permissions().mode() & 0o7777
        } else {
            0o644
        };
        let mtime = options.preserve.then(|| mtime_secs(meta));
        self.upload_from(
            dest,
            (mode, mtime, options.fsync),
            meta.len(),
            &mut file,
            progress,
        )
        .await
    }

    /// The upload pipeline: temp file, writes in flight, attributes, fsync, atomic rename.
    /// `finish`: final mode, modification time, and whether to fsync.
    pub(super) async fn upload_from<R: std::io::Read>(
        &self,
        dest: &str,
        finish: (u32, Option<u32>, bool),
        expected: u64,
        source: &mut R,
        progress: &mut Progress<'_>,
    ) -> Result<()> {
        let (dir, name) = parent_and_name(dest);
        let temp = join(dir, &temp_name(name));
        let attrs = FileAttributes {
            permissions: Some(0o600),
            ..FileAttributes::empty()
        };
        let handle = self
            .raw
            .open(
                temp.as_str(),
                OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::TRUNCATE,
                attrs,
            )
            .await
            .map_err(|e| {
                // Name the destination: the temporary file is ours.
                self.fail(sftp_error(e, "cannot write", dest))
            })?
            .handle;
        let mut guard = RemoteTempGuard {
            raw: Some(self.raw.clone()),
            path: temp.clone(),
        };
        let result = self
            .write_all(&handle, source, expected, progress, dest)
            .await;
        let result = match result {
            Ok(()) => self.finish_upload(&handle, &temp, dest, finish).await,
            Err(e) => {
                let _ =
                    tokio::time::timeout(CLEANUP_TIMEOUT, self.raw.close(handle.as_str())).await;
                Err(e)
            }
        };
        match result {
            Ok(()) => {
                guard.disarm();
                Ok(())
            }
            Err(e) => {
                guard.disarm();
                if !self.remove_temp(&temp).await {
                    return Err(Error::new(
                        e.kind(),
                        format!(
                            "{}; the temporary file {temp} could not be removed",
                            e.full_message()
                        ),
                    )
                    .with_host(&self.host));
                }
                Err(e)
            }
        }
    }

    async fn write_all<R: std::io::Read>(
        &self,
        handle: &str,
        source: &mut R,
        expected: u64,
        progress: &mut Progress<'_>,
        dest: &str,
    ) -> Result<()> {
        let mut in_flight = FuturesUnordered::new();
        let mut offset = 0u64;
        let mut acked = 0u64;
        let mut eof = false;
        loop {
            while !eof && in_flight.len() < WRITES_IN_FLIGHT {
                let mut buf = vec![0u8; self.chunk];
                let mut filled = 0;
                while filled < buf.len() {
                    let n = source
                        .read(buf.get_mut(filled..).unwrap_or_default())
                        .map_err(|e| {
                            self.fail(
                                Error::new(
                                    ErrorKind::LocalIo,
                                    format!("cannot read the source for {dest}"),
                                )
                                .with_source(e),
                            )
                        })?;
                    if n == 0 {
                        eof = true;
                        break;
                    }
                    filled += n;
                }
                if filled == 0 {
                    break;
                }
                buf.truncate(filled);
                let len = filled as u64;
                let raw = self.raw.clone();
                let handle = handle.to_owned();
                let at = offset;
                in_flight.push(async move { raw.write(handle, at, buf).await.map(|_| len) });
                offset += len;
            }
            match in_flight.next().await {
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
        Ok(())
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
        match open_raw(&self.connection, &self.host).await {
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

    async fn finish_upload(
        &self,
        handle: &str,
        temp: &str,
        dest: &str,
        (mode, mtime, fsync): (u32, Option<u32>, bool),
    ) -> Result<()> {
        let attrs = FileAttributes {
            permissions: Some(mode),
            atime: mtime,
            mtime,
            ..FileAttributes::empty()
        };
        self.raw
            .fsetstat(handle, attrs)
            .await
            .map_err(|e| self.fail(sftp_error(e, "cannot set the mode of", dest)))?;
        if fsync && self.fsync {
            self.raw
                .fsync(handle)
                .await
                .map_err(|e| self.fail(sftp_error(e, "cannot fsync", dest)))?;
        }
        self.raw
            .close(handle)
            .await
            .map_err(|e| self.fail(sftp_error(e, "cannot close", dest)))?;
        self.rename(temp, dest).await
    }
}
