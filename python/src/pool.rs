//! Many hosts: `Pool` with `multiprocessing.Pool`'s verbs over a `rexec::Pool`, the
//! iterators of `imap` / `imap_unordered`, and `AsyncResult`.
//!
//! `map`, `put` and `get` drive the run on the calling thread. The iterators need the
//! run to outlive the call that starts it, and a run is a local (not `Send`) stream, so
//! each iterator's run is driven by a thread of its own and its results come through a
//! channel. `apply_async` uses rexec's `AsyncResult` on the runtime.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::errors::{self, raise, ErrorData};
use crate::results::{seconds, HostResult, Report, ResultData};
use crate::session::{command_line, parse_policy};
use crate::{runtime, wait, Interrupt};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Closed,
    Terminated,
}

/// A pool of hosts, used as `multiprocessing.Pool` is: `map`, `imap`,
/// `imap_unordered`, `apply_async`, `close`, `join`, `terminate`, plus `put` / `get`.
///
/// `Pool(hosts, pattern=None, processes=64, user=None, key_filename=None,
/// known_hosts=None, policy=None, connect_timeout=None, timeout=None)`: `hosts` is a list
/// of names (`"web1"`, `"deploy@db1:2222"`, ranges such as `"node[1-4]"`), or the path
/// of a `hosts.toml` inventory with an optional selection `pattern` (`"web:!web03"`).
/// `processes` hosts run at once. The keyword settings override the inventory's for
/// every host; `timeout` is each command's deadline in seconds.
#[pyclass(module = "rexec._rexec", frozen)]
pub struct Pool {
    pool: Mutex<rexec::Pool>,
    state: Mutex<State>,
    pending: Mutex<Vec<watch::Receiver<Option<Arc<ResultData>>>>>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A run's configuration of each host's command: the per-call deadline.
fn with_timeout(run: rexec::CommandRun<'_>, timeout: Option<Duration>) -> rexec::CommandRun<'_> {
    match timeout {
        Some(t) => run.configure(move |_, command| {
            command.timeout(t);
        }),
        None => run,
    }
}

#[pymethods]
impl Pool {
    #[new]
    #[pyo3(signature = (hosts, pattern=None, processes=64, user=None, key_filename=None,
        known_hosts=None, policy=None, connect_timeout=None, timeout=None))]
    #[expect(
        clippy::too_many_arguments,
        reason = "multiprocessing.Pool's and paramiko's keywords"
    )]
    fn new(
        py: Python<'_>,
        hosts: Bound<'_, PyAny>,
        pattern: Option<&str>,
        processes: usize,
        user: Option<String>,
        key_filename: Option<Bound<'_, PyAny>>,
        known_hosts: Option<PathBuf>,
        policy: Option<&str>,
        connect_timeout: Option<f64>,
        timeout: Option<f64>,
    ) -> PyResult<Pool> {
        let mut overrides = rexec::HostSettings {
            user,
            known_hosts,
            connect_timeout: seconds(connect_timeout, "connect_timeout")?,
            command_timeout: seconds(timeout, "timeout")?,
            ..rexec::HostSettings::default()
        };
        if let Some(keys) = key_filename {
            overrides.identity_files = Some(match keys.extract::<PathBuf>() {
                Ok(one) => vec![one],
                Err(_) => keys.extract()?,
            });
        }
        if let Some(p) = policy {
            overrides.host_key_policy = Some(parse_policy(p)?);
        }
        let is_path = hosts.is_instance_of::<PyString>()
            || hosts.is_instance(&py.import("os")?.getattr("PathLike")?)?;
        let inventory = if is_path {
            let path: PathBuf = hosts.extract()?;
            rexec::Inventory::from_file(&path, &overrides).map_err(|e| raise(py, &e))?
        } else {
            if pattern.is_some() {
                return Err(PyValueError::new_err(
                    "pattern selects hosts of an inventory file; give a path, not a list",
                ));
            }
            let names: Vec<String> = hosts.extract().map_err(|_| {
                PyTypeError::new_err("hosts must be a list of host names or an inventory path")
            })?;
            if let Some(bad) = names.iter().find(|n| n.contains(',')) {
                return Err(PyValueError::new_err(format!(
                    "host name {bad:?} contains a comma: give one host per list item"
                )));
            }
            rexec::Inventory::from_host_list(&names.join(","), &overrides)
                .map_err(|e| raise(py, &e))?
        };
        let selected = inventory
            .select(pattern.unwrap_or("all"))
            .map_err(|e| raise(py, &e))?;
        let pool = rexec::Pool::new(selected).concurrency(processes);
        Ok(Pool {
            pool: Mutex::new(pool),
            state: Mutex::new(State::Running),
            pending: Mutex::new(Vec::new()),
        })
    }

    /// The hosts' names, in the order results are reported.
    #[getter]
    fn hosts(&self) -> Vec<String> {
        locked(&self.pool)
            .targets()
            .iter()
            .map(|t| t.name().to_owned())
            .collect()
    }

    fn __len__(&self) -> usize {
        locked(&self.pool).len()
    }

    /// Runs `cmd` on every host and returns a `Report`: one `HostResult` per host, in
    /// host order. A non-zero exit is a result, not an exception. `timeout` (seconds)
    /// bounds each host's command. Ctrl-C stops the remote commands, waits until every
    /// host has its result, then raises `KeyboardInterrupt` with the `Report` in its
    /// `report` attribute.
    #[pyo3(signature = (cmd, timeout=None))]
    fn map(&self, py: Python<'_>, cmd: Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<Report> {
        self.check_running()?;
        let line = command_line(&cmd)?;
        let timeout = seconds(timeout, "timeout")?;
        let pool = self.current();
        let token = pool.cancel_token();
        let (results, raised) = wait(py, Interrupt::CancelAndFinish(&token), || async {
            with_timeout(pool.run(line.as_str()), timeout)
                .await
                .into_results()
                .into_iter()
                .map(ResultData::of_command_owned)
                .collect::<Vec<_>>()
        })?;
        let report = Report::new(py, results.ok_or_else(errors::no_value)?)?;
        self.finish(py, report, raised)
    }

    /// An iterator over the hosts' `HostResult`s in host order (each as soon as it and
    /// every host before it have finished).
    #[pyo3(signature = (cmd, timeout=None))]
    fn imap(
        slf: Bound<'_, Self>,
        cmd: Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<ResultIterator> {
        Pool::iterate(slf, &cmd, timeout, true)
    }

    /// An iterator over the hosts' `HostResult`s as the hosts finish.
    #[pyo3(signature = (cmd, timeout=None))]
    fn imap_unordered(
        slf: Bound<'_, Self>,
        cmd: Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<ResultIterator> {
        Pool::iterate(slf, &cmd, timeout, false)
    }

    /// Starts `cmd` on the host named `host` (may be left out when the pool has one
    /// host) and returns an `AsyncResult` at once. When the host finishes, `callback` is
    /// called with its `HostResult` if the command ran, or `error_callback` with the
    /// exception if no result was obtained (from a helper thread).
    #[pyo3(signature = (cmd, host=None, callback=None, error_callback=None))]
    fn apply_async(
        &self,
        py: Python<'_>,
        cmd: Bound<'_, PyAny>,
        host: Option<String>,
        callback: Option<Py<PyAny>>,
        error_callback: Option<Py<PyAny>>,
    ) -> PyResult<AsyncResult> {
        self.check_running()?;
        let line = command_line(&cmd)?;
        let pool = self.current();
        let host = match host {
            Some(h) => h,
            None => match pool.targets() {
                [only] => only.name().to_owned(),
                _ => {
                    return Err(PyValueError::new_err(
                        "apply_async needs host= when the pool has more than one host",
                    ))
                }
            },
        };
        let rt = runtime()?;
        let mut started = {
            let _in_runtime = rt.enter();
            pool.apply_async(&host, line).map_err(|e| raise(py, &e))?
        };
        let (tx, rx) = watch::channel(None);
        locked(&self.pending).push(rx.clone());
        rt.spawn(async move {
            let data = Arc::new(ResultData::of_command(started.wait().await));
            if callback.is_some() || error_callback.is_some() {
                let for_callback = Arc::clone(&data);
                // A callback may call the package again, which blocks on the runtime:
                // never from one of its worker threads.
                let _ = tokio::task::spawn_blocking(move || {
                    Python::attach(|py| call_back(py, &for_callback, callback, error_callback));
                })
                .await;
            }
            tx.send_replace(Some(data));
        });
        Ok(AsyncResult { host, rx })
    }

    /// Uploads local `local` to `remote` on every host (`recursive=True` for a
    /// directory tree); returns a `Report` whose results carry `transferred`.
    #[pyo3(signature = (local, remote, recursive=false))]
    fn put(
        &self,
        py: Python<'_>,
        local: PathBuf,
        remote: String,
        recursive: bool,
    ) -> PyResult<Report> {
        self.transfer(py, recursive, move |pool| pool.put(local, remote))
    }

    /// Downloads `remote` from every host into `local_dir/<host>/` (`local_dir` may hold
    /// placeholders such as `{{host}}`); `recursive=True` for a directory tree.
    #[pyo3(signature = (remote, local_dir, recursive=false))]
    fn get(
        &self,
        py: Python<'_>,
        remote: String,
        local_dir: String,
        recursive: bool,
    ) -> PyResult<Report> {
        self.transfer(py, recursive, move |pool| pool.get(remote, local_dir))
    }

    /// No more work may be submitted; `join()` then waits for `apply_async` work.
    fn close(&self) {
        let mut state = locked(&self.state);
        if *state == State::Running {
            *state = State::Closed;
        }
    }

    /// Stops the work in progress at once: remote commands and transfers are stopped
    /// (their hosts end `"interrupted"`), hosts not started end `"not-started"`.
    fn terminate(&self) {
        *locked(&self.state) = State::Terminated;
        locked(&self.pool).cancel_token().cancel();
    }

    /// Waits for every `apply_async` result; call `close()` or `terminate()` first.
    fn join(&self, py: Python<'_>) -> PyResult<()> {
        if *locked(&self.state) == State::Running {
            return Err(PyValueError::new_err("Pool is still running"));
        }
        let pending: Vec<_> = std::mem::take(&mut *locked(&self.pending));
        let (_, raised) = wait(py, Interrupt::Abandon, || async move {
            for mut rx in pending {
                let _ = rx.wait_for(Option::is_some).await;
            }
        })?;
        raised.map_or(Ok(()), Err)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// As `multiprocessing.Pool`: leaving the `with` block terminates the pool.
    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, PyTuple>) -> bool {
        self.terminate();
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "Pool({} hosts, state={:?})",
            locked(&self.pool).len(),
            *locked(&self.state)
        )
    }
}

impl Pool {
    fn check_running(&self) -> PyResult<()> {
        match *locked(&self.state) {
            State::Running => Ok(()),
            _ => Err(PyValueError::new_err("Pool not running")),
        }
    }

    /// A handle on the pool for one run (clones share the cancellation token).
    /// `put` or `get` (`start` picks which) on the current pool, waited for with the GIL
    /// released; Ctrl-C cancels it and waits for every host.
    fn transfer(
        &self,
        py: Python<'_>,
        recursive: bool,
        start: impl for<'p> FnOnce(&'p rexec::Pool) -> rexec::TransferRun<'p> + Send,
    ) -> PyResult<Report> {
        self.check_running()?;
        let pool = self.current();
        let token = pool.cancel_token();
        let (results, raised) = wait(py, Interrupt::CancelAndFinish(&token), || async {
            let options = rexec::TransferOptions::new().recursive(recursive);
            let report = start(&pool).options(options).await?;
            Ok(report
                .iter()
                .map(ResultData::of_transfer)
                .collect::<Vec<_>>())
        })?;
        self.transfer_report(py, results, raised)
    }

    fn current(&self) -> rexec::Pool {
        locked(&self.pool).clone()
    }

    /// After Ctrl-C cancelled a run: a fresh token, so the pool can run again (runs
    /// still going keep the cancelled one). A terminated pool stays cancelled.
    fn after_interrupt(&self) {
        if *locked(&self.state) != State::Terminated {
            let mut pool = locked(&self.pool);
            *pool = pool.clone().reset_cancel();
        }
    }

    /// The report, or the interrupt with the report attached.
    fn finish(&self, py: Python<'_>, report: Report, raised: Option<PyErr>) -> PyResult<Report> {
        match raised {
            None => Ok(report),
            Some(e) => {
                self.after_interrupt();
                e.value(py).setattr("report", Py::new(py, report)?)?;
                Err(e)
            }
        }
    }

    fn transfer_report(
        &self,
        py: Python<'_>,
        results: Option<rexec::Result<Vec<ResultData>>>,
        raised: Option<PyErr>,
    ) -> PyResult<Report> {
        match results {
            Some(Ok(results)) => {
                let report = Report::new(py, results)?;
                self.finish(py, report, raised)
            }
            Some(Err(e)) => {
                if let Some(interrupt) = raised {
                    self.after_interrupt();
                    return Err(interrupt);
                }
                Err(raise(py, &e))
            }
            None => Err(raised.unwrap_or_else(errors::no_value)),
        }
    }

    fn iterate(
        slf: Bound<'_, Self>,
        cmd: &Bound<'_, PyAny>,
        timeout: Option<f64>,
        ordered: bool,
    ) -> PyResult<ResultIterator> {
        let this = slf.get();
        this.check_running()?;
        let line = command_line(cmd)?;
        let timeout = seconds(timeout, "timeout")?;
        let pool = this.current();
        let token = pool.cancel_token();
        let rt = runtime()?;
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("rexec-py-imap".to_owned())
            .spawn(move || {
                rt.block_on(async move {
                    let mut results = with_timeout(pool.run(line.as_str()), timeout).stream();
                    while let Some(r) = results.next().await {
                        if tx.send(ResultData::of_command_owned(r)).is_err() {
                            // The iterator is gone: dropping the stream stops the rest.
                            break;
                        }
                    }
                });
            })
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start a thread: {e}")))?;
        Ok(ResultIterator {
            owner: slf.unbind(),
            token,
            state: tokio::sync::Mutex::new(IterState {
                rx,
                ordered,
                next_index: 0,
                held: BTreeMap::new(),
                front: None,
            }),
        })
    }
}

/// Calls the callback an `apply_async` caller gave for this result; an exception it
/// raises is reported as unraisable (as nothing can catch it).
fn call_back(
    py: Python<'_>,
    data: &ResultData,
    callback: Option<Py<PyAny>>,
    error_callback: Option<Py<PyAny>>,
) {
    let called = match (&data.error, callback, error_callback) {
        (Some(e), _, Some(on_error)) => {
            errors::exception(py, e).and_then(|exc| on_error.call1(py, (exc,)).map(drop))
        }
        (None, Some(on_result), _) => Py::new(py, HostResult::new(data.clone()))
            .and_then(|r| on_result.call1(py, (r,)).map(drop)),
        _ => Ok(()),
    };
    if let Err(e) = called {
        e.write_unraisable(py, None);
    }
}

struct IterState {
    rx: mpsc::UnboundedReceiver<ResultData>,
    ordered: bool,
    next_index: usize,
    /// Results that arrived before their turn (`imap`).
    held: BTreeMap<usize, ResultData>,
    /// A result taken while Ctrl-C was raised: the next one to yield.
    front: Option<ResultData>,
}

impl IterState {
    async fn next(&mut self) -> Option<ResultData> {
        if let Some(d) = self.front.take() {
            return Some(d);
        }
        loop {
            if self.ordered {
                if let Some(d) = self.held.remove(&self.next_index) {
                    self.next_index += 1;
                    return Some(d);
                }
            }
            match self.rx.recv().await {
                Some(d) if self.ordered => {
                    self.held.insert(d.index, d);
                }
                Some(d) => return Some(d),
                // The run is over: whatever is held (not expected) in host order.
                None => return self.held.pop_first().map(|(_, d)| d),
            }
        }
    }
}

/// The iterator of `Pool.imap` / `Pool.imap_unordered`. Ctrl-C while waiting stops
/// the remote commands and raises `KeyboardInterrupt`; iterating on gives the remaining
/// results (interrupted hosts included).
#[pyclass(module = "rexec._rexec", frozen)]
pub struct ResultIterator {
    owner: Py<Pool>,
    token: CancellationToken,
    state: tokio::sync::Mutex<IterState>,
}

#[pymethods]
impl ResultIterator {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<HostResult>> {
        let state = &self.state;
        let (next, raised) = wait(py, Interrupt::CancelAndFinish(&self.token), || async move {
            state.lock().await.next().await
        })?;
        if let Some(e) = raised {
            self.owner.get().after_interrupt();
            if let Some(d) = next.flatten() {
                let _ = wait(py, Interrupt::Abandon, || async move {
                    state.lock().await.front = Some(d);
                })?;
            }
            return Err(e);
        }
        Ok(next.flatten().map(HostResult::new))
    }
}

/// The pending result of `Pool.apply_async`, as in `multiprocessing`.
#[pyclass(module = "rexec._rexec", frozen)]
pub struct AsyncResult {
    host: String,
    rx: watch::Receiver<Option<Arc<ResultData>>>,
}

impl AsyncResult {
    /// Waits up to `timeout` for the result (Ctrl-C: raises at once, the command goes on).
    fn wait_result(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Arc<ResultData>>> {
        let timeout = seconds(timeout, "timeout")?;
        let mut rx = self.rx.clone();
        let (value, raised) = wait(py, Interrupt::Abandon, || async move {
            let ready = async {
                rx.wait_for(Option::is_some)
                    .await
                    .ok()
                    .and_then(|v| v.clone())
            };
            match timeout {
                Some(t) => tokio::time::timeout(t, ready).await.ok().flatten(),
                None => ready.await,
            }
        })?;
        match raised {
            Some(e) => Err(e),
            None => Ok(value.flatten()),
        }
    }
}

#[pymethods]
impl AsyncResult {
    /// The host's `HostResult` once it has finished (waiting up to `timeout` seconds);
    /// raises the host's exception when no result was obtained, and `rexec.Timeout`
    /// (a `TimeoutError`) when `timeout` passes first (the command keeps running).
    #[pyo3(signature = (timeout=None))]
    fn get(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<HostResult> {
        match self.wait_result(py, timeout)? {
            Some(data) => match &data.error {
                Some(e) => Err(errors::to_py(py, e)),
                None => Ok(HostResult::new((*data).clone())),
            },
            None => Err(errors::to_py(
                py,
                &ErrorData {
                    kind: rexec::ErrorKind::Timeout,
                    host: Some(self.host.clone()),
                    message: format!(
                        "{}: no result within {:.2}s: the command is still running",
                        self.host,
                        timeout.unwrap_or_default()
                    ),
                    phase: None,
                    stdout: None,
                    stderr: None,
                },
            )),
        }
    }

    /// Waits until the result is ready or `timeout` seconds have passed.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        self.wait_result(py, timeout).map(drop)
    }

    /// Whether the host has finished.
    fn ready(&self) -> bool {
        self.rx.borrow().is_some()
    }

    /// Whether the host finished with outcome `"ok"`; `ValueError` before it finished.
    fn successful(&self) -> PyResult<bool> {
        match &*self.rx.borrow() {
            Some(data) => Ok(data.outcome == rexec::Outcome::Ok),
            None => Err(PyValueError::new_err(format!(
                "the result of {} is not ready",
                self.host
            ))),
        }
    }

    /// The host's name.
    #[getter]
    fn host(&self) -> &str {
        &self.host
    }
}
