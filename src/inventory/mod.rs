//! The inventory: `hosts.toml` (or a `-H` host list) parsed into validated [`Host`]s, with
//! defaults, nested groups, host ranges, per-host and per-group settings and variables.
//! Every error names the file, line and column, and happens before any connection.

mod pattern;
pub mod range;

use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use crate::error::{Error, ErrorKind, Result};
use crate::ssh::HostKeyPolicy;

pub use pattern::select;

/// How a host's commands run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// Over SSH (the default).
    #[default]
    Ssh,
    /// As local processes (`sh -c`) on this machine, like Ansible's local connection.
    Local,
}

/// Settings that defaults, groups and hosts may each set; later layers win.
/// Every field is optional: unset means "inherit".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostSettings {
    /// Address or DNS name to connect to (default: the host's name).
    pub address: Option<String>,
    /// SSH port (default 22).
    pub port: Option<u16>,
    /// Remote user (default: the local user).
    pub user: Option<String>,
    /// Private key files, tried in order.
    pub identity_files: Option<Vec<PathBuf>>,
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
    /// How commands run.
    pub transport: Option<Transport>,
    /// Free-form variables for `{name}` placeholders in commands.
    pub vars: IndexMap<String, String>,
}

impl HostSettings {
    /// Lays `over` on top of `self`: set fields of `over` win; variables merge.
    pub fn merge(&mut self, over: &HostSettings) {
        macro_rules! take {
            ($($f:ident),*) => {$( if over.$f.is_some() { self.$f = over.$f.clone(); } )*};
        }
        take!(
            address,
            port,
            user,
            identity_files,
            password_env,
            host_key_policy,
            known_hosts,
            connect_timeout,
            command_timeout,
            transport
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
}

impl Host {
    /// The address to connect to.
    pub fn address(&self) -> &str {
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

    /// The value of a placeholder: `name`, `host` (the address), `port`, `user`, or a
    /// variable.
    pub fn var(&self, key: &str) -> Option<String> {
        match key {
            "name" => Some(self.name.clone()),
            "host" => Some(self.address().to_owned()),
            "port" => Some(self.port().to_string()),
            "user" => self.settings.user.clone(),
            other => self.settings.vars.get(other).cloned(),
        }
    }
}

/// A validated inventory: hosts in file order and groups with their resolved members.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    hosts: Vec<Host>,
    groups: IndexMap<String, Vec<usize>>,
}

impl Inventory {
    /// Reads and validates a `hosts.toml`. `overrides` (from the command line) replace the
    /// file's `[defaults]`; group and host settings still win over them.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] with `file:line:column` for any invalid content;
    /// [`ErrorKind::LocalIo`] when the file cannot be read.
    pub fn from_file(path: impl AsRef<Path>, overrides: &HostSettings) -> Result<Inventory> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::new(
                ErrorKind::LocalIo,
                format!("cannot read inventory {}", path.display()),
            )
            .with_source(e)
        })?;
        Parser {
            text: &text,
            file: &path.display().to_string(),
            base: path.parent(),
        }
        .parse(overrides)
    }

    /// Parses inventory text; `file` names it in errors. Relative paths in it are taken
    /// relative to the current directory (from [`Inventory::from_file`]: to the file's
    /// directory).
    ///
    /// # Errors
    /// As [`Inventory::from_file`].
    pub fn parse(text: &str, file: &str, overrides: &HostSettings) -> Result<Inventory> {
        Parser {
            text,
            file,
            base: None,
        }
        .parse(overrides)
    }

    /// An inventory from a comma-separated list like `web1,web2:2222,deploy@db1,[::1]:22`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for an invalid name, user or port, or a duplicate.
    pub fn from_host_list(list: &str, overrides: &HostSettings) -> Result<Inventory> {
        let mut inventory = Inventory::default();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let bad = |why: String| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!("host list item {item:?}: {why}"),
                )
            };
            let (user, rest) = match item.rsplit_once('@') {
                Some((u, r)) => (Some(u), r),
                None => (None, item),
            };
            let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
                let (h, after) = inner
                    .split_once(']')
                    .ok_or_else(|| bad("missing ]".into()))?;
                (h, after.strip_prefix(':'))
            } else {
                match rest.rsplit_once(':') {
                    Some((h, p)) if !h.contains(':') => (h, Some(p)),
                    _ => (rest, None),
                }
            };
            let mut settings = overrides.clone();
            if let Some(u) = user {
                check_user(u).map_err(bad)?;
                settings.user = Some(u.to_owned());
            }
            if let Some(p) = port {
                settings.port = Some(parse_port(p).map_err(bad)?);
            }
            for name in range::expand(host)? {
                check_host_name(&name).map_err(bad)?;
                if inventory.hosts.iter().any(|h| h.name == name) {
                    return Err(bad(format!("host {name:?} is listed twice")));
                }
                inventory.hosts.push(Host {
                    name,
                    groups: Vec::new(),
                    settings: settings.clone(),
                });
            }
        }
        if inventory.hosts.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "the host list is empty",
            ));
        }
        Ok(inventory)
    }

    /// All hosts, in inventory order.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Group names with their members' indexes into [`Inventory::hosts`].
    pub fn groups(&self) -> &IndexMap<String, Vec<usize>> {
        &self.groups
    }

    /// The hosts matching `pattern` (see [`select`]), in inventory order.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when the pattern is invalid or a part of it matches
    /// nothing.
    pub fn select(&self, pattern: &str) -> Result<Vec<&Host>> {
        select(self, pattern)
    }
}

fn parse_port(p: &str) -> std::result::Result<u16, String> {
    match p.parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        _ => Err(format!("port {p:?} is not a number from 1 to 65535")),
    }
}

/// Host names: ASCII letters, digits, `.`, `-`, `_`, `:`; not starting with `-`.
pub(crate) fn check_host_name(name: &str) -> std::result::Result<(), String> {
    check_word(name, "host name", |c| {
        c.is_ascii_alphanumeric() || ".-_:".contains(c)
    })
}

/// User names: ASCII letters, digits, `.`, `-`, `_`, `@`; not starting with `-`.
pub(crate) fn check_user(user: &str) -> std::result::Result<(), String> {
    check_word(user, "user name", |c| {
        c.is_ascii_alphanumeric() || ".-_@".contains(c)
    })
}

fn check_word(
    word: &str,
    what: &str,
    allowed: impl Fn(char) -> bool,
) -> std::result::Result<(), String> {
    if word.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if word.starts_with('-') {
        return Err(format!("{what} {word:?} begins with '-'"));
    }
    if let Some(c) = word.chars().find(|c| !allowed(*c)) {
        let kind = if c.is_whitespace() {
            "whitespace"
        } else if c.is_control() {
            "a control character"
        } else {
            "a character that is not allowed"
        };
        return Err(format!("{what} {word:?} contains {kind} ({c:?})"));
    }
    Ok(())
}

macro_rules! raw_settings {
    ($(#[$meta:meta])* $name:ident { $($extra:tt)* }) => {
        $(#[$meta])*
        #[derive(Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct $name {
            $($extra)*
            address: Option<Spanned<String>>,
            port: Option<Spanned<i64>>,
            user: Option<Spanned<String>>,
            identity_files: Option<Vec<Spanned<String>>>,
            password_env: Option<Spanned<String>>,
            host_key_policy: Option<Spanned<String>>,
            known_hosts: Option<Spanned<String>>,
            connect_timeout: Option<Spanned<toml::Value>>,
            command_timeout: Option<Spanned<toml::Value>>,
            transport: Option<Spanned<String>>,
            vars: Option<IndexMap<Spanned<String>, Spanned<toml::Value>>>,
        }

        impl $name {
            fn settings(&self, p: &Parser<'_>) -> Result<HostSettings> {
                p.settings(SettingsRef {
                    address: &self.address,
                    port: &self.port,
                    user: &self.user,
                    identity_files: &self.identity_files,
                    password_env: &self.password_env,
                    host_key_policy: &self.host_key_policy,
                    known_hosts: &self.known_hosts,
                    connect_timeout: &self.connect_timeout,
                    command_timeout: &self.command_timeout,
                    transport: &self.transport,
                    vars: &self.vars,
                })
            }
        }
    };
}

raw_settings!(RawSettings {});
raw_settings!(RawGroup {
    #[serde(default)]
    hosts: Vec<Spanned<String>>,
    #[serde(default)]
    groups: Vec<Spanned<String>>,
});

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    defaults: RawSettings,
    #[serde(default)]
    hosts: IndexMap<Spanned<String>, RawSettings>,
    #[serde(default)]
    groups: IndexMap<Spanned<String>, RawGroup>,
}

struct SettingsRef<'a> {
    address: &'a Option<Spanned<String>>,
    port: &'a Option<Spanned<i64>>,
    user: &'a Option<Spanned<String>>,
    identity_files: &'a Option<Vec<Spanned<String>>>,
    password_env: &'a Option<Spanned<String>>,
    host_key_policy: &'a Option<Spanned<String>>,
    known_hosts: &'a Option<Spanned<String>>,
    connect_timeout: &'a Option<Spanned<toml::Value>>,
    command_timeout: &'a Option<Spanned<toml::Value>>,
    transport: &'a Option<Spanned<String>>,
    vars: &'a Option<IndexMap<Spanned<String>, Spanned<toml::Value>>>,
}

struct Parser<'a> {
    text: &'a str,
    file: &'a str,
    /// Directory that relative paths in the file are relative to.
    base: Option<&'a Path>,
}

impl Parser<'_> {
    fn at(&self, span: std::ops::Range<usize>) -> String {
        let before = self.text.get(..span.start).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let col = before
            .rfind('\n')
            .map_or(before.len(), |i| before.len() - i - 1)
            + 1;
        format!("{}:{line}:{col}", self.file)
    }

    fn error<T>(&self, span: std::ops::Range<usize>, msg: impl std::fmt::Display) -> Result<T> {
        Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{}: {msg}", self.at(span)),
        ))
    }

    fn parse(&self, overrides: &HostSettings) -> Result<Inventory> {
        let raw: RawFile = toml::from_str(self.text).map_err(|e| {
            let at = match e.span() {
                Some(span) => self.at(span),
                None => self.file.to_owned(),
            };
            Error::new(
                ErrorKind::InvalidInput,
                format!("{at}: {}", e.message().trim_end()),
            )
        })?;

        let mut defaults = raw.defaults.settings(self)?;
        defaults.merge(overrides);

        // Hosts from [hosts], each range expanded, in file order.
        // (host, its own settings, where it was first named)
        let mut hosts: Vec<(Host, HostSettings, std::ops::Range<usize>)> = Vec::new();
        for (key, raw_host) in &raw.hosts {
            let own = raw_host.settings(self)?;
            for name in self.expand_names(key)? {
                if let Some((_, _, span)) = hosts.iter().find(|(h, _, _)| h.name == name) {
                    let first = self.at(span.clone());
                    return self.error(
                        key.span(),
                        format!("duplicate host {name:?} (first defined at {first})"),
                    );
                }
                hosts.push((
                    Host {
                        name,
                        groups: Vec::new(),
                        settings: HostSettings::default(),
                    },
                    own.clone(),
                    key.span(),
                ));
            }
        }

        // Groups: names, members (hosts may be introduced here), nesting, cycles.
        let group_names: Vec<&str> = raw.groups.keys().map(|k| k.get_ref().as_str()).collect();
        for key in raw.groups.keys() {
            check_word(key.get_ref(), "group name", |c| {
                c.is_ascii_alphanumeric() || ".-_".contains(c)
            })
            .or_else(|e| self.error(key.span(), e))?;
            if hosts.iter().any(|(h, _, _)| h.name == *key.get_ref()) {
                return self.error(
                    key.span(),
                    format!("{:?} is both a host and a group", key.get_ref()),
                );
            }
        }
        let mut direct: Vec<Vec<usize>> = Vec::new();
        let mut group_settings: Vec<HostSettings> = Vec::new();
        for (key, group) in &raw.groups {
            let mut members = Vec::new();
            for pattern in &group.hosts {
                for name in self.expand_names(pattern)? {
                    if group_names.contains(&name.as_str()) {
                        return self.error(
                            pattern.span(),
                            format!("{name:?} is a group: list it under `groups`, not `hosts`"),
                        );
                    }
                    let index = match hosts.iter().position(|(h, _, _)| h.name == name) {
                        Some(i) => i,
                        None => {
                            hosts.push((
                                Host {
                                    name,
                                    groups: Vec::new(),
                                    settings: HostSettings::default(),
                                },
                                HostSettings::default(),
                                pattern.span(),
                            ));
                            hosts.len() - 1
                        }
                    };
                    if !members.contains(&index) {
                        members.push(index);
                    }
                }
            }
            for sub in &group.groups {
                if sub.get_ref() == key.get_ref() {
                    return self.error(
                        sub.span(),
                        format!("group {:?} names itself", key.get_ref()),
                    );
                }
                if !group_names.contains(&sub.get_ref().as_str()) {
                    return self.error(sub.span(), format!("unknown group {:?}", sub.get_ref()));
                }
            }
            direct.push(members);
            group_settings.push(group.settings(self)?);
        }
        // Resolve nested groups (detecting cycles) into full member lists.
        let mut resolved: Vec<Vec<usize>> = Vec::with_capacity(group_names.len());
        for (gi, (key, _)) in raw.groups.iter().enumerate() {
            let mut members = Vec::new();
            let mut path = vec![gi];
            self.collect_members(&raw, &group_names, &direct, gi, &mut path, &mut members)
                .or_else(|cycle: String| self.error(key.span(), cycle))?;
            members.sort_unstable();
            resolved.push(members);
        }

        // Settings per host: defaults, then each group containing it (file order), then its own.
        let mut inventory = Inventory::default();
        for (index, (mut host, own, span)) in hosts.into_iter().enumerate() {
            let mut settings = defaults.clone();
            for ((members, group), name) in resolved.iter().zip(&group_settings).zip(&group_names) {
                if members.contains(&index) {
                    settings.merge(group);
                    host.groups.push((*name).to_owned());
                }
            }
            settings.merge(&own);
            if let Some(user) = &settings.user {
                check_user(user)
                    .or_else(|e| self.error(span.clone(), format!("host {:?}: {e}", host.name)))?;
            }
            if let Some(address) = &settings.address {
                let address = address.replace("{{name}}", &host.name);
                check_host_name(&address).or_else(|e| {
                    self.error(span.clone(), format!("host {:?}: address: {e}", host.name))
                })?;
                settings.address = Some(address);
            }
            host.settings = settings;
            inventory.hosts.push(host);
        }
        for (name, members) in group_names.iter().zip(resolved) {
            inventory.groups.insert((*name).to_owned(), members);
        }
        Ok(inventory)
    }

    fn collect_members(
        &self,
        raw: &RawFile,
        names: &[&str],
        direct: &[Vec<usize>],
        group: usize,
        path: &mut Vec<usize>,
        out: &mut Vec<usize>,
    ) -> std::result::Result<(), String> {
        for &m in direct.get(group).map(Vec::as_slice).unwrap_or_default() {
            if !out.contains(&m) {
                out.push(m);
            }
        }
        let Some((_, raw_group)) = raw.groups.get_index(group) else {
            return Ok(());
        };
        for sub in &raw_group.groups {
            let Some(si) = names.iter().position(|n| *n == sub.get_ref()) else {
                continue;
            };
            if path.contains(&si) {
                let mut cycle: Vec<&str> =
                    path.iter().filter_map(|&i| names.get(i).copied()).collect();
                cycle.push(sub.get_ref());
                return Err(format!("groups contain each other: {}", cycle.join(" -> ")));
            }
            path.push(si);
            self.collect_members(raw, names, direct, si, path, out)?;
            path.pop();
        }
        Ok(())
    }

    fn expand_names(&self, key: &Spanned<String>) -> Result<Vec<String>> {
        let names = range::expand(key.get_ref())
            .or_else(|e| self.error(key.span(), e.message().to_owned()))?;
        for name in &names {
            check_host_name(name).or_else(|e| self.error(key.span(), e))?;
        }
        Ok(names)
    }

    fn settings(&self, raw: SettingsRef<'_>) -> Result<HostSettings> {
        let mut s = HostSettings::default();
        if let Some(a) = raw.address {
            s.address = Some(a.get_ref().clone());
        }
        if let Some(p) = raw.port {
            match u16::try_from(*p.get_ref()) {
                Ok(port) if port > 0 => s.port = Some(port),
                _ => {
                    return self.error(
                        p.span(),
                        format!("port {} is out of range (1 to 65535)", p.get_ref()),
                    )
                }
            }
        }
        if let Some(u) = raw.user {
            check_user(u.get_ref()).or_else(|e| self.error(u.span(), e))?;
            s.user = Some(u.get_ref().clone());
        }
        if let Some(files) = raw.identity_files {
            s.identity_files = Some(files.iter().map(|f| self.path(f.get_ref())).collect());
        }
        if let Some(v) = raw.password_env {
            let ok = v
                .get_ref()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !v.get_ref().is_empty();
            if !ok {
                return self.error(
                    v.span(),
                    format!("{:?} is not an environment variable name", v.get_ref()),
                );
            }
            s.password_env = Some(v.get_ref().clone());
        }
        if let Some(p) = raw.host_key_policy {
            s.host_key_policy = Some(
                p.get_ref()
                    .parse()
                    .or_else(|e: Error| self.error(p.span(), e.message().to_owned()))?,
            );
        }
        if let Some(k) = raw.known_hosts {
            s.known_hosts = Some(self.path(k.get_ref()));
        }
        if let Some(t) = raw.connect_timeout {
            s.connect_timeout = Some(self.duration(t)?);
        }
        if let Some(t) = raw.command_timeout {
            s.command_timeout = Some(self.duration(t)?);
        }
        if let Some(t) = raw.transport {
            s.transport = Some(match t.get_ref().as_str() {
                "ssh" => Transport::Ssh,
                "local" => Transport::Local,
                other => {
                    return self.error(
                        t.span(),
                        format!("unknown transport {other:?} (expected ssh or local)"),
                    )
                }
            });
        }
        if let Some(vars) = raw.vars {
            for (k, v) in vars {
                let valid = k
                    .get_ref()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !k.get_ref().is_empty();
                if !valid || ["name", "host", "port", "user"].contains(&k.get_ref().as_str()) {
                    return self.error(
                        k.span(),
                        format!("invalid variable name {:?} (letters, digits and _; not name, host, port or user)", k.get_ref()),
                    );
                }
                let value = match v.get_ref() {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    _ => {
                        return self
                            .error(v.span(), "a variable must be a string, number or boolean")
                    }
                };
                s.vars.insert(k.get_ref().clone(), value);
            }
        }
        Ok(s)
    }

    fn duration(&self, v: &Spanned<toml::Value>) -> Result<Duration> {
        let parsed = match v.get_ref() {
            toml::Value::Integer(i) if *i > 0 => Some(Duration::from_secs(*i as u64)),
            toml::Value::Float(f) if *f > 0.0 && f.is_finite() => Some(Duration::from_secs_f64(*f)),
            toml::Value::String(s) => parse_duration(s).ok(),
            _ => None,
        };
        parsed.map_or_else(
            || self.error(v.span(), "expected a positive duration: seconds, or a string like \"500ms\", \"10s\", \"5m\", \"1h\""),
            Ok,
        )
    }
}

/// Parses `500ms`, `10s`, `1.5s`, `5m`, `1h`, or a bare number of seconds.
///
/// # Errors
/// [`ErrorKind::InvalidInput`] for anything else, zero, or a negative value.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => f64::NAN,
    };
    match number.parse::<f64>() {
        Ok(n) if n > 0.0 && scale.is_finite() && (n * scale).is_finite() => {
            Ok(Duration::from_secs_f64(n * scale))
        }
        _ => Err(Error::new(
            ErrorKind::InvalidInput,
            format!("invalid duration {text:?} (examples: 500ms, 10s, 5m, 1h)"),
        )),
    }
}

impl Parser<'_> {
    /// `~/x` is in the home directory; other relative paths are relative to the file.
    fn path(&self, path: &str) -> PathBuf {
        if let (Some(rest), Some(home)) = (path.strip_prefix("~/"), home::home_dir()) {
            return home.join(rest);
        }
        match self.base {
            Some(base) if Path::new(path).is_relative() => base.join(path),
            _ => PathBuf::from(path),
        }
    }
}
