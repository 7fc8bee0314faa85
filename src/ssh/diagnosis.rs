//! Saying why a connection failed when russh's own error does not: the first bytes the
//! peer sent (so that a peer that is not an SSH server is named as such, quoting what it
//! sent), and the reason the connection's background task ended (a packet that failed its
//! integrity check, a disconnect message from the server), recorded for the requests that
//! then fail with nothing but "the connection is closed".

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::{Error, ErrorKind};

/// Bytes of the peer's first words kept: RFC 4253 §4.2 allows lines before the
/// identification, and russh reads at most 20 of at most 255 bytes each.
const FIRST_BYTES_KEPT: usize = 8 * 1024;

/// Characters of the peer's first line quoted in a message.
const QUOTE_CHARS: usize = 100;

/// The message for a packet that failed its MAC or AEAD tag.
pub(crate) const INTEGRITY_MESSAGE: &str =
    "the data failed its integrity check (MAC): the connection was corrupted in transit";

/// A stream that keeps a copy of the first bytes it reads, until told to stop.
pub(crate) struct RecordingStream<S> {
    inner: S,
    first_bytes: Arc<FirstBytes>,
}

/// The first bytes read from the peer, shared between the stream and the code that
/// explains a failed handshake.
#[derive(Default)]
pub(crate) struct FirstBytes {
    bytes: Mutex<Vec<u8>>,
    stopped: AtomicBool,
}

impl FirstBytes {
    /// Stops recording (the handshake is over).
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    fn record(&self, data: &[u8]) {
        if self.stopped.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(mut bytes) = self.bytes.lock() {
            let room = FIRST_BYTES_KEPT.saturating_sub(bytes.len());
            bytes.extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
            if bytes.len() >= FIRST_BYTES_KEPT {
                self.stop();
            }
        }
    }

    /// What the peer's first bytes say about it.
    pub(crate) fn greeting(&self) -> Greeting {
        match self.bytes.lock() {
            Ok(bytes) => Greeting::of(&bytes),
            Err(_) => Greeting::Nothing,
        }
    }
}

impl<S> RecordingStream<S> {
    pub(crate) fn new(inner: S) -> (RecordingStream<S>, Arc<FirstBytes>) {
        let first_bytes = Arc::new(FirstBytes::default());
        (
            RecordingStream {
                inner,
                first_bytes: first_bytes.clone(),
            },
            first_bytes,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for RecordingStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            if !this.first_bytes.stopped.load(Ordering::Relaxed) {
                if let Some(new) = buf.filled().get(before..) {
                    this.first_bytes.record(new);
                }
            }
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for RecordingStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What the peer said before the handshake failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Greeting {
    /// Nothing at all.
    Nothing,
    /// An SSH identification line (`SSH-...`), possibly after other lines, or the start
    /// of one.
    Ssh,
    /// An SSH identification of a protocol version other than 2.0 (`SSH-1.5-...`),
    /// quoted.
    OldSsh(String),
    /// sshd's own words when it drops a connection before the handshake (`MaxStartups`,
    /// `PerSourcePenalties`): a server, busy.
    Dropped(String),
    /// Something else: the first line, quoted (printable, bounded), and whether the bytes
    /// are text lines (as opposed to binary data, such as a TLS record).
    NotSsh { first_line: String, text: bool },
}

impl Greeting {
    fn of(bytes: &[u8]) -> Greeting {
        if bytes.is_empty() {
            return Greeting::Nothing;
        }
        // Lines end in "\n" (RFC 4253 says "\r\n"; OpenSSH and russh accept both).
        let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
        let trim = |l: &[u8]| -> Vec<u8> {
            let mut l = l.to_vec();
            while l.last().is_some_and(|b| *b == b'\r') {
                l.pop();
            }
            l
        };
        if let Some(id) = lines.iter().find(|l| l.starts_with(b"SSH-")) {
            // "SSH-1.99-" is a server that also speaks 2.0 (RFC 4253 §5.1).
            let complete = lines.last() != Some(id);
            let v2 = id.starts_with(b"SSH-2.0-") || id.starts_with(b"SSH-1.99-");
            return if v2 || !complete || id.len() < 8 {
                Greeting::Ssh
            } else {
                Greeting::OldSsh(quote(&trim(id)))
            };
        }
        let first = lines
            .iter()
            .map(|l| trim(l))
            .find(|l| !l.is_empty())
            .unwrap_or_default();
        if DROP_MESSAGES.iter().any(|m| first == m.as_bytes()) {
            return Greeting::Dropped(quote(&first));
        }
        let text = bytes
            .iter()
            .all(|b| matches!(b, b'\t' | b'\r' | b'\n' | 0x20..=0x7e) || *b >= 0x80);
        Greeting::NotSsh {
            first_line: quote(&first),
            text,
        }
    }
}

/// What sshd writes before closing a connection it will not serve (sshd.c): these come
/// from an SSH server that is busy, and are worth another attempt.
const DROP_MESSAGES: [&str; 2] = ["Exceeded MaxStartups", "Not allowed at this time"];

/// `bytes` as printable text: ASCII as is, `"` and `\` escaped, anything else as `\xNN`,
/// at most [`QUOTE_CHARS`] characters (then `...`).
pub(crate) fn quote(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (count, b) in bytes.iter().enumerate() {
        if count >= QUOTE_CHARS {
            out.push_str("...");
            break;
        }
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(*b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// The error for a peer whose first bytes were not an SSH identification, or `None` when
/// they say nothing about it. `timed_out`: the handshake deadline passed (rather than the
/// peer closing or sending something russh refused), so text lines may just be a slow
/// server's preamble, but binary data is still not SSH.
pub(crate) fn greeting_error(
    greeting: &Greeting,
    timed_out: bool,
    deadline: std::time::Duration,
) -> Option<Error> {
    match greeting {
        Greeting::NotSsh { first_line, text } => {
            let message = if timed_out && *text {
                format!(
                    "not an ssh server: it sent \"{first_line}\" and no ssh identification \
                     within {}",
                    humantime_secs(deadline)
                )
            } else {
                format!("not an ssh server: it sent \"{first_line}\"")
            };
            Some(Error::new(ErrorKind::Protocol, message))
        }
        Greeting::OldSsh(line) => Some(Error::new(
            ErrorKind::Protocol,
            format!("the server does not speak ssh protocol version 2: it sent \"{line}\""),
        )),
        Greeting::Dropped(line) if !timed_out => Some(Error::new(
            ErrorKind::Disconnected,
            format!("the server dropped the connection before the handshake: it said \"{line}\""),
        )),
        _ => None,
    }
}

fn humantime_secs(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// Why the connection's background task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    /// A packet failed its MAC or AEAD tag (or decrypted to an impossible length).
    Integrity,
    /// The server sent a disconnect message.
    ServerDisconnect {
        /// The reason code's name.
        reason: String,
        /// The server's words.
        message: String,
    },
    /// Another error.
    Other,
}

/// The ending of a connection, shared between its handler and its [`Session`](super::Session).
#[derive(Default)]
pub(crate) struct Diagnosis {
    ending: Mutex<Option<Ending>>,
}

impl Diagnosis {
    pub(crate) fn set(&self, ending: Ending) {
        if let Ok(mut e) = self.ending.lock() {
            e.get_or_insert(ending);
        }
    }

    pub(crate) fn ending(&self) -> Option<Ending> {
        self.ending.lock().ok().and_then(|e| e.clone())
    }

    /// The error for a request that failed because the connection is gone: the integrity
    /// error when that is what ended it, else [`ErrorKind::Disconnected`] with `message`
    /// (plus the server's words when it sent a disconnect message).
    pub(crate) fn lost(&self, message: &str) -> Error {
        match self.ending() {
            Some(Ending::Integrity) => Error::new(ErrorKind::Protocol, INTEGRITY_MESSAGE),
            Some(Ending::ServerDisconnect { message: said, .. }) if !said.is_empty() => Error::new(
                ErrorKind::Disconnected,
                format!(
                    "{message} (the server said: \"{}\")",
                    quote(said.as_bytes())
                ),
            ),
            _ => Error::new(ErrorKind::Disconnected, message),
        }
    }
}

/// Whether russh's error means a packet failed its integrity check.
pub(crate) fn is_integrity_failure(e: &russh::Error) -> bool {
    matches!(e, russh::Error::PacketAuth | russh::Error::DecryptionError)
}

/// The ending for an error that ended an established connection. After the key exchange
/// an impossible packet length is a corrupted (encrypted or MAC-protected) length field.
pub(crate) fn ending_of(e: &russh::Error) -> Ending {
    if is_integrity_failure(e) || matches!(e, russh::Error::PacketSize(_)) {
        Ending::Integrity
    } else {
        Ending::Other
    }
}

/// Names in key exchange lists that signal extensions (RFC 8308, OpenSSH's strict key
/// exchange), not methods.
const KEX_PSEUDO_ALGORITHMS: [&str; 4] = [
    "ext-info-c",
    "ext-info-s",
    "kex-strict-c-v00@openssh.com",
    "kex-strict-s-v00@openssh.com",
];

/// The message for a failed algorithm negotiation: the category and both sides' lists.
pub(crate) fn negotiation_message(
    kind: &russh::AlgorithmKind,
    ours: &[String],
    theirs: &[String],
) -> String {
    let category = match kind {
        russh::AlgorithmKind::Kex => "key exchange algorithm",
        russh::AlgorithmKind::Key => "host key algorithm",
        russh::AlgorithmKind::Cipher => "cipher",
        russh::AlgorithmKind::Mac => "mac",
        russh::AlgorithmKind::Compression => "compression",
    };
    // Key exchange lists also carry pseudo-algorithms that only signal extensions.
    let list = |l: &[String]| {
        let names: Vec<&str> = l
            .iter()
            .map(String::as_str)
            .filter(|n| !KEX_PSEUDO_ALGORITHMS.contains(n))
            .collect();
        if names.is_empty() {
            "nothing".to_owned()
        } else {
            names.join(",")
        }
    };
    format!(
        "no common {category} with the server: rexec offers {}; the server offers {}",
        list(ours),
        list(theirs)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greetings() {
        assert_eq!(Greeting::of(b""), Greeting::Nothing);
        assert_eq!(Greeting::of(b"SSH-2.0-OpenSSH_9.2\r\n"), Greeting::Ssh);
        assert_eq!(Greeting::of(b"SSH-2.0-Open"), Greeting::Ssh);
        assert_eq!(Greeting::of(b"SSH-1.99-Both\r\n"), Greeting::Ssh);
        assert_eq!(
            Greeting::of(b"SSH-1.5-Old\r\n"),
            Greeting::OldSsh("SSH-1.5-Old".into())
        );
        assert_eq!(
            Greeting::of(b"welcome\r\nauthorized use only\r\nSSH-2.0-x\r\n"),
            Greeting::Ssh
        );
        assert_eq!(
            Greeting::of(b"Exceeded MaxStartups\r\n"),
            Greeting::Dropped("Exceeded MaxStartups".into())
        );
        assert_eq!(
            Greeting::of(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"),
            Greeting::NotSsh {
                first_line: "HTTP/1.1 400 Bad Request".into(),
                text: true
            }
        );
        assert_eq!(
            Greeting::of(b"\r\n\r\n220 \"mail\" ESMTP\r\n"),
            Greeting::NotSsh {
                first_line: "220 \\\"mail\\\" ESMTP".into(),
                text: true
            }
        );
        assert_eq!(
            Greeting::of(&[0x16, 0x03, 0x03, 0x00, 0x4a, 0x02]),
            Greeting::NotSsh {
                first_line: "\\x16\\x03\\x03\\x00J\\x02".into(),
                text: false
            }
        );
        let long = vec![b'a'; 500];
        match Greeting::of(&long) {
            Greeting::NotSsh { first_line, .. } => {
                assert_eq!(first_line, format!("{}...", "a".repeat(100)))
            }
            other => panic!("{other:?}"),
        }
    }
}
