//! `ProxyCommand`: a local command whose stdin and stdout carry the SSH stream, as
//! OpenSSH runs it (`sh -c 'exec COMMAND'` with `%h %p %r %n %%` expanded). The process
//! runs in its own process group, its stderr is kept for error messages, and it is
//! killed (the whole group) and reaped when the connection ends or fails.

use std::io;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, BufReader, ReadBuf};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::error::{fmt_duration, Error, ErrorKind, Phase, Result};
use crate::ssh::connect_options::ConnectOptions;
use crate::ssh::diagnosis::quote;

/// Bytes of the command's stderr kept for messages (the last ones).
const STDERR_KEPT: usize = 2048;

/// How long a message about an exited command waits for the rest of its stderr (a
/// grandchild may hold the pipe open; then what has arrived is quoted).
const STDERR_SETTLE: Duration = Duration::from_millis(300);

/// `command` with OpenSSH's `ProxyCommand` tokens replaced: `%h` the host, `%p` the port,
/// `%r` the remote user, `%n` the name used in messages, `%%` a percent sign.
///
/// # Errors
/// [`ErrorKind::InvalidInput`] for any other `%` token, or a `%` at the end.
pub fn expand_tokens(
    command: &str,
    host: &str,
    port: u16,
    user: &str,
    name: &str,
) -> Result<String> {
    let mut out = String::with_capacity(command.len());
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('h') => out.push_str(host),
            Some('p') => out.push_str(&port.to_string()),
            Some('r') => out.push_str(user),
            Some('n') => out.push_str(name),
            Some('%') => out.push('%'),
            Some(other) => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "proxy command {command:?}: unknown token %{other} (known: %h %p %r %n %%)"
                    ),
                ))
            }
            None => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("proxy command {command:?} ends with a lone %"),
                ))
            }
        }
    }
    Ok(out)
}

/// Checks the `%` tokens of a proxy command before anything runs (see
/// [`ConnectOptions::proxy_command`]); `none` (any case) is fine.
///
/// # Errors
/// [`ErrorKind::InvalidInput`] naming the command and the unknown token, or a lone `%` at
/// the end.
pub fn check_proxy_command(command: &str) -> Result<()> {
    if command.trim().eq_ignore_ascii_case("none") {
        return Ok(());
    }
    expand_tokens(command, "h", 22, "r", "n").map(|_| ())
}

/// The running command, shared by its stream and the code explaining a failed connect.
/// Dropped with the last of them: the process group is killed and the child reaped.
pub(crate) struct ProxyProcess {
    command: String,
    child: Mutex<Option<Child>>,
    /// The process group (the child's pid), until the child is reaped.
    group: Mutex<Option<i32>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// Set by the stderr reader when it has seen the end of stderr.
    stderr_closed: Arc<AtomicBool>,
}

impl ProxyProcess {
    /// The exit status, if the process has ended (reaping it), waiting up to `wait`.
    async fn exit_status(&self, wait: Duration) -> Option<std::process::ExitStatus> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let status = match self.child.lock() {
                Ok(mut child) => child.as_mut().and_then(|c| c.try_wait().ok().flatten()),
                Err(_) => None,
            };
            if let Some(status) = status {
                if let Ok(mut group) = self.group.lock() {
                    *group = None;
                }
                return Some(status);
            }
            if tokio::time::Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits up to `wait` for the stderr reader to reach the end of stderr: once the
    /// process has exited, what it wrote last may still be in the pipe.
    async fn stderr_settled(&self, wait: Duration) {
        let until = tokio::time::Instant::now() + wait;
        while !self.stderr_closed.load(Ordering::Acquire) && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// `; its stderr: "..."` with the last lines of stderr, or nothing.
    fn stderr_text(&self) -> String {
        let bytes = self.stderr.lock().map(|b| b.clone()).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if lines.is_empty() {
            String::new()
        } else {
            format!("; its stderr: \"{}\"", quote(lines.join(" / ").as_bytes()))
        }
    }

    /// Kills the command's process group now (it is reaped when the last handle drops).
    /// Used when the handshake over it failed: the SSH transport task may still hold the
    /// stream, waiting on a command that stalls, and would keep it alive.
    pub(crate) fn kill(&self) {
        if let Ok(Some(group)) = self.group.lock().map(|g| *g) {
            // SAFETY: kill(2) with a negative pid signals the process group we created
            // (its leader is not reaped yet: `group` is cleared when it is).
            unsafe {
                libc::kill(-group, libc::SIGKILL);
            }
        }
        if let Ok(mut child) = self.child.lock() {
            if let Some(child) = child.as_mut() {
                let _ = child.start_kill();
            }
        }
    }

    /// `error` (a failed handshake over the command's stream) with what the command did.
    pub(crate) async fn explain(&self, error: Error) -> Error {
        let command = &self.command;
        let status = self.exit_status(Duration::from_millis(300)).await;
        if status.is_some() {
            self.stderr_settled(STDERR_SETTLE).await;
        }
        match status {
            Some(status) if error.kind() == ErrorKind::Disconnected => Error::new(
                ErrorKind::Connect,
                format!(
                    "proxy command {command:?} {} during the ssh handshake{}",
                    exited(status),
                    self.stderr_text()
                ),
            )
            .in_phase(Phase::Connect),
            Some(status) => {
                let message = format!(
                    "{} (proxy command {command:?} {}{})",
                    error.message(),
                    exited(status),
                    self.stderr_text()
                );
                error.with_message(message)
            }
            None => {
                let message = format!(
                    "{} (through proxy command {command:?}{})",
                    error.message(),
                    self.stderr_text()
                );
                error.with_message(message)
            }
        }
    }
}

fn exited(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "ended".to_owned(),
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Ok(Some(group)) = self.group.lock().map(|mut g| g.take()) {
            // SAFETY: kill(2) with a negative pid signals the process group we created
            // (the child is its leader and is not reaped yet, so the id is still ours).
            unsafe {
                libc::kill(-group, libc::SIGKILL);
            }
        }
        let Some(mut child) = self.child.lock().ok().and_then(|mut c| c.take()) else {
            return;
        };
        let _ = child.start_kill();
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let _ = child.wait().await;
                });
            }
            // No runtime: tokio reaps a killed child it drops on a best-effort basis.
            Err(_) => drop(child),
        }
    }
}

/// The command's stdout and stdin as one stream.
pub(crate) struct ProxyStream {
    reader: BufReader<ChildStdout>,
    writer: ChildStdin,
    /// Kept so that the process lives as long as the stream.
    _process: Arc<ProxyProcess>,
}

impl AsyncRead for ProxyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for ProxyStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.writer).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_shutdown(cx)
    }
}

/// Starts the proxy command for `options` and waits, within the connect deadline, for
/// its first bytes (the server's banner: an SSH server speaks first).
///
/// # Errors
/// [`ErrorKind::InvalidInput`] for a bad token; [`ErrorKind::Connect`] when the command
/// cannot be started or ends before sending anything; [`ErrorKind::Timeout`] (phase
/// connect) when it sends nothing within the deadline. The messages name the command
/// and quote its stderr.
pub(crate) async fn connect(
    command: &str,
    options: &ConnectOptions,
) -> Result<(ProxyStream, Arc<ProxyProcess>)> {
    let expanded = expand_tokens(
        command,
        options.hostname(),
        options.port_number(),
        options.user_name(),
        &options.display_name(),
    )?;
    let mut child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("exec {expanded}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            Error::new(
                ErrorKind::Connect,
                format!("cannot start proxy command {expanded:?}"),
            )
            .with_source(e)
            .in_phase(Phase::Connect)
        })?;
    let (Some(stdin), Some(stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(Error::new(
            ErrorKind::LocalIo,
            "proxy command without pipes",
        ));
    };
    let kept = Arc::new(Mutex::new(Vec::new()));
    let sink = kept.clone();
    let stderr_closed = Arc::new(AtomicBool::new(false));
    let closed = stderr_closed.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        while let Ok(n) = stderr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            if let (Ok(mut kept), Some(data)) = (sink.lock(), buf.get(..n)) {
                kept.extend_from_slice(data);
                let excess = kept.len().saturating_sub(STDERR_KEPT);
                kept.drain(..excess);
            }
        }
        closed.store(true, Ordering::Release);
    });
    let group = child.id().and_then(|id| i32::try_from(id).ok());
    let process = Arc::new(ProxyProcess {
        command: expanded,
        child: Mutex::new(Some(child)),
        group: Mutex::new(group),
        stderr: kept,
        stderr_closed,
    });
    let mut reader = BufReader::new(stdout);
    let deadline = options.timeouts().connect;
    match tokio::time::timeout(deadline, reader.fill_buf()).await {
        Err(_) => {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "timed out after {} waiting for proxy command {:?} to connect{}",
                    fmt_duration(deadline),
                    process.command,
                    process.stderr_text()
                ),
            )
            .in_phase(Phase::Connect))
        }
        Ok(Err(e)) => {
            return Err(Error::new(
                ErrorKind::Connect,
                format!("cannot read from proxy command {:?}", process.command),
            )
            .with_source(e)
            .in_phase(Phase::Connect))
        }
        Ok(Ok([])) => {
            let state = match process.exit_status(Duration::from_millis(500)).await {
                Some(status) => {
                    process.stderr_settled(STDERR_SETTLE).await;
                    exited(status)
                }
                None => "closed its stdout".to_owned(),
            };
            return Err(Error::new(
                ErrorKind::Connect,
                format!(
                    "proxy command {:?} {state} before sending anything{}",
                    process.command,
                    process.stderr_text()
                ),
            )
            .in_phase(Phase::Connect));
        }
        Ok(Ok(_)) => {}
    }
    let stream = ProxyStream {
        reader,
        writer: stdin,
        _process: process.clone(),
    };
    Ok((stream, process))
}
