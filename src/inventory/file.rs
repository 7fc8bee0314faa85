//! The `hosts.toml` format: parsed with `toml`, validated field by field, every error
//! naming the file, line and column.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use crate::error::{Error, ErrorKind, Result};

use super::model::host_setting_fields;
use super::*;

pub(crate) fn parse_port(p: &str) -> std::result::Result<u16, String> {
    match p.parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        _ => Err(format!("port {p:?} is not a number from 1 to 65535")),
    }
}

/// Host names and addresses: ASCII letters, digits, `.`, `-`, `_`, `:`; not starting with
/// `-`; at most [`MAX_NAME_LENGTH`] bytes.
pub(crate) fn check_host_name(name: &str) -> std::result::Result<(), String> {
    check_word(name, "host name", |c| {
        c.is_ascii_alphanumeric() || ".-_:".contains(c)
    })?;
    if name.len() > MAX_NAME_LENGTH {
        return Err(format!(
            "host name {:?}... is longer than {MAX_NAME_LENGTH} characters",
            name.get(..32).unwrap_or_default()
        ));
    }
    Ok(())
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
        let kind = if c == '\0' {
            "a NUL byte"
        } else if c.is_whitespace() {
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

/// Settings given by a program (or the command line) hold no NUL byte: no command line,
/// path or environment variable can carry one.
pub(super) fn check_overrides(overrides: &HostSettings) -> Result<()> {
    let mut strings: Vec<(String, &str)> = Vec::new();
    let fields = [
        ("address", overrides.address.as_deref()),
        ("user", overrides.user.as_deref()),
        ("password_env", overrides.password_env.as_deref()),
        ("become_user", overrides.become_user.as_deref()),
        (
            "become_password_env",
            overrides.become_password_env.as_deref(),
        ),
        ("proxy_jump", overrides.proxy_jump.as_deref()),
        ("proxy_command", overrides.proxy_command.as_deref()),
    ];
    for (what, value) in fields {
        if let Some(v) = value {
            strings.push((what.to_owned(), v));
        }
    }
    for (k, v) in &overrides.vars {
        strings.push((format!("vars.{k}"), k));
        strings.push((format!("vars.{k}"), v));
    }
    let paths = overrides
        .identity_files
        .iter()
        .flatten()
        .chain(overrides.certificate_files.iter().flatten())
        .chain(&overrides.known_hosts)
        .map(|p| p.as_os_str().as_encoded_bytes());
    let nul = strings
        .iter()
        .find(|(_, v)| v.contains('\0'))
        .map(|(w, _)| w.clone());
    let nul = nul.or_else(|| {
        paths
            .into_iter()
            .any(|p| p.contains(&0))
            .then(|| "a path".to_owned())
    });
    match nul {
        Some(what) => Err(Error::new(
            ErrorKind::InvalidInput,
            format!("settings: {what} contains a NUL byte"),
        )),
        None => Ok(()),
    }
}

/// A raw table of settings as the inventory file has it (`[defaults]`, a host, or a group
/// with `$extra` fields), one field per entry of [`host_setting_fields`].
macro_rules! raw_settings {
    (($(#[$meta:meta])* $name:ident { $($extra:tt)* })
     $($(#[$doc:meta])* $field:ident ($key:literal): $ty:ty => $raw:ty [$($flag:ident)*];)*) => {
        $(#[$meta])*
        #[derive(Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct $name {
            $($extra)*
            $(#[serde(rename = $key)] $field: Option<$raw>,)*
            vars: Option<IndexMap<Spanned<String>, Spanned<toml::Value>>>,
        }

        impl $name {
            fn settings(&self, p: &Parser<'_>) -> Result<HostSettings> {
                p.settings(SettingsRef {
                    $($field: &self.$field,)*
                    vars: &self.vars,
                })
            }
        }
    };
}

/// The fields of a raw table, borrowed: what [`Parser::settings`] reads.
macro_rules! settings_ref {
    (() $($(#[$doc:meta])* $field:ident ($key:literal): $ty:ty => $raw:ty [$($flag:ident)*];)*) => {
        struct SettingsRef<'a> {
            $($field: &'a Option<$raw>,)*
            vars: &'a Option<IndexMap<Spanned<String>, Spanned<toml::Value>>>,
        }

        impl SettingsRef<'_> {
            /// Where each set field was written (a list: its first item), by field name.
            fn spans(&self) -> Vec<(&'static str, Span)> {
                let mut spans = Vec::new();
                $(
                    if let Some(span) = self.$field.as_ref().and_then(FirstSpan::first_span) {
                        spans.push((stringify!($field), span));
                    }
                )*
                spans
            }
        }
    };
}

/// Where a raw value was written: the value's span, or a list's first item's.
trait FirstSpan {
    fn first_span(&self) -> Option<Span>;
}

impl<T> FirstSpan for Spanned<T> {
    fn first_span(&self) -> Option<Span> {
        Some(self.span())
    }
}

impl<T> FirstSpan for Vec<Spanned<T>> {
    fn first_span(&self) -> Option<Span> {
        self.first().map(Spanned::span)
    }
}

host_setting_fields!(raw_settings!(RawSettings {}));
host_setting_fields!(raw_settings!(RawGroup {
    #[serde(default)]
    hosts: Vec<Spanned<String>>,
    #[serde(default)]
    groups: Vec<Spanned<String>>,
}));
host_setting_fields!(settings_ref!());

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

pub(super) struct Parser<'a> {
    text: &'a str,
    file: &'a str,
    /// `file` once, shared by the origin of every setting (10,000 hosts times a few
    /// settings each made as many copies of the name).
    shared_file: std::sync::Arc<str>,
    /// Directory that relative paths in the file are relative to.
    base: Option<&'a Path>,
    /// The byte offset of every newline, in order: every setting of every host records
    /// its line, and counting newlines from the start for each made a 10,000-host
    /// inventory take seconds (quadratic).
    newlines: Vec<usize>,
}

impl<'a> Parser<'a> {
    pub(super) fn new(text: &'a str, file: &'a str, base: Option<&'a Path>) -> Parser<'a> {
        let newlines = text
            .bytes()
            .enumerate()
            .filter_map(|(i, b)| (b == b'\n').then_some(i))
            .collect();
        Parser {
            text,
            file,
            shared_file: std::sync::Arc::from(file),
            base,
            newlines,
        }
    }

    pub(super) fn at(&self, span: std::ops::Range<usize>) -> String {
        let offset = span.start.min(self.text.len());
        let line = self.line_of(offset);
        // The start of the line: just after the newline before it.
        let line_start = match line.checked_sub(2) {
            Some(i) => self.newlines.get(i).map_or(0, |nl| nl + 1),
            None => 0,
        };
        let col = offset.saturating_sub(line_start) + 1;
        format!("{}:{line}:{col}", self.file)
    }

    /// The 1-based line of a byte offset (the newlines before it, plus one).
    pub(super) fn line_of(&self, offset: usize) -> usize {
        self.newlines.partition_point(|&nl| nl < offset) + 1
    }

    fn error<T>(&self, span: std::ops::Range<usize>, msg: impl std::fmt::Display) -> Result<T> {
        Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{}: {msg}", self.at(span)),
        ))
    }

    pub(super) fn parse(&self, overrides: &HostSettings) -> Result<Inventory> {
        check_overrides(overrides)?;
        // TOML rejects a raw NUL byte too, but says less clearly where and what.
        if let Some(at) = self.text.find('\0') {
            return self.error(at..at, "the file contains a NUL byte");
        }
        let mut raw: RawFile = toml::from_str(self.text).map_err(|e| {
            let at = match e.span() {
                Some(span) => self.at(span),
                None => self.file.to_owned(),
            };
            Error::new(
                ErrorKind::InvalidInput,
                format!("{at}: {}", e.message().trim_end()),
            )
        })?;

        let defaults = raw.defaults.settings(self)?;

        // Hosts from [hosts], each range expanded, in file order; then hosts that groups
        // introduce. (host name, index of its own settings in `owns`, where it was first
        // named.) The parsed `[hosts]` table is consumed here and freed after the loop: with
        // 10,000 hosts it took as much memory as the hosts themselves.
        let raw_hosts = std::mem::take(&mut raw.hosts);
        let mut hosts: Vec<(String, Option<usize>, Span)> = Vec::with_capacity(raw_hosts.len());
        let mut by_name: HashMap<String, usize> = HashMap::with_capacity(raw_hosts.len());
        let mut owns: Vec<HostSettings> = Vec::with_capacity(raw_hosts.len());
        for (key, raw_host) in raw_hosts {
            let own = owns.len();
            owns.push(raw_host.settings(self)?);
            drop(raw_host);
            for name in self.expand_names(&key)? {
                if let Some(&first) = by_name.get(&name) {
                    let first = hosts.get(first).map(|(_, _, s)| self.at(s.clone()));
                    return self.error(
                        key.span(),
                        format!(
                            "duplicate host {name:?} (first defined at {})",
                            first.unwrap_or_default()
                        ),
                    );
                }
                if hosts.len() >= MAX_HOSTS {
                    return self.error(key.span(), too_many_hosts());
                }
                by_name.insert(name.clone(), hosts.len());
                hosts.push((name, Some(own), key.span()));
            }
        }

        // Groups: names, members (hosts may be introduced here), nesting.
        let group_index: HashMap<&str, usize> = raw
            .groups
            .keys()
            .enumerate()
            .map(|(i, k)| (k.get_ref().as_str(), i))
            .collect();
        for key in raw.groups.keys() {
            check_word(key.get_ref(), "group name", |c| {
                c.is_ascii_alphanumeric() || ".-_".contains(c)
            })
            .or_else(|e| self.error(key.span(), e))?;
            if by_name.contains_key(key.get_ref()) {
                return self.error(
                    key.span(),
                    format!("{:?} is both a host and a group", key.get_ref()),
                );
            }
        }
        let mut direct: Vec<Vec<usize>> = Vec::with_capacity(raw.groups.len());
        let mut subgroups: Vec<Vec<usize>> = Vec::with_capacity(raw.groups.len());
        let mut group_settings: Vec<HostSettings> = Vec::with_capacity(raw.groups.len());
        for (key, group) in &raw.groups {
            let mut members = Vec::new();
            let mut seen = HashSet::new();
            for pattern in &group.hosts {
                for name in self.expand_names(pattern)? {
                    if group_index.contains_key(name.as_str()) {
                        return self.error(
                            pattern.span(),
                            format!("{name:?} is a group: list it under `groups`, not `hosts`"),
                        );
                    }
                    let index = match by_name.get(&name) {
                        Some(&i) => i,
                        None => {
                            if hosts.len() >= MAX_HOSTS {
                                return self.error(pattern.span(), too_many_hosts());
                            }
                            by_name.insert(name.clone(), hosts.len());
                            hosts.push((name, None, pattern.span()));
                            hosts.len() - 1
                        }
                    };
                    if seen.insert(index) {
                        members.push(index);
                    }
                }
            }
            let mut subs = Vec::new();
            for sub in &group.groups {
                self.string(sub, "groups")?;
                if sub.get_ref() == key.get_ref() {
                    return self.error(
                        sub.span(),
                        format!("group {:?} names itself", key.get_ref()),
                    );
                }
                match group_index.get(sub.get_ref().as_str()) {
                    Some(&i) => subs.push(i),
                    None => {
                        return self.error(sub.span(), format!("unknown group {:?}", sub.get_ref()))
                    }
                }
            }
            direct.push(members);
            subgroups.push(subs);
            group_settings.push(group.settings(self)?);
        }
        let resolved = self.resolve_groups(&raw, &direct, &subgroups, hosts.len())?;

        // Each host's groups, in file order.
        let mut groups_of: Vec<Vec<usize>> = vec![Vec::new(); hosts.len()];
        for (gi, members) in resolved.iter().enumerate() {
            for &m in members {
                if let Some(list) = groups_of.get_mut(m) {
                    list.push(gi);
                }
            }
        }
        let group_names: Vec<&str> = raw.groups.keys().map(|k| k.get_ref().as_str()).collect();

        // Settings per host: defaults, then each group containing it (file order), then its own,
        // then the command line.
        let mut inventory = Inventory {
            hosts: Vec::with_capacity(hosts.len()),
            groups: IndexMap::with_capacity(raw.groups.len()),
            by_name: HashMap::with_capacity(hosts.len()),
        };
        // The last host (index) that uses each entry of `owns`: a `[hosts]` key that is a
        // range gives several hosts the same settings; after the last, they are moved out
        // (freed as the hosts are built rather than held until the end).
        let mut last_use: Vec<usize> = vec![0; owns.len()];
        for (i, (_, own, _)) in hosts.iter().enumerate() {
            if let Some(slot) = own.and_then(|o| last_use.get_mut(o)) {
                *slot = i;
            }
        }
        for (index, ((name, own, span), groups)) in hosts.into_iter().zip(groups_of).enumerate() {
            let mut host = new_host(name);
            let mut settings = defaults.clone();
            for gi in groups {
                if let (Some(group), Some(name)) = (group_settings.get(gi), group_names.get(gi)) {
                    settings.merge(group);
                    host.groups.push((*name).to_owned());
                }
            }
            if let Some(own) = own {
                if last_use.get(own) == Some(&index) {
                    if let Some(own) = owns.get_mut(own) {
                        settings.merge(&std::mem::take(own));
                    }
                } else if let Some(own) = owns.get(own) {
                    settings.merge(own);
                }
            }
            // The command line wins over the whole inventory, as `ssh -l USER` wins over
            // ssh_config's `User`.
            settings.merge(overrides);
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
            inventory.push(host);
        }
        for (name, members) in group_names.iter().zip(resolved) {
            inventory.groups.insert((*name).to_owned(), members);
        }
        if inventory.hosts.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{}: the inventory has no hosts", self.file),
            ));
        }
        Ok(inventory)
    }

    /// Each group's members with those of its nested groups, sorted; a cycle is an error
    /// at the first group (in file order) that reaches it. Depth-first without recursion
    /// (a chain of 100,000 groups must not overflow the stack), each group resolved once.
    fn resolve_groups(
        &self,
        raw: &RawFile,
        direct: &[Vec<usize>],
        subgroups: &[Vec<usize>],
        host_count: usize,
    ) -> Result<Vec<Vec<usize>>> {
        const NEW: u8 = 0;
        const OPEN: u8 = 1;
        const DONE: u8 = 2;
        let count = direct.len();
        let mut state = vec![NEW; count];
        let mut resolved: Vec<Vec<usize>> = vec![Vec::new(); count];
        // For de-duplicating members: the group last counted for each host, plus one.
        let mut stamp = vec![0usize; host_count];
        let name = |g: usize| {
            raw.groups
                .get_index(g)
                .map_or("", |(k, _)| k.get_ref().as_str())
        };
        for root in 0..count {
            if state.get(root) != Some(&NEW) {
                continue;
            }
            // (group, how many of its subgroups have been visited)
            let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
            if let Some(s) = state.get_mut(root) {
                *s = OPEN;
            }
            while let Some(top) = stack.last_mut() {
                let (g, next) = *top;
                let subs = subgroups.get(g).map(Vec::as_slice).unwrap_or_default();
                if let Some(&sub) = subs.get(next) {
                    top.1 += 1;
                    match state.get(sub).copied() {
                        Some(OPEN) => {
                            let mut cycle: Vec<&str> =
                                stack.iter().map(|&(g, _)| name(g)).collect();
                            cycle.push(name(sub));
                            let span = raw.groups.get_index(root).map_or(0..0, |(k, _)| k.span());
                            return self.error(
                                span,
                                format!("groups contain each other: {}", cycle.join(" -> ")),
                            );
                        }
                        Some(NEW) => {
                            if let Some(s) = state.get_mut(sub) {
                                *s = OPEN;
                            }
                            stack.push((sub, 0));
                        }
                        _ => {}
                    }
                    continue;
                }
                stack.pop();
                let mut members = Vec::new();
                let own = direct.get(g).map(Vec::as_slice).unwrap_or_default();
                let nested = subs
                    .iter()
                    .flat_map(|&s| resolved.get(s).map(Vec::as_slice).unwrap_or_default());
                for &m in own.iter().chain(nested) {
                    if let Some(st) = stamp.get_mut(m) {
                        if *st != g + 1 {
                            *st = g + 1;
                            members.push(m);
                        }
                    }
                }
                members.sort_unstable();
                if let Some(r) = resolved.get_mut(g) {
                    *r = members;
                }
                if let Some(s) = state.get_mut(g) {
                    *s = DONE;
                }
            }
        }
        Ok(resolved)
    }

    /// The names a `[hosts]` key or a group's `hosts` entry stands for, checked (a range
    /// holds at most [`MAX_HOSTS`] names, counted before they are made).
    fn expand_names(&self, key: &Spanned<String>) -> Result<Vec<String>> {
        let names = range::expand(key.get_ref())
            .or_else(|e| self.error(key.span(), e.message().to_owned()))?;
        for name in &names {
            check_host_name(name).or_else(|e| self.error(key.span(), e))?;
        }
        Ok(names)
    }

    /// The string of a setting, refused when it holds a NUL byte (no command line, path
    /// or environment variable can carry one; sshd drops a connection that sends one).
    fn string<'s>(&self, value: &'s Spanned<String>, key: &str) -> Result<&'s str> {
        if value.get_ref().contains('\0') {
            return self.error(value.span(), format!("{key} contains a NUL byte"));
        }
        Ok(value.get_ref())
    }

    /// The name of an environment variable (`password_env`, `become_password_env`).
    fn env_name(&self, value: &Spanned<String>, key: &str) -> Result<String> {
        let name = self.string(value, key)?;
        let ok = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !name.is_empty();
        if !ok {
            return self.error(
                value.span(),
                format!("{name:?} is not an environment variable name"),
            );
        }
        Ok(name.to_owned())
    }

    fn settings(&self, raw: SettingsRef<'_>) -> Result<HostSettings> {
        let mut s = HostSettings::default();
        if let Some(a) = raw.address {
            s.address = Some(self.string(a, "address")?.to_owned());
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
            let mut paths = Vec::with_capacity(files.len());
            for f in files {
                paths.push(self.path(self.string(f, "identity_files")?));
            }
            s.identity_files = Some(paths);
        }
        if let Some(files) = raw.certificate_files {
            let mut paths = Vec::with_capacity(files.len());
            for f in files {
                paths.push(self.path(self.string(f, "certificate_files")?));
            }
            s.certificate_files = Some(paths);
        }
        if let Some(v) = raw.password_env {
            s.password_env = Some(self.env_name(v, "password_env")?);
        }
        if let Some(b) = raw.become_enabled {
            s.become_enabled = Some(*b.get_ref());
        }
        if let Some(u) = raw.become_user {
            check_user(u.get_ref())
                .or_else(|e| self.error(u.span(), format!("become_user: {e}")))?;
            s.become_user = Some(u.get_ref().clone());
        }
        if let Some(v) = raw.become_password_env {
            s.become_password_env = Some(self.env_name(v, "become_password_env")?);
        }
        if let Some(p) = raw.host_key_policy {
            s.host_key_policy = Some(
                self.string(p, "host_key_policy")?
                    .parse()
                    .or_else(|e: Error| self.error(p.span(), e.message().to_owned()))?,
            );
        }
        if let Some(k) = raw.known_hosts {
            s.known_hosts = Some(self.path(self.string(k, "known_hosts")?));
        }
        if let Some(t) = raw.connect_timeout {
            s.connect_timeout = Some(self.duration(t)?);
        }
        if let Some(t) = raw.command_timeout {
            s.command_timeout = Some(self.duration(t)?);
        }
        if let Some(t) = raw.keepalive {
            s.keepalive = Some(self.duration(t)?);
        }
        if let Some(n) = raw.keepalive_max {
            match usize::try_from(*n.get_ref()) {
                Ok(max) if (1..=1000).contains(&max) => s.keepalive_max = Some(max),
                _ => {
                    return self.error(
                        n.span(),
                        format!("keepalive_max {} is out of range (1 to 1000)", n.get_ref()),
                    )
                }
            }
        }
        if let Some(t) = raw.transport {
            s.transport = Some(match self.string(t, "transport")? {
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
        let origin = |span: Span| Origin::Inventory {
            file: std::sync::Arc::clone(&self.shared_file),
            line: self.line_of(span.start),
        };
        for (field, span) in raw.spans() {
            s.origins.insert(field, origin(span));
        }
        if let (Some(_), Some(c)) = (raw.proxy_jump, raw.proxy_command) {
            return self.error(
                c.span(),
                "set proxy_jump or proxy_command, not both (set the other to \"none\" in a \
                 narrower layer to override a wider one)",
            );
        }
        if let Some(j) = raw.proxy_jump {
            let text = self.string(j, "proxy_jump")?;
            crate::ssh::JumpHost::parse_list(text)
                .or_else(|e| self.error(j.span(), format!("proxy_jump: {}", e.message())))?;
            s.proxy_jump = Some(text.to_owned());
        }
        if let Some(c) = raw.proxy_command {
            let text = self.string(c, "proxy_command")?;
            if text.trim().is_empty() {
                return self.error(c.span(), "proxy_command is empty (use \"none\" for none)");
            }
            crate::ssh::check_proxy_command(text)
                .or_else(|e| self.error(c.span(), e.message().to_owned()))?;
            s.proxy_command = Some(text.to_owned());
        }
        if let Some(vars) = raw.vars {
            for (k, v) in vars {
                self.string(k, "a variable name")?;
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
                    toml::Value::String(text) => {
                        if text.contains('\0') {
                            return self.error(
                                v.span(),
                                format!("vars.{} contains a NUL byte", k.get_ref()),
                            );
                        }
                        text.clone()
                    }
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

    /// `connect_timeout` / `command_timeout`: a number of seconds (integer or decimal) or
    /// a string as [`parse_duration`] takes, within [`MAX_DURATION`].
    fn duration(&self, v: &Spanned<toml::Value>) -> Result<Duration> {
        let (shown, parsed) = match v.get_ref() {
            toml::Value::Integer(i) => (i.to_string(), duration::duration_from_int(*i)),
            toml::Value::Float(f) => (f.to_string(), duration::duration_from_secs(*f)),
            toml::Value::String(s) => {
                if s.contains('\0') {
                    return self.error(v.span(), "the duration contains a NUL byte");
                }
                (format!("{s:?}"), duration::duration_from_text(s))
            }
            other => (
                other.type_str().to_owned(),
                Err("expected a number of seconds or a string like \"10s\"".to_owned()),
            ),
        };
        parsed.or_else(|why| self.error(v.span(), format!("invalid duration {shown}: {why}")))
    }

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

type Span = std::ops::Range<usize>;

fn new_host(name: String) -> Host {
    Host {
        name,
        groups: Vec::new(),
        settings: HostSettings::default(),
        ssh_config: None,
    }
}

fn too_many_hosts() -> String {
    format!("more than {MAX_HOSTS} hosts (the most one run takes)")
}
