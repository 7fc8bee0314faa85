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

    /// Asks for the secret on the controlling terminal, without echo.
    ///
    /// # Errors
    /// [`ErrorKind::LocalIo`] when there is no terminal to ask on.
    pub fn prompt(prompt: &str) -> Result<Secret> {
        rpassword::prompt_password(prompt)
            .map(Secret::new)
            .map_err(|e| {
                Error::new(ErrorKind::LocalIo, "cannot read a secret from the terminal")
                    .with_source(e)
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
