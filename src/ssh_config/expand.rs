//! `~`, `%` tokens and `${VAR}` in ssh_config values, and OpenSSH's pattern lists.

use std::path::PathBuf;

use crate::glob::glob_match;

/// The values of OpenSSH's `%` tokens for one host (ssh_config(5), TOKENS).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Tokens {
    /// `%h`: the remote host name after `HostName` (lowercased unless an address).
    pub host: String,
    /// `%n`: the host as given (the inventory address or name).
    pub original: String,
    /// `%p`
    pub port: u16,
    /// `%r`
    pub remote_user: String,
    /// `%u`
    pub local_user: String,
    /// `%d`
    pub home: String,
    /// `%i`
    pub uid: u32,
    /// `%k`: `HostKeyAlias`, or the host as given.
    pub key_alias: String,
    /// `%l`: this machine's name.
    pub local_host: String,
}

impl Tokens {
    /// `%L`: this machine's name up to the first dot.
    fn short_local_host(&self) -> &str {
        self.local_host
            .split('.')
            .next()
            .unwrap_or(&self.local_host)
    }

    /// `%C`: the SHA-1 of `%l%h%p%r`, in hex (OpenSSH 9.2's `ssh_connection_hash`).
    fn connection_hash(&self) -> String {
        use sha1::{Digest, Sha1};
        let mut hasher = Sha1::new();
        hasher.update(self.local_host.as_bytes());
        hasher.update(self.host.as_bytes());
        hasher.update(self.port.to_string().as_bytes());
        hasher.update(self.remote_user.as_bytes());
        data_encoding::HEXLOWER.encode(&hasher.finalize())
    }

    /// The value of `%c` among the tokens `allowed`.
    fn value(&self, c: char, allowed: &str) -> Option<String> {
        if !allowed.contains(c) {
            return None;
        }
        Some(match c {
            'C' => self.connection_hash(),
            'L' => self.short_local_host().to_owned(),
            'd' => self.home.clone(),
            'h' => self.host.clone(),
            'i' => self.uid.to_string(),
            'k' => self.key_alias.clone(),
            'l' => self.local_host.clone(),
            'n' => self.original.clone(),
            'p' => self.port.to_string(),
            'r' => self.remote_user.clone(),
            'u' => self.local_user.clone(),
            _ => return None,
        })
    }
}

/// The tokens of `IdentityFile`, `CertificateFile`, `IdentityAgent`, `UserKnownHostsFile`
/// and `Match exec`.
pub(crate) const PATH_TOKENS: &str = "CLdhiklnpru";
/// The tokens of `ProxyCommand` and `ProxyJump`.
pub(crate) const PROXY_TOKENS: &str = "hnpr";

/// `text` with `%%` and the `allowed` tokens replaced, and `${VAR}` from the environment
/// when `env` is set.
///
/// # Errors
/// A message naming an unknown token, a `%` at the end, or an environment variable that is
/// not set.
pub(crate) fn expand(
    text: &str,
    tokens: &Tokens,
    allowed: &str,
    env: bool,
) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if env && c == '$' && chars.peek() == Some(&'{') {
            chars.next();
            let mut name = String::new();
            loop {
                match chars.next() {
                    Some('}') => break,
                    Some(n) => name.push(n),
                    None => return Err(format!("unterminated ${{{name} in {text:?}")),
                }
            }
            match std::env::var(&name) {
                Ok(v) => out.push_str(&v),
                Err(_) => return Err(format!("environment variable {name} is not set")),
            }
            continue;
        }
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(t) => match tokens.value(t, allowed) {
                Some(v) => out.push_str(&v),
                None => return Err(format!("unknown token %{t} in {text:?}")),
            },
            None => return Err(format!("{text:?} ends with a lone %")),
        }
    }
    Ok(out)
}

/// `~` and `~/...` in the home directory, `~user/...` in that user's (OpenSSH's
/// `tilde_expand_filename`).
///
/// # Errors
/// A message when the user is unknown.
pub(crate) fn tilde(text: &str, home: &str) -> std::result::Result<String, String> {
    let Some(rest) = text.strip_prefix('~') else {
        return Ok(text.to_owned());
    };
    let (user, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let dir = if user.is_empty() {
        home.to_owned()
    } else {
        home_of(user).ok_or_else(|| format!("no such user {user:?} in {text:?}"))?
    };
    let joined = format!("{}{path}", dir.trim_end_matches('/'));
    Ok(if joined.is_empty() {
        "/".to_owned()
    } else {
        joined
    })
}

/// The home directory of `user` from the password database.
fn home_of(user: &str) -> Option<String> {
    let name = std::ffi::CString::new(user).ok()?;
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; the name is copied out of `buf` before
    // it is dropped.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || pwd.pw_dir.is_null() {
        return None;
    }
    // SAFETY: pw_dir points into `buf`, NUL-terminated by getpwnam_r.
    let dir = unsafe { std::ffi::CStr::from_ptr(pwd.pw_dir) };
    Some(dir.to_string_lossy().into_owned())
}

/// This machine's name, the local user's name and uid: looked up once per process.
pub(crate) fn local_facts() -> &'static (String, String, u32) {
    static FACTS: std::sync::OnceLock<(String, String, u32)> = std::sync::OnceLock::new();
    FACTS.get_or_init(|| {
        let (user, uid) = local_user();
        (local_host_name(), user, uid)
    })
}

/// This machine's name (`gethostname`).
fn local_host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or
    // truncates (the last byte stays 0).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(buf.get(..end).unwrap_or_default()).into_owned()
}

/// The local user's name and uid from the password database (OpenSSH's `%u`,
/// `Match localuser`), falling back to `$USER`.
fn local_user() -> (String, u32) {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: as in `home_of`.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc == 0 && !result.is_null() && !pwd.pw_name.is_null() {
        // SAFETY: pw_name points into `buf`, NUL-terminated.
        let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
        return (name.to_string_lossy().into_owned(), uid);
    }
    (std::env::var("USER").unwrap_or_default(), uid)
}

/// The home directory `~` and `%d` stand for: `$HOME`, as everywhere in rexec (OpenSSH
/// reads the password database instead).
pub(crate) fn home_dir() -> String {
    home::home_dir()
        .unwrap_or_else(|| PathBuf::from("/"))
        .display()
        .to_string()
}

/// OpenSSH's `match_pattern_list`: comma-separated patterns, each possibly negated with
/// `!`. `Some(true)`: a positive pattern matched and no negated one; `Some(false)`: no
/// pattern matched; `None`: a negated pattern matched. With `lower`, the patterns are
/// lowercased first.
pub(crate) fn pattern_list(text: &str, list: &str, lower: bool) -> Option<bool> {
    let mut positive = false;
    for sub in list.split(',') {
        let (negated, sub) = match sub.strip_prefix('!') {
            Some(s) => (true, s),
            None => (false, sub),
        };
        let sub = if lower {
            sub.to_ascii_lowercase()
        } else {
            sub.to_owned()
        };
        if glob_match(&sub, text) {
            if negated {
                return None;
            }
            positive = true;
        }
    }
    Some(positive)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens {
            host: "h.example".into(),
            original: "alias".into(),
            port: 2222,
            remote_user: "deploy".into(),
            local_user: "me".into(),
            home: "/home/me".into(),
            uid: 1000,
            key_alias: "alias".into(),
            local_host: "box.local".into(),
        }
    }

    #[test]
    fn tokens_expand() {
        let t = tokens();
        assert_eq!(
            expand("%d/%h-%p-%r-%u-%n-%%-%L-%l-%i-%k", &t, PATH_TOKENS, false).unwrap(),
            "/home/me/h.example-2222-deploy-me-alias-%-box-box.local-1000-alias"
        );
        assert_eq!(
            expand("%C", &t, PATH_TOKENS, false).unwrap().len(),
            40,
            "sha1 hex"
        );
        assert!(expand("%d", &t, PROXY_TOKENS, false).is_err());
        assert!(expand("%z", &t, PATH_TOKENS, false).is_err());
        assert!(expand("x%", &t, PATH_TOKENS, false).is_err());
        std::env::set_var("REXEC_TEST_EXPAND", "v");
        assert_eq!(
            expand("${REXEC_TEST_EXPAND}/x", &t, PATH_TOKENS, true).unwrap(),
            "v/x"
        );
        assert_eq!(
            expand("${REXEC_TEST_EXPAND}", &t, PATH_TOKENS, false).unwrap(),
            "${REXEC_TEST_EXPAND}"
        );
        assert!(expand("${REXEC_TEST_UNSET_VAR}", &t, PATH_TOKENS, true).is_err());
    }

    #[test]
    fn tildes() {
        assert_eq!(tilde("~/x", "/home/me").unwrap(), "/home/me/x");
        assert_eq!(tilde("~", "/home/me").unwrap(), "/home/me");
        assert_eq!(tilde("/a/~", "/home/me").unwrap(), "/a/~");
        assert_eq!(tilde("~root/x", "/home/me").unwrap(), "/root/x");
        assert!(tilde("~no-such-user-here/x", "/h").is_err());
    }

    #[test]
    fn lists() {
        assert_eq!(pattern_list("web1", "web*,db*", false), Some(true));
        assert_eq!(pattern_list("web1", "db*", false), Some(false));
        assert_eq!(pattern_list("web1", "*,!web1", false), None);
        assert_eq!(pattern_list("web1", "WEB1", true), Some(true));
        assert_eq!(pattern_list("web1", "WEB1", false), Some(false));
    }
}
