//! Turning inventory hosts into connectable [`Target`]s: credentials built once per
//! distinct setting and shared (each key file read and decrypted once), passwords read
//! from their environment variables before anything connects.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::inventory::{Host, HostSettings, Transport};
use crate::secret::Secret;
use crate::ssh::{Agent, ConnectOptions, Credentials, Identity, JumpHost, KnownHosts};
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
            "host" => Some(self.connect.host().to_owned()),
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
    defaults: Option<Credentials>,
    passwords: HashMap<String, Secret>,
    password_override: Option<Secret>,
    passphrase: Option<PassphraseSource>,
    agent: Agent,
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
    /// A builder with the agent from `SSH_AUTH_SOCK` and no passphrase source.
    pub fn new() -> TargetBuilder {
        TargetBuilder {
            identities: HashMap::new(),
            defaults: None,
            passwords: HashMap::new(),
            password_override: None,
            passphrase: None,
            agent: Agent::FromEnv,
            command_timeout: None,
            jump_host_resolver: None,
        }
    }

    /// Uses this password for every host (e.g. from `--ask-pass`), whatever the
    /// inventory's `password_env` says.
    pub fn password(&mut self, password: Secret) -> &mut Self {
        self.password_override = Some(password);
        self
    }

    /// Where passphrases for encrypted key files come from (called once per file).
    pub fn passphrase_source(
        &mut self,
        source: impl Fn(&Path) -> Result<Secret> + Send + Sync + 'static,
    ) -> &mut Self {
        self.passphrase = Some(Box::new(source));
        self
    }

    /// The ssh-agent to use.
    pub fn agent(&mut self, agent: Agent) -> &mut Self {
        self.agent = agent;
        self
    }

    /// A command deadline for hosts whose inventory sets none.
    pub fn command_timeout(&mut self, timeout: Option<Duration>) -> &mut Self {
        self.command_timeout = timeout;
        self
    }

    /// How the hops of a host's `proxy_jump` get their settings: `resolve` receives
    /// each hop as a [`Host`] named by the hop's host as written (`bastion` for
    /// `ops@bastion:2222`), with `settings.user` and `settings.port` set when the hop
    /// gives them and nothing else, and returns it with what it knows added: an
    /// address, a user, a port, key files, known_hosts, host key policy... Laying an
    /// OpenSSH configuration under it there makes a hop that is a `Host` alias resolve
    /// as `ssh -J` resolves it. Without a resolver, the hop is returned unchanged.
    ///
    /// Whatever is still unset then comes from the target's own settings (key files,
    /// password variable, known_hosts, host key policy, connect timeout, keepalive);
    /// a hop's user and port never do (unset: the local user name and 22, as in
    /// OpenSSH). The hop's own `proxy_jump` or `proxy_command` is ignored. Errors from
    /// `resolve` fail the target's [`build`](TargetBuilder::build), naming the target.
    pub fn jump_host_resolver(
        &mut self,
        resolve: impl Fn(Host) -> Result<Host> + Send + Sync + 'static,
    ) -> &mut Self {
        self.jump_host_resolver = Some(Box::new(resolve));
        self
    }

    /// The target for `host`.
    ///
    /// # Errors
    /// A key file that cannot be loaded ([`ErrorKind::KeyFile`]), a password variable
    /// that is not set, an invalid `proxy_jump` or `proxy_command`, or both set
    /// ([`ErrorKind::InvalidInput`]); the message names the host.
    pub fn build(&mut self, host: &Host) -> Result<Target> {
        self.build_inner(host).map_err(|e| e.with_host(&host.name))
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
                let hops = JumpHost::parse_list(list)?
                    .iter()
                    .map(|hop| self.jump_host(host, hop))
                    .collect::<Result<Vec<_>>>()?;
                connect = connect.proxy_jump(hops);
            }
            (true, false) => {
                let command = s.proxy_command.as_deref().unwrap_or_default();
                crate::ssh::check_proxy_command(command)?;
                connect = connect.proxy_command(command);
            }
            (true, true) => {}
        }
        Ok(Target {
            host: host.clone(),
            connect,
            command_timeout: s.command_timeout.or(self.command_timeout),
        })
    }

    /// `hop` of `target`'s chain, resolved and completed from the target's settings.
    fn jump_host(&mut self, target: &Host, hop: &JumpHost) -> Result<JumpHost> {
        let mut resolved = Host {
            name: hop.host().to_owned(),
            groups: Vec::new(),
            settings: HostSettings {
                user: hop.user_name().map(str::to_owned),
                port: hop.port_if_given(),
                ..HostSettings::default()
            },
        };
        if let Some(resolve) = &self.jump_host_resolver {
            resolved = resolve(resolved)?;
        }
        // The target's settings under the hop's own; never its address, user, port or
        // route.
        let t = &target.settings;
        let mut settings = HostSettings {
            identity_files: t.identity_files.clone(),
            password_env: t.password_env.clone(),
            host_key_policy: t.host_key_policy,
            known_hosts: t.known_hosts.clone(),
            connect_timeout: t.connect_timeout,
            keepalive: t.keepalive,
            keepalive_max: t.keepalive_max,
            ..HostSettings::default()
        };
        settings.merge(&HostSettings {
            proxy_jump: None,
            proxy_command: None,
            ..resolved.settings
        });
        resolved.settings = settings;
        let options = self.connect_options(&resolved)?.label(hop.display_name());
        Ok(JumpHost::from_options(options))
    }

    /// How to connect to `host` (its route aside).
    fn connect_options(&mut self, host: &Host) -> Result<ConnectOptions> {
        let s = &host.settings;
        let mut creds = match &s.identity_files {
            None => self
                .defaults
                .get_or_insert_with(|| {
                    let mut c = Credentials::new();
                    c.default_identities();
                    c
                })
                .clone(),
            Some(files) => {
                let mut c = Credentials::new();
                for file in files {
                    c.identity(self.identity(file)?);
                }
                c
            }
        };
        creds.agent(self.agent.clone());
        if let Some(p) = &self.password_override {
            creds.password(p.clone());
        } else if let Some(var) = &s.password_env {
            let secret = match self.passwords.get(var) {
                Some(secret) => secret.clone(),
                None => {
                    let secret = Secret::from_env(var)?;
                    self.passwords.insert(var.clone(), secret.clone());
                    secret
                }
            };
            creds.password(secret);
        }
        let mut connect = ConnectOptions::new(host.address())
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
