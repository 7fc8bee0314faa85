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
    /// connection timeout as unreachable. A connection dropped in those phases
    /// ([`ErrorKind::Disconnected`]) is classified the same way; `ConnectionLost` is a
    /// connection lost once the command had started (or with no phase).
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
            // A drop before the command started (a server past MaxStartups, after the
            // retries): the command never ran, as for a deadline in the same phase.
            ErrorKind::Disconnected => match error.phase() {
                Some(Phase::Connect | Phase::Handshake) => Outcome::Unreachable,
                Some(Phase::Auth) => Outcome::AuthFailed,
                Some(Phase::Command) | None => Outcome::ConnectionLost,
            },
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    const EXITS: [RunExit; 7] = [
        RunExit::Success,
        RunExit::CommandFailed,
        RunExit::Usage,
        RunExit::CouldNotRun,
        RunExit::Incomplete,
        RunExit::Interrupted,
        RunExit::OutputClosed,
    ];

    /// README "Exit codes": "the most severe wins: 130, then 141, then 2, then 4, then 3,
    /// then 1, then 0".
    const DOCUMENTED_ORDER: [u8; 7] = [130, 141, 2, 4, 3, 1, 0];

    fn rank(exit: RunExit) -> usize {
        DOCUMENTED_ORDER
            .iter()
            .position(|&c| c == exit.code())
            .unwrap()
    }

    fn any_exit() -> impl Strategy<Value = RunExit> {
        prop::sample::select(EXITS.to_vec())
    }

    fn any_outcome() -> impl Strategy<Value = Outcome> {
        prop::sample::select(Outcome::ALL.to_vec())
    }

    #[test]
    fn codes_are_the_documented_ones() {
        let codes: Vec<u8> = EXITS.iter().map(|e| e.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 130, 141]);
        for e in EXITS {
            assert_eq!(i32::from(e), i32::from(e.code()));
        }
    }

    #[test]
    fn every_pair_merges_to_the_documented_winner() {
        for a in EXITS {
            for b in EXITS {
                let expected = if rank(a) <= rank(b) { a } else { b };
                assert_eq!(a.merge(b), expected, "{a:?} merge {b:?}");
                assert_eq!(
                    RunExit::of([]).merge(a).merge(b),
                    expected,
                    "{a:?} then {b:?} from nothing"
                );
            }
        }
    }

    #[test]
    fn the_order_is_total_and_strict() {
        // Walking the documented order from the least severe, each code beats all before.
        let mut sorted: Vec<RunExit> = EXITS.to_vec();
        sorted.sort_by_key(|&e| std::cmp::Reverse(rank(e)));
        let codes: Vec<u8> = sorted.iter().map(|e| e.code()).collect();
        assert_eq!(codes, [0, 1, 3, 4, 2, 141, 130]);
        for (i, &weaker) in sorted.iter().enumerate() {
            for &stronger in &sorted[i + 1..] {
                assert_eq!(weaker.merge(stronger), stronger);
                assert_eq!(stronger.merge(weaker), stronger);
            }
        }
    }

    #[test]
    fn of_nothing_is_success_and_of_one_is_its_exit() {
        assert_eq!(RunExit::of([]), RunExit::Success);
        for o in Outcome::ALL {
            assert_eq!(RunExit::of([o]), o.exit(), "{o}");
        }
        assert_eq!(
            RunExit::of([Outcome::Ok, Outcome::ExitedNonZero, Outcome::Ok]),
            RunExit::CommandFailed
        );
        assert_eq!(
            RunExit::of([Outcome::TimedOut, Outcome::Unreachable]),
            RunExit::Incomplete
        );
        assert_eq!(
            RunExit::of([Outcome::NotStarted, Outcome::ExitedNonZero]),
            RunExit::CouldNotRun
        );
        assert_eq!(
            RunExit::of([Outcome::Interrupted, Outcome::NoStatus, Outcome::Error]),
            RunExit::Interrupted
        );
    }

    proptest! {
        #[test]
        fn merge_is_commutative_associative_idempotent(
            a in any_exit(), b in any_exit(), c in any_exit()
        ) {
            prop_assert_eq!(a.merge(b), b.merge(a));
            prop_assert_eq!(a.merge(b).merge(c), a.merge(b.merge(c)));
            prop_assert_eq!(a.merge(a), a);
            prop_assert_eq!(a.merge(RunExit::Success), a);
            prop_assert_eq!(RunExit::Success.merge(a), a);
            // The result is one of the two, the more severe one.
            let m = a.merge(b);
            prop_assert!(m == a || m == b);
            prop_assert!(rank(m) <= rank(a) && rank(m) <= rank(b));
        }

        #[test]
        fn of_is_the_fold_in_any_order(
            outcomes in prop::collection::vec(any_outcome(), 0..20)
        ) {
            let forward = RunExit::of(outcomes.iter().copied());
            let backward = RunExit::of(outcomes.iter().rev().copied());
            prop_assert_eq!(forward, backward);
            let most_severe = outcomes
                .iter()
                .map(|o| o.exit())
                .min_by_key(|&e| rank(e))
                .unwrap_or(RunExit::Success);
            prop_assert_eq!(forward, most_severe);
        }
    }

    fn exited(code: u32) -> ExitStatus {
        ExitStatus::Exited(code)
    }

    fn killed(signal: &str) -> ExitStatus {
        ExitStatus::Signaled {
            signal: signal.to_owned(),
            core_dumped: false,
            message: String::new(),
        }
    }

    fn output(status: ExitStatus) -> Output {
        Output::new("web01", status, b"out".to_vec(), b"err".to_vec())
    }

    #[test]
    fn statuses() {
        assert_eq!(Outcome::of_status(&exited(0)), Outcome::Ok);
        for code in [1, 2, 127, 255, 256, u32::MAX] {
            assert_eq!(
                Outcome::of_status(&exited(code)),
                Outcome::ExitedNonZero,
                "{code}"
            );
        }
        assert_eq!(Outcome::of_status(&killed("TERM")), Outcome::Killed);
        let core = ExitStatus::Signaled {
            signal: "SEGV".to_owned(),
            core_dumped: true,
            message: "boom".to_owned(),
        };
        assert_eq!(Outcome::of_status(&core), Outcome::Killed);
        // README: a channel closed without a status is `no-status`, exit 4, never 0.
        assert_eq!(Outcome::of_status(&ExitStatus::Unknown), Outcome::NoStatus);
        assert_eq!(Outcome::NoStatus.exit().code(), 4);
    }

    /// Every error kind, with the outcome README "Exit codes" gives it. A new kind fails
    /// to compile here until someone decides its outcome.
    fn documented(kind: ErrorKind) -> Outcome {
        match kind {
            ErrorKind::Resolve | ErrorKind::Connect => Outcome::Unreachable,
            ErrorKind::HostKeyUnknown | ErrorKind::HostKeyChanged => Outcome::HostKeyRejected,
            ErrorKind::Auth | ErrorKind::KeyFile | ErrorKind::Agent => Outcome::AuthFailed,
            ErrorKind::Become => Outcome::BecomeFailed,
            ErrorKind::Disconnected => Outcome::ConnectionLost,
            ErrorKind::Interrupted => Outcome::Interrupted,
            ErrorKind::NotStarted => Outcome::NotStarted,
            // Without an output attached, a failed check is a non-zero exit.
            ErrorKind::CommandFailed => Outcome::ExitedNonZero,
            // A deadline without a phase is the command's.
            ErrorKind::Timeout => Outcome::TimedOut,
            ErrorKind::InvalidInput
            | ErrorKind::Protocol
            | ErrorKind::Channel
            | ErrorKind::LocalIo
            | ErrorKind::NotFound
            | ErrorKind::PermissionDenied
            | ErrorKind::NoSpace
            | ErrorKind::Sftp => Outcome::Error,
        }
    }

    const KINDS: [ErrorKind; 21] = [
        ErrorKind::InvalidInput,
        ErrorKind::Resolve,
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::HostKeyUnknown,
        ErrorKind::HostKeyChanged,
        ErrorKind::Auth,
        ErrorKind::KeyFile,
        ErrorKind::Agent,
        ErrorKind::Protocol,
        ErrorKind::Channel,
        ErrorKind::Disconnected,
        ErrorKind::LocalIo,
        ErrorKind::CommandFailed,
        ErrorKind::Interrupted,
        ErrorKind::NotStarted,
        ErrorKind::NotFound,
        ErrorKind::PermissionDenied,
        ErrorKind::NoSpace,
        ErrorKind::Sftp,
        ErrorKind::Become,
    ];

    #[test]
    fn every_error_kind_maps_to_its_documented_outcome_and_code() {
        for kind in KINDS {
            let error = Error::new(kind, "x").with_host("web01");
            let expected = documented(kind);
            assert_eq!(Outcome::of_error(&error), expected, "{kind}");
            assert_eq!(
                Outcome::of_command(&Err(error.replicate())),
                expected,
                "{kind}"
            );
            assert_eq!(Outcome::of_result::<()>(&Err(error)), expected, "{kind}");
            let code = expected.exit().code();
            let documented_code = match expected {
                Outcome::ExitedNonZero => 1,
                Outcome::TimedOut | Outcome::ConnectionLost => 4,
                Outcome::Interrupted => 130,
                _ => 3,
            };
            assert_eq!(code, documented_code, "{kind} -> {expected}");
        }
    }

    #[test]
    fn a_deadline_before_the_command_is_not_a_timed_out_command() {
        let after = Duration::from_secs(5);
        let cases = [
            (Phase::Connect, Outcome::Unreachable, 3),
            (Phase::Handshake, Outcome::Unreachable, 3),
            (Phase::Auth, Outcome::AuthFailed, 3),
            (Phase::Command, Outcome::TimedOut, 4),
        ];
        for (phase, outcome, code) in cases {
            let error = Error::timeout(phase, after);
            assert_eq!(error.kind(), ErrorKind::Timeout);
            assert_eq!(Outcome::of_error(&error), outcome, "{phase:?}");
            assert_eq!(outcome.exit().code(), code, "{phase:?}");
            assert_eq!(error.phase(), Some(phase));
        }
        // A phase on another kind changes nothing: a refused connection is unreachable
        // whatever phase it names, and a timeout with no phase is the command's.
        let refused = Error::new(ErrorKind::Connect, "refused").in_phase(Phase::Command);
        assert_eq!(Outcome::of_error(&refused), Outcome::Unreachable);
        // A drop before the command is not a lost command either (exit 3, not 4).
        for (phase, outcome) in [
            (Phase::Connect, Outcome::Unreachable),
            (Phase::Handshake, Outcome::Unreachable),
            (Phase::Auth, Outcome::AuthFailed),
            (Phase::Command, Outcome::ConnectionLost),
        ] {
            let dropped = Error::new(ErrorKind::Disconnected, "dropped").in_phase(phase);
            assert_eq!(Outcome::of_error(&dropped), outcome, "{phase:?}");
        }
        assert_eq!(Outcome::Unreachable.exit().code(), 3);
        assert_eq!(Outcome::ConnectionLost.exit().code(), 4);
        let bare = Error::new(ErrorKind::Timeout, "late");
        assert_eq!(Outcome::of_error(&bare), Outcome::TimedOut);
        assert_eq!(bare.phase(), None);
    }

    #[test]
    fn a_failed_check_carries_the_status_it_rejected() {
        let rejected = |status| {
            Error::new(ErrorKind::CommandFailed, "command failed").with_output(output(status))
        };
        assert_eq!(
            Outcome::of_error(&rejected(exited(3))),
            Outcome::ExitedNonZero
        );
        assert_eq!(
            Outcome::of_error(&rejected(killed("KILL"))),
            Outcome::Killed
        );
        assert_eq!(
            Outcome::of_error(&rejected(ExitStatus::Unknown)),
            Outcome::NoStatus
        );
        assert_eq!(Outcome::of_error(&rejected(exited(0))), Outcome::Ok);
    }

    #[test]
    fn command_results() {
        assert_eq!(Outcome::of_command(&Ok(output(exited(0)))), Outcome::Ok);
        assert_eq!(
            Outcome::of_command(&Ok(output(exited(1)))),
            Outcome::ExitedNonZero
        );
        assert_eq!(
            Outcome::of_command(&Ok(output(killed("INT")))),
            Outcome::Killed
        );
        assert_eq!(
            Outcome::of_command(&Ok(output(ExitStatus::Unknown))),
            Outcome::NoStatus
        );
        // Any value is Ok for other work, even an output whose command failed.
        assert_eq!(Outcome::of_result(&Ok(output(exited(1)))), Outcome::Ok);
        assert_eq!(Outcome::of_result(&Ok(())), Outcome::Ok);
    }

    #[test]
    fn exits_of_every_outcome() {
        let table: Vec<(&str, u8)> = Outcome::ALL
            .iter()
            .map(|o| (o.as_str(), o.exit().code()))
            .collect();
        assert_eq!(
            table,
            [
                ("ok", 0),
                ("exited-nonzero", 1),
                ("killed", 4),
                ("no-status", 4),
                ("timed-out", 4),
                ("unreachable", 3),
                ("host-key-rejected", 3),
                ("auth-failed", 3),
                ("become-failed", 3),
                ("connection-lost", 4),
                ("interrupted", 130),
                ("not-started", 3),
                ("error", 3),
            ]
        );
    }

    #[test]
    fn names_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for o in Outcome::ALL {
            assert!(seen.insert(o.as_str()), "{o} twice");
            assert_eq!(o.as_str().parse::<Outcome>().unwrap(), o);
            assert_eq!(format!(" {o}\n").parse::<Outcome>().unwrap(), o);
            assert_eq!(o.to_string(), o.as_str());
        }
        assert_eq!(seen.len(), Outcome::ALL.len());
        for bad in ["", "OK", "Ok", "timed_out", "exited-non-zero", "killed,ok"] {
            let e = bad.parse::<Outcome>().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}");
            assert!(e.to_string().contains("exited-nonzero"), "{e}");
        }
    }
}
