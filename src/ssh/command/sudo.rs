//! Running a command as another user through `sudo`, without a pty (Ansible's `become`).
//!
//! The login shell runs `exec sudo -H -S -p PROMPT -u USER -- /bin/sh -c 'MARKER; LINE'`
//! (`-n` instead of `-S -p PROMPT` when no password was given). `PROMPT` is unique to the
//! command (`[sudo via rexec, key=NONCE] password:`), and `MARKER` is the process-id
//! `printf` of [`stop`](super::stop), printed by the shell that sudo started. So, on
//! stderr, before the marker only sudo speaks:
//!
//! - each time `PROMPT` appears, sudo waits for a password on stdin: the first time
//!   rexec sends it; a second prompt means sudo refused it, and rexec closes stdin
//!   instead of sending anything else;
//! - what sudo says there (prompts, a lecture, "Sorry, try again", warnings) is not the
//!   command's stderr: it is kept to explain a failure, and logged at debug level when
//!   the command runs;
//! - the marker means the command runs: only then is the command's own stdin sent, so a
//!   password is never sent to a sudo that does not ask for one (`NOPASSWD`, cached
//!   credentials), and the command's stdin is never read by sudo as a password;
//! - an exit without the marker means the command never ran ([`ErrorKind::Become`]),
//!   and sudo's words (prompts removed) say why.
//!
//! Stopping such a command needs the target user's rights (a plain login user cannot
//! signal root's processes; sudo relays `TERM` to its direct child, but not `KILL`, and
//! not to the rest of the group): the reaper script then runs through sudo the same way.

use std::fmt;

use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;
use crate::ssh::command::output::ExitStatus;
use crate::ssh::quote::shell_quote;

/// Who a command runs as: another user on the remote host, through `sudo` (Ansible's
/// `become`). The user is `root` unless another is named; the password, if any, is the
/// one sudo asks for (usually the login user's own).
///
/// ```
/// use rexec::{Become, Secret};
/// let root = Become::root();
/// let postgres = Become::user("postgres").password(Secret::new("hunter2"));
/// assert_eq!(postgres.user_name(), "postgres");
/// assert!(format!("{postgres:?}").contains("<redacted>"));
/// # let _ = root;
/// ```
#[derive(Clone)]
pub struct Become {
    user: String,
    password: Option<Secret>,
}

impl Become {
    /// Run as `root`.
    pub fn root() -> Become {
        Become::user("root")
    }

    /// Run as `user` (a name, or `#UID` as sudo takes it).
    pub fn user(user: impl Into<String>) -> Become {
        Become {
            user: user.into(),
            password: None,
        }
    }

    /// The password to give sudo when it asks for one. Without it, sudo runs with `-n`
    /// and a host that needs a password fails with [`ErrorKind::Become`].
    #[must_use]
    pub fn password(mut self, password: Secret) -> Become {
        self.password = Some(password);
        self
    }

    /// The target user.
    pub fn user_name(&self) -> &str {
        &self.user
    }

    /// Whether a password was given.
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    pub(crate) fn secret(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// The user name is one word sudo can take: not empty, no whitespace, control
    /// characters or NUL, not starting with `-`; the password is one line.
    pub(crate) fn check(&self) -> Result<()> {
        let bad = self.user.is_empty()
            || self.user.starts_with('-')
            || self
                .user
                .chars()
                .any(|c| c.is_whitespace() || c.is_control());
        if bad {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("invalid become user {:?}", self.user),
            ));
        }
        // sudo reads one line: whatever followed a line break would be left for the
        // command to read on its stdin.
        let broken = self
            .password
            .as_ref()
            .is_some_and(|p| p.expose().contains(['\n', '\r', '\0']));
        if broken {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "the become password contains a line break or NUL, which sudo cannot read",
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for Become {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Become")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The prompt sudo is asked to print for command `nonce`. No `%` (sudo expands `%`
/// escapes in prompts).
pub(super) fn prompt(nonce: &str) -> String {
    format!("[sudo via rexec, key={nonce}] password:")
}

/// The login shell's line that runs `inner` (shell code) through sudo as `become`.
pub(super) fn wrap(inner: &str, become_: &Become, nonce: &str) -> String {
    let auth = match become_.password {
        Some(_) => format!("-S -p {}", shell_quote(&prompt(nonce))),
        None => "-n".to_owned(),
    };
    format!(
        "exec sudo -H {auth} -u {} -- /bin/sh -c {}",
        shell_quote(&become_.user),
        shell_quote(inner)
    )
}

/// Most bytes of sudo's own stderr kept to explain a failure.
const KEEP: usize = 4096;

/// Watches stderr before the process-id marker: removes each `PROMPT`, counts them, and
/// keeps the start of what sudo said. At most the length of the prompt is held back while
/// a partial prompt could be forming.
pub(super) struct PromptWatch {
    prompt: Vec<u8>,
    pending: Vec<u8>,
    prompts: usize,
    said: Vec<u8>,
}

impl PromptWatch {
    pub(super) fn new(nonce: &str) -> PromptWatch {
        PromptWatch {
            prompt: prompt(nonce).into_bytes(),
            pending: Vec::new(),
            prompts: 0,
            said: Vec::new(),
        }
    }

    /// What sudo said (prompts removed), at most its first 4 KiB.
    pub(super) fn said(&self) -> &[u8] {
        &self.said
    }

    /// How many prompts have been seen.
    pub(super) fn prompts(&self) -> usize {
        self.prompts
    }

    /// Feeds a chunk of stderr; returns it without the prompts.
    pub(super) fn push(&mut self, data: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(data);
        let buf = std::mem::take(&mut self.pending);
        let mut out = Vec::with_capacity(buf.len());
        let mut i = 0;
        let first = self.prompt.first().copied().unwrap_or(b'[');
        while let Some(rest) = buf.get(i..) {
            let Some(at) = rest.iter().position(|&b| b == first) else {
                out.extend_from_slice(rest);
                break;
            };
            out.extend_from_slice(rest.get(..at).unwrap_or_default());
            let candidate = rest.get(at..).unwrap_or_default();
            if candidate.starts_with(&self.prompt) {
                self.prompts += 1;
                i += at + self.prompt.len();
            } else if self.prompt.starts_with(candidate) {
                self.pending = candidate.to_vec();
                break;
            } else {
                out.push(first);
                i += at + 1;
            }
        }
        self.keep(&out);
        out
    }

    /// The end of sudo's part of stderr: whatever was held back.
    pub(super) fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.pending);
        self.keep(&rest);
        rest
    }

    fn keep(&mut self, bytes: &[u8]) {
        let room = KEEP.saturating_sub(self.said.len());
        self.said
            .extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
    }

    /// Why sudo did not run the command, from what it said and how it ended.
    pub(super) fn failure(&self, status: &ExitStatus, become_: &Become) -> String {
        let said = String::from_utf8_lossy(&self.said);
        let lines: Vec<&str> = said
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
        let user = become_.user_name();
        if self.prompts >= 2 || has("incorrect password attempt") {
            return "sudo: incorrect password; the command did not run".to_owned();
        }
        if has("a password is required") || (self.prompts == 1 && !become_.has_password()) {
            return "sudo: a password is required and none was given; the command did not run"
                .to_owned();
        }
        if let Some(line) = lines
            .iter()
            .find(|l| l.contains("is not in the sudoers file"))
        {
            let line = line.trim_start_matches("sudo: ").trim_end_matches('.');
            return format!("sudo: {line}; the command did not run");
        }
        if has("is not allowed to execute") {
            return format!(
                "sudo: the login user is not allowed to run /bin/sh as {user} (sudoers); the \
                 command did not run"
            );
        }
        if has("must have a tty") {
            return "sudo: this host's sudoers requires a tty (requiretty) and rexec runs sudo \
                    without one; the command did not run"
                .to_owned();
        }
        match status {
            ExitStatus::Exited(127) => {
                return "sudo is not installed (or not on the login shell's PATH); the command \
                        did not run"
                    .to_owned()
            }
            ExitStatus::Exited(126) => {
                return "sudo cannot be executed by the login user; the command did not run"
                    .to_owned()
            }
            _ => {}
        }
        match lines.iter().find(|l| l.starts_with("sudo:")) {
            Some(line) => {
                let short: String = line.chars().take(300).collect();
                format!("{short}; the command did not run")
            }
            None => format!("sudo {status} before the command started"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_removed_and_counted_wherever_the_chunks_split() {
        let nonce = "00ff00ff00ff00ff";
        let p = prompt(nonce);
        let stream = format!("[x] lecture\n{p}Sorry, try again.\n{p}\nsudo: no password\n[");
        let bytes = stream.as_bytes();
        for split in 0..bytes.len() {
            let mut w = PromptWatch::new(nonce);
            let mut out = w.push(&bytes[..split]);
            out.extend(w.push(&bytes[split..]));
            out.extend(w.finish());
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "[x] lecture\nSorry, try again.\n\nsudo: no password\n[",
                "{split}"
            );
            assert_eq!(w.prompts(), 2, "{split}");
        }
    }

    #[test]
    fn a_prompt_is_counted_as_soon_as_it_is_whole() {
        let nonce = "0123456789abcdef";
        let mut w = PromptWatch::new(nonce);
        assert!(w.push(prompt(nonce).as_bytes()).is_empty());
        assert_eq!(w.prompts(), 1);
    }

    #[test]
    fn the_wrapped_line_quotes_user_prompt_and_command() {
        let b = Become::user("o'brien").password(Secret::new("pw"));
        let line = wrap("echo 'hi'", &b, "abc");
        assert_eq!(
            line,
            "exec sudo -H -S -p '[sudo via rexec, key=abc] password:' -u 'o'\\''brien' -- \
             /bin/sh -c 'echo '\\''hi'\\'''"
        );
        assert!(!line.contains("pw"));
        let line = wrap("id", &Become::root(), "abc");
        assert_eq!(line, "exec sudo -H -n -u root -- /bin/sh -c id");
    }

    #[test]
    fn a_password_of_more_than_one_line_is_refused_without_showing_it() {
        for bad in ["one\ntwo", "cr\r", "nul\0"] {
            let e = Become::root()
                .password(Secret::new(bad))
                .check()
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(!format!("{e:#}").contains(bad));
        }
        assert!(Become::root()
            .password(Secret::new("ok pw"))
            .check()
            .is_ok());
        assert!(Become::user("-x").check().is_err());
    }

    #[test]
    fn failures_are_named() {
        let nonce = "0123456789abcdef";
        let with_pw = Become::root().password(Secret::new("x"));
        let said = |text: &str| {
            let mut w = PromptWatch::new(nonce);
            w.push(text.replace("P:", &prompt(nonce)).as_bytes());
            w
        };
        let one = ExitStatus::Exited(1);
        let w = said("P:Sorry, try again.\nP:\nsudo: no password was provided\n");
        assert!(w.failure(&one, &with_pw).contains("incorrect password"));
        let w = said("sudo: a password is required\n");
        assert!(w
            .failure(&one, &Become::root())
            .contains("a password is required"));
        let w = said("P:alice is not in the sudoers file.\n");
        assert_eq!(
            w.failure(&one, &with_pw),
            "sudo: alice is not in the sudoers file; the command did not run"
        );
        let w = said("sh: 1: exec: sudo: not found\n");
        assert!(w
            .failure(&ExitStatus::Exited(127), &with_pw)
            .starts_with("sudo is not installed"));
        let w = said("sudo: unknown user bob\nsudo: error initializing audit plugin\n");
        assert_eq!(
            w.failure(&one, &Become::user("bob")),
            "sudo: unknown user bob; the command did not run"
        );
    }
}
