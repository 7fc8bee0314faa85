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

pub mod error;
mod glob;
pub mod inventory;
pub mod pool;
pub mod secret;
pub mod ssh;
pub mod ssh_config;
mod template;

pub use error::{Error, ErrorKind, Phase, Result};
pub use inventory::{Host, HostSettings, Inventory, Origin, Transport};
pub use pool::{
    Batches, CommandLine, CommandRun, Event, FailureBudget, HostCount, HostResult, MapRun, Outcome,
    Pool, Report, RunExit, Sessions, Target, TargetBuilder, Timings, TransferRun,
};
pub use secret::Secret;
pub use ssh::quote::shell_quote;
pub use ssh::{
    Agent, AuthMethod, Become, Command, ConnectOptions, Credentials, DataCallback, ExitStatus,
    HostKeyPolicy, HostKeyStatus, Identity, JumpHost, Jumps, KeyLocation, KnownHosts, Output,
    Session, Sftp, Stream, TransferOptions, TransferStats, UserCertificate,
};
pub use template::Template;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
