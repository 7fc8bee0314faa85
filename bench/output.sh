#!/usr/bin/env bash
# shellcheck disable=SC2016  # result checks are strings that omeasure() evals later
# Output path benchmark of issue 13: OpenSSH `ssh ... > file` side by side with rexec's
# three output modes (default whole blocks, --stream, --out-dir), on loopback sshds started
# here, as a plain user with no shell start-up files. Records for every run the wall time,
# the client's CPU (user + system of the process tree), its peak RSS, the servers' CPU
# (every sshd process and the command it ran, from a cpuacct cgroup) and the load
# average, and writes bench/results/output-<scenario>-<date>.md.
#
#   bench/output.sh one      # 1 host: head -c 200000000 /dev/zero
#   bench/output.sh fleet    # 20 hosts (HOSTS): base64 of a 10 MB file each (13.5 MB)
#   bench/output.sh          # both
#   bench/output.sh timeline # 1 host, each tool once: a timeline of the run (bench/timeline.py)
#
# Environment: RUNS (default 3), HOSTS (fleet, default 20), ONE_BYTES (default 200000000),
# TOOLS (subset of: ssh rexec rexec-stream rexec-out-dir), REXEC (a rexec binary to use
# instead of this tree's release build), REXEC_BEFORE (a second rexec binary, measured in
# the same rounds as "(before)" lines: before/after figures taken side by side), TAG (added
# to the results file's name).
set -euo pipefail
SCENARIOS=${1:-one fleet}
CMDLINE="$(env | { grep -E '^(HOSTS|RUNS|ONE_BYTES|TOOLS|TAG|REXEC|REXEC_BEFORE)=' || true; } | sort | tr '\n' ' ')bench/output.sh ${1:-}"
RUNS=${RUNS:-3}
TOOLS=${TOOLS:-ssh rexec rexec-stream rexec-out-dir}
ONE_BYTES=${ONE_BYTES:-200000000}
REXEC_GIVEN=${REXEC:-}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
unset SSH_AUTH_SOCK
# With REXEC given, nothing is built.
if [ -n "$REXEC_GIVEN" ]; then cargo() { :; }; fi
bench_install
if [ -n "$REXEC_GIVEN" ]; then REXEC=$REXEC_GIVEN; unset -f cargo; fi
HOSTS=${HOSTS:-20}
bench_setup output "$HOSTS" 0
# One file of 10 MB random bytes in the bench user's home: `base64` of it is 13.5 MB.
U=$(host_user 0)
head -c 10000000 /dev/urandom >"$(home_of "$U")/ten.bin"
chmod 644 "$(home_of "$U")/ten.bin"
PER_HOST=$(base64 "$(home_of "$U")/ten.bin" | wc -c)
RESULTS=$W/results.tsv
: >"$RESULTS"
# omeasure NAME BYTES CHECK -- COMMAND...: like lib.sh's measure, plus the servers' CPU and
# the 1-minute load average when the run started. Appends "scenario name wall cpu rss
# server_cpu load" to $RESULTS.
omeasure() {
    local name=$1 check=$2; shift 3
    local t rc=0 before after load; t=$(mktemp)
    sync
    sessions_gone
    load=$(cut -d' ' -f1 /proc/loadavg)
    before=$(server_ns)
    /usr/bin/time -f '%e %U %S %M' -o "$t" "$@" >"$W/last.out" 2>"$W/last.err" || rc=$?
    sessions_gone
    after=$(server_ns)
    if [ "$rc" != 0 ]; then
        echo "  $name FAILED: $(tail -3 "$W/last.err")"; rm -f "$t"; return 0
    fi
    if ! eval "$check"; then
        echo "  $name: result check FAILED"; rm -f "$t"; return 0
    fi
    local wall user sys rss cpu server
    read -r wall user sys rss <"$t"; rm -f "$t"
    cpu=$(echo "$user + $sys" | bc)
    server=$(echo "scale=2; ($after - $before) / 1000000000" | bc)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$SCENARIO" "$name" "$wall" "$cpu" "$rss" "$server" "$load" >>"$RESULTS"
    printf '  %-16s wall %6.2fs  client cpu %5.2fs  servers cpu %5.2fs  peak rss %7d KiB  load %s\n' \
        "$name" "$wall" "$cpu" "$server" "$rss" "$load"
}

RX=("$REXEC" -i "$W/hosts.toml" --no-agent -q)
SSH=(ssh -F "$W/ssh_config")
size() { stat -c %s "$1"; }
# total_of DIR: bytes of every DIR/*.out
total_of() { cat "$1"/*.out | wc -c; }

round() {
    local cmd hosts list bytes
    case $SCENARIO in
        one) cmd="head -c $ONE_BYTES /dev/zero"; list=$(node 0); hosts=1; bytes=$ONE_BYTES ;;
        fleet) cmd="base64 ten.bin"; list=$(fleet_range); hosts=$HOSTS; bytes=$(( HOSTS * PER_HOST )) ;;
    esac
    rm -rf "$W"/out-*
    mkdir -p "$W/out-ssh"
    export CMD=$cmd OUT=$W/out-ssh CFG=$W/ssh_config
    if [[ " $TOOLS " == *" ssh "* ]]; then
        if [ "$hosts" = 1 ]; then
            omeasure "ssh > file" '[ "$(size "$W/last.out")" = "$bytes" ]' -- \
                "${SSH[@]}" "$list" "$cmd"
        else
            omeasure "ssh > file" '[ "$(total_of "$W/out-ssh")" = "$bytes" ]' -- \
                sh -c 'xargs -P 100 -I{} sh -c '\''ssh -F "$CFG" "$1" "$CMD" >"$OUT/$1.out"'\'' sh {} <"$1"' \
                sh "$W/fleet.txt"
        fi
    fi
    # The default mode and --stream add a header line per host or a prefix per line.
    local rx tag
    for rx in "$REXEC" ${REXEC_BEFORE:+"$REXEC_BEFORE"}; do
        tag=""; [ "$rx" = "$REXEC" ] || tag=" (before)"
        RX[0]=$rx
        [[ " $TOOLS " == *" rexec "* ]] && omeasure "rexec$tag" \
            '[ "$(size "$W/last.out")" -gt "$bytes" ] && [ "$(grep -ac "^=== .*: ok (exit 0)" "$W/last.out")" = "$hosts" ]' -- \
            "${RX[@]}" -f 100 -l "$list" "$cmd"
        [[ " $TOOLS " == *" rexec-stream "* ]] && omeasure "rexec --stream$tag" \
            '[ "$(size "$W/last.out")" -gt "$bytes" ]' -- \
            "${RX[@]}" -f 100 --stream -l "$list" "$cmd"
        rm -rf "$W/out-rexec"
        [[ " $TOOLS " == *" rexec-out-dir "* ]] && omeasure "rexec --out-dir$tag" \
            '[ "$(total_of "$W/out-rexec")" = "$bytes" ]' -- \
            "${RX[@]}" -f 100 --out-dir "$W/out-rexec" -l "$list" "$cmd"
    done
    RX[0]=$REXEC
    return 0
}

# `timeline`: one run of each tool on one host through bench/timeline.py (every 20 ms: the
# client's and the servers' CPU, the servers' memory, the bytes written), printed coarsely.
if [ "$SCENARIOS" = timeline ]; then
    cmd="head -c $ONE_BYTES /dev/zero"
    tl() { # name out_glob command...
        local name=$1 out=$2; shift 2
        sync; sessions_gone
        python3 "$ROOT/bench/timeline.py" "$out" "$CG" -- "$@" 2>"$W/timeline-$name.tsv"
        echo "== $name ($W/timeline-$name.tsv, every 5th sample)"
        awk 'NR == 1 || NR % 5 == 0' "$W/timeline-$name.tsv" | column -t
        tail -1 "$W/timeline-$name.tsv"
    }
    tl ssh "$W/tl.out" "${SSH[@]}" "$(node 0)" "$cmd"
    tl rexec "$W/tl.out" "${RX[@]}" -l "$(node 0)" "$cmd"
    tl rexec-stream "$W/tl.out" "${RX[@]}" --stream -l "$(node 0)" "$cmd"
    rm -rf "$W/out-rexec"
    tl rexec-out-dir "$W/out-rexec/*.out" "${RX[@]}" --out-dir "$W/out-rexec" -l "$(node 0)" "$cmd"
    rm -rf "$W/tl.out" "$W/out-rexec"
    exit 0
fi

for SCENARIO in $SCENARIOS; do
    for run in $(seq 1 "$RUNS"); do
        echo "run $run/$RUNS: $SCENARIO"
        round
    done
done
rm -rf "$W"/out-* "$W/last.out"

OUT=$ROOT/bench/results/output-$(date -u +%Y-%m-%d)${TAG:+-$TAG}.md
mkdir -p "$ROOT/bench/results"
{
    echo "# Output path (issue 13): OpenSSH \`ssh > file\` and rexec's output modes"
    echo
    machine_line
    echo "Loopback; plain user with no rc files; medians over $RUNS runs, tools alternating. Command: \`$CMDLINE\`; rexec: $REXEC${REXEC_BEFORE:+; (before): $REXEC_BEFORE}."
    echo
    python3 - "$RESULTS" "$HOSTS" "$ONE_BYTES" <<'PY'
import statistics, sys, collections
rows = collections.OrderedDict()
for line in open(sys.argv[1]):
    sc, name, wall, cpu, rss, server, load = line.rstrip("\n").split("\t")
    rows.setdefault((sc, name), []).append((float(wall), float(cpu), int(rss), float(server), float(load)))
titles = {"one": f"1 host, `head -c {sys.argv[3]} /dev/zero`",
          "fleet": f"{sys.argv[2]} hosts, `base64` of a 10 MB file (13.5 MB) each"}
for sc in dict.fromkeys(k[0] for k in rows):
    print(f"## {titles[sc]}")
    print()
    print("| tool | runs | wall s | client CPU s | servers' CPU s | servers' CPU vs ssh | peak RSS MiB | load (1 min) at start |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    med = lambda k, i: statistics.median(r[i] for r in rows[k])
    base = (sc, "ssh > file") if (sc, "ssh > file") in rows else None
    for k in [k for k in rows if k[0] == sc]:
        ratio = f"{med(k, 3) / med(base, 3):.2f}" if base and med(base, 3) > 0 else ""
        loads = ", ".join(f"{r[4]:.1f}" for r in rows[k])
        print(f"| {k[1]} | {len(rows[k])} | {med(k, 0):.2f} | {med(k, 1):.2f} | {med(k, 3):.2f} | {ratio} | {med(k, 2) / 1024:.0f} | {loads} |")
    print()
print("Client CPU: user + system time of the tool and every process it waited for (one `ssh`")
print("per host through `xargs -P`). Servers' CPU: the CPU time of the sshd listeners and all")
print("their children (the per-connection sshd processes and the commands), from a cpuacct")
print("cgroup, so it includes the command's own work, the same for every tool. Peak RSS is")
print("that of the largest single process. The machine is shared with other builds: wall times")
print("were taken under the load shown; CPU figures are the steadier ones.")
PY
} >"$OUT"
cat "$OUT"
echo "written to $OUT"
