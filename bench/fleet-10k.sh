#!/usr/bin/env bash
# `true` on 10,000 hosts from one machine (issue 15): a network namespace of its own, a
# few sshd processes listening on 0.0.0.0 inside it, 10,000 distinct 127.10.x.y
# addresses (every 127/8 address is local in the namespace), an inventory n00001..n10000,
# a known_hosts with one plain line per host and strict checking. rexec runs inside the
# namespace (`ip netns exec`). Not a test: it prints figures and writes
# bench/results/fleet-<HOSTS>hosts-<date>.md.
#
#   bench/fleet-10k.sh
#
# Environment: REXEC (the binary; default: built here with --release), HOSTS (fleet size, 10000), SIZES (host counts run at -f 100, default
# "100 1000 HOSTS": the 100-host line is the reference for CPU per host), WIDE (hosts at
# -f 500, default HOSTS; empty: none), SERVERS (sshd processes, 4), RUNS (runs of each
# line, 1), FAILING (hosts of the fleet whose key is not authorized, for a look at the
# summary of a run with failures; default 0).
#
# Each line records wall time, rexec's CPU (user + system, GNU time), its peak RSS, the
# peak number of its open descriptors (sampled every 50 ms from /proc/PID/fd), the CPU
# of every sshd (the listeners and the per-connection processes they reaped), and the
# load average before and after. Everything it starts is stopped and the namespace
# deleted on exit, Ctrl-C included.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
HOSTS=${HOSTS:-10000}
SIZES=${SIZES:-100 1000 $HOSTS}
WIDE=${WIDE-$HOSTS}
SERVERS=${SERVERS:-4}
RUNS=${RUNS:-1}
FAILING=${FAILING:-0}
CMDLINE="$(env | grep -E '^(HOSTS|SIZES|WIDE|SERVERS|RUNS|FAILING)=' | sed -E "s/=(.* .*)/='\1'/" | sort | tr '\n' ' ')bench/fleet-10k.sh"
W=$ROOT/target/bench-fleet-10k
NS=rexec-fleet10k-$$
USER_NAME=rexec-bench00
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
unset SSH_AUTH_SOCK

SSHD_PIDS=()
cleanup() {
    local p
    for p in "${SSHD_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    if ip netns list 2>/dev/null | grep -qw "$NS"; then
        # Whatever still runs in the namespace was started by this script (sshd's
        # per-connection processes).
        for p in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        sleep 0.2
        ip netns del "$NS" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ ! -x /usr/sbin/sshd ] || [ ! -x /usr/bin/time ] || ! need bc; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server time bc >/dev/null
fi
mkdir -p /run/sshd
# REXEC: a binary to measure (default: this tree's release build).
if [ -z "${REXEC:-}" ]; then
    cargo build --release --locked --quiet
    REXEC=$ROOT/target/release/rexec
fi

rm -rf "$W"
mkdir -p "$W"
chmod 755 "$W"
id "$USER_NAME" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$USER_NAME"
usermod -p '*' "$USER_NAME"
home=$(getent passwd "$USER_NAME" | cut -d: -f6)
rm -f "$home/.bashrc" "$home/.profile" "$home/.bash_logout"
ssh-keygen -q -t ed25519 -N '' -f "$W/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$W/user_key"
cp "$W/user_key.pub" "$W/authorized_keys"
chmod 644 "$W/authorized_keys"

ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
for s in $(seq 0 $(( SERVERS - 1 ))); do
    {
        echo "Port $(( 2200 + s ))"
        echo "ListenAddress 0.0.0.0"
        echo "HostKey $W/host_key"
        echo "PidFile $W/sshd$s.pid"
        echo "AuthorizedKeysFile $W/authorized_keys"
        echo "AllowUsers $USER_NAME"
        echo "StrictModes no"
        echo "UsePAM no"
        echo "PasswordAuthentication no"
        echo "KbdInteractiveAuthentication no"
        # No random drops of unauthenticated connections below 10,000 in flight.
        echo "MaxStartups 10000:30:20000"
        echo "MaxSessions 64"
        echo "LogLevel ERROR"
    } >"$W/sshd$s.conf"
    ip netns exec "$NS" /usr/sbin/sshd -D -f "$W/sshd$s.conf" -E "$W/sshd$s.log" &
    SSHD_PIDS+=($!)
done

# Host i (1..HOSTS): 127.10.(i / 250).(i % 250 + 1), on port 2200 + i % SERVERS.
# The fleet: inventory and known_hosts, one line per host (no patterns), generated in
# one pass (a shell loop of 10,000 iterations forking for each line would take minutes).
python3 - "$W" "$HOSTS" "$SERVERS" "$USER_NAME" "$FAILING" <<'PY'
import sys
w, hosts, servers, user, failing = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
key = " ".join(open(f"{w}/host_key.pub").read().split()[:2])
width = len(str(hosts))
# hosts-failing.toml: every (hosts / failing)-th host logs in with a key the servers do
# not know (auth-failed), spread over the fleet.
step = hosts // failing if failing else 0
head = (f'[defaults]\nuser = "{user}"\nidentity_files = ["{w}/user_key"]\n'
        f'known_hosts = "{w}/known_hosts"\nhost_key_policy = "strict"\nconnect_timeout = "60s"\n\n[hosts]\n')
with open(f"{w}/hosts.toml", "w") as inv, open(f"{w}/hosts-failing.toml", "w") as bad, \
        open(f"{w}/known_hosts", "w") as kh:
    inv.write(head)
    bad.write(head)
    for i in range(1, hosts + 1):
        a = f"127.10.{i // 250}.{i % 250 + 1}"
        p = 2200 + i % servers
        line = f'n{i:0{width}d} = {{ address = "{a}", port = {p}'
        inv.write(line + " }\n")
        other = f', identity_files = ["{w}/other_key"]' if step and i % step == 0 else ""
        bad.write(line + other + " }\n")
        kh.write(f"[{a}]:{p} {key}\n")
PY
if [ "$FAILING" -gt 0 ]; then ssh-keygen -q -t ed25519 -N '' -f "$W/other_key"; fi
WIDTH=${#HOSTS}
range_of() { printf "n[%0${WIDTH}d-%0${WIDTH}d]" 1 "$1"; }

# Every sshd listening (inside the namespace).
for _ in $(seq 100); do
    n=$(ip netns exec "$NS" ss -Hltn 2>/dev/null | grep -c ':22[0-9][0-9] ' || true)
    [ "$n" -ge "$SERVERS" ] && break
    sleep 0.1
done
[ "$n" -ge "$SERVERS" ] || { echo "the sshd servers did not start"; cat "$W"/sshd*.log; exit 1; }

# CPU seconds of every sshd: the listeners and the per-connection processes they reaped.
sshd_cpu() {
    local total=0 p f
    for p in "${SSHD_PIDS[@]}"; do
        f=$(cut -d')' -f2 "/proc/$p/stat")
        # Fields after the name: utime stime cutime cstime are 12-15 of this remainder.
        total=$(( total + $(echo "$f" | awk '{print $12 + $13 + $14 + $15}') ))
    done
    echo "scale=2; $total / $(getconf CLK_TCK)" | bc
}

RESULTS=$W/results.tsv
: >"$RESULTS"
# run NAME HOSTS FORKS: one measured run of `true` on the first HOSTS hosts.
run() {
    local name=$1 n=$2 forks=$3 t=$W/time.txt out=$W/out.json err=$W/err.txt
    local load_before sshd_before sshd_after pid rpid peak=0 fds
    load_before=$(cut -d' ' -f1 /proc/loadavg)
    sshd_before=$(sshd_cpu)
    ip netns exec "$NS" /usr/bin/time -f '%e %U %S %M' -o "$t" \
        "$REXEC" -i "$W/hosts.toml" --no-agent --json -q -f "$forks" -l "$(range_of "$n")" true \
        >"$out" 2>"$err" &
    pid=$!
    rpid=""
    while kill -0 "$pid" 2>/dev/null; do
        # GNU time's one child is rexec.
        [ -n "$rpid" ] || rpid=$(pgrep -P "$pid" | head -1 || true)
        if [ -n "$rpid" ]; then
            # shellcheck disable=SC2012  # /proc/PID/fd holds numbers only
            fds=$(ls "/proc/$rpid/fd" 2>/dev/null | wc -l || true)
            [ "${fds:-0}" -gt "$peak" ] && peak=$fds
        fi
        sleep 0.05
    done
    local rc=0
    wait "$pid" || rc=$?
    sshd_after=$(sshd_cpu)
    local ok failed
    ok=$(tail -1 "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["summary"]["outcomes"].get("ok", 0))' 2>/dev/null || echo 0)
    failed=$(( n - ok ))
    if [ "$failed" != 0 ]; then
        echo "  $name: $ok of $n hosts ok (exit $rc): $(tail -3 "$err")"
        printf '%s\t%s\tcheck\n' "$name" "$n" >>"$W/unfinished.tsv"
        return 0
    fi
    local wall user sys rss cpu sshd
    read -r wall user sys rss <"$t"
    cpu=$(echo "$user + $sys" | bc)
    sshd=$(echo "$sshd_after - $sshd_before" | bc)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$n" "$forks" "$wall" "$cpu" \
        "$rss" "$peak" "$sshd" "$load_before" "$(cut -d' ' -f1 /proc/loadavg)" >>"$RESULTS"
    printf '  %-22s %6d hosts ok  wall %7.2fs  cpu %6.2fs (%.3f ms/host)  rss %6d KiB  fds %5d  sshd cpu %7.2fs  load %s\n' \
        "$name" "$ok" "$wall" "$cpu" "$(echo "1000 * $cpu / $n" | bc -l)" "$rss" "$peak" "$sshd" "$load_before"
}

for r in $(seq 1 "$RUNS"); do
    echo "run $r/$RUNS"
    for n in $SIZES; do run "-f 100, $n hosts" "$n" 100; done
    [ -z "$WIDE" ] || run "-f 500, $WIDE hosts" "$WIDE" 500
done
# A run with failures, as a person sees it: the summary on stderr and --failed-hosts.
if [ "$FAILING" -gt 0 ]; then
    ip netns exec "$NS" /usr/bin/time -f '%e %U %S %M' -o "$W/failing-time.txt" \
        "$REXEC" -i "$W/hosts-failing.toml" --no-agent -f 500 --failed-hosts "$W/failed.txt" \
        true >/dev/null 2>"$W/summary.txt" || true
    echo "a run with $FAILING failing hosts (wall user sys rss: $(tail -1 "$W/failing-time.txt")):"
    echo "  --failed-hosts: $(wc -l <"$W/failed.txt") lines; summary: $(wc -l <"$W/summary.txt") lines, $(wc -c <"$W/summary.txt") bytes"
    cut -c1-400 "$W/summary.txt"
fi

OUT=$ROOT/bench/results/fleet-${HOSTS}hosts-$(date -u +%Y-%m-%d).md
mkdir -p "$ROOT/bench/results"
{
    echo "# \`true\` on up to $HOSTS hosts from one machine"
    echo
    echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); load (1, 5, 15 min) before the runs $LOAD_BEFORE, after $(cut -d' ' -f1-3 /proc/loadavg); $(ssh -V 2>&1); $("$REXEC" --version 2>/dev/null || echo rexec)."
    echo "One network namespace, $SERVERS sshd processes on 0.0.0.0 inside it, hosts on distinct 127.10.x.y addresses, a known_hosts of $HOSTS plain lines, strict checking, \`--json -q\`. Command: \`$CMDLINE\`."
    echo
    python3 - "$RESULTS" <<'PY'
import statistics, sys, collections
rows = collections.OrderedDict()
for line in open(sys.argv[1]):
    name, n, forks, wall, cpu, rss, fds, sshd, l0, l1 = line.rstrip("\n").split("\t")
    rows.setdefault(name, []).append((int(n), float(wall), float(cpu), int(rss), int(fds), float(sshd), l0, l1))
ref = next((v for k, v in rows.items() if v[0][0] == 100), None)
ref_ms = statistics.median(1000 * r[2] / r[0] for r in ref) if ref else None
print("| run | runs | hosts ok | wall s | rexec CPU s | CPU ms per host | vs 100 hosts | peak RSS MiB | peak open fds | sshd CPU s | load before, after |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for name, v in rows.items():
    n = v[0][0]
    med = lambda i: statistics.median(r[i] for r in v)
    ms = 1000 * med(2) / n
    ratio = f"{ms / ref_ms:.2f}" if ref_ms else ""
    loads = "; ".join(f"{r[6]}, {r[7]}" for r in v)
    print(f"| {name} | {len(v)} | {n}/{n} | {med(1):.2f} | {med(2):.2f} | {ms:.3f} | {ratio} | {med(3) / 1024:.0f} | {med(4):.0f} | {med(5):.1f} | {loads} |")
PY
    if [ -f "$W/unfinished.tsv" ]; then
        while IFS=$'\t' read -r name n _; do echo "| $name | | FAILED: not every host ok | | | | | | | | |"; done <"$W/unfinished.tsv"
    fi
    echo
    echo "CPU is user + system time of the rexec process (GNU time); \"vs 100 hosts\" divides its CPU per host by the 100-host line's of the same script run. Peak open fds: the most descriptors /proc/PID/fd listed, sampled every 50 ms. sshd CPU: all sshd processes (listeners and the per-connection processes they reaped) during the run; the servers share the 2 cores with rexec, so they set the wall time. Other work on the machine shows in the load average."
} >"$OUT"
cat "$OUT"
echo "written to $OUT"
