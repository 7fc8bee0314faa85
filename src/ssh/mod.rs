//! The SSH layer: [`Session`] (`session.rs`: connect, deadlines) with what it connects
//! with ([`ConnectOptions`], `tcp.rs`, `algorithms.rs`, the host key check in
//! `handler.rs`, authentication in `login.rs`), [`Command`] with its [`Output`] and
//! [`ExitStatus`], known_hosts handling and credentials.

mod algorithms;
pub mod auth;
pub mod command;
mod connect_options;
mod diagnosis;
mod handler;
pub mod jump;
mod key_file;
pub mod known_hosts;
mod login;
mod proxy_command;
pub mod quote;
pub mod session;
pub mod sftp;
mod signer;
mod tcp;

pub use auth::{Agent, AuthMethod, Credentials, Identity, UserCertificate};
pub use command::{Become, Command, DataCallback, ExitStatus, Output, OutputStream};
pub use connect_options::ConnectOptions;
pub use jump::{JumpHost, Jumps};
pub use known_hosts::{HostKeyPolicy, HostKeyStatus, KeyLocation, KnownHosts};
pub use proxy_command::check_proxy_command;
pub use session::Session;
pub use sftp::{
    DirEntry, ProgressCallback, RemoteKind, RemoteMetadata, Sftp, TransferOptions, TransferStats,
};
