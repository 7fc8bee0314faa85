//! Reading ssh_config files into directives, once: every value is checked here (as OpenSSH
//! checks them, active or not), `Include` globs are expanded and the files they name read.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::ssh_config::expand::{home_dir, tilde};
use crate::ssh_config::lex;
use crate::ssh_config::StrictHostKeyChecking;

/// Where OpenSSH's system-wide client files are.
pub(crate) const SYSTEM_DIR: &str = "/etc/ssh";

/// OpenSSH's `READCONF_MAX_DEPTH`: includes nest at most this deep.
const MAX_DEPTH: usize = 16;

/// One file, read.
#[derive(Debug, Clone)]
pub(crate) struct ConfigFile {
    pub path: PathBuf,
    /// A user's file (or one it includes) rather than the system's: OpenSSH keeps identity
    /// files named by both apart when it drops duplicates.
    pub user_config: bool,
    pub lines: Vec<Line>,
}

/// One meaningful line of a file.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub number: usize,
    pub directive: Directive,
}

#[derive(Debug, Clone)]
pub(crate) enum Directive {
    /// `Host` with its patterns.
    Host(Vec<String>),
    /// `Match` with its criteria.
    Match(Vec<Condition>),
    /// `Include`: the files its patterns matched, in order.
    Include(Vec<ConfigFile>),
    /// A keyword rexec honours.
    Set(Setting),
    /// A keyword rexec ignores.
    Ignored,
}

/// One `Match` criterion, possibly negated with `!`.
#[derive(Debug, Clone)]
pub(crate) struct Condition {
    pub negated: bool,
    pub criterion: Criterion,
}

#[derive(Debug, Clone)]
pub(crate) enum Criterion {
    All,
    Canonical,
    Final,
    Exec(String),
    Host(String),
    OriginalHost(String),
    User(String),
    LocalUser(String),
}

/// The values of the keywords rexec honours, as written (tokens not yet expanded).
#[derive(Debug, Clone)]
pub(crate) enum Setting {
    HostName(String),
    User(String),
    Port(u16),
    IdentityFile(String),
    IdentitiesOnly(bool),
    IdentityAgent(String),
    CertificateFile(String),
    ProxyJump(String),
    ProxyCommand(String),
    UserKnownHostsFile(Vec<String>),
    GlobalKnownHostsFile(Vec<String>),
    StrictHostKeyChecking(StrictHostKeyChecking),
    /// `None`: `none` (leaves the setting open for a later line, as in OpenSSH).
    ConnectTimeout(Option<u64>),
    ServerAliveInterval(Option<u64>),
    ServerAliveCountMax(u32),
    PasswordAuthentication(bool),
    PubkeyAuthentication(bool),
    KbdInteractiveAuthentication(bool),
    PreferredAuthentications(String),
    HostKeyAlias(String),
}

/// Reads files; remembers which ignored keywords it already logged.
pub(crate) struct Loader {
    logged: HashSet<String>,
    /// Where relative includes of the system file (and of what it includes) are:
    /// `/etc/ssh` for OpenSSH's own system file.
    system_dir: PathBuf,
}

impl Default for Loader {
    fn default() -> Loader {
        Loader::new(PathBuf::from(SYSTEM_DIR))
    }
}

impl Loader {
    /// A loader whose system file's relative includes are in `system_dir`.
    pub fn new(system_dir: PathBuf) -> Loader {
        Loader {
            logged: HashSet::new(),
            system_dir,
        }
    }

    /// Reads `path`. `None` when it does not exist and `required` is false.
    /// `user_config`: a user's file (`~/.ssh/config`, `-F`, and what they include), whose
    /// relative includes are in `~/.ssh`; otherwise in the system directory. `check_permissions`: as
    /// OpenSSH, refuse a file that another user owns or that group or others may write.
    pub fn file(
        &mut self,
        path: &Path,
        user_config: bool,
        check_permissions: bool,
        required: bool,
        depth: usize,
    ) -> Result<Option<ConfigFile>> {
        let cannot = |e: std::io::Error| {
            Error::new(
                ErrorKind::LocalIo,
                format!("cannot read ssh config {}", path.display()),
            )
            .with_source(e)
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(None),
            Err(e) => return Err(cannot(e)),
        };
        if check_permissions {
            let meta = std::fs::metadata(path).map_err(cannot)?;
            // SAFETY: getuid cannot fail.
            let uid = unsafe { libc::getuid() };
            if (meta.uid() != 0 && meta.uid() != uid) || meta.mode() & 0o022 != 0 {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "bad owner or permissions on ssh config {} (it must belong to you or \
                         root and not be writable by group or others, as OpenSSH requires)",
                        path.display()
                    ),
                ));
            }
        }
        let text = String::from_utf8(bytes).map_err(|_| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("ssh config {} is not UTF-8", path.display()),
            )
        })?;
        tracing::debug!("reading ssh config {}", path.display());
        let mut lines = Vec::new();
        for (index, line) in text.split('\n').enumerate() {
            let number = index + 1;
            let at = |msg: String| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!("{}:{number}: {msg}", path.display()),
                )
            };
            if line.contains('\0') {
                return Err(at("the line contains a NUL byte".to_owned()));
            }
            let Some((keyword, rest)) = lex::keyword(line) else {
                continue;
            };
            if rest.is_empty() {
                return Err(at(format!("no argument after keyword {keyword:?}")));
            }
            let directive =
                self.directive(&keyword, rest, user_config, depth)
                    .map_err(|e| match e {
                        Problem::Message(m) => at(m),
                        Problem::Error(e) => e,
                    })?;
            if matches!(directive, Directive::Ignored) && self.logged.insert(keyword.clone()) {
                tracing::debug!(
                    "{}:{number}: ssh config keyword {keyword:?} is ignored by rexec",
                    path.display()
                );
            }
            lines.push(Line { number, directive });
        }
        Ok(Some(ConfigFile {
            path: path.to_owned(),
            user_config,
            lines,
        }))
    }

    fn directive(
        &mut self,
        keyword: &str,
        rest: &str,
        user_config: bool,
        depth: usize,
    ) -> std::result::Result<Directive, Problem> {
        let args =
            || lex::arguments(rest).ok_or_else(|| Problem::from("unbalanced quotes".to_owned()));
        // One argument, as OpenSSH's parse_string and friends take it.
        let one = || -> std::result::Result<String, Problem> {
            let mut a = args()?.into_iter();
            let first = a
                .next()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| Problem::from(format!("{keyword}: missing argument")))?;
            if a.next().is_some() {
                return Err(format!("{keyword}: extra arguments at end of line").into());
            }
            Ok(first)
        };
        let flag = || -> std::result::Result<bool, Problem> {
            let v = one()?;
            match v.to_ascii_lowercase().as_str() {
                "yes" | "true" => Ok(true),
                "no" | "false" => Ok(false),
                _ => {
                    Err(format!("{keyword}: unsupported option {v:?} (expected yes or no)").into())
                }
            }
        };
        let set = |s: Setting| Ok(Directive::Set(s));
        match keyword {
            "host" => {
                let patterns = args()?;
                if patterns.is_empty() || patterns.iter().any(String::is_empty) {
                    return Err(format!("{keyword}: empty pattern").into());
                }
                Ok(Directive::Host(patterns))
            }
            "match" => Ok(Directive::Match(conditions(rest)?)),
            "include" => {
                let mut files = Vec::new();
                for pattern in args()? {
                    files.extend(self.include(&pattern, user_config, depth)?);
                }
                Ok(Directive::Include(files))
            }
            "hostname" => set(Setting::HostName(one()?)),
            "user" => set(Setting::User(one()?)),
            "port" => {
                let v = one()?;
                match v.parse::<u16>() {
                    Ok(p) if p > 0 => set(Setting::Port(p)),
                    _ => Err(format!("bad port {v:?}").into()),
                }
            }
            "identityfile" => set(Setting::IdentityFile(one()?)),
            "identitiesonly" => set(Setting::IdentitiesOnly(flag()?)),
            "identityagent" => set(Setting::IdentityAgent(one()?)),
            "certificatefile" => set(Setting::CertificateFile(one()?)),
            "proxyjump" => {
                // The rest of the line, up to a comment (OpenSSH's parse_jump).
                let value = rest.split('#').next().unwrap_or_default().trim_end();
                check_jump(value)?;
                set(Setting::ProxyJump(value.to_owned()))
            }
            "proxycommand" => set(Setting::ProxyCommand(rest.to_owned())),
            "userknownhostsfile" | "globalknownhostsfile" => {
                let files = args()?;
                if files.is_empty() || files.iter().any(String::is_empty) {
                    return Err(format!("{keyword}: empty argument").into());
                }
                if files.len() > 1 && files.iter().any(|f| f.eq_ignore_ascii_case("none")) {
                    return Err(format!("{keyword}: \"none\" must appear alone").into());
                }
                if keyword == "userknownhostsfile" {
                    set(Setting::UserKnownHostsFile(files))
                } else {
                    set(Setting::GlobalKnownHostsFile(files))
                }
            }
            "stricthostkeychecking" => {
                let v = one()?;
                let policy = match v.to_ascii_lowercase().as_str() {
                    "yes" | "true" => StrictHostKeyChecking::Yes,
                    "no" | "false" | "off" => StrictHostKeyChecking::No,
                    "ask" => StrictHostKeyChecking::Ask,
                    "accept-new" => StrictHostKeyChecking::AcceptNew,
                    _ => {
                        return Err(format!(
                            "{keyword}: unsupported option {v:?} (expected yes, accept-new, no, \
                             off or ask)"
                        )
                        .into())
                    }
                };
                set(Setting::StrictHostKeyChecking(policy))
            }
            "connecttimeout" => set(Setting::ConnectTimeout(time(keyword, &one()?)?)),
            "serveraliveinterval" => set(Setting::ServerAliveInterval(time(keyword, &one()?)?)),
            "serveralivecountmax" => {
                let v = one()?;
                match v.parse::<u32>() {
                    Ok(n) if i32::try_from(n).is_ok() => set(Setting::ServerAliveCountMax(n)),
                    _ => Err(format!("{keyword}: bad number {v:?}").into()),
                }
            }
            "passwordauthentication" => set(Setting::PasswordAuthentication(flag()?)),
            "kbdinteractiveauthentication"
            | "challengeresponseauthentication"
            | "skeyauthentication"
            | "tisauthentication" => set(Setting::KbdInteractiveAuthentication(flag()?)),
            "pubkeyauthentication" => {
                let v = one()?;
                match v.to_ascii_lowercase().as_str() {
                    "yes" | "true" | "unbound" | "host-bound" => {
                        set(Setting::PubkeyAuthentication(true))
                    }
                    "no" | "false" => set(Setting::PubkeyAuthentication(false)),
                    _ => Err(format!("{keyword}: unsupported option {v:?}").into()),
                }
            }
            "preferredauthentications" => set(Setting::PreferredAuthentications(one()?)),
            "hostkeyalias" => set(Setting::HostKeyAlias(one()?)),
            _ => Ok(Directive::Ignored),
        }
    }

    /// The files one `Include` pattern names, read (OpenSSH: relative to `~/.ssh` in a
    /// user's file, to `/etc/ssh` (the system directory) in the system's; `~` only in a user's file; a pattern
    /// that matches nothing is skipped).
    fn include(
        &mut self,
        pattern: &str,
        user_config: bool,
        depth: usize,
    ) -> std::result::Result<Vec<ConfigFile>, Problem> {
        if pattern.starts_with('~') && !user_config {
            return Err(format!("bad include path {pattern:?} (no ~ in the system file)").into());
        }
        let anchored = if pattern.starts_with('/') || pattern.starts_with('~') {
            pattern.to_owned()
        } else if user_config {
            format!("~/.ssh/{pattern}")
        } else {
            format!("{}/{pattern}", self.system_dir.display())
        };
        let full = tilde(&anchored, &home_dir()).map_err(Problem::from)?;
        if depth + 1 > MAX_DEPTH {
            return Err(format!(
                "include {full}: includes nest deeper than {MAX_DEPTH} (a file including itself?)"
            )
            .into());
        }
        let paths = glob::glob(&full)
            .map_err(|e| Problem::from(format!("include {full}: bad pattern: {e}")))?;
        let mut files = Vec::new();
        let mut matched = false;
        for path in paths {
            let path = path.map_err(|e| {
                let message = format!("cannot read ssh config {}", e.path().display());
                Problem::Error(
                    Error::new(ErrorKind::LocalIo, message).with_source(std::io::Error::from(e)),
                )
            })?;
            matched = true;
            if let Some(file) = self
                .file(&path, user_config, true, false, depth + 1)
                .map_err(Problem::Error)?
            {
                files.push(file);
            }
        }
        if !matched {
            tracing::debug!("include {full} matched no files");
        }
        Ok(files)
    }
}

/// What went wrong on a line: a message that gets the file and line, or a finished error.
pub(crate) enum Problem {
    Message(String),
    Error(Error),
}

impl From<String> for Problem {
    fn from(m: String) -> Problem {
        Problem::Message(m)
    }
}

/// OpenSSH's `convtime` (`90`, `1m30s`, `2h`...), or `None` for `none`.
fn time(keyword: &str, v: &str) -> std::result::Result<Option<u64>, Problem> {
    if v == "none" {
        return Ok(None);
    }
    let bad = || Problem::from(format!("{keyword}: invalid time value {v:?}"));
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut chars = v.chars().peekable();
    if v.is_empty() {
        return Err(bad());
    }
    while chars.peek().is_some() {
        digits.clear();
        while let Some(c) = chars.peek().copied().filter(char::is_ascii_digit) {
            digits.push(c);
            chars.next();
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let unit = match chars.next() {
            None | Some('s' | 'S') => 1,
            Some('m' | 'M') => 60,
            Some('h' | 'H') => 3600,
            Some('d' | 'D') => 86400,
            Some('w' | 'W') => 604_800,
            Some(_) => return Err(bad()),
        };
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .filter(|t| *t <= i32::MAX as u64)
            .ok_or_else(bad)?;
    }
    Ok(Some(total))
}

/// Checks a `ProxyJump` value: `none`, or comma-separated `[user@]host[:port]` or
/// `ssh://[user@]host[:port]` hops.
fn check_jump(value: &str) -> std::result::Result<(), Problem> {
    if value.eq_ignore_ascii_case("none") {
        return Ok(());
    }
    for hop in value.split(',') {
        let bare = hop.strip_prefix("ssh://").unwrap_or(hop);
        let bare = bare.strip_suffix('/').unwrap_or(bare);
        let host_port = bare.rsplit_once('@').map_or(bare, |(_, h)| h);
        let host = if let Some(v6) = host_port.strip_prefix('[') {
            let (inside, after) = v6
                .split_once(']')
                .ok_or_else(|| Problem::from(format!("invalid ProxyJump {value:?}")))?;
            check_port(after.strip_prefix(':'), value)?;
            inside
        } else {
            match host_port.split_once(':') {
                Some((h, p)) => {
                    check_port(Some(p), value)?;
                    h
                }
                None => host_port,
            }
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(format!("invalid ProxyJump {value:?}").into());
        }
    }
    Ok(())
}

fn check_port(port: Option<&str>, value: &str) -> std::result::Result<(), Problem> {
    match port {
        None => Ok(()),
        Some(p) if p.parse::<u16>().is_ok_and(|p| p > 0) => Ok(()),
        Some(_) => Err(format!("invalid ProxyJump {value:?} (bad port)").into()),
    }
}

/// The criteria of a `Match` line (OpenSSH 9.2's `match_cfg_line`, checked once here).
fn conditions(rest: &str) -> std::result::Result<Vec<Condition>, Problem> {
    let words = lex::match_words(rest)
        .ok_or_else(|| Problem::from("Match: unbalanced quotes".to_owned()))?;
    let mut words = words.into_iter().peekable();
    let mut conditions = Vec::new();
    while let Some(word) = words.next() {
        if word.starts_with('#') {
            break;
        }
        let (negated, name) = match word.strip_prefix('!') {
            Some(n) => (true, n.to_owned()),
            None => (false, word.clone()),
        };
        let name = name.to_ascii_lowercase();
        let criterion = match name.as_str() {
            "all" => {
                let others = conditions.iter().any(|c: &Condition| {
                    !matches!(c.criterion, Criterion::Canonical | Criterion::Final)
                });
                let more = words.peek().is_some_and(|w| !w.starts_with('#'));
                if others || more {
                    return Err(format!(
                        "Match: {word:?} cannot be combined with other Match attributes"
                    )
                    .into());
                }
                Criterion::All
            }
            "canonical" => Criterion::Canonical,
            "final" => Criterion::Final,
            "exec" | "host" | "originalhost" | "user" | "localuser" => {
                let arg = words
                    .next()
                    .filter(|a| !a.is_empty() && !a.starts_with('#'))
                    .ok_or_else(|| Problem::from(format!("Match: missing criteria for {name}")))?;
                match name.as_str() {
                    "exec" => Criterion::Exec(arg),
                    "host" => Criterion::Host(arg),
                    "originalhost" => Criterion::OriginalHost(arg),
                    "user" => Criterion::User(arg),
                    _ => Criterion::LocalUser(arg),
                }
            }
            other => {
                return Err(format!(
                    "Match: unsupported attribute {other:?} (OpenSSH 9.2 knows all, canonical, \
                     final, exec, host, originalhost, user and localuser)"
                )
                .into())
            }
        };
        conditions.push(Condition { negated, criterion });
    }
    if conditions.is_empty() {
        return Err("Match: one or more attributes required".to_owned().into());
    }
    Ok(conditions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(time("k", "90").ok().flatten(), Some(90));
        assert_eq!(time("k", "1m30s").ok().flatten(), Some(90));
        assert_eq!(time("k", "2H").ok().flatten(), Some(7200));
        assert!(matches!(time("k", "none"), Ok(None)));
        assert!(time("k", "1x").is_err());
        assert!(time("k", "m").is_err());
        assert!(time("k", "").is_err());
        assert!(time("k", "99999999999").is_err());
    }

    fn load(text: &str, user_config: bool) -> Result<Option<ConfigFile>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, text.replace("SELF", &path.display().to_string())).unwrap();
        Loader::default().file(&path, user_config, false, true, 0)
    }

    #[test]
    fn system_includes() {
        // Relative to the system directory (/etc/ssh for OpenSSH's file) in the system file.
        let sys = tempfile::tempdir().unwrap();
        std::fs::create_dir(sys.path().join("ssh_config.d")).unwrap();
        std::fs::write(sys.path().join("ssh_config.d/10-a.conf"), "Port 2\n").unwrap();
        let main = sys.path().join("ssh_config");
        std::fs::write(&main, "Include ssh_config.d/*.conf\n").unwrap();
        let file = Loader::new(sys.path().to_owned())
            .file(&main, false, false, true, 0)
            .unwrap()
            .unwrap();
        let Directive::Include(files) = &file.lines[0].directive else {
            panic!("not an include")
        };
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].path, sys.path().join("ssh_config.d/10-a.conf"));
        assert!(!files[0].user_config);
        // No ~ in the system file.
        let e = load("Include ~/x\n", false).unwrap_err();
        assert!(
            e.to_string().contains(":1: bad include path \"~/x\""),
            "{e}"
        );
    }

    #[test]
    fn include_cycles_stop() {
        let e = load("Include SELF\n", true).unwrap_err();
        assert!(
            e.to_string().contains("includes nest deeper than 16"),
            "{e}"
        );
    }

    #[test]
    fn jumps() {
        for ok in [
            "none",
            "b",
            "u@b:22",
            "a,b",
            "ssh://u@b:2",
            "[::1]:22",
            "u@[fe80::1]",
        ] {
            assert!(check_jump(ok).is_ok(), "{ok}");
        }
        for bad in ["b:0", "b:x", "", "a,,b", "[::1"] {
            assert!(check_jump(bad).is_err(), "{bad}");
        }
    }
}
