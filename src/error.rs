//! The one public error type of rexec, with a stable [`ErrorKind`] for programs and a
//! message that names the host for people. Foreign error types only appear behind
//! [`std::error::Error::source`].

use std::fmt;
use std::time::Duration;

use crate::ssh::Output;

/// What went wrong, for programs to match on. The set may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller or a configuration value asked for something impossible.
    InvalidInput,
    /// The host name could not be resolved.
    Resolve,
    /// No TCP connection could be made (refused, unreachable).
    Connect,
    /// A deadline passed; [`Error::phase`] says during which phase.
    Timeout,
    /// The server's host key is not in known_hosts and the policy is strict.
    HostKeyUnknown,
    /// The server's host key differs from the recorded one (or is revoked).
    HostKeyChanged,
    /// Every authentication method failed.
    Auth,
    /// A private key file could not be used (unreadable, bad permissions, bad passphrase).
    KeyFile,
    /// The ssh-agent could not be reached or failed.
    Agent,
    /// The SSH protocol failed (bad banner, key exchange, unexpected message).
    Protocol,
    /// The server refused to open a channel or to run the command.
    Channel,
    /// The connection was lost.
    Disconnected,
    /// A local file or device failed (known_hosts, prompt, local files).
    LocalIo,
    /// The remote command exited non-zero or was killed, and the caller asked
    /// [`Output::check`](crate::Output::check) to make that an error.
    CommandFailed,
    /// The operation was cancelled.
    Interrupted,
    /// The run was cancelled before this host was started.
    NotStarted,
    /// A file or directory does not exist (remote or local).
    NotFound,
    /// Permission denied (remote or local).
    PermissionDenied,
    /// No space left on the device (remote or local).
    NoSpace,
    /// An SFTP operation failed on the server for another reason, or a name the server
    /// sent was refused.
    Sftp,
    /// `sudo` did not run the command (wrong or missing password, not allowed by
    /// sudoers, not installed): the command never started. See
    /// [`Become`](crate::Become).
    Become,
}

impl ErrorKind {
    /// A short stable name, as used in JSON output (`"host-key-changed"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid-input",
            ErrorKind::Resolve => "resolve",
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::HostKeyUnknown => "host-key-unknown",
            ErrorKind::HostKeyChanged => "host-key-changed",
            ErrorKind::Auth => "auth",
            ErrorKind::KeyFile => "key-file",
            ErrorKind::Agent => "agent",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Channel => "channel",
            ErrorKind::Disconnected => "disconnected",
            ErrorKind::LocalIo => "local-io",
            ErrorKind::CommandFailed => "command-failed",
            ErrorKind::Interrupted => "interrupted",
            ErrorKind::NotStarted => "not-started",
            ErrorKind::NotFound => "not-found",
            ErrorKind::PermissionDenied => "permission-denied",
            ErrorKind::NoSpace => "no-space",
            ErrorKind::Sftp => "sftp",
            ErrorKind::Become => "become",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The phase of a connection or command in which a timeout struck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Name resolution and TCP connect.
    Connect,
    /// Reading the server's banner and key exchange.
    Handshake,
    /// Authentication.
    Auth,
    /// Running a command.
    Command,
}

impl Phase {
    /// A short stable name: `connect`, `handshake`, `auth`, `command`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Handshake => "handshake",
            Phase::Auth => "auth",
            Phase::Command => "command",
        }
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error of every fallible rexec operation.
///
/// `Display` gives `host: message` (the host when known); [`Error::kind`] is for programs.
pub struct Error {
    kind: ErrorKind,
    host: Option<String>,
    message: String,
    phase: Option<Phase>,
    output: Option<Box<Output>>,
    source: Option<Source>,
}

/// `Result` with rexec's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a lowercase message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            host: None,
            message: message.into(),
            phase: None,
            output: None,
            source: None,
        }
    }

    /// Attaches the underlying cause, returned by `source()` and shown by the alternate
    /// form of `Display` (`{:#}`, see [`Error::full_message`]).
    ///
    /// A cause that is, or wraps, "too many open files" (`EMFILE`, `ENFILE`) turns the
    /// error into [`ErrorKind::LocalIo`] with advice, wherever it struck.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        if out_of_file_descriptors(&source) {
            self.kind = ErrorKind::LocalIo;
            self.message.push_str(
                ": too many open files: raise the limit (ulimit -n) or lower the number of \
                 hosts run at once (--forks)",
            );
        }
        self.source = Some(Box::new(source));
        self
    }

    pub(crate) fn timeout(phase: Phase, after: Duration) -> Error {
        let what = match phase {
            Phase::Connect => "connecting",
            Phase::Handshake => "waiting for the ssh banner and key exchange",
            Phase::Auth => "authenticating",
            Phase::Command => "running the command",
        };
        let mut e = Error::new(
            ErrorKind::Timeout,
            format!("timed out after {} {what}", fmt_duration(after)),
        );
        e.phase = Some(phase);
        e
    }

    /// Records the connection phase the error happened in, unless one is set.
    pub(crate) fn in_phase(mut self, phase: Phase) -> Error {
        self.phase.get_or_insert(phase);
        self
    }

    /// Replaces the message (the kind, host, phase, output and cause stay).
    pub(crate) fn with_message(mut self, message: impl Into<String>) -> Error {
        self.message = message.into();
        self
    }

    pub(crate) fn with_output(mut self, output: Output) -> Error {
        self.output = Some(Box::new(output));
        self
    }

    /// Sets the host this error is about, unless one is set already.
    #[must_use]
    pub fn with_host(mut self, host: impl Into<String>) -> Error {
        if self.host.is_none() {
            self.host = Some(host.into());
        }
        self
    }

    /// A copy for reporting the same failure again (the cause's text is kept in the
    /// message; the cause itself is not cloneable).
    pub(crate) fn replicate(&self) -> Error {
        let message = self.full_message();
        Error {
            kind: self.kind,
            host: self.host.clone(),
            message,
            phase: self.phase,
            output: self.output.clone(),
            source: None,
        }
    }

    /// What went wrong, for programs.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The host this error is about, when it is about one.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The message without the host prefix and without the cause.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The message followed by each cause of the [`source`](std::error::Error::source)
    /// chain, joined by `": "`, without the host: `cannot connect to 127.0.0.1:1: connection
    /// refused`. Operating-system errors read as `strerror(3)` text in lower case, without
    /// `(os error N)`; a cause whose text the message already ends with is not repeated.
    /// This is what the CLI prints and what its JSON `message` holds.
    pub fn full_message(&self) -> String {
        let mut text = self.message.clone();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = self
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static));
        while let Some(e) = cause {
            let part = cause_text(e);
            if !part.is_empty() && !text.ends_with(&part) {
                if !text.is_empty() {
                    text.push_str(": ");
                }
                text.push_str(&part);
            }
            cause = e.source();
        }
        text
    }

    /// The phase the error happened in: for [`ErrorKind::Timeout`] the phase that timed
    /// out; for connection errors, the phase of connecting that failed.
    pub fn phase(&self) -> Option<Phase> {
        self.phase
    }

    /// The output collected before the error, for a command that timed out or that
    /// [`Output::check`](crate::Output::check) rejected.
    pub fn output(&self) -> Option<&Output> {
        self.output.as_deref()
    }
}

/// Whether `error` or any error in its source chain is EMFILE or ENFILE.
fn out_of_file_descriptors(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(io.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                return true;
            }
        }
        current = e.source();
    }
    false
}

pub(crate) fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// One cause's text: an OS error as lower-case `strerror` text; a wrapper whose text
/// only repeats its own source's (russh's `IO(e)`, tokio's elapsed) as nothing, so the
/// inner text is shown once.
fn cause_text(e: &(dyn std::error::Error + 'static)) -> String {
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        if let Some(code) = io.raw_os_error() {
            let text = std::io::Error::from_raw_os_error(code).to_string();
            let text = text
                .strip_suffix(&format!(" (os error {code})"))
                .unwrap_or(&text);
            return lowercase_first(text);
        }
        if io.get_ref().is_some() {
            // A custom io::Error: its own text is the inner error's, shown next.
            return if e.source().is_some() {
                String::new()
            } else {
                io.to_string()
            };
        }
        return io.kind().to_string();
    }
    let text = e.to_string();
    match e.source() {
        Some(inner) if text.ends_with(&inner.to_string()) => {
            let prefix = text
                .strip_suffix(&inner.to_string())
                .unwrap_or_default()
                .trim_end_matches([':', ' ']);
            lowercase_first(prefix)
        }
        _ => text,
    }
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        // Only a capital followed by a lower-case letter: keep acronyms ("SSH", "EOF").
        Some(c) if c.is_uppercase() && chars.clone().next().is_some_and(char::is_lowercase) => {
            c.to_lowercase().chain(chars).collect()
        }
        _ => text.to_owned(),
    }
}

/// `host: message`; the alternate form (`{:#}`) adds the causes, as
/// [`Error::full_message`] does.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(host) = &self.host {
            write!(f, "{host}: ")?;
        }
        if f.alternate() {
            f.write_str(&self.full_message())
        } else {
            f.write_str(&self.message)
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("message", &self.message)
            .field("phase", &self.phase)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}
