"""One fan-out, done by one Python SSH library, for rexec's benchmark (bench/python.sh):
run COMMAND on every host of HOSTS_FILE and count the bytes of stdout that came back.

    python python_fanout.py TOOL HOSTS_FILE KEY KNOWN_HOSTS INVENTORY CONCURRENCY COMMAND

TOOL is one of:
  rexec       rexec's Python package: rexec.Pool over the inventory, map(COMMAND)
  pssh        parallel-ssh's ParallelSSHClient (libssh2): it has no host-key checking
  asyncssh    asyncssh, one asyncio task per host behind a semaphore, known_hosts checked
  paramiko    paramiko SSHClient per host in a ThreadPoolExecutor, RejectPolicy on the
              fleet's known_hosts

HOSTS_FILE has "address port user" per line (the others read the same hosts from it;
rexec reads INVENTORY, the same hosts). Prints "ok N bytes B" and exits non-zero unless
every host ran COMMAND with exit status 0.
"""

import sys


def main():
    tool, hosts_file, key, known_hosts, inventory, concurrency, command = sys.argv[1:8]
    concurrency = int(concurrency)
    hosts = [line.split() for line in open(hosts_file) if line.strip()]
    ok, nbytes = TOOLS[tool](hosts, key, known_hosts, inventory, concurrency, command)
    print(f"ok {ok} bytes {nbytes}")
    sys.exit(0 if ok == len(hosts) else 1)


def run_rexec(hosts, key, known_hosts, inventory, concurrency, command):
    import rexec

    with rexec.Pool(inventory, processes=concurrency) as pool:
        results = pool.map(command)
    ok = sum(1 for r in results if r.returncode == 0)
    return ok, sum(len(r.stdout or b"") for r in results)


def run_pssh(hosts, key, known_hosts, inventory, concurrency, command):
    from pssh.clients import ParallelSSHClient
    from pssh.config import HostConfig

    client = ParallelSSHClient(
        [h[0] for h in hosts],
        host_config=[HostConfig(port=int(h[1]), user=h[2], private_key=key) for h in hosts],
        pool_size=concurrency,
        num_retries=1,
    )
    output = client.run_command(command, stop_on_errors=False)
    # Read every host's output before join(): join waits for the commands, which wait
    # for their output to be read once the channel window is full. The chunks are read
    # from the buffer that `HostOutput.stdout` splits into lines: that line iterator is
    # quadratic in the size of what arrived at once (ssh2-python's find_eol copies the
    # rest of the buffer for every line) and did not end within 5 minutes on 20 x 10 MB.
    ok, nbytes = 0, 0
    for o in output:
        if o.exception is not None:
            continue
        nbytes += sum(len(chunk) for chunk in o.buffers.stdout.rw_buffer)
    client.join(output)
    for o in output:
        if o.exception is None and o.exit_code == 0:
            ok += 1
    return ok, nbytes


def run_asyncssh(hosts, key, known_hosts, inventory, concurrency, command):
    import asyncio

    import asyncssh

    async def one(limit, address, port, user):
        async with limit:
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
                    return r.exit_status == 0, len(r.stdout or b"")
            except (OSError, asyncssh.Error) as e:
                print(f"{address}:{port}: {e!r}", file=sys.stderr)
                return False, 0

    async def all_hosts():
        limit = asyncio.Semaphore(concurrency)
        return await asyncio.gather(*(one(limit, *h) for h in hosts))

    results = asyncio.run(all_hosts())
    return sum(1 for good, _ in results if good), sum(n for _, n in results)


def run_paramiko(hosts, key, known_hosts, inventory, concurrency, command):
    from concurrent.futures import ThreadPoolExecutor

    import paramiko

    def one(h):
        address, port, user = h
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
            )
            _, stdout, _ = client.exec_command(command)
            data = stdout.read()
            return stdout.channel.recv_exit_status() == 0, len(data)
        except Exception as e:  # one host's failure is counted, not raised
            print(f"{address}:{port}: {e!r}", file=sys.stderr)
            return False, 0
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(one, hosts))
    return sum(1 for good, _ in results if good), sum(n for _, n in results)


TOOLS = {
    "rexec": run_rexec,
    "pssh": run_pssh,
    "asyncssh": run_asyncssh,
    "paramiko": run_paramiko,
}

if __name__ == "__main__":
    main()
