"""rexec: run commands and move files on many machines over SSH.

The verbs are those of ``multiprocessing.Pool`` (:class:`Pool`), ``subprocess.run``
(:meth:`Session.run`) and paramiko's ``SFTPClient`` (:meth:`Session.sftp`); the work is
done by rexec's Rust engine, with the GIL released while it waits.
"""

from ._errors import *  # noqa: F401,F403
from ._errors import __all__ as _error_names
from ._rexec import (
    AsyncResult,
    CompletedProcess,
    HostResult,
    Pool,
    Report,
    ResultIterator,
    Session,
    SFTPAttributes,
    SFTPClient,
    Timings,
    TransferStats,
    __version__,
)

__all__ = [
    "AsyncResult",
    "CompletedProcess",
    "HostResult",
    "Pool",
    "Report",
    "ResultIterator",
    "Session",
    "SFTPAttributes",
    "SFTPClient",
    "Timings",
    "TransferStats",
    "__version__",
    *_error_names,
]
