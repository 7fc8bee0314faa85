#!/usr/bin/env bash
# shellcheck disable=SC2034  # PIDS is bench/lib.sh's
# Python libraries side by side (issue 16): rexec's Python package against parallel-ssh
# (libssh2), asyncssh and paramiko + ThreadPoolExecutor, each driven by
# bench/python_fanout.py in the same way, on loopback hosts served by throw-away sshd
# processes (bench/lib.sh). Not a test: it prints figures and writes
# bench/results/python-<date>.md.
#
#   bench/python.sh                       # RUNS=3, the three scenarios below
#   RUNS=5 SCENARIOS="true100 true500 output20" bench/python.sh
#   TOOLS="rexec asyncssh" bench/python.sh
#
# Scenarios: `true` on 100 hosts, `true` on 500 hosts (concurrency 64 for every tool),
# 10 MB of stdout from each of 20 hosts. Recorded per run: wall time, the client's CPU
# (user + system of its process tree) and CPU per host, its peak RSS, and the servers'
# CPU (every sshd in a cpuacct cgroup). Host keys are checked by every tool that can:
# parallel-ssh cannot (it has no known_hosts check). The libraries come from PyPI into
# target/bench-venv-py; rexec's package is built from python/ into the same venv.
set -euo pipefail
RUNS=${RUNS:-3}
SCENARIOS=${SCENARIOS:-true100 true500 output20}
TOOLS=${TOOLS:-rexec pssh asyncssh paramiko}
PAR=${PAR:-64}
CMDLINE="$(env | grep -E '^(RUNS|SCENARIOS|TOOLS|PAR)=' | sed -E "s/=(.* .*)/='\1'/" | sort | tr '\n' ' ')bench/python.sh"
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
unset SSH_AUTH_SOCK
bench_install

PYVENV=$ROOT/target/bench-venv-py
if ! "$PYVENV/bin/python" -c 'import pssh, asyncssh, paramiko' 2>/dev/null; then
    python3 -m venv "$PYVENV"
    "$PYVENV/bin/pip" install -q parallel-ssh asyncssh paramiko
fi
# rexec's package, release build, into the same venv.
"$PYVENV/bin/pip" install -q maturin
(cd "$ROOT/python" && VIRTUAL_ENV=$PYVENV PATH=$PYVENV/bin:$PATH maturin develop --release --quiet)
PY=$PYVENV/bin/python
versions() {
    "$PY" - <<'PY'
import importlib.metadata as m
print(", ".join(f"{p} {m.version(p)}" for p in ("parallel-ssh", "asyncssh", "paramiko")))
PY
}

ALL_RESULTS=$ROOT/target/bench-python-results.tsv
: >"$ALL_RESULTS"

# pmeasure SCENARIO TOOL: one run of TOOL over the current fleet, with the servers' CPU.
pmeasure() {
    local scenario=$1 tool=$2 t rc=0 before after
    t=$(mktemp)
    sessions_gone
    before=$(server_ns)
    /usr/bin/time -f '%e %U %S %M' -o "$t" \
        "$PY" "$ROOT/bench/python_fanout.py" "$tool" "$W/hosts.txt" "$W/user_key" \
        "$W/known_hosts" "$W/fleet.toml" "$PAR" "$COMMAND" >"$W/last.out" 2>"$W/last.err" || rc=$?
    sessions_gone
    after=$(server_ns)
    local ok bytes
    read -r _ ok _ bytes <"$W/last.out" || true
    if [ "$rc" != 0 ] || [ "${ok:-0}" != "$HOSTS" ] || [ "${bytes:-0}" -lt "$EXPECT_BYTES" ]; then
        echo "  $tool FAILED (exit $rc, ok ${ok:-?}/$HOSTS, ${bytes:-?} bytes): $(tail -3 "$W/last.err")"
        rm -f "$t"; return 0
    fi
    local wall user sys rss
    read -r wall user sys rss <"$t"; rm -f "$t"
    local cpu server
    cpu=$(echo "$user + $sys" | bc)
    server=$(echo "scale=2; ($after - $before) / 1000000000" | bc)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$tool" "$HOSTS" "$wall" "$cpu" "$rss" "$server" >>"$ALL_RESULTS"
    printf '  %-9s wall %6.2fs  cpu %6.2fs  rss %7d KiB  servers %6.2fs\n' "$tool" "$wall" "$cpu" "$rss" "$server"
}

for scenario in $SCENARIOS; do
    case $scenario in
        true100) HOSTS=100; COMMAND=true; EXPECT_BYTES=0 ;;
        true500) HOSTS=500; COMMAND=true; EXPECT_BYTES=0 ;;
        output20)
            HOSTS=20
            # 10 MB per host: 160,000 lines of 64 characters and a newline.
            COMMAND="yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ@# | head -n 160000"
            EXPECT_BYTES=$(( 20 * 160000 * 65 )) ;;
        *) echo "unknown scenario $scenario" >&2; exit 2 ;;
    esac
    bench_setup "python-$scenario" "$HOSTS" 0
    # The fleet without the spare host 0, for every tool.
    cp "$W/pssh_lib_hosts" "$W/hosts.txt"
    grep -v "^$(node 0) = " "$W/hosts.toml" >"$W/fleet.toml"
    for run in $(seq 1 "$RUNS"); do
        echo "run $run/$RUNS: $scenario ($HOSTS hosts)"
        # Tools alternate, the first one rotating from run to run.
        read -r -a order <<<"$TOOLS"
        for i in $(seq 0 $(( ${#order[@]} - 1 ))); do
            pmeasure "$scenario" "${order[$(( (i + run - 1) % ${#order[@]} ))]}"
        done
    done
    bench_cleanup
    PIDS=()
done

OUT=$ROOT/bench/results/python-$(date -u +%Y-%m-%d).md
# A second run on the same day gets its own file rather than replacing the first.
[ -e "$OUT" ] && OUT=${OUT%.md}-$(date -u +%H%M).md
mkdir -p "$ROOT/bench/results"
{
    echo "# Python libraries: rexec's package against parallel-ssh, asyncssh and paramiko"
    echo
    machine_line
    echo "Loopback; one plain user with no rc files; concurrency $PAR for every tool; medians over $RUNS runs, tools alternating. Command: \`$CMDLINE\`. $(versions)."
    echo
    python3 - "$ALL_RESULTS" <<'PY'
import collections, statistics, sys
rows = collections.OrderedDict()
for line in open(sys.argv[1]):
    scenario, tool, hosts, wall, cpu, rss, server = line.rstrip("\n").split("\t")
    rows.setdefault((scenario, tool, int(hosts)), []).append(
        (float(wall), float(cpu), int(rss), float(server)))
print("| scenario | tool | runs | wall s | client CPU s | CPU ms/host | peak RSS MiB | servers' CPU s | wall vs rexec |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for (scenario, tool, hosts), runs in rows.items():
    med = lambda i: statistics.median(r[i] for r in runs)
    base = rows.get((scenario, "rexec", hosts))
    ratio = f"{med(0) / statistics.median(r[0] for r in base):.2f}" if base else ""
    print(f"| {scenario} | {tool} | {len(runs)} | {med(0):.2f} | {med(1):.2f} | "
          f"{1000 * med(1) / hosts:.2f} | {med(2) / 1024:.0f} | {med(3):.2f} | {ratio} |")
PY
    echo
    echo "Client CPU is user + system time of the Python process (and its threads). The sshd"
    echo "servers run on the same 2 cores, so wall time includes their work; their CPU is the"
    echo "floor on loopback. parallel-ssh does not check host keys; the others check the"
    echo "fleet's known_hosts and refuse unknown keys."
} >"$OUT"
cat "$OUT"
echo "written to $OUT"
