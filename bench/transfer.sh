#!/usr/bin/env bash
# Transfer benchmark: rexec put/get against OpenSSH's sftp and scp (one loopback host, a
# 1 GiB file), and a 64 MiB upload to 20 loopback hosts against parallel-scp (pssh) and
# clush --copy (clustershell). Not a test: it prints figures and writes them to
# bench/results/transfer-<date>-<size>MiB.md.
#
#   bench/transfer.sh            # RUNS=3 runs per tool, alternating A B A B
#   RUNS=5 SIZE_MIB=1024 FLEET_MIB=64 HOSTS=20 bench/transfer.sh
#
# Needs root (it creates the users rexec-bench00..20 with a minimal shell and starts
# throw-away sshd servers on 127.1.0.1-21, see bench/lib.sh). Everything runs on this
# machine.
RUNS=${RUNS:-3}
SIZE_MIB=${SIZE_MIB:-1024}
FLEET_MIB=${FLEET_MIB:-64}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_install
bench_setup transfer "${HOSTS:-20}" 1
N0=$(node 0)

HOME0=$(getent passwd rexec-bench00 | cut -d: -f6)

echo "creating the test files (${SIZE_MIB} MiB, ${FLEET_MIB} MiB)"
head -c "$(( SIZE_MIB * 1048576 ))" /dev/urandom >"$W/big.bin"
head -c "$(( FLEET_MIB * 1048576 ))" /dev/urandom >"$W/fleet.bin"
cp "$W/big.bin" "$HOME0/src.bin"; chown rexec-bench00: "$HOME0/src.bin"
BIG_SUM=$(sha256sum <"$W/big.bin" | cut -d' ' -f1)
FLEET_SUM=$(sha256sum <"$W/fleet.bin" | cut -d' ' -f1)

sum_of() { sha256sum <"$1" | cut -d' ' -f1; }
fleet_ok() { for i in $(seq 1 "$HOSTS"); do h=$(getent passwd "$(printf 'rexec-bench%02d' "$i")" | cut -d: -f6); [ "$(sum_of "$h/fleet.bin")" = "$FLEET_SUM" ] || return 1; done; }
fleet_clean() { for i in $(seq 1 "$HOSTS"); do h=$(getent passwd "$(printf 'rexec-bench%02d' "$i")" | cut -d: -f6); rm -f "$h/fleet.bin"; done; }

SSHF=(-F "$W/ssh_config")
RX=("$REXEC" -i "$W/hosts.toml" --no-agent -q)
for run in $(seq 1 "$RUNS"); do
    echo "run $run/$RUNS"
    rm -f "$HOME0/up.bin"
    measure "put ${SIZE_MIB}MiB: rexec" '[ "$(sum_of "$HOME0/up.bin")" = "$BIG_SUM" ]' -- "${RX[@]}" -l "$N0" put "$W/big.bin" up.bin
    rm -f "$HOME0/up.bin"
    measure "put ${SIZE_MIB}MiB: rexec --no-fsync" '[ "$(sum_of "$HOME0/up.bin")" = "$BIG_SUM" ]' -- "${RX[@]}" -l "$N0" put --no-fsync "$W/big.bin" up.bin
    rm -f "$HOME0/up.bin"
    measure "put ${SIZE_MIB}MiB: sftp" '[ "$(sum_of "$HOME0/up.bin")" = "$BIG_SUM" ]' -- sh -c "echo 'put $W/big.bin up.bin' | sftp -q -b - ${SSHF[*]} $N0"
    rm -f "$HOME0/up.bin"
    rm -f "$HOME0/up.bin"
    measure "put ${SIZE_MIB}MiB: sftp -c aes256-gcm" '[ "$(sum_of "$HOME0/up.bin")" = "$BIG_SUM" ]' -- sh -c "echo 'put $W/big.bin up.bin' | sftp -q -c aes256-gcm@openssh.com -b - ${SSHF[*]} $N0"
    rm -f "$HOME0/up.bin"
    measure "put ${SIZE_MIB}MiB: scp" '[ "$(sum_of "$HOME0/up.bin")" = "$BIG_SUM" ]' -- scp -q "${SSHF[@]}" "$W/big.bin" "$N0:up.bin"
    rm -rf "$W/dl"; mkdir -p "$W/dl"
    measure "get ${SIZE_MIB}MiB: rexec" '[ "$(sum_of "$W/dl/$N0/src.bin")" = "$BIG_SUM" ]' -- "${RX[@]}" -l "$N0" get src.bin "$W/dl"
    rm -rf "$W/dl"; mkdir -p "$W/dl"
    measure "get ${SIZE_MIB}MiB: rexec --no-fsync" '[ "$(sum_of "$W/dl/$N0/src.bin")" = "$BIG_SUM" ]' -- "${RX[@]}" -l "$N0" get --no-fsync src.bin "$W/dl"
    rm -rf "$W/dl"; mkdir -p "$W/dl"
    measure "get ${SIZE_MIB}MiB: sftp" '[ "$(sum_of "$W/dl/src.bin")" = "$BIG_SUM" ]' -- sh -c "echo 'get src.bin $W/dl/src.bin' | sftp -q -b - ${SSHF[*]} $N0"
    rm -rf "$W/dl"; mkdir -p "$W/dl"
    rm -rf "$W/dl"; mkdir -p "$W/dl"
    measure "get ${SIZE_MIB}MiB: sftp -c aes256-gcm" '[ "$(sum_of "$W/dl/src.bin")" = "$BIG_SUM" ]' -- sh -c "echo 'get src.bin $W/dl/src.bin' | sftp -q -c aes256-gcm@openssh.com -b - ${SSHF[*]} $N0"
    rm -rf "$W/dl"; mkdir -p "$W/dl"
    measure "get ${SIZE_MIB}MiB: scp" '[ "$(sum_of "$W/dl/src.bin")" = "$BIG_SUM" ]' -- scp -q "${SSHF[@]}" "$N0:src.bin" "$W/dl/src.bin"
    fleet_clean
    measure "put ${FLEET_MIB}MiB x${HOSTS}: rexec" fleet_ok -- "${RX[@]}" -l "$(fleet_range)" put "$W/fleet.bin" fleet.bin
    fleet_clean
    measure "put ${FLEET_MIB}MiB x${HOSTS}: rexec --no-fsync" fleet_ok -- "${RX[@]}" -l "$(fleet_range)" put --no-fsync "$W/fleet.bin" fleet.bin
    fleet_clean
    measure "put ${FLEET_MIB}MiB x${HOSTS}: parallel-scp" fleet_ok -- parallel-scp -p "$HOSTS" -h "$W/fleet.txt" -x "-F $W/ssh_config" "$W/fleet.bin" fleet.bin
    fleet_clean
    measure "put ${FLEET_MIB}MiB x${HOSTS}: clush --copy" fleet_ok -- clush -f "$HOSTS" -o "-F $W/ssh_config" -w "$(fleet_range)" --copy "$W/fleet.bin" --dest fleet.bin
    fleet_clean
done

# Medians and ratios.
OUT=$ROOT/bench/results/transfer-$(date -u +%Y-%m-%d)-${SIZE_MIB}MiB.md
mkdir -p "$ROOT/bench/results"
python3 - "$RESULTS" "$OUT" "$SIZE_MIB" "$FLEET_MIB" "$HOSTS" "$RUNS" <<'PY'
import statistics, sys, collections, subprocess, platform, os
path, out, size, fleet, hosts, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
rows = collections.defaultdict(list)
for line in open(path):
    name, wall, cpu, rss = line.rstrip("\n").split("\t")
    rows[name].append((float(wall), float(cpu), int(rss)))
def med(name, i): return statistics.median(r[i] for r in rows[name])
cpu_model = next((l.split(":",1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
load = open("/proc/loadavg").read().split()[:3]
ssh_v = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
lines = [f"# Transfer benchmark, {subprocess.run(['date','-u','+%Y-%m-%d %H:%M UTC'],capture_output=True,text=True).stdout.strip()}", "",
         f"Machine: {os.cpu_count()} cores ({cpu_model}), {round(os.sysconf('SC_PAGE_SIZE')*os.sysconf('SC_PHYS_PAGES')/2**30)} GiB, {platform.platform()}; load before the run {' '.join(load)}.",
         f"Server and OpenSSH clients: {ssh_v}. Loopback; medians of {runs} runs, tools alternating. Command: `bench/transfer.sh`.", "",
         "| scenario | tool | wall s | MiB/s | client CPU s | peak RSS MiB | rexec wall ratio | rexec CPU ratio |",
         "| --- | --- | --- | --- | --- | --- | --- | --- |"]
for scen, mib in [(f"put {size}MiB", size), (f"get {size}MiB", size), (f"put {fleet}MiB x{hosts}", fleet*hosts)]:
    names = [n for n in rows if n.startswith(scen + ":")]
    rx = f"{scen}: rexec"
    for n in sorted(names, key=lambda n: (": rexec" not in n, n)):
        wall, cpu, rss = med(n,0), med(n,1), med(n,2)
        ratio = "" if ": rexec" in n or rx not in rows else f"{med(rx,0)/wall:.2f}"
        cratio = "" if ": rexec" in n or rx not in rows or cpu == 0 else f"{med(rx,1)/cpu:.2f}"
        lines.append(f"| {scen} | {n.split(': ',1)[1]} | {wall:.2f} | {mib/wall:.0f} | {cpu:.2f} | {rss/1024:.0f} | {ratio} | {cratio} |")
lines += ["", "Ratios are rexec (default, with fsync) / other: below 1 means rexec took less wall time (or CPU).",
          "`rexec --no-fsync` skips the flush to disk before the atomic rename; sftp, scp, parallel-scp and clush never flush."]
text = "\n".join(lines) + "\n"
open(out, "w").write(text)
print(text)
PY
echo "written to $OUT"
