//! # rexec
//!
//! Run commands and move files on many machines over SSH.
//!
//! Many hosts: an [`Inventory`] selects [`Host`]s, a [`Pool`] runs on them and every run
//! returns a [`Report`], one [`HostResult`] per host in order.
//!
//! ```no_run
//! use rexec::{Inventory, Pool};
//!
//! # async fn f() -> rexec::Result<()> {
//! let inv = Inventory::load("hosts.toml")?;
//! let pool = Pool::new(&inv.select("web:!web03")?).concurrency(50);
//! let report = pool.run("systemctl is-active nginx").await;
//! for r in report.failed() { eprintln!("{}: {}", r.host(), r.outcome()); }
//! pool.put("app.tar.gz", "/srv/app/").await?.check()?;
//! std::process::exit(report.exit_code().into());
//! # }
//! ```
//!
//! One host: [`ConnectOptions`] describe it, [`Session::connect`] connects with a
//! deadline per phase, checks the host key against known_hosts ([`HostKeyPolicy`]) and
//! logs in with [`Credentials`]; [`Session::command`] runs a program with quoted
//! arguments and [`Session::raw_command`] a shell command line, both returning an
//! [`Output`].
//!
//! ```no_run
//! use rexec::{ConnectOptions, Credentials, Session};
//!
//! # async fn f() -> rexec::Result<()> {
//! let creds = Credentials::new().default_identities();
//! let options = ConnectOptions::new("db1").user("deploy").credentials(creds);
//! let session = Session::connect(&options).await?;
//! let out = session.raw_command("df -h").output().await?.check()?;
//! print!("{}", out.stdout_lossy());
//! # Ok(()) }
//! ```
//!
//! [`Command::sudo`] runs a command as another user through `sudo` ([`Become`]), and
//! [`Session::sudo_put`] / [`Session::sudo_get`] move files as that user.
//!
//! Settings are consuming builders (they take and return `self`: [`Pool`],
//! [`ConnectOptions`], [`Credentials`], [`TransferOptions`], [`TargetBuilder`],
//! [`Become`], the run builders); [`Command`] alone takes `&mut self`, as
//! `std::process::Command` does, because it is built and then run by reference.
//!
//! Errors are one type, [`Error`], with a [`ErrorKind`] for programs. A command that exits
//! non-zero is not an error: see [`Output::check`] and [`Report::check`].
//!
//! ## Module map
//!
//! Every module is private; the API is what this root re-exports. Arrows are "uses".
//!
//! | module | what lives there | uses |
//! | --- | --- | --- |
//! | `error` | [`Error`], [`ErrorKind`], [`Phase`]: one error type for everything | - |
//! | `secret` | [`Secret`]: passwords and passphrases, zeroed, never printed | - |
//! | `template` | [`Template`]: `{{name}}` placeholders quoted for their shell context | `error` |
//! | `inventory` | [`Inventory`], [`Host`], [`HostSettings`]: `hosts.toml`, `-H` lists (`host_list`), patterns (`pattern`), ranges (`range`), durations (`duration`), [`Shard`] | `error`, `glob` |
//! | `ssh_config` | [`SshConfig`]: OpenSSH client configuration read and applied to hosts | `inventory`, `error` |
//! | `ssh` | one host: [`Session`] (`session`: connect, deadlines), [`ConnectOptions`] (`connect_options`), `tcp` (socket, `TCP_QUICKACK`), `algorithms` (kex and cipher order), `handler` (russh handler, host key verdict), `login` (the authentication flow), `auth` and `key_file`/`signer` (credentials, agent, certificates), `known_hosts`, `jump` and `proxy_command` (reaching a host), `command` (exec, output, stop, sudo; the `Local` session transport stays in `session`), `sftp` (upload, download, tree walk, sudo transfers), `diagnosis` (error text) | `error`, `secret` |
//! | `local` | the local transport's processes (`sh -c` in a process group, stop, output): what a [`Session::local`] command runs; uses `ssh::command`'s builder, output collector and stop plan | `ssh`, `error` |
//! | `pool` | many hosts: [`Pool`] and its runs (`run`: [`CommandRun`], [`MapRun`], [`TransferRun`]), `target` ([`TargetBuilder`]: hosts to connection settings), `rollout` (the engine: window, batches, budget), `transfer` (`put`/`get` per host), `report` ([`Report`]), `outcome` ([`Outcome`], [`RunExit`]) | `ssh`, `inventory`, `ssh_config`, `template` |
//!
//! The `rexec` binary (`src/cli/`) is a client of this API only (plus the
//! `#[doc(hidden)]` `__cli` helpers, which are not part of it).

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
mod local;
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
    AsyncResult, Batches, CommandLine, CommandRun, Event, FailureBudget, HostCount, HostResult,
    MapRun, Outcome, Pool, Report, RunExit, Sessions, Tally, Target, TargetBuilder, Timings,
    TransferRun,
};
pub use secret::Secret;
pub use ssh::jump::MAX_HOPS;
pub use ssh::quote::shell_quote;
pub use ssh::{
    check_proxy_command, Agent, AuthMethod, Become, Command, ConnectOptions, Credentials,
    DataCallback, DirEntry, ExitStatus, HostKeyPolicy, HostKeyStatus, Identity, JumpHost, Jumps,
    KeyLocation, KnownHosts, Output, OutputStream, ProgressCallback, RemoteKind, RemoteMetadata,
    Session, Sftp, TransferOptions, TransferStats, UserCertificate,
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
