//! What a command produced: [`Output`] and [`ExitStatus`], and the bounded collection of
//! its output as it arrives.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Exited(u32),
    /// It was killed by a signal.
    Signaled {
        /// The signal's name without `SIG` (`TERM`, `KILL`, `SEGV`...).
        signal: String,
        /// Whether it dumped core.
        core_dumped: bool,
        /// The server's message, often empty.
        message: String,
    },
    /// The channel closed without an exit status or signal: the outcome is unknown (the
    /// server or the connection went away). Never treated as success.
    Unknown,
}

impl ExitStatus {
    /// Exited with code 0.
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Exited(0))
    }

    /// The exit code, if it exited.
    pub fn code(&self) -> Option<i32> {
        match self {
            ExitStatus::Exited(c) => Some(i32::try_from(*c).unwrap_or(i32::MAX)),
            _ => None,
        }
    }

    /// The signal's name, if it was killed by one.
    pub fn signal(&self) -> Option<&str> {
        match self {
            ExitStatus::Signaled { signal, .. } => Some(signal),
            _ => None,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited(c) => write!(f, "exited {c}"),
            ExitStatus::Signaled {
                signal,
                core_dumped,
                ..
            } => {
                write!(f, "killed by signal {signal}")?;
                if *core_dumped {
                    f.write_str(" (core dumped)")?;
                }
                Ok(())
            }
            ExitStatus::Unknown => f.write_str("no exit status"),
        }
    }
}

/// What a finished command produced.
#[derive(Clone, PartialEq, Eq)]
pub struct Output {
    /// Everything it wrote to stdout (up to the cap, if one was set).
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr (up to the cap, if one was set).
    pub stderr: Vec<u8>,
    /// How it ended.
    pub status: ExitStatus,
    /// Whether stdout went past the cap and was cut (the rest was read and dropped).
    pub stdout_truncated: bool,
    /// Whether stderr went past the cap and was cut (the rest was read and dropped).
    pub stderr_truncated: bool,
    /// The command exited, but its stdout or stderr stayed open (a background process
    /// started by the command still held them): rexec stopped reading once no output had
    /// come for a short grace after the exit status, and closed the channel. OpenSSH's
    /// `ssh` would wait for that process.
    pub output_open_after_exit: bool,
    /// rexec could not confirm that the command's processes are gone: the server closed
    /// the channel without an exit status, or a stop (timeout, cancellation) was not
    /// confirmed by the server.
    pub may_still_be_running: bool,
    /// Time from opening the channel to its close.
    pub duration: Duration,
    pub(crate) host: String,
}

impl Output {
    /// An output of `host` with this status and these bytes, nothing cut, no notes, zero
    /// duration: what a command would have produced (for tests of code that handles
    /// outputs, and for work that is not a command).
    pub fn new(
        host: impl Into<String>,
        status: ExitStatus,
        stdout: impl Into<Vec<u8>>,
        stderr: impl Into<Vec<u8>>,
    ) -> Output {
        Output {
            stdout: stdout.into(),
            stderr: stderr.into(),
            status,
            stdout_truncated: false,
            stderr_truncated: false,
            output_open_after_exit: false,
            may_still_be_running: false,
            duration: Duration::ZERO,
            host: host.into(),
        }
    }

    /// `Ok(self)` when the command exited 0; otherwise an [`ErrorKind::CommandFailed`]
    /// error that carries this output (see [`Error::output`]), like Python's
    /// `CompletedProcess.check_returncode()`.
    ///
    /// # Errors
    /// As described.
    pub fn check(self) -> Result<Output> {
        if self.status.success() {
            return Ok(self);
        }
        let message = format!("command {}", self.status);
        let host = self.host.clone();
        Err(Error::new(ErrorKind::CommandFailed, message)
            .with_host(host)
            .with_output(self))
    }

    /// stdout as text, with invalid UTF-8 replaced.
    pub fn stdout_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }

    /// stderr as text, with invalid UTF-8 replaced.
    pub fn stderr_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }

    /// The host it ran on.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// What a person should know beyond the status, or `None`: a missing exit status, or
    /// output left open by a background process.
    pub fn note(&self) -> Option<String> {
        if self.status == ExitStatus::Unknown {
            return Some(
                "the server closed the channel without an exit status; the remote command may \
                 still be running"
                    .to_owned(),
            );
        }
        if self.output_open_after_exit {
            return Some(
                "its output was still open after it exited (a background process?); rexec \
                 stopped reading"
                    .to_owned(),
            );
        }
        None
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Output")
            .field("host", &self.host)
            .field("status", &self.status)
            .field("stdout", &String::from_utf8_lossy(&self.stdout))
            .field("stderr", &String::from_utf8_lossy(&self.stderr))
            .field("stdout_truncated", &self.stdout_truncated)
            .field("stderr_truncated", &self.stderr_truncated)
            .field("output_open_after_exit", &self.output_open_after_exit)
            .field("may_still_be_running", &self.may_still_be_running)
            .field("duration", &self.duration)
            .finish()
    }
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Called with every chunk of output as it arrives (see
/// [`Command::on_data`](crate::Command::on_data)).
pub type DataCallback = Arc<dyn Fn(OutputStream, &[u8]) + Send + Sync>;

/// Output kept so far, each stream capped, every chunk shown to the callback first.
pub(crate) struct Collector {
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    pub(crate) stdout_truncated: bool,
    pub(crate) stderr_truncated: bool,
    cap: usize,
    on_data: Option<DataCallback>,
}

impl Collector {
    pub(crate) fn new(cap: Option<usize>, on_data: Option<DataCallback>) -> Collector {
        Collector {
            stdout: Vec::new(),
            stderr: Vec::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            cap: cap.unwrap_or(usize::MAX),
            on_data,
        }
    }

    pub(crate) fn push(&mut self, stream: OutputStream, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if let Some(cb) = &self.on_data {
            cb(stream, data);
        }
        match stream {
            OutputStream::Stdout => {
                append_capped(&mut self.stdout, data, self.cap, &mut self.stdout_truncated)
            }
            OutputStream::Stderr => {
                append_capped(&mut self.stderr, data, self.cap, &mut self.stderr_truncated)
            }
        }
    }
}

fn append_capped(buf: &mut Vec<u8>, data: &[u8], cap: usize, truncated: &mut bool) {
    let room = cap.saturating_sub(buf.len());
    if data.len() > room {
        *truncated = true;
    }
    buf.extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
}
