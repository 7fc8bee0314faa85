//! SFTP over a [`Session`]: `put` and `get` of files and directory trees, fast (many
//! requests in flight, large chunks) and safe (a destination is replaced atomically or
//! not at all), plus the small operations a script needs.
//!
//! Uploads write to a temporary file in the destination directory (created 0600), set
//! the final mode and modification time, fsync when the server offers
//! `fsync@openssh.com`, then replace the destination with `posix-rename@openssh.com`.
//! Downloads do the same locally. On failure or cancellation the temporary file is
//! removed, so the destination is exactly as it was.

use std::collections::HashMap;
use std::fmt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::stream::{FuturesOrdered, FuturesUnordered, StreamExt};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};

use russh::client::Handle;

use crate::error::{Error, ErrorKind, Result};
use crate::ssh::session::{open_channel_on, ClientHandler, Session};

/// Bytes per read or write request: OpenSSH's `limits@openssh.com` allows 261120 (255 KiB).
const DEFAULT_CHUNK: usize = 255 * 1024;
/// Write requests in flight per upload: 4 MiB, twice OpenSSH's 2 MiB channel window,
/// which is what limits an upload anyway.
const WRITES_IN_FLIGHT: usize = 16;
/// Read requests in flight per download: 8 MiB, the channel window rexec grants.
const READS_IN_FLIGHT: usize = 32;

/// How long cleanup requests (close, remove) may take on the channel of a failed
/// transfer before rexec gives up on that channel and cleans up over a fresh one.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(3);

/// Called with (bytes done, bytes total) as a transfer progresses.
pub type ProgressCallback = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Options for [`Sftp::put_with`] and [`Sftp::get_with`].
#[derive(Clone)]
pub struct TransferOptions {
    recursive: bool,
    preserve: bool,
    fsync: bool,
    progress: Option<ProgressCallback>,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            recursive: false,
            preserve: true,
            fsync: true,
            progress: None,
        }
    }
}

impl fmt::Debug for TransferOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransferOptions")
            .field("recursive", &self.recursive)
            .field("preserve", &self.preserve)
            .field("fsync", &self.fsync)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl TransferOptions {
    /// Default options: files only, mode and modification time preserved, no progress.
    pub fn new() -> TransferOptions {
        TransferOptions::default()
    }

    /// Copy directories with everything in them.
    pub fn recursive(&mut self, recursive: bool) -> &mut Self {
        self.recursive = recursive;
        self
    }

    /// Keep the source's permission bits and modification time (default on). Off: new
    /// files get 0644 (directories 0755) and the current time.
    pub fn preserve(&mut self, preserve: bool) -> &mut Self {
        self.preserve = preserve;
        self
    }

    /// Flush each file to disk before it replaces the destination (default on): the
    /// server's `fsync@openssh.com` for uploads, `fsync(2)` for downloads. Off, a crash
    /// right after the transfer may leave an empty or partial destination file on some
    /// file systems; on, the transfer waits for the disk.
    pub fn fsync(&mut self, fsync: bool) -> &mut Self {
        self.fsync = fsync;
        self
    }

    /// Report progress: `callback(done, total)` in bytes, after every chunk.
    pub fn progress(&mut self, callback: ProgressCallback) -> &mut Self {
        self.progress = Some(callback);
        self
    }
}

/// What a transfer moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransferStats {
    /// Regular files copied.
    pub files: u64,
    /// Directories created or entered.
    pub dirs: u64,
    /// Symbolic links recreated.
    pub symlinks: u64,
    /// File bytes copied.
    pub bytes: u64,
}

/// What [`Sftp::stat`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteMetadata {
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (`0o755`...).
    pub mode: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: u32,
    /// What it is.
    pub kind: RemoteKind,
}

/// The type of a remote file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (from [`Sftp::lstat`] / [`Sftp::read_dir`]).
    Symlink,
    /// Anything else (device, socket, fifo).
    Other,
}

/// One entry of [`Sftp::read_dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The name, without the directory.
    pub name: String,
    /// Its metadata (not following symlinks).
    pub metadata: RemoteMetadata,
}

fn metadata_of(attrs: &FileAttributes) -> RemoteMetadata {
    let kind = if attrs.is_symlink() {
        RemoteKind::Symlink
    } else if attrs.is_dir() {
        RemoteKind::Dir
    } else if attrs.is_regular() {
        RemoteKind::File
    } else {
        RemoteKind::Other
    };
    RemoteMetadata {
        size: attrs.size.unwrap_or(0),
        mode: attrs.permissions.unwrap_or(0) & 0o7777,
        mtime: attrs.mtime.unwrap_or(0),
        kind,
    }
}

/// An SFTP session on one host. Get one with [`Session::sftp`]; cheap to share (`&self`
/// methods, requests from concurrent calls are interleaved).
pub struct Sftp {
    raw: Arc<RawSftpSession>,
    host: String,
    connection: Arc<Handle<ClientHandler>>,
    posix_rename: bool,
    fsync: bool,
    statvfs: bool,
    chunk: usize,
}

impl fmt::Debug for Sftp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sftp")
            .field("host", &self.host)
            .field("posix_rename", &self.posix_rename)
            .field("fsync", &self.fsync)
            .field("chunk", &self.chunk)
            .finish()
    }
}

impl Session {
    /// Opens an SFTP session on this connection (the `sftp` subsystem).
    ///
    /// # Errors
    /// [`ErrorKind::Channel`] when the server has no SFTP subsystem;
    /// [`ErrorKind::Disconnected`] when the connection is gone;
    /// [`ErrorKind::InvalidInput`] for a local session.
    pub async fn sftp(&self) -> Result<Sftp> {
        let Some(connection) = self.connection() else {
            return Err(
                Error::new(ErrorKind::InvalidInput, "sftp needs an ssh session")
                    .with_host(self.host()),
            );
        };
        let (raw, features) = open_raw(&connection, self.host()).await?;
        Ok(Sftp {
            raw: Arc::new(raw),
            host: self.host().to_owned(),
            connection,
            posix_rename: features.posix_rename,
            fsync: features.fsync,
            statvfs: features.statvfs,
            chunk: features.chunk,
        })
    }
}

struct Features {
    posix_rename: bool,
    fsync: bool,
    statvfs: bool,
    chunk: usize,
}

async fn open_raw(
    connection: &Handle<ClientHandler>,
    host: &str,
) -> Result<(RawSftpSession, Features)> {
    {
        let host = host.to_owned();
        let channel = open_channel_on(connection, &host).await?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| crate::ssh::session::russh_error(e, "starting sftp").with_host(&host))?;
        let config = russh_sftp::client::Config {
            max_concurrent_reads: READS_IN_FLIGHT,
            max_concurrent_writes: WRITES_IN_FLIGHT,
            request_timeout_secs: 60,
            ..Default::default()
        };
        let mut raw = RawSftpSession::new_with_config(channel.into_stream(), config);
        let version = raw.init().await.map_err(|e| {
            Error::new(
                ErrorKind::Channel,
                "the server did not start sftp (no sftp subsystem?)",
            )
            .with_source(e)
            .with_host(&host)
        })?;
        let has = |name: &str| version.extensions.contains_key(name);
        let mut chunk = DEFAULT_CHUNK;
        if has("limits@openssh.com") {
            if let Ok(limits) = raw.limits().await {
                let bounded = |v: u64| usize::try_from(v).ok().filter(|v| *v > 0);
                if let Some(w) = bounded(limits.max_write_len) {
                    chunk = chunk.min(w);
                }
                if let Some(r) = bounded(limits.max_read_len) {
                    chunk = chunk.min(r);
                }
                raw.set_limits(russh_sftp::client::rawsession::Limits::from(limits));
            }
        }
        let features = Features {
            posix_rename: has("posix-rename@openssh.com"),
            fsync: has("fsync@openssh.com"),
            statvfs: has("statvfs@openssh.com"),
            chunk,
        };
        Ok((raw, features))
    }
}

/// Maps an SFTP error on `path` to ours.
fn sftp_error(e: SftpError, doing: &str, path: &str) -> Error {
    let (kind, what) = match &e {
        SftpError::Status(status) => match status.status_code {
            StatusCode::NoSuchFile => (ErrorKind::NotFound, "no such file or directory"),
            StatusCode::PermissionDenied => (ErrorKind::PermissionDenied, "permission denied"),
            StatusCode::NoConnection | StatusCode::ConnectionLost => {
                (ErrorKind::Disconnected, "connection lost")
            }
            StatusCode::OpUnsupported => (ErrorKind::Sftp, "operation not supported by the server"),
            _ => (ErrorKind::Sftp, "failed"),
        },
        SftpError::Timeout => (ErrorKind::Timeout, "no reply from the server"),
        SftpError::IO(_) | SftpError::UnexpectedBehavior(_) => {
            (ErrorKind::Disconnected, "connection lost")
        }
        _ => (ErrorKind::Sftp, "failed"),
    };
    let error = Error::new(kind, format!("{doing} {path}: {what}"));
    match e {
        // The status says it all; its text would only repeat `what`.
        SftpError::Status(_) => error,
        other => error.with_source(other),
    }
}

fn io_kind(e: &std::io::Error) -> ErrorKind {
    match e.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        std::io::ErrorKind::StorageFull => ErrorKind::NoSpace,
        _ => ErrorKind::LocalIo,
    }
}

fn local_error(e: std::io::Error, doing: &str, path: &Path) -> Error {
    Error::new(io_kind(&e), format!("{doing} local {}", path.display())).with_source(e)
}

fn is_status(e: &SftpError, code: StatusCode) -> bool {
    matches!(e, SftpError::Status(s) if s.status_code == code)
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

fn parent_and_name(path: &str) -> (&str, &str) {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rfind('/') {
        Some(0) => ("/", trimmed.get(1..).unwrap_or_default()),
        Some(i) => (
            trimmed.get(..i).unwrap_or_default(),
            trimmed.get(i + 1..).unwrap_or_default(),
        ),
        None => ("", trimmed),
    }
}

/// A name from the server that may become a local file name: not empty, not `.` or `..`,
/// no `/`, no NUL.
fn safe_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

fn temp_name(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let pid = std::process::id();
    // Keep the name short enough for NAME_MAX with long originals.
    let short: String = name.chars().take(100).collect();
    format!(".{short}.rexec-{pid:x}{nanos:x}.tmp")
}

fn mtime_secs(meta: &std::fs::Metadata) -> u32 {
    u32::try_from(meta.mtime().max(0)).unwrap_or(u32::MAX)
}

/// Removes a remote temporary file unless disarmed (from a spawned task: `Drop` cannot
/// wait).
struct RemoteTempGuard {
    raw: Option<Arc<RawSftpSession>>,
    path: String,
}

impl RemoteTempGuard {
    fn disarm(&mut self) {
        self.raw = None;
    }
}

impl Drop for RemoteTempGuard {
    fn drop(&mut self) {
        let Some(raw) = self.raw.take() else {
            return;
        };
        let path = std::mem::take(&mut self.path);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = raw.remove(path).await;
            });
        }
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

struct Progress<'a> {
    callback: Option<&'a ProgressCallback>,
    done: u64,
    total: u64,
}

impl Progress<'_> {
    fn add(&mut self, n: u64) {
        self.done += n;
        if let Some(cb) = self.callback {
            cb(self.done, self.total);
        }
    }
}

impl Sftp {
    /// The host's name.
    pub fn host(&self) -> &str {
        &self.host
    }

    fn fail(&self, e: Error) -> Error {
        e.with_host(&self.host)
    }

    /// Metadata of `path`, following symlinks.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`], [`ErrorKind::PermissionDenied`], ... naming the path.
    pub async fn stat(&self, path: &str) -> Result<RemoteMetadata> {
        self.raw
            .stat(path)
            .await
            .map(|a| metadata_of(&a.attrs))
            .map_err(|e| self.fail(sftp_error(e, "stat", path)))
    }

    /// Metadata of `path` itself, not following a symlink.
    ///
    /// # Errors
    /// As [`Sftp::stat`].
    pub async fn lstat(&self, path: &str) -> Result<RemoteMetadata> {
        self.raw
            .lstat(path)
            .await
            .map(|a| metadata_of(&a.attrs))
            .map_err(|e| self.fail(sftp_error(e, "lstat", path)))
    }

    /// The entries of directory `path` (without `.` and `..`), in the server's order.
    ///
    /// # Errors
    /// As [`Sftp::stat`].
    pub async fn read_dir(&self, path: &str) -> Result<Vec<DirEntry>> {
        let handle = self
            .raw
            .opendir(path)
            .await
            .map_err(|e| self.fail(sftp_error(e, "list", path)))?
            .handle;
        let mut entries = Vec::new();
        let result = loop {
            match self.raw.readdir(handle.as_str()).await {
                Ok(name) => {
                    for f in name.files {
                        if f.filename != "." && f.filename != ".." {
                            entries.push(DirEntry {
                                metadata: metadata_of(&f.attrs),
                                name: f.filename,
                            });
                        }
                    }
                }
                Err(e) if is_status(&e, StatusCode::Eof) => break Ok(entries),
                Err(e) => break Err(self.fail(sftp_error(e, "list", path))),
            }
        };
        let _ = self.raw.close(handle).await;
        result
    }

    /// Creates directory `path` with `mode`.
    ///
    /// # Errors
    /// As [`Sftp::stat`] (an existing path is [`ErrorKind::Sftp`]).
    pub async fn create_dir(&self, path: &str, mode: u32) -> Result<()> {
        let attrs = FileAttributes {
            permissions: Some(mode),
            ..FileAttributes::empty()
        };
        self.raw
            .mkdir(path, attrs)
            .await
            .map(|_| ())
            .map_err(|e| self.fail(sftp_error(e, "create directory", path)))
    }

    /// Removes file (or symlink) `path`.
    ///
    /// # Errors
    /// As [`Sftp::stat`].
    pub async fn remove_file(&self, path: &str) -> Result<()> {
        self.raw
            .remove(path)
            .await
            .map(|_| ())
            .map_err(|e| self.fail(sftp_error(e, "remove", path)))
    }

    /// Removes empty directory `path`.
    ///
    /// # Errors
    /// As [`Sftp::stat`].
    pub async fn remove_dir(&self, path: &str) -> Result<()> {
        self.raw
            .rmdir(path)
            .await
            .map(|_| ())
            .map_err(|e| self.fail(sftp_error(e, "remove directory", path)))
    }

    /// Renames `from` to `to`, replacing `to` atomically if it exists (with
    /// `posix-rename@openssh.com`; without it, a plain rename that fails when `to`
    /// exists).
    ///
    /// # Errors
    /// As [`Sftp::stat`].
    pub async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let result = if self.posix_rename {
            let mut data = Vec::with_capacity(from.len() + to.len() + 8);
            for s in [from, to] {
                data.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
                data.extend_from_slice(s.as_bytes());
            }
            match self.raw.extended("posix-rename@openssh.com", data).await {
                Ok(russh_sftp::protocol::Packet::Status(s)) if s.status_code == StatusCode::Ok => {
                    Ok(())
                }
                Ok(russh_sftp::protocol::Packet::Status(s)) => Err(SftpError::Status(s)),
                Ok(_) => Err(SftpError::UnexpectedPacket),
                Err(e) => Err(e),
            }
        } else {
            self.raw.rename(from, to).await.map(|_| ())
        };
        result.map_err(|e| self.fail(sftp_error(e, "rename", &format!("{from} to {to}"))))
    }

    /// Reads a whole (small) remote file into memory.
    ///
    /// # Errors
    /// As [`Sftp::stat`].
    pub async fn read(&self, path: &str) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.download_to(path, &mut out, None).await?;
        Ok(out)
    }

    /// Writes `data` to remote `path` safely (temporary file, then atomic replace), mode
    /// 0644 for a new file, the old mode for an existing one.
    ///
    /// # Errors
    /// As [`Sftp::put`].
    pub async fn write(&self, path: &str, data: &[u8]) -> Result<()> {
        let mode = match self.stat(path).await {
            Ok(m) => m.mode,
            Err(_) => 0o644,
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
            .unwrap_or(0);
        let mut progress = Progress {
            callback: None,
            done: 0,
            total: data.len() as u64,
        };
        self.upload_from(
            path,
            (mode, Some(now), true),
            data.len() as u64,
            &mut std::io::Cursor::new(data),
            &mut progress,
        )
        .await
    }

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
    async fn upload_from<R: std::io::Read>(
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

    /// Downloads remote file `remote` to `local`, like paramiko's `get`. If `local` is an
    /// existing directory, the file goes inside it under its remote name.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] and other remote errors with the path; local errors with
    /// the local path; [`ErrorKind::Disconnected`] with the bytes received. The local
    /// destination is unchanged after any error.
    pub async fn get(&self, remote: &str, local: impl AsRef<Path>) -> Result<TransferStats> {
        self.get_with(remote, local, &TransferOptions::default())
            .await
    }

    /// [`Sftp::get`] with options. Directories (recursive): names the server sends are
    /// checked, and `..`, absolute names, names with `/`, empty names and duplicates are
    /// refused ([`ErrorKind::Sftp`]) before anything is written; nothing is ever written
    /// outside `local`. Remote symlinks become local symlinks with the same target, never
    /// followed or written through.
    ///
    /// # Errors
    /// As [`Sftp::get`].
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
        if meta.kind == RemoteKind::Dir {
            if !options.recursive {
                return Err(self.fail(Error::new(
                    ErrorKind::InvalidInput,
                    format!("{remote} is a directory (copy it recursively)"),
                )));
            }
            let plan = self.plan_remote_tree(remote).await?;
            let total = plan.iter().map(|e| e.size).sum();
            let mut progress = Progress {
                callback: options.progress.as_ref(),
                done: 0,
                total,
            };
            self.get_tree(&dest, meta.mode, &plan, options, &mut stats, &mut progress)
                .await?;
        } else {
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
        Ok(stats)
    }

    /// Lists a remote tree, checking every name before anything is written locally.
    async fn plan_remote_tree(&self, root: &str) -> Result<Vec<PlannedEntry>> {
        let mut plan = Vec::new();
        let mut stack = vec![(root.to_owned(), PathBuf::new())];
        while let Some((dir, rel)) = stack.pop() {
            let mut seen: HashMap<String, ()> = HashMap::new();
            for entry in self.read_dir(&dir).await? {
                if !safe_name(&entry.name) || seen.insert(entry.name.clone(), ()).is_some() {
                    return Err(self.fail(Error::new(
                        ErrorKind::Sftp,
                        format!(
                            "refusing the name {:?} sent by the server in {dir} (empty, `.`, `..`, \
                             containing `/`, or a duplicate)",
                            entry.name
                        ),
                    )));
                }
                let remote = join(&dir, &entry.name);
                let rel_path = rel.join(&entry.name);
                match entry.metadata.kind {
                    RemoteKind::Dir => stack.push((remote.clone(), rel_path.clone())),
                    RemoteKind::Other => {
                        tracing::warn!("{}: skipping special file {remote}", self.host);
                        continue;
                    }
                    _ => {}
                }
                plan.push(PlannedEntry {
                    remote,
                    relative: rel_path,
                    kind: entry.metadata.kind,
                    size: if entry.metadata.kind == RemoteKind::File {
                        entry.metadata.size
                    } else {
                        0
                    },
                    mode: entry.metadata.mode,
                    mtime: entry.metadata.mtime,
                });
            }
        }
        // Parents before children.
        plan.sort_by(|a, b| a.relative.cmp(&b.relative));
        Ok(plan)
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
            let local = dest.join(&entry.relative);
            // Every parent was created by this transfer as a real directory (sorted plan).
            match entry.kind {
                RemoteKind::Dir => {
                    ensure_real_dir(&local, dir_mode(entry.mode)).map_err(|e| self.fail(e))?;
                    stats.dirs += 1;
                }
                RemoteKind::Symlink => {
                    let target = self
                        .raw
                        .readlink(entry.remote.as_str())
                        .await
                        .map_err(|e| self.fail(sftp_error(e, "cannot read link", &entry.remote)))?
                        .files
                        .into_iter()
                        .next()
                        .map(|f| f.filename)
                        .unwrap_or_default();
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
                    std::os::unix::fs::symlink(&target, &local)
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

    async fn get_file(
        &self,
        remote: &str,
        dest: &Path,
        meta: &RemoteMetadata,
        options: &TransferOptions,
        progress: &mut Progress<'_>,
    ) -> Result<u64> {
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "download".to_owned());
        let temp = dir.join(temp_name(&name));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode_0600()
            .open(&temp)
            .map_err(|e| self.fail(local_error(e, "cannot create", &temp)))?;
        let mut guard = LocalTempGuard {
            path: Some(temp.clone()),
        };
        let mut sink = WritebackFile::new(file, options.fsync);
        let bytes = self.download_to(remote, &mut sink, Some(progress)).await?;
        let file = sink.file;
        if options.fsync {
            file.sync_all()
                .map_err(|e| self.fail(local_error(e, "cannot write", &temp)))?;
        }
        drop(file);
        let mode = if options.preserve { meta.mode } else { 0o644 };
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(mode))
            .map_err(|e| self.fail(local_error(e, "cannot set the mode of", &temp)))?;
        if options.preserve {
            let when = UNIX_EPOCH + Duration::from_secs(u64::from(meta.mtime));
            let f = std::fs::File::options()
                .write(true)
                .open(&temp)
                .map_err(|e| self.fail(local_error(e, "cannot open", &temp)))?;
            f.set_times(
                std::fs::FileTimes::new()
                    .set_modified(when)
                    .set_accessed(when),
            )
            .map_err(|e| self.fail(local_error(e, "cannot set the time of", &temp)))?;
        }
        if std::fs::symlink_metadata(dest).is_ok_and(|m| m.is_dir()) {
            return Err(self.fail(Error::new(
                ErrorKind::LocalIo,
                format!("{} is a directory", dest.display()),
            )));
        }
        std::fs::rename(&temp, dest)
            .map_err(|e| self.fail(local_error(e, "cannot rename into", dest)))?;
        guard.path = None;
        Ok(bytes)
    }

    /// The download pipeline: reads in flight, results written in order, until EOF.
    async fn download_to<W: std::io::Write>(
        &self,
        remote: &str,
        sink: &mut W,
        mut progress: Option<&mut Progress<'_>>,
    ) -> Result<u64> {
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
                let Some((at, reply)) = in_flight.next().await else {
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
                        sink.write_all(&data.data).map_err(|e| {
                            let msg = format!("cannot write the download of {remote}");
                            self.fail(Error::new(io_kind(&e), msg).with_source(e))
                        })?;
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
        let _ = self.raw.close(handle).await;
        result.map(|()| written)
    }
}

/// A local file that, when it will be fsynced at the end, asks the kernel every 32 MiB to
/// start writing what came so far (`sync_file_range`), so the disk works while the network
/// does and the final fsync has little left to wait for.
struct WritebackFile {
    file: std::fs::File,
    enabled: bool,
    written: u64,
    started: u64,
}

impl WritebackFile {
    const STEP: u64 = 32 * 1024 * 1024;

    fn new(file: std::fs::File, enabled: bool) -> WritebackFile {
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

struct PlannedEntry {
    remote: String,
    relative: PathBuf,
    kind: RemoteKind,
    size: u64,
    mode: u32,
    mtime: u32,
}

/// Creates `path` as a real directory, or accepts an existing real directory; refuses a
/// symlink or anything else in its place, so nothing is written through a link.
fn ensure_real_dir(path: &Path, mode: u32) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::new(
            ErrorKind::LocalIo,
            format!("{} exists and is not a directory", path.display()),
        )),
        Err(_) => {
            std::fs::create_dir(path).map_err(|e| local_error(e, "cannot create", path))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| local_error(e, "cannot set the mode of", path))
        }
    }
}

fn local_tree_size(root: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(_) if entry.file_type().is_ok_and(|t| t.is_symlink()) => {}
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) if m.is_file() => total += m.len(),
                _ => {}
            }
        }
    }
    total
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}
