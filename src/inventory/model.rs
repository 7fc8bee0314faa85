//! The host model: what one inventory host is, with its settings and where they came from.

use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;

use crate::ssh::HostKeyPolicy;

/// The most hosts one run takes: one range, a whole `-H` list or a whole inventory with
/// more is an error ([`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput)) before anything is allocated for them.
pub const MAX_HOSTS: usize = 100_000;

/// The longest host name or address, in bytes (a DNS name has at most 253).
pub const MAX_NAME_LENGTH: usize = 255;

/// How a host's commands run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// Over SSH (the default).
    #[default]
    Ssh,
    /// As local processes (`sh -c`) on this machine, like Ansible's local connection.
    Local,
}

/// Where a setting's value came from (what `--show-config` prints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line option (or a program's override).
    CommandLine,
    /// An item of a `-H` host list (`user@`, `:port`).
    HostList,
    /// A line of the inventory file.
    Inventory {
        /// The file as named to rexec (shared by every setting read from it).
        file: std::sync::Arc<str>,
        /// The line, counting from 1.
        line: usize,
    },
    /// A line of an OpenSSH client configuration file.
    SshConfig(crate::ssh_config::ConfigLine),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::CommandLine => f.write_str("command line"),
            Origin::HostList => f.write_str("host list (-H)"),
            Origin::Inventory { file, line } => write!(f, "inventory {file}:{line}"),
            Origin::SshConfig(at) => write!(f, "ssh_config {at}"),
        }
    }
}

/// Settings that defaults, groups and hosts may each set; later layers win.
/// Every field is optional: unset means "inherit".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostSettings {
    /// What to connect to, OpenSSH's `HostName`: an address or DNS name (default: the
    /// host's name). The inventory key is `address`; [`Host::hostname`] resolves it.
    pub address: Option<String>,
    /// SSH port (default 22).
    pub port: Option<u16>,
    /// Remote user (default: the local user).
    pub user: Option<String>,
    /// Private key files, tried in order.
    pub identity_files: Option<Vec<PathBuf>>,
    /// OpenSSH user certificate files (OpenSSH's `CertificateFile`), offered first, each
    /// signed by the identity file or agent key that holds its private key.
    pub certificate_files: Option<Vec<PathBuf>>,
    /// The name of an environment variable holding the password.
    pub password_env: Option<String>,
    /// Host key policy.
    pub host_key_policy: Option<HostKeyPolicy>,
    /// The known_hosts file.
    pub known_hosts: Option<PathBuf>,
    /// Deadline for each connection phase.
    pub connect_timeout: Option<Duration>,
    /// Deadline for the command.
    pub command_timeout: Option<Duration>,
    /// How often to probe a silent server (OpenSSH's `ServerAliveInterval`).
    pub keepalive: Option<Duration>,
    /// Unanswered probes after which the connection counts as lost (OpenSSH's
    /// `ServerAliveCountMax`).
    pub keepalive_max: Option<usize>,
    /// How commands run.
    pub transport: Option<Transport>,
    /// Run commands and transfers through sudo (inventory key `become`).
    pub become_enabled: Option<bool>,
    /// The user sudo runs them as (default root); only used when `become` is on.
    pub become_user: Option<String>,
    /// The name of an environment variable holding the sudo password (never the
    /// password itself).
    pub become_password_env: Option<String>,
    /// Jump hosts (OpenSSH's `ProxyJump`): `[user@]host[:port]` hops separated by commas,
    /// first hop first, or `none`. See [`JumpHost::parse_list`](crate::JumpHost::parse_list).
    pub proxy_jump: Option<String>,
    /// A local command carrying the connection (OpenSSH's `ProxyCommand`), or `none`.
    /// See [`ConnectOptions::proxy_command`](crate::ConnectOptions::proxy_command).
    pub proxy_command: Option<String>,
    /// Free-form variables for `{{name}}` placeholders in commands.
    pub vars: IndexMap<String, String>,
    /// Where each set field came from, by field name (`"user"`, `"port"`...); a field
    /// missing here was set by a program without saying where.
    pub origins: std::collections::BTreeMap<&'static str, Origin>,
}

impl HostSettings {
    /// Lays `over` on top of `self`: set fields of `over` win; variables merge. The
    /// layer that sets `proxy_jump` or `proxy_command` decides how the host is reached:
    /// setting one clears the other from the layers below.
    pub fn merge(&mut self, over: &HostSettings) {
        if over.proxy_jump.is_some() || over.proxy_command.is_some() {
            self.proxy_jump = over.proxy_jump.clone();
            self.proxy_command = over.proxy_command.clone();
            for field in ["proxy_jump", "proxy_command"] {
                match over.origins.get(field) {
                    Some(origin) => self.origins.insert(field, origin.clone()),
                    None => self.origins.remove(field),
                };
            }
        }
        macro_rules! take {
            ($($f:ident),*) => {$(
                if over.$f.is_some() {
                    self.$f = over.$f.clone();
                    match over.origins.get(stringify!($f)) {
                        Some(origin) => self.origins.insert(stringify!($f), origin.clone()),
                        None => self.origins.remove(stringify!($f)),
                    };
                }
            )*};
        }
        take!(
            address,
            port,
            user,
            identity_files,
            certificate_files,
            password_env,
            host_key_policy,
            known_hosts,
            connect_timeout,
            command_timeout,
            keepalive,
            keepalive_max,
            transport,
            become_enabled,
            become_user,
            become_password_env
        );
        for (k, v) in &over.vars {
            self.vars.insert(k.clone(), v.clone());
        }
    }
}

/// One host of the inventory, with every setting resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// The inventory name (what patterns and output use).
    pub name: String,
    /// The groups it belongs to, directly or through nested groups, in file order.
    pub groups: Vec<String>,
    /// The resolved settings (address and port always set).
    pub settings: HostSettings,
    /// What the OpenSSH client configuration said for this host, once applied with
    /// [`SshConfig::apply`](crate::ssh_config::SshConfig::apply) (the settings above then
    /// hold the values it filled in).
    /// Boxed: most hosts have none, and the configuration is larger than the rest of the
    /// host (10,000 hosts).
    pub ssh_config: Option<Box<crate::ssh_config::ResolvedConfig>>,
}

impl AsRef<Host> for Host {
    /// So that [`Pool::new`](crate::Pool::new) takes hosts and references to hosts alike.
    fn as_ref(&self) -> &Host {
        self
    }
}

impl Host {
    /// What is connected to (OpenSSH's `HostName`): the `address` setting, else the
    /// host's name.
    pub fn hostname(&self) -> &str {
        self.settings.address.as_deref().unwrap_or(&self.name)
    }

    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.settings.port.unwrap_or(22)
    }

    /// The transport.
    pub fn transport(&self) -> Transport {
        self.settings.transport.unwrap_or_default()
    }

    /// The value of a placeholder: `name` (the inventory name), `host` (the hostname,
    /// what is connected to: a template name kept as it is, being a file format), `port`,
    /// `user`, or a variable.
    pub fn var(&self, key: &str) -> Option<String> {
        match key {
            "name" => Some(self.name.clone()),
            "host" => Some(self.hostname().to_owned()),
            "port" => Some(self.port().to_string()),
            "user" => self.settings.user.clone(),
            other => self.settings.vars.get(other).cloned(),
        }
    }
}
