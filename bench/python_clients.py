"""One Python SSH client runs one command on every host at a given parallelism and
prints one line per host (`HOST exit=N lines=L`); exits non-zero if a host failed. Part
of rexec's benchmark harness (bench/python.sh); each client is timed as a whole process.

    python python_clients.py CLIENT HOSTS_FILE KEY KNOWN_HOSTS PARALLELISM COMMAND

CLIENT: rexec (this repository's package, rexec.Pool.map, strict host keys),
parallel-ssh (pssh.clients.ParallelSSHClient, libssh2; no host key check: it has none),
asyncssh (asyncio, a semaphore of PARALLELISM, known_hosts checked), paramiko
(SSHClient per host in a ThreadPoolExecutor of PARALLELISM threads, known_hosts loaded,
RejectPolicy). HOSTS_FILE has "address port user" per line.
"""

import sys


def run_rexec(hosts, key, known_hosts, par, command):
    import rexec

    names = [f"{user}@{address}:{port}" for address, port, user in hosts]
    pool = rexec.Pool(names, processes=par, key_filename=key, known_hosts=known_hosts)
    report = pool.map(command)
    return [(r.host, r.returncode, r.stdout, r.error_message) for r in report]


def run_pssh(hosts, key, known_hosts, par, command):
    from pssh.clients import ParallelSSHClient
    from pssh.config import HostConfig

    del known_hosts  # parallel-ssh does not check host keys
    client = ParallelSSHClient(
        [a for a, _, _ in hosts],
        host_config=[HostConfig(port=int(p), user=u, private_key=key) for _, p, u in hosts],
        pool_size=par,
        num_retries=1,
        timeout=60,
    )
    output = client.run_command(command, stop_on_errors=False)
    client.join(output)
    results = []
    for out in output:
        if out.exception is not None:
            results.append((out.host, None, b"", str(out.exception)))
        else:
            data = "".join(line + "\n" for line in out.stdout).encode()
            results.append((out.host, out.exit_code, data, None))
    return results


def run_asyncssh(hosts, key, known_hosts, par, command):
    import asyncio

    import asyncssh

    async def one(sem, address, port, user):
        async with sem:
            try:
                async with asyncssh.connect(
                    address,
                    port=int(port),
                    username=user,
                    client_keys=[key],
                    known_hosts=known_hosts,
                    agent_path=None,
                ) as conn:
                    r = await conn.run(command, encoding=None)
                    return (f"{address}:{port}", r.exit_status, r.stdout, None)
            except Exception as e:  # noqa: BLE001 - reported per host
                return (f"{address}:{port}", None, b"", repr(e))

    async def main():
        sem = asyncio.Semaphore(par)
        return await asyncio.gather(*(one(sem, *h) for h in hosts))

    return asyncio.run(main())


def run_paramiko(hosts, key, known_hosts, par, command):
    from concurrent.futures import ThreadPoolExecutor

    import paramiko

    def one(address, port, user):
        client = paramiko.SSHClient()
        client.load_host_keys(known_hosts)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                address,
                port=int(port),
                username=user,
                key_filename=key,
                allow_agent=False,
                look_for_keys=False,
                timeout=60,
            )
            _, stdout, _ = client.exec_command(command)
            data = stdout.read()
            return (f"{address}:{port}", stdout.channel.recv_exit_status(), data, None)
        except Exception as e:  # noqa: BLE001 - reported per host
            return (f"{address}:{port}", None, b"", repr(e))
        finally:
            client.close()

    with ThreadPoolExecutor(par) as pool:
        return list(pool.map(lambda h: one(*h), hosts))


CLIENTS = {
    "rexec": run_rexec,
    "parallel-ssh": run_pssh,
    "asyncssh": run_asyncssh,
    "paramiko": run_paramiko,
}


def main():
    client, hosts_file, key, known_hosts, par, command = sys.argv[1:7]
    hosts = [line.split() for line in open(hosts_file) if line.strip()]
    results = CLIENTS[client](hosts, key, known_hosts, int(par), command)
    failed = 0
    for host, code, stdout, error in results:
        if error is not None or code != 0:
            failed += 1
            print(f"{host} FAILED exit={code} {error}", file=sys.stderr)
        lines = stdout.count(b"\n") if stdout else 0
        print(f"{host} exit={code} lines={lines}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
