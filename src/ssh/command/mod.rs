//! Running one command over a [`Session`]: the [`Command`] builder; its [`Output`] and
//! [`ExitStatus`] (`output.rs`); the SSH channel loop (`exec.rs`); and stopping a command
//! for sure on every kind of session (`stop.rs`). Local processes (the local transport)
//! run in the crate's `local` module.

mod exec;
pub(crate) mod output;
pub(crate) mod stop;
mod sudo;

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::error::{fmt_duration, Error, ErrorKind, Phase, Result};
use crate::ssh::quote::shell_quote;
use crate::ssh::session::Session;

pub use output::{DataCallback, ExitStatus, Output, OutputStream};
pub use sudo::Become;

use output::Collector;
use stop::{StopPlan, StopReason};

/// A command to run on a [`Session`], built like `std::process::Command`.
///
/// ```no_run
/// # async fn f(session: &rexec::Session) -> rexec::Result<()> {
/// let out = session.command("ls").args(["-l", "/tmp/a dir"]).output().await?;
/// println!("{}: {}", out.status, out.stdout_lossy());
/// let out = session.raw_command("ls -l /tmp | wc -l").output().await?;
/// # Ok(()) }
/// ```
#[must_use]
#[derive(Clone)]
pub struct Command<'s> {
    session: &'s Session,
    line: String,
    pub(crate) stdin: Option<Bytes>,
    env: Vec<(String, String)>,
    cwd: Option<String>,
    pty: bool,
    timeout: Option<Duration>,
    pub(crate) kill_grace: Duration,
    max_output: Option<usize>,
    on_data: Option<DataCallback>,
    cancel: Option<CancellationToken>,
    report_pid: bool,
    sudo: Option<Become>,
    stdin_file: Option<StdinFile>,
    /// Why the program given to [`Session::command`] cannot be sent (reported by
    /// [`Command::command_line`], so by every run).
    refused: Option<&'static str>,
}

/// A local file streamed to the command's stdin (uploads through sudo), with a callback
/// told the bytes sent so far.
#[derive(Clone)]
pub(crate) struct StdinFile {
    pub(crate) path: std::path::PathBuf,
    pub(crate) progress: Option<std::sync::Arc<dyn Fn(u64) + Send + Sync>>,
}

/// What the channel loop (or the local process loop) found out.
pub(crate) struct RunEnd {
    pub(crate) status: Option<ExitStatus>,
    pub(crate) stop: Option<StopReason>,
    /// The stop was confirmed (the process group is gone, or at least the command ended).
    pub(crate) confirmed: bool,
    pub(crate) output_open_after_exit: bool,
    /// Run through sudo, which ended without starting the command: why.
    pub(crate) become_failure: Option<String>,
}

impl<'s> Command<'s> {
    /// The default time between `TERM` and `KILL` when a command is stopped.
    pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(2);

    pub(crate) fn new(session: &'s Session, line: String) -> Command<'s> {
        Command {
            session,
            line,
            stdin: None,
            env: Vec::new(),
            cwd: None,
            pty: false,
            timeout: None,
            kill_grace: Command::DEFAULT_KILL_GRACE,
            max_output: None,
            on_data: None,
            cancel: None,
            report_pid: true,
            sudo: None,
            stdin_file: None,
            refused: None,
        }
    }

    /// The command for [`Session::command`]: `program` as one word in single quotes,
    /// always (a quoted word is never a reserved word such as `if` nor an assignment
    /// such as `A=b`, which bare it would be).
    pub(crate) fn program(session: &'s Session, program: &str) -> Command<'s> {
        let mut command = Command::new(session, format!("'{}'", program.replace('\'', "'\\''")));
        if program.starts_with('%') {
            // bash reads a command word starting with `%` as a job (`%1` is `fg %1`),
            // quoted or not, even after `command --`.
            command.refused = Some(
                "a program name starting with '%' is read by bash as a job, not a program: \
                 give a path (./%name) or use raw_command",
            );
        }
        command
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
    ///
    /// [`Bytes`] is shared, not copied: give every host the same buffer (a `Vec<u8>` or
    /// `String` converts without copying). Writing stops when the channel closes, so a
    /// command that exits without reading all of it does not hold the run.
    pub fn stdin(&mut self, bytes: impl Into<Bytes>) -> &mut Self {
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

    /// A deadline for the whole command: from the channel request to the last byte,
    /// including writing stdin and stopping the command (connecting is not included).
    ///
    /// The command's process group gets `TERM` one kill grace before the deadline
    /// ([`Command::kill_grace`], at most a quarter of `timeout`), `KILL` later, and the
    /// result is ready at the deadline: an [`ErrorKind::Timeout`] error (phase
    /// [`Phase::Command`]) carrying the output so far, whose message says when the end
    /// of the command could not be confirmed.
    pub fn timeout(&mut self, timeout: Duration) -> &mut Self {
        self.timeout = Some(timeout);
        self
    }

    /// Time between `TERM` and `KILL` when the command is stopped (default 2 s; before a
    /// deadline at most a quarter of the timeout).
    pub fn kill_grace(&mut self, grace: Duration) -> &mut Self {
        self.kill_grace = grace;
        self
    }

    /// Keeps at most `bytes` of stdout and of stderr each; the rest is read and dropped
    /// (the channel is still drained and the exit status still reported), and
    /// [`Output::stdout_truncated`] / [`Output::stderr_truncated`] say so.
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

    /// Whether the command line starts with a `printf` that reports the remote shell's
    /// process id on stderr (rexec removes it, so stderr is exactly what the command
    /// wrote). Default on. With it, stopping the command (timeout, cancellation, a
    /// dropped future) reaches its whole process group even where sshd ignores the SSH
    /// `signal` request: root logins and `ForceCommand` sessions (OpenSSH 9.2 ignores it
    /// there). Turn it off for servers whose login shell is not a POSIX shell (network
    /// devices, `csh`, `fish`); stopping then relies on the `signal` request alone.
    pub fn report_pid(&mut self, on: bool) -> &mut Self {
        self.report_pid = on;
        self
    }

    /// Runs the command as another user through `sudo`, without a pty (Ansible's
    /// `become`); see [`Become`] and the README's "sudo" section.
    ///
    /// The login shell runs `exec sudo -H -S -p PROMPT -u USER -- /bin/sh -c LINE` (`-n`
    /// instead of `-S -p PROMPT` without a password): the command line, with its
    /// [`Command::env`] exports and [`Command::current_dir`], runs in `/bin/sh` as `USER`,
    /// with `HOME` set to that user's home and the login user's working directory. The
    /// password is sent only when sudo prints `PROMPT`, a string unique to this command,
    /// and stdin ([`Command::stdin`]) only once the command has started, so neither can be
    /// mistaken for the other. What sudo prints before the command starts (the prompt, a
    /// lecture, warnings) is not part of the command's stderr; it is logged at debug level. The process-id `printf` is
    /// printed by that `/bin/sh` even when [`Command::report_pid`] is off, and stopping the
    /// command runs its reaper through sudo too.
    ///
    /// When sudo does not run the command, [`Command::output`] fails with
    /// [`ErrorKind::Become`] (wrong or missing password, not allowed by sudoers, sudo not
    /// installed, unknown user), with sudo's messages in the error's output. Not for local
    /// sessions or with [`Command::pty`] (a pty would echo the password):
    /// [`ErrorKind::InvalidInput`]. sudoers' `passprompt_override` (which replaces rexec's
    /// prompt) and PAM stacks that ask more than one question are not supported: the
    /// command then waits at sudo's prompt until its deadline.
    pub fn sudo(&mut self, become_: Become) -> &mut Self {
        self.sudo = Some(become_);
        self
    }

    /// Runs the command as `user` through sudo ([`Command::sudo`]), keeping a password
    /// given by [`Command::become_password`].
    pub fn become_user(&mut self, user: impl Into<String>) -> &mut Self {
        let mut next = Become::user(user);
        if let Some(p) = self.sudo.as_ref().and_then(|b| b.secret()) {
            next = next.password(p.clone());
        }
        self.sudo = Some(next);
        self
    }

    /// The password sudo asks for; runs the command as root through sudo unless
    /// [`Command::become_user`] names another user.
    pub fn become_password(&mut self, password: crate::Secret) -> &mut Self {
        let user = self
            .sudo
            .as_ref()
            .map_or_else(|| "root".to_owned(), |b| b.user_name().to_owned());
        self.sudo = Some(Become::user(user).password(password));
        self
    }

    /// The data callback set so far, taken out (to be chained by the pool).
    pub(crate) fn take_on_data(&mut self) -> Option<DataCallback> {
        self.on_data.take()
    }

    /// Streams a local file to the command's stdin instead of [`Command::stdin`].
    pub(crate) fn stdin_file(&mut self, file: StdinFile) -> &mut Self {
        self.stdin_file = Some(file);
        self
    }

    /// The command line as it is sent to the server (without the process-id `printf`
    /// of [`Command::report_pid`]; with [`Command::sudo`], the line that sudo's
    /// `/bin/sh` runs).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for an invalid environment variable name, a NUL byte,
    /// or a [`Session::command`] program that starts with `%`.
    pub fn command_line(&self) -> Result<String> {
        if let Some(why) = self.refused {
            return Err(Error::new(ErrorKind::InvalidInput, why).with_host(self.session.host()));
        }
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
        if line.contains('\0') {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "the command line contains a NUL byte, which no shell can receive",
            )
            .with_host(self.session.host()));
        }
        Ok(line)
    }

    /// Runs the command and collects its output.
    ///
    /// A non-zero exit, a signal and a missing exit status are results, not errors. When
    /// the exit status has arrived but a background process keeps the output open, rexec
    /// stops reading after a short silence and says so ([`Output::output_open_after_exit`]).
    ///
    /// # Errors
    /// [`ErrorKind::Channel`] when the server refuses the channel, pty or command;
    /// [`ErrorKind::Disconnected`] when the connection is lost; [`ErrorKind::Timeout`]
    /// (phase [`Phase::Command`]) when the timeout passes and [`ErrorKind::Interrupted`]
    /// when the cancellation token fires, both with the output so far.
    ///
    /// # Cancel safety
    /// Dropping the future while the command runs stops it: `TERM` to its process group,
    /// `KILL` after the grace period, then the channel is closed, from a task spawned on
    /// the current tokio runtime (the connection must stay open that long for this to
    /// reach the server). The output so far is lost.
    pub async fn output(&self) -> Result<Output> {
        let host = self.session.host().to_owned();
        self.run().await.map_err(|e| e.with_host(host))
    }

    /// Runs the command and returns only how it ended (output is read and dropped).
    ///
    /// # Errors
    /// As [`Command::output`].
    ///
    /// # Cancel safety
    /// As [`Command::output`]: dropping the future while the command runs stops it.
    pub async fn status(&self) -> Result<ExitStatus> {
        let mut quiet = self.clone();
        quiet.max_output(0);
        Ok(quiet.output().await?.status)
    }

    async fn run(&self) -> Result<Output> {
        let line = self.command_line()?;
        let started = Instant::now();
        let mut collector = Collector::new(self.max_output, self.on_data.clone());
        let plan = StopPlan::new(self.timeout, self.kill_grace, self.cancel.clone());
        if let Some(b) = &self.sudo {
            b.check()?;
            if self.session.is_local() {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "become (sudo) needs an ssh host, not the local transport",
                ));
            }
            if self.pty {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "become (sudo) runs without a pty: a pty would echo the password",
                ));
            }
        }
        let end = if self.session.is_local() {
            if self.pty {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "a pty is not available for local commands",
                ));
            }
            crate::local::run(self, line, &mut collector, &plan).await?
        } else {
            exec::run(self, line, &mut collector, &plan).await?
        };
        let output = Output {
            stdout: collector.stdout,
            stderr: collector.stderr,
            status: end.status.clone().unwrap_or(ExitStatus::Unknown),
            stdout_truncated: collector.stdout_truncated,
            stderr_truncated: collector.stderr_truncated,
            output_open_after_exit: end.output_open_after_exit,
            may_still_be_running: (end.stop.is_some() && !end.confirmed)
                || (end.stop.is_none() && end.status.is_none()),
            duration: started.elapsed(),
            host: self.session.host().to_owned(),
        };
        let unconfirmed = |mut message: String| {
            if output.may_still_be_running {
                message.push_str(
                    "; the remote command may still be running (rexec could not confirm \
                     that it ended)",
                );
            }
            message
        };
        if let Some(why) = end.become_failure {
            return Err(Error::new(ErrorKind::Become, why).with_output(output));
        }
        match end.stop {
            Some(StopReason::Timeout) => {
                let timeout = self.timeout.unwrap_or_default();
                let e = Error::timeout(Phase::Command, timeout);
                let message = unconfirmed(e.message().to_owned());
                return Err(e.with_message(message).with_output(output));
            }
            Some(StopReason::Cancelled) => {
                let message = unconfirmed("interrupted".to_owned());
                return Err(Error::new(ErrorKind::Interrupted, message).with_output(output));
            }
            None => {}
        }
        if end.status.is_none() && self.session.is_closed() {
            return Err(self
                .session
                .lost(
                    "connection lost before the command reported an exit status; the remote \
                     command may still be running",
                )
                .with_output(output));
        }
        Ok(output)
    }
}

impl fmt::Debug for Command<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("host", &self.session.host())
            .field("line", &self.line)
            .field("stdin_bytes", &self.stdin.as_ref().map(Bytes::len))
            .field("env", &self.env)
            .field("cwd", &self.cwd)
            .field("pty", &self.pty)
            .field("timeout", &self.timeout.map(fmt_duration))
            .field("kill_grace", &self.kill_grace)
            .field("max_output", &self.max_output)
            .field("report_pid", &self.report_pid)
            .field("sudo", &self.sudo)
            .finish_non_exhaustive()
    }
}
