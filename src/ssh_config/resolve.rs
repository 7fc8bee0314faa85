//! Evaluating the read files for one host, as OpenSSH 9.2's `ssh` does: `Host` and `Match`
//! blocks, first value wins, a second pass when a `Match final` (or `canonical`) asks for
//! it, then `%` tokens and `~` in the values.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::glob::glob_match;
use crate::ssh_config::expand::{
    expand, home_dir, local_facts, pattern_list, tilde, Tokens, PATH_TOKENS,
};
use crate::ssh_config::load::{Condition, ConfigFile, Criterion, Directive, Setting};
use crate::ssh_config::{ConfigLine, Query, ResolvedConfig, StrictHostKeyChecking, Value};

/// Values as written, first one wins.
#[derive(Default)]
struct Raw {
    host_name: Option<Value<String>>,
    user: Option<Value<String>>,
    port: Option<Value<u16>>,
    /// With whether a user's file named it (duplicates are dropped per kind).
    identity_files: Vec<(Value<String>, bool)>,
    identities_only: Option<Value<bool>>,
    identity_agent: Option<Value<String>>,
    certificate_files: Vec<(Value<String>, bool)>,
    proxy_jump: Option<Value<String>>,
    proxy_command: Option<Value<String>>,
    user_known_hosts: Option<Value<Vec<String>>>,
    global_known_hosts: Option<Value<Vec<String>>>,
    strict: Option<Value<StrictHostKeyChecking>>,
    connect_timeout: Option<Value<u64>>,
    alive_interval: Option<Value<u64>>,
    alive_count: Option<Value<u32>>,
    password: Option<Value<bool>>,
    pubkey: Option<Value<bool>>,
    kbd: Option<Value<bool>>,
    preferred: Option<Value<String>>,
    alias: Option<Value<String>>,
}

fn first<T>(slot: &mut Option<Value<T>>, value: T, origin: &ConfigLine) {
    if slot.is_none() {
        *slot = Some(Value {
            value,
            origin: origin.clone(),
        });
    }
}

/// OpenSSH's limits on identity and certificate files (`SSH_MAX_IDENTITY_FILES`,
/// `SSH_MAX_CERTIFICATE_FILES`).
const MAX_FILES: usize = 100;

struct Evaluation<'a> {
    query: &'a Query<'a>,
    raw: Raw,
    local_user: String,
    uid: u32,
    home: String,
    local_host: String,
    /// The host `Host` lines match: the host as given, then in the final pass the
    /// resolved host name.
    pattern_host: String,
    final_pass: bool,
    want_final: bool,
    /// `HostName` is settled (the final pass starts with it set, as in OpenSSH).
    host_name_locked: bool,
}

impl Evaluation<'_> {
    fn walk(&mut self, file: &ConfigFile, active: &mut bool, never: bool) -> Result<()> {
        for line in &file.lines {
            let origin = ConfigLine {
                file: file.path.clone(),
                line: line.number,
            };
            match &line.directive {
                Directive::Host(patterns) => {
                    *active = !never && host_matches(patterns, &self.pattern_host);
                }
                Directive::Match(conditions) => {
                    let matched = self.match_line(conditions, &origin, never)?;
                    *active = !never && matched;
                }
                Directive::Include(files) => {
                    let outer = *active;
                    for included in files {
                        self.walk(included, active, never || !outer)?;
                        // A Match in an included file does not change the includer's state.
                        *active = outer;
                    }
                }
                Directive::Set(setting) if *active => {
                    self.apply(setting, &origin, file.user_config)?
                }
                Directive::Set(_) | Directive::Ignored => {}
            }
        }
        Ok(())
    }

    fn apply(&mut self, setting: &Setting, at: &ConfigLine, user_config: bool) -> Result<()> {
        let r = &mut self.raw;
        match setting.clone() {
            Setting::HostName(v) => {
                if !self.host_name_locked {
                    first(&mut r.host_name, v, at)
                }
            }
            Setting::User(v) => first(&mut r.user, v, at),
            Setting::Port(v) => first(&mut r.port, v, at),
            Setting::IdentityFile(v) => {
                add_file(&mut r.identity_files, v, at, user_config, "IdentityFile")?
            }
            Setting::CertificateFile(v) => add_file(
                &mut r.certificate_files,
                v,
                at,
                user_config,
                "CertificateFile",
            )?,
            Setting::IdentitiesOnly(v) => first(&mut r.identities_only, v, at),
            Setting::IdentityAgent(v) => first(&mut r.identity_agent, v, at),
            // ProxyJump and ProxyCommand share one slot: whichever comes first wins.
            Setting::ProxyJump(v) => {
                if r.proxy_command.is_none() {
                    first(&mut r.proxy_jump, v, at)
                }
            }
            Setting::ProxyCommand(v) => {
                if r.proxy_jump.is_none() {
                    first(&mut r.proxy_command, v, at)
                }
            }
            Setting::UserKnownHostsFile(v) => first(&mut r.user_known_hosts, v, at),
            Setting::GlobalKnownHostsFile(v) => first(&mut r.global_known_hosts, v, at),
            Setting::StrictHostKeyChecking(v) => first(&mut r.strict, v, at),
            Setting::ConnectTimeout(Some(v)) => first(&mut r.connect_timeout, v, at),
            Setting::ServerAliveInterval(Some(v)) => first(&mut r.alive_interval, v, at),
            Setting::ConnectTimeout(None) | Setting::ServerAliveInterval(None) => {}
            Setting::ServerAliveCountMax(v) => first(&mut r.alive_count, v, at),
            Setting::PasswordAuthentication(v) => first(&mut r.password, v, at),
            Setting::PubkeyAuthentication(v) => first(&mut r.pubkey, v, at),
            Setting::KbdInteractiveAuthentication(v) => first(&mut r.kbd, v, at),
            Setting::PreferredAuthentications(v) => first(&mut r.preferred, v, at),
            Setting::HostKeyAlias(v) => first(&mut r.alias, v, at),
        }
        Ok(())
    }

    /// The remote user so far: as given, from the files, or the local user.
    fn remote_user(&self) -> String {
        self.query
            .user
            .map(str::to_owned)
            .or_else(|| self.raw.user.as_ref().map(|u| u.value.clone()))
            .unwrap_or_else(|| self.local_user.clone())
    }

    fn port(&self) -> u16 {
        self.query
            .port
            .or_else(|| self.raw.port.as_ref().map(|p| p.value))
            .unwrap_or(22)
    }

    /// The host name so far, `%h` expanded, not lowercased (OpenSSH's `match_cfg_line`).
    fn host_so_far(&self) -> Result<String> {
        if self.final_pass {
            return Ok(self.pattern_host.clone());
        }
        match &self.raw.host_name {
            Some(v) => expand_host_name(&v.value, self.query.host, &v.origin),
            None => Ok(self.query.host.to_owned()),
        }
    }

    /// Whether a `Match` line matches (OpenSSH 9.2's `match_cfg_line`).
    fn match_line(
        &mut self,
        conditions: &[Condition],
        at: &ConfigLine,
        never: bool,
    ) -> Result<bool> {
        let host = self.host_so_far()?;
        let mut result = true;
        for c in conditions {
            let matched = match &c.criterion {
                Criterion::All => {
                    if result {
                        result = !c.negated;
                    }
                    break;
                }
                Criterion::Canonical | Criterion::Final => {
                    if matches!(c.criterion, Criterion::Final) {
                        self.want_final = true;
                    }
                    self.final_pass
                }
                Criterion::Host(list) => {
                    pattern_list(&host.to_ascii_lowercase(), list, true) == Some(true)
                }
                Criterion::OriginalHost(list) => {
                    pattern_list(&self.query.host.to_ascii_lowercase(), list, true) == Some(true)
                }
                Criterion::User(list) => {
                    pattern_list(&self.remote_user(), list, false) == Some(true)
                }
                Criterion::LocalUser(list) => {
                    pattern_list(&self.local_user, list, false) == Some(true)
                }
                Criterion::Exec(command) => {
                    // Skipped when an earlier criterion already failed, as in OpenSSH.
                    if !result || never {
                        continue;
                    }
                    let tokens = Tokens {
                        host: host.clone(),
                        original: self.query.host.to_owned(),
                        port: self.port(),
                        remote_user: self.remote_user(),
                        local_user: self.local_user.clone(),
                        home: self.home.clone(),
                        uid: self.uid,
                        key_alias: self
                            .raw
                            .alias
                            .as_ref()
                            .map_or_else(|| host.clone(), |a| a.value.clone()),
                        local_host: self.local_host.clone(),
                    };
                    let command = expand(command, &tokens, PATH_TOKENS, false)
                        .map_err(|e| at.error(format!("Match exec: {e}")))?;
                    run_exec(&command, at)?
                }
            };
            if matched == c.negated {
                result = false;
            }
        }
        Ok(result)
    }
}

/// Runs a `Match exec` command with the user's shell (`$SHELL`, else `/bin/sh`) `-c`,
/// stdin and stdout on /dev/null, stderr inherited, as OpenSSH does: whether it exited 0.
fn run_exec(command: &str, at: &ConfigLine) -> Result<bool> {
    let shell = std::env::var_os("SHELL")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "/bin/sh".into());
    tracing::debug!("{at}: Match exec {command:?}");
    let status = std::process::Command::new(&shell)
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| {
            Error::new(
                ErrorKind::LocalIo,
                format!(
                    "{at}: Match exec: cannot run {} -c {command:?}",
                    PathBuf::from(&shell).display()
                ),
            )
            .with_source(e)
        })?;
    match status.code() {
        Some(code) => Ok(code == 0),
        None => Err(at.error(format!(
            "Match exec {command:?} ended abnormally ({status})"
        ))),
    }
}

/// `Host` patterns: any one matching, none of the negated ones (`!pattern`) matching.
fn host_matches(patterns: &[String], host: &str) -> bool {
    let mut matched = false;
    for p in patterns {
        match p.strip_prefix('!') {
            Some(negated) if glob_match(negated, host) => return false,
            Some(_) => {}
            None => matched |= glob_match(p, host),
        }
    }
    matched
}

/// Adds an identity or certificate file unless the same text came from the same kind of
/// file before (OpenSSH's `add_identity_file`).
fn add_file(
    files: &mut Vec<(Value<String>, bool)>,
    path: String,
    at: &ConfigLine,
    user_config: bool,
    keyword: &str,
) -> Result<()> {
    if files
        .iter()
        .any(|(v, u)| *u == user_config && v.value == path)
    {
        return Ok(());
    }
    if files.len() >= MAX_FILES {
        return Err(at.error(format!("{keyword}: more than {MAX_FILES} files")));
    }
    files.push((
        Value {
            value: path,
            origin: at.clone(),
        },
        user_config,
    ));
    Ok(())
}

/// `HostName` with `%h` (the host as given) and `%%` replaced.
fn expand_host_name(value: &str, host: &str, at: &ConfigLine) -> Result<String> {
    let tokens = Tokens {
        host: host.to_owned(),
        ..Tokens::default()
    };
    expand(value, &tokens, "h", false).map_err(|e| at.error(format!("HostName: {e}")))
}

fn is_address(host: &str) -> bool {
    host.parse::<IpAddr>().is_ok()
}

impl ConfigLine {
    fn error(&self, message: String) -> Error {
        Error::new(ErrorKind::InvalidInput, format!("{self}: {message}"))
    }
}

/// Evaluates `files` for `query`.
pub(crate) fn resolve(files: &[ConfigFile], query: &Query<'_>) -> Result<ResolvedConfig> {
    let (local_host, local_user, uid) = local_facts();
    let mut e = Evaluation {
        query,
        raw: Raw::default(),
        local_user: local_user.clone(),
        uid: *uid,
        home: home_dir(),
        local_host: local_host.clone(),
        pattern_host: query.host.to_owned(),
        final_pass: false,
        want_final: false,
        host_name_locked: false,
    };
    for file in files {
        e.walk(file, &mut true, false)?;
    }
    let host = final_host(&e)?;
    if e.want_final {
        tracing::debug!("{}: ssh config: final pass for {host}", query.host);
        e.final_pass = true;
        e.host_name_locked = true;
        e.pattern_host = host.clone();
        for file in files {
            e.walk(file, &mut true, false)?;
        }
    }
    finish(e, host)
}

/// The host name after `HostName`, lowercased unless it is an address.
fn final_host(e: &Evaluation<'_>) -> Result<String> {
    let host = match &e.raw.host_name {
        Some(v) => expand_host_name(&v.value, e.query.host, &v.origin)?,
        None => e.query.host.to_owned(),
    };
    Ok(if is_address(&host) {
        host
    } else {
        host.to_ascii_lowercase()
    })
}

fn finish(e: Evaluation<'_>, host: String) -> Result<ResolvedConfig> {
    let tokens = Tokens {
        host: host.clone(),
        original: e.query.host.to_owned(),
        port: e.port(),
        remote_user: e.remote_user(),
        local_user: e.local_user.clone(),
        home: e.home.clone(),
        uid: e.uid,
        key_alias: e
            .raw
            .alias
            .as_ref()
            .map_or_else(|| e.query.host.to_owned(), |a| a.value.clone()),
        local_host: e.local_host.clone(),
    };
    let home = e.home.clone();
    // `~`, then tokens and ${VAR}: IdentityFile, CertificateFile, IdentityAgent,
    // UserKnownHostsFile.
    let path = |v: &Value<String>, keyword: &str| -> Result<String> {
        let t = tilde(&v.value, &home).map_err(|m| v.origin.error(format!("{keyword}: {m}")))?;
        expand(&t, &tokens, PATH_TOKENS, true)
            .map_err(|m| v.origin.error(format!("{keyword}: {m}")))
    };
    let files = |list: &[(Value<String>, bool)], keyword: &str| -> Result<Vec<Value<PathBuf>>> {
        list.iter()
            .map(|(v, _)| {
                Ok(Value {
                    value: PathBuf::from(path(v, keyword)?),
                    origin: v.origin.clone(),
                })
            })
            .collect()
    };
    let raw = &e.raw;
    let identity_files = files(&raw.identity_files, "IdentityFile")?;
    let certificate_files = files(&raw.certificate_files, "CertificateFile")?;
    let identity_agent = match &raw.identity_agent {
        Some(v) => Some(Value {
            value: path(v, "IdentityAgent")?,
            origin: v.origin.clone(),
        }),
        None => None,
    };
    let known_hosts_list = |v: &Value<Vec<String>>, tokens: bool| -> Result<Value<Vec<PathBuf>>> {
        let mut out = Vec::new();
        for f in &v.value {
            if f.eq_ignore_ascii_case("none") {
                continue;
            }
            let one = Value {
                value: f.clone(),
                origin: v.origin.clone(),
            };
            let expanded = if tokens {
                path(&one, "UserKnownHostsFile")?
            } else {
                tilde(f, &home).map_err(|m| v.origin.error(format!("GlobalKnownHostsFile: {m}")))?
            };
            out.push(PathBuf::from(expanded));
        }
        Ok(Value {
            value: out,
            origin: v.origin.clone(),
        })
    };
    let user_known_hosts = raw
        .user_known_hosts
        .as_ref()
        .map(|v| known_hosts_list(v, true))
        .transpose()?;
    let global_known_hosts = raw
        .global_known_hosts
        .as_ref()
        .map(|v| known_hosts_list(v, false))
        .transpose()?;
    let host_name = raw.host_name.as_ref().map(|v| Value {
        value: host.clone(),
        origin: v.origin.clone(),
    });
    let secs = |v: &Option<Value<u64>>| {
        v.as_ref().map(|v| Value {
            value: Duration::from_secs(v.value),
            origin: v.origin.clone(),
        })
    };
    let preferred = raw.preferred.as_ref().map(|v| Value {
        value: v
            .value
            .split(',')
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect(),
        origin: v.origin.clone(),
    });
    Ok(ResolvedConfig {
        host_name,
        user: raw.user.clone(),
        port: raw.port.clone(),
        identity_files,
        identities_only: raw.identities_only.clone(),
        identity_agent,
        certificate_files,
        proxy_jump: raw.proxy_jump.clone(),
        proxy_command: raw.proxy_command.clone(),
        user_known_hosts_files: user_known_hosts,
        global_known_hosts_files: global_known_hosts,
        strict_host_key_checking: raw.strict.clone(),
        connect_timeout: secs(&raw.connect_timeout),
        server_alive_interval: secs(&raw.alive_interval),
        server_alive_count_max: raw.alive_count.clone(),
        password_authentication: raw.password.clone(),
        pubkey_authentication: raw.pubkey.clone(),
        kbd_interactive_authentication: raw.kbd.clone(),
        preferred_authentications: preferred,
        host_key_alias: raw.alias.clone(),
        tokens,
    })
}
