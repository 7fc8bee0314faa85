//! A command on an SSH channel: the exec request, stdin written while output is read,
//! the end of the command (exit status, then the channel's close or a short drain), and
//! the stop sequence on deadline, cancellation or drop.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use russh::{ChannelMsg, Sig};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::output::{Collector, ExitStatus, OutputStream};
use super::stop::{
    group_marker_line, marker_line, nonce, password_line, spawn_reaper, PidMarker, Reaped,
    StopPlan, StopReason, Stopping, EXIT_DRAIN,
};
use super::sudo::{wrap, Become, PromptWatch};
use super::{Command, RunEnd, StdinFile};
use crate::error::{Error, ErrorKind, Phase, Result};
use crate::ssh::handler::ClientHandler;
use crate::ssh::session::russh_error;

type Connection = Arc<russh::client::Handle<ClientHandler>>;
type Writer = Arc<russh::ChannelWriteHalf<russh::client::Msg>>;
type Sending = Pin<Box<dyn Future<Output = Result<(), russh::Error>> + Send>>;

/// The next timed step of the loop.
#[derive(Debug, Clone, Copy)]
enum Timer {
    /// Start stopping: the deadline is one grace away.
    Term,
    /// The grace is over: `KILL`.
    Kill,
    /// Give up on the channel.
    End,
    /// The output stayed silent after the exit status: stop waiting for it.
    DrainEnd,
}

pub(super) async fn run(
    cmd: &Command<'_>,
    line: String,
    collector: &mut Collector,
    plan: &StopPlan,
) -> Result<RunEnd> {
    let connection = cmd.session.connection().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidInput,
            "a local session has no ssh channels",
        )
    })?;
    let nonce = nonce();
    let mut line = line;
    let sudo = cmd.sudo.clone();
    match &sudo {
        // The marker comes from the shell sudo starts: it also says the command started.
        Some(b) => line = wrap(&format!("{}{line}", group_marker_line(&nonce)), b, &nonce),
        None if cmd.report_pid => line.insert_str(0, &marker_line(&nonce)),
        None => {}
    }
    // Opening the channel and sending the request count against the deadline too.
    let start = async {
        let channel = cmd.session.open_channel().await?;
        let (read, write) = channel.split();
        let lost = |e: russh::Error| russh_error(e, "starting the command");
        if cmd.pty {
            write
                .request_pty(true, "xterm", 80, 24, 0, 0, &[])
                .await
                .map_err(lost)?;
        }
        write.exec(true, line.into_bytes()).await.map_err(lost)?;
        Ok::<_, Error>((read, write))
    };
    let (read, write) = match plan.deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, start)
            .await
            .map_err(|_| Error::timeout(Phase::Command, cmd.timeout.unwrap_or_default()))??,
        None => start.await?,
    };
    let write: Writer = Arc::new(write);
    // The channel is driven by a task of its own, so that dropping this future does not
    // drop the channel: the drop cancels `dropped`, and the task stops the command with
    // the same sequence as a cancellation (it keeps reading, so the process-id marker can
    // still arrive).
    let dropped = CancellationToken::new();
    let guard = dropped.clone().drop_guard();
    let driver = Driver {
        read,
        write,
        connection,
        collector: std::mem::replace(collector, Collector::new(None, None)),
        plan: plan.clone(),
        dropped,
        stdin: cmd.stdin.clone(),
        stdin_file: cmd.stdin_file.clone(),
        pty: cmd.pty,
        marker: (cmd.report_pid || sudo.is_some()).then(|| PidMarker::new(&nonce)),
        watch: sudo.as_ref().map(|_| PromptWatch::new(&nonce)),
        sudo,
    };
    let (end, returned) = tokio::spawn(driver.drive())
        .await
        .map_err(|_| Error::new(ErrorKind::LocalIo, "the command's task failed"))?;
    guard.disarm();
    *collector = returned;
    end
}

struct Driver {
    read: russh::ChannelReadHalf,
    write: Writer,
    connection: Connection,
    collector: Collector,
    plan: StopPlan,
    dropped: CancellationToken,
    stdin: Option<bytes::Bytes>,
    stdin_file: Option<StdinFile>,
    pty: bool,
    marker: Option<PidMarker>,
    /// With sudo: the prompts on stderr before the marker.
    watch: Option<PromptWatch>,
    sudo: Option<Become>,
}

/// Writes the command's stdin (bytes, or a local file in chunks), then EOF.
fn send_stdin(writer: Writer, bytes: Option<bytes::Bytes>, file: Option<StdinFile>) -> Sending {
    Box::pin(async move {
        if let Some(file) = file {
            use tokio::io::AsyncReadExt;
            let mut local = tokio::fs::File::open(&file.path).await?;
            let mut sent = 0u64;
            loop {
                let mut chunk = vec![0u8; 256 * 1024];
                let n = local.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                chunk.truncate(n);
                writer.data_bytes(chunk).await?;
                sent += n as u64;
                if let Some(progress) = &file.progress {
                    progress(sent);
                }
            }
        } else if let Some(bytes) = bytes {
            writer.data_bytes(bytes).await?;
        }
        writer.eof().await
    })
}

/// Passes a chunk on to the collector: the process-id marker removed from its stream,
/// and with sudo, the prompts removed from what came before the marker.
fn deliver(
    collector: &mut Collector,
    marker: &mut Option<PidMarker>,
    watch: &mut Option<PromptWatch>,
    marker_stream: OutputStream,
    stream: OutputStream,
    data: &[u8],
) {
    let Some(m) = marker.as_mut().filter(|_| stream == marker_stream) else {
        collector.push(stream, data);
        return;
    };
    let (before, after) = m.push_split(data);
    match watch.as_mut() {
        // Before the marker only sudo speaks (a lecture, "Sorry, try again"): kept to
        // explain a failure, never passed on as the command's own stderr.
        Some(w) => {
            w.push(&before);
            if m.pid().is_some() {
                w.finish();
            }
        }
        None => collector.push(stream, &before),
    }
    collector.push(stream, &after);
}

impl Driver {
    async fn drive(self) -> (Result<RunEnd>, Collector) {
        let Driver {
            mut read,
            write,
            connection,
            mut collector,
            plan,
            dropped,
            stdin,
            stdin_file,
            pty,
            mut marker,
            mut watch,
            sudo,
        } = self;
        let plan = &plan;
        let collector = &mut collector;
        let replies_expected = if pty { 2 } else { 1 };

        // Through sudo, stdin waits until the command has started (the marker); sudo
        // reads only the password, and only when it asks.
        let mut stdin = Some((stdin, stdin_file));
        let mut sending: Option<Sending> = None;
        if sudo.is_none() {
            if let Some((bytes, file)) = stdin.take() {
                sending = Some(send_stdin(write.clone(), bytes, file));
            }
        }
        let mut stdin_done = false;
        let mut prompts_answered = 0;
        let password = sudo.as_ref().and_then(|b| b.secret().cloned());

        // The marker comes on stderr, or on stdout through a pty.
        let marker_stream = if pty {
            OutputStream::Stdout
        } else {
            OutputStream::Stderr
        };
        let pid = |marker: &Option<PidMarker>| marker.as_ref().and_then(PidMarker::pid);

        let mut status: Option<ExitStatus> = None;
        let mut eof = false;
        let mut closed = false;
        let mut replies_seen = 0;
        let mut refused: Option<&'static str> = None;
        let mut stopping: Option<Stopping> = None;
        let mut drain_until: Option<Instant> = None;
        let mut output_open_after_exit = false;
        let mut reaper: Option<tokio::task::JoinHandle<Reaped>> = None;
        let mut reaped: Reaped = None;
        let cancel = plan.cancel.clone();
        let term_at = plan.term_at();
        let stop_requested = async {
            match &cancel {
                Some(t) => tokio::select! {
                    _ = t.cancelled() => {}
                    _ = dropped.cancelled() => {}
                },
                None => dropped.cancelled().await,
            }
        };
        tokio::pin!(stop_requested);

        let mut reaper_started = false;
        loop {
            // A stop that began before the process-id marker arrived gets its reaper now.
            if let (Some(s), false, Some(p)) = (&stopping, reaper_started, pid(&marker)) {
                if !closed {
                    let now = Instant::now();
                    reaper = Some(spawn_reaper(
                        connection.clone(),
                        p,
                        s.reaper_grace(now),
                        s.end_at.saturating_duration_since(now),
                        sudo.clone(),
                    ));
                    reaper_started = true;
                }
            }
            if closed && reaper.is_none() {
                break;
            }
            let timer: Option<(Instant, Timer)> = match (&stopping, drain_until) {
                (Some(s), _) if !s.kill_sent => Some((s.kill_at, Timer::Kill)),
                (Some(s), _) => Some((s.end_at, Timer::End)),
                (None, Some(until)) => Some((
                    plan.deadline.map_or(until, |d| d.min(until)),
                    Timer::DrainEnd,
                )),
                (None, None) if status.is_none() && !closed => term_at.map(|t| (t, Timer::Term)),
                (None, None) => None,
            };
            let can_cancel = stopping.is_none() && status.is_none() && !closed;
            tokio::select! {
                biased;
                msg = read.wait(), if !closed => match msg {
                    None | Some(ChannelMsg::Close) => closed = true,
                    Some(ChannelMsg::Data { data }) => {
                        deliver(collector, &mut marker, &mut watch, marker_stream, OutputStream::Stdout, &data);
                        if let Some(until) = drain_until.as_mut() {
                            *until = Instant::now() + EXIT_DRAIN;
                        }
                    }
                    Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                        deliver(collector, &mut marker, &mut watch, marker_stream, OutputStream::Stderr, &data);
                        let started = pid(&marker).is_some();
                        match watch.as_ref().map(PromptWatch::prompts) {
                            // sudo asks for the password: once, it gets it; again, it
                            // refused it, and gets nothing more.
                            Some(n) if !started && n > prompts_answered => {
                                prompts_answered = n;
                                match (n, &password) {
                                    (1, Some(p)) => {
                                        let _ = write.data(&password_line(p)[..]).await;
                                    }
                                    _ => {
                                        stdin = None;
                                        let _ = write.eof().await;
                                    }
                                }
                            }
                            Some(_) if started => {
                                if let Some((bytes, file)) = stdin.take() {
                                    sending = Some(send_stdin(write.clone(), bytes, file));
                                }
                            }
                            _ => {}
                        }
                        if let Some(until) = drain_until.as_mut() {
                            *until = Instant::now() + EXIT_DRAIN;
                        }
                    }
                    Some(ChannelMsg::Eof) => eof = true,
                    Some(ChannelMsg::ExitStatus { exit_status }) => {
                        status = Some(ExitStatus::Exited(exit_status));
                        if stopping.is_none() {
                            drain_until = Some(Instant::now() + EXIT_DRAIN);
                        }
                    }
                    Some(ChannelMsg::ExitSignal { signal_name, core_dumped, error_message, .. }) => {
                        status = Some(ExitStatus::Signaled {
                            signal: signal_name_of(&signal_name),
                            core_dumped,
                            message: error_message,
                        });
                        if stopping.is_none() {
                            drain_until = Some(Instant::now() + EXIT_DRAIN);
                        }
                    }
                    Some(ChannelMsg::Success) => replies_seen += 1,
                    Some(ChannelMsg::Failure) => {
                        replies_seen += 1;
                        refused = Some(if pty && replies_seen == 1 {
                            "the server refused to allocate a pty"
                        } else {
                            "the server refused to run the command"
                        });
                        // The server will close the channel; keep reading until then.
                        if replies_seen >= replies_expected {
                            let _ = write.close().await;
                        }
                    }
                    Some(_) => {}
                },
                _ = async { match sending.as_mut() { Some(f) => f.await, None => std::future::pending().await } }, if sending.is_some() && !stdin_done => stdin_done = true,
                r = async { match reaper.as_mut() { Some(h) => h.await.ok().flatten(), None => std::future::pending().await } }, if reaper.is_some() => {
                    reaped = r;
                    reaper = None;
                }
                _ = &mut stop_requested, if can_cancel => {
                    let now = Instant::now();
                    let s = plan.sequence(StopReason::Cancelled, now);
                    reaper = begin_stop(&write, &connection, pid(&marker), &s, now, &sudo).await;
                    reaper_started = reaper.is_some();
                    stopping = Some(s);
                    // A command being stopped gets no more input (nor EOF): an upload
                    // through sudo must not complete after its cancellation.
                    (sending, stdin) = (None, None);
                }
                _ = async { match timer { Some((at, _)) => sleep_until(at).await, None => std::future::pending().await } }, if timer.is_some() => {
                    let now = Instant::now();
                    match timer.map(|(_, t)| t) {
                        Some(Timer::Term) => {
                            let s = plan.sequence(StopReason::Timeout, now);
                            reaper = begin_stop(&write, &connection, pid(&marker), &s, now, &sudo).await;
                            reaper_started = reaper.is_some();
                            stopping = Some(s);
                            (sending, stdin) = (None, None);
                        }
                        Some(Timer::Kill) => {
                            let _ = write.signal(Sig::KILL).await;
                            if let Some(s) = stopping.as_mut() {
                                s.kill_sent = true;
                            }
                        }
                        Some(Timer::End) => {
                            let _ = write.close().await;
                            if let Some(h) = reaper.take() {
                                h.abort();
                            }
                            break;
                        }
                        Some(Timer::DrainEnd) => {
                            output_open_after_exit = !eof;
                            let _ = write.close().await;
                            break;
                        }
                        None => {}
                    }
                }
            }
        }
        if let Some(m) = marker.as_mut() {
            let rest = m.finish();
            match watch.as_mut().filter(|_| m.pid().is_none()) {
                // sudo never started the command: what it said (prompts removed) is
                // the output that explains why.
                Some(w) => {
                    w.push(&rest);
                    w.finish();
                    collector.push(marker_stream, w.said());
                }
                None => collector.push(marker_stream, &rest),
            }
        }
        if let Some(w) = watch.as_ref().filter(|_| pid(&marker).is_some()) {
            if !w.said().is_empty() {
                tracing::debug!(
                    said = %String::from_utf8_lossy(w.said()).trim_end(),
                    "sudo's messages before the command started (not part of its output)"
                );
            }
        }
        // Through sudo, an end without the marker is sudo's own: the command never ran.
        let become_failure = match (&sudo, &watch, &status) {
            (Some(b), Some(w), Some(st))
                if pid(&marker).is_none() && stopping.is_none() && refused.is_none() =>
            {
                Some(w.failure(st, b))
            }
            _ => None,
        };
        if let Some(why) = refused {
            return (
                Err(Error::new(ErrorKind::Channel, why)),
                std::mem::replace(collector, Collector::new(None, None)),
            );
        }
        let confirmed = match (stopping.is_some(), reaped) {
            (false, _) => true,
            (true, Some(gone)) => gone,
            // No reaper ran (no process id) or it could not report: the command's own end
            // is the best there is.
            (true, None) => status.is_some() && closed,
        };
        let end = RunEnd {
            status,
            stop: stopping.map(|s| s.reason),
            confirmed,
            output_open_after_exit,
            become_failure,
        };
        (
            Ok(end),
            std::mem::replace(collector, Collector::new(None, None)),
        )
    }
}

/// `TERM` by `signal` request, and the reaper on a second channel when the process id
/// is known.
async fn begin_stop(
    write: &Writer,
    connection: &Connection,
    pid: Option<u32>,
    stopping: &Stopping,
    now: Instant,
    sudo: &Option<Become>,
) -> Option<tokio::task::JoinHandle<Reaped>> {
    let _ = write.signal(Sig::TERM).await;
    pid.map(|pid| {
        spawn_reaper(
            connection.clone(),
            pid,
            stopping.reaper_grace(now),
            stopping.end_at.saturating_duration_since(now),
            sudo.clone(),
        )
    })
}

fn signal_name_of(sig: &Sig) -> String {
    match sig {
        Sig::ABRT => "ABRT",
        Sig::ALRM => "ALRM",
        Sig::FPE => "FPE",
        Sig::HUP => "HUP",
        Sig::ILL => "ILL",
        Sig::INT => "INT",
        Sig::KILL => "KILL",
        Sig::PIPE => "PIPE",
        Sig::QUIT => "QUIT",
        Sig::SEGV => "SEGV",
        Sig::TERM => "TERM",
        Sig::USR1 => "USR1",
        Sig::Custom(name) => return name.clone(),
    }
    .to_owned()
}
