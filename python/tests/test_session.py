"""rexec.Session: subprocess.run's verbs on one host, host keys, errors, SFTP."""

import os
import stat
import subprocess

import pytest

import rexec
from conftest import keygen


def test_run_returns_a_completed_process(sshd):
    with rexec.Session(**sshd.session_args()) as s:
        p = s.run("echo out; echo err >&2; exit 3")
        assert p.args == "echo out; echo err >&2; exit 3"
        assert (p.returncode, p.signal) == (3, None)
        assert p.stdout == b"out\n"
        assert p.stderr == b"err\n"
        with pytest.raises(rexec.CommandFailed) as failed:
            p.check_returncode()
        assert isinstance(failed.value, subprocess.CalledProcessError)
        assert failed.value.returncode == 3
        assert failed.value.stdout == b"out\n"
        assert s.run("true").check_returncode() is None
    assert s.closed


def test_run_quotes_a_sequence_and_passes_input_env_and_cwd(sshd):
    with rexec.Session(**sshd.session_args()) as s:
        assert s.run(["printf", "%s|", "a b", "$HOME", "it's"]).stdout == b"a b|$HOME|it's|"
        # The program is one word, never shell syntax: not a keyword, not an assignment.
        for program in ["if", "A=b", "echo hi"]:
            assert s.run([program, "true"]).returncode == 127
        with pytest.raises(ValueError):
            s.run(["%1"])
        assert s.run("cat", input=b"\x00bytes\xff").stdout == b"\x00bytes\xff"
        assert s.run("cat", input="text").stdout == b"text"
        assert s.run("echo $GREETING", env={"GREETING": "hi there"}).stdout == b"hi there\n"
        assert s.run("pwd", cwd="/tmp").stdout == b"/tmp\n"


def test_check_raises_command_failed_with_the_output(sshd):
    with rexec.Session(**sshd.session_args()) as s:
        with pytest.raises(rexec.CommandFailed) as failed:
            s.run("echo partial; exit 7", check=True)
        e = failed.value
        assert (e.returncode, e.cmd, e.stdout, e.stderr) == (7, "echo partial; exit 7", b"partial\n", b"")
        assert e.kind == "command-failed"
        assert sshd.address in str(e)
        assert isinstance(e, rexec.Error)


def test_a_command_killed_by_a_signal(sshd):
    with rexec.Session(**sshd.session_args()) as s:
        p = s.run("kill -TERM $$")
        assert (p.returncode, p.signal) == (-15, "TERM")


def test_timeout_stops_the_remote_process(sshd):
    with rexec.Session(**sshd.session_args()) as s:
        with pytest.raises(rexec.Timeout) as timed_out:
            s.run("echo started; sleep 300", timeout=1.5)
        e = timed_out.value
        assert isinstance(e, TimeoutError)
        assert (e.kind, e.phase) == ("timeout", "command")
        assert e.stdout == b"started\n"
        assert sshd.wait_no_processes("sleep 300") == []
        # The connection is still usable.
        assert s.run("echo after").stdout == b"after\n"


def test_a_changed_host_key_is_refused(sshd):
    other = keygen(os.path.join(sshd.dir, "other_host_key"))
    sshd.write_known_hosts(other)
    with pytest.raises(rexec.HostKeyChanged) as refused:
        rexec.Session(**sshd.session_args())
    e = refused.value
    assert isinstance(e, rexec.HostKeyError)
    assert e.kind == "host-key-changed"
    assert sshd.address in str(e)


def test_an_unknown_host_is_refused_under_strict_and_learned_under_accept_new(sshd):
    open(sshd.known_hosts, "w").close()
    with pytest.raises(rexec.HostKeyUnknown):
        rexec.Session(**sshd.session_args())
    with rexec.Session(**sshd.session_args(), policy="accept-new") as s:
        assert s.run("echo ok").stdout == b"ok\n"
    with open(sshd.known_hosts) as f:
        assert f"[{sshd.address}]:{sshd.port} ssh-ed25519" in f.read()
    with pytest.raises(ValueError):
        rexec.Session(**sshd.session_args(), policy="sometimes")


def test_authentication_and_connection_errors_name_the_host(sshd):
    stranger = keygen(os.path.join(sshd.dir, "stranger"))
    args = sshd.session_args()
    args["key_filename"] = [stranger]
    with pytest.raises(rexec.AuthenticationError) as refused:
        rexec.Session(**args)
    assert refused.value.kind == "auth" and refused.value.host == f"{sshd.address}:{sshd.port}"
    assert "authentication failed" in str(refused.value)
    args = sshd.session_args()
    sshd.stop_process()
    with pytest.raises(rexec.ConnectError) as unreachable:
        rexec.Session(**args)
    assert isinstance(unreachable.value, ConnectionError)
    assert sshd.address in str(unreachable.value)


def test_sftp_verbs(sshd, tmp_path):
    remote = sshd.user_dir("files")
    local = tmp_path / "up.bin"
    local.write_bytes(os.urandom(300_000))
    with rexec.Session(**sshd.session_args()) as s:
        with s.sftp() as sftp:
            stats = sftp.put(str(local), f"{remote}/up.bin")
            assert (stats.files, stats.bytes) == (1, 300_000)
            attrs = sftp.stat(f"{remote}/up.bin")
            assert attrs.st_size == 300_000 and stat.S_ISREG(attrs.st_mode)
            sftp.mkdir(f"{remote}/sub")
            assert stat.S_ISDIR(sftp.stat(f"{remote}/sub").st_mode)
            sftp.rename(f"{remote}/up.bin", f"{remote}/sub/moved.bin")
            assert sorted(sftp.listdir(remote)) == ["sub"]
            assert [a.filename for a in sftp.listdir_attr(f"{remote}/sub")] == ["moved.bin"]
            sftp.get(f"{remote}/sub/moved.bin", str(tmp_path / "down.bin"))
            assert (tmp_path / "down.bin").read_bytes() == local.read_bytes()
            sftp.remove(f"{remote}/sub/moved.bin")
            sftp.rmdir(f"{remote}/sub")
            assert sftp.listdir(remote) == []
            with pytest.raises(rexec.NotFound) as missing:
                sftp.stat(f"{remote}/nothing")
            assert isinstance(missing.value, FileNotFoundError)
            with pytest.raises(FileNotFoundError):
                sftp.put(str(tmp_path / "absent"), f"{remote}/x")
