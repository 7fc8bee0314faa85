"""Runs a command on every host through the parallel-ssh Python library
(pssh.clients.ParallelSSHClient, libssh2 based), RUNS times over one client, whose
connections are kept between runs. Prints one line per host and run; exits non-zero if
any host failed. Part of rexec's benchmark harness (bench/exec.sh).

    python pssh_lib.py HOSTS_FILE KEY POOL_SIZE RUNS COMMAND

HOSTS_FILE has "address port user" per line. parallel-ssh does not check host keys.
"""

import sys

from pssh.clients import ParallelSSHClient
from pssh.config import HostConfig


def main():
    hosts_file, key, pool_size, runs, command = sys.argv[1:6]
    entries = [line.split() for line in open(hosts_file) if line.strip()]
    hosts = [address for address, _, _ in entries]
    configs = [HostConfig(port=int(port), user=user, private_key=key) for _, port, user in entries]
    client = ParallelSSHClient(
        hosts, host_config=configs, pool_size=int(pool_size), num_retries=1, timeout=60
    )
    failed = 0
    for run in range(int(runs)):
        output = client.run_command(command, stop_on_errors=False)
        client.join(output)
        for host_out in output:
            if host_out.exception is not None:
                failed += 1
                print(f"{host_out.host}: {host_out.exception!r}", file=sys.stderr)
                continue
            lines = sum(1 for _ in host_out.stdout)
            if host_out.exit_code != 0:
                failed += 1
            print(f"run={run + 1} {host_out.host} exit={host_out.exit_code} lines={lines}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
