//! Opening the `sftp` subsystem on a connection and learning what the server offers.
//!
//! Two ways a server can fail to start SFTP are told apart from a plain "no sftp":
//! - It refuses the subsystem request (no `Subsystem sftp` line in sshd_config): the
//!   request is sent with want-reply and the refusal ends the attempt at once.
//! - The user's login shell prints text before `sftp-server` starts (sshd runs the
//!   subsystem through the login shell, which reads its start-up files): the first bytes
//!   on the channel are then not an SFTP `VERSION` packet. They are checked as they arrive
//!   and quoted in the error, as OpenSSH's FAQ explains the same failure.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use russh::ChannelMsg;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

use super::{Features, DEFAULT_CHUNK, READS_IN_FLIGHT, WRITES_IN_FLIGHT};
use crate::error::{Error, ErrorKind, Result};
use crate::ssh::handler::ClientHandler;
use crate::ssh::session::{open_channel_on, russh_error};
use russh::client::Handle;
use russh_sftp::client::RawSftpSession;

/// How long the server may take to answer the subsystem request and the `INIT` packet
/// (the request timeout rexec gives russh-sftp).
const START_TIMEOUT_SECS: u64 = 60;

/// The largest `VERSION` packet accepted as the start of SFTP. OpenSSH's is about 300
/// bytes; anything larger than a maximum SFTP packet is text, not SFTP.
const MAX_VERSION_PACKET: u32 = 256 * 1024;

/// SFTP's `SSH_FXP_VERSION` packet type.
const SSH_FXP_VERSION: u8 = 2;

/// At most this much of what arrived instead of SFTP is kept to quote in the error.
const QUOTE_MAX: usize = 200;

/// How long the rest of such text is waited for (it may come in several pieces).
const QUOTE_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

pub(super) async fn open_raw(
    connection: &Handle<ClientHandler>,
    host: &str,
) -> Result<(RawSftpSession, Features)> {
    let mut channel = open_channel_on(connection, host).await?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| russh_error(e, "starting sftp").with_host(host))?;
    let early = tokio::time::timeout(
        std::time::Duration::from_secs(START_TIMEOUT_SECS),
        subsystem_reply(&mut channel),
    )
    .await
    .map_err(|_| {
        Error::new(
            ErrorKind::Timeout,
            "the server did not answer the sftp subsystem request",
        )
        .with_host(host)
    })?
    .map_err(|e| e.with_host(host))?;
    let (verdict_tx, mut verdict) = watch::channel(Start::Pending);
    let head = Arc::new(Mutex::new(Vec::new()));
    let stream = CheckedStart {
        inner: channel.into_stream(),
        early,
        head: head.clone(),
        verdict: verdict_tx,
        collecting: None,
    };
    let config = russh_sftp::client::Config {
        max_concurrent_reads: READS_IN_FLIGHT,
        max_concurrent_writes: WRITES_IN_FLIGHT,
        request_timeout_secs: START_TIMEOUT_SECS,
        ..Default::default()
    };
    let mut raw = RawSftpSession::new_with_config(stream, config);
    // russh-sftp leaves a request waiting for its timeout when the stream fails, so the
    // start check's verdict is raced with the reply.
    let version = tokio::select! {
        version = raw.init() => version.map_err(Some),
        _ = async {
            let failed = verdict.wait_for(|v| *v == Start::NotSftp || *v == Start::Ended).await;
            if failed.is_err() {
                // The stream is gone without a verdict: init's own error will come.
                std::future::pending::<()>().await;
            }
        } => Err(None),
    };
    let version = match version {
        Ok(v) => v,
        Err(cause) => {
            let head = head.lock().map(|h| h.clone()).unwrap_or_default();
            let state = *verdict.borrow();
            let error = start_error(state, &head);
            return Err(match cause {
                Some(c) if state == Start::Pending || state == Start::Sftp => error.with_source(c),
                _ => error,
            }
            .with_host(host));
        }
    };
    let has = |name: &str| version.extensions.contains_key(name);
    let mut chunk = DEFAULT_CHUNK;
    if has("limits@openssh.com") {
        if let Ok(limits) = raw.limits().await {
            let bounded = |v: u64| usize::try_from(v).ok().filter(|v| *v > 0);
            if let Some(w) = bounded(limits.max_write_len) {
                chunk = chunk.min(w);
            }
            if let Some(r) = bounded(limits.max_read_len) {
                chunk = chunk.min(r);
            }
            raw.set_limits(russh_sftp::client::rawsession::Limits::from(limits));
        }
    }
    let features = Features {
        posix_rename: has("posix-rename@openssh.com"),
        fsync: has("fsync@openssh.com"),
        statvfs: has("statvfs@openssh.com"),
        chunk,
    };
    Ok((raw, features))
}

/// Waits for the server's answer to the subsystem request. Returns the channel data that
/// arrived before it (sshd sends none; kept rather than lost if a server does).
async fn subsystem_reply(channel: &mut russh::Channel<russh::client::Msg>) -> Result<Vec<u8>> {
    let mut early = Vec::new();
    loop {
        match channel.wait().await {
            Some(ChannelMsg::Success) => return Ok(early),
            Some(ChannelMsg::Failure) => {
                return Err(Error::new(
                    ErrorKind::Channel,
                    "the server refused the sftp subsystem (no Subsystem sftp in sshd_config?)",
                ))
            }
            Some(ChannelMsg::Data { data }) => early.extend_from_slice(&data),
            Some(ChannelMsg::Eof | ChannelMsg::Close) | None => {
                return Err(Error::new(
                    ErrorKind::Channel,
                    "the server closed the channel instead of starting sftp",
                ))
            }
            Some(_) => {}
        }
    }
}

/// What the first bytes on the channel showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Fewer than 5 bytes so far.
    Pending,
    /// They begin an SFTP `VERSION` packet.
    Sftp,
    /// They are something else (text from the login shell).
    NotSftp,
    /// The channel ended before 5 bytes came.
    Ended,
}

/// What the first bytes say, decided as early as they allow (russh-sftp reads the
/// 4-byte length first and gives up on a huge one by itself): text never starts with the
/// zero byte that begins every plausible packet length.
fn start_of(head: &[u8]) -> Start {
    let len = head.get(..4).map(|b| {
        u32::from_be_bytes([
            b.first().copied().unwrap_or(0),
            b.get(1).copied().unwrap_or(0),
            b.get(2).copied().unwrap_or(0),
            b.get(3).copied().unwrap_or(0),
        ])
    });
    match (head.first(), len, head.get(4)) {
        (None, _, _) => Start::Pending,
        (Some(&first), _, _) if first != 0 => Start::NotSftp,
        (_, Some(len), _) if !(5..=MAX_VERSION_PACKET).contains(&len) => Start::NotSftp,
        (_, _, Some(&kind)) if kind != SSH_FXP_VERSION => Start::NotSftp,
        (_, _, Some(_)) => Start::Sftp,
        _ => Start::Pending,
    }
}

fn start_error(state: Start, head: &[u8]) -> Error {
    let received = if head.is_empty() {
        String::new()
    } else {
        format!(" (received {})", quote_start(head))
    };
    match state {
        Start::NotSftp => Error::new(
            ErrorKind::Channel,
            format!(
                "the server's login shell printed text before the SFTP protocol started: make \
                 the shell's start-up files print nothing for non-interactive sessions{received}"
            ),
        ),
        Start::Ended => Error::new(
            ErrorKind::Channel,
            format!("the server closed the sftp channel before the protocol started{received}"),
        ),
        Start::Pending | Start::Sftp => Error::new(
            ErrorKind::Channel,
            "the server did not start the sftp protocol",
        ),
    }
}

/// The start of what arrived, as a quoted string: the printable text up to the first
/// control character (where the real `VERSION` packet may follow it), or, if nothing
/// printable came first, the first bytes escaped.
fn quote_start(head: &[u8]) -> String {
    let text_len = head
        .iter()
        .position(|b| b.is_ascii_control() && !matches!(b, b'\n' | b'\r' | b'\t'))
        .unwrap_or(head.len());
    let shown = match head.get(..text_len) {
        Some(text) if !text.is_empty() => text,
        _ => head.get(..head.len().min(32)).unwrap_or_default(),
    };
    format!("{:?}", String::from_utf8_lossy(shown))
}

/// The channel stream, checking that its first bytes start an SFTP `VERSION` packet
/// (length, then type 2) and keeping them for the error message if not. Once they do,
/// it only passes bytes through.
struct CheckedStart<S> {
    inner: S,
    /// Data that came before the subsystem reply, served first.
    early: Vec<u8>,
    head: Arc<Mutex<Vec<u8>>>,
    verdict: watch::Sender<Start>,
    /// Once the start is known not to be SFTP: until when more of the text is kept for
    /// the quote before the stream fails.
    collecting: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> CheckedStart<S> {
    /// Adds `new` bytes to the head (while undecided) and decides once they allow.
    fn check(&mut self, new: &[u8]) -> Start {
        if *self.verdict.borrow() != Start::Pending {
            return Start::Sftp;
        }
        let Ok(mut head) = self.head.lock() else {
            return Start::Sftp;
        };
        let room = QUOTE_MAX.saturating_sub(head.len());
        head.extend_from_slice(new.get(..new.len().min(room)).unwrap_or_default());
        let verdict = start_of(&head);
        if verdict == Start::Sftp {
            head.clear();
            drop(head);
            self.verdict.send_replace(Start::Sftp);
        }
        verdict
    }
}

impl<S: AsyncRead + Unpin> CheckedStart<S> {
    /// Text came instead of SFTP: keeps what follows it for the quote (up to
    /// [`QUOTE_MAX`] bytes, the end of the stream, or [`QUOTE_WAIT`]), then publishes the
    /// verdict and fails the stream (an I/O error ends russh-sftp's reader).
    fn poll_collect(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut scratch = [0u8; QUOTE_MAX];
        loop {
            let room = self
                .head
                .lock()
                .map(|h| QUOTE_MAX.saturating_sub(h.len()))
                .unwrap_or(0);
            let Some(space) = scratch.get_mut(..room).filter(|s| !s.is_empty()) else {
                break;
            };
            let mut more = ReadBuf::new(space);
            match Pin::new(&mut self.inner).poll_read(cx, &mut more) {
                Poll::Ready(Ok(())) if !more.filled().is_empty() => {
                    if let Ok(mut head) = self.head.lock() {
                        head.extend_from_slice(more.filled());
                    }
                }
                Poll::Ready(_) => break,
                Poll::Pending => {
                    let waited = self
                        .collecting
                        .as_mut()
                        .is_none_or(|sleep| sleep.as_mut().poll(cx).is_ready());
                    if !waited {
                        return Poll::Pending;
                    }
                    break;
                }
            }
        }
        self.collecting = None;
        self.verdict.send_replace(Start::NotSftp);
        Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the channel did not start with an sftp packet",
        )))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CheckedStart<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.collecting.is_some() {
            return this.poll_collect(cx);
        }
        let before = buf.filled().len();
        if !this.early.is_empty() {
            let n = this.early.len().min(buf.remaining());
            let taken: Vec<u8> = this.early.drain(..n).collect();
            buf.put_slice(&taken);
        } else {
            match Pin::new(&mut this.inner).poll_read(cx, buf) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
        }
        let new = buf.filled().get(before..).unwrap_or_default().to_vec();
        if new.is_empty() {
            if *this.verdict.borrow() == Start::Pending {
                this.verdict.send_replace(Start::Ended);
            }
            return Poll::Ready(Ok(()));
        }
        if this.check(&new) == Start::NotSftp {
            // Nothing of this reaches russh-sftp.
            buf.set_filled(before);
            this.collecting = Some(Box::pin(tokio::time::sleep(QUOTE_WAIT)));
            return this.poll_collect(cx);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CheckedStart<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::quote_start;

    #[test]
    fn text_is_told_from_a_version_packet_as_early_as_possible() {
        use super::{start_of, Start};
        assert_eq!(start_of(b""), Start::Pending);
        assert_eq!(start_of(b"h"), Start::NotSftp);
        assert_eq!(start_of(b"\0\0"), Start::Pending);
        assert_eq!(start_of(b"\0\x10\0\0"), Start::NotSftp);
        assert_eq!(start_of(b"\0\0\x01\x05"), Start::Pending);
        assert_eq!(start_of(b"\0\0\x01\x05\x02"), Start::Sftp);
        assert_eq!(start_of(b"\0\0\x01\x05\x03"), Start::NotSftp);
    }

    #[test]
    fn the_quote_stops_where_the_binary_packet_starts() {
        assert_eq!(quote_start(b"hello\n\0\0\0\x05\x02"), "\"hello\\n\"");
        assert_eq!(quote_start(b"\0\x01"), "\"\\0\\u{1}\"");
    }
}
