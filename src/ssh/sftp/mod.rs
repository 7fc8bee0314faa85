//! SFTP over a [`Session`]: `put` and `get` of files and directory trees, fast (many
//! requests in flight, large chunks) and safe (a destination is replaced atomically or
//! not at all), plus the small operations a script needs.
//!
//! Uploads write to a temporary file in the destination directory (created 0600), set
//! the final mode and modification time, fsync when the server offers
//! `fsync@openssh.com`, then replace the destination with `posix-rename@openssh.com`.
//! Downloads do the same locally. On failure or cancellation the temporary file is
//! removed, so the destination is exactly as it was. [`TransferOptions::in_place`]
//! writes the destination directly instead, for directories rexec may not write.
//!
//! Remote paths: `~` and `~/...` are the login directory, as with `scp` and `sftp`;
//! other relative paths are relative to it too (SFTP servers start there).
//!
//! Names are UTF-8 only: russh-sftp carries every name as a Rust `String` and decodes
//! what the server sends lossily (bytes that are not UTF-8 become U+FFFD). So `put`
//! refuses local names that are not UTF-8, and `get` refuses remote names the library
//! mangled, before anything is written; a name is never merged, renamed or dropped.

use std::borrow::Cow;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, StatusCode};

use russh::client::Handle;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, ErrorKind, Result};
use crate::ssh::handler::ClientHandler;
use crate::ssh::session::Session;

mod blocking;
mod download;
mod open;
mod sudo;
mod tree;
mod upload;

use open::open_raw;

/// Bytes per read or write request: OpenSSH's `limits@openssh.com` allows 261120 (255 KiB).
const DEFAULT_CHUNK: usize = 255 * 1024;
/// Write requests in flight per upload: 4 MiB, twice OpenSSH's 2 MiB channel window,
/// which is what limits an upload anyway.
const WRITES_IN_FLIGHT: usize = 16;
/// Read requests in flight per download: 8 MiB. The channel window rexec grants (2 MiB,
/// OpenSSH's) bounds what the server sends ahead; the rest wait at the server.
const READS_IN_FLIGHT: usize = 32;

/// How long cleanup requests (close, remove) may take on the channel of a failed
/// transfer before rexec gives up on that channel and cleans up over a fresh one.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a cancelled transfer may spend removing its temporary file before it returns
/// (the pool drops work that ignores cancellation after 3 s).
const CANCEL_CLEANUP: Duration = Duration::from_secs(2);

/// Called with (bytes done, bytes total) as a transfer progresses.
pub type ProgressCallback = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Options for [`Sftp::put_with`] and [`Sftp::get_with`].
#[derive(Clone)]
pub struct TransferOptions {
    pub(crate) recursive: bool,
    preserve: bool,
    fsync: bool,
    pub(crate) in_place: bool,
    mode: Option<u32>,
    progress: Option<ProgressCallback>,
    cancel: Option<CancellationToken>,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            recursive: false,
            preserve: true,
            fsync: true,
            in_place: false,
            mode: None,
            progress: None,
            cancel: None,
        }
    }
}

impl fmt::Debug for TransferOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransferOptions")
            .field("recursive", &self.recursive)
            .field("preserve", &self.preserve)
            .field("fsync", &self.fsync)
            .field("in_place", &self.in_place)
            .field("mode", &self.mode.map(|m| format!("{m:04o}")))
            .field("progress", &self.progress.is_some())
            .field("cancel", &self.cancel.is_some())
            .finish()
    }
}

impl TransferOptions {
    /// Default options: files only, mode and modification time preserved, no progress.
    pub fn new() -> TransferOptions {
        TransferOptions::default()
    }

    /// Copy directories with everything in them.
    #[must_use]
    pub fn recursive(mut self, recursive: bool) -> Self {
        self.recursive = recursive;
        self
    }

    /// Keep the source's permission bits and modification time (default on). Off: new
    /// files get 0644 (directories 0755) and the current time.
    #[must_use]
    pub fn preserve(mut self, preserve: bool) -> Self {
        self.preserve = preserve;
        self
    }

    /// Flush each file to disk before it replaces the destination (default on): the
    /// server's `fsync@openssh.com` for uploads, `fsync(2)` for downloads. Off, a crash
    /// right after the transfer may leave an empty or partial destination file on some
    /// file systems; on, the transfer waits for the disk.
    #[must_use]
    pub fn fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }

    /// Write each destination file directly (open, truncate, write, fsync) instead of
    /// writing a temporary file next to it and renaming it over the destination (default
    /// off; rsync's `--inplace`). For a destination whose directory rexec may not write
    /// (a file in `/etc/app` writable by the user while `/etc/app` is not).
    ///
    /// Not atomic: a transfer that fails or is interrupted leaves the destination
    /// truncated or partly written, and the error then names it. The file keeps its
    /// inode, owner and hard links. A destination that is a symbolic link is refused
    /// rather than written through.
    #[must_use]
    pub fn in_place(mut self, in_place: bool) -> Self {
        self.in_place = in_place;
        self
    }

    /// The permission bits of every file written (`0o640`...; `put`: the remote files,
    /// `get`: the local ones), instead of the source's ([`TransferOptions::preserve`]) or
    /// 0644. Bits outside `0o7777` are ignored. Directories are not affected. Ansible's
    /// `copy` module calls it `mode`.
    #[must_use]
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = Some(mode & 0o7777);
        self
    }

    /// The mode a written file gets: [`TransferOptions::mode`], else the source's
    /// `source_mode` with `preserve`, else 0644.
    fn file_mode(&self, source_mode: u32) -> u32 {
        match self.mode {
            Some(m) => m,
            None if self.preserve => source_mode & 0o7777,
            None => 0o644,
        }
    }

    /// Report progress: `callback(done, total)` in bytes, after every chunk.
    #[must_use]
    pub fn progress(mut self, callback: ProgressCallback) -> Self {
        self.progress = Some(callback);
        self
    }

    /// Stop the transfer when `token` is cancelled: no further chunk is sent or
    /// requested, the temporary file of the file in progress is removed (remote ones over
    /// the live connection, waiting at most about 2 s) before the call returns, and the
    /// result is an [`ErrorKind::Interrupted`] error. Its message names the file that
    /// was in progress and, if the temporary file could not be removed, that file's path.
    /// Files completed before the cancellation stay.
    #[must_use]
    pub fn cancel_on(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Resolves when the transfer is to stop; never without a token.
    async fn cancelled(&self) {
        match &self.cancel {
            Some(token) => token.cancelled().await,
            None => std::future::pending().await,
        }
    }

    fn is_cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|t| t.is_cancelled())
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
    /// Special files (devices, FIFOs, sockets) met in a recursive transfer and not
    /// copied: they have no fixed content to copy. Each is also logged as a warning.
    pub skipped: u64,
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
    /// The name, without the directory. A name that is not UTF-8 on the server arrives
    /// with U+FFFD in place of each invalid sequence (russh-sftp decodes names lossily),
    /// so it cannot be used to reach that file; recursive `get` refuses such names.
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
    /// The login directory, for `~` (asked on first use).
    home: tokio::sync::OnceCell<String>,
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
    /// [`ErrorKind::Channel`] when the server refuses the subsystem (no `Subsystem sftp`
    /// in its sshd_config: known as soon as it answers), when the user's login shell
    /// prints text before SFTP starts (the message quotes the start of it), or when the
    /// channel closes first; [`ErrorKind::Timeout`] when the server answers neither within
    /// 60 s; [`ErrorKind::Disconnected`] when the connection is gone;
    /// [`ErrorKind::InvalidInput`] for a local session.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the channel being opened; the server closes it with
    /// the connection or when it notices the channel is gone. Nothing changes on either side.
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
            home: tokio::sync::OnceCell::new(),
        })
    }
}

struct Features {
    posix_rename: bool,
    fsync: bool,
    statvfs: bool,
    chunk: usize,
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

/// `error` with `note` added to its message (the cause's text kept in the message).
fn with_note(error: Error, note: &str) -> Error {
    let host = error.host().map(str::to_owned);
    let noted = Error::new(error.kind(), format!("{}; {note}", error.full_message()));
    match host {
        Some(h) => noted.with_host(h),
        None => noted,
    }
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

    /// `~` and `~/...` as the login directory, which the server is asked for once
    /// (`realpath .`: SFTP sessions start there); other paths unchanged. If the server
    /// does not say, or its answer is not UTF-8, the path becomes relative, which SFTP
    /// servers also resolve from the login directory.
    async fn resolve<'a>(&self, path: &'a str) -> Cow<'a, str> {
        let rest = if path == "~" {
            ""
        } else if let Some(rest) = path.strip_prefix("~/") {
            rest
        } else {
            return Cow::Borrowed(path);
        };
        let home = self
            .home
            .get_or_init(|| async {
                match self.raw.realpath(".").await {
                    Ok(name) => name
                        .files
                        .into_iter()
                        .next()
                        .map(|f| f.filename)
                        .filter(|h| h.starts_with('/') && !h.contains(char::REPLACEMENT_CHARACTER))
                        .unwrap_or_default(),
                    Err(_) => String::new(),
                }
            })
            .await;
        let rest = rest.trim_start_matches('/');
        Cow::Owned(match (home.is_empty(), rest.is_empty()) {
            (true, true) => ".".to_owned(),
            (true, false) => rest.to_owned(),
            (false, true) => home.clone(),
            (false, false) => join(home, rest),
        })
    }

    /// Metadata of `path`, following symlinks.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`], [`ErrorKind::PermissionDenied`], ... naming the path.
    ///
    /// # Cancel safety
    /// A read-only request: dropping the future discards the reply; nothing changes on either side.
    pub async fn stat(&self, path: &str) -> Result<RemoteMetadata> {
        let path = self.resolve(path).await;
        let path = path.as_ref();
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
    ///
    /// # Cancel safety
    /// A read-only request: dropping the future discards the reply; nothing changes on either side.
    pub async fn lstat(&self, path: &str) -> Result<RemoteMetadata> {
        let path = self.resolve(path).await;
        let path = path.as_ref();
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
    ///
    /// # Cancel safety
    /// Read-only requests: dropping the future discards the reply; nothing changes on either side.
    pub async fn read_dir(&self, path: &str) -> Result<Vec<DirEntry>> {
        let path = self.resolve(path).await;
        let path = path.as_ref();
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
    ///
    /// # Cancel safety
    /// One request: once it is sent, dropping the future does not undo it; whether the
    /// server carried it out is then unknown (check with [`Sftp::stat`]).
    pub async fn create_dir(&self, path: &str, mode: u32) -> Result<()> {
        let path = self.resolve(path).await;
        let path = path.as_ref();
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
    ///
    /// # Cancel safety
    /// One request: once it is sent, dropping the future does not undo it; whether the
    /// server carried it out is then unknown (check with [`Sftp::stat`]).
    pub async fn remove_file(&self, path: &str) -> Result<()> {
        let path = self.resolve(path).await;
        let path = path.as_ref();
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
    ///
    /// # Cancel safety
    /// One request: once it is sent, dropping the future does not undo it; whether the
    /// server carried it out is then unknown (check with [`Sftp::stat`]).
    pub async fn remove_dir(&self, path: &str) -> Result<()> {
        let path = self.resolve(path).await;
        let path = path.as_ref();
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
    ///
    /// # Cancel safety
    /// One request: once it is sent, dropping the future does not undo it; whether the
    /// server carried it out is then unknown (check with [`Sftp::stat`]).
    pub async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (from, to) = (self.resolve(from).await, self.resolve(to).await);
        let (from, to) = (from.as_ref(), to.as_ref());
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
    ///
    /// # Cancel safety
    /// Dropping the future discards what was read; nothing changes on either side.
    pub async fn read(&self, path: &str) -> Result<Vec<u8>> {
        let path = self.resolve(path).await;
        let path = path.as_ref();
        let (_, out) = self
            .download_to(path, Vec::new(), None, &TransferOptions::default())
            .await?;
        Ok(out)
    }

    /// Writes `data` to remote `path` safely (temporary file, then atomic replace), mode
    /// 0644 for a new file, the old mode for an existing one.
    ///
    /// # Errors
    /// As [`Sftp::put`].
    ///
    /// # Cancel safety
    /// As [`Sftp::put_with`]: the destination is replaced atomically or not at all;
    /// dropping the future removes the temporary file (from a spawned task).
    pub async fn write(&self, path: &str, data: &[u8]) -> Result<()> {
        let path = self.resolve(path).await;
        let path = path.as_ref();
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
        let finish = upload::Finish {
            mode,
            mtime: Some(now),
            fsync: true,
        };
        self.upload_from(
            path,
            finish,
            data.len() as u64,
            std::io::Cursor::new(data.to_vec()),
            &mut progress,
            &TransferOptions::default(),
        )
        .await
        .map(|_| ())
    }
}
