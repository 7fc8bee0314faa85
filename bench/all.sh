#!/usr/bin/env bash
# Every benchmark, one after the other, as run for bench/RESULTS.md (about two hours on
# 2 cores). Needs root; installs what it uses (Debian: openssh-server, pssh,
# clustershell, pdsh, time, bc, python3-venv; PyPI, in target/bench-venv: ansible-core,
# parallel-ssh). Each step writes its own file under bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
run() { echo "== $*"; env "$@"; sync; }
run RUNS=5 bench/transfer.sh
run RUNS=3 bench/exec.sh fanout
run RUNS=3 RUNS_ansible=1 HOSTS=500 bench/exec.sh fanout
run RUNS=3 RUNS_ansible=1 RUNS_parallel_ssh=1 RUNS_clush=1 RUNS_pdsh=1 HOSTS=1000 bench/exec.sh fanout
run RUNS=3 RUNS_ansible=1 bench/exec.sh defaults
run MEASURE_TIMEOUT=300 RUNS=3 RUNS_pssh_lib=1 bench/exec.sh output
run OUTPUT_MB=100 TOOLS=rexec RUNS=3 bench/exec.sh output
run RUNS=3 bench/exec.sh latency
run RUNS=3 bench/exec.sh reuse
