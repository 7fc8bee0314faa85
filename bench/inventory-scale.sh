#!/usr/bin/env bash
# How long rexec takes to load and select large host lists and inventories (no server):
#   bench/inventory-scale.sh [REXEC_BINARY] [LIMIT_SECONDS]
# For 20,000, 60,000 and 100,000 hosts: a -H list of ranges with --list-hosts, a hosts.toml
# with that many hosts listed one by one and four groups (one nested), selected with
# `-l 'h[1-N/2]:!g2'`, and `-l @FILE` with N/2 names. Prints "scenario hosts seconds".
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REXEC=${1:-$ROOT/target/release/rexec}
LIMIT=${2:-200}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

run() { # NAME N ARGS...
    local name=$1 n=$2 start end status=0
    shift 2
    start=$(date +%s.%N)
    timeout "$LIMIT" "$REXEC" "$@" --list-hosts >"$W/out" 2>"$W/err" || status=$?
    end=$(date +%s.%N)
    if [ "$status" = 124 ]; then
        echo "$name $n >$LIMIT (did not finish)"
    elif [ "$status" != 0 ]; then
        echo "$name $n error: $(head -c 200 "$W/err")"
    else
        echo "$name $n $(echo "$end - $start" | bc) ($(wc -l <"$W/out") hosts listed)"
    fi
}

for n in 20000 60000 100000; do
    # -H: n/1000 ranges of 1000 names each.
    list=$(seq 1 $((n / 1000)) | sed 's/.*/rack&-n[1-1000]/' | paste -sd,)
    run host-list "$n" -H "$list"
    # hosts.toml: every host on its own line, four groups of a quarter each, one nested.
    {
        echo "[hosts]"
        seq 1 "$n" | sed 's/.*/h& = {}/'
        for g in 1 2 3 4; do
            echo "[groups.g$g]"
            echo "hosts = ["
            seq "$(( (g - 1) * n / 4 + 1 ))" "$(( g * n / 4 ))" | sed 's/.*/"h&",/'
            echo "]"
        done
        echo "[groups.all4]"
        echo 'groups = ["g1", "g2", "g3", "g4"]'
    } >"$W/hosts.toml"
    run inventory-range-exclude "$n" -i "$W/hosts.toml" -l "h[1-$((n / 2))]:!g2"
    seq 1 2 "$n" | sed 's/^/h/' >"$W/failed"
    run inventory-at-file "$n" -i "$W/hosts.toml" -l "@$W/failed"
done
