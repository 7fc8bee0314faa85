//! The fan-out pool: runs work on the pool's hosts at once with a sliding window
//! ([`Pool::concurrency`]), returns exactly one result per host in a [`Report`], emits
//! [`Event`]s as hosts progress, and knows nothing about terminals. The model is
//! Python's `multiprocessing.Pool`: awaiting a run ([`Pool::run`] for a command line,
//! [`Pool::map`] for a closure, [`Pool::put`], [`Pool::get`]) is `map` (results in host
//! order), its `stream()` is `imap_unordered` (results as hosts finish), and an observer
//! plays the part of `apply_async`'s callbacks.
//! Rolling runs (batches, a failure budget, staggered starts, pauses: Ansible's `serial`
//! and `max_fail_percentage`) are options of the pool, applied by every run.

mod outcome;
mod report;
mod rollout;
mod run;
mod target;
mod transfer;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{Stream, StreamExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, ErrorKind, Phase, Result};
use crate::inventory::Host;
use crate::ssh::{Jumps, Output, Session};
use crate::template::Template;

pub use outcome::{Outcome, RunExit};
pub use report::{HostResult, Report, Timings};
pub use rollout::{Batches, FailureBudget, HostCount};
pub use run::{AsyncResult, CommandRun, MapRun, TransferRun};
pub use target::{Target, TargetBuilder};

/// The command line of [`Pool::run`] and [`Sessions::run`]: sent as given, or rendered
/// per host. `&str` and `&String` convert to [`CommandLine::Raw`], `&Template` to
/// [`CommandLine::Template`].
#[derive(Debug, Clone, Copy)]
pub enum CommandLine<'a> {
    /// Sent to every host exactly as given: braces are never rewritten.
    Raw(&'a str),
    /// Rendered for each host by [`Target::render`].
    Template(&'a Template),
}

impl<'a> From<&'a str> for CommandLine<'a> {
    fn from(line: &'a str) -> Self {
        CommandLine::Raw(line)
    }
}

impl<'a> From<&'a String> for CommandLine<'a> {
    fn from(line: &'a String) -> Self {
        CommandLine::Raw(line)
    }
}

impl<'a> From<&'a Template> for CommandLine<'a> {
    fn from(template: &'a Template) -> Self {
        CommandLine::Template(template)
    }
}

/// What the pool reports as hosts progress. Callbacks run on the pool's task: keep them
/// short. Batch numbers count from 1.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a, T> {
    /// The host got a slot and is connecting.
    Connecting {
        /// Position in the target list.
        index: usize,
        /// Inventory name.
        host: &'a str,
    },
    /// Connected and authenticated; the work starts.
    Running {
        /// Position in the target list.
        index: usize,
        /// Inventory name.
        host: &'a str,
    },
    /// A chunk of a command's output, as it arrives (only with
    /// [`CommandRun::observe_output`]).
    Output {
        /// Position in the target list.
        index: usize,
        /// Inventory name.
        host: &'a str,
        /// Which stream the bytes came on.
        stream: crate::ssh::OutputStream,
        /// The bytes, as the server sent them (not split at lines).
        data: &'a [u8],
    },
    /// The host is done (also reported for a host that never started).
    Finished(&'a HostResult<T>),
    /// Where the run stands, after every host that starts or finishes (following that
    /// host's [`Event::Connecting`], [`Event::Running`] or [`Event::Finished`]).
    Tally(Tally),
    /// A transfer ([`Pool::put`], [`Pool::get`]) moved more bytes on one host.
    Progress {
        /// Position in the pool's host list.
        index: usize,
        /// Inventory name.
        host: &'a str,
        /// Bytes moved since this host's previous progress event.
        bytes: u64,
        /// Bytes moved so far on this host.
        done: u64,
        /// Bytes this host's transfer moves in all (as known so far for a tree).
        total: u64,
    },
    /// A batch starts (only with [`Pool::batches`]): its hosts may now start.
    BatchStarted {
        /// This batch's number, from 1.
        batch: usize,
        /// The number of batches of the run.
        batches: usize,
        /// Hosts in this batch.
        hosts: usize,
    },
    /// Every host of a batch has finished (only with [`Pool::batches`]; not reported for
    /// a batch the failure budget or a cancellation cut short). The pause, if any,
    /// follows.
    BatchFinished {
        /// This batch's number, from 1.
        batch: usize,
        /// The number of batches of the run.
        batches: usize,
        /// Hosts in this batch.
        hosts: usize,
        /// Hosts of the whole run so far whose outcome the failure budget counts (0
        /// without a budget).
        failed: usize,
    },
    /// More hosts have failed than [`Pool::max_failures`] allows: no new host or batch
    /// starts; running hosts finish.
    BudgetExceeded {
        /// Failed hosts so far (counted outcomes only).
        failed: usize,
        /// The most failed hosts the budget allows for this run.
        allowed: usize,
        /// The batch in progress (with [`Pool::batches`]).
        batch: Option<usize>,
        /// The number of batches of the run (1 without [`Pool::batches`]).
        batches: usize,
    },
    /// The last event of a run the failure budget stopped, once every host has finished:
    /// the final figures.
    RolloutStopped {
        /// Failed hosts (counted outcomes only), including those that failed after the
        /// budget was exceeded while still running.
        failed: usize,
        /// The most failed hosts the budget allows for this run.
        allowed: usize,
        /// The batch in which the budget was exceeded (with [`Pool::batches`]).
        batch: Option<usize>,
        /// The number of batches of the run (1 without [`Pool::batches`]).
        batches: usize,
        /// Hosts that never started.
        not_started: usize,
    },
}

/// Where a run stands ([`Event::Tally`]): every count is of hosts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Hosts in the run.
    pub total: usize,
    /// Hosts connecting or working.
    pub running: usize,
    /// Hosts finished, those that never started included.
    pub done: usize,
    /// Finished hosts whose outcome is not [`Outcome::Ok`].
    pub failed: usize,
}

/// `events` with an [`Event::Tally`] after each host's start and end, counted once per
/// host by its index (a host on a kept session starts with `Running`, others with
/// `Connecting`; a host that never started only finishes).
fn tallied<'a, T>(total: usize, events: impl Fn(Event<'_, T>) + 'a) -> impl Fn(Event<'_, T>) + 'a {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Waiting,
        Running,
        Done,
    }
    let states = std::cell::RefCell::new(vec![State::Waiting; total]);
    let tally = std::cell::Cell::new(Tally {
        total,
        ..Tally::default()
    });
    move |event: Event<'_, T>| {
        let (index, next, ok) = match &event {
            Event::Connecting { index, .. } | Event::Running { index, .. } => {
                (*index, State::Running, true)
            }
            Event::Finished(r) => (r.index(), State::Done, r.is_ok()),
            _ => return events(event),
        };
        let changed = {
            let mut states = states.borrow_mut();
            match states.get_mut(index) {
                Some(state) if *state != next && *state != State::Done => {
                    let mut t = tally.get();
                    if *state == State::Running {
                        t.running -= 1;
                    }
                    match next {
                        State::Running => t.running += 1,
                        _ => {
                            t.done += 1;
                            t.failed += usize::from(!ok);
                        }
                    }
                    *state = next;
                    tally.set(t);
                    true
                }
                _ => false,
            }
        };
        events(event);
        if changed {
            events(Event::Tally(tally.get()));
        }
    }
}

/// A bounded pool of concurrent host runs.
#[derive(Debug, Clone)]
pub struct Pool {
    /// The hosts, in the order results are reported.
    targets: Arc<[Target]>,
    concurrency: usize,
    max_handshakes_per_server: usize,
    connect_attempts: u32,
    cancel: CancellationToken,
    stop_grace: Duration,
    jumps: Option<Jumps>,
    rollout: rollout::Rollout,
    files_per_host: usize,
    /// Whether the open-file cap was logged (once per pool and its clones).
    cap_logged: Arc<AtomicBool>,
}

/// Sessions kept open across runs on the same hosts, from [`Pool::connect_all`]: the
/// connection reuse of paramiko's `SSHClient` or parallel-ssh's `ParallelSSHClient`.
/// Dropping it drops the connections; [`Sessions::close`] closes them politely.
#[derive(Debug)]
pub struct Sessions {
    /// The pool that connected them: its settings (concurrency, rollout, cancellation)
    /// apply to runs on the sessions.
    pool: Pool,
    hosts: Vec<Connection>,
}

#[derive(Debug)]
struct Connection {
    target: Target,
    session: Result<Arc<Session>>,
    connect: Duration,
}

impl Sessions {
    /// The number of targets, connected or not.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether there are no targets.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Each target, in target order, with its session or the error that kept it from
    /// connecting, and how long connecting took.
    pub fn iter(&self) -> impl Iterator<Item = (&Target, Result<&Arc<Session>, &Error>, Duration)> {
        self.hosts
            .iter()
            .map(|c| (&c.target, c.session.as_ref(), c.connect))
    }

    /// The number of targets that connected.
    pub fn connected(&self) -> usize {
        self.hosts.iter().filter(|c| c.session.is_ok()).count()
    }

    /// Closes every session (each given at most 500 ms to close politely).
    ///
    /// # Cancel safety
    /// Dropping the future drops every session: the connections close without the polite
    /// disconnect message.
    pub async fn close(self) {
        let closing = self
            .hosts
            .iter()
            .filter_map(|c| c.session.as_ref().ok())
            .map(|s| close_politely(s));
        futures_util::future::join_all(closing).await;
    }
}

impl Pool {
    /// The default number of hosts run at once.
    pub const DEFAULT_CONCURRENCY: usize = 64;

    /// A pool over `hosts` (e.g. from [`Inventory::select`](crate::Inventory::select)),
    /// running at most [`Pool::DEFAULT_CONCURRENCY`] at once. Each host's connection
    /// settings are made here, as [`TargetBuilder::new`] makes them: key and certificate
    /// files are read once per distinct file, passwords from their `password_env`
    /// variables, the agent from `IdentityAgent` or `SSH_AUTH_SOCK`. A host whose
    /// settings cannot be made (a missing key file, an unset password variable, an
    /// encrypted key with no passphrase source) is kept: it fails with that error in
    /// every run without connecting, and no other host is affected. [`Pool::try_new`]
    /// fails instead; use [`TargetBuilder`] and [`Pool::from_targets`] for passphrase
    /// prompts, a password for every host or a jump host resolver.
    pub fn new<I>(hosts: I) -> Pool
    where
        I: IntoIterator,
        I::Item: AsRef<Host>,
    {
        let mut builder = TargetBuilder::new();
        Pool::from_targets(
            hosts
                .into_iter()
                .map(|h| builder.build_or_failing(h.as_ref())),
        )
    }

    /// As [`Pool::new`], but the first host whose settings cannot be made is an error,
    /// before anything connects.
    ///
    /// # Errors
    /// As [`TargetBuilder::build`]: the message names the host.
    pub fn try_new<I>(hosts: I) -> Result<Pool>
    where
        I: IntoIterator,
        I::Item: AsRef<Host>,
    {
        let mut builder = TargetBuilder::new();
        let targets = hosts
            .into_iter()
            .map(|h| builder.build(h.as_ref()))
            .collect::<Result<Vec<Target>>>()?;
        Ok(Pool::from_targets(targets))
    }

    /// A pool over targets made by a [`TargetBuilder`], in this order.
    pub fn from_targets(targets: impl IntoIterator<Item = Target>) -> Pool {
        Pool {
            targets: targets.into_iter().collect(),
            concurrency: Pool::DEFAULT_CONCURRENCY,
            max_handshakes_per_server: 8,
            connect_attempts: 3,
            cancel: CancellationToken::new(),
            stop_grace: crate::Command::DEFAULT_KILL_GRACE + Duration::from_secs(4),
            jumps: None,
            rollout: rollout::Rollout::default(),
            files_per_host: 0,
            cap_logged: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Runs at most `n` hosts at once (at least 1; default
    /// [`Pool::DEFAULT_CONCURRENCY`]): the CLI's `--forks`, `multiprocessing.Pool`'s
    /// `processes`. Runs may use fewer ([`Pool::effective_concurrency`]).
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Pool {
        self.concurrency = n.max(1);
        self
    }

    /// The hosts, in the order results are reported.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The number of hosts.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether the pool has no hosts.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// A pool of the one host at `index`, with the same settings and token.
    pub(crate) fn subset_at(&self, index: usize) -> Pool {
        Pool {
            targets: self.targets.get(index).cloned().into_iter().collect(),
            ..self.clone()
        }
    }

    /// A pool with the same settings (and the same cancellation token) over the hosts of
    /// `results`, in this pool's order: e.g. `pool.subset(report.failed())` to retry the
    /// failures. The results must come from a run of this pool (their
    /// [`HostResult::index`] is a position in [`Pool::targets`]); others are ignored.
    #[must_use]
    pub fn subset<'r, T: 'r>(&self, results: impl IntoIterator<Item = &'r HostResult<T>>) -> Pool {
        let mut keep: Vec<usize> = results.into_iter().map(|r| r.index).collect();
        keep.sort_unstable();
        keep.dedup();
        let targets: Vec<Target> = keep
            .into_iter()
            .filter_map(|i| self.targets.get(i).cloned())
            .collect();
        Pool {
            targets: targets.into(),
            ..self.clone()
        }
    }

    /// Runs hosts in successive batches, as Ansible's `serial`: a batch starts when every
    /// host of the previous one has finished (and after [`Pool::pause`]); within a batch
    /// at most [`Pool::concurrency`] hosts run at once. Hosts are taken in the pool's order.
    /// Applies to every run ([`Pool::run`], [`Pool::map`], [`Pool::put`], [`Pool::get`],
    /// and the same on [`Sessions`]), which report [`Event::BatchStarted`] and
    /// [`Event::BatchFinished`]; not to [`Pool::connect_all`]. Default: no batches (one sliding window over every host).
    #[must_use]
    pub fn batches(mut self, batches: Batches) -> Pool {
        self.rollout.batches = Some(batches);
        self
    }

    /// A failure budget: once more hosts than it allows have failed (by default any
    /// outcome but `ok` counts), no new host or batch starts, running hosts finish, and
    /// the rest end [`Outcome::NotStarted`] (exit code 3, [`RunExit::CouldNotRun`]).
    /// Applies with or without [`Pool::batches`] (without, to the sliding window), to the
    /// same runs as they do. A run's results are classified as [`Outcome::of_command`]
    /// does for [`Pool::run`] (a non-zero exit is a failure), as [`Outcome::of_result`]
    /// does for [`Pool::map`], `put` and `get` (an `Err` is a failure, so use
    /// [`Output::check`] in a closure to fail on a non-zero exit). Reports [`Event::BudgetExceeded`] and, at the end,
    /// [`Event::RolloutStopped`].
    #[must_use]
    pub fn max_failures(mut self, budget: FailureBudget) -> Pool {
        self.rollout.budget = Some(budget);
        self
    }

    /// Spaces out host starts: each host starts connecting at least `gap` after the
    /// previous one did (in every run, [`Pool::connect_all`] included), to spread the
    /// load on shared services (LDAP, Vault, a bastion). Default: none.
    #[must_use]
    pub fn stagger(mut self, gap: Duration) -> Pool {
        self.rollout.stagger = Some(gap);
        self
    }

    /// Waits this long after each batch but the last ([`Pool::batches`]); a cancellation
    /// during the pause ends the run at once (the hosts left end
    /// [`Outcome::NotStarted`]). Default: none.
    #[must_use]
    pub fn pause(mut self, pause: Duration) -> Pool {
        self.rollout.pause = Some(pause);
        self
    }

    /// Descriptors each host's work keeps open besides its connection: files it writes or
    /// reads at the same time, processes it runs (default 0). The CLI gives 2 for
    /// `--out-dir` (`HOST.out` and `HOST.err`) and 2 for transfers (a file and a
    /// directory being walked). Used by [`Pool::effective_concurrency`].
    #[must_use]
    pub fn files_per_host(mut self, n: usize) -> Pool {
        self.files_per_host = n;
        self
    }

    /// How many hosts this pool runs at once: [`Pool::concurrency`], capped so that the
    /// hosts running fit in the open-file limit (`ulimit -n`) instead of failing with
    /// "too many open files". Raises the soft limit to the hard limit first (as every
    /// run does), then counts the descriptors open now, keeps 32 spare (log lines, key
    /// and known_hosts files, name lookups), and divides the rest by what one host needs:
    /// 1 for its connection (a jump host's connection counted as the target's), 3 more for
    /// a `ProxyCommand` or a local host's process pipes, plus [`Pool::files_per_host`].
    /// Never below 1. Every run uses this window and logs a warning (`tracing`, once per
    /// pool) when it is below both the concurrency asked and the number of hosts.
    pub fn effective_concurrency(&self) -> usize {
        self.window(self.targets.iter()).forks
    }

    fn window<'a>(&self, targets: impl Iterator<Item = &'a Target>) -> Window {
        raise_open_file_limit();
        let (mut count, mut per_host) = (0, 1);
        for t in targets {
            count += 1;
            per_host = per_host.max(descriptors_of(t));
        }
        let per_host = per_host + self.files_per_host;
        window_size(
            self.concurrency,
            count,
            per_host,
            open_file_limit().map(|limit| (limit, open_descriptors())),
        )
    }

    /// The run's window, with the warning logged once when the limit caps it.
    fn window_logged<'a>(&self, targets: impl Iterator<Item = &'a Target>) -> usize {
        let window = self.window(targets);
        if let Some(c) = window.capped {
            if !self.cap_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "--forks {} capped to {}: the open-file limit is {} (ulimit -n); each host \
                     needs {} and {} are kept for the rest (raise the hard limit to run more \
                     hosts at once)",
                    self.concurrency,
                    window.forks,
                    c.limit,
                    c.per_host,
                    c.reserved
                );
            }
        }
        window.forks
    }

    /// The pool of connections to jump hosts that runs share (default: each run makes its
    /// own, whose
    /// idle connections close when the run ends; a connection stays open as long as a
    /// session uses it). Targets behind the same jump hosts share connections to them;
    /// see [`Jumps`].
    #[must_use]
    pub fn jumps(mut self, jumps: Jumps) -> Pool {
        self.jumps = Some(jumps);
        self
    }

    pub(crate) fn pacing(&self) -> Pacing {
        Pacing {
            slots: Mutex::default(),
            jumps: self.jumps.clone().unwrap_or_default(),
        }
    }

    /// How long work may take to stop after cancellation before the pool drops it and
    /// reports the host [`Outcome::Interrupted`] without its output (default 6 s: a
    /// command's default kill grace, 2 s, plus time to confirm the stop). Commands given
    /// the pool's token stop themselves within their kill grace plus a few seconds; set
    /// this above that when you raise [`Command::kill_grace`](crate::Command::kill_grace).
    #[must_use]
    pub fn stop_grace(mut self, grace: Duration) -> Pool {
        self.stop_grace = grace;
        self
    }

    /// Unauthenticated connections in flight at once to one address and port (default 8,
    /// below sshd's `MaxStartups` of 10, beyond which sshd drops connections at random).
    #[must_use]
    pub fn max_handshakes_per_server(mut self, n: usize) -> Pool {
        self.max_handshakes_per_server = n.max(1);
        self
    }

    /// How many times to try connecting when the server drops the connection before
    /// authentication (default 3). Refused connections, timeouts, host key and
    /// authentication failures are never retried.
    #[must_use]
    pub fn connect_attempts(mut self, n: u32) -> Pool {
        self.connect_attempts = n.max(1);
        self
    }

    /// The token that cancels this pool's runs: no new host starts (they end
    /// [`Outcome::NotStarted`]), connecting hosts stop, and running commands and
    /// transfers (which [`Pool::run`], `put` and `get` give the token) are signalled and
    /// end [`Outcome::Interrupted`]. Work that ignores the token is dropped after
    /// [`Pool::stop_grace`].
    ///
    /// Scope: one token per pool, shared by its clones, by [`Pool::subset`] and by
    /// [`Sessions`] it connected; cancelling is permanent, so every later run of any of
    /// them starts nothing. Give a pool a fresh token with [`Pool::reset_cancel`].
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// This pool with a new, uncancelled token (its clones keep the old one).
    #[must_use]
    pub fn reset_cancel(mut self) -> Pool {
        self.cancel = CancellationToken::new();
        self
    }

    /// The engine behind every run over fresh connections: `work` on each host, results
    /// as hosts finish, each classified by `classify` (for the report and the budget).
    pub(crate) fn stream_classified<'a, T, F, Fut>(
        &'a self,
        work: F,
        events: impl Fn(Event<'_, T>) + 'a,
        classify: fn(&Result<T>) -> Outcome,
    ) -> impl Stream<Item = HostResult<T>> + 'a
    where
        F: Fn(usize, Arc<Session>, Target) -> Fut + 'a,
        Fut: Future<Output = Result<T>> + 'a,
        T: 'a,
    {
        let targets: &'a [Target] = &self.targets;
        let events = tallied(targets.len(), events);
        let forks = self.window_logged(targets.iter());
        let pacing = Arc::new(self.pacing());
        let work = Arc::new(work);
        let events = Arc::new(events);
        let host_events = events.clone();
        let start = move |index: usize, target: &'a Target| {
            let (work, events, pacing) = (work.clone(), host_events.clone(), pacing.clone());
            async move { self.run_one(index, target, &*work, &*events, &pacing).await }
        };
        rollout::Engine::new(
            &self.rollout,
            targets.iter().collect(),
            |t: &&Target| t.name(),
            forks,
            self.cancel.clone(),
            classify,
            start,
            events,
        )
        .into_stream()
    }

    /// Connects every host and keeps the sessions open for several runs on the same
    /// hosts ([`Sessions::run`], [`Sessions::map`]): the handshake and authentication
    /// are paid once. `events` sees each host connect ([`Event::Connecting`]) and finish
    /// connecting ([`Event::Finished`] with the session or the error). Only
    /// [`Pool::stagger`] of the rollout options applies.
    ///
    /// # Cancel safety
    /// Dropping the future drops the connections made so far. Cancelling through
    /// [`Pool::cancel_token`] stops connecting hosts; the rest end
    /// [`Outcome::NotStarted`].
    pub async fn connect_all(&self, events: impl Fn(Event<'_, Arc<Session>>)) -> Sessions {
        let targets: &[Target] = &self.targets;
        let forks = self.window_logged(targets.iter());
        let pacing = self.pacing();
        let events = Arc::new(events);
        let host_events = events.clone();
        let pacing = &pacing;
        // Connecting is not the risky step: only the stagger applies.
        let rollout = rollout::Rollout {
            stagger: self.rollout.stagger,
            ..rollout::Rollout::default()
        };
        let hosts: Vec<&Target> = targets.iter().collect();
        let mut hosts: Vec<HostResult<Arc<Session>>> = rollout::Engine::new(
            &rollout,
            hosts,
            |t: &&Target| t.name(),
            forks,
            self.cancel.clone(),
            Outcome::of_result,
            |index, target| {
                let events = host_events.clone();
                async move {
                    self.connect_one(index, target, pacing, |index, host| {
                        events(Event::Connecting { index, host })
                    })
                    .await
                }
            },
            events,
        )
        .into_stream()
        .collect()
        .await;
        hosts.sort_by_key(|r| r.index);
        Sessions {
            pool: self.clone(),
            hosts: targets
                .iter()
                .zip(hosts)
                .map(|(target, r)| Connection {
                    target: target.clone(),
                    session: r.result,
                    connect: r.timings.connect,
                })
                .collect(),
        }
    }

    /// The engine behind runs on kept sessions: as [`Pool::stream_classified`], without
    /// connecting. A host that did not connect gets its connect error again.
    pub(crate) fn stream_on_classified<'a, T, F, Fut>(
        &'a self,
        sessions: &'a Sessions,
        work: F,
        events: impl Fn(Event<'_, T>) + 'a,
        classify: fn(&Result<T>) -> Outcome,
    ) -> impl Stream<Item = HostResult<T>> + 'a
    where
        F: Fn(usize, Arc<Session>, Target) -> Fut + 'a,
        Fut: Future<Output = Result<T>> + 'a,
        T: 'a,
    {
        // Connected sessions hold their descriptors already; the window bounds what the
        // work opens beside them.
        let forks = self.window_logged(sessions.hosts.iter().map(|c| &c.target));
        let work = Arc::new(work);
        let events = Arc::new(tallied(sessions.hosts.len(), events));
        let host_events = events.clone();
        let hosts: Vec<&'a Connection> = sessions.hosts.iter().collect();
        rollout::Engine::new(
            &self.rollout,
            hosts,
            |c: &&Connection| c.target.name(),
            forks,
            self.cancel.clone(),
            classify,
            move |index, connection: &'a Connection| {
                let (work, events) = (work.clone(), host_events.clone());
                async move {
                    let target = &connection.target;
                    match &connection.session {
                        _ if self.cancel.is_cancelled() => {
                            host_result(index, target, Err(not_started()), Timings::default())
                        }
                        Err(e) => {
                            host_result(index, target, Err(e.replicate()), Timings::default())
                        }
                        Ok(session) => {
                            self.work_one(index, target, session, &*work, &*events)
                                .await
                        }
                    }
                }
            },
            events,
        )
        .into_stream()
    }

    pub(crate) async fn command_work(
        &self,
        session: Arc<Session>,
        target: Target,
        command_line: CommandLine<'_>,
        configure: &impl Fn(&Target, &mut crate::Command<'_>),
        output: Option<&impl Fn(crate::ssh::OutputStream, &[u8])>,
    ) -> Result<Output> {
        let line = match command_line {
            CommandLine::Raw(line) => line.to_owned(),
            CommandLine::Template(template) => target.render(template)?,
        };
        let mut command = session.raw_command(line);
        if let Some(t) = target.command_timeout {
            command.timeout(t);
        }
        command.cancel_on(self.cancel.clone());
        if let Some(b) = &target.sudo {
            command.sudo(b.clone());
        }
        configure(&target, &mut command);
        let Some(output) = output else {
            return command.output().await;
        };
        // Chunks cross from the channel's task to this one (the observer is not Send):
        // each is copied once, and delivered in order before the result.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let earlier = command.take_on_data();
        command.on_data(Arc::new(move |stream, data: &[u8]| {
            if let Some(f) = &earlier {
                f(stream, data);
            }
            let _ = tx.send((stream, bytes::Bytes::copy_from_slice(data)));
        }));
        let run = command.output();
        let mut run = std::pin::pin!(run);
        loop {
            tokio::select! {
                biased;
                Some((stream, data)) = rx.recv() => output(stream, &data),
                result = &mut run => {
                    while let Ok((stream, data)) = rx.try_recv() {
                        output(stream, &data);
                    }
                    return result;
                }
            }
        }
    }

    pub(crate) async fn run_one<T, F, Fut>(
        &self,
        index: usize,
        target: &Target,
        work: &F,
        events: &impl Fn(Event<'_, T>),
        pacing: &Pacing,
    ) -> HostResult<T>
    where
        F: Fn(usize, Arc<Session>, Target) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let started = Instant::now();
        let connected = self
            .connect_one(index, target, pacing, |index, host| {
                events(Event::Connecting { index, host })
            })
            .await;
        let (session, connect) = match connected.result {
            Ok(s) => (s, connected.timings.connect),
            Err(e) => {
                return HostResult::new(index, connected.host, Err(e), connected.timings);
            }
        };
        let mut result = self.work_one(index, target, &session, work, events).await;
        close_politely(&session).await;
        result.timings.connect = connect;
        result.timings.total = started.elapsed();
        result
    }

    /// Connects one target (or makes its local session), unless the run was cancelled;
    /// the result's timings hold the time it took.
    async fn connect_one(
        &self,
        index: usize,
        target: &Target,
        pacing: &Pacing,
        connecting: impl Fn(usize, &str),
    ) -> HostResult<Arc<Session>> {
        let started = Instant::now();
        let session = if self.cancel.is_cancelled() {
            Err(not_started())
        } else if let Some(e) = &target.failing {
            // Its settings could not be made (Pool::new): it fails alone, unconnected.
            Err(e.replicate())
        } else {
            connecting(index, target.name());
            if target.is_local() {
                Ok(Session::local(target.name().to_owned()))
            } else {
                tokio::select! {
                    s = self.connect(target, pacing) => s,
                    _ = self.cancel.cancelled() => Err(Error::new(ErrorKind::Interrupted, "interrupted while connecting")),
                }
            }
        };
        let connect = started.elapsed();
        let timings = Timings {
            connect,
            run: Duration::ZERO,
            total: connect,
        };
        host_result(index, target, session.map(Arc::new), timings)
    }

    /// Runs `work` on a connected session; `timings.connect` is left zero.
    async fn work_one<T, F, Fut>(
        &self,
        index: usize,
        target: &Target,
        session: &Arc<Session>,
        work: &F,
        events: &impl Fn(Event<'_, T>),
    ) -> HostResult<T>
    where
        F: Fn(usize, Arc<Session>, Target) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        events(Event::Running {
            index,
            host: target.name(),
        });
        let started = Instant::now();
        let grace = self.stop_grace;
        let result = tokio::select! {
            r = work(index, session.clone(), target.clone()) => r,
            _ = async { self.cancel.cancelled().await; tokio::time::sleep(grace).await } => {
                Err(Error::new(ErrorKind::Interrupted, "interrupted"))
            }
        };
        let run = started.elapsed();
        let timings = Timings {
            connect: Duration::ZERO,
            run,
            total: run,
        };
        host_result(index, target, result, timings)
    }

    /// Connects with pacing per server and retries of drops before authentication.
    async fn connect(&self, target: &Target, pacing: &Pacing) -> Result<Session> {
        let deadline = Instant::now() + target_connect_budget(target);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let slot = pacing.slot(target, self.max_handshakes_per_server);
            let _permit = slot.acquire().await;
            let result = Session::connect_with(&target.connect, &pacing.jumps).await;
            drop(_permit);
            match result {
                Err(e) if attempt < self.connect_attempts && retryable(&e) => {
                    let backoff = Duration::from_millis(100 * (1 << attempt.min(6)) + jitter_ms());
                    if Instant::now() + backoff >= deadline {
                        return Err(e);
                    }
                    tracing::debug!("{}: retrying after {e:#}", target.name());
                    tokio::time::sleep(backoff).await;
                }
                other => return other,
            }
        }
    }
}

/// Closing politely is best effort (500 ms at most); the connection is dropped either way.
async fn close_politely(session: &Session) {
    let _ = tokio::time::timeout(Duration::from_millis(500), session.close()).await;
}

fn not_started() -> Error {
    Error::new(
        ErrorKind::NotStarted,
        "not started: the run was interrupted",
    )
}

fn host_result<T>(
    index: usize,
    target: &Target,
    result: Result<T>,
    timings: Timings,
) -> HostResult<T> {
    let name = target.name();
    HostResult::new(index, name, result.map_err(|e| e.with_host(name)), timings)
}

fn target_connect_budget(target: &Target) -> Duration {
    // Retries stay within the time a single attempt may take.
    target.connect.total_timeout()
}

/// Drops before authentication: sshd's MaxStartups, a reset, a server restarting. Not
/// protocol errors: a peer that is not an SSH server, or one with no algorithm in common,
/// answers the same way every time.
fn retryable(e: &Error) -> bool {
    e.kind() == ErrorKind::Disconnected && e.phase() == Some(Phase::Handshake)
}

fn jitter_ms() -> u64 {
    u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
            % 100,
    )
}

/// Per-server limits on connections in the handshake, and the run's connections to jump
/// hosts.
pub(crate) struct Pacing {
    slots: Mutex<HashMap<(String, u16), Arc<Semaphore>>>,
    jumps: Jumps,
}

impl Pacing {
    fn slot(&self, target: &Target, per_server: usize) -> Arc<Semaphore> {
        let key = (target.host.hostname().to_owned(), target.host.port());
        match self.slots.lock() {
            Ok(mut map) => map
                .entry(key)
                .or_insert_with(|| Arc::new(Semaphore::new(per_server)))
                .clone(),
            Err(_) => Arc::new(Semaphore::new(per_server)),
        }
    }
}

/// Descriptors kept free for the rest of the process while hosts run: log lines, key and
/// known_hosts files being read, name lookups, the agent socket.
const RESERVED_DESCRIPTORS: usize = 32;

/// The hosts a run may hold at once, and why fewer than asked.
struct Window {
    forks: usize,
    capped: Option<Capped>,
}

struct Capped {
    limit: usize,
    per_host: usize,
    reserved: usize,
}

/// The window for `forks` asked, `count` hosts needing `per_host` descriptors each,
/// under `limit` (the soft open-file limit and the descriptors open now; `None`: no
/// limit).
fn window_size(
    forks: usize,
    count: usize,
    per_host: usize,
    limit: Option<(usize, usize)>,
) -> Window {
    let uncapped = Window {
        forks,
        capped: None,
    };
    let Some((limit, open)) = limit else {
        return uncapped;
    };
    let reserved = open.saturating_add(RESERVED_DESCRIPTORS);
    let cap = (limit.saturating_sub(reserved) / per_host.max(1)).max(1);
    if cap >= forks.min(count) {
        return uncapped;
    }
    Window {
        forks: cap,
        capped: Some(Capped {
            limit,
            per_host,
            reserved,
        }),
    }
}

/// Descriptors one host's connection needs: its socket, or the pipes of the process that
/// carries it (`ProxyCommand`) or runs its commands (local hosts).
fn descriptors_of(target: &Target) -> usize {
    if target.is_local() || target.connect.proxy_command_line().is_some() {
        4
    } else {
        1
    }
}

/// The soft open-file limit, or `None` when there is none.
fn open_file_limit() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit with a valid pointer to a local struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    usize::try_from(limit.rlim_cur).ok()
}

/// Descriptors open in this process now (an estimate of 16 where /proc is missing).
fn open_descriptors() -> usize {
    match std::fs::read_dir("/proc/self/fd") {
        // The directory being read is one of them.
        Ok(entries) => entries.count().saturating_sub(1),
        Err(_) => 16,
    }
}

/// Raises the soft open-file limit to the hard limit, once.
fn raise_open_file_limit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
                && limit.rlim_cur < limit.rlim_max
            {
                limit.rlim_cur = limit.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_fits_the_open_file_limit() {
        // The case: -f 5000 under ulimit -n 1024, 10 descriptors open.
        let w = window_size(5000, 10_000, 1, Some((1024, 10)));
        assert_eq!(w.forks, 1024 - 10 - RESERVED_DESCRIPTORS);
        let c = w.capped.unwrap();
        assert_eq!((c.limit, c.per_host, c.reserved), (1024, 1, 42));
        // --out-dir: three descriptors a host.
        assert_eq!(window_size(5000, 10_000, 3, Some((1024, 10))).forks, 327);
    }

    #[test]
    fn the_window_is_not_capped_when_it_fits() {
        // Fewer hosts than the limit holds, whatever -f says.
        let w = window_size(5000, 100, 1, Some((1024, 10)));
        assert_eq!(w.forks, 5000);
        assert!(w.capped.is_none());
        assert!(window_size(64, 10_000, 1, Some((1024, 10)))
            .capped
            .is_none());
        assert!(window_size(5000, 10_000, 1, None).capped.is_none());
    }

    #[test]
    fn the_window_is_never_empty() {
        let w = window_size(500, 500, 4, Some((20, 30)));
        assert_eq!(w.forks, 1);
        assert!(w.capped.is_some());
        assert_eq!(window_size(500, 500, 0, Some((100, 0))).forks, 68);
    }
}
