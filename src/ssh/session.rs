//! One SSH connection: connecting with a deadline per phase, host key verification,
//! authentication, and the [`Session`] handle that runs commands.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, AuthResult, DisconnectReason, Handle, KeyboardInteractiveAuthResponse};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::PrivateKeyWithHashAlg;
use russh::keys::PublicKeyOrCertificate;
use russh::MethodKind;
use russh::MethodSet;

use crate::error::{Error, ErrorKind, Phase, Result};
use crate::ssh::auth::{describe_user_certificate, Agent, AuthMethod, Credentials};
use crate::ssh::command::Command;
use crate::ssh::diagnosis::{
    ending_of, greeting_error, is_integrity_failure, negotiation_message, quote, Diagnosis, Ending,
    Greeting, RecordingStream, INTEGRITY_MESSAGE,
};
use crate::ssh::jump::{JumpHost, JumpParts, Jumps, Lease, OpenFailures};
use crate::ssh::known_hosts::{
    describe_key, fingerprint, CertificateStatus, HostKeyPolicy, HostKeyStatus, KnownHosts,
    Recorded,
};
use crate::ssh::proxy_command;
use crate::ssh::signer::{AgentKeySigner, KeySigner};

/// The receive window granted to each channel: OpenSSH's 2 MiB (why: at its use below).
const RECEIVE_WINDOW: u32 = 2 * 1024 * 1024;

/// Everything needed to connect to one host. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    host: String,
    port: u16,
    user: String,
    credentials: Credentials,
    known_hosts: KnownHosts,
    policy: HostKeyPolicy,
    connect_timeout: Duration,
    handshake_timeout: Duration,
    auth_timeout: Duration,
    keepalive_interval: Duration,
    keepalive_max: usize,
    label: Option<String>,
    route: Route,
    host_key_alias: Option<String>,
}

/// How a connection reaches its host.
#[derive(Debug, Clone, Default)]
enum Route {
    /// A TCP connection.
    #[default]
    Direct,
    /// Through jump hosts, first hop first (never empty).
    Jump(Vec<JumpHost>),
    /// Through a local command's stdin and stdout.
    Command(String),
}

/// The three connection deadlines.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) connect: Duration,
    pub(crate) handshake: Duration,
    pub(crate) auth: Duration,
}

impl ConnectOptions {
    /// The default keepalive interval: a probe after 15 s of silence.
    pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(15);
    /// The default number of unanswered keepalive probes after which the connection counts
    /// as lost.
    pub const DEFAULT_KEEPALIVE_MAX: usize = 3;

    /// Options for `host` (a name or an address) with the defaults: port 22, the local
    /// user name, keys from the agent, OpenSSH's known_hosts files, [`HostKeyPolicy::Strict`],
    /// 10 s to connect, 10 s for the banner and key exchange, 30 s to authenticate, and a
    /// keepalive every 15 s that gives up after 3 unanswered.
    pub fn new(host: impl Into<String>) -> ConnectOptions {
        ConnectOptions {
            host: host.into(),
            port: 22,
            user: local_user_name(),
            credentials: Credentials::default(),
            known_hosts: KnownHosts::default_files(),
            policy: HostKeyPolicy::Strict,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(30),
            keepalive_interval: ConnectOptions::DEFAULT_KEEPALIVE,
            keepalive_max: ConnectOptions::DEFAULT_KEEPALIVE_MAX,
            label: None,
            route: Route::Direct,
            host_key_alias: None,
        }
    }

    /// Connects through these jump hosts, first hop first (OpenSSH's `ProxyJump`); an
    /// empty list connects directly. Each hop is its own SSH connection (host key check,
    /// authentication and deadlines of its own, see [`JumpHost`] for what it inherits
    /// from these options); the target is reached over a `direct-tcpip` channel through
    /// the last hop. Replaces a [`ConnectOptions::proxy_command`].
    #[must_use]
    pub fn proxy_jump(mut self, hops: Vec<JumpHost>) -> Self {
        self.route = if hops.is_empty() {
            Route::Direct
        } else {
            Route::Jump(hops)
        };
        self
    }

    /// Connects through a local command whose stdin and stdout carry the SSH stream
    /// (OpenSSH's `ProxyCommand`): run as `sh -c 'exec COMMAND'` with `%h` (host), `%p`
    /// (port), `%r` (user), `%n` (the name used in messages) and `%%` expanded. The
    /// connect deadline runs until the command's first output; the command is killed and
    /// reaped when the connection ends or fails. Replaces a
    /// [`ConnectOptions::proxy_jump`].
    #[must_use]
    pub fn proxy_command(mut self, command: impl Into<String>) -> Self {
        self.route = Route::Command(command.into());
        self
    }

    /// The jump hosts, first hop first (empty when there are none).
    pub fn jump_hosts(&self) -> &[JumpHost] {
        match &self.route {
            Route::Jump(hops) => hops,
            _ => &[],
        }
    }

    /// The proxy command, as given (tokens not expanded).
    pub fn proxy_command_line(&self) -> Option<&str> {
        match &self.route {
            Route::Command(c) => Some(c),
            _ => None,
        }
    }

    /// The TCP port.
    pub fn port_number(&self) -> u16 {
        self.port
    }

    pub(crate) fn credentials_setting(&self) -> &Credentials {
        &self.credentials
    }

    pub(crate) fn known_hosts_setting(&self) -> &KnownHosts {
        &self.known_hosts
    }

    pub(crate) fn policy_setting(&self) -> HostKeyPolicy {
        self.policy
    }

    pub(crate) fn keepalive_setting(&self) -> (Duration, usize) {
        (self.keepalive_interval, self.keepalive_max)
    }

    pub(crate) fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: self.connect_timeout,
            handshake: self.handshake_timeout,
            auth: self.auth_timeout,
        }
    }

    /// The name the host key is looked up and recorded under in known_hosts instead of
    /// the host (OpenSSH's `HostKeyAlias`): the bare alias, without the port.
    #[must_use]
    pub fn host_key_alias(mut self, alias: impl Into<String>) -> Self {
        self.host_key_alias = Some(alias.into());
        self
    }

    /// The name and port the host key is looked up under: the alias and 22 when there is
    /// one (`[host]:port` is written only for a port other than 22), else the host and port.
    pub(crate) fn key_lookup(&self) -> (&str, u16) {
        match &self.host_key_alias {
            Some(alias) => (alias, 22),
            None => (&self.host, self.port),
        }
    }

    /// The TCP port.
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The remote user.
    #[must_use]
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }

    /// The credentials to log in with.
    #[must_use]
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// The known_hosts files to check against.
    #[must_use]
    pub fn known_hosts(mut self, known_hosts: KnownHosts) -> Self {
        self.known_hosts = known_hosts;
        self
    }

    /// The host key policy.
    #[must_use]
    pub fn host_key_policy(mut self, policy: HostKeyPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Total time for name resolution and the TCP connect.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Total time for the server's banner and the key exchange.
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Total time for authentication.
    #[must_use]
    pub fn auth_timeout(mut self, timeout: Duration) -> Self {
        self.auth_timeout = timeout;
        self
    }

    /// How often to probe a silent server, and after how many unanswered probes the
    /// connection counts as lost.
    #[must_use]
    pub fn keepalive(mut self, interval: Duration, max_unanswered: usize) -> Self {
        self.keepalive_interval = interval;
        self.keepalive_max = max_unanswered;
        self
    }

    /// The name used for this host in messages (default: `host`, or `host:port` when the
    /// port is not 22).
    #[must_use]
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// The most a connection may take: connect, handshake and authentication deadlines
    /// added up.
    pub fn total_timeout(&self) -> Duration {
        self.connect_timeout + self.handshake_timeout + self.auth_timeout
    }

    /// The host name or address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The user to log in as: the one given to [`ConnectOptions::user`], or the local
    /// user name.
    pub fn user_name(&self) -> &str {
        &self.user
    }

    /// The name used in messages.
    pub fn display_name(&self) -> String {
        match &self.label {
            Some(l) => l.clone(),
            None if self.port == 22 => self.host.clone(),
            None => format!("{}:{}", self.host, self.port),
        }
    }
}

fn local_user_name() -> String {
    if let Ok(user) = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
        if !user.is_empty() {
            return user;
        }
    }
    // SAFETY: getpwuid returns a pointer into static storage or null; we copy the name out
    // at once and do not keep the pointer.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if !pw.is_null() && !(*pw).pw_name.is_null() {
            return std::ffi::CStr::from_ptr((*pw).pw_name)
                .to_string_lossy()
                .into_owned();
        }
    }
    "root".to_owned()
}

/// What the host key check decided, kept for after the handshake.
#[derive(Default)]
struct HostKeyVerdict {
    rejection: Option<Error>,
    /// Policy off and the key differs from the recorded one: no passwords.
    mismatch_accepted: bool,
}

pub(crate) struct ClientHandler {
    host: String,
    port: u16,
    known_hosts: KnownHosts,
    /// The files as read before the handshake (taken by the first key check).
    snapshot: Option<Result<Recorded>>,
    policy: HostKeyPolicy,
    verdict: Arc<Mutex<HostKeyVerdict>>,
    /// Why the connection ended, for the requests that then fail.
    diagnosis: Arc<Diagnosis>,
    /// Channel open failures with the server's descriptions (for jumps).
    open_failures: Arc<OpenFailures>,
}

impl ClientHandler {
    fn reject(&self, error: Error) -> bool {
        if let Ok(mut v) = self.verdict.lock() {
            v.rejection = Some(error);
        }
        false
    }
}

impl client::Handler for ClientHandler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let snapshot = match self.snapshot.take() {
            Some(s) => s,
            // A later key exchange (rekey): read the files again.
            None => {
                let known_hosts = self.known_hosts.clone();
                tokio::task::spawn_blocking(move || known_hosts.read())
                    .await
                    .map_err(|_| russh::Error::Inconsistent)?
            }
        };
        let recorded = match snapshot {
            Ok(recorded) => recorded,
            Err(e) => return Ok(self.reject(e)),
        };
        // A host certificate is checked first; one that is not accepted leaves its plain
        // key to be checked like any host key, as OpenSSH does (the reason is kept for
        // the messages).
        let (key, certificate_problem) = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => (key.clone(), None),
            PublicKeyOrCertificate::Certificate(cert) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                match recorded.check_certificate(&self.host, self.port, cert, now) {
                    CertificateStatus::Valid(at) => {
                        tracing::debug!(
                            "{}: host certificate {:?} ({}) signed by the CA at {at}",
                            self.host,
                            cert.key_id(),
                            describe_key(cert.public_key())
                        );
                        return Ok(true);
                    }
                    CertificateStatus::Revoked(message) => {
                        return Ok(self.reject(Error::new(ErrorKind::HostKeyChanged, message)))
                    }
                    CertificateStatus::Invalid(reason) => (
                        russh::keys::PublicKey::new(cert.public_key().clone(), ""),
                        Some(reason),
                    ),
                }
            }
        };
        let fp = fingerprint(&key);
        let algo = key.algorithm().to_string();
        // "REASON; " before a message about the plain key of a certificate not accepted.
        let because = certificate_problem
            .as_deref()
            .map_or(String::new(), |reason| format!("{reason}; "));
        let its = if certificate_problem.is_some() {
            "its plain key"
        } else {
            "host key"
        };
        let status = recorded.check(&self.host, self.port, &key);
        match (status, self.policy) {
            (HostKeyStatus::Known(at), _) => {
                if certificate_problem.is_some() {
                    tracing::warn!(
                        "{}: {because}accepted because {its} {algo} {fp} is recorded at {at}",
                        self.host
                    );
                }
                Ok(true)
            }
            (HostKeyStatus::Revoked(at), _) => Ok(self.reject(Error::new(
                ErrorKind::HostKeyChanged,
                format!("{because}{its} {algo} {fp} is marked @revoked in {at}"),
            ))),
            (HostKeyStatus::Changed(at), HostKeyPolicy::Off) => {
                tracing::warn!(
                    "{}: {because}{its} {algo} {fp} differs from the one recorded at {at}; \
                     accepted because host key checking is off; password authentication disabled",
                    self.host
                );
                if let Ok(mut v) = self.verdict.lock() {
                    v.mismatch_accepted = true;
                }
                Ok(true)
            }
            (HostKeyStatus::Changed(at), _) => Ok(self.reject(Error::new(
                ErrorKind::HostKeyChanged,
                format!(
                    "{because}HOST KEY CHANGED: the server offered {algo} {fp}, which does not \
                     match the key recorded at {at}; refusing to connect (someone may be \
                     intercepting the connection; if the host was really reinstalled, remove \
                     that line)"
                ),
            ))),
            (HostKeyStatus::Unknown, HostKeyPolicy::Strict) => Ok(self.reject(Error::new(
                ErrorKind::HostKeyUnknown,
                format!(
                    "{because}{its} {algo} {fp} is not in known_hosts ({}){}",
                    self.known_hosts.display_paths(),
                    if certificate_problem.is_some() {
                        // accept-new would not learn it either (below).
                        " either; refusing under the strict policy (renew the certificate \
                         or record the key)"
                    } else {
                        "; refusing under the strict policy (use accept-new to learn it)"
                    }
                ),
            ))),
            // rexec differs from OpenSSH here, which learns the plain key: a host that
            // presents a certificate for a name an @cert-authority line covers is meant to
            // be checked by its CA, and a learned key would hide the fault for good.
            (HostKeyStatus::Unknown, HostKeyPolicy::AcceptNew) if certificate_problem.is_some() => {
                Ok(self.reject(Error::new(
                    ErrorKind::HostKeyUnknown,
                    format!(
                        "{because}{its} {algo} {fp} is not in known_hosts ({}) either; \
                         refusing under accept-new, which does not learn the key of a host \
                         whose certificate failed (renew the certificate or record the key)",
                        self.known_hosts.display_paths(),
                    ),
                )))
            }
            (HostKeyStatus::Unknown, HostKeyPolicy::AcceptNew) => {
                let (known_hosts, host, port) =
                    (self.known_hosts.clone(), self.host.clone(), self.port);
                let learn_key = key.clone();
                let learned =
                    tokio::task::spawn_blocking(move || known_hosts.learn(&host, port, &learn_key))
                        .await
                        .map_err(|_| russh::Error::Inconsistent)?;
                match learned {
                    Ok(HostKeyStatus::Unknown) | Ok(HostKeyStatus::Known(_)) => {
                        tracing::info!("{}: learned host key {algo} {fp}", self.host);
                        Ok(true)
                    }
                    Ok(HostKeyStatus::Changed(at)) | Ok(HostKeyStatus::Revoked(at)) => Ok(self
                        .reject(Error::new(
                            ErrorKind::HostKeyChanged,
                            format!(
                                "{because}HOST KEY CHANGED: the server offered {algo} {fp}, but \
                                 another key was recorded at {at} meanwhile; refusing to connect"
                            ),
                        ))),
                    Err(e) => Ok(self.reject(e)),
                }
            }
            (HostKeyStatus::Unknown, HostKeyPolicy::Off) => {
                tracing::warn!(
                    "{}: {because}{its} {algo} {fp} accepted without checking (policy off)",
                    self.host
                );
                Ok(true)
            }
        }
    }

    async fn channel_open_failure(
        &mut self,
        _channel: russh::ChannelId,
        reason: russh::ChannelOpenFailure,
        description: &str,
        _language: &str,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.open_failures.record(reason.code(), description);
        Ok(())
    }

    async fn disconnected(
        &mut self,
        reason: DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        match reason {
            DisconnectReason::ReceivedDisconnect(info) => {
                tracing::debug!(
                    "{}: the server disconnected ({:?}): {}",
                    self.host,
                    info.reason_code,
                    info.message
                );
                self.diagnosis
                    .set(if matches!(info.reason_code, russh::Disconnect::MACError) {
                        Ending::Integrity
                    } else {
                        Ending::ServerDisconnect {
                            reason: format!("{:?}", info.reason_code),
                            message: info.message,
                        }
                    });
                Ok(())
            }
            DisconnectReason::Error(e) => {
                tracing::debug!("{}: connection ended: {e}", self.host);
                self.diagnosis.set(ending_of(&e));
                Err(e)
            }
        }
    }
}

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

/// The certificate host key algorithms offered when an `@cert-authority` line matches the
/// host: one for each plain algorithm offered, in the same order, without the SHA-1
/// `ssh-rsa-cert-v01@openssh.com` that OpenSSH no longer offers by default.
fn certificate_algorithms(plain: &[russh::keys::Algorithm]) -> Vec<russh::keys::Algorithm> {
    plain
        .iter()
        .filter(|a| !matches!(a, russh::keys::Algorithm::Rsa { hash: None }))
        .cloned()
        .collect()
}

/// The key exchange methods offered, best first: russh's default order (the
/// post-quantum hybrid, curve25519, then finite-field Diffie-Hellman) with the NIST-curve
/// ECDH methods after curve25519, as OpenSSH orders them, so that servers limited to
/// them (older ones, FIPS configurations) are reached.
fn kex_order() -> Vec<russh::kex::Name> {
    use russh::kex::{
        CURVE25519, CURVE25519_PRE_RFC_8731, ECDH_SHA2_NISTP256, ECDH_SHA2_NISTP384,
        ECDH_SHA2_NISTP521,
    };
    let nist = [ECDH_SHA2_NISTP256, ECDH_SHA2_NISTP384, ECDH_SHA2_NISTP521];
    let mut order: Vec<russh::kex::Name> = russh::Preferred::default()
        .kex
        .iter()
        .filter(|n| !nist.contains(n))
        .copied()
        .collect();
    let after_curve25519 = order
        .iter()
        .rposition(|n| *n == CURVE25519 || *n == CURVE25519_PRE_RFC_8731)
        .map_or(0, |i| i + 1);
    order.splice(after_curve25519..after_curve25519, nist);
    order
}

/// The ciphers offered, best first: the AES-GCM modes first where the CPU has AES and
/// carry-less multiply instructions (they then cost a fraction of chacha20-poly1305 on
/// both ends: OpenSSH's sshd uses OpenSSL's AES-NI code), chacha20-poly1305 first
/// elsewhere, as OpenSSH orders them; then aes128-gcm (for servers limited to it, FIPS
/// configurations) and the CTR modes. The server picks the first one it also allows.
fn cipher_order() -> Vec<russh::cipher::Name> {
    use russh::cipher::{
        AES_128_CTR, AES_128_GCM, AES_192_CTR, AES_256_CTR, AES_256_GCM, CHACHA20_POLY1305,
    };
    let (first, second) = if aes_in_hardware() {
        (AES_256_GCM, CHACHA20_POLY1305)
    } else {
        (CHACHA20_POLY1305, AES_256_GCM)
    };
    vec![
        first,
        second,
        AES_128_GCM,
        AES_256_CTR,
        AES_192_CTR,
        AES_128_CTR,
    ]
}

#[cfg(target_arch = "x86_64")]
fn aes_in_hardware() -> bool {
    std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
}

#[cfg(target_arch = "aarch64")]
fn aes_in_hardware() -> bool {
    std::arch::is_aarch64_feature_detected!("aes")
        && std::arch::is_aarch64_feature_detected!("pmull")
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn aes_in_hardware() -> bool {
    false
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

/// A client socket that acknowledges at once what it receives (`TCP_QUICKACK`) during the
/// first [`QuickAck::READS`] reads: the handshake, authentication and the first command.
///
/// sshd leaves Nagle's algorithm on for sessions without a terminal, so of two small
/// packets written back to back (after authentication: a global request, then the
/// channel confirmation) the second waits until the first is acknowledged, and Linux
/// delays that acknowledgement by up to 40 ms. `TCP_NODELAY` on our side does not help;
/// an immediate acknowledgement does. Linux clears the flag again on its own, hence once
/// per read. Bulk transfers later keep the kernel's delayed acknowledgements (fewer
/// packets, no extra system call per read).
struct QuickAck {
    inner: tokio::net::TcpStream,
    reads_left: u32,
}

impl QuickAck {
    /// About 50 reads take a connection to its first command's exit status.
    const READS: u32 = 256;

    fn new(inner: tokio::net::TcpStream) -> QuickAck {
        let mut stream = QuickAck {
            inner,
            reads_left: Self::READS,
        };
        stream.acknowledge_quickly();
        stream
    }

    #[cfg(target_os = "linux")]
    fn acknowledge_quickly(&mut self) {
        use std::os::unix::io::AsRawFd;
        let on: libc::c_int = 1;
        // SAFETY: a valid socket owned by `self.inner`; the option value is a c_int that
        // outlives the call, with its size passed. Failure only costs the optimisation.
        unsafe {
            libc::setsockopt(
                self.inner.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&raw const on).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn acknowledge_quickly(&mut self) {}
}

impl tokio::io::AsyncRead for QuickAck {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        let poll = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.reads_left > 0 && matches!(poll, std::task::Poll::Ready(Ok(()))) {
            this.reads_left -= 1;
            this.acknowledge_quickly();
        }
        poll
    }
}

impl tokio::io::AsyncWrite for QuickAck {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn tcp_connect(options: &ConnectOptions) -> Result<tokio::net::TcpStream> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((options.host.as_str(), options.port))
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Resolve,
                format!("cannot resolve host name {:?}", options.host),
            )
            .with_source(e)
        })?
        .collect();
    let mut last_error = None;
    for addr in &addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => {
                // The first exec otherwise stalls ~40 ms on Nagle / delayed ACK.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last_error = Some((addr, e)),
        }
    }
    match last_error {
        Some((addr, e)) => {
            let message = format!("cannot connect to {addr}");
            Err(Error::new(ErrorKind::Connect, message).with_source(e))
        }
        None => Err(Error::new(
            ErrorKind::Resolve,
            format!("host name {:?} has no addresses", options.host),
        )),
    }
}

/// Agent conversations in flight at once, across every connection of the process.
static AGENT_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(8);

/// sshd's default `MaxAuthTries`: it disconnects at this many failed attempts (the first
/// "none" request does not count; each refused public key does, queries included).
const DEFAULT_MAX_AUTH_TRIES: usize = 6;

/// What authentication has tried so far, for the error message.
#[derive(Default)]
struct Attempts {
    /// Methods tried, as shown to the user.
    tried: Vec<String>,
    /// Requests the server refused (what sshd counts against `MaxAuthTries`).
    failures: usize,
}

/// Asks the server which methods it allows, then tries ours in the documented order; when
/// the server closes the connection on the way, says so (and why, as far as known).
async fn authenticate(
    handle: &mut Handle<ClientHandler>,
    options: &ConnectOptions,
    mismatch_accepted: bool,
    diagnosis: &Diagnosis,
) -> Result<()> {
    let mut attempts = Attempts::default();
    let result = try_methods(handle, options, mismatch_accepted, &mut attempts).await;
    let error = match result {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    if !handle.is_closed() && error.kind() != ErrorKind::Disconnected {
        return Err(error);
    }
    let user = options.user.as_str();
    let said = match diagnosis.ending() {
        Some(Ending::Integrity) => return Err(Error::new(ErrorKind::Protocol, INTEGRITY_MESSAGE)),
        Some(Ending::ServerDisconnect { message, .. }) if !message.is_empty() => {
            format!("; it said \"{}\"", quote(message.as_bytes()))
        }
        _ => String::new(),
    };
    let tried = list_or_none(&attempts.tried);
    let message = if attempts.failures == 0 {
        format!(
            "the server closed the connection during authentication as {user:?}{said}; \
             tried: {tried}"
        )
    } else {
        format!(
            "the server closed the connection after {} authentication attempts (too many \
             keys offered? sshd's MaxAuthTries is {DEFAULT_MAX_AUTH_TRIES} by default; try \
             --no-agent or an explicit -I key file){said}; tried: {tried}",
            attempts.failures
        )
    };
    Err(Error::new(ErrorKind::Auth, message).with_source(error))
}

/// Where authentication stands: the methods the server still allows, and how many
/// public key failures may pass before the password's turn.
struct AuthState {
    allowed: Option<MethodSet>,
    key_failures_allowed: usize,
}

impl AuthState {
    fn allows(&self, m: MethodKind) -> bool {
        self.allowed.as_ref().is_none_or(|set| set.contains(&m))
    }
}

/// The methods in the order of [`Credentials::methods`] (by default: identity files and
/// agent keys, keyboard-interactive, password).
async fn try_methods(
    handle: &mut Handle<ClientHandler>,
    options: &ConnectOptions,
    mismatch_accepted: bool,
    attempts: &mut Attempts,
) -> Result<()> {
    let user = options.user.as_str();
    let creds = &options.credentials;
    let auth_err = |e: russh::Error| russh_error(e, "authenticating");
    let order = creds.method_order();

    // Like OpenSSH, ask with "none" first: the answer lists the methods the server allows,
    // so no attempt is spent on a method it would refuse (MaxAuthTries counts them).
    // Unless public keys come first and a key file is configured: then that key is the
    // first attempt anyway, and its answer lists the allowed methods just as well; this
    // saves a round trip. (sshd does not count "none" against MaxAuthTries, but it does
    // count a refused key, which is spent here either way.)
    // (Not for certificate files alone: one whose key is in no file nor agent is never
    // offered, and the error should still say what the server allows.)
    let keys_first =
        order.first() == Some(&AuthMethod::PublicKey) && !creds.identities().is_empty();
    let allowed = if keys_first {
        None
    } else {
        match handle.authenticate_none(user).await.map_err(auth_err)? {
            AuthResult::Success => return Ok(()),
            AuthResult::Failure {
                remaining_methods, ..
            } => Some(remaining_methods),
        }
    };
    let mut state = AuthState {
        allowed,
        key_failures_allowed: usize::MAX,
    };

    // A password the server may take, tried after the keys, gets its turn: agent keys
    // stop one attempt short of sshd's default MaxAuthTries, which would otherwise end the
    // connection first.
    let password_methods = [AuthMethod::KeyboardInteractive, AuthMethod::Password];
    let password_after_keys = order
        .iter()
        .position(|m| *m == AuthMethod::PublicKey)
        .is_some_and(|keys| {
            order
                .iter()
                .skip(keys)
                .any(|m| password_methods.contains(m))
        });
    let password_turn = creds.password_secret().is_some()
        && !mismatch_accepted
        && password_after_keys
        && (state.allows(MethodKind::KeyboardInteractive) || state.allows(MethodKind::Password));
    if password_turn {
        state.key_failures_allowed = DEFAULT_MAX_AUTH_TRIES - 1;
    }

    let mut mismatch_noted = false;
    for method in order {
        match method {
            AuthMethod::PublicKey => {
                if public_keys(handle, options, &mut state, attempts).await? {
                    return Ok(());
                }
            }
            AuthMethod::KeyboardInteractive | AuthMethod::Password => {
                // The password, unless the host key could not be verified.
                let Some(password) = creds.password_secret() else {
                    continue;
                };
                if mismatch_accepted {
                    if !mismatch_noted {
                        attempts
                            .tried
                            .push("password (disabled: the host key did not match)".to_owned());
                        mismatch_noted = true;
                    }
                    continue;
                }
                if *method == AuthMethod::KeyboardInteractive {
                    if !state.allows(MethodKind::KeyboardInteractive) {
                        continue;
                    }
                    attempts.tried.push("keyboard-interactive".to_owned());
                    match keyboard_interactive(handle, user, password.expose()).await? {
                        None => return Ok(()),
                        Some(remaining) => {
                            attempts.failures += 1;
                            state.allowed = Some(remaining);
                        }
                    }
                } else {
                    if !state.allows(MethodKind::Password) {
                        continue;
                    }
                    attempts.tried.push("password".to_owned());
                    match handle
                        .authenticate_password(user, password.expose())
                        .await
                        .map_err(auth_err)?
                    {
                        AuthResult::Success => return Ok(()),
                        AuthResult::Failure {
                            remaining_methods, ..
                        } => {
                            attempts.failures += 1;
                            state.allowed = Some(remaining_methods);
                        }
                    }
                }
            }
        }
    }

    if handle.is_closed() {
        return Err(Error::new(
            ErrorKind::Disconnected,
            "connection lost while authenticating",
        ));
    }
    let allowed = match &state.allowed {
        Some(set) => set
            .iter()
            .map(|m| <&str>::from(m).to_owned())
            .collect::<Vec<_>>()
            .join(","),
        None => "unknown".to_owned(),
    };
    let methods = if order == AuthMethod::DEFAULT_ORDER {
        String::new()
    } else {
        format!(
            " (methods configured: {})",
            order
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    Err(Error::new(
        ErrorKind::Auth,
        format!(
            "authentication failed for user {user:?}; tried: {}{methods}; the server allows: \
             {allowed}",
            list_or_none(&attempts.tried)
        ),
    ))
}

/// Public key authentication: certificate files, identity files (each with its
/// certificate first), then the agent's certificates and keys within the budget. Whether
/// one was accepted.
async fn public_keys(
    handle: &mut Handle<ClientHandler>,
    options: &ConnectOptions,
    state: &mut AuthState,
    attempts: &mut Attempts,
) -> Result<bool> {
    let user = options.user.as_str();
    let creds = &options.credentials;
    let auth_err = |e: russh::Error| russh_error(e, "authenticating");

    let explicit_certificates = creds.certificates();
    let mut offered_certificates: Vec<Vec<u8>> = Vec::new();
    let mut agent: Option<AgentKeys> = None;
    let agent_socket = match creds.agent_setting() {
        Agent::Off => None,
        Agent::FromEnv => std::env::var_os("SSH_AUTH_SOCK")
            .filter(|s| !s.is_empty())
            .map(std::path::PathBuf::from),
        Agent::Socket(p) => Some(p.clone()),
    };

    // 1. Certificates given as files, each signed by the key file or else the agent key
    //    that holds its private key.
    for certificate in explicit_certificates {
        if !state.allows(MethodKind::PublicKey) {
            break;
        }
        let cert = certificate.certificate();
        let described = format!(
            "certificate {} ({})",
            certificate.path().display(),
            certificate.describe(user)
        );
        let file_key = creds
            .identities()
            .iter()
            .find(|id| id.key().public_key().key_data() == cert.public_key());
        let outcome = if let Some(identity) = file_key {
            attempts.tried.push(described);
            let mut signer = KeySigner {
                key: identity.key().clone(),
            };
            offer_certificate(handle, user, cert, &mut signer, ErrorKind::KeyFile).await?
        } else {
            if agent.is_none() {
                if let Some(socket) = &agent_socket {
                    agent = Some(AgentKeys::open(socket).await?);
                }
            }
            let agent_key = agent.as_ref().and_then(|a| {
                a.keys
                    .iter()
                    .find(|k| k.key_data() == cert.public_key())
                    .cloned()
            });
            match (agent.as_mut(), agent_key) {
                (Some(a), Some(key)) => {
                    attempts.tried.push(described);
                    let mut signer = AgentKeySigner {
                        agent: &mut a.client,
                        key,
                    };
                    offer_certificate(handle, user, cert, &mut signer, ErrorKind::Agent).await?
                }
                _ => {
                    attempts.tried.push(format!(
                        "{described}: not offered, its private key is neither an identity \
                         file nor in the ssh-agent"
                    ));
                    continue;
                }
            }
        };
        offered_certificates.push(cert.to_bytes().unwrap_or_default());
        match outcome {
            None => return Ok(true),
            Some(remaining) => {
                attempts.failures += 1;
                state.allowed = Some(remaining);
            }
        }
    }

    // 2. Identity files, all of them: the user named each one; a key's certificate first.
    for identity in creds.identities() {
        if let Some(certificate) = identity.certificate_to_offer(!explicit_certificates.is_empty())
        {
            let cert = certificate.certificate();
            let blob = cert.to_bytes().unwrap_or_default();
            if state.allows(MethodKind::PublicKey) && !offered_certificates.contains(&blob) {
                attempts.tried.push(format!(
                    "certificate {} ({})",
                    certificate.path().display(),
                    certificate.describe(user)
                ));
                let mut signer = KeySigner {
                    key: identity.key().clone(),
                };
                let outcome =
                    offer_certificate(handle, user, cert, &mut signer, ErrorKind::KeyFile).await?;
                offered_certificates.push(blob);
                match outcome {
                    None => return Ok(true),
                    Some(remaining) => {
                        attempts.failures += 1;
                        state.allowed = Some(remaining);
                    }
                }
            }
        }
        if !state.allows(MethodKind::PublicKey) {
            break;
        }
        let hash = if identity.is_rsa() {
            handle
                .best_supported_rsa_hash()
                .await
                .map_err(auth_err)?
                .flatten()
        } else {
            None
        };
        let key = PrivateKeyWithHashAlg::new(identity.key().clone(), hash);
        attempts
            .tried
            .push(format!("publickey {}", identity.path().display()));
        match handle
            .authenticate_publickey(user, key)
            .await
            .map_err(auth_err)?
        {
            AuthResult::Success => return Ok(true),
            AuthResult::Failure {
                remaining_methods, ..
            } => {
                attempts.failures += 1;
                state.allowed = Some(remaining_methods);
            }
        }
    }

    // 3. The agent: its certificates, then its keys, within the budget.
    if agent.is_none() && state.allows(MethodKind::PublicKey) {
        if let Some(socket) = &agent_socket {
            agent = Some(AgentKeys::open(socket).await?);
        }
    }
    if let Some(agent) = agent
        .as_mut()
        .filter(|_| state.allows(MethodKind::PublicKey))
    {
        for (cert, comment) in agent.certificates.clone() {
            if !state.allows(MethodKind::PublicKey)
                || attempts.failures >= state.key_failures_allowed
            {
                break;
            }
            let blob = cert.to_bytes().unwrap_or_default();
            if offered_certificates.contains(&blob) {
                continue;
            }
            // IdentitiesOnly: only certificates for a configured key, as OpenSSH.
            let plain = russh::keys::PublicKey::new(cert.public_key().clone(), "");
            let configured = creds
                .identities()
                .iter()
                .any(|id| id.key().public_key().key_data() == cert.public_key());
            if !configured && !creds.agent_may_offer(&plain) {
                continue;
            }
            attempts.tried.push(format!(
                "certificate from the agent {comment:?} ({})",
                describe_user_certificate(&cert, user)
            ));
            let outcome =
                offer_certificate(handle, user, &cert, &mut agent.client, ErrorKind::Agent).await?;
            offered_certificates.push(blob);
            match outcome {
                None => return Ok(true),
                Some(remaining) => {
                    attempts.failures += 1;
                    state.allowed = Some(remaining);
                }
            }
        }
        let total = agent.keys.len();
        let keys: Vec<_> = agent
            .keys
            .iter()
            .filter(|k| creds.agent_may_offer(k))
            .cloned()
            .collect();
        let usable = keys.len();
        let entry = attempts.tried.len();
        if total > 0 || agent.certificates.is_empty() {
            attempts.tried.push(if usable == total {
                format!("agent ({total} keys)")
            } else {
                format!("agent ({usable} of {total} keys: IdentitiesOnly)")
            });
        }
        let mut offered = 0;
        let mut held_back = false;
        for public in keys {
            if !state.allows(MethodKind::PublicKey) {
                break;
            }
            if attempts.failures >= state.key_failures_allowed {
                held_back = true;
                break;
            }
            offered += 1;
            let hash = if matches!(public.algorithm(), russh::keys::Algorithm::Rsa { .. }) {
                handle
                    .best_supported_rsa_hash()
                    .await
                    .map_err(auth_err)?
                    .flatten()
            } else {
                None
            };
            match handle
                .authenticate_publickey_with(user, public, hash, &mut agent.client)
                .await
            {
                Ok(AuthResult::Success) => return Ok(true),
                Ok(AuthResult::Failure {
                    remaining_methods, ..
                }) => {
                    attempts.failures += 1;
                    state.allowed = Some(remaining_methods);
                }
                // The server went away while the agent signed: not the agent's fault.
                Err(_) if handle.is_closed() => {
                    return Err(Error::new(
                        ErrorKind::Disconnected,
                        "connection lost while authenticating",
                    ))
                }
                Err(e) => {
                    return Err(
                        Error::new(ErrorKind::Agent, "the ssh-agent failed to sign").with_source(e)
                    )
                }
            }
        }
        if offered < usable {
            if let Some(entry) = attempts.tried.get_mut(entry) {
                *entry = if held_back {
                    format!(
                        "agent ({offered} of {total} keys; the rest held back so that the \
                         password gets its turn within sshd's MaxAuthTries)"
                    )
                } else {
                    format!("agent ({offered} of {total} keys)")
                };
            }
        }
    }
    Ok(false)
}

/// The ssh-agent's identities, split into certificates and plain keys, with the
/// connection to it (holding one of the process's agent slots).
struct AgentKeys {
    client: AgentClient<tokio::net::UnixStream>,
    certificates: Vec<(russh::keys::Certificate, String)>,
    keys: Vec<russh::keys::PublicKey>,
    _slot: Option<tokio::sync::SemaphorePermit<'static>>,
}

impl AgentKeys {
    async fn open(socket: &std::path::Path) -> Result<AgentKeys> {
        // At high fan-out an agent refuses connections (EAGAIN): a few at a time.
        let slot = AGENT_SLOTS.acquire().await.ok();
        let mut client = AgentClient::connect_uds(socket).await.map_err(|e| {
            Error::new(
                ErrorKind::Agent,
                format!("cannot reach the ssh-agent at {}", socket.display()),
            )
            .with_source(e)
        })?;
        let identities = client.request_identities().await.map_err(|e| {
            Error::new(ErrorKind::Agent, "cannot list the ssh-agent's keys").with_source(e)
        })?;
        let mut certificates = Vec::new();
        let mut keys = Vec::new();
        for identity in identities {
            match identity {
                AgentIdentity::Certificate {
                    certificate,
                    comment,
                } => {
                    // A host certificate in the agent is no login (OpenSSH skips it too).
                    if certificate.cert_type().is_user() {
                        certificates.push((certificate, comment));
                    }
                }
                AgentIdentity::PublicKey { key, .. } => keys.push(key),
            }
        }
        Ok(AgentKeys {
            client,
            certificates,
            keys,
            _slot: slot,
        })
    }
}

/// Offers `certificate`, signed by `signer`: `None` when the server accepted it, or the
/// methods it still allows. A signer that fails is `failure_kind` (the key file's or the
/// agent's fault), unless the connection went away meanwhile.
async fn offer_certificate<S>(
    handle: &mut Handle<ClientHandler>,
    user: &str,
    certificate: &russh::keys::Certificate,
    signer: &mut S,
    failure_kind: ErrorKind,
) -> Result<Option<MethodSet>>
where
    S: russh::Signer,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    let hash = if matches!(certificate.algorithm(), russh::keys::Algorithm::Rsa { .. }) {
        handle
            .best_supported_rsa_hash()
            .await
            .map_err(|e| russh_error(e, "authenticating"))?
            .flatten()
    } else {
        None
    };
    match handle
        .authenticate_certificate_with(user, certificate.clone(), hash, signer)
        .await
    {
        Ok(AuthResult::Success) => Ok(None),
        Ok(AuthResult::Failure {
            remaining_methods, ..
        }) => Ok(Some(remaining_methods)),
        Err(_) if handle.is_closed() => Err(Error::new(
            ErrorKind::Disconnected,
            "connection lost while authenticating",
        )),
        Err(e) => Err(Error::new(
            failure_kind,
            format!(
                "cannot sign with the key of certificate {:?}",
                certificate.key_id()
            ),
        )
        .with_source(e)),
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "nothing (no key, agent or password available)".to_owned()
    } else {
        items.join(", ")
    }
}

/// Returns `None` on success, or the methods the server still allows.
async fn keyboard_interactive(
    handle: &mut Handle<ClientHandler>,
    user: &str,
    password: &str,
) -> Result<Option<MethodSet>> {
    let auth_err = |e: russh::Error| russh_error(e, "authenticating");
    let mut response = handle
        .authenticate_keyboard_interactive_start(user, None)
        .await
        .map_err(auth_err)?;
    // PAM asks for the password, then sends an empty round; a few more rounds are allowed
    // (banners, information), but a server that keeps asking is cut off.
    let mut password_sent = false;
    for _ in 0..8 {
        match response {
            KeyboardInteractiveAuthResponse::Success => return Ok(None),
            KeyboardInteractiveAuthResponse::Failure {
                remaining_methods, ..
            } => return Ok(Some(remaining_methods)),
            KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                let mut answers = Vec::with_capacity(prompts.len());
                for prompt in &prompts {
                    // Only a hidden prompt gets the password, and only once: a second
                    // request means the first answer was wrong, and an empty answer lets
                    // the server end the exchange with a failure.
                    if !prompt.echo && !password_sent {
                        answers.push(password.to_owned());
                        password_sent = true;
                    } else {
                        answers.push(String::new());
                    }
                }
                response = handle
                    .authenticate_keyboard_interactive_respond(answers)
                    .await
                    .map_err(auth_err)?;
            }
        }
    }
    Err(Error::new(
        ErrorKind::Auth,
        "keyboard-interactive authentication did not finish after 8 rounds",
    ))
}
