//! One SSH connection: the [`Session`] handle, connecting with a deadline per phase
//! (`connect_inner`, `establish`) and mapping russh's errors. What it connects with lives
//! beside it: [`ConnectOptions`] (`connect_options.rs`), the TCP socket (`tcp.rs`), the
//! algorithm lists (`algorithms.rs`), the host key check (`handler.rs`) and the
//! authentication flow (`login.rs`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};

use crate::error::{Error, ErrorKind, Phase, Result};
use crate::ssh::algorithms::{certificate_algorithms, cipher_order, kex_order};
use crate::ssh::command::Command;
use crate::ssh::connect_options::{ConnectOptions, Route};
use crate::ssh::diagnosis::{
    greeting_error, is_integrity_failure, negotiation_message, Diagnosis, Greeting,
    RecordingStream, INTEGRITY_MESSAGE,
};
use crate::ssh::handler::{ClientHandler, HostKeyVerdict};
use crate::ssh::jump::{JumpParts, Jumps, Lease, OpenFailures};
use crate::ssh::login::authenticate;
use crate::ssh::proxy_command;
use crate::ssh::tcp::{tcp_connect, QuickAck};

/// The receive window granted to each channel: OpenSSH's 2 MiB (why: at its use below).
const RECEIVE_WINDOW: u32 = 2 * 1024 * 1024;

/// A connected, authenticated SSH session to one host, or a local "session" whose
/// commands run as local processes ([`Session::local`]).
///
/// Commands run over it one after another or at the same time (each on its own channel;
/// OpenSSH allows 10 at once by default, `MaxSessions`).
pub struct Session {
    transport: SessionTransport,
    name: String,
    /// Why the connection ended, once it has.
    diagnosis: Arc<Diagnosis>,
    open_failures: Arc<OpenFailures>,
    /// The connection to the last jump host, kept open while this session lives
    /// (dropped after the transport).
    _via: Option<Lease>,
}

pub(crate) enum SessionTransport {
    Ssh(Arc<Handle<ClientHandler>>),
    Local,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("host", &self.name)
            .field("local", &matches!(self.transport, SessionTransport::Local))
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Session {
    /// Connects, checks the host key and authenticates, each phase within its deadline.
    ///
    /// # Errors
    /// [`ErrorKind::Resolve`], [`ErrorKind::Connect`], [`ErrorKind::Timeout`] (see
    /// [`Error::phase`]), [`ErrorKind::HostKeyUnknown`], [`ErrorKind::HostKeyChanged`],
    /// [`ErrorKind::Protocol`] (the peer is not an SSH server, quoting what it sent; no
    /// algorithm in common, naming both sides' lists; a packet that failed its integrity
    /// check), [`ErrorKind::Disconnected`] (the connection dropped before authentication),
    /// [`ErrorKind::Auth`] (every method refused, or the server closed the connection
    /// during authentication), [`ErrorKind::Agent`]; the message names the host.
    ///
    /// # Cancel safety
    /// Dropping the future closes the connection attempt; nothing is left behind except a
    /// host key already learned under accept-new.
    pub async fn connect(options: &ConnectOptions) -> Result<Session> {
        Session::connect_with(options, &Jumps::new()).await
    }

    /// Like [`Session::connect`], sharing connections to jump hosts through `jumps`
    /// with other sessions connected through it.
    ///
    /// A hop that cannot be reached fails the connection with that hop's error kind and
    /// phase, the message saying `jump host HOP (hop K of N): ...`; a target the last hop
    /// cannot reach fails with [`ErrorKind::Connect`] (or [`ErrorKind::Timeout`], phase
    /// connect) quoting the jump host's refusal.
    ///
    /// # Errors
    /// As [`Session::connect`].
    ///
    /// # Cancel safety
    /// As [`Session::connect`]; a connection to a jump host opened on the way stays in
    /// `jumps` for other targets.
    pub async fn connect_with(options: &ConnectOptions, jumps: &Jumps) -> Result<Session> {
        let name = options.display_name();
        connect_inner(options, &name, jumps)
            .await
            .map_err(|e| e.with_host(name))
    }

    /// Connects straight over TCP, whatever the route (a jump host's first hop); errors
    /// name no host.
    pub(crate) async fn connect_direct(options: &ConnectOptions) -> Result<Session> {
        let stream = tokio::time::timeout(options.connect_timeout, tcp_connect(options))
            .await
            .map_err(|_| Error::timeout(Phase::Connect, options.connect_timeout))?
            .map_err(|e| e.in_phase(Phase::Connect))?;
        establish(
            options,
            &options.display_name(),
            QuickAck::new(stream),
            None,
        )
        .await
    }

    /// Connects over `stream` (a channel through `via`); errors name no host.
    pub(crate) async fn connect_over(
        options: &ConnectOptions,
        stream: russh::ChannelStream<client::Msg>,
        via: Option<Lease>,
    ) -> Result<Session> {
        establish(options, &options.display_name(), stream, via).await
    }

    /// The connection and its channel open failures, for opening `direct-tcpip`
    /// channels through it.
    pub(crate) fn jump_parts(&self) -> Option<JumpParts<'_>> {
        match &self.transport {
            SessionTransport::Ssh(handle) => Some((handle, &self.open_failures)),
            SessionTransport::Local => None,
        }
    }

    /// A session whose commands run on this machine as `sh -c COMMAND` child processes,
    /// with the same [`Output`](crate::Output) semantics (Ansible's local connection).
    /// `name` is used in messages.
    pub fn local(name: impl Into<String>) -> Session {
        Session {
            transport: SessionTransport::Local,
            name: name.into(),
            diagnosis: Arc::default(),
            open_failures: Arc::default(),
            _via: None,
        }
    }

    /// The host's name as used in messages.
    pub fn host(&self) -> &str {
        &self.name
    }

    /// Whether this session runs commands locally.
    pub fn is_local(&self) -> bool {
        matches!(self.transport, SessionTransport::Local)
    }

    /// Whether the connection is gone (never for a local session).
    pub fn is_closed(&self) -> bool {
        match &self.transport {
            SessionTransport::Ssh(handle) => handle.is_closed(),
            SessionTransport::Local => false,
        }
    }

    /// A program to run, like [`std::process::Command::new`]: `program` is one word,
    /// quoted for the remote shell, so `session.raw_command("ls -l")` looks for a program
    /// named `ls -l`. Add arguments with [`Command::arg`], which quotes each one; nothing
    /// in `program` or an argument is ever read as shell code. The names follow the
    /// `openssh` crate (`command` quotes, `raw_command` does not).
    ///
    /// SSH has no argument vector: the server hands one string to the user's login shell
    /// (RFC 4254 section 6.5, OpenSSH's `session.c`), so the words are quoted for a POSIX
    /// shell (`sh`, `bash`, `dash`, `zsh`, `ksh`); a host whose login shell is `csh`,
    /// `fish` or a restricted shell may read them differently.
    ///
    /// A program name starting with `%` is refused when the command runs
    /// ([`ErrorKind::InvalidInput`]): bash reads such a word as a job (`%1` is `fg %1`)
    /// however it is quoted.
    pub fn command(&self, program: impl AsRef<str>) -> Command<'_> {
        Command::program(self, program.as_ref())
    }

    /// A shell command line to run, as with `ssh host 'command line'`: `command_line` is
    /// shell code, run by the remote user's login shell (pipes, `&&`, redirections,
    /// globs and variables all work, and so does anything else the line says). Add
    /// arguments that must stay single words with [`Command::arg`], which quotes them.
    /// Use [`Session::command`] when the program and its arguments are data.
    pub fn raw_command(&self, command_line: impl Into<String>) -> Command<'_> {
        Command::new(self, command_line.into())
    }

    /// Closes the connection politely.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] when the connection was already gone.
    ///
    /// # Cancel safety
    /// Dropping the future may leave the disconnect message unsent; the connection itself
    /// closes when the last handle to the session is dropped.
    pub async fn close(&self) -> Result<()> {
        match &self.transport {
            SessionTransport::Ssh(handle) => handle
                .disconnect(russh::Disconnect::ByApplication, "", "en")
                .await
                .map_err(|e| russh_error(e, "closing the connection").with_host(&self.name)),
            SessionTransport::Local => Ok(()),
        }
    }

    pub(crate) async fn open_channel(&self) -> Result<russh::Channel<client::Msg>> {
        let SessionTransport::Ssh(handle) = &self.transport else {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "a local session has no ssh channels",
            )
            .with_host(&self.name));
        };
        open_channel_on(handle, &self.name).await.map_err(|e| {
            if e.kind() == ErrorKind::Disconnected {
                self.lost("connection lost").with_host(&self.name)
            } else {
                e
            }
        })
    }

    /// The error for a request that failed because the connection is gone, saying why it
    /// went when the connection knows (a packet that failed its integrity check is
    /// [`ErrorKind::Protocol`]); otherwise [`ErrorKind::Disconnected`] with `message`.
    pub(crate) fn lost(&self, message: &str) -> Error {
        self.diagnosis.lost(message)
    }

    /// The connection, for opening more channels later (SFTP cleanup).
    pub(crate) fn connection(&self) -> Option<Arc<Handle<ClientHandler>>> {
        match &self.transport {
            SessionTransport::Ssh(handle) => Some(handle.clone()),
            SessionTransport::Local => None,
        }
    }
}

pub(crate) async fn open_channel_on(
    handle: &Handle<ClientHandler>,
    host: &str,
) -> Result<russh::Channel<client::Msg>> {
    handle.channel_open_session().await.map_err(|e| {
        if handle.is_closed() {
            Error::new(ErrorKind::Disconnected, "connection lost").with_source(e)
        } else {
            russh_error(e, "opening a channel")
        }
        .with_host(host)
    })
}

impl Session {}

/// Maps a russh error to ours, with `doing` saying what was under way.
pub(crate) fn russh_error(e: russh::Error, doing: &str) -> Error {
    if let russh::Error::NoCommonAlgo { kind, ours, theirs } = &e {
        let message = negotiation_message(kind, ours, theirs);
        return Error::new(ErrorKind::Protocol, message).with_source(e);
    }
    if is_integrity_failure(&e) {
        return Error::new(ErrorKind::Protocol, INTEGRITY_MESSAGE).with_source(e);
    }
    let kind = match &e {
        russh::Error::Disconnect
        | russh::Error::HUP
        | russh::Error::SendError
        | russh::Error::RecvError
        | russh::Error::IO(_)
        | russh::Error::KeepaliveTimeout
        | russh::Error::InactivityTimeout
        | russh::Error::ConnectionTimeout => ErrorKind::Disconnected,
        russh::Error::ChannelOpenFailure(_) => ErrorKind::Channel,
        _ => ErrorKind::Protocol,
    };
    let msg = match kind {
        ErrorKind::Disconnected => format!("connection lost while {doing}"),
        ErrorKind::Channel => format!("the server refused a channel while {doing}"),
        _ => format!("ssh protocol error while {doing}"),
    };
    Error::new(kind, msg).with_source(e)
}

async fn connect_inner(options: &ConnectOptions, name: &str, jumps: &Jumps) -> Result<Session> {
    match &options.route {
        Route::Direct => {
            let stream = tokio::time::timeout(options.connect_timeout, tcp_connect(options))
                .await
                .map_err(|_| Error::timeout(Phase::Connect, options.connect_timeout))?
                .map_err(|e| e.in_phase(Phase::Connect))?;
            establish(options, name, QuickAck::new(stream), None).await
        }
        Route::Jump(_) => {
            let (stream, lease) = jumps.stream_to(options).await?;
            establish(options, name, stream, Some(lease)).await
        }
        Route::Command(command) => {
            let (stream, process) = proxy_command::connect(command, options).await?;
            match establish(options, name, stream, None).await {
                Ok(session) => Ok(session),
                Err(e) => {
                    let e = process.explain(e).await;
                    process.kill();
                    Err(e)
                }
            }
        }
    }
}

/// The SSH handshake and authentication over `stream`, each phase within its deadline.
async fn establish<S>(
    options: &ConnectOptions,
    name: &str,
    stream: S,
    via: Option<Lease>,
) -> Result<Session>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Like OpenSSH, prefer the host key algorithms already recorded for this host, so a
    // server with several keys presents the one we know.
    // The files are read once here and reused for the key check below.
    let known_hosts = options.known_hosts.clone();
    let snapshot = tokio::task::spawn_blocking(move || known_hosts.read())
        .await
        .map_err(|_| Error::new(ErrorKind::LocalIo, "cannot read known_hosts"))
        .and_then(|r| r);
    let (key_host, key_port) = options.key_lookup();
    let (recorded, cert_authority) = match &snapshot {
        Ok(r) => (
            r.algorithms(key_host, key_port),
            r.has_cert_authority(key_host, key_port),
        ),
        Err(_) => (Vec::new(), false),
    };
    let mut preferred = russh::Preferred::default();
    if cert_authority {
        // As OpenSSH does when an @cert-authority line matches the host: certificate
        // algorithms first (russh advertises them ahead of the plain ones).
        preferred.host_key_certificates = certificate_algorithms(&preferred.key).into();
    }
    if !recorded.is_empty() {
        let same_family = |a: &russh::keys::Algorithm| {
            recorded.iter().any(|r| {
                r == a
                    || (matches!(r, russh::keys::Algorithm::Rsa { .. })
                        && matches!(a, russh::keys::Algorithm::Rsa { .. }))
            })
        };
        let (mut first, rest): (Vec<_>, Vec<_>) =
            preferred.key.iter().cloned().partition(|a| same_family(a));
        first.extend(rest);
        preferred.key = first.into();
    }
    preferred.cipher = cipher_order().into();
    preferred.kex = kex_order().into();
    let config = Arc::new(client::Config {
        preferred,
        keepalive_interval: Some(options.keepalive_interval),
        keepalive_max: options.keepalive_max,
        inactivity_timeout: None,
        nodelay: true,
        // OpenSSH's 2 MiB (issue 13). russh returns window space as soon as data arrives,
        // not when it is consumed, so the window bounds what sshd holds for a channel
        // whose reader is behind (below): sshd reads the command's output ahead by up to
        // the window and, past a few MiB, spends its CPU growing and moving that buffer
        // (memmove of the whole buffer per 16 KiB read): 8 MiB made 20 hosts of 13.5 MB
        // cost the servers 13 s of CPU against 2 s, and stalled one 200 MB stream. The
        // price: one channel moves at most 2 MiB per round trip (OpenSSH's limit too).
        window_size: RECEIVE_WINDOW,
        // Messages queued per channel before the connection stops reading its socket
        // (russh's default 100 is up to 3.2 MiB of data per channel): a consumer slower
        // than the network (--out-dir onto a busy disk) holds at most ~1 MiB per host.
        channel_buffer_size: 32,
        ..Default::default()
    });
    let verdict = Arc::new(Mutex::new(HostKeyVerdict::default()));
    let diagnosis = Arc::new(Diagnosis::default());
    let open_failures = Arc::new(OpenFailures::default());
    let handler = ClientHandler {
        open_failures: open_failures.clone(),
        host: key_host.to_owned(),
        port: key_port,
        known_hosts: options.known_hosts.clone(),
        snapshot: Some(snapshot),
        policy: options.policy,
        verdict: verdict.clone(),
        diagnosis: diagnosis.clone(),
    };
    // The peer's first bytes are kept to explain a failed handshake.
    let (stream, first_bytes) = RecordingStream::new(stream);
    let handshake = client::connect_stream(config, stream, handler);
    let deadline = options.handshake_timeout;
    let handle = match tokio::time::timeout(deadline, handshake).await {
        Err(_) => {
            let error = greeting_error(&first_bytes.greeting(), true, deadline)
                .unwrap_or_else(|| Error::timeout(Phase::Handshake, deadline));
            return Err(error.in_phase(Phase::Handshake));
        }
        Ok(Ok(handle)) => handle,
        Ok(Err(e)) => {
            let rejection = verdict.lock().ok().and_then(|mut v| v.rejection.take());
            let error = match rejection {
                Some(rejection) => rejection,
                None => handshake_error(e, &first_bytes.greeting()),
            };
            return Err(error.in_phase(Phase::Handshake));
        }
    };
    first_bytes.stop();
    let mismatch_accepted = verdict.lock().map(|v| v.mismatch_accepted).unwrap_or(true);

    let mut handle = handle;
    let auth = authenticate(&mut handle, options, mismatch_accepted, &diagnosis);
    match tokio::time::timeout(options.auth_timeout, auth).await {
        Err(_) => Err(Error::timeout(Phase::Auth, options.auth_timeout)),
        Ok(Err(e)) => Err(e.in_phase(Phase::Auth)),
        Ok(Ok(())) => Ok(Session {
            transport: SessionTransport::Ssh(Arc::new(handle)),
            name: name.to_owned(),
            diagnosis,
            open_failures,
            _via: via,
        }),
    }
}

/// The error for a handshake that failed with `e`, given what the peer sent first.
fn handshake_error(e: russh::Error, greeting: &Greeting) -> Error {
    if let Some(error) = greeting_error(greeting, false, Duration::ZERO) {
        return error.with_source(e);
    }
    match (greeting, &e) {
        (Greeting::Nothing, russh::Error::Disconnect | russh::Error::HUP | russh::Error::IO(_)) => {
            Error::new(
                ErrorKind::Disconnected,
                "the server closed the connection before sending its ssh identification",
            )
            .with_source(e)
        }
        _ => russh_error(e, "reading the banner and exchanging keys"),
    }
}
