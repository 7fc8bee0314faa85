//! rexec errors as Python exceptions. The classes live in `rexec/_errors.py` (so that
//! `rexec.Timeout` can also be a `TimeoutError`, `rexec.NotFound` a `FileNotFoundError`);
//! this module picks the class for an [`rexec::ErrorKind`] and fills in its attributes.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// What Python needs of a rexec error, owned and shareable (rexec's `Error` is not `Clone`).
#[derive(Debug, Clone)]
pub(crate) struct ErrorData {
    pub kind: rexec::ErrorKind,
    pub host: Option<String>,
    /// The message with its causes and the host (`web1: cannot connect to ...: refused`).
    pub message: String,
    pub phase: Option<&'static str>,
    /// The output so far of a command that timed out or was interrupted.
    pub stdout: Option<Vec<u8>>,
    pub stderr: Option<Vec<u8>>,
}

impl From<&rexec::Error> for ErrorData {
    fn from(e: &rexec::Error) -> ErrorData {
        ErrorData {
            kind: e.kind(),
            host: e.host().map(str::to_owned),
            message: format!("{e:#}"),
            phase: e.phase().map(rexec::Phase::as_str),
            stdout: e.output().map(|o| o.stdout.clone()),
            stderr: e.output().map(|o| o.stderr.clone()),
        }
    }
}

/// The class name in `rexec._errors` for a kind.
fn class_name(kind: rexec::ErrorKind) -> &'static str {
    use rexec::ErrorKind as K;
    match kind {
        K::InvalidInput => "InvalidInput",
        K::Resolve => "ResolveError",
        K::Connect => "ConnectError",
        K::Timeout => "Timeout",
        K::HostKeyUnknown => "HostKeyUnknown",
        K::HostKeyChanged => "HostKeyChanged",
        K::Auth => "AuthenticationError",
        K::KeyFile => "KeyFileError",
        K::Agent => "AgentError",
        K::Protocol => "ProtocolError",
        K::Channel => "ChannelError",
        K::Disconnected => "Disconnected",
        K::LocalIo => "LocalIOError",
        K::CommandFailed => "CommandFailed",
        K::Interrupted => "Interrupted",
        K::NotStarted => "NotStarted",
        K::NotFound => "NotFound",
        K::PermissionDenied => "PermissionDenied",
        K::NoSpace => "NoSpace",
        K::Sftp => "SFTPError",
        K::Become => "BecomeError",
        _ => "Error",
    }
}

/// The exception object for an error.
pub(crate) fn exception<'py>(py: Python<'py>, e: &ErrorData) -> PyResult<Bound<'py, PyAny>> {
    let class = py.import("rexec._errors")?.getattr(class_name(e.kind))?;
    let value = class.call1((e.message.as_str(),))?;
    value.setattr("kind", e.kind.as_str())?;
    value.setattr("host", e.host.as_deref())?;
    value.setattr("phase", e.phase)?;
    value.setattr("stdout", e.stdout.as_deref().map(|b| PyBytes::new(py, b)))?;
    value.setattr("stderr", e.stderr.as_deref().map(|b| PyBytes::new(py, b)))?;
    Ok(value)
}

/// The `PyErr` to raise for an error.
pub(crate) fn to_py(py: Python<'_>, e: &ErrorData) -> PyErr {
    match exception(py, e) {
        Ok(value) => PyErr::from_value(value),
        Err(failed) => failed,
    }
}

/// The `PyErr` to raise for a rexec error.
pub(crate) fn raise(py: Python<'_>, e: &rexec::Error) -> PyErr {
    to_py(py, &ErrorData::from(e))
}

/// `rexec.CommandFailed` for a command that ran and did not exit 0.
pub(crate) fn command_failed(
    py: Python<'_>,
    message: String,
    returncode: Option<i32>,
    cmd: &Bound<'_, PyAny>,
    stdout: &[u8],
    stderr: &[u8],
) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let class = py.import("rexec._errors")?.getattr("CommandFailed")?;
        let value = class.call1((
            message,
            returncode,
            cmd,
            PyBytes::new(py, stdout),
            PyBytes::new(py, stderr),
        ))?;
        value.setattr("kind", rexec::ErrorKind::CommandFailed.as_str())?;
        Ok(PyErr::from_value(value))
    };
    build().unwrap_or_else(|e| e)
}

/// The error for a wait that returned neither a value nor an exception (not expected).
pub(crate) fn no_value() -> PyErr {
    PyRuntimeError::new_err("rexec: the operation ended without a result")
}
