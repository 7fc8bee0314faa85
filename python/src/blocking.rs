//! The one tokio runtime of the process, and waiting on it from Python: the GIL is
//! released while rexec works, and Python's signal handlers run every 100 ms so that
//! Ctrl-C reaches a blocked call.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use tokio_util::sync::CancellationToken;

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

/// How often a blocked call lets Python handle signals (Ctrl-C).
const SIGNAL_POLL: Duration = Duration::from_millis(100);

/// The runtime every call of the package runs on (made on first use).
pub(crate) fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rexec-py")
        .build()
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start the tokio runtime: {e}")))?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// What a wait does when a signal handler raises (Ctrl-C: `KeyboardInterrupt`).
#[derive(Clone, Copy)]
pub(crate) enum Interrupt<'a> {
    /// Cancel this token, keep waiting until the work ends (every host gets its
    /// result, remote commands are stopped), then report the exception.
    CancelAndFinish(&'a CancellationToken),
    /// Drop the work where it stands and report the exception at once.
    Abandon,
}

/// Runs the future that `work` makes on the runtime, from this thread, with the GIL
/// released. Returns its value (if it finished) and the exception a signal handler raised
/// meanwhile, if any.
pub(crate) fn wait<T, F, Fut>(
    py: Python<'_>,
    interrupt: Interrupt<'_>,
    work: F,
) -> PyResult<(Option<T>, Option<PyErr>)>
where
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = T>,
    T: Send,
{
    let rt = runtime()?;
    Ok(py.detach(|| {
        rt.block_on(async move {
            let work = work();
            tokio::pin!(work);
            let mut tick = tokio::time::interval(SIGNAL_POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut raised: Option<PyErr> = None;
            loop {
                tokio::select! {
                    value = &mut work => return (Some(value), raised),
                    _ = tick.tick(), if raised.is_none() => {
                        if let Err(e) = Python::attach(|py| py.check_signals()) {
                            match interrupt {
                                Interrupt::CancelAndFinish(token) => {
                                    token.cancel();
                                    raised = Some(e);
                                }
                                Interrupt::Abandon => return (None, Some(e)),
                            }
                        }
                    }
                }
            }
        })
    }))
}
