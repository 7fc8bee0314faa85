#!/usr/bin/env python3
"""A timeline of one run for bench/output.sh: every 20 ms, the client's CPU, the servers'
CPU (a cpuacct cgroup holding the sshd listeners and so their children), the servers'
resident memory, and the bytes written to the output file(s) so far.

    bench/timeline.py OUT_GLOB CGROUP_DIR -- COMMAND...   (COMMAND's stdout goes to
    OUT_GLOB when it has no `*`; the TSV goes to stderr)
"""
import glob, os, subprocess, sys, time

TICK = os.sysconf("SC_CLK_TCK")


def stat(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # fields[0] is state (field 3): utime is field 14 -> index 11.
        return fields
    except OSError:
        return None


def servers(cgroup):
    with open(f"{cgroup}/cpuacct.usage") as f:
        cpu = int(f.read()) / 1e9
    rss = 0
    with open(f"{cgroup}/cgroup.procs") as f:
        for pid in f.read().split():
            s = stat(pid)
            if s:
                rss += int(s[21]) * 4
    return cpu, rss


def main():
    out_glob, cgroup = sys.argv[1], sys.argv[2]
    cmd = sys.argv[sys.argv.index("--") + 1:]
    stdout = open(out_glob, "wb") if "*" not in out_glob else subprocess.DEVNULL
    start = time.time()
    base, _ = servers(cgroup)
    child = subprocess.Popen(cmd, stdout=stdout)
    print("t_s\tclient_cpu_s\tservers_cpu_s\tservers_rss_kib\tout_mb", file=sys.stderr)
    while True:
        done = child.poll() is not None
        s = stat(child.pid) if not done else None
        ccpu = (int(s[11]) + int(s[12])) / TICK if s else float("nan")
        scpu, srss = servers(cgroup)
        size = sum(os.path.getsize(f) for f in glob.glob(out_glob) if os.path.isfile(f))
        print(f"{time.time() - start:.2f}\t{ccpu:.2f}\t{scpu - base:.2f}\t{srss}\t{size / 1e6:.1f}",
              file=sys.stderr, flush=True)
        if done:
            break
        time.sleep(0.02)


main()
