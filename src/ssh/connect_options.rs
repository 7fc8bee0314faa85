//! [`ConnectOptions`]: everything needed to connect to one host (hostname, user,
//! credentials, host key policy, deadlines, route).

use std::time::Duration;

use crate::ssh::auth::Credentials;
use crate::ssh::jump::JumpHost;
use crate::ssh::known_hosts::{HostKeyPolicy, KnownHosts};

/// Everything needed to connect to one host. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// What is connected to (OpenSSH's `HostName`): an address or a DNS name.
    pub(crate) hostname: String,
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) credentials: Credentials,
    pub(crate) known_hosts: KnownHosts,
    pub(crate) policy: HostKeyPolicy,
    pub(crate) connect_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) auth_timeout: Duration,
    pub(crate) keepalive_interval: Duration,
    pub(crate) keepalive_max: usize,
    pub(crate) label: Option<String>,
    pub(crate) route: Route,
    pub(crate) host_key_alias: Option<String>,
}

/// How a connection reaches its host.
#[derive(Debug, Clone, Default)]
pub(crate) enum Route {
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

    /// Options for `hostname` (what is connected to, OpenSSH's `HostName`: a DNS name or
    /// an address) with the defaults: port 22, the local
    /// user name, keys from the agent, OpenSSH's known_hosts files, [`HostKeyPolicy::Strict`],
    /// 10 s to connect, 10 s for the banner and key exchange, 30 s to authenticate, and a
    /// keepalive every 15 s that gives up after 3 unanswered.
    pub fn new(hostname: impl Into<String>) -> ConnectOptions {
        ConnectOptions {
            hostname: hostname.into(),
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
            None => (&self.hostname, self.port),
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

    /// The host's name used in messages, such as its inventory name (default: the
    /// hostname, or `hostname:port` when the port is not 22).
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

    /// What is connected to (OpenSSH's `HostName`): the DNS name or address given to
    /// [`ConnectOptions::new`]. The host's name in messages is
    /// [`ConnectOptions::display_name`].
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The user to log in as: the one given to [`ConnectOptions::user`], or the local
    /// user name.
    pub fn user_name(&self) -> &str {
        &self.user
    }

    /// The host's name in messages: the [`label`](ConnectOptions::label) (the inventory
    /// name when the pool made these options), else `hostname` or `hostname:port`.
    pub fn display_name(&self) -> String {
        match &self.label {
            Some(l) => l.clone(),
            None if self.port == 22 => self.hostname.clone(),
            None => format!("{}:{}", self.hostname, self.port),
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
