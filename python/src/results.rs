//! Results of one host and of a run: `HostResult`, `Report`, `Timings`, `TransferStats`.
//! They hold plain data copied out of rexec's `HostResult`, so they outlive the run and
//! cross threads freely.

use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::errors::{self, ErrorData};

/// How a command ended, as `subprocess` reports it: `returncode` is the exit code, or
/// minus the signal's number (Linux numbering) when a signal killed it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Status {
    pub returncode: Option<i32>,
    pub signal: Option<String>,
    pub text: String,
}

impl From<&rexec::ExitStatus> for Status {
    fn from(s: &rexec::ExitStatus) -> Status {
        let signal = s.signal().map(str::to_owned);
        let returncode = s
            .code()
            .or_else(|| signal.as_deref().and_then(signal_number).map(|n| -n));
        Status {
            returncode,
            signal,
            text: s.to_string(),
        }
    }
}

/// The Linux number of a signal named without `SIG`.
fn signal_number(name: &str) -> Option<i32> {
    const NAMES: [&str; 15] = [
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
        "PIPE", "ALRM", "TERM",
    ];
    let at = NAMES.iter().position(|n| *n == name)?;
    i32::try_from(at).ok().map(|n| n + 1)
}

/// One host's result, owned.
#[derive(Debug, Clone)]
pub(crate) struct ResultData {
    pub index: usize,
    pub host: String,
    pub outcome: rexec::Outcome,
    pub status: Option<Status>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub error: Option<ErrorData>,
    pub timings: rexec::Timings,
    pub transfer: Option<rexec::TransferStats>,
}

impl ResultData {
    fn base<T>(r: &rexec::HostResult<T>) -> ResultData {
        let error = r.result.as_ref().err().map(ErrorData::from);
        ResultData {
            index: r.index(),
            host: r.host().to_owned(),
            outcome: r.outcome(),
            status: None,
            stdout: error
                .as_ref()
                .and_then(|e| e.stdout.clone())
                .unwrap_or_default(),
            stderr: error
                .as_ref()
                .and_then(|e| e.stderr.clone())
                .unwrap_or_default(),
            error,
            timings: r.timings,
            transfer: None,
        }
    }

    /// A command's result.
    pub fn of_command(r: &rexec::HostResult<rexec::Output>) -> ResultData {
        let mut data = ResultData::base(r);
        if let Ok(out) = &r.result {
            data.status = Some(Status::from(&out.status));
            data.stdout = out.stdout.clone();
            data.stderr = out.stderr.clone();
        }
        data
    }

    /// A command's result, taking the output without copying it.
    pub fn of_command_owned(r: rexec::HostResult<rexec::Output>) -> ResultData {
        let mut data = ResultData::base(&r);
        if let Ok(out) = r.result {
            data.status = Some(Status::from(&out.status));
            data.stdout = out.stdout;
            data.stderr = out.stderr;
        }
        data
    }

    /// A transfer's result.
    pub fn of_transfer(r: &rexec::HostResult<rexec::TransferStats>) -> ResultData {
        let mut data = ResultData::base(r);
        data.transfer = r.result.as_ref().ok().copied();
        data
    }
}

/// Durations of one host, in seconds: `connect` (connect, host key check and
/// authentication), `run` (the work), `total`.
#[pyclass(module = "rexec._rexec", frozen, get_all)]
#[derive(Debug, Clone)]
pub struct Timings {
    pub connect: f64,
    pub run: f64,
    pub total: f64,
}

impl From<rexec::Timings> for Timings {
    fn from(t: rexec::Timings) -> Timings {
        Timings {
            connect: t.connect.as_secs_f64(),
            run: t.run.as_secs_f64(),
            total: t.total.as_secs_f64(),
        }
    }
}

#[pymethods]
impl Timings {
    fn __repr__(&self) -> String {
        format!(
            "Timings(connect={:.3}, run={:.3}, total={:.3})",
            self.connect, self.run, self.total
        )
    }
}

/// What a transfer moved: regular `files`, `dirs` created or entered, `symlinks`
/// recreated, file `bytes`, and special files `skipped`.
#[pyclass(module = "rexec._rexec", frozen, get_all)]
#[derive(Debug, Clone)]
pub struct TransferStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    pub skipped: u64,
}

impl From<rexec::TransferStats> for TransferStats {
    fn from(s: rexec::TransferStats) -> TransferStats {
        TransferStats {
            files: s.files,
            dirs: s.dirs,
            symlinks: s.symlinks,
            bytes: s.bytes,
            skipped: s.skipped,
        }
    }
}

#[pymethods]
impl TransferStats {
    fn __repr__(&self) -> String {
        format!(
            "TransferStats(files={}, dirs={}, symlinks={}, bytes={}, skipped={})",
            self.files, self.dirs, self.symlinks, self.bytes, self.skipped
        )
    }
}

/// The one result of one host of a `Pool` run.
///
/// A command that ran has `returncode` (or a `signal`), `stdout` and `stderr`; a host
/// where no result was obtained (unreachable, host key, authentication, timeout...) has
/// `error` (the exception it would raise), `error_kind` and `error_message`. `outcome`
/// names how it ended (`"ok"`, `"exited-nonzero"`, `"timed-out"`, `"unreachable"`...).
#[pyclass(module = "rexec._rexec", frozen)]
#[derive(Debug)]
pub struct HostResult {
    pub(crate) data: ResultData,
}

#[pymethods]
impl HostResult {
    /// The host's name as given to the pool.
    #[getter]
    fn host(&self) -> &str {
        &self.data.host
    }

    /// The host's position in the pool's host list.
    #[getter]
    fn index(&self) -> usize {
        self.data.index
    }

    /// How the host's run ended: `"ok"`, `"exited-nonzero"`, `"killed"`, `"timed-out"`,
    /// `"unreachable"`, `"host-key-rejected"`, `"auth-failed"`, `"interrupted"`,
    /// `"not-started"`...
    #[getter]
    fn outcome(&self) -> &'static str {
        self.data.outcome.as_str()
    }

    /// Whether the outcome is `"ok"`.
    #[getter]
    fn ok(&self) -> bool {
        self.data.outcome == rexec::Outcome::Ok
    }

    /// The exit code; minus the signal's number when a signal killed the command; `None`
    /// when the command did not run or ended without a status.
    #[getter]
    fn returncode(&self) -> Option<i32> {
        self.data.status.as_ref().and_then(|s| s.returncode)
    }

    /// The signal's name (`"TERM"`) when a signal killed the command.
    #[getter]
    fn signal(&self) -> Option<&str> {
        self.data.status.as_ref().and_then(|s| s.signal.as_deref())
    }

    /// Everything the command wrote to stdout (with an error: the output so far).
    #[getter]
    fn stdout<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.data.stdout)
    }

    /// Everything the command wrote to stderr.
    #[getter]
    fn stderr<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.data.stderr)
    }

    /// The exception that kept this host from a result (a `rexec.Error`), or `None`.
    #[getter]
    fn error<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.data
            .error
            .as_ref()
            .map(|e| errors::exception(py, e))
            .transpose()
    }

    /// The error's kind (`"timeout"`, `"auth"`, `"host-key-changed"`...), or `None`.
    #[getter]
    fn error_kind(&self) -> Option<&'static str> {
        self.data.error.as_ref().map(|e| e.kind.as_str())
    }

    /// The error's message, host first, with its causes; or `None`.
    #[getter]
    fn error_message(&self) -> Option<&str> {
        self.data.error.as_ref().map(|e| e.message.as_str())
    }

    /// Connect, run and total durations in seconds.
    #[getter]
    fn timings(&self) -> Timings {
        self.data.timings.into()
    }

    /// What a `put` or `get` moved to or from this host, or `None`.
    #[getter]
    fn transferred(&self) -> Option<TransferStats> {
        self.data.transfer.map(Into::into)
    }

    /// Raises the host's error if it has one, `rexec.CommandFailed` if the command exited
    /// non-zero or was killed; returns `None` when the outcome is `"ok"`.
    fn check_returncode(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let data = &slf.get().data;
        if let Some(e) = &data.error {
            return Err(errors::to_py(py, e));
        }
        if data.outcome == rexec::Outcome::Ok {
            return Ok(());
        }
        let status = data.status.clone().unwrap_or_default();
        Err(errors::command_failed(
            py,
            format!("{}: the command {}", data.host, status.text),
            status.returncode,
            &py.None().into_bound(py),
            &data.stdout,
            &data.stderr,
        ))
    }

    fn __repr__(&self) -> String {
        let detail = match (&self.data.error, &self.data.status) {
            (Some(e), _) => format!("error={:?}", e.message),
            (None, Some(s)) => format!("returncode={:?}", s.returncode),
            (None, None) => String::new(),
        };
        format!(
            "HostResult(host={:?}, outcome={:?}, {detail})",
            self.data.host,
            self.data.outcome.as_str()
        )
    }
}

impl HostResult {
    pub(crate) fn new(data: ResultData) -> HostResult {
        HostResult { data }
    }
}

/// One `HostResult` per host, in the pool's host order (a sequence: `len`, indexing,
/// iteration), with the questions a script asks next.
#[pyclass(module = "rexec._rexec", frozen, sequence)]
#[derive(Debug)]
pub struct Report {
    results: Vec<Py<HostResult>>,
    outcomes: Vec<rexec::Outcome>,
}

impl Report {
    pub(crate) fn new(py: Python<'_>, data: Vec<ResultData>) -> PyResult<Report> {
        let outcomes = data.iter().map(|d| d.outcome).collect();
        let results = data
            .into_iter()
            .map(|d| Py::new(py, HostResult::new(d)))
            .collect::<PyResult<_>>()?;
        Ok(Report { results, outcomes })
    }
}

#[pymethods]
impl Report {
    fn __len__(&self) -> usize {
        self.results.len()
    }

    /// A result by position (negative counts from the end), or a list of them for a slice.
    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        index: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.list(py)?.get_item(index)
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.list(py)?.try_iter().map(Bound::into_any)
    }

    /// The results whose outcome is `"ok"`, in host order.
    fn succeeded(&self, py: Python<'_>) -> Vec<Py<HostResult>> {
        self.select(py, true)
    }

    /// The results whose outcome is not `"ok"`, in host order.
    fn failed(&self, py: Python<'_>) -> Vec<Py<HostResult>> {
        self.select(py, false)
    }

    /// Whether every host's outcome is `"ok"`.
    fn all_ok(&self) -> bool {
        self.outcomes.iter().all(|o| *o == rexec::Outcome::Ok)
    }

    /// `{outcome: number of hosts}` for the outcomes that occurred.
    fn counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let counts = PyDict::new(py);
        let mut sorted = self.outcomes.clone();
        sorted.sort();
        for o in sorted {
            let n: usize = match counts.get_item(o.as_str())? {
                Some(v) => v.extract()?,
                None => 0,
            };
            counts.set_item(o.as_str(), n + 1)?;
        }
        Ok(counts)
    }

    /// The run's exit code, merged over hosts as the `rexec` command merges it: 0 all
    /// ok, 1 a command exited non-zero, 3 a host could not run it, 4 incomplete
    /// (timed out, killed, connection lost), 130 interrupted.
    #[getter]
    fn exit_code(&self) -> u8 {
        rexec::RunExit::of(self.outcomes.iter().copied()).code()
    }

    /// Raises `rexec.CommandFailed` naming every failed host with its outcome, unless all
    /// are ok; returns the report.
    fn check(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        let py = slf.py();
        let failed: Vec<String> = slf
            .get()
            .results
            .iter()
            .filter(|r| r.get().data.outcome != rexec::Outcome::Ok)
            .map(|r| {
                let d = &r.get().data;
                format!("{} ({})", d.host, d.outcome.as_str())
            })
            .collect();
        if failed.is_empty() {
            return Ok(slf);
        }
        Err(errors::command_failed(
            py,
            format!(
                "{} of {} hosts failed: {}",
                failed.len(),
                slf.get().results.len(),
                failed.join(", ")
            ),
            None,
            &py.None().into_bound(py),
            &[],
            &[],
        ))
    }

    fn __repr__(&self) -> String {
        format!(
            "Report({} hosts, {} failed, exit_code={})",
            self.results.len(),
            self.outcomes
                .iter()
                .filter(|o| **o != rexec::Outcome::Ok)
                .count(),
            self.exit_code()
        )
    }
}

impl Report {
    fn list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(PyList::new(py, self.results.iter().map(|r| r.clone_ref(py)))?.into_any())
    }

    fn select(&self, py: Python<'_>, ok: bool) -> Vec<Py<HostResult>> {
        self.results
            .iter()
            .filter(|r| (r.get().data.outcome == rexec::Outcome::Ok) == ok)
            .map(|r| r.clone_ref(py))
            .collect()
    }
}

/// A duration argument in seconds (`None`: no deadline).
pub(crate) fn seconds(value: Option<f64>, what: &str) -> PyResult<Option<Duration>> {
    value
        .map(|s| {
            Duration::try_from_secs_f64(s).map_err(|_| {
                PyValueError::new_err(format!(
                    "{what} must be a non-negative number of seconds, not {s}"
                ))
            })
        })
        .transpose()
}
