"""rexec.Pool: multiprocessing.Pool's verbs over many hosts on real sshd servers."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import rexec
from conftest import SECOND_ADDRESS, TEST_USER, keygen


def inventory(sshd, path, count, extra_hosts=""):
    """A hosts.toml with node001..nodeNNN, all on `sshd`."""
    text = textwrap.dedent(
        f"""\
        [defaults]
        user = "{TEST_USER}"
        identity_files = ["{sshd.user_key}"]
        known_hosts = "{sshd.known_hosts}"

        [hosts]
        "node[001-{count:03}]" = {{ address = "{sshd.address}", port = {sshd.port} }}
        """
    )
    path.write_text(text + extra_hosts)
    return str(path)


def test_map_gives_one_result_per_host_in_order(sshd, tmp_path):
    closed_port = sshd.port + 1 if sshd.port < 65535 else sshd.port - 1
    hosts = inventory(
        sshd,
        tmp_path / "hosts.toml",
        3,
        f'down = {{ address = "{sshd.address}", port = {closed_port} }}\n',
    )
    with rexec.Pool(hosts, processes=2) as pool:
        assert pool.hosts == ["node001", "node002", "node003", "down"]
        report = pool.map('echo "$((1 + 2))"; [ "$(hostname)" ] && exit 0')
        assert len(report) == 4
        assert [r.host for r in report] == pool.hosts
        assert [r.index for r in report] == [0, 1, 2, 3]
        assert [r.stdout for r in report[:3]] == [b"3\n"] * 3
        assert [r.outcome for r in report] == ["ok", "ok", "ok", "unreachable"]
        down = report[-1]
        assert (down.returncode, down.error_kind) == (None, "connect")
        assert "down" in down.error_message
        assert isinstance(down.error, rexec.ConnectError)
        with pytest.raises(rexec.ConnectError):
            down.check_returncode()
        assert [r.host for r in report.failed()] == ["down"]
        assert len(report.succeeded()) == 3
        assert report.exit_code == 3
        assert report.counts() == {"ok": 3, "unreachable": 1}
        assert report[0].timings.total >= report[0].timings.connect
    with rexec.Pool(hosts, pattern="node00[1-2]") as pool:
        report = pool.map(["sh", "-c", "exit 5"])
        assert [(r.host, r.outcome, r.returncode) for r in report] == [
            ("node001", "exited-nonzero", 5),
            ("node002", "exited-nonzero", 5),
        ]
        assert report.exit_code == 1 and not report.all_ok()
        with pytest.raises(rexec.CommandFailed):
            report.check()


def test_a_list_of_names_and_a_changed_host_key(sshd):
    with rexec.Pool([sshd.target], **sshd.pool_args()) as pool:
        report = pool.map("echo hi")
        assert report.all_ok() and report.exit_code == 0
        assert report[0].host == f"{sshd.address}:{sshd.port}"
        assert report[0].stdout == b"hi\n"
    sshd.write_known_hosts(keygen(os.path.join(sshd.dir, "other_host_key")))
    with rexec.Pool([sshd.target], **sshd.pool_args()) as pool:
        [r] = pool.map("echo hi")
        assert (r.outcome, r.error_kind) == ("host-key-rejected", "host-key-changed")
        assert isinstance(r.error, rexec.HostKeyChanged)


def test_timeout_stops_the_remote_processes(sshd, tmp_path):
    with rexec.Pool(inventory(sshd, tmp_path / "hosts.toml", 3)) as pool:
        report = pool.map("echo started; sleep 300", timeout=1.5)
        assert [r.outcome for r in report] == ["timed-out"] * 3
        assert [r.stdout for r in report] == [b"started\n"] * 3
        assert all(isinstance(r.error, rexec.Timeout) for r in report)
        assert report.exit_code == 4
    assert sshd.wait_no_processes("sleep 300") == []


def test_imap_in_order_and_imap_unordered_over_100_hosts(sshd, tmp_path):
    hosts = inventory(sshd, tmp_path / "hosts.toml", 100)
    with rexec.Pool(hosts, processes=32) as pool:
        # Hosts finish in a random order; imap still yields them in host order.
        random_sleep = "sleep 0.$(od -An -N1 -tu1 /dev/urandom | tr -dc 0-9 | cut -c1); echo done"
        ordered = list(pool.imap(random_sleep, timeout=60))
        assert [r.host for r in ordered] == pool.hosts
        assert all(r.stdout == b"done\n" for r in ordered)
        results = list(pool.imap_unordered("echo $USER"))
        assert len(results) == 100
        assert sorted(r.host for r in results) == pool.hosts
        assert all(r.outcome == "ok" and r.stdout == f"{TEST_USER}\n".encode() for r in results)


def test_imap_unordered_yields_as_hosts_finish(sshd, tmp_path):
    hosts = inventory(
        sshd,
        tmp_path / "hosts.toml",
        1,
        f'second = {{ address = "{SECOND_ADDRESS}", port = {sshd.port} }}\n',
    )
    flag = os.path.join(sshd.user_dir("flag"), "go")
    # node001 (reached on the first address) waits for a file that the test creates only
    # after it has seen the result of `second`, the later host in the list.
    cmd = (
        f'case "$SSH_CONNECTION" in *" {sshd.address} "*) '
        f"while [ ! -e {flag} ]; do sleep 0.1; done;; esac; echo done"
    )
    with rexec.Pool(hosts) as pool:
        assert pool.hosts == ["node001", "second"]
        results = pool.imap_unordered(cmd, timeout=60)
        assert next(results).host == "second"
        open(flag, "w").close()
        assert [(r.host, r.stdout) for r in results] == [("node001", b"done\n")]
        ordered = pool.imap(cmd, timeout=60)
        assert next(ordered).host == "node001"
        assert next(ordered).host == "second"
        with pytest.raises(StopIteration):
            next(ordered)


def test_apply_async(sshd, tmp_path):
    hosts = inventory(sshd, tmp_path / "hosts.toml", 2, 'down = { address = "127.0.3.1", port = 1 }\n')
    seen, errors, called = [], [], threading.Event()
    with rexec.Pool(hosts) as pool:
        r = pool.apply_async("echo hi; exit 2", host="node002", callback=seen.append)
        result = r.get(timeout=30)
        assert r.ready() and not r.successful()
        assert (result.host, result.index, result.returncode, result.stdout) == ("node002", 1, 2, b"hi\n")
        assert [x.host for x in seen] == ["node002"]

        slow = pool.apply_async("sleep 3; echo late", host="node001")
        with pytest.raises(rexec.Timeout) as timed_out:
            slow.get(timeout=0.2)
        assert isinstance(timed_out.value, TimeoutError)
        assert "node001" in str(timed_out.value)
        assert not slow.ready()
        with pytest.raises(ValueError):
            slow.successful()
        slow.wait()
        assert slow.ready() and slow.successful()
        assert slow.get().stdout == b"late\n"

        def on_error(e):
            errors.append(e)
            called.set()

        failing = pool.apply_async("true", host="down", error_callback=on_error)
        with pytest.raises(rexec.ConnectError):
            failing.get(timeout=30)
        assert called.wait(5) and isinstance(errors[0], rexec.ConnectError)

        with pytest.raises(rexec.InvalidInput):
            pool.apply_async("true", host="nobody")
        with pytest.raises(ValueError):
            pool.apply_async("true")  # several hosts: host= is needed

        pending = pool.apply_async("sleep 0.5; echo joined", host="node001")
        pool.close()
        with pytest.raises(ValueError):
            pool.map("true")
        pool.join()
        assert pending.ready() and pending.get().stdout == b"joined\n"


def test_terminate_stops_remote_commands(sshd, tmp_path):
    pool = rexec.Pool(inventory(sshd, tmp_path / "hosts.toml", 2))
    running = [pool.apply_async("sleep 300", host=h) for h in pool.hosts]
    deadline = time.monotonic() + 20
    while len([p for p in sshd.processes() if "sleep 300" in p[1]]) < 2:
        assert time.monotonic() < deadline, sshd.processes()
        time.sleep(0.1)
    pool.terminate()
    pool.join()
    for r in running:
        with pytest.raises(rexec.Interrupted):
            r.get(timeout=30)
    assert sshd.wait_no_processes("sleep 300") == []
    with pytest.raises(ValueError):
        pool.map("true")


def test_put_and_get_fan_out(sshd, tmp_path):
    hosts = inventory(sshd, tmp_path / "hosts.toml", 2)
    upload_dir = sshd.user_dir("up")
    local = tmp_path / "payload.txt"
    local.write_bytes(b"payload\n")
    with rexec.Pool(hosts) as pool:
        for h in pool.hosts:
            os.makedirs(os.path.join(upload_dir, h))
            os.chown(os.path.join(upload_dir, h), *_uid_gid())
        # One remote path per host, rendered from the host's name.
        report = pool.put(str(local), upload_dir + "/{{name}}/payload.txt")
        assert report.all_ok(), [r.error_message for r in report]
        assert [r.transferred.bytes for r in report] == [8, 8]
        for h in pool.hosts:
            with open(os.path.join(upload_dir, h, "payload.txt"), "rb") as f:
                assert f.read() == b"payload\n"
        report = pool.get(upload_dir + "/{{name}}/payload.txt", str(tmp_path / "fetched"))
        assert report.all_ok(), [r.error_message for r in report]
        for h in pool.hosts:
            assert (tmp_path / "fetched" / h / "payload.txt").read_bytes() == b"payload\n"
        with pytest.raises(rexec.NotFound):
            pool.put(str(tmp_path / "absent"), upload_dir)


def _uid_gid():
    import pwd

    entry = pwd.getpwnam(TEST_USER)
    return entry.pw_uid, entry.pw_gid


SIGINT_SCRIPT = """
import json, sys
import rexec
pool = rexec.Pool(sys.argv[1], processes=4)
print("ready", flush=True)
try:
    pool.map("echo started; sleep 300")
except KeyboardInterrupt as e:
    print(json.dumps([[r.host, r.outcome, r.stdout.decode()] for r in e.report]), flush=True)
    sys.exit(0)
print("not interrupted", flush=True)
sys.exit(1)
"""


def test_sigint_during_map_stops_every_host(sshd, tmp_path):
    hosts = inventory(sshd, tmp_path / "hosts.toml", 6)
    script = tmp_path / "interrupt.py"
    script.write_text(SIGINT_SCRIPT)
    child = subprocess.Popen(
        [sys.executable, str(script), hosts],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        # 4 hosts run at once; interrupt once they all sleep (2 never start).
        deadline = time.monotonic() + 30
        while len([p for p in sshd.processes() if "sleep 300" in p[1]]) < 4:
            assert time.monotonic() < deadline, sshd.processes()
            time.sleep(0.1)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, (out, err)
    results = json.loads(out)
    assert [r[0] for r in results] == [f"node{i:03}" for i in range(1, 7)]
    outcomes = sorted(r[1] for r in results)
    assert outcomes == ["interrupted"] * 4 + ["not-started"] * 2
    assert all(r[2] == "started\n" for r in results if r[1] == "interrupted")
    assert sshd.wait_no_processes("sleep 300") == []
