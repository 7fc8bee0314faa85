//! One report type for every fan-out: [`Report`] holds one [`HostResult`] per host in host
//! order, whatever ran (a command line, a closure, a `put` or a `get`), and answers the
//! questions a script asks next: which hosts failed, how many ended each way, what the
//! process should exit with.

use std::fmt;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

use super::{Outcome, RunExit};

/// Timings of one host, from the moment its slot opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// Connecting, host key check and authentication (zero for local hosts).
    pub connect: Duration,
    /// The work itself.
    pub run: Duration,
    /// Everything.
    pub total: Duration,
}

/// The one result of one host.
#[derive(Debug)]
pub struct HostResult<T> {
    /// The host's position in the pool's host list.
    pub index: usize,
    /// The host's inventory name.
    pub host: String,
    /// What the work returned, or why there is no result.
    pub result: Result<T>,
    /// How long each part took.
    pub timings: Timings,
    /// How the host's run ended, as the run classified it (a command's exit status
    /// counts; for a closure, `Err` is a failure).
    pub(crate) outcome: Outcome,
}

impl<T> HostResult<T> {
    /// The host's inventory name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The host's position in the pool's host list.
    pub fn index(&self) -> usize {
        self.index
    }

    /// How the host's run ended: for a command, from its exit status or error
    /// ([`Outcome::of_command`]); for a closure, a `put` or a `get`, `Ok` or the error's
    /// outcome ([`Outcome::of_result`]).
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// Whether the outcome is [`Outcome::Ok`].
    pub fn is_ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }

    /// The same result with its value replaced by `f(value)` (the outcome is kept): e.g.
    /// `r.map(|_| ())` to drop a command's output once it has been printed.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> HostResult<U> {
        HostResult {
            index: self.index,
            host: self.host,
            result: self.result.map(f),
            timings: self.timings,
            outcome: self.outcome,
        }
    }

    /// A result built by hand (for a host run outside a pool, or a test), classified as
    /// [`Outcome::of_result`] does.
    pub fn new(index: usize, host: impl Into<String>, result: Result<T>, timings: Timings) -> Self {
        let outcome = Outcome::of_result(&result);
        HostResult {
            index,
            host: host.into(),
            result,
            timings,
            outcome,
        }
    }
}

impl HostResult<crate::ssh::Output> {
    /// A command's result built by hand, classified as [`Outcome::of_command`] does (a
    /// non-zero exit is a failure).
    pub fn from_command(
        index: usize,
        host: impl Into<String>,
        result: Result<crate::ssh::Output>,
        timings: Timings,
    ) -> Self {
        let outcome = Outcome::of_command(&result);
        HostResult {
            index,
            host: host.into(),
            result,
            timings,
            outcome,
        }
    }
}

impl<T> fmt::Display for HostResult<T> {
    /// `host: outcome`, and the error's message when there is one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.result {
            Err(e) => write!(f, "{}: {} ({})", self.host, self.outcome, e.message()),
            Ok(_) => write!(f, "{}: {}", self.host, self.outcome),
        }
    }
}

/// The results of one fan-out, one per host, in the pool's host order (as
/// `multiprocessing.Pool.map` returns them). Dereferences to a slice of [`HostResult`]s,
/// so `report.iter()`, `report.len()` and `report[0]` work.
#[derive(Debug)]
pub struct Report<T> {
    results: Vec<HostResult<T>>,
}

impl<T> Report<T> {
    /// A report of `results`, sorted into host order.
    pub fn new(mut results: Vec<HostResult<T>>) -> Report<T> {
        results.sort_by_key(|r| r.index);
        Report { results }
    }

    /// The hosts whose outcome is [`Outcome::Ok`], in host order.
    pub fn succeeded(&self) -> impl Iterator<Item = &HostResult<T>> {
        self.results.iter().filter(|r| r.is_ok())
    }

    /// The hosts whose outcome is anything but [`Outcome::Ok`], in host order.
    pub fn failed(&self) -> impl Iterator<Item = &HostResult<T>> {
        self.results.iter().filter(|r| !r.is_ok())
    }

    /// Whether every host ended [`Outcome::Ok`] (true for no hosts).
    pub fn all_ok(&self) -> bool {
        self.results.iter().all(HostResult::is_ok)
    }

    /// How many hosts ended each way, for the outcomes that occurred, in
    /// [`Outcome::ALL`] order (the order summaries list them).
    pub fn counts(&self) -> Vec<(Outcome, usize)> {
        Outcome::ALL
            .into_iter()
            .map(|o| (o, self.results.iter().filter(|r| r.outcome == o).count()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// How many hosts ended `outcome`.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.results.iter().filter(|r| r.outcome == outcome).count()
    }

    /// The process exit code for this run: the one merge rule of [`RunExit::of`] over
    /// every host's outcome (0 when every host is ok; see [`RunExit`] for the order).
    /// A caller that cancelled the run merges [`RunExit::Interrupted`] itself.
    pub fn exit_code(&self) -> RunExit {
        RunExit::of(self.results.iter().map(|r| r.outcome))
    }

    /// `Ok(self)` when every host ended [`Outcome::Ok`], else an error naming the
    /// failed hosts (up to 10, then "and N more") with their outcomes. The error's kind
    /// is [`ErrorKind::CommandFailed`] when every failure is a command that exited
    /// non-zero, else the kind of the first failed host's error.
    ///
    /// # Errors
    /// As described; the report is dropped (look at [`Report::failed`] first to keep it).
    pub fn check(self) -> Result<Report<T>> {
        if self.all_ok() {
            return Ok(self);
        }
        let failed: Vec<&HostResult<T>> = self.failed().collect();
        let kind = failed
            .iter()
            .find_map(|r| r.result.as_ref().err().map(Error::kind))
            .unwrap_or(ErrorKind::CommandFailed);
        let mut names: Vec<String> = failed
            .iter()
            .take(10)
            .map(|r| format!("{} ({})", r.host, r.outcome))
            .collect();
        if failed.len() > 10 {
            names.push(format!("and {} more", failed.len() - 10));
        }
        let message = format!(
            "{} of {} host{} failed: {}",
            failed.len(),
            self.results.len(),
            if self.results.len() == 1 { "" } else { "s" },
            names.join(", ")
        );
        Err(Error::new(kind, message))
    }

    /// The results, in host order.
    pub fn into_results(self) -> Vec<HostResult<T>> {
        self.results
    }
}

impl<T> std::ops::Deref for Report<T> {
    type Target = [HostResult<T>];

    fn deref(&self) -> &[HostResult<T>] {
        &self.results
    }
}

impl<T> IntoIterator for Report<T> {
    type Item = HostResult<T>;
    type IntoIter = std::vec::IntoIter<HostResult<T>>;

    fn into_iter(self) -> Self::IntoIter {
        self.results.into_iter()
    }
}

impl<'r, T> IntoIterator for &'r Report<T> {
    type Item = &'r HostResult<T>;
    type IntoIter = std::slice::Iter<'r, HostResult<T>>;

    fn into_iter(self) -> Self::IntoIter {
        self.results.iter()
    }
}

impl<T> FromIterator<HostResult<T>> for Report<T> {
    /// Collects results in any order (e.g. from [`CommandRun::stream`]) into host order.
    ///
    /// [`CommandRun::stream`]: super::CommandRun::stream
    fn from_iter<I: IntoIterator<Item = HostResult<T>>>(iter: I) -> Self {
        Report::new(iter.into_iter().collect())
    }
}

impl<T> Default for Report<T> {
    fn default() -> Self {
        Report {
            results: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(index: usize, host: &str, outcome: Outcome) -> HostResult<()> {
        let result = match outcome {
            Outcome::Ok | Outcome::ExitedNonZero => Ok(()),
            Outcome::Unreachable => Err(Error::new(ErrorKind::Connect, "refused")),
            _ => Err(Error::new(ErrorKind::Timeout, "late")),
        };
        HostResult {
            index,
            host: host.to_owned(),
            result,
            timings: Timings::default(),
            outcome,
        }
    }

    #[test]
    fn a_report_is_in_host_order_and_counts_each_outcome() {
        let report: Report<()> = vec![
            result(2, "c", Outcome::Unreachable),
            result(0, "a", Outcome::Ok),
            result(1, "b", Outcome::ExitedNonZero),
            result(3, "d", Outcome::Ok),
        ]
        .into_iter()
        .collect();
        let hosts: Vec<&str> = report.iter().map(HostResult::host).collect();
        assert_eq!(hosts, ["a", "b", "c", "d"]);
        let failed: Vec<&str> = report.failed().map(HostResult::host).collect();
        assert_eq!(failed, ["b", "c"]);
        assert_eq!(report.succeeded().count(), 2);
        assert_eq!(
            report.counts(),
            [
                (Outcome::Ok, 2),
                (Outcome::ExitedNonZero, 1),
                (Outcome::Unreachable, 1)
            ]
        );
        // exited non-zero (1) and could not run (3): 3 is the more severe.
        assert_eq!(report.exit_code(), RunExit::CouldNotRun);
        let e = report.check().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Connect);
        assert_eq!(
            e.message(),
            "2 of 4 hosts failed: b (exited-nonzero), c (unreachable)"
        );
    }

    #[test]
    fn check_passes_an_all_ok_report_and_folds_long_lists() {
        let ok: Report<()> = (0..3).map(|i| result(i, "h", Outcome::Ok)).collect();
        assert_eq!(ok.exit_code(), RunExit::Success);
        assert_eq!(ok.check().unwrap().len(), 3);
        let empty: Report<()> = Report::default();
        assert!(empty.all_ok());
        assert_eq!(empty.exit_code(), RunExit::Success);
        let bad: Report<()> = (0..13)
            .map(|i| result(i, &format!("h{i:02}"), Outcome::ExitedNonZero))
            .collect();
        let e = bad.check().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::CommandFailed);
        assert!(e
            .message()
            .starts_with("13 of 13 hosts failed: h00 (exited-nonzero),"));
        assert!(e.message().ends_with("h09 (exited-nonzero), and 3 more"));
    }

    #[test]
    fn map_keeps_the_outcome() {
        let r = result(0, "a", Outcome::ExitedNonZero).map(|()| 5u8);
        assert_eq!(r.outcome(), Outcome::ExitedNonZero);
        assert_eq!(r.result.unwrap(), 5);
        assert_eq!(
            result(1, "b", Outcome::TimedOut).to_string(),
            "b: timed-out (late)"
        );
    }
}
