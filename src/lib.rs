//! # rexec
//!
//! Run commands and move files on many machines over SSH.
//!
//! The SSH layer: [`ConnectOptions`] describe one host, [`Session::connect`] connects with a
//! deadline per phase, checks the host key against known_hosts ([`HostKeyPolicy`]) and logs
//! in with [`Credentials`]; [`Session::command`] runs a command and returns its [`Output`].
//!
//! ```no_run
//! use rexec::{ConnectOptions, Credentials, Session};
//!
//! # async fn f() -> rexec::Result<()> {
//! let mut creds = Credentials::new();
//! creds.default_identities();
//! let options = ConnectOptions::new("db1").user("deploy").credentials(creds);
//! let session = Session::connect(&options).await?;
//! let out = session.command("df -h").output().await?.check()?;
//! print!("{}", out.stdout_lossy());
//! # Ok(()) }
//! ```
//!
//! [`Command::sudo`] runs a command as another user through `sudo` ([`Become`]), and
//! [`Session::sudo_put`] / [`Session::sudo_get`] move files as that user.
//!
//! Errors are one type, [`Error`], with a [`ErrorKind`] for programs. A command that exits
//! non-zero is not an error: see [`Output::check`].

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]
#![warn(missing_docs)]

mod error;
mod glob;
mod inventory;
mod pool;
mod secret;
mod ssh;
mod ssh_config;
mod template;

pub use error::{Error, ErrorKind, Phase, Result};
pub use inventory::{
    select, Host, HostSettings, Inventory, Origin, Shard, Transport, MAX_DURATION, MAX_HOSTS,
    MAX_NAME_LENGTH,
};
pub use pool::{
    Batches, CommandLine, CommandRun, Event, FailureBudget, HostCount, HostResult, MapRun, Outcome,
    Pool, Report, RunExit, Sessions, Target, TargetBuilder, Timings, TransferRun,
};
pub use secret::Secret;
pub use ssh::quote::shell_quote;
pub use ssh::{
    check_proxy_command, Agent, AuthMethod, Become, Command, ConnectOptions, Credentials,
    DataCallback, DirEntry, ExitStatus, HostKeyPolicy, HostKeyStatus, Identity, JumpHost, Jumps,
    KeyLocation, KnownHosts, Output, ProgressCallback, RemoteKind, RemoteMetadata, Session, Sftp,
    Stream, TransferOptions, TransferStats, UserCertificate,
};
pub use ssh_config::{
    ConfigLine, Query as SshConfigQuery, ResolvedConfig, SshConfig, StrictHostKeyChecking,
    Value as ConfigValue,
};
pub use template::Template;

/// Helpers the `rexec` binary shares with the library. Not part of the API: no semver
/// promise, may change in any release.
#[doc(hidden)]
pub mod __cli {
    pub use crate::inventory::parse_duration;
    pub use crate::inventory::range::{expand, fold};
}

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
