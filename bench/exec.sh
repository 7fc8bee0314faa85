#!/usr/bin/env bash
# Command fan-out benchmark, scenario 1 of issue 5: `true` on N loopback hosts with
# parallelism 100, rexec against parallel-ssh (pssh), clush (clustershell) and pdsh, all
# as the same plain user with no shell start-up files. Not a test: it prints figures and
# writes bench/results/exec-<date>-<N>hosts.md.
#
#   bench/exec.sh                 # HOSTS=100 RUNS=3
#   HOSTS=500 RUNS=3 bench/exec.sh
#
# Defaults of the tools (not used here; every tool runs with -f/-p 100): rexec 64,
# parallel-ssh 32, clush 64, pdsh 32.
#
# Not yet covered from issue 5: Ansible and parallel-ssh (Python) from PyPI, 1000 hosts,
# 10 MB outputs, 20 ms latency, connection reuse.
set -euo pipefail
RUNS=${RUNS:-3}
PAR=${PAR:-100}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_install
bench_setup exec "${HOSTS:-100}" 0

RANGE=$(fleet_range)
export PDSH_SSH_ARGS="-F $W/ssh_config %h"
lines_ok() { [ "$(grep -c "$1" "$W/last.out")" -ge "$HOSTS" ]; }

for run in $(seq 1 "$RUNS"); do
    echo "run $run/$RUNS ($HOSTS hosts, parallelism $PAR)"
    measure "rexec" '[ "$(grep -c "ok (exit 0)" "$W/last.out")" = "$HOSTS" ]' -- \
        "$REXEC" -i "$W/hosts.toml" --no-agent -q -f "$PAR" -l "$RANGE" true
    measure "parallel-ssh" 'lines_ok "\[SUCCESS\]"' -- \
        parallel-ssh -p "$PAR" -h "$W/fleet.txt" -x "-F $W/ssh_config" true
    measure "clush" '[ ! -s "$W/last.err" ]' -- \
        clush -f "$PAR" -o "-F $W/ssh_config" -w "$RANGE" true
    measure "pdsh" '[ ! -s "$W/last.err" ]' -- \
        pdsh -S -R ssh -f "$PAR" -w "$RANGE" true
done

OUT=$ROOT/bench/results/exec-$(date -u +%Y-%m-%d)-${HOSTS}hosts.md
mkdir -p "$ROOT/bench/results"
{
    echo "# Command fan-out: \`true\` on $HOSTS hosts, parallelism $PAR"
    echo
    machine_line
    echo "Loopback; one plain user with no rc files; medians of $RUNS runs, tools alternating. Command: \`HOSTS=$HOSTS bench/exec.sh\`."
    echo
    python3 - "$RESULTS" "$HOSTS" <<'PY'
import statistics, sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, wall, cpu, rss = line.rstrip("\n").split("\t")
    rows[name].append((float(wall), float(cpu), int(rss)))
hosts = int(sys.argv[2])
med = lambda n, i: statistics.median(r[i] for r in rows[n])
print("| tool | wall s | client CPU s | CPU ms per host | peak RSS MiB | rexec wall ratio | rexec CPU ratio |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for n in sorted(rows, key=lambda n: (n != "rexec", n)):
    w, c, r = med(n, 0), med(n, 1), med(n, 2)
    wr = "" if n == "rexec" or "rexec" not in rows else f"{med('rexec', 0) / w:.2f}"
    cr = "" if n == "rexec" or "rexec" not in rows or c == 0 else f"{med('rexec', 1) / c:.2f}"
    print(f"| {n} | {w:.2f} | {c:.2f} | {1000 * c / hosts:.1f} | {r / 1024:.0f} | {wr} | {cr} |")
print()
print("Client CPU is user + system time of the tool and every process it started (ssh per host")
print("for parallel-ssh, clush and pdsh). The sshd servers run on the same 2 cores, so wall")
print("time includes their work; peak RSS is the largest single process.")
PY
} >"$OUT"
cat "$OUT"
echo "written to $OUT"
