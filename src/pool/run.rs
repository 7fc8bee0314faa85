//! The runs a pool starts: [`CommandRun`] (a command line on every host), [`MapRun`] (a
//! closure on every host) and [`TransferRun`] (`put` and `get`). Each is a builder: set
//! what you need, then `.await` it for a [`Report`] in host order, or call `stream()` for
//! results as hosts finish (`multiprocessing.Pool`'s `imap_unordered`).

use std::future::{Future, IntoFuture};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use futures_util::stream::{LocalBoxStream, StreamExt};

use crate::error::Result;
use crate::ssh::{Command, Output, Session, TransferOptions, TransferStats};

use super::{CommandLine, Event, HostResult, Outcome, Pool, Report, Sessions, Target};

/// Sees every event of a run (see [`Event`]); called on the run's task: keep it short.
type Observer<'a, T> = Box<dyn Fn(Event<'_, T>) + 'a>;

/// Adjusts each host's [`Command`] before it runs.
type Configure<'a> = Box<dyn Fn(&Target, &mut Command<'_>) + 'a>;

/// Where a run's hosts come from: new connections, or sessions kept open.
#[derive(Clone, Copy)]
enum Over<'a> {
    Connect(&'a Pool),
    Sessions(&'a Sessions),
}

impl<'a> Over<'a> {
    fn pool(self) -> &'a Pool {
        match self {
            Over::Connect(pool) => pool,
            Over::Sessions(sessions) => &sessions.pool,
        }
    }

    /// Runs `work` on every host of the run; results as hosts finish.
    fn stream<T, F, Fut>(
        self,
        work: F,
        observer: Option<Observer<'a, T>>,
        classify: fn(&Result<T>) -> Outcome,
    ) -> LocalBoxStream<'a, HostResult<T>>
    where
        F: Fn(usize, Arc<Session>, Target) -> Fut + 'a,
        Fut: Future<Output = Result<T>> + 'a,
        T: 'a,
    {
        let events = move |event: Event<'_, T>| {
            if let Some(observer) = &observer {
                observer(event);
            }
        };
        match self {
            Over::Connect(pool) => pool.stream_classified(work, events, classify).boxed_local(),
            Over::Sessions(sessions) => sessions
                .pool
                .stream_on_classified(sessions, work, events, classify)
                .boxed_local(),
        }
    }
}

/// A command line on every host: [`Pool::run`] or [`Sessions::run`]. `.await` it for a
/// [`Report`] of [`Output`]s in host order; the outcome of each host is its exit status
/// ([`Outcome::of_command`]), so a non-zero exit is a failure without being an `Err`.
///
/// Each host's command gets the host's command deadline (inventory `command_timeout`),
/// its `become` settings, and the pool's cancellation token; [`CommandRun::configure`]
/// adjusts it further (stdin, a pty, output callbacks).
///
/// # Cancel safety
/// Dropping the future (or the stream) stops launching hosts and drops every
/// connection; running commands are signalled `TERM` then `KILL` by their drop guard,
/// but no result is reported for them. Cancel through [`Pool::cancel_token`] to stop
/// cleanly and get a result for every host.
#[must_use = "a run does nothing until it is awaited or streamed"]
pub struct CommandRun<'a> {
    over: Over<'a>,
    line: CommandLine<'a>,
    configure: Option<Configure<'a>>,
    observer: Option<Observer<'a, Output>>,
    observe_output: bool,
}

impl<'a> CommandRun<'a> {
    /// Calls `configure` on each host's [`Command`] before it runs (after the pool's own
    /// settings: deadline, sudo, cancellation).
    pub fn configure(mut self, configure: impl Fn(&Target, &mut Command<'_>) + 'a) -> Self {
        self.configure = Some(Box::new(configure));
        self
    }

    /// Calls `observer` with every [`Event`] of the run: hosts connecting, running and
    /// finishing, batches, the failure budget.
    pub fn observe(mut self, observer: impl Fn(Event<'_, Output>) + 'a) -> Self {
        self.observer = Some(Box::new(observer));
        self
    }

    /// Also calls the observer with [`Event::Output`] for every chunk of output, as it
    /// arrives, before the host's [`Event::Finished`]. Costs a copy of every chunk (they
    /// cross from the connection's task to the run's); [`CommandRun::configure`] with
    /// [`Command::on_data`] sees them without a copy, on the connection's task. The
    /// result's [`Output`] still holds the output unless the command was given
    /// [`Command::max_output`] 0.
    pub fn observe_output(mut self) -> Self {
        self.observe_output = true;
        self
    }

    /// The results as hosts finish (`imap_unordered`): a caller done with a result can
    /// drop it, so memory holds the output of the hosts running, not of every host.
    ///
    /// # Cancel safety
    /// As the run's: dropping the stream drops every host's work.
    pub fn stream(self) -> LocalBoxStream<'a, HostResult<Output>> {
        let CommandRun {
            over,
            line,
            configure,
            observer,
            observe_output,
        } = self;
        let pool = over.pool();
        let configure = Rc::new(configure);
        let observer: Option<Rc<Observer<'a, Output>>> = observer.map(Rc::new);
        let sink = observer.clone().filter(|_| observe_output);
        over.stream(
            move |index, session, target| {
                let configure = configure.clone();
                let sink = sink.clone();
                async move {
                    let configure = |t: &Target, c: &mut Command<'_>| {
                        if let Some(f) = &*configure {
                            f(t, c);
                        }
                    };
                    let host = target.name().to_owned();
                    let output = |stream, data: &[u8]| {
                        if let Some(sink) = &sink {
                            sink(Event::Output {
                                index,
                                host: &host,
                                stream,
                                data,
                            });
                        }
                    };
                    let output = sink.is_some().then_some(&output);
                    pool.command_work(session, target, line, &configure, output)
                        .await
                }
            },
            observer.map(|o| -> Observer<'a, Output> { Box::new(move |e| o(e)) }),
            Outcome::of_command,
        )
    }
}

impl<'a> IntoFuture for CommandRun<'a> {
    type Output = Report<Output>;
    type IntoFuture = LocalBoxFuture<'a, Report<Output>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            self.stream()
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect()
        })
    }
}

/// A closure on every host: [`Pool::map`] or [`Sessions::map`]. `.await` it for a
/// [`Report`] of what the closure returned, in host order; a host whose closure returns
/// `Err` (or cannot connect) fails with that error's outcome ([`Outcome::of_result`]).
///
/// # Cancel safety
/// Dropping the future (or the stream) stops launching hosts and drops every host's
/// work where it stands. Cancel through [`Pool::cancel_token`] to stop cleanly: no new
/// host starts, and work still running after [`Pool::stop_grace`] is dropped and
/// reported [`Outcome::Interrupted`].
#[must_use = "a run does nothing until it is awaited or streamed"]
pub struct MapRun<'a, T, F> {
    over: Over<'a>,
    work: F,
    observer: Option<Observer<'a, T>>,
}

impl<'a, T, F, Fut> MapRun<'a, T, F>
where
    F: Fn(Arc<Session>, Target) -> Fut + 'a,
    Fut: Future<Output = Result<T>> + 'a,
    T: 'a,
{
    /// Calls `observer` with every [`Event`] of the run.
    pub fn observe(mut self, observer: impl Fn(Event<'_, T>) + 'a) -> Self {
        self.observer = Some(Box::new(observer));
        self
    }

    /// The results as hosts finish (`imap_unordered`).
    ///
    /// # Cancel safety
    /// As the run's.
    pub fn stream(self) -> LocalBoxStream<'a, HostResult<T>> {
        let work = self.work;
        self.over.stream(
            move |_, session, target| work(session, target),
            self.observer,
            Outcome::of_result,
        )
    }
}

impl<'a, T, F, Fut> IntoFuture for MapRun<'a, T, F>
where
    F: Fn(Arc<Session>, Target) -> Fut + 'a,
    Fut: Future<Output = Result<T>> + 'a,
    T: 'a,
{
    type Output = Report<T>;
    type IntoFuture = LocalBoxFuture<'a, Report<T>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            self.stream()
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect()
        })
    }
}

/// What a [`TransferRun`] moves.
#[derive(Debug, Clone)]
pub(crate) enum Direction {
    /// A local file or tree to the same remote path on every host.
    Put { local: PathBuf, remote: String },
    /// A remote file or tree from every host into a local directory per host.
    Get { remote: String, local_dir: String },
}

/// `put` or `get` on every host: [`Pool::put`], [`Pool::get`]. `.await` it for
/// `Ok(report)` of [`TransferStats`] in host order, or `Err` for a local problem found
/// before anything connects (see [`TransferRun::check`]).
///
/// Paths are templates rendered per host (`{{name}}`, `{{host}}`, inventory vars; see
/// [`Template::parse_path`](crate::Template::parse_path)) unless
/// [`TransferRun::raw_paths`] is set. A download goes to `LOCAL_DIR/<host name>/`, or to
/// `LOCAL_DIR` rendered for the host when it has placeholders. Each host's transfer has
/// the host's command deadline (inventory `command_timeout`): past it the transfer is
/// stopped, its temporary file removed, and the host ends [`Outcome::TimedOut`]. Hosts
/// with `become` settings transfer through sudo (single files only).
///
/// # Cancel safety
/// Cancel through [`Pool::cancel_token`]: each transfer stops, removes its temporary
/// file and reports [`Outcome::Interrupted`]. Dropping the future drops the transfers
/// where they stand, without results: each removes the temporary file of the file it
/// was moving (from a spawned task, so possibly after the drop), as [`Sftp::put_with`]
/// and [`Sftp::get_with`] do; files already completed stay.
///
/// [`Sftp::put_with`]: crate::Sftp::put_with
/// [`Sftp::get_with`]: crate::Sftp::get_with
#[must_use = "a run does nothing until it is awaited"]
pub struct TransferRun<'a> {
    pool: &'a Pool,
    direction: Direction,
    options: TransferOptions,
    raw_paths: bool,
    observer: Option<Observer<'a, TransferStats>>,
}

impl<'a> TransferRun<'a> {
    pub(crate) fn new(pool: &'a Pool, direction: Direction) -> TransferRun<'a> {
        TransferRun {
            pool,
            direction,
            options: TransferOptions::new(),
            raw_paths: false,
            observer: None,
        }
    }

    /// The transfer's options (recursion, mode, preserve, fsync, in place). Its progress
    /// callback and cancellation token are the run's own: use
    /// [`TransferRun::observe`] for progress ([`Event::Progress`]).
    pub fn options(mut self, options: TransferOptions) -> Self {
        self.options = options;
        self
    }

    /// Takes both paths as given, without rendering placeholders (the CLI's `--raw`).
    pub fn raw_paths(mut self, raw: bool) -> Self {
        self.raw_paths = raw;
        self
    }

    /// Calls `observer` with every [`Event`] of the run, [`Event::Progress`] included.
    pub fn observe(mut self, observer: impl Fn(Event<'_, TransferStats>) + 'a) -> Self {
        self.observer = Some(Box::new(observer));
        self
    }

    /// The local problems that can be seen before connecting: for `put`, a missing
    /// source, a directory without recursion, a device, FIFO or socket, names that are
    /// not UTF-8; for `get`, a local directory that cannot be created or written; for
    /// both, a placeholder a host does not define, and what sudo transfers refuse
    /// (`in_place`, recursion). Returns what one host will be sent (`put`), or `None`.
    ///
    /// # Errors
    /// As described, naming the path or the host.
    pub fn check(&self) -> Result<Option<TransferStats>> {
        super::transfer::check(self.pool, &self.direction, &self.options, self.raw_paths)
    }
}

impl<'a> IntoFuture for TransferRun<'a> {
    type Output = Result<Report<TransferStats>>;
    type IntoFuture = LocalBoxFuture<'a, Result<Report<TransferStats>>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            self.check()?;
            let TransferRun {
                pool,
                direction,
                options,
                raw_paths,
                observer,
            } = self;
            let observer: Option<Rc<Observer<'a, TransferStats>>> = observer.map(Rc::new);
            let direction = &direction;
            let options = &options;
            let events = observer.clone();
            let results: Report<TransferStats> = Over::Connect(pool)
                .stream(
                    move |index, session, target| {
                        let observer = observer.clone();
                        async move {
                            super::transfer::one_host(
                                pool,
                                index,
                                session,
                                target,
                                direction,
                                options,
                                raw_paths,
                                observer.as_deref().map(|o| &**o),
                            )
                            .await
                        }
                    },
                    events.map(|o| -> Observer<'a, TransferStats> { Box::new(move |e| o(e)) }),
                    Outcome::of_result,
                )
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect();
            Ok(results)
        })
    }
}

impl Pool {
    /// Runs `command` on every host: a shell line sent as given (`&str`, `&String`) or a
    /// [`Template`](crate::Template) rendered per host. `.await` the run for a
    /// [`Report`]; see [`CommandRun`] for options, events and cancel safety.
    ///
    /// ```no_run
    /// # async fn f(pool: rexec::Pool) {
    /// let report = pool.run("systemctl is-active nginx").await;
    /// for r in report.failed() {
    ///     eprintln!("{}: {}", r.host(), r.outcome());
    /// }
    /// # }
    /// ```
    pub fn run<'a>(&'a self, command: impl Into<CommandLine<'a>>) -> CommandRun<'a> {
        CommandRun {
            over: Over::Connect(self),
            line: command.into(),
            configure: None,
            observer: None,
            observe_output: false,
        }
    }

    /// Runs `work` on every host with its connected [`Session`] (a local one for
    /// `transport = "local"`) and its [`Target`]: `multiprocessing.Pool.map` over the
    /// hosts. See [`MapRun`].
    pub fn map<'a, T, F, Fut>(&'a self, work: F) -> MapRun<'a, T, F>
    where
        F: Fn(Arc<Session>, Target) -> Fut + 'a,
        Fut: Future<Output = Result<T>> + 'a,
        T: 'a,
    {
        MapRun {
            over: Over::Connect(self),
            work,
            observer: None,
        }
    }

    /// Uploads `local` (a file, or a tree with [`TransferOptions::recursive`]) to
    /// `remote` on every host, over SFTP, atomically (see [`Sftp::put_with`]). See
    /// [`TransferRun`].
    ///
    /// [`Sftp::put_with`]: crate::Sftp::put_with
    pub fn put(&self, local: impl Into<PathBuf>, remote: impl Into<String>) -> TransferRun<'_> {
        TransferRun::new(
            self,
            Direction::Put {
                local: local.into(),
                remote: remote.into(),
            },
        )
    }

    /// Downloads `remote` from every host into `local_dir/<host name>/` (or `local_dir`
    /// rendered per host when it has placeholders), atomically (see
    /// [`Sftp::get_with`]). See [`TransferRun`].
    ///
    /// [`Sftp::get_with`]: crate::Sftp::get_with
    pub fn get(&self, remote: impl Into<String>, local_dir: impl Into<String>) -> TransferRun<'_> {
        TransferRun::new(
            self,
            Direction::Get {
                remote: remote.into(),
                local_dir: local_dir.into(),
            },
        )
    }
}

impl Sessions {
    /// As [`Pool::run`] on the kept sessions: no connecting, the sessions stay open. A
    /// host that did not connect gets its connect error again; a session the server has
    /// closed since fails with [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected).
    /// Timings have a zero `connect`.
    pub fn run<'a>(&'a self, command: impl Into<CommandLine<'a>>) -> CommandRun<'a> {
        CommandRun {
            over: Over::Sessions(self),
            line: command.into(),
            configure: None,
            observer: None,
            observe_output: false,
        }
    }

    /// As [`Pool::map`] on the kept sessions.
    pub fn map<'a, T, F, Fut>(&'a self, work: F) -> MapRun<'a, T, F>
    where
        F: Fn(Arc<Session>, Target) -> Fut + 'a,
        Fut: Future<Output = Result<T>> + 'a,
        T: 'a,
    {
        MapRun {
            over: Over::Sessions(self),
            work,
            observer: None,
        }
    }
}

/// One host's command started by [`Pool::apply_async`]: it runs on its own tokio task
/// whatever the caller does, like the `AsyncResult` of Python's
/// `multiprocessing.Pool.apply_async`.
#[derive(Debug)]
pub struct AsyncResult {
    host: String,
    task: Option<tokio::task::JoinHandle<HostResult<Output>>>,
    result: Option<HostResult<Output>>,
}

impl AsyncResult {
    /// Whether the host has finished (its result is ready).
    pub fn ready(&self) -> bool {
        self.result.is_some() || self.task.as_ref().is_some_and(|t| t.is_finished())
    }

    /// Waits up to `timeout` for the result. Past it, the command keeps running (as in
    /// Python, `get(timeout)` does not cancel): call `get` again, or cancel through
    /// [`Pool::cancel_token`].
    ///
    /// # Errors
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) naming the host when the result
    /// is not ready in time (the run itself failing is not an error here: see the
    /// result's outcome).
    ///
    /// # Cancel safety
    /// Dropping the future leaves the command running; the result stays available.
    pub async fn get(&mut self, timeout: std::time::Duration) -> Result<&HostResult<Output>> {
        if self.result.is_none() {
            if let Some(task) = self.task.as_mut() {
                let joined = tokio::time::timeout(timeout, task).await.map_err(|_| {
                    crate::Error::new(
                        crate::ErrorKind::Timeout,
                        format!(
                            "no result within {:.2}s: the command is still running",
                            timeout.as_secs_f64()
                        ),
                    )
                    .with_host(&self.host)
                })?;
                self.task = None;
                self.result = Some(task_result(&self.host, joined));
            }
        }
        Ok(self.result.get_or_insert_with(|| lost(&self.host)))
    }

    /// Waits for the result, however long the command takes (within its own deadline).
    ///
    /// # Cancel safety
    /// As [`AsyncResult::get`].
    pub async fn wait(&mut self) -> &HostResult<Output> {
        if self.result.is_none() {
            if let Some(task) = self.task.as_mut() {
                let joined = task.await;
                self.task = None;
                self.result = Some(task_result(&self.host, joined));
            }
        }
        self.result.get_or_insert_with(|| lost(&self.host))
    }

    /// Whether the host finished and its outcome is [`Outcome::Ok`]; `None` before it
    /// has finished (Python raises `ValueError` there).
    pub fn successful(&self) -> Option<bool> {
        self.result.as_ref().map(HostResult::is_ok)
    }
}

/// The host's result from its task's end (a task that panicked or was aborted gives an
/// `interrupted` result naming the host).
fn task_result(
    host: &str,
    joined: std::result::Result<HostResult<Output>, tokio::task::JoinError>,
) -> HostResult<Output> {
    joined.unwrap_or_else(|e| {
        HostResult::from_command(
            0,
            host,
            Err(crate::Error::new(
                crate::ErrorKind::Interrupted,
                format!("the task running the command ended: {e}"),
            )
            .with_host(host)),
            super::Timings::default(),
        )
    })
}

/// A result for a host whose task is gone without one (not expected: the task is taken
/// only once its result is stored).
fn lost(host: &str) -> HostResult<Output> {
    HostResult::from_command(
        0,
        host,
        Err(crate::Error::new(crate::ErrorKind::Interrupted, "no result").with_host(host)),
        super::Timings::default(),
    )
}

impl Pool {
    /// Starts `command` (a shell line) on the host named `host` on its own tokio task and
    /// returns at once: `apply_async(..).get(timeout)` as in `multiprocessing.Pool`. The
    /// host's command deadline, `become` settings and the pool's cancellation token apply;
    /// the pool's concurrency and rollout options do not (it is one host).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) when no host of the
    /// pool has that name. Must be called within a tokio runtime.
    pub fn apply_async(&self, host: &str, command: impl Into<String>) -> Result<AsyncResult> {
        let index = self
            .targets()
            .iter()
            .position(|t| t.name() == host)
            .ok_or_else(|| {
                crate::Error::new(
                    crate::ErrorKind::InvalidInput,
                    format!("no host named {host:?} in this pool"),
                )
            })?;
        let pool = self.subset_at(index);
        let line = command.into();
        let task = tokio::spawn(async move {
            let pacing = pool.pacing();
            let line = line.as_str();
            let work = |_, session, target| {
                pool.command_work(
                    session,
                    target,
                    line.into(),
                    &|_, _| {},
                    None::<&fn(_, &[u8])>,
                )
            };
            let mut result = match pool.targets().first() {
                Some(target) => pool.run_one(index, target, &work, &|_| {}, &pacing).await,
                None => HostResult::new(
                    index,
                    "",
                    Err(crate::Error::new(crate::ErrorKind::Interrupted, "no host")),
                    super::Timings::default(),
                ),
            };
            result.outcome = Outcome::of_command(&result.result);
            result
        });
        Ok(AsyncResult {
            host: host.to_owned(),
            task: Some(task),
            result: None,
        })
    }
}
