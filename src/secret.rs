//! Secrets (passwords, passphrases): zeroized on drop, never shown by `Debug` or `Display`.

use std::fmt;

use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};

/// A password or passphrase. Its memory is wiped on drop; `Debug` prints `<redacted>`.
///
/// Secrets come from the caller, a named environment variable or a terminal prompt,
/// never from the command line.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret the caller already holds.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(Zeroizing::new(value.into()))
    }

    /// Reads the secret from the environment variable `name`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when the variable is unset or not UTF-8.
    pub fn from_env(name: &str) -> Result<Secret> {
        match std::env::var(name) {
            Ok(v) => Ok(Secret::new(v)),
            Err(_) => Err(Error::new(
                ErrorKind::InvalidInput,
                format!("environment variable {name} is not set (or not UTF-8)"),
            )),
        }
    }

    /// Asks for the secret on the controlling terminal (`/dev/tty`), without echo.
    ///
    /// Echo is turned off *before* the prompt is shown, so input that arrives the moment
    /// the prompt appears (a paste, a password manager's auto-type) is never echoed; the
    /// terminal is restored afterwards, also on error.
    ///
    /// # Errors
    /// [`ErrorKind::LocalIo`] when there is no terminal to ask on.
    pub fn prompt(prompt: &str) -> Result<Secret> {
        read_without_echo(prompt).map(Secret::new).map_err(|e| {
            Error::new(ErrorKind::LocalIo, "cannot read a secret from the terminal").with_source(e)
        })
    }

    /// The secret itself. Keep the borrow short; do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Terminal settings restored on drop.
struct EchoOff {
    fd: i32,
    saved: libc::termios,
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restoring settings read from the same open descriptor.
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved);
        }
    }
}

fn read_without_echo(prompt: &str) -> std::io::Result<String> {
    use std::io::{BufRead, Write};
    use std::os::unix::io::AsRawFd;

    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")?;
    let fd = tty.as_raw_fd();
    // SAFETY: an all-zero termios is a valid value to be overwritten by tcgetattr.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor and pointer to a local termios.
    if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut quiet = saved;
    quiet.c_lflag &= !libc::ECHO;
    quiet.c_lflag |= libc::ECHONL;
    // TCSANOW, not TCSAFLUSH: keep what was already typed.
    // SAFETY: valid descriptor and pointer to a local termios.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let _restore = EchoOff { fd, saved };
    let mut out = &tty;
    out.write_all(prompt.as_bytes())?;
    out.flush()?;
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::BufReader::new(&tty).read_line(&mut line)?;
    let trimmed = line.trim_end_matches(['\n', '\r']);
    Ok(trimmed.to_owned())
}
