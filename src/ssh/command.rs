//! Running one command over a [`Session`]: the [`Command`] builder, its [`Output`] and
//! [`ExitStatus`].

use std::fmt;
use std::time::{Duration, Instant};

use russh::{ChannelMsg, Sig};
use tokio::time::sleep_until;

use crate::error::{Error, ErrorKind, Phase, Result};
use crate::ssh::quote::shell_quote;
use crate::ssh::session::{russh_error, Session};

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
    /// Whether stdout went past the cap and was cut.
    pub stdout_truncated: bool,
    /// Whether stderr went past the cap and was cut.
    pub stderr_truncated: bool,
    /// Time from opening the channel to its close.
    pub duration: Duration,
    host: String,
}

impl Output {
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
            .field("duration", &self.duration)
            .finish()
    }
}

/// A command to run on a [`Session`], built like `std::process::Command`.
///
/// ```no_run
/// # async fn f(session: &rexec::Session) -> rexec::Result<()> {
/// let out = session.command("ls -l").arg("/tmp/a dir").output().await?;
/// println!("{}: {}", out.status, out.stdout_lossy());
/// # Ok(()) }
/// ```
#[must_use]
#[derive(Debug, Clone)]
pub struct Command<'s> {
    session: &'s Session,
    line: String,
    stdin: Option<Vec<u8>>,
    env: Vec<(String, String)>,
    cwd: Option<String>,
    pty: bool,
    timeout: Option<Duration>,
    kill_grace: Duration,
    max_output: Option<usize>,
}

impl<'s> Command<'s> {
    pub(crate) fn new(session: &'s Session, line: String) -> Command<'s> {
        Command {
            session,
            line,
            stdin: None,
            env: Vec::new(),
            cwd: None,
            pty: false,
            timeout: None,
            kill_grace: Duration::from_secs(2),
            max_output: None,
        }
    }

    /// Appends `arg` as one shell word (quoted; it cannot inject shell code).
    pub fn arg(&mut self, arg: impl AsRef<str>) -> &mut Self {
        self.line.push(' ');
        self.line.push_str(&shell_quote(arg.as_ref()));
        self
    }

    /// Appends each of `args` as one shell word.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for a in args {
            self.arg(a);
        }
        self
    }

    /// Bytes sent to the command's stdin, followed by end of file. Without this, stdin is
    /// closed at once, so a command that reads it sees end of file instead of hanging.
    pub fn stdin(&mut self, bytes: impl Into<Vec<u8>>) -> &mut Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Sets an environment variable for the command. It is exported by the remote shell
    /// before the command line runs (sshd's `AcceptEnv` usually refuses the SSH `env`
    /// request), so this needs a POSIX shell as the login shell.
    ///
    /// The name must be a valid shell variable name; [`Command::output`] fails with
    /// [`ErrorKind::InvalidInput`] otherwise.
    pub fn env(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Runs the command in this remote directory (`cd` first; if it fails the command does
    /// not run and the status is the failing `cd`'s).
    pub fn current_dir(&mut self, dir: impl Into<String>) -> &mut Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Asks for a pseudo-terminal. stdout and stderr then arrive merged on stdout, and
    /// line endings become `\r\n`, as with `ssh -t`.
    pub fn pty(&mut self, pty: bool) -> &mut Self {
        self.pty = pty;
        self
    }

    /// A deadline for the whole command. When it passes, the remote process group gets
    /// `TERM`, then `KILL` after a grace period ([`Command::kill_grace`]), and the
    /// channel is closed; the result is an [`ErrorKind::Timeout`] error carrying the
    /// output so far.
    pub fn timeout(&mut self, timeout: Duration) -> &mut Self {
        self.timeout = Some(timeout);
        self
    }

    /// Time between `TERM` and `KILL` on timeout (default 2 s).
    pub fn kill_grace(&mut self, grace: Duration) -> &mut Self {
        self.kill_grace = grace;
        self
    }

    /// Keeps at most `bytes` of stdout and of stderr each; the rest is read and dropped,
    /// and [`Output::stdout_truncated`] / [`Output::stderr_truncated`] say so.
    pub fn max_output(&mut self, bytes: usize) -> &mut Self {
        self.max_output = Some(bytes);
        self
    }

    /// The command line as it is sent to the server.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for an invalid environment variable name.
    pub fn command_line(&self) -> Result<String> {
        let mut line = String::new();
        for (name, value) in &self.env {
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("invalid environment variable name {name:?}"),
                )
                .with_host(self.session.host()));
            }
            line.push_str(&format!("export {name}={}; ", shell_quote(value)));
        }
        if let Some(dir) = &self.cwd {
            line.push_str(&format!("cd -- {} || exit; ", shell_quote(dir)));
        }
        line.push_str(&self.line);
        Ok(line)
    }

    /// Runs the command and collects its output.
    ///
    /// A non-zero exit, a signal and a missing exit status are results, not errors.
    ///
    /// # Errors
    /// [`ErrorKind::Channel`] when the server refuses the channel, pty or command;
    /// [`ErrorKind::Disconnected`] when the connection is lost; [`ErrorKind::Timeout`]
    /// (phase [`Phase::Command`]) when the timeout passes, with the output so far.
    ///
    /// # Cancel safety
    /// Dropping the future stops reading; the channel is closed by the server when the
    /// command ends, but the remote command is not signalled. Use [`Command::timeout`]
    /// to bound a command.
    pub async fn output(&self) -> Result<Output> {
        let host = self.session.host().to_owned();
        self.run().await.map_err(|e| e.with_host(host))
    }

    /// Runs the command and returns only how it ended (output is read and dropped).
    ///
    /// # Errors
    /// As [`Command::output`].
    pub async fn status(&self) -> Result<ExitStatus> {
        let mut quiet = self.clone();
        quiet.max_output(0);
        Ok(quiet.output().await?.status)
    }

    async fn run(&self) -> Result<Output> {
        let line = self.command_line()?;
        let started = Instant::now();
        let channel = self.session.open_channel().await?;
        let (mut read, write) = channel.split();
        let lost = |e: russh::Error| russh_error(e, "starting the command");

        let mut replies_expected = 1;
        if self.pty {
            write
                .request_pty(true, "xterm", 80, 24, 0, 0, &[])
                .await
                .map_err(lost)?;
            replies_expected += 1;
        }
        write.exec(true, line.into_bytes()).await.map_err(lost)?;

        let send_stdin = async {
            if let Some(bytes) = &self.stdin {
                write.data_bytes(bytes.clone()).await?;
            }
            write.eof().await
        };

        let cap = self.max_output.unwrap_or(usize::MAX);
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let (mut stdout_truncated, mut stderr_truncated) = (false, false);
        let mut status: Option<ExitStatus> = None;
        let mut replies_seen = 0;
        let mut refused: Option<&'static str> = None;

        let deadline = self.timeout.map(|t| tokio::time::Instant::now() + t);
        let mut term_sent = false;
        let mut kill_at: Option<tokio::time::Instant> = None;
        let mut close_at: Option<tokio::time::Instant> = None;
        let far = tokio::time::Instant::now() + Duration::from_secs(86400 * 365);

        let read_loop = async {
            loop {
                let next_deadline = if term_sent {
                    close_at.or(kill_at).unwrap_or(far)
                } else {
                    deadline.unwrap_or(far)
                };
                tokio::select! {
                    msg = read.wait() => match msg {
                        None | Some(ChannelMsg::Close) => break,
                        Some(ChannelMsg::Data { data }) => {
                            append_capped(&mut stdout, &data, cap, &mut stdout_truncated)
                        }
                        Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                            append_capped(&mut stderr, &data, cap, &mut stderr_truncated)
                        }
                        Some(ChannelMsg::ExitStatus { exit_status }) => {
                            status = Some(ExitStatus::Exited(exit_status));
                        }
                        Some(ChannelMsg::ExitSignal { signal_name, core_dumped, error_message, .. }) => {
                            status = Some(ExitStatus::Signaled {
                                signal: signal_name_of(&signal_name),
                                core_dumped,
                                message: error_message,
                            });
                        }
                        Some(ChannelMsg::Success) => replies_seen += 1,
                        Some(ChannelMsg::Failure) => {
                            replies_seen += 1;
                            refused = Some(if self.pty && replies_seen == 1 {
                                "the server refused to allocate a pty"
                            } else {
                                "the server refused to run the command"
                            });
                            // The server will close the channel; keep reading until then.
                            if replies_seen >= replies_expected {
                                let _ = write.close().await;
                            }
                        }
                        Some(_) => {}
                    },
                    _ = sleep_until(next_deadline), if deadline.is_some() => {
                        let now = tokio::time::Instant::now();
                        if !term_sent {
                            term_sent = true;
                            let _ = write.signal(Sig::TERM).await;
                            kill_at = Some(now + self.kill_grace);
                        } else if close_at.is_none() {
                            let _ = write.signal(Sig::KILL).await;
                            close_at = Some(now + Duration::from_secs(1));
                        } else {
                            let _ = write.close().await;
                            break;
                        }
                    }
                }
            }
        };
        // stdin is written while output is read: a command that echoes a large stdin
        // would otherwise deadlock on the channel windows.
        let (_, stdin_result) = tokio::join!(read_loop, send_stdin);

        if let Some(why) = refused {
            return Err(Error::new(ErrorKind::Channel, why));
        }
        let output = Output {
            stdout,
            stderr,
            status: status.clone().unwrap_or(ExitStatus::Unknown),
            stdout_truncated,
            stderr_truncated,
            duration: started.elapsed(),
            host: self.session.host().to_owned(),
        };
        if term_sent {
            let timeout = self.timeout.unwrap_or_default();
            return Err(Error::timeout(Phase::Command, timeout).with_output(output));
        }
        if status.is_none() && self.session.is_closed() {
            return Err(Error::new(
                ErrorKind::Disconnected,
                "connection lost before the command reported an exit status",
            )
            .with_output(output));
        }
        // A command that exits without reading stdin makes the write fail; that is normal.
        drop(stdin_result);
        Ok(output)
    }
}

fn append_capped(buf: &mut Vec<u8>, data: &[u8], cap: usize, truncated: &mut bool) {
    let room = cap.saturating_sub(buf.len());
    if data.len() > room {
        *truncated = true;
    }
    buf.extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
}

fn signal_name_of(sig: &Sig) -> String {
    match sig {
        Sig::ABRT => "ABRT",
        Sig::ALRM => "ALRM",
        Sig::FPE => "FPE",
        Sig::HUP => "HUP",
        Sig::ILL => "ILL",
        Sig::INT => "INT",
        Sig::KILL => "KILL",
        Sig::PIPE => "PIPE",
        Sig::QUIT => "QUIT",
        Sig::SEGV => "SEGV",
        Sig::TERM => "TERM",
        Sig::USR1 => "USR1",
        Sig::Custom(name) => return name.clone(),
    }
    .to_owned()
}
