//! The local transport's processes: a command of a local session ([`Session::local`](crate::Session::local))
//! runs as `sh -c LINE` in its own process group, with the same deadline, cancellation
//! and output semantics as over SSH. Not an SSH module: only the [`Command`] builder and
//! its output collection and stop plan (`ssh::command`) are shared, and [`Session`]'s
//! `Local` transport stays in `ssh::session` because a local host is driven through the
//! same `Session` handle as a remote one.
//!
//! [`Session`]: crate::Session

use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep_until, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::ssh::command::output::{Collector, ExitStatus, OutputStream};
use crate::ssh::command::stop::{StopPlan, StopReason, Stopping, EXIT_DRAIN};
use crate::ssh::command::{Command, RunEnd};

pub(crate) async fn run(
    cmd: &Command<'_>,
    line: String,
    collector: &mut Collector,
    plan: &StopPlan,
) -> Result<RunEnd> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(line)
        .stdin(if cmd.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a stop reaches everything it started.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::new(ErrorKind::LocalIo, "cannot start a local shell").with_source(e))?;
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    let mut guard = StopOnDrop {
        pid,
        grace: cmd.kill_grace,
    };
    let stdin = child.stdin.take();
    let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(Error::new(
            ErrorKind::LocalIo,
            "local process has no output pipes",
        ));
    };
    let bytes = cmd.stdin.clone();
    let send_stdin = async move {
        if let (Some(mut pipe), Some(bytes)) = (stdin, bytes) {
            let _ = pipe.write_all(&bytes).await;
        }
    };
    tokio::pin!(send_stdin);
    let mut stdin_done = false;
    let (mut out_buf, mut err_buf) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    let (mut out_open, mut err_open) = (true, true);
    let mut exit = None;
    let mut stopping: Option<Stopping> = None;
    let mut drain_until: Option<Instant> = None;
    let mut output_open_after_exit = false;
    let term_at = plan.term_at();
    let cancel = plan.cancel.clone();
    loop {
        if !out_open && !err_open && exit.is_some() {
            break;
        }
        let timer = match (&stopping, drain_until) {
            (Some(s), _) if !s.kill_sent => Some(s.kill_at),
            (Some(s), _) => Some(s.end_at),
            (None, Some(until)) => Some(plan.deadline.map_or(until, |d| d.min(until))),
            (None, None) if exit.is_none() => term_at,
            (None, None) => None,
        };
        let can_cancel = cancel.is_some() && stopping.is_none() && exit.is_none();
        tokio::select! {
            n = out.read(&mut out_buf), if out_open => match n {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => {
                    collector.push(OutputStream::Stdout, out_buf.get(..n).unwrap_or_default());
                    if let Some(until) = drain_until.as_mut() {
                        *until = Instant::now() + EXIT_DRAIN;
                    }
                }
            },
            n = err.read(&mut err_buf), if err_open => match n {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => {
                    collector.push(OutputStream::Stderr, err_buf.get(..n).unwrap_or_default());
                    if let Some(until) = drain_until.as_mut() {
                        *until = Instant::now() + EXIT_DRAIN;
                    }
                }
            },
            _ = &mut send_stdin, if !stdin_done => stdin_done = true,
            status = child.wait(), if exit.is_none() => {
                exit = Some(status);
                if stopping.is_none() {
                    drain_until = Some(Instant::now() + EXIT_DRAIN);
                }
            }
            _ = async { match &cancel { Some(t) => t.cancelled().await, None => std::future::pending().await } }, if can_cancel => {
                stopping = Some(plan.sequence(StopReason::Cancelled, Instant::now()));
                if let Some(pid) = pid {
                    kill_group(pid, libc::SIGTERM);
                }
            }
            _ = async { match timer { Some(at) => sleep_until(at).await, None => std::future::pending().await } }, if timer.is_some() => {
                match stopping.as_mut() {
                    None if drain_until.is_some() => {
                        output_open_after_exit = out_open || err_open;
                        break;
                    }
                    None => {
                        stopping = Some(plan.sequence(StopReason::Timeout, Instant::now()));
                        if let Some(pid) = pid {
                            kill_group(pid, libc::SIGTERM);
                        }
                    }
                    Some(s) if !s.kill_sent => {
                        s.kill_sent = true;
                        if let Some(pid) = pid {
                            kill_group(pid, libc::SIGKILL);
                        }
                    }
                    Some(_) => break,
                }
            }
        }
    }
    guard.disarm();
    let status = match exit {
        Some(Ok(status)) => Some(local_status(status)),
        Some(Err(e)) => {
            return Err(
                Error::new(ErrorKind::LocalIo, "cannot wait for a local process").with_source(e),
            )
        }
        None => None,
    };
    // A stopped group is confirmed gone when nothing in it is left.
    let confirmed = match (stopping.is_some(), pid) {
        (false, _) => true,
        (true, Some(pid)) => {
            // SAFETY: probing a process group this crate created (signal 0 sends nothing).
            unsafe { libc::kill(-pid, 0) != 0 }
        }
        (true, None) => status.is_some(),
    };
    Ok(RunEnd {
        status,
        stop: stopping.map(|s| s.reason),
        confirmed,
        output_open_after_exit,
        become_failure: None,
    })
}

/// Stops a local command whose future was dropped: `TERM` to its group now, `KILL` after
/// the grace period.
struct StopOnDrop {
    pid: Option<i32>,
    grace: std::time::Duration,
}

impl StopOnDrop {
    fn disarm(&mut self) {
        self.pid = None;
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let Some(pid) = self.pid.take() else {
            return;
        };
        kill_group(pid, libc::SIGTERM);
        let grace = self.grace;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                tokio::time::sleep(grace).await;
                kill_group(pid, libc::SIGKILL);
            });
        }
    }
}

fn kill_group(pid: i32, signal: i32) {
    // SAFETY: signalling a process group this crate created; at worst it is already gone
    // and kill returns ESRCH.
    unsafe { libc::kill(-pid, signal) };
}

fn local_status(status: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return ExitStatus::Exited(u32::try_from(code).unwrap_or(255));
    }
    match status.signal() {
        Some(sig) => ExitStatus::Signaled {
            signal: signal_name_from_number(sig),
            core_dumped: status.core_dumped(),
            message: String::new(),
        },
        None => ExitStatus::Unknown,
    }
}

fn signal_name_from_number(sig: i32) -> String {
    let name = match sig {
        libc::SIGABRT => "ABRT",
        libc::SIGALRM => "ALRM",
        libc::SIGFPE => "FPE",
        libc::SIGHUP => "HUP",
        libc::SIGILL => "ILL",
        libc::SIGINT => "INT",
        libc::SIGKILL => "KILL",
        libc::SIGPIPE => "PIPE",
        libc::SIGQUIT => "QUIT",
        libc::SIGSEGV => "SEGV",
        libc::SIGTERM => "TERM",
        libc::SIGUSR1 => "USR1",
        libc::SIGUSR2 => "USR2",
        libc::SIGBUS => "BUS",
        other => return format!("{other}"),
    };
    name.to_owned()
}
