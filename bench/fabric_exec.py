"""Runs a command on every host through Fabric (fabric.ThreadingGroup, paramiko based),
one thread per host, with host-key checking on: the fleet's known_hosts is loaded and an
unknown or changed key is refused (Fabric's default would add unknown keys). Prints one
line per host; exits non-zero if any host failed. Part of rexec's benchmark harness
(bench/exec.sh, bench/rtt.sh).

    python fabric_exec.py HOSTS_FILE KEY KNOWN_HOSTS COMMAND

HOSTS_FILE has "address port user" per line. Fabric has no parallelism limit: every host
gets its thread at once.
"""

import sys

import paramiko
from fabric import Config, Connection, ThreadingGroup


def main():
    hosts_file, key, known_hosts, command = sys.argv[1:5]
    entries = [line.split() for line in open(hosts_file) if line.strip()]
    config = Config(overrides={"load_ssh_configs": False})
    connections = []
    for address, port, user in entries:
        c = Connection(
            address,
            user=user,
            port=int(port),
            config=config,
            connect_kwargs={
                "key_filename": key,
                "allow_agent": False,
                "look_for_keys": False,
            },
        )
        c.client.load_host_keys(known_hosts)
        c.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        connections.append(c)
    group = ThreadingGroup.from_connections(connections)
    failed = 0
    try:
        results = group.run(command, hide=True, warn=True)
    except Exception as e:  # GroupException: some hosts failed to connect
        results = getattr(e, "result", {})
    for c in connections:
        r = results.get(c) if hasattr(results, "get") else None
        if isinstance(r, Exception) or r is None:
            failed += 1
            print(f"{c.host}: {r!r}", file=sys.stderr)
            continue
        if r.exited != 0:
            failed += 1
        lines = r.stdout.count("\n")
        print(f"{c.host} exit={r.exited} lines={lines}")
    group.close()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
