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

/// The one list of per-host settings: each field once, with its type in [`HostSettings`],
/// its key and raw type in the inventory file, and its flags. Every place that needs the
/// whole list ([`HostSettings`] itself, [`HostSettings::merge`], the inventory file's raw
/// tables, what a jump host inherits) is generated from it by calling `$callback` with
/// `($($args)*)` followed by the list; a new setting is added here and nowhere else
/// (then given its parsing in `file.rs` and its use in `pool/target.rs`).
///
/// Flags: `per_host` (not inherited by a jump host: it describes the target itself);
/// `hop_from_command_line` (a jump host takes it from the command line only, not from the
/// target's inventory or ssh_config).
macro_rules! host_setting_fields {
    ($callback:ident ! ($($args:tt)*)) => {
        $callback! { ($($args)*)
            /// What to connect to, OpenSSH's `HostName`: an address or DNS name (default: the
            /// host's name). The inventory key is `address`; [`Host::hostname`] resolves it.
            address ("address"): String => Spanned<String> [per_host];
            /// SSH port (default 22).
            port ("port"): u16 => Spanned<i64> [per_host];
            /// Remote user (default: the local user).
            user ("user"): String => Spanned<String> [per_host];
            /// Private key files, tried in order.
            identity_files ("identity_files"): Vec<PathBuf> => Vec<Spanned<String>> [hop_from_command_line];
            /// OpenSSH user certificate files (OpenSSH's `CertificateFile`), offered first, each
            /// signed by the identity file or agent key that holds its private key.
            certificate_files ("certificate_files"): Vec<PathBuf> => Vec<Spanned<String>> [];
            /// The name of an environment variable holding the password.
            password_env ("password_env"): String => Spanned<String> [hop_from_command_line];
            /// Host key policy.
            host_key_policy ("host_key_policy"): HostKeyPolicy => Spanned<String> [hop_from_command_line];
            /// The known_hosts file.
            known_hosts ("known_hosts"): PathBuf => Spanned<String> [hop_from_command_line];
            /// Deadline for each connection phase.
            connect_timeout ("connect_timeout"): Duration => Spanned<toml::Value> [hop_from_command_line];
            /// Deadline for the command.
            command_timeout ("command_timeout"): Duration => Spanned<toml::Value> [per_host];
            /// How often to probe a silent server (OpenSSH's `ServerAliveInterval`).
            keepalive ("keepalive"): Duration => Spanned<toml::Value> [hop_from_command_line];
            /// Unanswered probes after which the connection counts as lost (OpenSSH's
            /// `ServerAliveCountMax`).
            keepalive_max ("keepalive_max"): usize => Spanned<i64> [hop_from_command_line];
            /// How commands run.
            transport ("transport"): Transport => Spanned<String> [per_host];
            /// Run commands and transfers through sudo (inventory key `become`).
            become_enabled ("become"): bool => Spanned<bool> [];
            /// The user sudo runs them as (default root); only used when `become` is on.
            become_user ("become_user"): String => Spanned<String> [];
            /// The name of an environment variable holding the sudo password (never the
            /// password itself).
            become_password_env ("become_password_env"): String => Spanned<String> [];
            /// Jump hosts (OpenSSH's `ProxyJump`): `[user@]host[:port]` hops separated by commas,
            /// first hop first, or `none`. See [`JumpHost::parse_list`](crate::JumpHost::parse_list).
            proxy_jump ("proxy_jump"): String => Spanned<String> [per_host];
            /// A local command carrying the connection (OpenSSH's `ProxyCommand`), or `none`.
            /// See [`ConnectOptions::proxy_command`](crate::ConnectOptions::proxy_command).
            proxy_command ("proxy_command"): String => Spanned<String> [per_host];
        }
    };
}
pub(crate) use host_setting_fields;

/// `true` when `$flag` is among the flags in brackets (a constant the compiler folds).
macro_rules! has_flag {
    ($flag:ident in [$($f:ident)*]) => {
        [$(stringify!($f)),*].contains(&stringify!($flag))
    };
}

macro_rules! define_host_settings {
    (() $($(#[$doc:meta])* $field:ident ($key:literal): $ty:ty => $raw:ty [$($flag:ident)*];)*) => {
        /// Settings that defaults, groups and hosts may each set; later layers win.
        /// Every field is optional: unset means "inherit".
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct HostSettings {
            $($(#[$doc])* pub $field: Option<$ty>,)*
            /// Free-form variables for `{{name}}` placeholders in commands.
            pub vars: IndexMap<String, String>,
            /// Where each set field came from, by field name (`"user"`, `"port"`...); a field
            /// missing here was set by a program without saying where.
            pub origins: std::collections::BTreeMap<&'static str, Origin>,
        }

        impl HostSettings {
            /// Every set field of `over` replaces this one's, with its origin.
            fn take_set_fields(&mut self, over: &HostSettings) {
                $(
                    if over.$field.is_some() {
                        self.$field = over.$field.clone();
                        match over.origins.get(stringify!($field)) {
                            Some(origin) => self.origins.insert(stringify!($field), origin.clone()),
                            None => self.origins.remove(stringify!($field)),
                        };
                    }
                )*
            }

            /// These settings without those that describe the host itself (`per_host`) and
            /// without variables: what a jump host of this host starts from.
            pub(crate) fn inheritable(&self) -> HostSettings {
                let mut settings = self.clone();
                settings.vars.clear();
                $(
                    if has_flag!(per_host in [$($flag)*]) {
                        settings.$field = None;
                        settings.origins.remove(stringify!($field));
                    }
                )*
                settings
            }

            /// Clears the `hop_from_command_line` settings that did not come from the
            /// command line.
            pub(crate) fn keep_hop_settings_from_command_line(&mut self) {
                $(
                    if has_flag!(hop_from_command_line in [$($flag)*])
                        && self.origins.get(stringify!($field)) != Some(&Origin::CommandLine)
                    {
                        self.$field = None;
                        self.origins.remove(stringify!($field));
                    }
                )*
            }
        }
    };
}
host_setting_fields!(define_host_settings!());

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
        // Again for proxy_jump and proxy_command, which changes nothing: they are set above.
        self.take_set_fields(over);
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
