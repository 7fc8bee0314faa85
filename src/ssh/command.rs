//! Running one command over a [`Session`]: the [`Command`] builder, its [`Output`] and
//! [`ExitStatus`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

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
#[derive(Clone)]
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
    on_data: Option<DataCallback>,
    cancel: Option<CancellationToken>,
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Called with every chunk of output as it arrives (see [`Command::on_data`]).
pub type DataCallback = Arc<dyn Fn(Stream, &[u8]) + Send + Sync>;

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
            on_data: None,
            cancel: None,
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

    /// Calls `callback` with each chunk of stdout and stderr as it arrives, before the
    /// chunk is captured (combine with [`Command::max_output`]`(0)` to stream without
    /// keeping anything in memory). Chunks are not split at line ends.
    pub fn on_data(&mut self, callback: DataCallback) -> &mut Self {
        self.on_data = Some(callback);
        self
    }

    /// Stops the command when `token` is cancelled: the remote process group gets `TERM`,
    /// then `KILL` after the grace period, and the result is an
    /// [`ErrorKind::Interrupted`] error carrying the output so far.
    pub fn cancel_on(&mut self, token: CancellationToken) -> &mut Self {
        self.cancel = Some(token);
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
    /// Dropping the future while the command runs stops it: its process group gets
    /// `TERM`, then `KILL` after the grace period, and the channel is closed, from a task
    /// spawned on the current tokio runtime (the connection must stay open that long for
    /// the signals to reach the server). The output so far is lost.
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
        let mut collector = Collector {
            stdout: Vec::new(),
            stderr: Vec::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            cap: self.max_output.unwrap_or(usize::MAX),
            on_data: self.on_data.clone(),
        };
        let mut stopper = Stopper::new(self.timeout, self.kill_grace, self.cancel.clone());
        let status = if self.session.is_local() {
            if self.pty {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "a pty is not available for local commands",
                ));
            }
            self.run_local(line, &mut collector, &mut stopper).await?
        } else {
            self.run_ssh(line, &mut collector, &mut stopper).await?
        };
        let output = Output {
            stdout: collector.stdout,
            stderr: collector.stderr,
            status: status.clone().unwrap_or(ExitStatus::Unknown),
            stdout_truncated: collector.stdout_truncated,
            stderr_truncated: collector.stderr_truncated,
            duration: started.elapsed(),
            host: self.session.host().to_owned(),
        };
        match stopper.reason {
            Some(StopReason::Timeout) => {
                let timeout = self.timeout.unwrap_or_default();
                return Err(Error::timeout(Phase::Command, timeout).with_output(output));
            }
            Some(StopReason::Cancelled) => {
                return Err(Error::new(ErrorKind::Interrupted, "interrupted").with_output(output));
            }
            None => {}
        }
        if status.is_none() && self.session.is_closed() {
            return Err(self
                .session
                .lost("connection lost before the command reported an exit status")
                .with_output(output));
        }
        Ok(output)
    }

    async fn run_ssh(
        &self,
        line: String,
        collector: &mut Collector,
        stopper: &mut Stopper,
    ) -> Result<Option<ExitStatus>> {
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
        let write = Arc::new(write);
        // If this future is dropped from here on, the remote command is stopped anyway.
        let mut guard = StopOnDrop::Ssh {
            write: Some(write.clone()),
            grace: self.kill_grace,
        };

        let send_stdin = async {
            if let Some(bytes) = &self.stdin {
                write.data_bytes(bytes.clone()).await?;
            }
            write.eof().await
        };

        let mut status: Option<ExitStatus> = None;
        let mut replies_seen = 0;
        let mut refused: Option<&'static str> = None;
        let read_loop = async {
            loop {
                tokio::select! {
                    msg = read.wait() => match msg {
                        None | Some(ChannelMsg::Close) => break,
                        Some(ChannelMsg::Data { data }) => collector.push(Stream::Stdout, &data),
                        Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                            collector.push(Stream::Stderr, &data)
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
                    action = stopper.next() => match action {
                        StopAction::Signal(sig) => {
                            let _ = write.signal(sig).await;
                        }
                        StopAction::Abandon => {
                            let _ = write.close().await;
                            break;
                        }
                    }
                }
            }
        };
        // stdin is written while output is read: a command that echoes a large stdin
        // would otherwise deadlock on the channel windows. A command that exits without
        // reading its stdin makes that write fail, which is normal.
        let _ = tokio::join!(read_loop, send_stdin);
        guard.disarm();
        if let Some(why) = refused {
            return Err(Error::new(ErrorKind::Channel, why));
        }
        Ok(status)
    }

    async fn run_local(
        &self,
        line: String,
        collector: &mut Collector,
        stopper: &mut Stopper,
    ) -> Result<Option<ExitStatus>> {
        use std::process::Stdio;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(line)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout reaches everything it started.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                Error::new(ErrorKind::LocalIo, "cannot start a local shell").with_source(e)
            })?;
        let pid = child.id().and_then(|p| i32::try_from(p).ok());
        let mut guard = StopOnDrop::Local {
            pid,
            grace: self.kill_grace,
        };
        let stdin = child.stdin.take();
        let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(Error::new(
                ErrorKind::LocalIo,
                "local process has no output pipes",
            ));
        };
        let send_stdin = async {
            if let (Some(mut pipe), Some(bytes)) = (stdin, &self.stdin) {
                let _ = pipe.write_all(bytes).await;
            }
        };
        let mut exit = None;
        let read_loop = async {
            let (mut out_buf, mut err_buf) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
            let (mut out_open, mut err_open) = (true, true);
            loop {
                tokio::select! {
                    n = out.read(&mut out_buf), if out_open => match n {
                        Ok(0) | Err(_) => out_open = false,
                        Ok(n) => collector.push(Stream::Stdout, out_buf.get(..n).unwrap_or_default()),
                    },
                    n = err.read(&mut err_buf), if err_open => match n {
                        Ok(0) | Err(_) => err_open = false,
                        Ok(n) => collector.push(Stream::Stderr, err_buf.get(..n).unwrap_or_default()),
                    },
                    status = child.wait(), if exit.is_none() => {
                        exit = Some(status);
                    }
                    action = stopper.next() => match action {
                        StopAction::Signal(sig) => {
                            if let Some(pid) = pid {
                                kill_group(pid, local_signal(&sig));
                            }
                        }
                        StopAction::Abandon => break,
                    }
                }
                if !out_open && !err_open && exit.is_some() {
                    break;
                }
            }
        };
        tokio::join!(read_loop, send_stdin);
        guard.disarm();
        Ok(match exit {
            Some(Ok(status)) => Some(local_status(status)),
            Some(Err(e)) => {
                return Err(
                    Error::new(ErrorKind::LocalIo, "cannot wait for a local process")
                        .with_source(e),
                )
            }
            None => None,
        })
    }
}

impl fmt::Debug for Command<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("host", &self.session.host())
            .field("line", &self.line)
            .field("stdin_bytes", &self.stdin.as_ref().map(Vec::len))
            .field("env", &self.env)
            .field("cwd", &self.cwd)
            .field("pty", &self.pty)
            .field("timeout", &self.timeout)
            .field("max_output", &self.max_output)
            .finish_non_exhaustive()
    }
}

/// Stops a command whose future was dropped while it ran: `TERM` to the process group
/// now, `KILL` after the grace period, then the channel is closed (from a spawned task,
/// since `Drop` cannot wait). Disarmed once the command has ended.
enum StopOnDrop {
    Ssh {
        write: Option<Arc<russh::ChannelWriteHalf<russh::client::Msg>>>,
        grace: Duration,
    },
    Local {
        pid: Option<i32>,
        grace: Duration,
    },
}

impl StopOnDrop {
    fn disarm(&mut self) {
        match self {
            StopOnDrop::Ssh { write, .. } => *write = None,
            StopOnDrop::Local { pid, .. } => *pid = None,
        }
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        match self {
            StopOnDrop::Ssh { write, grace } => {
                if let Some(write) = write.take() {
                    let grace = *grace;
                    runtime.spawn(async move {
                        let _ = write.signal(Sig::TERM).await;
                        tokio::time::sleep(grace).await;
                        let _ = write.signal(Sig::KILL).await;
                        let _ = write.close().await;
                    });
                }
            }
            StopOnDrop::Local { pid, grace } => {
                if let Some(pid) = pid.take() {
                    kill_group(pid, libc::SIGTERM);
                    let grace = *grace;
                    runtime.spawn(async move {
                        tokio::time::sleep(grace).await;
                        kill_group(pid, libc::SIGKILL);
                    });
                }
            }
        }
    }
}

fn kill_group(pid: i32, signal: i32) {
    // SAFETY: signalling a process group this crate created; at worst it is already gone
    // and kill returns ESRCH.
    unsafe { libc::kill(-pid, signal) };
}

struct Collector {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    stdout_truncated: bool,
    stderr_truncated: bool,
    cap: usize,
    on_data: Option<DataCallback>,
}

impl Collector {
    fn push(&mut self, stream: Stream, data: &[u8]) {
        if let Some(cb) = &self.on_data {
            cb(stream, data);
        }
        match stream {
            Stream::Stdout => {
                append_capped(&mut self.stdout, data, self.cap, &mut self.stdout_truncated)
            }
            Stream::Stderr => {
                append_capped(&mut self.stderr, data, self.cap, &mut self.stderr_truncated)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    Timeout,
    Cancelled,
}

enum StopAction {
    Signal(Sig),
    Abandon,
}

/// Stopping a command: on timeout or cancellation, `TERM`, then `KILL` after the grace,
/// then give up on the channel one second later.
struct Stopper {
    deadline: Option<tokio::time::Instant>,
    grace: Duration,
    cancel: Option<CancellationToken>,
    reason: Option<StopReason>,
    next_step: Option<(tokio::time::Instant, u8)>,
}

impl Stopper {
    fn new(timeout: Option<Duration>, grace: Duration, cancel: Option<CancellationToken>) -> Self {
        Stopper {
            deadline: timeout.map(|t| tokio::time::Instant::now() + t),
            grace,
            cancel,
            reason: None,
            next_step: None,
        }
    }

    /// Waits for the next thing to do. Never returns while nothing is due.
    async fn next(&mut self) -> StopAction {
        if self.reason.is_none() {
            let deadline = async {
                match self.deadline {
                    Some(d) => sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let cancelled = async {
                match &self.cancel {
                    Some(token) => token.cancelled().await,
                    None => std::future::pending().await,
                }
            };
            let reason = tokio::select! {
                _ = deadline => StopReason::Timeout,
                _ = cancelled => StopReason::Cancelled,
            };
            self.reason = Some(reason);
            self.next_step = Some((tokio::time::Instant::now() + self.grace, 1));
            return StopAction::Signal(Sig::TERM);
        }
        match self.next_step {
            Some((at, 1)) => {
                sleep_until(at).await;
                self.next_step = Some((tokio::time::Instant::now() + Duration::from_secs(1), 2));
                StopAction::Signal(Sig::KILL)
            }
            Some((at, _)) => {
                sleep_until(at).await;
                self.next_step = None;
                StopAction::Abandon
            }
            None => std::future::pending().await,
        }
    }
}

fn local_signal(sig: &Sig) -> i32 {
    match sig {
        Sig::KILL => libc::SIGKILL,
        _ => libc::SIGTERM,
    }
}

fn local_status(status: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return ExitStatus::Exited(u32::try_from(code).unwrap_or(255));
    }
    match status.signal() {
        Some(sig) => ExitStatus::Signaled {
            signal: signal_name_from_number(sig),
            core_dumped: status.core_dumped(),
            message: String::new(),
        },
        None => ExitStatus::Unknown,
    }
}

fn signal_name_from_number(sig: i32) -> String {
    let name = match sig {
        libc::SIGABRT => "ABRT",
        libc::SIGALRM => "ALRM",
        libc::SIGFPE => "FPE",
        libc::SIGHUP => "HUP",
        libc::SIGILL => "ILL",
        libc::SIGINT => "INT",
        libc::SIGKILL => "KILL",
        libc::SIGPIPE => "PIPE",
        libc::SIGQUIT => "QUIT",
        libc::SIGSEGV => "SEGV",
        libc::SIGTERM => "TERM",
        libc::SIGUSR1 => "USR1",
        libc::SIGUSR2 => "USR2",
        libc::SIGBUS => "BUS",
        other => return format!("{other}"),
    };
    name.to_owned()
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
