//! Turning inventory hosts into connectable [`Target`]s: credentials built once per
//! distinct setting and shared (each key file read and decrypted once), passwords read
//! from their environment variables before anything connects.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::inventory::{Host, Transport};
use crate::secret::Secret;
use crate::ssh::{Agent, ConnectOptions, Credentials, Identity, KnownHosts};

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

    /// `template` with each `{name}` placeholder replaced by the host's value as a single
    /// quoted shell word (see [`crate::shell_quote`]). Placeholders: `name`, `host` (the
    /// address), `port`, `user`, and the host's variables. `{{` and `}}` stand for
    /// literal braces; braces around anything that is not an identifier (`awk '{print
    /// $1}'`, `${HOME}`, `{a,b}`) are left alone.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] naming the host and the placeholder when a variable is
    /// not defined for this host.
    pub fn render(&self, template: &str) -> Result<String> {
        render(template, |key| self.host.var(key)).map_err(|key| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("the command uses {{{key}}}, which is not defined for this host"),
            )
            .with_host(self.name())
        })
    }
}

impl Target {
    /// `template` with placeholders replaced by the raw values, unquoted: for paths
    /// (remote SFTP paths, local directories), which no shell interprets.
    ///
    /// # Errors
    /// As [`Target::render`].
    pub fn render_path(&self, template: &str) -> Result<String> {
        render_with(template, |key| self.host.var(key), false).map_err(|key| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("the path uses {{{key}}}, which is not defined for this host"),
            )
            .with_host(self.name())
        })
    }
}

/// Replaces `{identifier}` placeholders with quoted words.
pub(crate) fn render(
    template: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> std::result::Result<String, String> {
    render_with(template, lookup, true)
}

/// Replaces `{identifier}` placeholders (quoted as shell words when `quote`); returns the
/// first unknown identifier as the error.
fn render_with(
    template: &str,
    lookup: impl Fn(&str) -> Option<String>,
    quote: bool,
) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        let (before, from) = rest.split_at(i);
        out.push_str(before);
        if let Some(after) = from.strip_prefix("{{") {
            out.push('{');
            rest = after;
            continue;
        }
        if let Some(after) = from.strip_prefix("}}") {
            out.push('}');
            rest = after;
            continue;
        }
        if from.starts_with('}') || before.ends_with('$') {
            out.push_str(from.get(..1).unwrap_or_default());
            rest = from.get(1..).unwrap_or_default();
            continue;
        }
        // from starts with '{'
        let body_end = from.find('}');
        let body = body_end.and_then(|e| from.get(1..e));
        match body {
            Some(key)
                if !key.is_empty()
                    && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                let value = lookup(key).ok_or_else(|| key.to_owned())?;
                if quote {
                    out.push_str(&crate::shell_quote(&value));
                } else {
                    out.push_str(&value);
                }
                rest = from.get(key.len() + 2..).unwrap_or_default();
            }
            _ => {
                out.push('{');
                rest = from.get(1..).unwrap_or_default();
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Asked for the passphrase of an encrypted key file.
type PassphraseSource = Box<dyn Fn(&Path) -> Result<Secret> + Send + Sync>;

/// Builds [`Target`]s, sharing credentials between hosts with the same settings.
pub struct TargetBuilder {
    identities: HashMap<PathBuf, Identity>,
    defaults: Option<Credentials>,
    passwords: HashMap<String, Secret>,
    password_override: Option<Secret>,
    passphrase: Option<PassphraseSource>,
    agent: Agent,
    command_timeout: Option<Duration>,
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

    /// The target for `host`.
    ///
    /// # Errors
    /// A key file that cannot be loaded ([`ErrorKind::KeyFile`]), or a password variable
    /// that is not set ([`ErrorKind::InvalidInput`]); the message names the host.
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
        Ok(Target {
            host: host.clone(),
            connect,
            command_timeout: s.command_timeout.or(self.command_timeout),
        })
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

#[cfg(test)]
mod tests {
    use super::render;

    fn vars(key: &str) -> Option<String> {
        match key {
            "name" => Some("web01".into()),
            "role" => Some("a b; rm -rf /".into()),
            _ => None,
        }
    }

    #[test]
    fn placeholders_become_single_quoted_words() {
        assert_eq!(render("echo {name}", vars).unwrap(), "echo web01");
        assert_eq!(render("echo {role}", vars).unwrap(), "echo 'a b; rm -rf /'");
        assert_eq!(render("echo {{name}}", vars).unwrap(), "echo {name}");
        assert_eq!(
            render("awk '{print $1}'", vars).unwrap(),
            "awk '{print $1}'"
        );
        assert_eq!(
            render("echo ${HOME} {a,b}", vars).unwrap(),
            "echo ${HOME} {a,b}"
        );
        assert_eq!(render("echo {nope}", vars).unwrap_err(), "nope");
    }
}
