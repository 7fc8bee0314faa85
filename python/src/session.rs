//! One host: `Session` (connect, `run` as `subprocess.run` does), `CompletedProcess`,
//! and `SFTPClient` / `SFTPAttributes` with paramiko's names.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use tokio_util::sync::CancellationToken;

use crate::errors::{self, raise};
use crate::results::{seconds, Status, TransferStats};
use crate::{wait, Interrupt};

/// A remote shell line as a rexec `Command`. The one place that names the call, so a
/// rename in rexec (`command` -> `raw_command`) is a one-line change here.
pub(crate) fn shell_command<'s>(session: &'s rexec::Session, line: &str) -> rexec::Command<'s> {
    session.raw_command(line)
}

/// The command line for `cmd`: a `str` is a shell line sent as given; a sequence of
/// `str` is a program and its arguments, each quoted as one shell word.
pub(crate) fn command_line(cmd: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(line) = cmd.cast::<PyString>() {
        return line.extract();
    }
    let words: Vec<String> = cmd.extract().map_err(|_| {
        PyTypeError::new_err(
            "cmd must be a str (a shell line) or a sequence of str (program and arguments)",
        )
    })?;
    let Some((program, args)) = words.split_first() else {
        return Err(PyValueError::new_err("cmd is an empty sequence"));
    };
    // As rexec's `Session::command`: the program always in single quotes (a bare word
    // could be a reserved word such as `if` or an assignment such as `A=b`), and refused
    // when it starts with `%`, which bash reads as a job however it is quoted.
    if program.starts_with('%') {
        return Err(PyValueError::new_err(
            "a program name starting with '%' is read by bash as a job, not a program: \
             give a path (./%name) or a shell line",
        ));
    }
    let mut line = format!("'{}'", program.replace('\'', "'\\''"));
    for arg in args {
        line.push(' ');
        line.push_str(&rexec::shell_quote(arg));
    }
    Ok(line)
}

/// Bytes for stdin from `bytes`, `bytearray` or `str` (UTF-8).
fn input_bytes(input: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(text) = input.cast::<PyString>() {
        return Ok(text.extract::<String>()?.into_bytes());
    }
    input
        .extract::<Vec<u8>>()
        .map_err(|_| PyTypeError::new_err("input must be bytes or str"))
}

/// One path or a list of paths (paramiko's `key_filename`).
fn paths(value: &Bound<'_, PyAny>) -> PyResult<Vec<PathBuf>> {
    if let Ok(one) = value.extract::<PathBuf>() {
        return Ok(vec![one]);
    }
    value.extract()
}

pub(crate) fn parse_policy(policy: &str) -> PyResult<rexec::HostKeyPolicy> {
    policy
        .parse()
        .map_err(|e: rexec::Error| PyValueError::new_err(e.message().to_owned()))
}

/// An SSH connection to one host, checked against known_hosts and logged in.
///
/// `Session(host, port=22, user=None, key_filename=None, password=None, passphrase=None,
/// known_hosts=None, policy="strict", connect_timeout=10.0, allow_agent=True,
/// look_for_keys=True)` connects at once (raising a `rexec.Error` subclass naming the
/// host); use it as a context manager or call `close()`.
#[pyclass(module = "rexec._rexec", frozen)]
pub struct Session {
    session: Arc<rexec::Session>,
    /// Set by `close()`: the connection's own state changes a moment later.
    closed: AtomicBool,
}

#[pymethods]
impl Session {
    #[new]
    #[pyo3(signature = (host, port=22, user=None, key_filename=None, password=None, passphrase=None,
        known_hosts=None, policy="strict", connect_timeout=10.0, allow_agent=true, look_for_keys=true))]
    #[expect(clippy::too_many_arguments, reason = "paramiko's connect() keywords")]
    fn new(
        py: Python<'_>,
        host: String,
        port: u16,
        user: Option<String>,
        key_filename: Option<Bound<'_, PyAny>>,
        password: Option<String>,
        passphrase: Option<String>,
        known_hosts: Option<PathBuf>,
        policy: &str,
        connect_timeout: Option<f64>,
        allow_agent: bool,
        look_for_keys: bool,
    ) -> PyResult<Session> {
        let passphrase = passphrase.map(rexec::Secret::new);
        let mut creds = rexec::Credentials::new();
        for path in key_filename
            .map(|k| paths(&k))
            .transpose()?
            .unwrap_or_default()
        {
            let identity = rexec::Identity::from_file(&path, passphrase.as_ref())
                .map_err(|e| raise(py, &e))?;
            creds = creds.identity(identity);
        }
        if look_for_keys {
            creds = creds.default_identities();
        }
        if !allow_agent {
            creds = creds.agent(rexec::Agent::Off);
        }
        if let Some(password) = password {
            creds = creds.password(rexec::Secret::new(password));
        }
        let mut options = rexec::ConnectOptions::new(host)
            .port(port)
            .credentials(creds)
            .host_key_policy(parse_policy(policy)?);
        if let Some(user) = user {
            options = options.user(user);
        }
        if let Some(path) = known_hosts {
            options = options.known_hosts(rexec::KnownHosts::file(path));
        }
        if let Some(t) = seconds(connect_timeout, "connect_timeout")? {
            options = options.connect_timeout(t);
        }
        let (connected, raised) =
            wait(py, Interrupt::Abandon, || rexec::Session::connect(&options))?;
        if let Some(e) = raised {
            return Err(e);
        }
        match connected {
            Some(Ok(session)) => Ok(Session {
                session: Arc::new(session),
                closed: AtomicBool::new(false),
            }),
            Some(Err(e)) => Err(raise(py, &e)),
            None => Err(errors::no_value()),
        }
    }

    /// The host's name as given.
    #[getter]
    fn host(&self) -> &str {
        self.session.host()
    }

    /// Runs `cmd` and waits for it, as `subprocess.run` does; returns a
    /// `CompletedProcess`. `cmd` is a shell line (`str`, run by the remote login shell)
    /// or a sequence of words (each quoted). `input` (bytes or str) goes to stdin, then
    /// EOF. `timeout` (seconds) bounds the whole command: past it the remote process
    /// group gets TERM, then KILL, and `rexec.Timeout` is raised with the output so far
    /// in its `stdout`/`stderr`. `check=True` raises `rexec.CommandFailed` unless the
    /// command exits 0. `env` is exported and `cwd` entered before the command (through
    /// the shell). Ctrl-C stops the remote command before `KeyboardInterrupt` is raised.
    #[pyo3(signature = (cmd, input=None, timeout=None, check=false, env=None, cwd=None))]
    #[expect(clippy::too_many_arguments, reason = "subprocess.run's keywords")]
    fn run(
        &self,
        py: Python<'_>,
        cmd: Bound<'_, PyAny>,
        input: Option<Bound<'_, PyAny>>,
        timeout: Option<f64>,
        check: bool,
        env: Option<HashMap<String, String>>,
        cwd: Option<String>,
    ) -> PyResult<CompletedProcess> {
        let line = command_line(&cmd)?;
        let input = input.map(|i| input_bytes(&i)).transpose()?;
        let timeout = seconds(timeout, "timeout")?;
        let token = CancellationToken::new();
        let session = &*self.session;
        let (output, raised) = wait(py, Interrupt::CancelAndFinish(&token), || {
            let mut command = shell_command(session, &line);
            command.cancel_on(token.clone());
            if let Some(input) = input {
                command.stdin(input);
            }
            if let Some(t) = timeout {
                command.timeout(t);
            }
            for (name, value) in env.into_iter().flatten() {
                command.env(name, value);
            }
            if let Some(dir) = cwd {
                command.current_dir(dir);
            }
            async move { command.output().await }
        })?;
        if let Some(e) = raised {
            return Err(e);
        }
        let output = match output {
            Some(Ok(o)) => o,
            Some(Err(e)) => return Err(raise(py, &e)),
            None => return Err(errors::no_value()),
        };
        let status = Status::from(&output.status);
        if check && !output.status.success() {
            return Err(errors::command_failed(
                py,
                format!("{}: command {line:?} {}", self.session.host(), status.text),
                status.returncode,
                &cmd,
                &output.stdout,
                &output.stderr,
            ));
        }
        Ok(CompletedProcess {
            args: cmd.unbind(),
            host: self.session.host().to_owned(),
            status,
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }

    /// Opens an SFTP session on this connection (`SFTPClient`, paramiko's names).
    fn sftp(&self, py: Python<'_>) -> PyResult<SftpClient> {
        let session = &*self.session;
        let (sftp, raised) = wait(py, Interrupt::Abandon, || session.sftp())?;
        if let Some(e) = raised {
            return Err(e);
        }
        match sftp {
            Some(Ok(sftp)) => Ok(SftpClient {
                sftp: Arc::new(sftp),
            }),
            Some(Err(e)) => Err(raise(py, &e)),
            None => Err(errors::no_value()),
        }
    }

    /// Closes the connection (commands still running on it end with an error).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.closed.store(true, Ordering::Relaxed);
        let session = &*self.session;
        let (closed, raised) = wait(py, Interrupt::Abandon, || session.close())?;
        if let Some(e) = raised {
            return Err(e);
        }
        match closed {
            Some(Err(e)) if !self.session.is_closed() => Err(raise(py, &e)),
            _ => Ok(()),
        }
    }

    /// Whether the connection is closed.
    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed) || self.session.is_closed()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("Session({:?})", self.session.host())
    }
}

/// The result of `Session.run`, like `subprocess.CompletedProcess`: `args` as given,
/// `returncode` (the exit code; minus the signal number when a signal killed the
/// command; `None` without an exit status), `signal` (its name, e.g. `"TERM"`),
/// `stdout` and `stderr` as bytes.
#[pyclass(module = "rexec._rexec", frozen)]
pub struct CompletedProcess {
    args: Py<PyAny>,
    host: String,
    status: Status,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

#[pymethods]
impl CompletedProcess {
    #[getter]
    fn args(&self, py: Python<'_>) -> Py<PyAny> {
        self.args.clone_ref(py)
    }

    #[getter]
    fn host(&self) -> &str {
        &self.host
    }

    #[getter]
    fn returncode(&self) -> Option<i32> {
        self.status.returncode
    }

    #[getter]
    fn signal(&self) -> Option<&str> {
        self.status.signal.as_deref()
    }

    #[getter]
    fn stdout<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.stdout)
    }

    #[getter]
    fn stderr<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.stderr)
    }

    /// Raises `rexec.CommandFailed` unless the command exited 0.
    fn check_returncode(&self, py: Python<'_>) -> PyResult<()> {
        if self.status.returncode == Some(0) {
            return Ok(());
        }
        Err(errors::command_failed(
            py,
            format!("{}: command {}", self.host, self.status.text),
            self.status.returncode,
            self.args.bind(py),
            &self.stdout,
            &self.stderr,
        ))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "CompletedProcess(args={}, returncode={:?}, stdout={} bytes, stderr={} bytes)",
            self.args.bind(py).repr()?,
            self.status.returncode,
            self.stdout.len(),
            self.stderr.len()
        ))
    }
}

/// File attributes as paramiko's `SFTPAttributes` gives them: `st_size`, `st_mode`
/// (type and permission bits, for the `stat` module), `st_mtime`, and `filename` for
/// entries of `listdir_attr`.
#[pyclass(module = "rexec._rexec", frozen, get_all, name = "SFTPAttributes")]
#[derive(Debug, Clone)]
pub struct SftpAttributes {
    pub st_size: u64,
    pub st_mode: u32,
    pub st_mtime: u32,
    pub filename: Option<String>,
}

impl SftpAttributes {
    fn new(m: &rexec::RemoteMetadata, filename: Option<String>) -> SftpAttributes {
        let kind = match m.kind {
            rexec::RemoteKind::File => 0o100_000,
            rexec::RemoteKind::Dir => 0o040_000,
            rexec::RemoteKind::Symlink => 0o120_000,
            rexec::RemoteKind::Other => 0,
        };
        SftpAttributes {
            st_size: m.size,
            st_mode: kind | m.mode,
            st_mtime: m.mtime,
            filename,
        }
    }
}

#[pymethods]
impl SftpAttributes {
    fn __repr__(&self) -> String {
        format!(
            "SFTPAttributes(filename={:?}, st_size={}, st_mode=0o{:o}, st_mtime={})",
            self.filename, self.st_size, self.st_mode, self.st_mtime
        )
    }
}

/// SFTP on one `Session`, with paramiko's `SFTPClient` method names. Remote paths are
/// `str`; errors are `rexec.Error` subclasses (`rexec.NotFound` is also a
/// `FileNotFoundError`, `rexec.PermissionDenied` a `PermissionError`).
#[pyclass(module = "rexec._rexec", frozen, name = "SFTPClient")]
pub struct SftpClient {
    sftp: Arc<rexec::Sftp>,
}

impl SftpClient {
    /// Waits for one SFTP call (Ctrl-C abandons it; an upload's temporary file is removed).
    fn call<T, F, Fut>(&self, py: Python<'_>, work: F) -> PyResult<T>
    where
        F: FnOnce(Arc<rexec::Sftp>) -> Fut + Send,
        Fut: std::future::Future<Output = rexec::Result<T>>,
        T: Send,
    {
        let sftp = Arc::clone(&self.sftp);
        let (value, raised) = wait(py, Interrupt::Abandon, || work(sftp))?;
        if let Some(e) = raised {
            return Err(e);
        }
        match value {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(raise(py, &e)),
            None => Err(errors::no_value()),
        }
    }
}

#[pymethods]
impl SftpClient {
    /// Uploads local file `localpath` to `remotepath` (into it, when it is a directory),
    /// through a temporary file renamed into place; returns what was moved.
    fn put(
        &self,
        py: Python<'_>,
        localpath: PathBuf,
        remotepath: String,
    ) -> PyResult<TransferStats> {
        self.call(py, |s| async move { s.put(&localpath, &remotepath).await })
            .map(Into::into)
    }

    /// Downloads remote file `remotepath` to local `localpath`; returns what was moved.
    fn get(
        &self,
        py: Python<'_>,
        remotepath: String,
        localpath: PathBuf,
    ) -> PyResult<TransferStats> {
        self.call(py, |s| async move { s.get(&remotepath, &localpath).await })
            .map(Into::into)
    }

    /// The attributes of `path`, following symlinks.
    fn stat(&self, py: Python<'_>, path: String) -> PyResult<SftpAttributes> {
        let m = self.call(py, |s| async move { s.stat(&path).await })?;
        Ok(SftpAttributes::new(&m, None))
    }

    /// The attributes of `path` itself (a symlink is not followed).
    fn lstat(&self, py: Python<'_>, path: String) -> PyResult<SftpAttributes> {
        let m = self.call(py, |s| async move { s.lstat(&path).await })?;
        Ok(SftpAttributes::new(&m, None))
    }

    /// The names in directory `path` (without `.` and `..`).
    #[pyo3(signature = (path=String::from(".")))]
    fn listdir(&self, py: Python<'_>, path: String) -> PyResult<Vec<String>> {
        let entries = self.call(py, |s| async move { s.read_dir(&path).await })?;
        Ok(entries.into_iter().map(|e| e.name).collect())
    }

    /// The entries of directory `path` as `SFTPAttributes` with `filename` set.
    #[pyo3(signature = (path=String::from(".")))]
    fn listdir_attr(&self, py: Python<'_>, path: String) -> PyResult<Vec<SftpAttributes>> {
        let entries = self.call(py, |s| async move { s.read_dir(&path).await })?;
        Ok(entries
            .into_iter()
            .map(|e| SftpAttributes::new(&e.metadata, Some(e.name)))
            .collect())
    }

    /// Creates directory `path` with `mode` (default `0o777`, less the server's umask).
    #[pyo3(signature = (path, mode=0o777))]
    fn mkdir(&self, py: Python<'_>, path: String, mode: u32) -> PyResult<()> {
        self.call(py, |s| async move { s.create_dir(&path, mode).await })
    }

    /// Removes the empty directory `path`.
    fn rmdir(&self, py: Python<'_>, path: String) -> PyResult<()> {
        self.call(py, |s| async move { s.remove_dir(&path).await })
    }

    /// Removes the file `path`.
    fn remove(&self, py: Python<'_>, path: String) -> PyResult<()> {
        self.call(py, |s| async move { s.remove_file(&path).await })
    }

    /// Removes the file `path` (same as `remove`).
    fn unlink(&self, py: Python<'_>, path: String) -> PyResult<()> {
        self.remove(py, path)
    }

    /// Renames `oldpath` to `newpath`.
    fn rename(&self, py: Python<'_>, oldpath: String, newpath: String) -> PyResult<()> {
        self.call(py, |s| async move { s.rename(&oldpath, &newpath).await })
    }

    /// Ends the SFTP session (the connection stays open). SFTP sessions also end when
    /// the object is dropped.
    fn close(&self) {}

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        false
    }
}
