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
mod signer;

pub use auth::{Agent, AuthMethod, Credentials, Identity, UserCertificate};
pub use command::{Become, Command, DataCallback, ExitStatus, Output, OutputStream};
pub use jump::{JumpHost, Jumps};
pub use known_hosts::{HostKeyPolicy, HostKeyStatus, KeyLocation, KnownHosts};
pub use proxy_command::check_proxy_command;
pub use session::{ConnectOptions, Session};
pub use sftp::{
    DirEntry, ProgressCallback, RemoteKind, RemoteMetadata, Sftp, TransferOptions, TransferStats,
};
