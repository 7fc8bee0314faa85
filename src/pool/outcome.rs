//! How one host's run ended ([`Outcome`]) and how a whole run maps to a process exit code
//! ([`RunExit`]), merged in this one place.

use std::fmt;

use crate::error::{Error, ErrorKind, Phase};
use crate::ssh::{ExitStatus, Output};

/// The outcome of one host. Distinct outcomes are never merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// Ran and exited 0.
    Ok,
    /// Ran and exited non-zero.
    ExitedNonZero,
    /// Killed by a signal.
    Killed,
    /// The command ended without an exit status.
    NoStatus,
    /// The command (or transfer) started and its deadline passed.
    TimedOut,
    /// Name resolution or the TCP connection failed, or the server did not complete the
    /// banner and key exchange in time (the error's kind and phase say which).
    Unreachable,
    /// The host key was unknown, changed or revoked.
    HostKeyRejected,
    /// Authentication failed or did not finish in time (or a key file or the agent
    /// could not be used).
    AuthFailed,
    /// `sudo` did not run the command: wrong or missing password, not in sudoers, not
    /// installed ([`ErrorKind::Become`]). The command never ran.
    BecomeFailed,
    /// The connection was lost.
    ConnectionLost,
    /// Stopped by cancellation while it ran.
    Interrupted,
    /// Never started: the run was cancelled first, or a rolling run's failure budget was
    /// exceeded ([`Pool::max_failures`](crate::Pool::max_failures)).
    NotStarted,
    /// Any other failure (protocol, channel refused, local I/O, invalid input).
    Error,
}

impl Outcome {
    /// Every outcome, in the order summaries list them.
    pub const ALL: [Outcome; 13] = [
        Outcome::Ok,
        Outcome::ExitedNonZero,
        Outcome::Killed,
        Outcome::NoStatus,
        Outcome::TimedOut,
        Outcome::Unreachable,
        Outcome::HostKeyRejected,
        Outcome::AuthFailed,
        Outcome::BecomeFailed,
        Outcome::ConnectionLost,
        Outcome::Interrupted,
        Outcome::NotStarted,
        Outcome::Error,
    ];

    /// The outcome of a command's result.
    pub fn of_command(result: &Result<Output, Error>) -> Outcome {
        match result {
            Ok(output) => Outcome::of_status(&output.status),
            Err(e) => Outcome::of_error(e),
        }
    }

    /// The outcome of any work's result: `Ok` for a value, else the error's outcome (for
    /// command outputs, whose exit status matters, use [`Outcome::of_command`]).
    pub fn of_result<T>(result: &Result<T, Error>) -> Outcome {
        match result {
            Ok(_) => Outcome::Ok,
            Err(e) => Outcome::of_error(e),
        }
    }

    /// The outcome of an exit status.
    pub fn of_status(status: &ExitStatus) -> Outcome {
        match status {
            ExitStatus::Exited(0) => Outcome::Ok,
            ExitStatus::Exited(_) => Outcome::ExitedNonZero,
            ExitStatus::Signaled { .. } => Outcome::Killed,
            ExitStatus::Unknown => Outcome::NoStatus,
        }
    }

    /// The outcome of an error. A deadline that passed before the command started is
    /// not `TimedOut` (the command never ran): connect and handshake deadlines are
    /// `Unreachable`, the authentication deadline `AuthFailed`, as Ansible reports a
    /// connection timeout as unreachable.
    pub fn of_error(error: &Error) -> Outcome {
        match error.kind() {
            ErrorKind::Timeout => match error.phase() {
                Some(Phase::Connect | Phase::Handshake) => Outcome::Unreachable,
                Some(Phase::Auth) => Outcome::AuthFailed,
                Some(Phase::Command) | None => Outcome::TimedOut,
            },
            ErrorKind::Resolve | ErrorKind::Connect => Outcome::Unreachable,
            ErrorKind::HostKeyUnknown | ErrorKind::HostKeyChanged => Outcome::HostKeyRejected,
            ErrorKind::Auth | ErrorKind::KeyFile | ErrorKind::Agent => Outcome::AuthFailed,
            ErrorKind::Become => Outcome::BecomeFailed,
            ErrorKind::Disconnected => Outcome::ConnectionLost,
            ErrorKind::Interrupted => Outcome::Interrupted,
            ErrorKind::NotStarted => Outcome::NotStarted,
            ErrorKind::CommandFailed => match error.output() {
                Some(o) => Outcome::of_status(&o.status),
                None => Outcome::ExitedNonZero,
            },
            _ => Outcome::Error,
        }
    }

    /// A short stable name (`ok`, `exited-nonzero`, `timed-out`...), as in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ExitedNonZero => "exited-nonzero",
            Outcome::Killed => "killed",
            Outcome::NoStatus => "no-status",
            Outcome::TimedOut => "timed-out",
            Outcome::Unreachable => "unreachable",
            Outcome::HostKeyRejected => "host-key-rejected",
            Outcome::AuthFailed => "auth-failed",
            Outcome::BecomeFailed => "become-failed",
            Outcome::ConnectionLost => "connection-lost",
            Outcome::Interrupted => "interrupted",
            Outcome::NotStarted => "not-started",
            Outcome::Error => "error",
        }
    }

    /// The process exit code this outcome calls for.
    pub fn exit(self) -> RunExit {
        match self {
            Outcome::Ok => RunExit::Success,
            Outcome::ExitedNonZero => RunExit::CommandFailed,
            Outcome::Unreachable
            | Outcome::HostKeyRejected
            | Outcome::AuthFailed
            | Outcome::BecomeFailed
            | Outcome::NotStarted
            | Outcome::Error => RunExit::CouldNotRun,
            Outcome::TimedOut | Outcome::Killed | Outcome::NoStatus | Outcome::ConnectionLost => {
                RunExit::Incomplete
            }
            Outcome::Interrupted => RunExit::Interrupted,
        }
    }
}

impl std::str::FromStr for Outcome {
    type Err = Error;

    /// An outcome's name as [`Outcome::as_str`] writes it (`exited-nonzero`,
    /// `unreachable`...).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] naming the unknown name and listing the known ones.
    fn from_str(name: &str) -> Result<Outcome, Error> {
        let name = name.trim();
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
                Error::new(
                    ErrorKind::InvalidInput,
                    format!("unknown outcome {name:?} (one of {})", known.join(", ")),
                )
            })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A whole run's exit code. [`RunExit::merge`] keeps the most severe:
/// `Interrupted` (130) > `OutputClosed` (141) > `Usage` (2) > `Incomplete` (4) >
/// `CouldNotRun` (3) > `CommandFailed` (1) > `Success` (0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunExit {
    /// 0: every host ran the command and it exited 0.
    Success,
    /// 1: on some host the command exited non-zero.
    CommandFailed,
    /// 2: usage or inventory error; nothing ran.
    Usage,
    /// 3: some host could not run the command (unreachable, host key, authentication,
    /// sudo, or not started because a rolling run's failure budget was exceeded).
    CouldNotRun,
    /// 4: on some host the command timed out, was killed, lost its connection or gave no
    /// exit status.
    Incomplete,
    /// 130: the run was interrupted (hosts stopped while running end
    /// [`Outcome::Interrupted`]; whoever cancels a run merges this code in, as the CLI
    /// does on Ctrl-C, since hosts that never started are only [`Outcome::NotStarted`]).
    Interrupted,
    /// 141 (128 + SIGPIPE, what a shell reports for a process killed by a closed pipe):
    /// the reader of the output went away (`rexec ... | head`); the running commands were
    /// stopped as for an interruption.
    OutputClosed,
}

impl RunExit {
    /// The numeric exit code.
    pub fn code(self) -> u8 {
        match self {
            RunExit::Success => 0,
            RunExit::CommandFailed => 1,
            RunExit::Usage => 2,
            RunExit::CouldNotRun => 3,
            RunExit::Incomplete => 4,
            RunExit::Interrupted => 130,
            RunExit::OutputClosed => 141,
        }
    }

    fn severity(self) -> u8 {
        match self {
            RunExit::Success => 0,
            RunExit::CommandFailed => 1,
            RunExit::CouldNotRun => 2,
            RunExit::Incomplete => 3,
            RunExit::Usage => 4,
            RunExit::OutputClosed => 5,
            RunExit::Interrupted => 6,
        }
    }

    /// The more severe of the two.
    #[must_use]
    pub fn merge(self, other: RunExit) -> RunExit {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }

    /// The merged exit code of many outcomes (`Success` for none).
    pub fn of(outcomes: impl IntoIterator<Item = Outcome>) -> RunExit {
        outcomes
            .into_iter()
            .fold(RunExit::Success, |acc, o| acc.merge(o.exit()))
    }
}

impl From<RunExit> for i32 {
    /// The exit code, for `std::process::exit(report.exit_code().into())`.
    fn from(exit: RunExit) -> i32 {
        i32::from(exit.code())
    }
}

impl From<RunExit> for std::process::ExitCode {
    /// The exit code, for `fn main() -> ExitCode`.
    fn from(exit: RunExit) -> std::process::ExitCode {
        std::process::ExitCode::from(exit.code())
    }
}
