//! Turning inventory hosts into connectable [`Target`]s: credentials built once per
//! distinct setting and shared (each key file read and decrypted once), passwords read
//! from their environment variables before anything connects.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::inventory::{Host, Origin, Transport};
use crate::secret::Secret;
use crate::ssh::{
    Agent, AuthMethod, Become, ConnectOptions, Credentials, Identity, JumpHost, KnownHosts,
    UserCertificate,
};
use crate::ssh_config::ResolvedConfig;
use crate::template::Template;

/// One host ready to run: how to reach it and what it runs with.
#[derive(Debug, Clone)]
pub struct Target {
    /// The inventory host (name, groups, settings and variables).
    pub host: Host,
    /// How to connect (unused for local hosts).
    pub connect: ConnectOptions,
    /// The command deadline from the inventory or command line, if any.
    pub command_timeout: Option<Duration>,
    /// Run commands (and transfers) as another user through sudo: from the inventory's
    /// `become`, `become_user` and `become_password_env`, or the command line.
    pub sudo: Option<Become>,
    /// Why this host's settings could not be made ([`TargetBuilder::build_or_failing`]):
    /// every run fails it with this error without connecting.
    pub(crate) failing: Option<std::sync::Arc<Error>>,
}

impl Target {
    /// The host's inventory name.
    pub fn name(&self) -> &str {
        &self.host.name
    }

    /// Whether commands run locally.
    pub fn is_local(&self) -> bool {
        self.host.transport() == Transport::Local
    }

    /// The value of the placeholder `name` for this host: `name` (the inventory name),
    /// `host` (the address connected to), `port`, `user` (the login user: the configured
    /// one, or the local user name), or one of the host's inventory `vars`.
    pub fn var(&self, name: &str) -> Option<String> {
        match name {
            "name" => Some(self.host.name.clone()),
            "host" => Some(self.connect.hostname().to_owned()),
            "port" => Some(self.host.port().to_string()),
            "user" => Some(self.connect.user_name().to_owned()),
            other => self.host.settings.vars.get(other).cloned(),
        }
    }

    /// `template` rendered for this host (see [`Template`] for the rules): values from
    /// [`Target::var`], quoted for their shell context in a command template, raw in a
    /// path template.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] naming the host, the placeholder and its position
    /// when the placeholder is not defined for this host, or when a value contains NUL.
    pub fn render(&self, template: &Template) -> Result<String> {
        template
            .render(|name| self.var(name))
            .map_err(|e| e.with_host(self.name()))
    }

    /// `path` (a remote SFTP path or a local directory) with its placeholders replaced
    /// by this host's values, raw: [`Template::parse_path`] then [`Target::render`].
    ///
    /// # Errors
    /// As [`Target::render`].
    pub fn render_path(&self, path: &str) -> Result<String> {
        self.render(&Template::parse_path(path))
    }
}

/// Asked for the passphrase of an encrypted key file.
type PassphraseSource = Box<dyn Fn(&Path) -> Result<Secret> + Send + Sync>;

/// Completes the settings of a jump host (see [`TargetBuilder::jump_host_resolver`]).
type JumpHostResolver = Box<dyn Fn(Host) -> Result<Host> + Send + Sync>;

/// Builds [`Target`]s, sharing credentials between hosts with the same settings.
pub struct TargetBuilder {
    identities: HashMap<PathBuf, Identity>,
    certificates: HashMap<PathBuf, UserCertificate>,
    defaults: Option<Credentials>,
    passwords: HashMap<String, Secret>,
    password_override: Option<Secret>,
    become_password: Option<Secret>,
    passphrase: Option<PassphraseSource>,
    /// Set by [`TargetBuilder::agent`]: wins over a host's `IdentityAgent`.
    agent: Option<Agent>,
    command_timeout: Option<Duration>,
    jump_host_resolver: Option<JumpHostResolver>,
}

impl Default for TargetBuilder {
    fn default() -> Self {
        TargetBuilder::new()
    }
}

impl std::fmt::Debug for TargetBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetBuilder")
            .field("identities", &self.identities.keys().collect::<Vec<_>>())
            .field("agent", &self.agent)
            .field("password_override", &self.password_override)
            .finish_non_exhaustive()
    }
}

impl TargetBuilder {
    /// A builder with no passphrase source, using for each host the agent its ssh_config
    /// names (`IdentityAgent`), else the one from `SSH_AUTH_SOCK`.
    pub fn new() -> TargetBuilder {
        TargetBuilder {
            identities: HashMap::new(),
            certificates: HashMap::new(),
            defaults: None,
            passwords: HashMap::new(),
            password_override: None,
            become_password: None,
            passphrase: None,
            agent: None,
            command_timeout: None,
            jump_host_resolver: None,
        }
    }

    /// Uses this password for every host (e.g. from `--ask-pass`), whatever the
    /// inventory's `password_env` says.
    #[must_use]
    pub fn password(mut self, password: Secret) -> Self {
        self.password_override = Some(password);
        self
    }

    /// Uses this sudo password for every host that runs through sudo (e.g. from
    /// `--ask-become-pass`), whatever the inventory's `become_password_env` says.
    #[must_use]
    pub fn become_password(mut self, password: Secret) -> Self {
        self.become_password = Some(password);
        self
    }

    /// Where passphrases for encrypted key files come from (called once per file).
    #[must_use]
    pub fn passphrase_source(
        mut self,
        source: impl Fn(&Path) -> Result<Secret> + Send + Sync + 'static,
    ) -> Self {
        self.passphrase = Some(Box::new(source));
        self
    }

    /// The ssh-agent to use for every host, whatever its ssh_config says.
    #[must_use]
    pub fn agent(mut self, agent: Agent) -> Self {
        self.agent = Some(agent);
        self
    }

    /// A command deadline for hosts whose inventory sets none.
    #[must_use]
    pub fn command_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// How the hops of a host's `proxy_jump` get their settings: `resolve` receives
    /// each hop as a [`Host`] named by the hop's host as written (`bastion` for
    /// `ops@bastion:2222`), with `settings.user` and `settings.port` set when the hop
    /// gives them, and the target's settings that came from the command line
    /// ([`Origin::CommandLine`]: key files, known_hosts, policy, deadlines...; never
    /// its user or port), and returns it with what it knows added: an
    /// address, a user, a port, key files, known_hosts, host key policy, an applied
    /// OpenSSH configuration ([`SshConfig::apply`](crate::ssh_config::SshConfig::apply),
    /// which makes a hop that is a `Host` alias resolve as `ssh -J` resolves it; the
    /// command line does this). Without a resolver, the hop is used as written.
    ///
    /// Whatever is still unset then comes from the target's own settings (key files,
    /// password variable, known_hosts file, host key policy, connect timeout,
    /// keepalive); a hop's user and port never do (unset: the local user name and 22,
    /// as in OpenSSH). A `proxy_jump` it gives the first hop is followed (its hops go
    /// first, at most 8 deep), as OpenSSH reaches a `ProxyJump` host the way `ssh HOP`
    /// would; one it gives a later hop is ignored, as in OpenSSH; a `proxy_command` it
    /// gives any hop is an [`ErrorKind::InvalidInput`] error. Errors
    /// from `resolve` fail the target's [`build`](TargetBuilder::build), naming the
    /// target.
    #[must_use]
    pub fn jump_host_resolver(
        mut self,
        resolve: impl Fn(Host) -> Result<Host> + Send + Sync + 'static,
    ) -> Self {
        self.jump_host_resolver = Some(Box::new(resolve));
        self
    }

    /// The target for `host`.
    ///
    /// # Errors
    /// A key or certificate file that cannot be loaded ([`ErrorKind::KeyFile`]), a
    /// password variable (`password_env`, `become_password_env`) that is not set, an
    /// invalid `become_user`, an invalid `proxy_jump` or `proxy_command`, or both set
    /// ([`ErrorKind::InvalidInput`]); an error of the
    /// [jump host resolver](TargetBuilder::jump_host_resolver). The message names the
    /// host.
    pub fn build(&mut self, host: &Host) -> Result<Target> {
        self.build_inner(host).map_err(|e| e.with_host(&host.name))
    }

    /// As [`TargetBuilder::build`], but a host whose settings cannot be made still gives
    /// a target: one that fails with that error in every run, without connecting (what
    /// [`Pool::new`](crate::Pool::new) does, so one bad host never stops the others).
    pub fn build_or_failing(&mut self, host: &Host) -> Target {
        match self.build(host) {
            Ok(target) => target,
            Err(e) => Target {
                host: host.clone(),
                connect: ConnectOptions::new(host.hostname()),
                command_timeout: self.command_timeout,
                sudo: None,
                failing: Some(std::sync::Arc::new(e)),
            },
        }
    }

    /// Targets for all `hosts`, in order; the first error stops.
    ///
    /// # Errors
    /// As [`TargetBuilder::build`].
    pub fn build_all<'a>(
        &mut self,
        hosts: impl IntoIterator<Item = &'a Host>,
    ) -> Result<Vec<Target>> {
        hosts.into_iter().map(|h| self.build(h)).collect()
    }

    fn build_inner(&mut self, host: &Host) -> Result<Target> {
        let s = &host.settings;
        let mut connect = self.connect_options(host)?;
        let none = |v: &Option<String>| {
            v.as_deref()
                .is_none_or(|v| v.trim().eq_ignore_ascii_case("none"))
        };
        match (none(&s.proxy_jump), none(&s.proxy_command)) {
            (false, false) => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "both proxy_jump and proxy_command are set",
                ))
            }
            (false, true) => {
                let list = s.proxy_jump.as_deref().unwrap_or_default();
                let mut hops = Vec::new();
                self.chain(host, list, 0, &mut hops)?;
                connect = connect.proxy_jump(hops);
            }
            (true, false) => {
                let command = s.proxy_command.as_deref().unwrap_or_default();
                crate::ssh::check_proxy_command(command)?;
                connect = connect.proxy_command(command);
            }
            (true, true) => {}
        }
        // sudo is the target's alone: a jump host never runs a command.
        let sudo = match s.become_enabled {
            Some(true) => {
                let mut b = Become::user(s.become_user.as_deref().unwrap_or("root"));
                if let Some(p) = &self.become_password {
                    b = b.password(p.clone());
                } else if let Some(var) = &s.become_password_env {
                    b = b.password(self.env_secret(var)?);
                }
                b.check()?;
                Some(b)
            }
            _ => None,
        };
        Ok(Target {
            host: host.clone(),
            connect,
            command_timeout: s.command_timeout.or(self.command_timeout),
            sudo,
            failing: None,
        })
    }

    /// Appends the hops of `list` (a `ProxyJump` value) to `hops`, first hop first. The
    /// first hop's own `ProxyJump` (from the jump host resolver, i.e. ssh_config) is
    /// followed, as OpenSSH does: `ssh -J a,b t` reaches `a` as `ssh a` would, through
    /// `a`'s own jump hosts, while `b` is reached through `a` whatever its own says.
    fn chain(
        &mut self,
        target: &Host,
        list: &str,
        depth: usize,
        hops: &mut Vec<JumpHost>,
    ) -> Result<()> {
        /// More nested jump hosts than this is a loop (`Host * ProxyJump bastion` without
        /// `!bastion`), which OpenSSH would follow until it runs out of processes.
        const MAX_DEPTH: usize = 8;
        for (i, hop) in JumpHost::parse_list(list)?.iter().enumerate() {
            let (resolved, own) = self.jump_host(target, hop)?;
            if i == 0 {
                if let Some(own) = own.filter(|o| !o.trim().eq_ignore_ascii_case("none")) {
                    if depth >= MAX_DEPTH {
                        return Err(Error::new(
                            ErrorKind::InvalidInput,
                            format!(
                                "jump host {}: its ProxyJump chain is more than {MAX_DEPTH} \
                                 hosts deep (a loop, such as `Host *` with `ProxyJump` and \
                                 no `!` for the jump host itself?)",
                                hop.display_name()
                            ),
                        ));
                    }
                    self.chain(target, &own, depth + 1, hops)?;
                }
            }
            hops.push(resolved);
        }
        Ok(())
    }

    /// `hop` of `target`'s chain, resolved and completed from the target's settings, and
    /// the hop's own `ProxyJump` if the resolver gave it one.
    fn jump_host(&mut self, target: &Host, hop: &JumpHost) -> Result<(JumpHost, Option<String>)> {
        let inherited = target.settings.inheritable();
        // Command-line options apply to hops as to targets, above ssh_config; the hop's
        // own user and port (as written) above both.
        let mut given = inherited.clone();
        given.keep_hop_settings_from_command_line();
        given.user = hop.user_name().map(str::to_owned);
        given.port = hop.port_if_given();
        let mut resolved = Host {
            name: hop.host().to_owned(),
            groups: Vec::new(),
            settings: given,
            ssh_config: None,
        };
        if let Some(resolve) = &self.jump_host_resolver {
            // The error is the target's: it names the hop in its message.
            resolved = resolve(resolved).map_err(|e| {
                Error::new(
                    e.kind(),
                    format!("jump host {}: {}", hop.display_name(), e.full_message()),
                )
            })?;
        }
        // Then the rest of the target's settings under what the hop has now.
        let mut settings = inherited;
        let own = resolved.settings.proxy_jump.take();
        if let Some(command) = resolved
            .settings
            .proxy_command
            .take()
            .filter(|c| !c.trim().eq_ignore_ascii_case("none"))
        {
            let at = resolved
                .settings
                .origins
                .get("proxy_command")
                .map_or_else(String::new, |o| format!(" ({o})"));
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "jump host {}: a ProxyCommand for a jump host is not supported{at}: \
                     {command:?}; use ProxyJump",
                    hop.display_name()
                ),
            ));
        }
        settings.merge(&resolved.settings);
        resolved.settings = settings;
        let options = self.connect_options(&resolved)?.label(hop.display_name());
        Ok((JumpHost::from_options(options), own))
    }

    /// How to connect to `host` (its route aside).
    fn connect_options(&mut self, host: &Host) -> Result<ConnectOptions> {
        let s = &host.settings;
        let ssh = host.ssh_config.as_ref();
        let identities_only = ssh
            .and_then(|c| c.identities_only.as_ref())
            .is_some_and(|v| v.value);
        let mut creds = match &s.identity_files {
            None => {
                let mut c = self
                    .defaults
                    .get_or_insert_with(|| {
                        let mut c = Credentials::new();
                        c = c.default_identities();
                        c
                    })
                    .clone();
                if identities_only {
                    // The agent may still sign for a default key rexec did not load.
                    for path in default_identity_paths() {
                        if !path.exists() {
                            c.agent_public_key_file(&public_half(&path));
                        }
                    }
                }
                c
            }
            Some(files) => {
                // Files named by ssh_config may be absent (OpenSSH skips them); files
                // named on the command line or in the inventory must load.
                let lenient = matches!(s.origins.get("identity_files"), Some(Origin::SshConfig(_)));
                let mut c = Credentials::new();
                for file in files {
                    if lenient && !file.exists() {
                        if c.agent_public_key_file(&public_half(file)) {
                            tracing::debug!(
                                "{}: key file {} is absent; the agent may sign with its public half",
                                host.name,
                                file.display()
                            );
                        } else {
                            tracing::debug!(
                                "{}: key file {} is absent: skipped",
                                host.name,
                                file.display()
                            );
                        }
                        continue;
                    }
                    c = c.identity(self.identity(file)?);
                }
                c
            }
        };
        // As for key files: ssh_config's CertificateFile may name an absent file (OpenSSH
        // skips it); a file named on the command line or in the inventory must load.
        let lenient = matches!(
            s.origins.get("certificate_files"),
            Some(Origin::SshConfig(_))
        );
        for file in s.certificate_files.iter().flatten() {
            if lenient && !file.exists() {
                tracing::debug!(
                    "{}: certificate file {} is absent: skipped",
                    host.name,
                    file.display()
                );
                continue;
            }
            creds = creds.certificate(self.certificate(file)?);
        }
        creds = creds.identities_only(identities_only);
        creds = creds.agent(
            match (&self.agent, ssh.and_then(|c| c.identity_agent.as_ref())) {
                (Some(agent), _) => agent.clone(),
                (None, Some(v)) => agent_of(&v.value),
                (None, None) => Agent::FromEnv,
            },
        );
        if let Some(ssh) = ssh {
            creds = creds.methods(&auth_methods(ssh));
        }
        if let Some(p) = &self.password_override {
            creds = creds.password(p.clone());
        } else if let Some(var) = &s.password_env {
            creds = creds.password(self.env_secret(var)?);
        }
        let mut connect = ConnectOptions::new(host.hostname())
            .port(host.port())
            .credentials(creds)
            .label(host.name.clone());
        if let Some(user) = &s.user {
            connect = connect.user(user.clone());
        }
        if let Some(policy) = s.host_key_policy {
            connect = connect.host_key_policy(policy);
        }
        if let Some(file) = &s.known_hosts {
            connect = connect.known_hosts(KnownHosts::file(file));
        } else if let Some(ssh) = ssh
            .filter(|c| c.user_known_hosts_files.is_some() || c.global_known_hosts_files.is_some())
        {
            let user = ssh
                .user_known_hosts_files
                .as_ref()
                .map_or_else(KnownHosts::default_user_files, |v| v.value.clone());
            let global = ssh
                .global_known_hosts_files
                .as_ref()
                .map_or_else(KnownHosts::default_global_files, |v| v.value.clone());
            connect = connect.known_hosts(KnownHosts::user_and_global(user, global));
        }
        if let Some(alias) = ssh.and_then(|c| c.host_key_alias.as_ref()) {
            connect = connect.host_key_alias(alias.value.clone());
        }
        if let Some(t) = s.connect_timeout {
            connect = connect
                .connect_timeout(t)
                .handshake_timeout(t)
                .auth_timeout(t);
        }
        if s.keepalive.is_some() || s.keepalive_max.is_some() {
            connect = connect.keepalive(
                s.keepalive.unwrap_or(ConnectOptions::DEFAULT_KEEPALIVE),
                s.keepalive_max
                    .unwrap_or(ConnectOptions::DEFAULT_KEEPALIVE_MAX),
            );
        }
        Ok(connect)
    }

    fn certificate(&mut self, file: &Path) -> Result<UserCertificate> {
        if let Some(c) = self.certificates.get(file) {
            return Ok(c.clone());
        }
        let c = UserCertificate::from_file(file)?;
        self.certificates.insert(file.to_owned(), c.clone());
        Ok(c)
    }

    /// The secret in environment variable `var`, read once per builder.
    fn env_secret(&mut self, var: &str) -> Result<Secret> {
        if let Some(secret) = self.passwords.get(var) {
            return Ok(secret.clone());
        }
        let secret = Secret::from_env(var)?;
        self.passwords.insert(var.to_owned(), secret.clone());
        Ok(secret)
    }

    fn identity(&mut self, file: &Path) -> Result<Identity> {
        if let Some(id) = self.identities.get(file) {
            return Ok(id.clone());
        }
        let source = &self.passphrase;
        let id =
            Identity::from_file_with(file, || source.as_ref().map(|ask| ask(file)).transpose())?;
        self.identities.insert(file.to_owned(), id.clone());
        Ok(id)
    }
}

/// `KEY.pub` for `KEY`.
fn public_half(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// The key files [`Credentials::default_identities`] looks for.
fn default_identity_paths() -> Vec<PathBuf> {
    match home::home_dir() {
        Some(home) => ["id_ed25519", "id_ecdsa", "id_rsa"]
            .iter()
            .map(|n| home.join(".ssh").join(n))
            .collect(),
        None => Vec::new(),
    }
}

/// The agent an `IdentityAgent` value names: `none`, `SSH_AUTH_SOCK` (the variable),
/// `$NAME` (the socket in that variable; none when it is unset) or a socket path.
fn agent_of(value: &str) -> Agent {
    if value.eq_ignore_ascii_case("none") {
        return Agent::Off;
    }
    if value == "SSH_AUTH_SOCK" {
        return Agent::FromEnv;
    }
    if let Some(var) = value.strip_prefix('$') {
        return match std::env::var_os(var).filter(|v| !v.is_empty()) {
            Some(path) => Agent::Socket(PathBuf::from(path)),
            None => {
                tracing::debug!("IdentityAgent ${var}: the variable is not set; no agent");
                Agent::Off
            }
        };
    }
    Agent::Socket(PathBuf::from(value))
}

/// The authentication methods a host's ssh_config allows, in its order:
/// `PreferredAuthentications` (methods rexec does not implement dropped) or the default
/// order, less those turned off by `PubkeyAuthentication`, `KbdInteractiveAuthentication`
/// or `PasswordAuthentication`.
fn auth_methods(config: &ResolvedConfig) -> Vec<AuthMethod> {
    let mut order: Vec<AuthMethod> = match &config.preferred_authentications {
        Some(v) => v
            .value
            .iter()
            .filter_map(|name| AuthMethod::from_openssh_name(name))
            .collect(),
        None => AuthMethod::DEFAULT_ORDER.to_vec(),
    };
    let off = |v: &Option<crate::ssh_config::Value<bool>>| v.as_ref().is_some_and(|v| !v.value);
    order.retain(|m| match m {
        AuthMethod::PublicKey => !off(&config.pubkey_authentication),
        AuthMethod::KeyboardInteractive => !off(&config.kbd_interactive_authentication),
        AuthMethod::Password => !off(&config.password_authentication),
    });
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_agent_values() {
        assert_eq!(agent_of("none"), Agent::Off);
        assert_eq!(agent_of("NONE"), Agent::Off);
        assert_eq!(agent_of("SSH_AUTH_SOCK"), Agent::FromEnv);
        assert_eq!(agent_of("/run/a.sock"), Agent::Socket("/run/a.sock".into()));
        std::env::set_var("REXEC_TEST_AGENT_VAR", "/run/b.sock");
        assert_eq!(
            agent_of("$REXEC_TEST_AGENT_VAR"),
            Agent::Socket("/run/b.sock".into())
        );
        assert_eq!(agent_of("$REXEC_TEST_AGENT_UNSET"), Agent::Off);
    }
}
