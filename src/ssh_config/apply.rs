//! Laying the OpenSSH configuration under an inventory host: it fills only what the command
//! line and the inventory left unset.

use crate::error::{Error, ErrorKind, Result};
use crate::inventory::{check_host_name, check_user, Host, Origin, Transport};
use crate::ssh_config::{ConfigLine, Query, SshConfig};

/// rexec's bounds on the keepalive count (the inventory's `keepalive_max`).
const KEEPALIVE_MAX: std::ops::RangeInclusive<u32> = 1..=1000;

impl SshConfig {
    /// `host` with the configuration resolved for it underneath its settings: the
    /// configuration is looked up by the host's inventory `address` if it has one, else by
    /// its name (what `ssh` would be given), with the user and port already set by the
    /// command line or inventory taken as settled (like `ssh -l USER -p PORT`). Then:
    /// - `HostName` replaces the address (the looked-up name is only an alias);
    /// - `User`, `Port`, `IdentityFile` and `CertificateFile` (all of them),
    ///   `StrictHostKeyChecking`,
    ///   `ConnectTimeout`, `ServerAliveInterval` (when not 0) and `ServerAliveCountMax`
    ///   (bounded to 1-1000) fill the settings the command line and inventory left unset,
    ///   with their origin;
    /// - `ProxyJump` (its `%` tokens expanded) or `ProxyCommand` (as written: its tokens
    ///   are expanded when it runs) fills `proxy_jump` or `proxy_command` when the command
    ///   line and the inventory set neither;
    /// - the whole resolution is kept in [`Host::ssh_config`] for the keywords that have no
    ///   inventory setting (known_hosts files, `IdentitiesOnly`, `IdentityAgent`,
    ///   `HostKeyAlias`, authentication methods, `ProxyJump`, `ProxyCommand`).
    ///
    /// Local hosts are returned unchanged.
    ///
    /// # Errors
    /// As [`SshConfig::resolve`], and [`ErrorKind::InvalidInput`] naming `file:line` for a
    /// `HostName` or `User` that rexec refuses as a host or user name; the message names
    /// the host.
    pub fn apply(&self, host: &Host) -> Result<Host> {
        let mut out = host.clone();
        if host.transport() == Transport::Local {
            return Ok(out);
        }
        let s = &host.settings;
        let query = Query {
            host: host.hostname(),
            user: s.user.as_deref(),
            port: s.port,
        };
        let resolved = self.resolve(&query).map_err(|e| e.with_host(&host.name))?;
        let bad = |at: &ConfigLine, m: String| {
            Error::new(ErrorKind::InvalidInput, format!("{at}: {m}")).with_host(&host.name)
        };
        let set = &mut out.settings;
        let from = |at: &ConfigLine| Origin::SshConfig(at.clone());
        if let Some(v) = &resolved.host_name {
            check_host_name(&v.value).map_err(|m| bad(&v.origin, format!("HostName: {m}")))?;
            set.address = Some(v.value.clone());
            set.origins.insert("address", from(&v.origin));
        }
        if let (None, Some(v)) = (&set.user, &resolved.user) {
            check_user(&v.value).map_err(|m| bad(&v.origin, format!("User: {m}")))?;
            set.user = Some(v.value.clone());
            set.origins.insert("user", from(&v.origin));
        }
        if let (None, Some(v)) = (set.port, &resolved.port) {
            set.port = Some(v.value);
            set.origins.insert("port", from(&v.origin));
        }
        if let (None, Some(first)) = (&set.identity_files, resolved.identity_files.first()) {
            set.identity_files = Some(
                resolved
                    .identity_files
                    .iter()
                    .map(|v| v.value.clone())
                    .collect(),
            );
            set.origins.insert("identity_files", from(&first.origin));
        }
        if let (None, Some(first)) = (&set.certificate_files, resolved.certificate_files.first()) {
            set.certificate_files = Some(
                resolved
                    .certificate_files
                    .iter()
                    .map(|v| v.value.clone())
                    .collect(),
            );
            set.origins.insert("certificate_files", from(&first.origin));
        }
        if let (None, Some(v)) = (set.host_key_policy, &resolved.strict_host_key_checking) {
            set.host_key_policy = Some(v.value.policy());
            set.origins.insert("host_key_policy", from(&v.origin));
        }
        if let Some(v) = resolved
            .connect_timeout
            .as_ref()
            .filter(|v| !v.value.is_zero())
        {
            if set.connect_timeout.is_none() {
                set.connect_timeout = Some(v.value);
                set.origins.insert("connect_timeout", from(&v.origin));
            }
        }
        if let Some(v) = resolved
            .server_alive_interval
            .as_ref()
            .filter(|v| !v.value.is_zero())
        {
            if set.keepalive.is_none() {
                set.keepalive = Some(v.value);
                set.origins.insert("keepalive", from(&v.origin));
            }
        }
        if let (None, Some(v)) = (set.keepalive_max, &resolved.server_alive_count_max) {
            let bounded = v.value.clamp(*KEEPALIVE_MAX.start(), *KEEPALIVE_MAX.end());
            set.keepalive_max = usize::try_from(bounded).ok();
            set.origins.insert("keepalive_max", from(&v.origin));
        }
        // ProxyJump and ProxyCommand fill one slot, as in the inventory: only when the
        // command line and the inventory set neither.
        if set.proxy_jump.is_none() && set.proxy_command.is_none() {
            if let Some(v) = &resolved.proxy_jump {
                let hops = resolved
                    .expand_proxy_tokens(&v.value)
                    .map_err(|e| bad(&v.origin, format!("ProxyJump {}", e.message())))?;
                crate::ssh::JumpHost::parse_list(&hops)
                    .map_err(|e| bad(&v.origin, format!("ProxyJump: {}", e.message())))?;
                set.proxy_jump = Some(hops);
                set.origins.insert("proxy_jump", from(&v.origin));
            } else if let Some(v) = &resolved.proxy_command {
                // Its tokens are expanded when it runs, with the final host, port and
                // user (the same values OpenSSH would use).
                crate::ssh::check_proxy_command(&v.value)
                    .map_err(|e| bad(&v.origin, format!("ProxyCommand: {}", e.message())))?;
                set.proxy_command = Some(v.value.clone());
                set.origins.insert("proxy_command", from(&v.origin));
            }
        }
        out.ssh_config = Some(Box::new(resolved));
        Ok(out)
    }
}
