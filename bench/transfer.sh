#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2034  # result checks are strings that measure() evals later
# Transfer benchmark: rexec put/get against OpenSSH's sftp and scp (one loopback host, a
# 1 GiB file), and a 64 MiB upload to 20 loopback hosts against parallel-scp (pssh) and
# clush --copy (clustershell); each on tmpfs (the engines) and on the disk (what a flush
# to disk costs). Not a test: it prints figures and writes them to
# bench/results/transfer-<date>-<size>MiB.md.
#
#   bench/transfer.sh            # RUNS=3 runs per tool, alternating A B A B
#   RUNS=5 SIZE_MIB=1024 FLEET_MIB=64 HOSTS=20 bench/transfer.sh
#   OUT_NAME=transfer-foo bench/transfer.sh   # results in bench/results/transfer-foo.md
#   STORAGE=tmpfs bench/transfer.sh           # one storage only (default "tmpfs disk")
#   SCENARIOS=fleet bench/transfer.sh         # some of: put get fleet fleetget (default
#                                             # put get fleet)
#   REXEC_BEFORE=path/to/rexec bench/transfer.sh  # also "rexec-before" in the fleet lines
#   FLEET_PEERS=0 bench/transfer.sh           # the fleet put without parallel-scp and clush
#
# Needs root (it creates the users rexec-bench00..20 with a minimal shell and starts
# throw-away sshd servers on 127.1.0.1-21, see bench/lib.sh). Everything runs on this
# machine.
RUNS=${RUNS:-3}
SIZE_MIB=${SIZE_MIB:-1024}
FLEET_MIB=${FLEET_MIB:-64}
# Where the files live, each a full round of every line:
#   tmpfs: every home directory of the fleet and the local files on tmpfs mounts. No disk
#          anywhere: the lines compare the transfer engines (fsync is a no-op on tmpfs).
#   disk:  the homes and the local files on the machine's disk (ext4 here). rexec's
#          default flushes the file to disk before the atomic rename and so waits for the
#          disk; sftp, scp, parallel-scp and clush never flush. A `dd conv=fsync` copy of
#          the same file (no network) shows what the disk alone takes.
STORAGE=${STORAGE:-tmpfs disk}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_install
bench_setup transfer "${HOSTS:-20}" 1
N0=$(node 0)
MOUNTS=()
transfer_cleanup() {
    bench_cleanup
    for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null || true; done
}
trap transfer_cleanup EXIT

home() { home_of "$(host_user "$1")"; }
HOME0=$(home 0)
fleet_ok() { for i in $(seq 1 "$HOSTS"); do [ "$(sum_of "$(home "$i")/fleet.bin")" = "$FLEET_SUM" ] || return 1; done; }
fleet_clean() { for i in $(seq 1 "$HOSTS"); do rm -f "$(home "$i")/fleet.bin"; done; }
# The fleet get: every host serves src-fleet.bin, rexec writes DIR/HOST/src-fleet.bin.
fleet_seed() { local i; for i in $(seq 1 "$HOSTS"); do cp "$L/fleet.bin" "$(home "$i")/src-fleet.bin"; chown "$(host_user "$i"):" "$(home "$i")/src-fleet.bin"; done; }
fleet_got() { for i in $(seq 1 "$HOSTS"); do [ "$(sum_of "$L/dlf/$(node "$i")/src-fleet.bin")" = "$FLEET_SUM" ] || return 1; done; }

# use_storage tmpfs|disk: mounts (or unmounts) a tmpfs on every home of the fleet and on
# $L, the local side's directory, and puts the test files there.
use_storage() {
    for m in "${MOUNTS[@]}"; do umount "$m"; done
    MOUNTS=()
    L=$W/local
    mkdir -p "$L"
    if [ "$1" = tmpfs ]; then
        local i h
        for i in $(seq 0 "$HOSTS"); do
            h=$(home "$i")
            mount -t tmpfs -o "size=$(( SIZE_MIB * 2 + FLEET_MIB + 64 ))m,mode=755" tmpfs "$h"
            chown "$(host_user "$i"):" "$h"
            MOUNTS+=("$h")
        done
        # The local side also takes every host's copy in the fleet get.
        mount -t tmpfs -o "size=$(( SIZE_MIB * 2 + FLEET_MIB * (HOSTS + 1) + 64 ))m,mode=755" tmpfs "$L"
        MOUNTS+=("$L")
    fi
    echo "$1: creating the test files (${SIZE_MIB} MiB, ${FLEET_MIB} MiB)"
    head -c "$(( SIZE_MIB * 1048576 ))" /dev/urandom >"$L/big.bin"
    head -c "$(( FLEET_MIB * 1048576 ))" /dev/urandom >"$L/fleet.bin"
    cp "$L/big.bin" "$HOME0/src.bin"; chown rexec-bench00: "$HOME0/src.bin"
    BIG_SUM=$(sum_of "$L/big.bin")
    FLEET_SUM=$(sum_of "$L/fleet.bin")
}

SSHF=(-F "$W/ssh_config")
RX=("$REXEC" -i "$W/hosts.toml" --no-agent -q)
UP_OK='[ "$(sum_of "$HOME0/up.bin")" = "$BIG_SUM" ]'
REXEC_DL_OK='[ "$(sum_of "$L/dl/$N0/src.bin")" = "$BIG_SUM" ]'
DL_OK='[ "$(sum_of "$L/dl/src.bin")" = "$BIG_SUM" ]'
# One function per line; each cleans up before it measures.
p_dd() { rm -f "$HOME0/up.bin"; tmeasure "$P: dd conv=fsync (no network)" "$UP_OK" -- dd if="$L/big.bin" of="$HOME0/up.bin" bs=1M conv=fsync status=none; }
p_rexec() { rm -f "$HOME0/up.bin"; tmeasure "$P: rexec" "$UP_OK" -- "${RX[@]}" -l "$N0" put "$L/big.bin" up.bin; }
p_rexec_nofsync() { rm -f "$HOME0/up.bin"; tmeasure "$P: rexec --no-fsync" "$UP_OK" -- "${RX[@]}" -l "$N0" put --no-fsync "$L/big.bin" up.bin; }
p_sftp() { rm -f "$HOME0/up.bin"; tmeasure "$P: sftp" "$UP_OK" -- sh -c "echo 'put $L/big.bin up.bin' | sftp -q -b - ${SSHF[*]} $N0"; }
p_sftp_gcm() { rm -f "$HOME0/up.bin"; tmeasure "$P: sftp -c aes256-gcm" "$UP_OK" -- sh -c "echo 'put $L/big.bin up.bin' | sftp -q -c aes256-gcm@openssh.com -b - ${SSHF[*]} $N0"; }
p_scp() { rm -f "$HOME0/up.bin"; tmeasure "$P: scp" "$UP_OK" -- scp -q "${SSHF[@]}" "$L/big.bin" "$N0:up.bin"; }
g_rexec() { rm -rf "$L/dl"; mkdir -p "$L/dl"; tmeasure "$G: rexec" "$REXEC_DL_OK" -- "${RX[@]}" -l "$N0" get src.bin "$L/dl"; }
g_rexec_nofsync() { rm -rf "$L/dl"; mkdir -p "$L/dl"; tmeasure "$G: rexec --no-fsync" "$REXEC_DL_OK" -- "${RX[@]}" -l "$N0" get --no-fsync src.bin "$L/dl"; }
g_sftp() { rm -rf "$L/dl"; mkdir -p "$L/dl"; tmeasure "$G: sftp" "$DL_OK" -- sh -c "echo 'get src.bin $L/dl/src.bin' | sftp -q -b - ${SSHF[*]} $N0"; }
g_sftp_gcm() { rm -rf "$L/dl"; mkdir -p "$L/dl"; tmeasure "$G: sftp -c aes256-gcm" "$DL_OK" -- sh -c "echo 'get src.bin $L/dl/src.bin' | sftp -q -c aes256-gcm@openssh.com -b - ${SSHF[*]} $N0"; }
g_scp() { rm -rf "$L/dl"; mkdir -p "$L/dl"; tmeasure "$G: scp" "$DL_OK" -- scp -q "${SSHF[@]}" "$N0:src.bin" "$L/dl/src.bin"; }
f_rexec() { fleet_clean; tmeasure "$F: rexec" fleet_ok -- "${RX[@]}" -l "$(fleet_range)" put "$L/fleet.bin" fleet.bin; }
f_rexec_before() { fleet_clean; tmeasure "$F: rexec-before" fleet_ok -- "$REXEC_BEFORE" -i "$W/hosts.toml" --no-agent -q -l "$(fleet_range)" put "$L/fleet.bin" fleet.bin; }
f_rexec_nofsync() { fleet_clean; tmeasure "$F: rexec --no-fsync" fleet_ok -- "${RX[@]}" -l "$(fleet_range)" put --no-fsync "$L/fleet.bin" fleet.bin; }
fg_rexec() { rm -rf "$L/dlf"; mkdir -p "$L/dlf"; tmeasure "$FG: rexec" fleet_got -- "${RX[@]}" -l "$(fleet_range)" get src-fleet.bin "$L/dlf"; }
fg_rexec_before() { rm -rf "$L/dlf"; mkdir -p "$L/dlf"; tmeasure "$FG: rexec-before" fleet_got -- "$REXEC_BEFORE" -i "$W/hosts.toml" --no-agent -q -l "$(fleet_range)" get src-fleet.bin "$L/dlf"; }
# parallel-scp runs `scp -C` (compression on) by default; it is measured as it comes.
f_pscp() { fleet_clean; tmeasure "$F: parallel-scp" fleet_ok -- parallel-scp -p "$HOSTS" -h "$W/fleet.txt" -x "-F $W/ssh_config" "$L/fleet.bin" fleet.bin; }
f_clush() { fleet_clean; tmeasure "$F: clush --copy" fleet_ok -- clush -f "$HOSTS" -o "-F $W/ssh_config" -w "$(fleet_range)" --copy "$L/fleet.bin" --dest fleet.bin; }
# rotated K F1 F2 ...: runs the functions starting with the K-th (mod their number), so
# across runs every tool takes every place in the order (the first measurement after a
# change of scenario ran measurably slower here, whichever tool it was).
rotated() {
    local k=$1; shift
    local fns=("$@") n=$# j
    for j in $(seq 0 $(( n - 1 ))); do "${fns[$(( (j + k) % n ))]}"; done
}

for storage in $STORAGE; do
    use_storage "$storage"
    P="put ${SIZE_MIB}MiB ($storage)"
    G="get ${SIZE_MIB}MiB ($storage)"
    F="put ${FLEET_MIB}MiB x${HOSTS} ($storage)"
    FG="get ${FLEET_MIB}MiB x${HOSTS} ($storage)"
    PUTS=(p_rexec p_rexec_nofsync p_sftp p_sftp_gcm p_scp)
    [ "$storage" = disk ] && PUTS+=(p_dd)
    FLEET_FNS=(f_rexec f_rexec_nofsync)
    [ "${FLEET_PEERS:-1}" = 1 ] && FLEET_FNS+=(f_pscp f_clush)
    [ -n "${REXEC_BEFORE:-}" ] && FLEET_FNS+=(f_rexec_before)
    for run in $(seq 1 "$RUNS"); do
        echo "$storage: run $run/$RUNS"
        [[ " ${SCENARIOS:-put get fleet} " == *" put "* ]] && rotated "$run" "${PUTS[@]}"
        rm -f "$HOME0/up.bin"
        [[ " ${SCENARIOS:-put get fleet} " == *" get "* ]] && rotated "$run" g_rexec g_rexec_nofsync g_sftp g_sftp_gcm g_scp
        rm -rf "$L/dl"
        [[ " ${SCENARIOS:-put get fleet} " == *" fleet "* ]] && rotated "$run" "${FLEET_FNS[@]}"
        fleet_clean
        if [[ " ${SCENARIOS:-put get fleet} " == *" fleetget "* ]]; then
            fleet_seed
            FG_FNS=(fg_rexec)
            [ -n "${REXEC_BEFORE:-}" ] && FG_FNS+=(fg_rexec_before)
            rotated "$run" "${FG_FNS[@]}"
            rm -rf "$L/dlf"
            for i in $(seq 1 "$HOSTS"); do rm -f "$(home "$i")/src-fleet.bin"; done
        fi
    done
    rm -f "$L/big.bin" "$L/fleet.bin" "$HOME0/src.bin"
done

# Medians and ratios.
mkdir -p "$ROOT/bench/results"
OUT=${OUT_NAME:+$ROOT/bench/results/$OUT_NAME.md}
OUT=${OUT:-$ROOT/bench/results/transfer-$(date -u +%Y-%m-%d)-${SIZE_MIB}MiB.md}
python3 - "$RESULTS" "$OUT" "$SIZE_MIB" "$FLEET_MIB" "$HOSTS" "$RUNS" "$LOAD_BEFORE" "$STORAGE" <<'PY'
import statistics, sys, collections, subprocess, platform, os
path, out, size, fleet, hosts, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
load_before = sys.argv[7]
storages = sys.argv[8].split()
rows = collections.defaultdict(list)
for line in open(path):
    name, wall, cpu, rss, _ = line.rstrip("\n").split("\t")
    rows[name].append((float(wall), float(cpu), int(rss)))
def med(name, i): return statistics.median(r[i] for r in rows[name])
cpu_model = next((l.split(":",1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
load = open("/proc/loadavg").read().split()[:3]
ssh_v = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
lines = [f"# Transfer benchmark, {subprocess.run(['date','-u','+%Y-%m-%d %H:%M UTC'],capture_output=True,text=True).stdout.strip()}", "",
         f"Machine: {os.cpu_count()} cores ({cpu_model}), {round(os.sysconf('SC_PAGE_SIZE')*os.sysconf('SC_PHYS_PAGES')/2**30)} GiB, {platform.platform()}; load (1, 5, 15 min) before the runs {load_before}, after {' '.join(load)}.",
         f"Server and OpenSSH clients: {ssh_v}. Loopback; medians of {runs} runs, the order of the tools rotated from run to run; `sync` (untimed) before every measurement. Command: `bench/transfer.sh`.", "",
         "| scenario | tool | wall s | MiB/s | client CPU s | peak RSS MiB | rexec wall ratio | rexec CPU ratio | rexec --no-fsync wall ratio |",
         "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
scens = []
for storage in storages:
    scens += [(f"put {size}MiB ({storage})", size), (f"get {size}MiB ({storage})", size), (f"put {fleet}MiB x{hosts} ({storage})", fleet*hosts), (f"get {fleet}MiB x{hosts} ({storage})", fleet*hosts)]
for scen, mib in scens:
    names = [n for n in rows if n.startswith(scen + ":")]
    rx = f"{scen}: rexec"
    for n in sorted(names, key=lambda n: (": rexec" not in n, n)):
        wall, cpu, rss = med(n,0), med(n,1), med(n,2)
        rxn = rx + " --no-fsync"
        ratio = "" if ": rexec" in n or rx not in rows else f"{med(rx,0)/wall:.2f}"
        cratio = "" if ": rexec" in n or rx not in rows or cpu == 0 else f"{med(rx,1)/cpu:.2f}"
        nratio = "" if ": rexec" in n or rxn not in rows else f"{med(rxn,0)/wall:.2f}"
        lines.append(f"| {scen} | {n.split(': ',1)[1]} | {wall:.2f} | {mib/wall:.0f} | {cpu:.2f} | {rss/1024:.0f} | {ratio} | {cratio} | {nratio} |")
lines += ["", "Ratios are rexec / other: below 1 means rexec took less wall time (or CPU).",
          "`rexec` is the default: temporary file, fsync, atomic rename. `rexec --no-fsync` skips the fsync; sftp, scp, parallel-scp and clush never flush.",
          "(tmpfs): every home of the fleet and the local files on tmpfs, no disk involved: fsync is a no-op there, so these lines compare the transfer engines.",
          "(disk): the same on this machine's disk; a flushed upload or download waits for the disk, whose own time for the file is the `dd conv=fsync` line (a local copy, no network)."]
text = "\n".join(lines) + "\n"
open(out, "w").write(text)
print(text)
PY
echo "written to $OUT"
