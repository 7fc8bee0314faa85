//! Jump hosts (OpenSSH's `ProxyJump`): [`JumpHost`], one hop of a chain, and [`Jumps`],
//! the connections to jump hosts shared by the targets behind them.
//!
//! Each hop is a real SSH connection with its own host key check, authentication and
//! deadlines; the next hop (or the target) rides a `direct-tcpip` channel on it (RFC 4254
//! §7.2). Many targets behind one bastion share one connection to it, up to
//! [`Jumps::DEFAULT_CHANNELS_PER_CONNECTION`] at a time; more connections are opened one
//! after another when those are full.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::ChannelOpenFailure;

use crate::error::{Error, ErrorKind, Phase, Result};
use crate::ssh::auth::Credentials;
use crate::ssh::connect_options::ConnectOptions;
use crate::ssh::handler::ClientHandler;
use crate::ssh::known_hosts::{HostKeyPolicy, KnownHosts};
use crate::ssh::session::Session;

/// The most hops one chain may have.
pub const MAX_HOPS: usize = 16;

/// One hop of a jump chain: `[user@]host[:port]` as OpenSSH's `ProxyJump` and `ssh -J`
/// write it, with settings of its own. What is not set is inherited from the target the
/// chain leads to: credentials, known_hosts files, host key policy, deadlines and
/// keepalive. The user and port are not inherited (as in OpenSSH): unset, they are the
/// local user name and 22.
///
/// A hop made with [`JumpHost::from_options`] inherits nothing: it is connected exactly
/// as those options say (how [`TargetBuilder`](crate::TargetBuilder) builds hops, and the
/// way to give a hop settings resolved elsewhere, such as from an OpenSSH configuration).
#[derive(Debug, Clone)]
pub struct JumpHost {
    host: String,
    /// `None`: not given (22, unless a resolver finds another).
    port: Option<u16>,
    user: Option<String>,
    /// Every setting of the hop, inheriting nothing (see [`JumpHost::from_options`]).
    resolved: Option<Box<ConnectOptions>>,
    credentials: Option<Credentials>,
    known_hosts: Option<KnownHosts>,
    policy: Option<HostKeyPolicy>,
    connect_timeout: Option<Duration>,
    handshake_timeout: Option<Duration>,
    auth_timeout: Option<Duration>,
    keepalive: Option<(Duration, usize)>,
}

impl JumpHost {
    /// A hop to `host` (a name or an address) on port 22.
    pub fn new(host: impl Into<String>) -> JumpHost {
        JumpHost {
            host: host.into(),
            port: None,
            user: None,
            resolved: None,
            credentials: None,
            known_hosts: None,
            policy: None,
            connect_timeout: None,
            handshake_timeout: None,
            auth_timeout: None,
            keepalive: None,
        }
    }

    /// Parses one hop: `[user@]host[:port]`, `[user@][v6-address]:port`, optionally
    /// prefixed `ssh://` (OpenSSH's forms; the user is what comes before the last `@`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] naming the hop: an empty user or host, a port that is
    /// not 1 to 65535, white space, a control character or a `/` in it.
    pub fn parse(spec: &str) -> Result<JumpHost> {
        let invalid = |why: &str| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("invalid jump host {spec:?}: {why}"),
            )
        };
        let text = spec.strip_prefix("ssh://").unwrap_or(spec);
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("white space or a control character"));
        }
        let (user, rest) = match text.rfind('@') {
            Some(at) => (
                Some(text.get(..at).unwrap_or_default()),
                text.get(at + 1..).unwrap_or_default(),
            ),
            None => (None, text),
        };
        if user == Some("") {
            return Err(invalid("the user before @ is empty"));
        }
        let port_of = |p: &str| match p.parse::<u16>() {
            Ok(port) if port > 0 => Ok(Some(port)),
            _ => Err(invalid(&format!("port {p:?} is not 1 to 65535"))),
        };
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let Some(close) = bracketed.find(']') else {
                return Err(invalid("no ] after the address"));
            };
            let host = bracketed.get(..close).unwrap_or_default();
            let after = bracketed.get(close + 1..).unwrap_or_default();
            let port = match after.strip_prefix(':') {
                Some(p) => port_of(p)?,
                None if after.is_empty() => None,
                None => return Err(invalid("unexpected text after ]")),
            };
            (host, port)
        } else if rest.matches(':').count() == 1 {
            let (host, port) = rest.split_once(':').unwrap_or((rest, ""));
            (host, port_of(port)?)
        } else {
            // No colon, or a bare IPv6 address (several colons): no port.
            (rest, None)
        };
        if host.is_empty() {
            return Err(invalid("the host is empty"));
        }
        if host.contains('/') || host.contains(',') {
            return Err(invalid("the host contains / or ,"));
        }
        let mut hop = JumpHost::new(host);
        hop.port = port;
        if let Some(user) = user {
            hop = hop.user(user);
        }
        Ok(hop)
    }

    /// Parses a comma-separated chain as `ProxyJump` and `-J` take it, first hop first;
    /// `none` (any case) is the empty chain.
    ///
    /// # Errors
    /// As [`JumpHost::parse`]; an empty item; more than [`MAX_HOPS`] hops.
    pub fn parse_list(list: &str) -> Result<Vec<JumpHost>> {
        let list = list.trim();
        if list.eq_ignore_ascii_case("none") {
            return Ok(Vec::new());
        }
        let hops = list
            .split(',')
            .map(|item| {
                let item = item.trim();
                if item.is_empty() {
                    Err(Error::new(
                        ErrorKind::InvalidInput,
                        format!("invalid jump host list {list:?}: an empty item"),
                    ))
                } else {
                    JumpHost::parse(item)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        if hops.len() > MAX_HOPS {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("invalid jump host list: more than {MAX_HOPS} hops"),
            ));
        }
        Ok(hops)
    }

    /// A hop connected with exactly `options` (host, port, user, credentials, known_hosts,
    /// host key policy, deadlines, keepalive; the name in messages is
    /// [`ConnectOptions::display_name`]); its own jump hosts or proxy command, if any, are
    /// ignored. Nothing is inherited from the target, and the other setters of this type
    /// have no effect on such a hop.
    pub fn from_options(options: ConnectOptions) -> JumpHost {
        let mut hop = JumpHost::new(options.hostname().to_owned());
        hop.port = Some(options.port_number());
        hop.user = Some(options.user_name().to_owned());
        hop.resolved = Some(Box::new(options.proxy_jump(Vec::new())));
        hop
    }

    /// The TCP port (default 22).
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// The user to log in to the jump host as (default: the local user name).
    #[must_use]
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Credentials for this hop (default: the target's).
    #[must_use]
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// known_hosts files for this hop (default: the target's).
    #[must_use]
    pub fn known_hosts(mut self, known_hosts: KnownHosts) -> Self {
        self.known_hosts = Some(known_hosts);
        self
    }

    /// The host key policy for this hop (default: the target's).
    #[must_use]
    pub fn host_key_policy(mut self, policy: HostKeyPolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Total time to reach this hop: the TCP connect for the first hop, opening the
    /// channel through the previous hop for the others (default: the target's).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Total time for this hop's banner and key exchange (default: the target's).
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = Some(timeout);
        self
    }

    /// Total time for this hop's authentication (default: the target's).
    #[must_use]
    pub fn auth_timeout(mut self, timeout: Duration) -> Self {
        self.auth_timeout = Some(timeout);
        self
    }

    /// Keepalive for this hop's connection (default: the target's).
    #[must_use]
    pub fn keepalive(mut self, interval: Duration, max_unanswered: usize) -> Self {
        self.keepalive = Some((interval, max_unanswered));
        self
    }

    /// The host name or address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The user, when one was given.
    pub fn user_name(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The TCP port: the one given, else 22.
    pub fn port_number(&self) -> u16 {
        self.port.unwrap_or(22)
    }

    /// The TCP port when one was given (`host:port`, [`JumpHost::port`]); `None` leaves
    /// it to whoever resolves the hop (22 by default, or an OpenSSH configuration's
    /// `Port`).
    pub fn port_if_given(&self) -> Option<u16> {
        self.port
    }

    /// The name used in messages: `host`, or `host:port` when the port is not 22 (for
    /// a hop [`from_options`](JumpHost::from_options), the options' display name).
    pub fn display_name(&self) -> String {
        match (&self.resolved, self.port) {
            (Some(options), _) => options.display_name(),
            (None, Some(port)) if port != 22 => format!("{}:{port}", self.host),
            (None, _) => self.host.clone(),
        }
    }

    /// The options to connect to this hop with, completed from the target's.
    pub(crate) fn options_for(&self, target: &ConnectOptions) -> ConnectOptions {
        if let Some(options) = &self.resolved {
            return (**options).clone();
        }
        let (keepalive, keepalive_max) = self.keepalive.unwrap_or(target.keepalive_setting());
        let mut options = ConnectOptions::new(self.host.clone())
            .port(self.port_number())
            .credentials(
                self.credentials
                    .clone()
                    .unwrap_or_else(|| target.credentials_setting().clone()),
            )
            .known_hosts(
                self.known_hosts
                    .clone()
                    .unwrap_or_else(|| target.known_hosts_setting().clone()),
            )
            .host_key_policy(self.policy.unwrap_or(target.policy_setting()))
            .connect_timeout(self.connect_timeout.unwrap_or(target.timeouts().connect))
            .handshake_timeout(
                self.handshake_timeout
                    .unwrap_or(target.timeouts().handshake),
            )
            .auth_timeout(self.auth_timeout.unwrap_or(target.timeouts().auth))
            .keepalive(keepalive, keepalive_max)
            .label(self.display_name());
        if let Some(user) = &self.user {
            options = options.user(user.clone());
        }
        options
    }
}

/// The default number of channels (targets, or connections to the next hop) one
/// connection to a jump host carries at once. OpenSSH's sshd does not count
/// `direct-tcpip` channels against `MaxSessions` (that limit is for session channels); one
/// connection took 1,000 channels in a measurement against OpenSSH 9.2 (see the README's
/// "Jump hosts"). The cap keeps one bastion process (sshd serves each connection with one
/// single-threaded process) from carrying a whole fleet's traffic and bounds what one
/// lost connection takes down.
pub const DEFAULT_CHANNELS_PER_CONNECTION: usize = 10;

/// How long a connection to a jump host that no target uses any more stays open for the
/// next target, while its [`Jumps`] lives.
const IDLE_LINGER: Duration = Duration::from_secs(2);

/// Connections to jump hosts, shared by the targets behind them: one pool per run
/// ([`Pool`](crate::Pool) makes one for each run unless given one with
/// [`Pool::jumps`](crate::Pool::jumps)), or one of your own for
/// [`Session::connect_with`].
///
/// Targets whose chains start with the same hops (same host, port, user, known_hosts
/// files, policy and host key alias, hop by hop) share the connections to those hops: one handshake,
/// one authentication, then one `direct-tcpip` channel per target. A connection carries
/// at most [`Jumps::channels_per_connection`] channels at once; when every connection to
/// a hop is full, another is opened, one at a time per hop and at most 8 handshakes at
/// once per jump host address (below sshd's `MaxStartups` of 10).
///
/// A connection lives as long as a session uses it; one that no session uses is closed
/// after 2 s, or at once when the `Jumps` is dropped. A failure to reach a hop is
/// remembered for the life of the `Jumps` or until [`Jumps::forget_failures`] (the
/// targets behind it fail at once with the
/// same error), except a connection dropped before authentication, which the next target
/// tries again. Cheap to clone (clones share the pool).
#[derive(Clone)]
pub struct Jumps {
    inner: Arc<JumpsInner>,
}

impl std::fmt::Debug for Jumps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jumps")
            .field("channels_per_connection", &self.inner.cap)
            .field("connections", &self.connections())
            .finish()
    }
}

impl Default for Jumps {
    fn default() -> Self {
        Jumps::new()
    }
}

struct JumpsInner {
    cap: usize,
    chains: Mutex<HashMap<Vec<HopKey>, Arc<Chain>>>,
    /// Handshakes in flight per jump host address.
    handshakes: Mutex<HashMap<(String, u16), Arc<tokio::sync::Semaphore>>>,
}

/// What makes two hops the same connection (as OpenSSH's ControlPath `%C`: host, port and
/// user; and the host key rules it was checked under: files, policy, the name the key is
/// looked up under).
#[derive(Clone, PartialEq, Eq, Hash)]
struct HopKey {
    host: String,
    port: u16,
    user: String,
    known_hosts: Vec<PathBuf>,
    policy: String,
    key_name: (String, u16),
}

impl HopKey {
    fn of(options: &ConnectOptions) -> HopKey {
        let (key_host, key_port) = options.key_lookup();
        HopKey {
            host: options.hostname().to_owned(),
            port: options.port_number(),
            user: options.user_name().to_owned(),
            known_hosts: options.known_hosts_setting().paths().to_vec(),
            policy: options.policy_setting().to_string(),
            key_name: (key_host.to_owned(), key_port),
        }
    }
}

/// The connections to one hop of one chain.
#[derive(Default)]
struct Chain {
    /// Held while a connection is being opened: one at a time.
    opener: tokio::sync::Mutex<()>,
    conns: Mutex<Vec<Arc<HopConnection>>>,
    /// Why the hop could not be reached, remembered.
    failure: Mutex<Option<HopFailure>>,
}

/// One connection to a jump host.
pub(crate) struct HopConnection {
    session: Session,
    /// Channels riding it now.
    users: AtomicUsize,
    chain: Weak<Chain>,
}

/// A channel's claim on a connection to a jump host: while it lives, the connection
/// stays open and counts it against its cap.
pub(crate) struct Lease {
    connection: Arc<HopConnection>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.connection.users.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        // Idle now: closed after a while unless a target takes it again.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let connection = Arc::downgrade(&self.connection);
        let chain = self.connection.chain.clone();
        runtime.spawn(async move {
            tokio::time::sleep(IDLE_LINGER).await;
            let (Some(chain), Some(connection)) = (chain.upgrade(), connection.upgrade()) else {
                return;
            };
            if let Ok(mut conns) = chain.conns.lock() {
                if connection.users.load(Ordering::Acquire) == 0 {
                    conns.retain(|c| !Arc::ptr_eq(c, &connection));
                }
            };
        });
    }
}

/// A hop that could not be reached: which one, and why.
struct HopFailure {
    /// Index in the chain, from 0.
    hop: usize,
    name: String,
    error: Error,
}

impl HopFailure {
    fn replicate(&self) -> HopFailure {
        HopFailure {
            hop: self.hop,
            name: self.name.clone(),
            error: self.error.replicate(),
        }
    }

    /// The target's error: `jump host NAME (hop K of N): MESSAGE`, with the hop's kind
    /// and phase.
    fn into_error(self, hops: usize) -> Error {
        let message = format!(
            "jump host {} (hop {} of {hops}): {}",
            self.name,
            self.hop + 1,
            self.error.message()
        );
        self.error.with_message(message)
    }
}

impl Jumps {
    /// The default number of channels per connection to a jump host.
    pub const DEFAULT_CHANNELS_PER_CONNECTION: usize = DEFAULT_CHANNELS_PER_CONNECTION;

    /// An empty pool with the default cap.
    pub fn new() -> Jumps {
        Jumps::with_channels_per_connection(DEFAULT_CHANNELS_PER_CONNECTION)
    }

    /// An empty pool whose connections carry at most `channels` channels each (at
    /// least 1).
    pub fn with_channels_per_connection(channels: usize) -> Jumps {
        Jumps {
            inner: Arc::new(JumpsInner {
                cap: channels.max(1),
                chains: Mutex::default(),
                handshakes: Mutex::default(),
            }),
        }
    }

    /// The cap on channels per connection.
    pub fn channels_per_connection(&self) -> usize {
        self.inner.cap
    }

    /// Forgets the failures to reach hops remembered so far: the next target behind
    /// such a hop tries it again (after fixing a known_hosts file, say, with a `Jumps`
    /// shared across runs). Open connections are kept.
    pub fn forget_failures(&self) {
        let chains = match self.inner.chains.lock() {
            Ok(c) => c.values().cloned().collect::<Vec<_>>(),
            Err(_) => return,
        };
        for chain in chains {
            if let Ok(mut failure) = chain.failure.lock() {
                *failure = None;
            }
        }
    }

    /// The connections to jump hosts open now (every hop of every chain).
    pub fn connections(&self) -> usize {
        let chains = match self.inner.chains.lock() {
            Ok(c) => c.values().cloned().collect::<Vec<_>>(),
            Err(_) => return 0,
        };
        chains
            .iter()
            .map(|c| {
                c.conns
                    .lock()
                    .map(|v| v.iter().filter(|c| !c.session.is_closed()).count())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Opens a `direct-tcpip` channel to the target of `options` through its chain of
    /// jump hosts; the lease keeps the last hop's connection open.
    pub(crate) async fn stream_to(
        &self,
        options: &ConnectOptions,
    ) -> Result<(russh::ChannelStream<client::Msg>, Lease)> {
        let hops: Vec<ConnectOptions> = options
            .jump_hosts()
            .iter()
            .map(|h| h.options_for(options))
            .collect();
        let lease = self
            .lease(&hops, hops.len().saturating_sub(1))
            .await
            .map_err(|f| f.into_error(hops.len()))?;
        let through = hops
            .last()
            .map(ConnectOptions::display_name)
            .unwrap_or_default();
        let stream = open_direct_tcpip(
            &lease.connection.session,
            options.hostname(),
            options.port_number(),
            &through,
            options.timeouts().connect,
        )
        .await?;
        Ok((stream, lease))
    }

    /// A lease on a connection to hop `last` of `hops` (whose earlier hops lead to it).
    fn lease<'a>(
        &'a self,
        hops: &'a [ConnectOptions],
        last: usize,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Lease, HopFailure>> + Send + 'a>>
    {
        Box::pin(async move {
            let key: Vec<HopKey> = hops.iter().take(last + 1).map(HopKey::of).collect();
            let chain = match self.inner.chains.lock() {
                Ok(mut chains) => chains.entry(key).or_default().clone(),
                Err(_) => Arc::new(Chain::default()),
            };
            if let Some(lease) = self.take(&chain) {
                return Ok(lease);
            }
            let _opening = chain.opener.lock().await;
            if let Some(lease) = self.take(&chain) {
                return Ok(lease);
            }
            if let Some(failure) = chain
                .failure
                .lock()
                .ok()
                .and_then(|f| f.as_ref().map(HopFailure::replicate))
            {
                return Err(failure);
            }
            let Some(options) = hops.get(last) else {
                return Err(HopFailure {
                    hop: last,
                    name: String::new(),
                    error: Error::new(ErrorKind::InvalidInput, "empty jump host chain"),
                });
            };
            let failure = |error: Error| HopFailure {
                hop: last,
                name: options.display_name(),
                error,
            };
            let opened = if last == 0 {
                let slot = self.handshake_slot(options);
                let _permit = slot.acquire().await;
                Session::connect_direct(options).await.map_err(failure)
            } else {
                let previous = self.lease(hops, last - 1).await?;
                let through = hops
                    .get(last - 1)
                    .map(ConnectOptions::display_name)
                    .unwrap_or_default();
                match open_direct_tcpip(
                    &previous.connection.session,
                    options.hostname(),
                    options.port_number(),
                    &through,
                    options.timeouts().connect,
                )
                .await
                {
                    Ok(stream) => Session::connect_over(options, stream, Some(previous))
                        .await
                        .map_err(failure),
                    Err(e) => Err(failure(e)),
                }
            };
            match opened {
                Ok(session) => {
                    tracing::debug!(
                        "opened a connection to jump host {} for up to {} channels",
                        options.display_name(),
                        self.inner.cap
                    );
                    let connection = Arc::new(HopConnection {
                        session,
                        users: AtomicUsize::new(1),
                        chain: Arc::downgrade(&chain),
                    });
                    if let Ok(mut conns) = chain.conns.lock() {
                        conns.push(connection.clone());
                    }
                    Ok(Lease { connection })
                }
                Err(f) => {
                    // A drop before authentication (MaxStartups) is worth another try by
                    // the next target; anything else would fail the same way again.
                    let retryable = f.error.kind() == ErrorKind::Disconnected
                        && f.error.phase() == Some(Phase::Handshake);
                    if !retryable {
                        if let Ok(mut cached) = chain.failure.lock() {
                            *cached = Some(f.replicate());
                        }
                    }
                    Err(f)
                }
            }
        })
    }

    /// A lease on an open connection of `chain` with room for one more channel.
    fn take(&self, chain: &Chain) -> Option<Lease> {
        let mut conns = chain.conns.lock().ok()?;
        conns.retain(|c| !c.session.is_closed());
        let connection = conns
            .iter()
            .filter(|c| c.users.load(Ordering::Acquire) < self.inner.cap)
            .min_by_key(|c| c.users.load(Ordering::Acquire))?
            .clone();
        connection.users.fetch_add(1, Ordering::AcqRel);
        Some(Lease { connection })
    }

    fn handshake_slot(&self, options: &ConnectOptions) -> Arc<tokio::sync::Semaphore> {
        const HANDSHAKES_PER_SERVER: usize = 8;
        let key = (options.hostname().to_owned(), options.port_number());
        match self.inner.handshakes.lock() {
            Ok(mut map) => map
                .entry(key)
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_PER_SERVER)))
                .clone(),
            Err(_) => Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_PER_SERVER)),
        }
    }
}

/// Opens a `direct-tcpip` channel to `host:port` on the connection to jump host
/// `through`, within `deadline`.
async fn open_direct_tcpip(
    session: &Session,
    host: &str,
    port: u16,
    through: &str,
    deadline: Duration,
) -> Result<russh::ChannelStream<client::Msg>> {
    let (handle, failures) = session.jump_parts().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidInput,
            "a local session cannot be a jump host",
        )
    })?;
    let start = failures.mark();
    let open = handle.channel_open_direct_tcpip(host, u32::from(port), "127.0.0.1", 0);
    let shown = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let opened = tokio::time::timeout(deadline, open).await;
    match opened {
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!(
                "timed out after {} connecting to {shown} through {through}",
                crate::error::fmt_duration(deadline)
            ),
        )
        .in_phase(Phase::Connect)),
        Ok(Ok(channel)) => Ok(channel.into_stream()),
        Ok(Err(russh::Error::ChannelOpenFailure(reason))) => {
            let said = failures.description(start, reason.code()).await;
            let said = match said {
                Some(text) if !text.is_empty() => format!(": {text}"),
                _ => String::new(),
            };
            let (kind, why) = match &reason {
                ChannelOpenFailure::ConnectFailed => {
                    (ErrorKind::Connect, "connect failed".to_owned())
                }
                ChannelOpenFailure::AdministrativelyProhibited => {
                    (ErrorKind::Connect, "administratively prohibited".to_owned())
                }
                ChannelOpenFailure::UnknownChannelType => {
                    (ErrorKind::Channel, "unknown channel type".to_owned())
                }
                ChannelOpenFailure::ResourceShortage => {
                    (ErrorKind::Channel, "resource shortage".to_owned())
                }
                ChannelOpenFailure::Other { code, .. } => {
                    (ErrorKind::Channel, format!("reason code {code}"))
                }
            };
            Err(Error::new(
                kind,
                format!(
                    "cannot connect to {shown} through {through}: it refused the \
                     direct-tcpip channel ({why}{said})"
                ),
            )
            .in_phase(Phase::Connect))
        }
        Ok(Err(e)) if handle.is_closed() => Err(session
            .lost(&format!("connection to jump host {through} lost"))
            .with_source(e)
            .in_phase(Phase::Connect)),
        Ok(Err(e)) => Err(crate::ssh::session::russh_error(
            e,
            &format!("opening a channel to {shown} through {through}"),
        )
        .in_phase(Phase::Connect)),
    }
}

/// The channel open failures of one connection, with the server's descriptions (russh
/// hands the description to the handler only, and the failed open returns the reason
/// code alone).
#[derive(Default)]
pub(crate) struct OpenFailures {
    seq: AtomicU64,
    log: Mutex<VecDeque<(u64, u32, String)>>,
    arrived: tokio::sync::Notify,
}

impl OpenFailures {
    const KEPT: usize = 64;

    pub(crate) fn record(&self, reason: u32, description: &str) {
        let seq = self.seq.fetch_add(1, Ordering::AcqRel) + 1;
        if let Ok(mut log) = self.log.lock() {
            if log.len() >= Self::KEPT {
                log.pop_front();
            }
            log.push_back((seq, reason, description.to_owned()));
        }
        self.arrived.notify_waiters();
    }

    fn mark(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// The description of a failure with `reason` recorded after `start`, when the
    /// failures since then with that reason all say the same (several opens may fail at
    /// once, and nothing tells which description is whose).
    async fn description(&self, start: u64, reason: u32) -> Option<String> {
        // The handler records the failure right after the open call learns of it.
        let wait = async {
            loop {
                let arrived = self.arrived.notified();
                if let Some(found) = self.candidates(start, reason) {
                    return found;
                }
                arrived.await;
            }
        };
        tokio::time::timeout(Duration::from_millis(200), wait)
            .await
            .ok()
            .flatten()
    }

    /// `None` while no such failure is recorded; then the description, or `Some(None)`
    /// when they differ.
    fn candidates(&self, start: u64, reason: u32) -> Option<Option<String>> {
        let log = self.log.lock().ok()?;
        let mut texts = log
            .iter()
            .filter(|(seq, r, _)| *seq > start && *r == reason)
            .map(|(_, _, text)| text);
        let first = texts.next()?;
        Some(texts.all(|t| t == first).then(|| first.clone()))
    }
}

/// The parts of a session a jump needs.
pub(crate) type JumpParts<'a> = (&'a Handle<ClientHandler>, &'a OpenFailures);
