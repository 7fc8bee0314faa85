//! `rexec._rexec`: the native half of the `rexec` Python package.
//!
//! Python sees `multiprocessing.Pool`, `subprocess.run` and paramiko's `SFTPClient` verbs;
//! every call is a thin wrapper over the `rexec` crate's public API. The network work runs
//! on one tokio runtime shared by the process ([`runtime`]), driven with `block_on` from
//! the calling thread with the GIL released ([`wait`]), because rexec's runs are local
//! (not `Send`) streams.
//!
//! | module | owns |
//! | --- | --- |
//! | `blocking` | the runtime, waiting with the GIL released, Ctrl-C |
//! | `errors` | rexec errors as the Python exceptions of `rexec/_errors.py` |
//! | `results` | `HostResult`, `Report`, `Timings`, `TransferStats` |
//! | `session` | `Session`, `CompletedProcess`, `SFTPClient`, `SFTPAttributes` |
//! | `pool` | `Pool`, its result iterators and `AsyncResult` |

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod blocking;
mod errors;
mod pool;
mod results;
mod session;

use pyo3::prelude::*;

pub(crate) use blocking::{runtime, wait, Interrupt};

#[pymodule]
fn _rexec(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<session::Session>()?;
    m.add_class::<session::CompletedProcess>()?;
    m.add_class::<session::SftpClient>()?;
    m.add_class::<session::SftpAttributes>()?;
    m.add_class::<pool::Pool>()?;
    m.add_class::<pool::ResultIterator>()?;
    m.add_class::<pool::AsyncResult>()?;
    m.add_class::<results::HostResult>()?;
    m.add_class::<results::Report>()?;
    m.add_class::<results::Timings>()?;
    m.add_class::<results::TransferStats>()?;
    Ok(())
}
