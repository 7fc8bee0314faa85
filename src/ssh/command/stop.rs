//! Stopping a remote command for sure, on every kind of session.
//!
//! OpenSSH honours the SSH `signal` channel request (RFC 4254 §6.9) only for sessions of
//! unprivileged users without `ForceCommand`: for root logins and forced commands sshd
//! 9.2 logs `session signalling requires privilege separation` and does nothing, and the
//! request has no reply. So rexec does not rely on it alone:
//!
//! - the command line starts with a `printf` that reports the remote shell's process id
//!   on stderr between two `RS` (0x1e) bytes with a random nonce ([`PidMarker`] finds and
//!   strips it, so the command's stderr is exactly what it wrote);
//! - to stop the command, rexec sends the `signal` request (enough where sshd honours it)
//!   and runs a small POSIX shell script on a second channel of the same connection
//!   ([`reaper_script`]): `TERM` to the command's process group, a poll until the group
//!   is gone, `KILL` at the end of the grace, and an exit status that says whether the
//!   group is gone. That works for root and for plain users alike.
//!
//! The reaper only runs when the marker arrived: it proves that the login shell ran
//! rexec's line as written. Under a `ForceCommand` that ignores the requested command,
//! no marker arrives and nothing else is executed (another exec request would only run
//! the forced command again); the result then says the command may still be running.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use russh::client::Handle;
use russh::ChannelMsg;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::sudo::{wrap, Become, PromptWatch};
use crate::secret::Secret;
use crate::ssh::handler::ClientHandler;
use crate::ssh::quote::shell_quote;

/// How long the output may stay silent after the exit status arrived before rexec stops
/// waiting for a background process that holds it.
pub(crate) const EXIT_DRAIN: Duration = Duration::from_secs(1);

/// Time after `KILL` for the server to confirm the end, when stopping on cancellation.
const CONFIRM: Duration = Duration::from_secs(3);

/// When and how a command is stopped.
#[derive(Debug, Clone)]
pub(crate) struct StopPlan {
    /// The hard end of the command phase: the result is ready by then.
    pub(crate) deadline: Option<Instant>,
    /// The grace before a deadline: `TERM` goes out this long before it.
    pub(crate) deadline_grace: Duration,
    /// The grace between `TERM` and `KILL` on cancellation.
    pub(crate) grace: Duration,
    pub(crate) cancel: Option<CancellationToken>,
}

impl StopPlan {
    /// `timeout` counted from now. The grace used before a deadline is the kill grace,
    /// but at most a quarter of the timeout (or 1 s, when that is at most half of it), so
    /// the command keeps most of its time and the stop still has time to be confirmed.
    pub(crate) fn new(
        timeout: Option<Duration>,
        kill_grace: Duration,
        cancel: Option<CancellationToken>,
    ) -> StopPlan {
        let now = Instant::now();
        StopPlan {
            deadline: timeout.map(|t| now + t),
            deadline_grace: timeout.map_or(kill_grace, |t| {
                kill_grace.min((t / 4).max(Duration::from_secs(1).min(t / 2)))
            }),
            grace: kill_grace,
            cancel,
        }
    }

    /// When the stop sequence starts if nothing else happens first.
    pub(crate) fn term_at(&self) -> Option<Instant> {
        self.deadline.map(|d| d - self.deadline_grace)
    }

    /// The sequence that starts at `now` for `reason`.
    pub(crate) fn sequence(&self, reason: StopReason, now: Instant) -> Stopping {
        match (reason, self.deadline) {
            (StopReason::Timeout, Some(deadline)) => Stopping {
                reason,
                kill_at: now + self.deadline_grace / 2,
                end_at: deadline.max(now),
                kill_sent: false,
            },
            _ => {
                let end_at = now + self.grace + CONFIRM;
                Stopping {
                    reason,
                    kill_at: now + self.grace,
                    end_at: self.deadline.map_or(end_at, |d| d.max(now).min(end_at)),
                    kill_sent: false,
                }
            }
        }
    }
}

/// Why a command was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    Timeout,
    Cancelled,
}

/// A stop in progress.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stopping {
    pub(crate) reason: StopReason,
    pub(crate) kill_at: Instant,
    pub(crate) end_at: Instant,
    pub(crate) kill_sent: bool,
}

impl Stopping {
    /// The grace the reaper waits between `TERM` and `KILL`.
    pub(crate) fn reaper_grace(&self, now: Instant) -> Duration {
        self.kill_at.saturating_duration_since(now)
    }
}

/// A fresh nonce for one command's process-id marker.
pub(crate) fn nonce() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

/// The first line of a tracked command: prints `RS rexec-NONCE-PID RS` on stderr.
pub(crate) fn marker_line(nonce: &str) -> String {
    format!("printf '\\036rexec-{nonce}-%s\\036' \"$$\" >&2\n")
}

/// The first line of a command run through sudo: the same marker, carrying the process
/// group of the shell that sudo started instead of its process id.
///
/// Without a pty sudo does not give the command a process group of its own: the shell
/// shares sudo's (the session's) group, and when that shell dies first (`TERM` relayed by
/// sudo) its children stay in the group while the shell's pid names no group at all. So
/// the group is read when the command starts: field 5 of `/proc/$$/stat` (the shell's
/// name, field 2, is `sh`: no spaces), or sudo's pid (`$PPID`, the session leader) where
/// there is no `/proc`. The variables are removed before the command runs.
pub(crate) fn group_marker_line(nonce: &str) -> String {
    format!(
        "__rexec_g=$PPID\n\
         read -r __rexec_1 __rexec_2 __rexec_3 __rexec_4 __rexec_g __rexec_5 2>/dev/null </proc/$$/stat\n\
         printf '\\036rexec-{nonce}-%s\\036' \"$__rexec_g\" >&2\n\
         unset __rexec_1 __rexec_2 __rexec_3 __rexec_4 __rexec_5 __rexec_g\n"
    )
}

/// Finds the process-id marker in a stream and removes it; every other byte passes
/// through unchanged and in order. At most the length of a marker is held back while a
/// partial marker could be forming.
pub(crate) struct PidMarker {
    prefix: Vec<u8>,
    pending: Vec<u8>,
    found: Option<u32>,
    done: bool,
}

/// Digits of a pid at most (Linux: 4194304).
const MAX_PID_DIGITS: usize = 10;

impl PidMarker {
    pub(crate) fn new(nonce: &str) -> PidMarker {
        PidMarker {
            prefix: format!("\x1erexec-{nonce}-").into_bytes(),
            pending: Vec::new(),
            found: None,
            done: false,
        }
    }

    /// The remote shell's process id, once seen.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.found
    }

    /// Feeds a chunk; returns the bytes to pass on.
    #[cfg(test)]
    pub(crate) fn push(&mut self, data: &[u8]) -> Vec<u8> {
        let (mut before, after) = self.push_split(data);
        before.extend_from_slice(&after);
        before
    }

    /// Feeds a chunk; returns the bytes to pass on, split where the marker stood: what
    /// came before it, and what came after it (everything, once the marker was found in
    /// an earlier chunk; nothing, while it has not been found).
    pub(crate) fn push_split(&mut self, data: &[u8]) -> (Vec<u8>, Vec<u8>) {
        if self.done {
            return (Vec::new(), data.to_vec());
        }
        self.pending.extend_from_slice(data);
        let buf = std::mem::take(&mut self.pending);
        let mut out = Vec::with_capacity(buf.len());
        let mut rest: &[u8] = &buf;
        loop {
            let Some(start) = rest.iter().position(|&b| b == 0x1e) else {
                out.extend_from_slice(rest);
                return (out, Vec::new());
            };
            out.extend_from_slice(rest.get(..start).unwrap_or_default());
            let candidate = rest.get(start..).unwrap_or_default();
            match self.match_at(candidate) {
                Match::Marker { pid, len } => {
                    self.found = Some(pid);
                    self.done = true;
                    return (out, candidate.get(len..).unwrap_or_default().to_vec());
                }
                Match::Incomplete => {
                    self.pending = candidate.to_vec();
                    return (out, Vec::new());
                }
                Match::No => {
                    out.push(0x1e);
                    rest = candidate.get(1..).unwrap_or_default();
                }
            }
        }
    }

    /// The end of the stream: whatever was held back.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        self.done = true;
        std::mem::take(&mut self.pending)
    }

    fn match_at(&self, candidate: &[u8]) -> Match {
        let n = self.prefix.len().min(candidate.len());
        if candidate.get(..n) != self.prefix.get(..n) {
            return Match::No;
        }
        if candidate.len() < self.prefix.len() {
            return Match::Incomplete;
        }
        let after = candidate.get(self.prefix.len()..).unwrap_or_default();
        let digits = after.iter().take_while(|b| b.is_ascii_digit()).count();
        match after.get(digits) {
            None if digits <= MAX_PID_DIGITS => Match::Incomplete,
            Some(0x1e) if (1..=MAX_PID_DIGITS).contains(&digits) => {
                let pid = std::str::from_utf8(after.get(..digits).unwrap_or_default())
                    .ok()
                    .and_then(|s| s.parse::<u32>().ok());
                match pid {
                    Some(pid) if pid > 1 => Match::Marker {
                        pid,
                        len: self.prefix.len() + digits + 1,
                    },
                    _ => Match::No,
                }
            }
            _ => Match::No,
        }
    }
}

enum Match {
    Marker { pid: u32, len: usize },
    Incomplete,
    No,
}

/// The reaper: stops the process group of `pid` and says whether it is gone.
///
/// Exit status 0: the group is gone (or was gone already); 3: something survived
/// `KILL`. The group is looked up with `ps` or `/proc` (the shell is normally its own
/// group leader: sshd calls `setsid` for every session) and never is 0 or 1. After
/// `KILL`, a member counts as alive unless `ps` shows it as a zombie (killed, waiting for
/// its parent to reap it). Polls every 100 ms (`sleep 0.1` where `sleep` takes fractions, whole
/// seconds elsewhere); `KILL` goes out after `grace`.
pub(crate) fn reaper_script(pid: u32, grace: Duration) -> String {
    let steps = grace.as_millis().div_ceil(100).max(1);
    format!(
        "p={pid}\n\
         g=$(ps -o pgid= -p $p 2>/dev/null | tr -d ' ')\n\
         [ -n \"$g\" ] || g=$(cut -d')' -f2- /proc/$p/stat 2>/dev/null | cut -d' ' -f4)\n\
         case \"$g\" in ''|*[!0-9]*) g=$p;; esac\n\
         [ \"$g\" -gt 1 ] || exit 4\n\
         alive() {{\n\
         \x20 if ps -A -o pgid= -o stat= >/dev/null 2>&1; then\n\
         \x20   ps -A -o pgid= -o stat= | awk -v g=\"$g\" '$1 == g && $2 !~ /^Z/ {{ f = 1 }} END {{ exit !f }}'\n\
         \x20 else\n\
         \x20   kill -0 -$g 2>/dev/null\n\
         \x20 fi\n\
         }}\n\
         nap() {{ if sleep 0.1 2>/dev/null; then n=$((n+1)); else sleep 1; n=$((n+10)); fi; }}\n\
         kill -TERM -$g 2>/dev/null || kill -TERM $p 2>/dev/null || exit 0\n\
         n=0\n\
         while kill -0 -$g 2>/dev/null; do\n\
         \x20 [ $n -ge {steps} ] && break\n\
         \x20 nap\n\
         done\n\
         alive || exit 0\n\
         kill -KILL -$g 2>/dev/null\n\
         n=0\n\
         while alive; do\n\
         \x20 [ $n -ge 20 ] && exit 3\n\
         \x20 nap\n\
         done\n\
         exit 0\n"
    )
}

/// What the reaper found: `Some(true)` the process group is gone, `Some(false)` something
/// survived `KILL`, `None` the reaper could not run or report.
pub(crate) type Reaped = Option<bool>;

/// Runs the reaper on a new channel of `connection`; bounded by `limit`. With `sudo`
/// (a command run through sudo), the reaper runs through sudo as the same user, with the
/// password sent when sudo asks for it: a login user cannot signal the target user's
/// processes. A root login runs it directly.
pub(crate) fn spawn_reaper(
    connection: Arc<Handle<ClientHandler>>,
    pid: u32,
    grace: Duration,
    limit: Duration,
    sudo: Option<Become>,
) -> tokio::task::JoinHandle<Reaped> {
    tokio::spawn(async move {
        let run = async {
            let mut channel = connection.channel_open_session().await.ok()?;
            let script = reaper_script(pid, grace);
            let nonce = nonce();
            let (line, mut watch) = match &sudo {
                // A root login signals anyone: no sudo (its start-up and PAM would eat
                // into the grace).
                Some(b) => (
                    format!(
                        "[ \"$(id -u)\" = 0 ] && exec /bin/sh -c {}\n{}",
                        shell_quote(&script),
                        wrap(&script, b, &nonce)
                    ),
                    Some(PromptWatch::new(&nonce)),
                ),
                None => (script, None),
            };
            channel.exec(false, line.into_bytes()).await.ok()?;
            let password = sudo.as_ref().and_then(|b| b.secret().cloned());
            if password.is_none() {
                let _ = channel.eof().await;
            }
            let mut status = None;
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        let Some(w) = watch.as_mut() else { continue };
                        let before = w.prompts();
                        w.push(&data);
                        if w.prompts() > before {
                            if let (1, Some(p)) = (w.prompts(), &password) {
                                let _ = channel.data(&password_line(p)[..]).await;
                            }
                            let _ = channel.eof().await;
                        }
                    }
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
            tracing::debug!(?status, "reaper ended");
            match status {
                Some(0) => Some(true),
                Some(3) => Some(false),
                _ => None,
            }
        };
        let reaped = tokio::time::timeout(limit, run).await;
        if reaped.is_err() {
            tracing::debug!(?limit, "the reaper did not report in time");
        }
        reaped.ok().flatten()
    })
}

/// `password` and a newline, as sudo reads it, wiped on drop.
pub(crate) fn password_line(password: &Secret) -> zeroize::Zeroizing<Vec<u8>> {
    let mut line = zeroize::Zeroizing::new(Vec::with_capacity(password.expose().len() + 1));
    line.extend_from_slice(password.expose().as_bytes());
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_is_removed_wherever_the_chunks_split() {
        let nonce = "0123456789abcdef";
        let stream = format!("noise\x1e before\x1erexec-{nonce}-4242\x1eafter\x1e end");
        let bytes = stream.as_bytes();
        for split in 0..bytes.len() {
            for split2 in split..bytes.len() {
                let mut m = PidMarker::new(nonce);
                let mut out = m.push(&bytes[..split]);
                out.extend(m.push(&bytes[split..split2]));
                out.extend(m.push(&bytes[split2..]));
                out.extend(m.finish());
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    "noise\x1e beforeafter\x1e end",
                    "{split} {split2}"
                );
                assert_eq!(m.pid(), Some(4242));
            }
        }
    }

    #[test]
    fn other_nonces_and_broken_markers_pass_through() {
        let mut m = PidMarker::new("0123456789abcdef");
        let text = "\x1erexec-ffffffffffffffff-12\x1e \x1erexec-0123456789abcdef-x\x1e";
        let mut out = m.push(text.as_bytes());
        out.extend(m.finish());
        assert_eq!(String::from_utf8(out).unwrap(), text);
        assert_eq!(m.pid(), None);
        // An unfinished marker at the end of the stream is given back.
        let mut m = PidMarker::new("0123456789abcdef");
        let partial = "x\x1erexec-0123456789abcdef-99";
        let mut out = m.push(partial.as_bytes());
        out.extend(m.finish());
        assert_eq!(String::from_utf8(out).unwrap(), partial);
    }

    /// The reaper script itself, under dash and bash, against a session like sshd makes
    /// (`setsid`): a group with a child that ignores TERM is gone, and it says so.
    #[test]
    fn the_reaper_stops_a_whole_group_under_dash_and_bash() {
        for shell in ["dash", "bash"] {
            let tag = format!("{}{}", std::process::id(), shell.len());
            let mut group = std::process::Command::new("setsid")
                .args([
                    "sh",
                    "-c",
                    &format!("(trap '' TERM; sleep 30.{tag}) & sleep 30.{tag}"),
                ])
                .spawn()
                .unwrap();
            let pid = group.id();
            let count = || {
                std::process::Command::new("pgrep")
                    .args(["-f", &format!("^sleep 30.{tag}$")])
                    .output()
                    .unwrap()
                    .stdout
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .count()
            };
            let start = std::time::Instant::now();
            while count() < 2 && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(count(), 2, "{shell}: the group did not start");
            let status = std::process::Command::new(shell)
                .args(["-c", &reaper_script(pid, Duration::from_millis(300))])
                .status()
                .unwrap();
            let _ = group.wait();
            assert_eq!(status.code(), Some(0), "{shell}");
            assert_eq!(count(), 0, "{shell}: survivors");
            // Nothing left to stop: still 0.
            let status = std::process::Command::new(shell)
                .args(["-c", &reaper_script(pid, Duration::from_millis(300))])
                .status()
                .unwrap();
            assert_eq!(status.code(), Some(0), "{shell}");
        }
    }

    #[test]
    fn the_deadline_grace_is_at_most_a_quarter_of_the_timeout() {
        let plan = StopPlan::new(Some(Duration::from_secs(6)), Duration::from_secs(2), None);
        assert_eq!(plan.deadline_grace, Duration::from_millis(1500));
        let plan = StopPlan::new(Some(Duration::from_secs(3)), Duration::from_secs(2), None);
        assert_eq!(plan.deadline_grace, Duration::from_secs(1));
        let plan = StopPlan::new(Some(Duration::from_secs(1)), Duration::from_secs(2), None);
        assert_eq!(plan.deadline_grace, Duration::from_millis(500));
        let plan = StopPlan::new(Some(Duration::from_secs(60)), Duration::from_secs(2), None);
        assert_eq!(plan.deadline_grace, Duration::from_secs(2));
        let s = plan.sequence(StopReason::Timeout, plan.term_at().unwrap());
        assert_eq!(s.end_at, plan.deadline.unwrap());
        assert!(s.kill_at < s.end_at);
    }
}
