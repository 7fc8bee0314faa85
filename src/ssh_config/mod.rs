//! OpenSSH client configuration (`~/.ssh/config`, `/etc/ssh/ssh_config`, `-F FILE`), read
//! and resolved per host with OpenSSH 9.2's rules: `Host` patterns (`*`, `?`, `!`,
//! several per line), `Match` (`all`, `host`, `originalhost`, `user`, `localuser`,
//! `exec`, `final`, `canonical`), `Include` with globs, the first value obtained wins, `%`
//! tokens and `~` where OpenSSH expands them. Each value keeps the file and line it came
//! from.
//!
//! The subset is written here rather than taken from a crate: `ssh2-config` 0.9 has no
//! `Match`, lets the last value of a block win, expands no tokens, resolves relative
//! includes of the system file against `~/.ssh` and drops most of the keywords below;
//! `russh-config` 0.58 matches one exact `Host` name and reads no `Include`.
//!
//! ```no_run
//! use rexec::{SshConfig, SshConfigQuery as Query};
//!
//! # fn f() -> rexec::Result<()> {
//! let config = SshConfig::load_default()?;
//! let resolved = config.resolve(&Query::new("web1"))?;
//! if let Some(port) = &resolved.port {
//!     println!("port {} from {}", port.value, port.origin);
//! }
//! # Ok(()) }
//! ```

mod apply;
mod expand;
mod lex;
mod load;
mod resolve;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[cfg(doc)]
use crate::error::ErrorKind;
use crate::error::Result;

/// Where a value came from: a file and a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigLine {
    /// The configuration file (an included file is named itself).
    pub file: PathBuf,
    /// The line in it, counting from 1.
    pub line: usize,
}

impl fmt::Display for ConfigLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// A resolved value and the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value<T> {
    /// The value, with tokens and `~` expanded where OpenSSH expands them.
    pub value: T,
    /// Where it was set.
    pub origin: ConfigLine,
}

/// OpenSSH's `StrictHostKeyChecking`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictHostKeyChecking {
    /// `yes` (or `true`): only recorded keys. rexec's `strict`.
    Yes,
    /// `accept-new`: record unknown keys, refuse changed ones. rexec's `accept-new`.
    AcceptNew,
    /// `no`, `off` (or `false`): rexec's `off` (which, unlike OpenSSH's `no`, records
    /// nothing).
    No,
    /// `ask`: rexec never asks, so this counts as `yes`.
    Ask,
}

impl StrictHostKeyChecking {
    /// rexec's policy for it (`ask` is `strict`: rexec never prompts for host keys).
    pub fn policy(self) -> crate::HostKeyPolicy {
        match self {
            StrictHostKeyChecking::Yes | StrictHostKeyChecking::Ask => crate::HostKeyPolicy::Strict,
            StrictHostKeyChecking::AcceptNew => crate::HostKeyPolicy::AcceptNew,
            StrictHostKeyChecking::No => crate::HostKeyPolicy::Off,
        }
    }
}

impl fmt::Display for StrictHostKeyChecking {
    /// As `ssh -G` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StrictHostKeyChecking::Yes => "true",
            StrictHostKeyChecking::AcceptNew => "accept-new",
            StrictHostKeyChecking::No => "false",
            StrictHostKeyChecking::Ask => "ask",
        })
    }
}

/// What a host is looked up by, and what is already settled for it (as `ssh -l USER -p
/// PORT HOST` settles them before reading the files: they win over the files, and `Match
/// user`, `%r` and `%p` see them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<'a> {
    /// The host as given (`%n`, what `Host` and `Match originalhost` match).
    pub host: &'a str,
    /// The remote user, if already chosen.
    pub user: Option<&'a str>,
    /// The port, if already chosen.
    pub port: Option<u16>,
}

impl<'a> Query<'a> {
    /// A query for `host` with nothing settled.
    pub fn new(host: &'a str) -> Query<'a> {
        Query {
            host,
            user: None,
            port: None,
        }
    }
}

/// The configuration resolved for one host: each keyword rexec honours, if a file set it,
/// with the line it came from. Unset means "not configured" (rexec's own default applies).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResolvedConfig {
    /// `HostName`, `%h` expanded, lowercased unless an address.
    pub host_name: Option<Value<String>>,
    /// `User`.
    pub user: Option<Value<String>>,
    /// `Port`.
    pub port: Option<Value<u16>>,
    /// Every `IdentityFile`, in order, duplicates dropped, `~` and tokens expanded.
    pub identity_files: Vec<Value<PathBuf>>,
    /// `IdentitiesOnly`.
    pub identities_only: Option<Value<bool>>,
    /// `IdentityAgent`: a socket path, `SSH_AUTH_SOCK`, `$VARIABLE` or `none`.
    pub identity_agent: Option<Value<String>>,
    /// Every `CertificateFile`, like identity files.
    pub certificate_files: Vec<Value<PathBuf>>,
    /// `ProxyJump` as written (tokens `%h %n %p %r` not yet expanded: see
    /// [`ResolvedConfig::expand_proxy_tokens`]); `none` means no jump. Set only when it
    /// came before any `ProxyCommand`.
    pub proxy_jump: Option<Value<String>>,
    /// `ProxyCommand` as written (the rest of the line); `none` means none. Set only when
    /// it came before any `ProxyJump`.
    pub proxy_command: Option<Value<String>>,
    /// `UserKnownHostsFile`: the files, expanded (empty for `none`).
    pub user_known_hosts_files: Option<Value<Vec<PathBuf>>>,
    /// `GlobalKnownHostsFile`: the files, `~` expanded (empty for `none`).
    pub global_known_hosts_files: Option<Value<Vec<PathBuf>>>,
    /// `StrictHostKeyChecking`.
    pub strict_host_key_checking: Option<Value<StrictHostKeyChecking>>,
    /// `ConnectTimeout` (`none` leaves it unset).
    pub connect_timeout: Option<Value<Duration>>,
    /// `ServerAliveInterval` (0: OpenSSH sends no probes).
    pub server_alive_interval: Option<Value<Duration>>,
    /// `ServerAliveCountMax`.
    pub server_alive_count_max: Option<Value<u32>>,
    /// `PasswordAuthentication`.
    pub password_authentication: Option<Value<bool>>,
    /// `PubkeyAuthentication` (`unbound` and `host-bound` count as yes).
    pub pubkey_authentication: Option<Value<bool>>,
    /// `KbdInteractiveAuthentication` (or its old name `ChallengeResponseAuthentication`).
    pub kbd_interactive_authentication: Option<Value<bool>>,
    /// `PreferredAuthentications`, split at commas.
    pub preferred_authentications: Option<Value<Vec<String>>>,
    /// `HostKeyAlias`.
    pub host_key_alias: Option<Value<String>>,
    tokens: expand::Tokens,
}

impl ResolvedConfig {
    /// `text` (a `ProxyCommand` or `ProxyJump` value) with `%h` (the host name), `%n` (the
    /// host as given), `%p` (the port), `%r` (the remote user) and `%%` replaced, as
    /// OpenSSH expands them before connecting.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for another token or a lone `%`.
    pub fn expand_proxy_tokens(&self, text: &str) -> Result<String> {
        expand::expand(text, &self.tokens, expand::PROXY_TOKENS, false).map_err(|m| {
            crate::Error::new(crate::ErrorKind::InvalidInput, format!("{text:?}: {m}"))
        })
    }
}

/// The configuration files, read once; [`SshConfig::resolve`] evaluates them per host.
#[derive(Debug, Clone, Default)]
pub struct SshConfig {
    files: Vec<load::ConfigFile>,
}

impl SshConfig {
    /// No configuration at all (`-F none`).
    pub fn none() -> SshConfig {
        SshConfig::default()
    }

    /// OpenSSH's files: `~/.ssh/config` (`~` is `$HOME`), then `/etc/ssh/ssh_config`,
    /// each skipped when missing. Like OpenSSH, `~/.ssh/config` and every included file
    /// must belong to the user (or root) and not be writable by group or others.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] naming `file:line` for a line OpenSSH would refuse (a
    /// bad value, an unknown `Match` criterion, unbalanced quotes, nesting past 16
    /// includes) or a file with bad permissions; [`ErrorKind::LocalIo`] for a file that
    /// exists but cannot be read.
    pub fn load_default() -> Result<SshConfig> {
        let user = home::home_dir().map(|home| home.join(".ssh").join("config"));
        let system = Path::new(load::SYSTEM_DIR).join("ssh_config");
        SshConfig::load_user_and_system(user.as_deref(), &system)
    }

    /// What [`SshConfig::load_default`] reads, from other places: `user` (read as
    /// `~/.ssh/config` is: owner and permissions checked, relative includes in `~/.ssh`),
    /// then `system` (relative includes in the directory that holds it, as `/etc/ssh` for
    /// OpenSSH's own); each skipped when missing. For programs and tests that must not
    /// depend on this machine's files.
    ///
    /// # Errors
    /// As [`SshConfig::load_default`].
    pub fn load_user_and_system(user: Option<&Path>, system: &Path) -> Result<SshConfig> {
        let system_dir = system
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut loader = load::Loader::new(system_dir.to_owned());
        let mut files = Vec::new();
        if let Some(user) = user {
            files.extend(loader.file(user, true, true, false, 0)?);
        }
        files.extend(loader.file(system, false, false, false, 0)?);
        Ok(SshConfig { files })
    }

    /// Only `path` (like `ssh -F FILE`), read as a user's file (relative includes in
    /// `~/.ssh`).
    ///
    /// # Errors
    /// As [`SshConfig::load_default`], and [`ErrorKind::LocalIo`] when `path` is missing.
    pub fn load_file(path: impl AsRef<Path>) -> Result<SshConfig> {
        let mut loader = load::Loader::default();
        let files = loader
            .file(path.as_ref(), true, false, true, 0)?
            .into_iter()
            .collect();
        Ok(SshConfig { files })
    }

    /// What `-F` says: no value reads OpenSSH's files, `none` none, anything else that
    /// file.
    ///
    /// # Errors
    /// As [`SshConfig::load_file`].
    pub fn from_flag(flag: Option<&Path>) -> Result<SshConfig> {
        match flag {
            None => SshConfig::load_default(),
            Some(p) if p.as_os_str().eq_ignore_ascii_case("none") => Ok(SshConfig::none()),
            Some(p) => SshConfig::load_file(p),
        }
    }

    /// The top-level files read, in order (not those they include).
    pub fn files(&self) -> Vec<&Path> {
        self.files.iter().map(|f| f.path.as_path()).collect()
    }

    /// The settings for one host. Runs `Match exec` commands (with `$SHELL -c`, stdin and
    /// stdout on /dev/null) whose earlier criteria on the line matched.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] naming `file:line` for an unknown `%` token or an unset
    /// `${VARIABLE}` in a value, or a `Match exec` command killed by a signal;
    /// [`ErrorKind::LocalIo`] when the shell for `Match exec` cannot be started.
    pub fn resolve(&self, query: &Query<'_>) -> Result<ResolvedConfig> {
        resolve::resolve(&self.files, query)
    }
}
