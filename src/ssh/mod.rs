//! The SSH layer: [`Session`] (connect, host keys, authentication), [`Command`] with its
//! [`Output`] and [`ExitStatus`], known_hosts handling and credentials.

pub mod auth;
pub mod command;
mod diagnosis;
pub mod jump;
mod key_file;
pub mod known_hosts;
mod proxy_command;
pub mod quote;
pub mod session;
pub mod sftp;

pub use auth::{Agent, Credentials, Identity};
pub use command::{Command, DataCallback, ExitStatus, Output, Stream};
pub use jump::{JumpHost, Jumps};

/// Checks the `%` tokens of a proxy command (see
/// [`ConnectOptions::proxy_command`]); `none` is fine.
///
/// # Errors
/// [`crate::ErrorKind::InvalidInput`] naming the unknown token.
pub fn check_proxy_command(command: &str) -> crate::Result<()> {
    if command.trim().eq_ignore_ascii_case("none") {
        return Ok(());
    }
    proxy_command::expand_tokens(command, "h", 22, "r", "n").map(|_| ())
}
pub use known_hosts::{HostKeyPolicy, HostKeyStatus, KeyLocation, KnownHosts};
pub use session::{ConnectOptions, Session};
pub use sftp::{
    DirEntry, ProgressCallback, RemoteKind, RemoteMetadata, Sftp, TransferOptions, TransferStats,
};
