#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2034  # result checks are strings that measure() evals later
# A/B of two rexec builds on one loopback host: put and get of a SIZE_MIB file (default
# 1024), alternating A, B and OpenSSH's sftp as a reference, `sync` (untimed) before every
# measurement. Prints every run and the medians; for deciding whether a change to the
# transfer engine helps, not for the published figures (bench/transfer.sh).
#
#   bench/transfer-ab.sh OLD_REXEC NEW_REXEC          # RUNS=5
#   RUNS=7 SIZE_MIB=512 EXTRA="--no-fsync" bench/transfer-ab.sh a/rexec b/rexec
RUNS=${RUNS:-5}
SIZE_MIB=${SIZE_MIB:-1024}
A=$(realpath "${1:?usage: bench/transfer-ab.sh REXEC_A REXEC_B}")
B=$(realpath "${2:?usage: bench/transfer-ab.sh REXEC_A REXEC_B}")
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_install
bench_setup transfer-ab 1 1
N1=$(node 1)
H1=$(home_of "$(host_user 1)")
head -c "$(( SIZE_MIB * 1048576 ))" /dev/urandom >"$W/big.bin"
cp "$W/big.bin" "$H1/src.bin"; chown "$(host_user 1):" "$H1/src.bin"
SUM=$(sum_of "$W/big.bin")
# shellcheck disable=SC2206
EXTRA_ARGS=(${EXTRA:-})
for run in $(seq 1 "$RUNS"); do
    echo "run $run/$RUNS"
    for v in A B; do
        bin=$A; [ "$v" = B ] && bin=$B
        rm -f "$H1/up.bin"
        tmeasure "put $v" '[ "$(sum_of "$H1/up.bin")" = "$SUM" ]' -- \
            "$bin" -i "$W/hosts.toml" --no-agent -q -l "$N1" put "${EXTRA_ARGS[@]}" "$W/big.bin" up.bin
    done
    rm -f "$H1/up.bin"
    tmeasure "put sftp" '[ "$(sum_of "$H1/up.bin")" = "$SUM" ]' -- \
        sh -c "echo 'put $W/big.bin up.bin' | sftp -q -b - -F $W/ssh_config $N1"
    for v in A B; do
        bin=$A; [ "$v" = B ] && bin=$B
        rm -rf "$W/dl"; mkdir -p "$W/dl"
        tmeasure "get $v" '[ "$(sum_of "$W/dl/$N1/src.bin")" = "$SUM" ]' -- \
            "$bin" -i "$W/hosts.toml" --no-agent -q -l "$N1" get "${EXTRA_ARGS[@]}" src.bin "$W/dl"
    done
    rm -rf "$W/dl"; mkdir -p "$W/dl"
    tmeasure "get sftp" '[ "$(sum_of "$W/dl/src.bin")" = "$SUM" ]' -- \
        sh -c "echo 'get src.bin $W/dl/src.bin' | sftp -q -b - -F $W/ssh_config $N1"
done
rm -rf "$W/dl" "$H1/up.bin"
python3 - "$RESULTS" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, wall, cpu, *_ = line.rstrip("\n").split("\t")
    rows[name].append((float(wall), float(cpu)))
for name, runs in rows.items():
    walls = " ".join(f"{w:.2f}" for w, _ in runs)
    print(f"{name:10} median wall {statistics.median(w for w, _ in runs):5.2f} s  "
          f"cpu {statistics.median(c for _, c in runs):5.2f} s   runs: {walls}")
PY
