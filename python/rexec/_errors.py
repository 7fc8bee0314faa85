"""The exceptions of rexec: one per error kind of the Rust library.

Every exception carries ``kind`` (``"timeout"``, ``"auth"``...), ``host`` (or None),
``phase`` (for timeouts: ``"connect"``, ``"handshake"``, ``"auth"``, ``"command"``) and,
for a command that timed out or was interrupted, the output so far in ``stdout`` and
``stderr``. The message names the host first, as the ``rexec`` command prints it.
"""

import subprocess

__all__ = [
    "Error",
    "InvalidInput",
    "ResolveError",
    "ConnectError",
    "Timeout",
    "HostKeyError",
    "HostKeyUnknown",
    "HostKeyChanged",
    "AuthenticationError",
    "KeyFileError",
    "AgentError",
    "ProtocolError",
    "ChannelError",
    "Disconnected",
    "LocalIOError",
    "CommandFailed",
    "Interrupted",
    "NotStarted",
    "NotFound",
    "PermissionDenied",
    "NoSpace",
    "SFTPError",
    "BecomeError",
]


class Error(Exception):
    """Base class of every rexec exception."""

    kind = None
    host = None
    phase = None
    stdout = None
    stderr = None

    def __init__(self, message):
        super().__init__(message)
        self.message = message

    def __str__(self):
        return self.message


class InvalidInput(Error, ValueError):
    """An argument or a configuration value asked for something impossible."""


class ResolveError(Error, ConnectionError):
    """The host name could not be resolved."""


class ConnectError(Error, ConnectionError):
    """No TCP connection could be made (refused, unreachable)."""


class Timeout(Error, TimeoutError):
    """A deadline passed; ``phase`` says during which phase."""


class HostKeyError(Error):
    """The server's host key was refused."""


class HostKeyUnknown(HostKeyError):
    """The host key is not in known_hosts and the policy is strict."""


class HostKeyChanged(HostKeyError):
    """The host key differs from the recorded one, or is revoked."""


class AuthenticationError(Error):
    """Every authentication method failed."""


class KeyFileError(Error):
    """A private key file could not be used (unreadable, permissions, passphrase)."""


class AgentError(Error):
    """The ssh-agent could not be reached or failed."""


class ProtocolError(Error):
    """The SSH protocol failed (not an SSH server, no common algorithm, corruption)."""


class ChannelError(Error):
    """The server refused to open a channel or to run the command."""


class Disconnected(Error, ConnectionError):
    """The connection was lost."""


class LocalIOError(Error, OSError):
    """A local file or device failed."""


class CommandFailed(Error, subprocess.CalledProcessError):
    """The command exited non-zero or was killed (``check=True``,
    ``check_returncode()``); like ``subprocess.CalledProcessError`` it has
    ``returncode``, ``cmd``, ``output``/``stdout`` and ``stderr``."""

    def __init__(self, message, returncode=None, cmd=None, output=None, stderr=None):
        Exception.__init__(self, message)
        self.message = message
        self.returncode = returncode
        self.cmd = cmd
        self.output = output
        self.stderr = stderr

    def __str__(self):
        return self.message

    # subprocess.CalledProcessError's alias, which Error's class attribute would hide.
    @property
    def stdout(self):
        return self.output

    @stdout.setter
    def stdout(self, value):
        self.output = value


class Interrupted(Error):
    """The operation was cancelled (Ctrl-C, ``Pool.terminate()``)."""


class NotStarted(Error):
    """The run was cancelled before this host started."""


class NotFound(Error, FileNotFoundError):
    """A file or directory does not exist (remote or local)."""


class PermissionDenied(Error, PermissionError):
    """Permission denied (remote or local)."""


class NoSpace(Error, OSError):
    """No space left on the device."""


class SFTPError(Error, OSError):
    """An SFTP operation failed on the server for another reason."""


class BecomeError(Error):
    """sudo did not run the command."""


# Shown as rexec.Timeout (not rexec._errors.Timeout) in tracebacks and reprs.
for _name in __all__:
    globals()[_name].__module__ = "rexec"
del _name
