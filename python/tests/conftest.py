"""A real OpenSSH sshd per test module, on 127.0.3.x, as the Rust harness starts it
(tests/integration/harness): generated host and user keys, authorized_keys and
known_hosts in a temporary directory, `UsePAM no`, the test user `rexec-test`. Every
session carries `REXEC_PY_TEST=<dir>` in its environment (`SetEnv`), so that the
processes a test leaves behind can be found, and none may remain."""

import fcntl
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

TEST_USER = "rexec-test"
STATE_DIR = "/var/lib/rexec-test"
ADDRESS = "127.0.3.1"
# A second address of the same server, for hosts that must differ on the remote side.
SECOND_ADDRESS = "127.0.3.2"
LEAK_TAG = "REXEC_PY_TEST"


def setup_user():
    """The test user, created as the Rust harness creates it (same lock)."""
    os.makedirs(STATE_DIR, mode=0o700, exist_ok=True)
    os.makedirs("/run/sshd", exist_ok=True)
    with open(os.path.join(STATE_DIR, "setup.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            pwd.getpwnam(TEST_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--create-home", "--shell", "/bin/sh", TEST_USER], check=True
            )
        home = pwd.getpwnam(TEST_USER).pw_dir
        for name in (".bashrc", ".profile", ".bash_logout"):
            try:
                os.remove(os.path.join(home, name))
            except FileNotFoundError:
                pass


def keygen(path, key_type="ed25519"):
    subprocess.run(
        ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", os.path.basename(path), "-f", path],
        check=True,
    )
    return path


def free_port(address):
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def listening(address, port):
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def tagged_processes(tag):
    """(pid, command line) of the processes whose environment holds the tag."""
    needle = f"{LEAK_TAG}={tag}".encode()
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if needle in env:
            found.append((int(pid), cmdline))
    return found


class Sshd:
    def __init__(self, address=ADDRESS):
        setup_user()
        self.address = address
        self.dir = tempfile.mkdtemp(prefix="rexec-py-sshd-")
        os.chmod(self.dir, 0o755)
        self.host_key = keygen(os.path.join(self.dir, "ssh_host_ed25519_key"))
        self.user_key = keygen(os.path.join(self.dir, "id_user"))
        self.authorized_keys = os.path.join(self.dir, "authorized_keys")
        shutil.copy(self.user_key + ".pub", self.authorized_keys)
        os.chmod(self.authorized_keys, 0o644)
        self.known_hosts = os.path.join(self.dir, "known_hosts")
        self.process = None
        for _ in range(20):
            self.port = free_port(address)
            config = os.path.join(self.dir, "sshd_config")
            with open(config, "w") as f:
                f.write(
                    f"Port {self.port}\nListenAddress {address}\nListenAddress {SECOND_ADDRESS}\nPidFile {self.dir}/sshd.pid\n"
                    f"HostKey {self.host_key}\nAuthorizedKeysFile {self.authorized_keys}\n"
                    "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
                    "KbdInteractiveAuthentication no\nPermitRootLogin no\n"
                    f"AllowUsers {TEST_USER}\nMaxStartups 200:30:400\nMaxSessions 32\n"
                    "LogLevel VERBOSE\nSubsystem sftp /usr/lib/openssh/sftp-server\n"
                    f"SetEnv {LEAK_TAG}={self.dir}\n"
                )
            log = open(os.path.join(self.dir, "sshd.log"), "w")
            self.process = subprocess.Popen(
                ["/usr/sbin/sshd", "-D", "-e", "-f", config],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
            log.close()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.process.poll() is None:
                if listening(address, self.port) and listening(SECOND_ADDRESS, self.port):
                    self.write_known_hosts()
                    return
                time.sleep(0.05)
            self.stop_process()
        raise RuntimeError("sshd would not start:\n" + self.log())

    def write_known_hosts(self, key_file=None):
        with open((key_file or self.host_key) + ".pub") as f:
            kind, key = f.read().split()[:2]
        with open(self.known_hosts, "w") as f:
            for address in (self.address, SECOND_ADDRESS):
                f.write(f"[{address}]:{self.port} {kind} {key}\n")

    @property
    def target(self):
        return f"{TEST_USER}@{self.address}:{self.port}"

    def session_args(self):
        return dict(
            host=self.address,
            port=self.port,
            user=TEST_USER,
            key_filename=self.user_key,
            known_hosts=self.known_hosts,
            allow_agent=False,
            look_for_keys=False,
        )

    def pool_args(self):
        return dict(user=TEST_USER, key_filename=self.user_key, known_hosts=self.known_hosts)

    def user_dir(self, name):
        """A directory in the server's temp dir owned by the test user."""
        path = os.path.join(self.dir, name)
        os.makedirs(path, exist_ok=True)
        shutil.chown(path, TEST_USER, TEST_USER)
        return path

    def processes(self):
        return tagged_processes(self.dir)

    def wait_no_processes(self, matching="", timeout=10):
        """Waits until no session process (whose command line contains `matching`)
        remains; returns those left."""
        deadline = time.monotonic() + timeout
        while True:
            left = [p for p in self.processes() if matching in p[1]]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.1)

    def log(self):
        try:
            with open(os.path.join(self.dir, "sshd.log")) as f:
                return f.read()
        except OSError:
            return ""

    def stop_process(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def stop(self):
        """Stops sshd; fails if a session process outlived the test."""
        left = self.wait_no_processes()
        self.stop_process()
        for pid, _ in tagged_processes(self.dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)
        assert not left, f"processes left behind: {left}"


@pytest.fixture
def sshd():
    server = Sshd()
    yield server
    server.stop()
