//! Rolling runs: hosts in successive batches (Ansible's `serial`), a failure budget that
//! stops new starts (`max_fail_percentage`, but of the selected hosts), spaced-out starts
//! and a pause between batches. This module owns the option types and the engine that
//! decides when each host starts; the pool supplies what a host's run is.

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, Stream, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{HostResult, Outcome, Timings};
use crate::error::{Error, ErrorKind, Result};

/// A number of hosts, given as a count (`5`) or as a percentage of the selected hosts
/// (`25%`, `0.5%`; at most four decimals), rounded down: a batch size (`--batch`) or a
/// failure budget (`--max-fail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HostCount(Count);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Count {
    Hosts(usize),
    /// Parts per million of the selected hosts (100% is 1,000,000), exact.
    PartsPerMillion(u64),
}

const MILLION: u64 = 1_000_000;

impl HostCount {
    /// Exactly `n` hosts.
    pub fn hosts(n: usize) -> HostCount {
        HostCount(Count::Hosts(n))
    }

    /// `percent` of the selected hosts, rounded down.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] unless `percent` is from 0 to 100.
    pub fn percent(percent: f64) -> Result<HostCount> {
        if !(0.0..=100.0).contains(&percent) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{percent}% is not a percentage from 0 to 100"),
            ));
        }
        // In range, so the conversion neither saturates nor loses more than rounding.
        let ppm = (percent * 10_000.0).round() as u64;
        Ok(HostCount(Count::PartsPerMillion(ppm)))
    }

    /// The number of hosts this stands for among `total` selected hosts: a count as it
    /// is, a percentage rounded down (`0.5%` of 10 hosts is 0).
    pub fn of(self, total: usize) -> usize {
        match self.0 {
            Count::Hosts(n) => n,
            Count::PartsPerMillion(ppm) => {
                let hosts = u128::from(ppm) * total as u128 / u128::from(MILLION);
                usize::try_from(hosts).unwrap_or(usize::MAX)
            }
        }
    }

    /// Whether this is zero hosts or 0%.
    pub fn is_zero(self) -> bool {
        matches!(self.0, Count::Hosts(0) | Count::PartsPerMillion(0))
    }

    fn exceeds_all(self) -> bool {
        matches!(self.0, Count::PartsPerMillion(ppm) if ppm > MILLION)
    }
}

impl FromStr for HostCount {
    type Err = Error;

    /// `5`, `25%`, `0.5%`. Negative numbers, fractions of hosts, more than 100% and
    /// anything else are [`ErrorKind::InvalidInput`].
    fn from_str(text: &str) -> Result<HostCount> {
        let t = text.trim();
        let invalid = || {
            Error::new(
                ErrorKind::InvalidInput,
                format!("{text:?} is not a number of hosts or a percentage (5, 25%)"),
            )
        };
        if let Some(number) = t.strip_suffix('%') {
            let ppm = parse_ppm(number.trim_end()).ok_or_else(invalid)?;
            let count = HostCount(Count::PartsPerMillion(ppm));
            if count.exceeds_all() {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("{text:?} is more than 100%"),
                ));
            }
            return Ok(count);
        }
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        t.parse().map(HostCount::hosts).map_err(|_| invalid())
    }
}

/// `12.5` as 125,000 parts per million: digits, an optional point and at most four
/// decimals, exactly.
fn parse_ppm(number: &str) -> Option<u64> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 4 {
        return None;
    }
    if number.contains('.') && fraction.is_empty() {
        return None;
    }
    // More than 100% is refused by the caller; a long number is refused here.
    let whole: u64 = whole.parse().ok().filter(|w| *w <= 1000)?;
    let mut scaled = whole * 10_000;
    let mut unit = 1_000;
    for b in fraction.bytes() {
        scaled += u64::from(b - b'0') * unit;
        unit /= 10;
    }
    Some(scaled)
}

impl fmt::Display for HostCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Count::Hosts(n) => write!(f, "{n}"),
            Count::PartsPerMillion(ppm) => {
                let (whole, fraction) = (ppm / 10_000, ppm % 10_000);
                if fraction == 0 {
                    write!(f, "{whole}%")
                } else {
                    let decimals = format!("{fraction:04}");
                    write!(f, "{whole}.{}%", decimals.trim_end_matches('0'))
                }
            }
        }
    }
}

/// Batch sizes, as Ansible's `serial`: each value is one batch; the last one repeats
/// until the hosts run out. `1,5,25%` on 100 hosts is batches of 1, 5, 25, 25, 25 and 19.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batches(Vec<HostCount>);

impl Batches {
    /// Batches of these sizes (the last repeating).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for an empty list or a size of 0 hosts or 0%.
    pub fn new(sizes: impl IntoIterator<Item = HostCount>) -> Result<Batches> {
        let sizes: Vec<HostCount> = sizes.into_iter().collect();
        if sizes.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "no batch size given (e.g. 5, 25% or 1,5,25%)",
            ));
        }
        if let Some(zero) = sizes.iter().find(|s| s.is_zero()) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("a batch of {zero} hosts never ends: give at least 1 host or more than 0%"),
            ));
        }
        Ok(Batches(sizes))
    }

    /// Batches of `n` hosts (at least 1).
    pub fn of(n: usize) -> Batches {
        Batches(vec![HostCount::hosts(n.max(1))])
    }

    /// The sizes as given.
    pub fn sizes(&self) -> &[HostCount] {
        &self.0
    }

    /// The size of each batch for `total` selected hosts, in order: percentages are of
    /// `total`, rounded down but at least 1; the last value repeats; the last batch holds
    /// what is left. Their sum is `total` (no batch for no hosts).
    pub fn split(&self, total: usize) -> Vec<usize> {
        let mut sizes = Vec::new();
        let mut left = total;
        let mut given = self.0.iter();
        let mut size = 1;
        while left > 0 {
            if let Some(next) = given.next() {
                size = next.of(total).max(1);
            }
            let this = size.min(left);
            sizes.push(this);
            left -= this;
        }
        sizes
    }
}

impl FromStr for Batches {
    type Err = Error;

    /// A comma-separated list of sizes: `5`, `25%`, `1,5,25%`.
    fn from_str(text: &str) -> Result<Batches> {
        let sizes = text
            .split(',')
            .map(str::parse)
            .collect::<Result<Vec<HostCount>>>()?;
        Batches::new(sizes)
    }
}

impl fmt::Display for Batches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, size) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{size}")?;
        }
        Ok(())
    }
}

/// How many hosts may fail before a run stops starting hosts, and which outcomes count
/// as failed (default: every outcome but [`Outcome::Ok`]). Once **more** than the limit
/// have failed, no new host or batch starts; running hosts finish; the rest end
/// [`Outcome::NotStarted`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureBudget {
    limit: HostCount,
    counted: Vec<Outcome>,
}

impl FailureBudget {
    /// At most `limit` failed hosts (a count, or a percentage of the selected hosts
    /// rounded down), counting every outcome but `ok`.
    pub fn new(limit: HostCount) -> FailureBudget {
        FailureBudget {
            limit,
            counted: Outcome::ALL
                .into_iter()
                .filter(|o| !matches!(o, Outcome::Ok | Outcome::NotStarted))
                .collect(),
        }
    }

    /// No failure allowed: the first failed host stops the run (`--fail-fast`).
    pub fn fail_fast() -> FailureBudget {
        FailureBudget::new(HostCount::hosts(0))
    }

    /// Counts only these outcomes as failed (an `unreachable`-only budget lets commands
    /// that exit non-zero pass, for instance).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for an empty list, `ok` or `not-started` (a host that
    /// did not start cannot have failed).
    pub fn counting(
        mut self,
        outcomes: impl IntoIterator<Item = Outcome>,
    ) -> Result<FailureBudget> {
        let mut counted: Vec<Outcome> = outcomes.into_iter().collect();
        if let Some(o) = counted
            .iter()
            .find(|o| matches!(o, Outcome::Ok | Outcome::NotStarted))
        {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{o} cannot count as a failure"),
            ));
        }
        if counted.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "no outcome to count as a failure",
            ));
        }
        counted.sort();
        counted.dedup();
        self.counted = counted;
        Ok(self)
    }

    /// The limit as given.
    pub fn limit(&self) -> HostCount {
        self.limit
    }

    /// The most hosts that may fail among `total` selected hosts without stopping.
    pub fn allowed(&self, total: usize) -> usize {
        self.limit.of(total)
    }

    /// The outcomes counted as failed, in [`Outcome::ALL`] order.
    pub fn counted(&self) -> &[Outcome] {
        &self.counted
    }

    /// Whether `outcome` counts as failed.
    pub fn counts(&self, outcome: Outcome) -> bool {
        self.counted.contains(&outcome)
    }
}

/// What the pool's rollout options (`Pool::batches`, `max_failures`, `stagger`, `pause`)
/// mean for one run.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rollout {
    pub(crate) batches: Option<Batches>,
    pub(crate) budget: Option<FailureBudget>,
    pub(crate) stagger: Option<Duration>,
    pub(crate) pause: Option<Duration>,
}

/// Why the hosts left did not start.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Cancelled,
    Budget { failed: usize, allowed: usize },
}

/// The engine of one run: starts hosts (through `start`) in batches, at most `forks` at
/// once, spaced by the stagger, until the hosts run out, the run is cancelled or the
/// budget is exceeded; reports every event but `Connecting`/`Running` (the hosts' own);
/// yields one result per host.
pub(crate) struct Engine<'a, H, T, Fut, S, E> {
    hosts: std::vec::IntoIter<(usize, H)>,
    name: fn(&H) -> &str,
    start: S,
    events: Arc<E>,
    classify: fn(&Result<T>) -> Outcome,
    cancel: CancellationToken,
    forks: usize,
    sizes: Vec<usize>,
    explicit_batches: bool,
    budget: Option<(FailureBudget, usize)>,
    stagger: Option<Duration>,
    pause: Option<Duration>,
    /// 0 before the first batch; then the 1-based number of the batch in progress.
    batch: usize,
    /// Hosts of the current batch not started yet.
    batch_left: usize,
    last_start: Option<Instant>,
    in_flight: FuturesUnordered<Fut>,
    failed: usize,
    stop: Option<Stop>,
    stopped_in: usize,
    not_started: usize,
    done: bool,
    _lifetime: std::marker::PhantomData<&'a ()>,
}

impl<'a, H, T, Fut, S, E> Engine<'a, H, T, Fut, S, E>
where
    H: 'a,
    T: 'a,
    Fut: Future<Output = HostResult<T>> + 'a,
    S: Fn(usize, H) -> Fut + 'a,
    E: Fn(super::Event<'_, T>) + 'a,
{
    #[expect(clippy::too_many_arguments, reason = "one private constructor")]
    pub(crate) fn new(
        rollout: &Rollout,
        hosts: Vec<H>,
        name: fn(&H) -> &str,
        forks: usize,
        cancel: CancellationToken,
        classify: fn(&Result<T>) -> Outcome,
        start: S,
        events: Arc<E>,
    ) -> Self {
        let total = hosts.len();
        let sizes = match &rollout.batches {
            Some(b) => b.split(total),
            None => vec![total],
        };
        Engine {
            hosts: hosts
                .into_iter()
                .enumerate()
                .collect::<Vec<_>>()
                .into_iter(),
            name,
            start,
            events,
            classify,
            cancel,
            forks: forks.max(1),
            sizes,
            explicit_batches: rollout.batches.is_some(),
            budget: rollout.budget.clone().map(|b| {
                let allowed = b.allowed(total);
                (b, allowed)
            }),
            stagger: rollout.stagger.filter(|d| !d.is_zero()),
            pause: rollout.pause.filter(|d| !d.is_zero()),
            batch: 0,
            batch_left: 0,
            last_start: None,
            in_flight: FuturesUnordered::new(),
            failed: 0,
            stop: None,
            stopped_in: 0,
            not_started: 0,
            done: false,
            _lifetime: std::marker::PhantomData,
        }
    }

    /// The results as a stream.
    pub(crate) fn into_stream(self) -> impl Stream<Item = HostResult<T>> + 'a {
        futures_util::stream::unfold(self, |mut engine| async move {
            let next = engine.next().await;
            next.map(|r| (r, engine))
        })
    }

    fn stopping(&mut self) -> bool {
        if self.stop.is_none() && self.cancel.is_cancelled() {
            self.stop = Some(Stop::Cancelled);
        }
        self.stop.is_some()
    }

    fn batches(&self) -> usize {
        self.sizes.len()
    }

    async fn next(&mut self) -> Option<HostResult<T>> {
        loop {
            if self.done {
                return None;
            }
            if self.stopping() {
                if let Some((index, host)) = self.hosts.next() {
                    return Some(self.never_started(index, &host));
                }
                if let Some(r) = self.in_flight.next().await {
                    return Some(self.finished(r));
                }
                self.done = true;
                if let Some(Stop::Budget { allowed, .. }) = self.stop {
                    (self.events)(super::Event::RolloutStopped {
                        failed: self.failed,
                        allowed,
                        batch: self.explicit_batches.then_some(self.stopped_in),
                        batches: self.batches(),
                        not_started: self.not_started,
                    });
                }
                return None;
            }
            if self.batch_left == 0 {
                // The batch in progress (if any) must end before the next one starts.
                if let Some(r) = self.in_flight.next().await {
                    return Some(self.finished(r));
                }
                if self.batch > 0 && self.explicit_batches {
                    (self.events)(super::Event::BatchFinished {
                        batch: self.batch,
                        batches: self.batches(),
                        hosts: self.sizes.get(self.batch - 1).copied().unwrap_or(0),
                        failed: self.failed,
                    });
                }
                let Some(&size) = self.sizes.get(self.batch) else {
                    self.done = true;
                    return None;
                };
                if self.batch > 0 {
                    if let Some(pause) = self.pause {
                        tokio::select! {
                            () = tokio::time::sleep(pause) => {}
                            () = self.cancel.cancelled() => continue,
                        }
                    }
                }
                self.batch += 1;
                self.batch_left = size;
                if self.explicit_batches {
                    (self.events)(super::Event::BatchStarted {
                        batch: self.batch,
                        batches: self.batches(),
                        hosts: size,
                    });
                }
                continue;
            }
            if self.in_flight.len() >= self.forks {
                if let Some(r) = self.in_flight.next().await {
                    return Some(self.finished(r));
                }
                continue;
            }
            // Stagger: this start waits for its turn; results keep flowing meanwhile.
            if let (Some(gap), Some(last)) = (self.stagger, self.last_start) {
                let at = last + gap;
                if Instant::now() < at {
                    tokio::select! {
                        Some(r) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                            return Some(self.finished(r));
                        }
                        () = tokio::time::sleep_until(at) => {}
                        () = self.cancel.cancelled() => {}
                    }
                    continue;
                }
            }
            let Some((index, host)) = self.hosts.next() else {
                self.batch_left = 0;
                continue;
            };
            self.batch_left -= 1;
            self.last_start = Some(Instant::now());
            self.in_flight.push((self.start)(index, host));
        }
    }

    /// A host's result: reported, and counted against the budget.
    fn finished(&mut self, mut result: HostResult<T>) -> HostResult<T> {
        let outcome = (self.classify)(&result.result);
        result.outcome = outcome;
        (self.events)(super::Event::Finished(&result));
        let allowed = match &self.budget {
            Some((budget, allowed)) if budget.counts(outcome) => *allowed,
            _ => return result,
        };
        self.failed += 1;
        if self.failed > allowed && self.stop.is_none() && !self.cancel.is_cancelled() {
            self.stop = Some(Stop::Budget {
                failed: self.failed,
                allowed,
            });
            self.stopped_in = self.batch;
            (self.events)(super::Event::BudgetExceeded {
                failed: self.failed,
                allowed,
                batch: self.explicit_batches.then_some(self.batch),
                batches: self.batches(),
            });
        }
        result
    }

    /// The result of a host that never started, reported.
    fn never_started(&mut self, index: usize, host: &H) -> HostResult<T> {
        let message = match self.stop {
            Some(Stop::Budget { failed, allowed }) => format!(
                "not started: the rollout stopped when {failed} hosts had failed (at most {allowed} allowed)"
            ),
            _ => "not started: the run was interrupted".to_owned(),
        };
        self.not_started += 1;
        let name = (self.name)(host);
        let result = HostResult {
            index,
            host: name.to_owned(),
            result: Err(Error::new(ErrorKind::NotStarted, message).with_host(name)),
            timings: Timings::default(),
            outcome: Outcome::NotStarted,
        };
        (self.events)(super::Event::Finished(&result));
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(text: &str) -> HostCount {
        text.parse().unwrap()
    }

    #[test]
    fn counts_and_percentages_parse_exactly() {
        assert_eq!(count("5").of(100), 5);
        assert_eq!(count("25%").of(100), 25);
        assert_eq!(count("29%").of(100), 29);
        assert_eq!(count("0.5%").of(10), 0);
        assert_eq!(count("0.5%").of(1000), 5);
        assert_eq!(count("12.5%").of(8), 1);
        assert_eq!(count("100%").of(7), 7);
        assert_eq!(count(" 33.3333% ").of(3), 0);
        assert_eq!(count("0%").of(50), 0);
        assert_eq!(count("12.50%").to_string(), "12.5%");
        assert_eq!(count("007").to_string(), "7");
        for bad in [
            "",
            "%",
            "-1",
            "-1%",
            "1.5",
            "150%",
            "100.0001%",
            "101%",
            "1e3",
            "abc",
            "5 %x",
            "0.00001%",
            "1.%",
            ".5%",
            "99999999999999999999999",
            "1000000000%",
            "+3",
        ] {
            assert!(bad.parse::<HostCount>().is_err(), "{bad:?} parsed");
        }
        assert!(HostCount::percent(100.5).is_err());
        assert!(HostCount::percent(f64::NAN).is_err());
        assert_eq!(HostCount::percent(50.0).unwrap(), count("50%"));
    }

    fn split(list: &str, total: usize) -> Vec<usize> {
        list.parse::<Batches>().unwrap().split(total)
    }

    #[test]
    fn batch_sizes_follow_ansible_serial() {
        assert_eq!(split("1,5,25%", 100), [1, 5, 25, 25, 25, 19]);
        assert_eq!(split("1,2,50%", 8), [1, 2, 4, 1]);
        assert_eq!(split("2", 5), [2, 2, 1]);
        // One host: one batch, whatever the list.
        assert_eq!(split("50%", 1), [1]);
        assert_eq!(split("1,5,25%", 1), [1]);
        // A percentage rounds down, but a batch holds at least one host.
        assert_eq!(split("0.5%", 10), [1; 10]);
        assert_eq!(split("30%", 10), [3, 3, 3, 1]);
        // A list longer than the hosts: the hosts run out first.
        assert_eq!(split("1,1,1,1,1,1", 3), [1, 1, 1]);
        assert_eq!(split("10,20", 4), [4]);
        assert_eq!(split("100%", 7), [7]);
        assert!(split("5", 0).is_empty());
    }

    #[test]
    fn bad_batch_lists_are_refused() {
        for bad in ["0", "0%", "150%", "1,,2", "", "1,0", "a", "-2", "1;2"] {
            assert!(bad.parse::<Batches>().is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            "1, 5 ,25%".parse::<Batches>().unwrap().to_string(),
            "1,5,25%"
        );
    }

    #[test]
    fn a_budget_counts_what_it_names() {
        let budget = FailureBudget::new(count("10%"));
        assert_eq!(budget.allowed(25), 2);
        assert!(budget.counts(Outcome::ExitedNonZero));
        assert!(!budget.counts(Outcome::Ok));
        assert!(!budget.counts(Outcome::NotStarted));
        let only = budget
            .clone()
            .counting([
                Outcome::Unreachable,
                Outcome::AuthFailed,
                Outcome::Unreachable,
            ])
            .unwrap();
        assert_eq!(only.counted(), [Outcome::Unreachable, Outcome::AuthFailed]);
        assert!(!only.counts(Outcome::ExitedNonZero));
        assert!(budget.clone().counting([Outcome::Ok]).is_err());
        assert!(budget.clone().counting([]).is_err());
        assert_eq!(FailureBudget::fail_fast().allowed(1000), 0);
    }
}
