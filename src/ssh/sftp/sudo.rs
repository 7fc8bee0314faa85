//! `put` and `get` as another user through `sudo` ([`Session::sudo_put`],
//! [`Session::sudo_get`]). SFTP runs as the login user, so these go over a command
//! channel instead, run through sudo as [`Command::sudo`] runs commands:
//!
//! - `put`: the file's bytes are the stdin of a small `/bin/sh` script run as the target
//!   user, which writes them to a temporary file it creates (`mktemp`, mode 0600, owned by
//!   the target user) in the destination's directory, checks the byte count, sets the
//!   mode and modification time, flushes it to disk and renames it over the destination
//!   (`mv -f`, atomic within a directory). On any failure or stop (`TERM`) the script
//!   removes the temporary file; the destination is either the old file or the new one.
//!   Nothing is staged anywhere else, so no other user can read the file on its way, and
//!   a target user who is not root works the same (a file staged by the login user in a
//!   private directory could not be read by that user).
//! - `get`: the script, as the target user, prints the file's mode, modification time and
//!   size on a first line and then the file itself on stdout; rexec writes it to a local
//!   temporary file and renames it into place as [`Sftp::get`](super::Sftp::get) does.
//!
//! With sudo, `~`, `~/...` and relative remote paths are relative to the target user's
//! home (sudo `-H`), as Ansible's become resolves them. Single files only.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use super::blocking::{off_thread, QueuedWriter};
use super::{io_kind, local_error, temp_name, TransferOptions, TransferStats};
use crate::error::{Error, ErrorKind, Result};
use crate::ssh::command::{Become, OutputStream, StdinFile};
use crate::ssh::quote::shell_quote;
use crate::ssh::session::Session;

/// stdout and stderr kept from a transfer script (its messages; `get`'s data goes to the
/// local file as it arrives).
const KEEP_OUTPUT: usize = 64 * 1024;

/// Exit codes of the scripts.
const NO_DIR: u32 = 20;
const NO_FILE: u32 = 21;
const IS_DIR: u32 = 22;
const NOT_REGULAR: u32 = 23;
const SHORT: u32 = 24;

/// The start of both scripts: `~` and relative paths from the target user's home. An
/// absolute path needs no home: service users often have none (`nobody`: /nonexistent).
const RESOLVE: &str = "case $p in '~') p=$HOME;; '~/'*) p=$HOME/${p#'~/'};; /*) ;; *) \
cd || exit 1; p=./$p;; esac\n";

impl Session {
    /// Uploads local file `local` to `remote` as the user of `become_`, through sudo (see
    /// [`Command::sudo`] for how sudo is run and how its password is given). The file
    /// lands owned by that user, with the mode of [`TransferOptions::mode`] (else the local
    /// file's, or 0644 with [`TransferOptions::preserve`] off) and the local modification
    /// time (with `preserve`), replacing `remote` atomically; if `remote` is an existing
    /// directory, the file goes inside it under its own name. `~`, `~/...` and relative paths are relative to the target user's
    /// home. The bytes go over the command's stdin, never through a file another user
    /// could read.
    ///
    /// Options used: `mode`, `preserve`, `fsync` (`sync FILE` before the rename),
    /// `progress`, `cancel_on`.
    ///
    /// # Errors
    /// [`ErrorKind::Become`] when sudo does not run the script (wrong or missing password,
    /// not allowed); [`ErrorKind::InvalidInput`] for a local directory (transfers through
    /// sudo copy single files), a special file, a name that is not UTF-8, or
    /// [`TransferOptions::in_place`]; [`ErrorKind::NotFound`] for a missing local file or
    /// remote directory; [`ErrorKind::PermissionDenied`] and [`ErrorKind::NoSpace`] from
    /// the remote side, other remote failures as [`ErrorKind::Sftp`], with what the remote
    /// tool said; [`ErrorKind::Interrupted`] when the token of
    /// [`TransferOptions::cancel_on`] is cancelled. The destination is unchanged after
    /// any error.
    ///
    /// # Cancel safety
    /// Dropping the future stops the remote script as a dropped [`Command`] is stopped
    /// (`TERM`, on which the script removes its temporary file).
    ///
    /// [`Command`]: crate::Command
    /// [`Command::sudo`]: crate::Command::sudo
    pub async fn sudo_put(
        &self,
        local: impl AsRef<Path>,
        remote: &str,
        become_: &Become,
        options: &TransferOptions,
    ) -> Result<TransferStats> {
        let local = local.as_ref();
        self.sudo_put_inner(local, remote, become_, options)
            .await
            .map_err(|e| e.with_host(self.host()))
    }

    async fn sudo_put_inner(
        &self,
        local: &Path,
        remote: &str,
        become_: &Become,
        options: &TransferOptions,
    ) -> Result<TransferStats> {
        refuse_in_place(options)?;
        let meta = std::fs::metadata(local).map_err(|e| local_error(e, "cannot read", local))?;
        if meta.is_dir() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{} is a directory: transfers through sudo copy single files",
                    local.display()
                ),
            ));
        }
        if !meta.is_file() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{} is not a regular file (a device, FIFO or socket has no fixed content)",
                    local.display()
                ),
            ));
        }
        let name = local.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("local name {} is not UTF-8", local.display()),
            )
        })?;
        let size = meta.len();
        let mode = options.file_mode(meta.permissions().mode());
        let mtime = if options.preserve {
            meta.modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs().to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        let script = format!(
            "p={remote}\nn={name}\nsize={size}\nmtime={mtime}\nsync={sync}\n\
             {RESOLVE}\
             [ -d \"$p\" ] && p=${{p%/}}/$n\n\
             dir=${{p%/*}}; base=${{p##*/}}\n\
             [ -n \"$dir\" ] || dir=/\n\
             [ -n \"$base\" ] || {{ echo \"$p is not a file name\" >&2; exit 1; }}\n\
             [ -d \"$dir\" ] || {{ echo \"no such directory $dir\" >&2; exit {NO_DIR}; }}\n\
             t=$(mktemp \"$dir/.$base.rexec-XXXXXXXX\") || exit 1\n\
             trap 'rm -f -- \"$t\"' EXIT\n\
             trap 'exit 143' TERM; trap 'exit 129' HUP; trap 'exit 130' INT\n\
             cat > \"$t\" || exit 1\n\
             got=$(wc -c < \"$t\")\n\
             [ \"$got\" -eq \"$size\" ] || {{ echo \"received $got of $size bytes\" >&2; exit {SHORT}; }}\n\
             chmod {mode:o} \"$t\" || exit 1\n\
             if [ -n \"$mtime\" ]; then touch -m -d \"@$mtime\" -- \"$t\" || exit 1; fi\n\
             if [ -n \"$sync\" ]; then sync -- \"$t\" 2>/dev/null || sync; fi\n\
             mv -f -- \"$t\" \"$p\" || exit 1\n\
             trap - EXIT\n",
            remote = shell_quote(remote),
            name = shell_quote(name),
            sync = if options.fsync { "1" } else { "" },
        );
        let progress = options.progress.clone();
        let mut cmd = self.raw_command(script);
        cmd.sudo(become_.clone())
            .max_output(KEEP_OUTPUT)
            .stdin_file(StdinFile {
                path: local.to_owned(),
                progress: Some(Arc::new(move |sent| {
                    if let Some(p) = &progress {
                        p(sent, size);
                    }
                })),
            });
        if let Some(token) = &options.cancel {
            cmd.cancel_on(token.clone());
        }
        let output = cmd.output().await.map_err(|e| match e.kind() {
            ErrorKind::Interrupted => Error::new(
                ErrorKind::Interrupted,
                format!(
                    "interrupted: the upload of {remote} as {} stopped",
                    become_.user_name()
                ),
            ),
            _ => e,
        })?;
        match output.status.code() {
            Some(0) => Ok(TransferStats {
                files: 1,
                bytes: size,
                ..TransferStats::default()
            }),
            code => Err(script_error(
                code,
                &output.stderr,
                &format!("cannot upload to {remote} as {}", become_.user_name()),
                &output.status.to_string(),
            )),
        }
    }

    /// Downloads remote file `remote`, read as the user of `become_` through sudo (so a
    /// file only root may read can be fetched), to `local` (inside it under the remote
    /// name if `local` is an existing directory), through a local temporary file renamed
    /// into place as [`Sftp::get`](super::Sftp::get) does. `~`, `~/...` and relative
    /// paths are relative to the target user's home.
    ///
    /// Options used: `mode`, `preserve` (the remote mode and modification time; off: 0644
    /// and now), `fsync`, `progress`, `cancel_on`.
    ///
    /// # Errors
    /// [`ErrorKind::Become`] when sudo does not run the script; [`ErrorKind::NotFound`];
    /// [`ErrorKind::InvalidInput`] for a remote directory (single files only), a special
    /// file or [`TransferOptions::in_place`]; [`ErrorKind::PermissionDenied`]; local
    /// errors with the local path; [`ErrorKind::Interrupted`] on cancellation. The local
    /// destination is unchanged after any error.
    ///
    /// # Cancel safety
    /// Dropping the future stops the remote script and removes the local temporary file.
    pub async fn sudo_get(
        &self,
        remote: &str,
        local: impl AsRef<Path>,
        become_: &Become,
        options: &TransferOptions,
    ) -> Result<TransferStats> {
        let local = local.as_ref();
        self.sudo_get_inner(remote, local, become_, options)
            .await
            .map_err(|e| e.with_host(self.host()))
    }

    async fn sudo_get_inner(
        &self,
        remote: &str,
        local: &Path,
        become_: &Become,
        options: &TransferOptions,
    ) -> Result<TransferStats> {
        refuse_in_place(options)?;
        let name = remote
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("");
        let dest = if local.is_dir() {
            if name.is_empty() || name == "." || name == ".." || name == "~" {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("cannot derive a local name from remote path {remote:?}"),
                ));
            }
            local.join(name)
        } else {
            local.to_owned()
        };
        if std::fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) {
            return Err(Error::new(
                ErrorKind::LocalIo,
                format!("{} is a directory", dest.display()),
            ));
        }
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let file_name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "download".to_owned());
        let temp = dir.join(temp_name(&file_name));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| local_error(e, "cannot create", &temp))?;
        let guard = TempGuard(Some(temp.clone()));
        let script = format!(
            "p={remote}\n{RESOLVE}\
             [ -d \"$p\" ] && {{ echo \"$p is a directory: transfers through sudo copy single files\" >&2; exit {IS_DIR}; }}\n\
             [ -e \"$p\" ] || {{ echo \"$p: no such file\" >&2; exit {NO_FILE}; }}\n\
             [ -f \"$p\" ] || {{ echo \"$p is not a regular file\" >&2; exit {NOT_REGULAR}; }}\n\
             exec 3< \"$p\" || exit 1\n\
             stat -L -c '%a %Y %s' -- \"$p\" || exit 1\n\
             exec cat <&3\n",
            remote = shell_quote(remote),
        );
        let sink = Arc::new(Mutex::new(Sink {
            file: Some(QueuedWriter::new(file)),
            header: Vec::new(),
            meta: None,
            written: 0,
            error: None,
            progress: options.progress.clone(),
        }));
        // Cancelled by the caller's token, or here when the local file fails.
        let stop = options
            .cancel
            .as_ref()
            .map_or_else(CancellationToken::new, CancellationToken::child_token);
        let mut cmd = self.raw_command(script);
        let writer = sink.clone();
        let stop_on_error = stop.clone();
        cmd.sudo(become_.clone())
            .max_output(KEEP_OUTPUT)
            .cancel_on(stop.clone())
            .on_data(Arc::new(move |stream, data| {
                if stream != OutputStream::Stdout {
                    return;
                }
                if let Ok(mut sink) = writer.lock() {
                    if !sink.push(data) {
                        stop_on_error.cancel();
                    }
                }
            }));
        let result = cmd.output().await;
        let mut sink = match sink.lock() {
            Ok(mut s) => std::mem::replace(
                &mut *s,
                Sink {
                    file: None,
                    header: Vec::new(),
                    meta: None,
                    written: 0,
                    error: None,
                    progress: None,
                },
            ),
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::LocalIo,
                    "the download's state failed",
                ))
            }
        };
        if let Some(e) = sink.error.take() {
            return Err(local_error(e, "cannot write", &temp));
        }
        // Every queued chunk written (or the local file's error), before anything else.
        let file = match sink.file.take() {
            Some(writer) => Some(
                writer
                    .finish()
                    .await
                    .map_err(|e| local_error(e, "cannot write", &temp))?,
            ),
            None => None,
        };
        let output = result.map_err(|e| match e.kind() {
            ErrorKind::Interrupted => Error::new(
                ErrorKind::Interrupted,
                format!(
                    "interrupted: the download of {remote} as {} stopped after {} bytes",
                    become_.user_name(),
                    sink.written
                ),
            ),
            _ => e,
        })?;
        if output.status.code() != Some(0) {
            return Err(script_error(
                output.status.code(),
                &output.stderr,
                &format!("cannot download {remote} as {}", become_.user_name()),
                &output.status.to_string(),
            ));
        }
        let (Some(file), Some((mode, mtime, _))) = (file, sink.meta) else {
            return Err(Error::new(
                ErrorKind::Sftp,
                format!("cannot download {remote}: the remote script sent no file"),
            ));
        };
        // The fsync and the rename wait for the disk: on the blocking pool.
        let (temp_path, dest_path, finish_options) = (temp.clone(), dest.clone(), options.clone());
        off_thread(move || {
            finish_local(file, &temp_path, mode, mtime, &finish_options)?;
            std::fs::rename(&temp_path, &dest_path)
                .map_err(|e| local_error(e, "cannot rename into", &dest_path))
        })
        .await?;
        drop(guard.disarm());
        Ok(TransferStats {
            files: 1,
            bytes: sink.written,
            ..TransferStats::default()
        })
    }
}

fn refuse_in_place(options: &TransferOptions) -> Result<()> {
    if options.in_place {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "in-place mode does not apply to transfers through sudo (they replace the \
             destination atomically as the target user)",
        ));
    }
    Ok(())
}

/// The error of a transfer script that exited `code`, from what it said on stderr.
fn script_error(code: Option<i32>, stderr: &[u8], doing: &str, status: &str) -> Error {
    let said = String::from_utf8_lossy(stderr);
    let why = said
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map_or_else(|| status.to_owned(), str::to_owned);
    let kind = match code.and_then(|c| u32::try_from(c).ok()) {
        Some(NO_DIR | NO_FILE) => ErrorKind::NotFound,
        Some(IS_DIR | NOT_REGULAR) => ErrorKind::InvalidInput,
        Some(SHORT) => ErrorKind::Disconnected,
        _ if why.contains("Permission denied") => ErrorKind::PermissionDenied,
        _ if why.contains("No space left") => ErrorKind::NoSpace,
        _ if why.contains("No such file") => ErrorKind::NotFound,
        _ => ErrorKind::Sftp,
    };
    Error::new(kind, format!("{doing}: {why}"))
}

/// Where `get`'s stdout goes: a header line `MODE MTIME SIZE`, then the file's bytes.
struct Sink {
    /// The temporary file, written off the runtime threads.
    file: Option<QueuedWriter>,
    header: Vec<u8>,
    /// Mode, modification time, size, once the header is read.
    meta: Option<(u32, u64, u64)>,
    written: u64,
    error: Option<std::io::Error>,
    progress: Option<super::ProgressCallback>,
}

impl Sink {
    /// Takes a chunk of stdout; false when the local file failed.
    fn push(&mut self, data: &[u8]) -> bool {
        if self.error.is_some() {
            return false;
        }
        let mut data = data;
        if self.meta.is_none() {
            match data.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    self.header
                        .extend_from_slice(data.get(..end).unwrap_or_default());
                    data = data.get(end + 1..).unwrap_or_default();
                    let text = String::from_utf8_lossy(&self.header).into_owned();
                    let mut words = text.split_whitespace();
                    let mode = words.next().and_then(|w| u32::from_str_radix(w, 8).ok());
                    let mtime = words.next().and_then(|w| w.parse().ok());
                    let size = words.next().and_then(|w| w.parse().ok());
                    match (mode, mtime, size) {
                        (Some(m), Some(t), Some(s)) => self.meta = Some((m & 0o7777, t, s)),
                        _ => {
                            self.error = Some(std::io::Error::other(format!(
                                "the remote script sent an unexpected first line {text:?}"
                            )));
                            return false;
                        }
                    }
                }
                None => {
                    // A header is a few dozen bytes; anything longer is not one.
                    if self.header.len() + data.len() > 256 {
                        self.error = Some(std::io::Error::other(
                            "the remote script sent no header line",
                        ));
                        return false;
                    }
                    self.header.extend_from_slice(data);
                    return true;
                }
            }
        }
        if data.is_empty() {
            return true;
        }
        let Some(file) = self.file.as_ref() else {
            return false;
        };
        if !file.write(data) {
            // The writer stopped on an error: finish() returns it.
            return false;
        }
        self.written += data.len() as u64;
        if let (Some(p), Some((_, _, size))) = (&self.progress, self.meta) {
            p(self.written, size.max(self.written));
        }
        true
    }
}

/// Fsyncs the downloaded file and sets its times and mode.
fn finish_local(
    file: File,
    path: &Path,
    mode: u32,
    mtime: u64,
    options: &TransferOptions,
) -> Result<()> {
    if options.fsync {
        file.sync_all()
            .map_err(|e| local_error(e, "cannot write", path))?;
    }
    if options.preserve {
        let when = UNIX_EPOCH + Duration::from_secs(mtime);
        file.set_times(
            std::fs::FileTimes::new()
                .set_modified(when)
                .set_accessed(when),
        )
        .map_err(|e| local_error(e, "cannot set the time of", path))?;
    }
    let mode = options.file_mode(mode);
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| {
            Error::new(
                io_kind(&e),
                format!("cannot set the mode of local {}", path.display()),
            )
            .with_source(e)
        })
}

/// Removes a local temporary file unless disarmed.
struct TempGuard(Option<PathBuf>);

impl TempGuard {
    fn disarm(mut self) -> Self {
        self.0 = None;
        self
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}
