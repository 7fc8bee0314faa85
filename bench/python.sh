#!/usr/bin/env bash
# shellcheck disable=SC2016  # result checks are strings that measure() evals later
# The Python package (issue 16) against the Python SSH libraries people use for fan-out:
# parallel-ssh (libssh2), asyncssh (asyncio) and paramiko in a ThreadPoolExecutor, each
# driven by bench/python_clients.py as one process, on loopback hosts (bench/lib.sh's
# fleet), as a plain user with no shell start-up files. Host keys are checked against the
# fleet's known_hosts by every client that can (all but parallel-ssh). The libraries come
# from PyPI into a virtual environment under target/ (never dependencies of rexec); the
# package is built there with `maturin develop --release`. Not a test: it prints figures
# and writes bench/results/python-<scenario>-<date>.md.
#
#   bench/python.sh fanout      # `true` on HOSTS hosts (default 100; try HOSTS=500)
#   bench/python.sh output      # OUTPUT_MB (10) MB of stdout from each of 20 hosts
#
# Environment: HOSTS, RUNS (default 3), PAR (parallelism, default 100), CLIENTS (subset
# of: rexec parallel-ssh asyncssh paramiko), OUTPUT_MB, MEASURE_TIMEOUT.
set -euo pipefail
SCENARIO=${1:-fanout}
CMDLINE="$(env | grep -E '^(HOSTS|RUNS|PAR|CLIENTS|OUTPUT_MB|MEASURE_TIMEOUT)=' | sed -E "s/=(.* .*)/='\1'/" | sort | tr '\n' ' ')bench/python.sh $SCENARIO"
RUNS=${RUNS:-3}
PAR=${PAR:-100}
CLIENTS=${CLIENTS:-rexec parallel-ssh asyncssh paramiko}
case $SCENARIO in
    fanout) HOSTS=${HOSTS:-100} ;;
    output) HOSTS=${HOSTS:-20} ;;
    *) echo "unknown scenario $SCENARIO (fanout or output)" >&2; exit 2 ;;
esac
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
unset SSH_AUTH_SOCK
bench_install

PYVENV=$ROOT/target/bench-python-venv
if [ ! -x "$PYVENV/bin/python" ]; then
    python3 -m venv "$PYVENV" 2>/dev/null || {
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$PYVENV"
    }
fi
if ! "$PYVENV/bin/python" -c 'import pssh, asyncssh, paramiko' 2>/dev/null \
    || [ ! -x "$PYVENV/bin/maturin" ]; then
    "$PYVENV/bin/pip" install -q --disable-pip-version-check 'maturin>=1.5,<2' parallel-ssh asyncssh paramiko
fi
VIRTUAL_ENV=$PYVENV "$PYVENV/bin/maturin" develop --quiet --release --locked \
    --manifest-path "$ROOT/python/Cargo.toml"
PY=$PYVENV/bin/python

bench_setup "python-$SCENARIO" "$HOSTS" 0

OUTPUT_MB=${OUTPUT_MB:-10}
LINES=$(( OUTPUT_MB * 16000 ))
LINE=0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ@#
case $SCENARIO in
    fanout) CMD=true; CHECK='[ "$(grep -c " exit=0 " "$W/last.out")" = "$HOSTS" ]' ;;
    output) CMD="yes $LINE | head -n $LINES"
        CHECK='[ "$(grep -c " exit=0 lines=$LINES\$" "$W/last.out")" = "$HOSTS" ]' ;;
esac

for run in $(seq 1 "$RUNS"); do
    echo "run $run/$RUNS: $SCENARIO, $HOSTS hosts, parallelism $PAR"
    for client in $CLIENTS; do
        measure "$client" "$CHECK" -- "$PY" "$ROOT/bench/python_clients.py" "$client" \
            "$W/pssh_lib_hosts" "$W/user_key" "$W/known_hosts" "$PAR" "$CMD"
    done
done

versions=$("$PY" - <<'PY'
from importlib.metadata import version
print(", ".join(f"{p} {version(p)}" for p in ("rexec-ssh", "parallel-ssh", "asyncssh", "paramiko")))
PY
)
NOTE="Each line is one Python process (interpreter start and imports included) running the
command on every host through bench/python_clients.py: rexec = this repository's package
(Pool.map, release build, strict host key checking); parallel-ssh = ParallelSSHClient
(libssh2; it has no host key checking); asyncssh = asyncio.gather under a semaphore of
$PAR, known_hosts checked; paramiko = one SSHClient per host in a ThreadPoolExecutor of $PAR
threads, known_hosts loaded, RejectPolicy. $versions; $("$PY" --version)."
case $SCENARIO in
    fanout)
        REPORT_NAME=python-fanout-${HOSTS}hosts
        report "Python clients: \`true\` on $HOSTS hosts, parallelism $PAR" "$CMDLINE" "$NOTE" ;;
    output)
        REPORT_NAME=python-output-${OUTPUT_MB}MB
        report "Python clients: $OUTPUT_MB MB of stdout from each of $HOSTS hosts, parallelism $PAR" \
            "$CMDLINE" "Each host prints $LINES lines of 64 characters; every client's line count was checked. $NOTE" ;;
esac
