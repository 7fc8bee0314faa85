#!/usr/bin/env bash
# Round trips of one connection (issue 13): one host behind bench/delay-proxy (LATENCY_MS,
# default 50 ms), key authentication, one command `true`, for rexec and OpenSSH's `ssh`.
# The proxy logs every chunk it forwards (DELAY_PROXY_LOG=1); this script turns each
# connection's log into a timeline as the client sees it and counts the client's waits.
# Not a test: prints figures and writes bench/results/rtt-<date>.md.
#
#   bench/rtt.sh              # RUNS (default 5) of each tool, alternating
#
# Environment: RUNS, LATENCY_MS, TOOLS (subset of: rexec rexec-before ssh mpssh-rstp
# fabric; rexec-before runs the binary REXEC_BEFORE, e.g. a build of an older commit),
# REPORT_SUFFIX (appended to the results file's name).
#
# The proxy accepts the TCP connection itself, so the TCP handshake is not delayed: a real
# network adds one round trip (SYN, SYN-ACK) before everything counted here.
set -euo pipefail
RUNS=${RUNS:-5}
LATENCY_MS=${LATENCY_MS:-50}
TOOLS=${TOOLS:-rexec ssh}
# mpssh-rstp reaches port 22 only.
[[ " $TOOLS " == *" mpssh-rstp "* ]] && export FLEET_PORT=22
export DELAY_PROXY_LOG=1
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
unset SSH_AUTH_SOCK
bench_install
bench_setup rtt 1 0
N=$(node 1)
# shellcheck source=bench/peers.sh
source "$ROOT/bench/peers.sh"
[[ " $TOOLS " == *" mpssh-rstp "* || " $TOOLS " == *" fabric "* ]] && peers_install

# Each run: the tool's wall time, then the proxy's log of its connection.
: >"$W/rtt.tsv"
run_tool() { # name command...
    local name=$1; shift
    local before; before=$(wc -l <"$W/proxy.log")
    local start end
    start=$(date +%s.%N)
    "$@" >"$W/last.out" 2>"$W/last.err" || { echo "  $name FAILED: $(tail -3 "$W/last.err")"; return 0; }
    end=$(date +%s.%N)
    sleep 0.2   # the proxy logs the last chunks after the client exits
    tail -n +"$(( before + 1 ))" "$W/proxy.log" >"$W/conn.log"
    python3 "$ROOT/bench/rtt_timeline.py" "$LATENCY_MS" "$W/conn.log" >"$W/conn.timeline"
    local rtts; rtts=$(sed -n 's/^round trips: //p' "$W/conn.timeline")
    printf '%s\t%s\t%s\n' "$name" "$(echo "$end - $start" | bc)" "$rtts" >>"$W/rtt.tsv"
    cp "$W/conn.timeline" "$W/timeline-$name.txt"
    printf '  %-12s wall %.3fs  round trips %s\n' "$name" "$(echo "$end - $start" | bc)" "$rtts"
}

for run in $(seq 1 "$RUNS"); do
    echo "run $run/$RUNS"
    for tool in $TOOLS; do
        case $tool in
            rexec) run_tool rexec "$REXEC" -i "$W/hosts.toml" --no-agent -q -l "$N" true ;;
            rexec-before) run_tool rexec-before "$REXEC_BEFORE" -i "$W/hosts.toml" --no-agent -q -l "$N" true ;;
            ssh) run_tool ssh ssh -F "$W/ssh_config" "$N" true ;;
            mpssh-rstp) run_tool mpssh-rstp "${MPSSH[@]}" -f "$W/mpssh_hosts" true ;;
            fabric) run_tool fabric "${FABRIC[@]}" true ;;
        esac
    done
done

OUT=$ROOT/bench/results/rtt-$(date -u +%Y-%m-%d)${REPORT_SUFFIX:-}.md
{
    echo "# Round trips of one connection: key authentication and \`true\`, ${LATENCY_MS} ms RTT"
    echo
    machine_line
    echo "One host behind bench/delay-proxy ($(( LATENCY_MS / 2 )) ms each way; the proxy's own TCP handshake with the client is not delayed). Medians of $RUNS runs, tools alternating. Command: \`bench/rtt.sh\`."
    echo
    echo "| tool | runs | wall s (median) | round trips (median) |"
    echo "| --- | --- | --- | --- |"
    python3 - "$W/rtt.tsv" <<'PY'
import collections, statistics, sys
rows = collections.OrderedDict()
for line in open(sys.argv[1]):
    name, wall, rtts = line.rstrip("\n").split("\t")
    rows.setdefault(name, []).append((float(wall), float(rtts)))
for name, r in rows.items():
    print(f"| {name} | {len(r)} | {statistics.median(w for w, _ in r):.3f} | {statistics.median(n for _, n in r):g} |")
PY
    for tool in $TOOLS; do
        [ -f "$W/timeline-$tool.txt" ] || continue
        echo
        echo "Timeline of the last $tool run (client's view: ms since connect, direction, bytes):"
        echo
        echo '```'
        cat "$W/timeline-$tool.txt"
        echo '```'
    done
} >"$OUT"
cat "$OUT"
echo "written to $OUT"
