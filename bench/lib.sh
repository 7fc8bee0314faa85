# shellcheck shell=bash disable=SC2034  # variables here are used by the scripts that source it
# Shared setup for the benchmarks (sourced, not run): tools, users with no shell start-up
# files, a fleet of loopback hosts served by throw-away sshd processes, known_hosts, an
# ssh_config for the OpenSSH-based tools, an inventory for rexec, and measurement.
#
# After `bench_setup NAME HOSTS PER_HOST_USERS`:
#   $W            work directory (target/bench-NAME)
#   $(node 0)..$(node N)  host names in $W/ssh_config and $W/hosts.toml ($(node 0) is a
#                 spare host for single-host tests); $(fleet_range) is node[1..N]
#   $W/fleet.txt  node01..nodeN, one per line
#   $REXEC        the release binary
#   measure NAME CHECK -- COMMAND...   appends "name wall cpu rss servers_cpu" to $RESULTS
#   server_ns     the CPU time (ns) of every sshd of the fleet and all their children so
#                 far (a cpuacct cgroup); sessions_gone waits until their sessions ended

set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

need() { command -v "$1" >/dev/null 2>&1; }

bench_install() {
    local missing=0
    [ -x /usr/sbin/sshd ] || missing=1
    for t in parallel-scp parallel-ssh clush pdsh bc; do need "$t" || missing=1; done
    [ -x /usr/bin/time ] || missing=1
    if [ "$missing" = 1 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            openssh-server openssh-client pssh clustershell pdsh time bc python3-venv >/dev/null
    fi
    mkdir -p /run/sshd
    cargo build --release --locked --quiet
    REXEC=$ROOT/target/release/rexec
}

# Ansible and the Python parallel-ssh library, from PyPI in a virtual environment; the
# delay proxy (bench/delay-proxy). Only the scenarios that use them call this.
bench_install_python() {
    VENV=$ROOT/target/bench-venv
    if [ ! -x "$VENV/bin/ansible" ] || ! "$VENV/bin/python" -c 'import pssh' 2>/dev/null; then
        python3 -m venv "$VENV" 2>/dev/null || {
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            python3 -m venv "$VENV"
        }
        "$VENV/bin/pip" install -q ansible-core parallel-ssh
    fi
    ANSIBLE=$VENV/bin/ansible
    PYTHON=$VENV/bin/python
}

bench_install_proxy() {
    CARGO_TARGET_DIR=$ROOT/target/delay-proxy cargo build --release --quiet \
        --manifest-path "$ROOT/bench/delay-proxy/Cargo.toml"
    DELAY_PROXY=$ROOT/target/delay-proxy/release/delay-proxy
}

# Host i: 127.1.(i / 250).(i % 250 + 1), apart from the tests' 127.0.x.y. With
# LATENCY_MS set, clients reach host i through the delay proxy at 127.2.(same).
addr() { echo "127.1.$(( $1 / 250 )).$(( $1 % 250 + 1 ))"; }
client_addr() {
    if [ "${LATENCY_MS:-0}" -gt 0 ]; then echo "127.2.$(( $1 / 250 )).$(( $1 % 250 + 1 ))"; else addr "$1"; fi
}
host_user() { if [ "$PER_HOST_USERS" = 1 ]; then printf 'rexec-bench%02d' "$1"; else echo rexec-bench00; fi; }
home_of() { getent passwd "$1" | cut -d: -f6; }
# Host names have one width for the whole fleet (node01..node20, node001..node500): clush
# refuses ranges with mixed padding.
node() { printf "node%0${NODE_WIDTH}d" "$1"; }
fleet_range() { echo "node[$(node 1 | sed 's/node//')-$(node "$HOSTS" | sed 's/node//')]"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

declare -a PORT
PIDS=()
CG=
bench_cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    # The cgroup goes once the killed servers are gone.
    if [ -n "$CG" ]; then
        for _ in $(seq 20); do rmdir "$CG" 2>/dev/null && break; sleep 0.1; done
        CG=
    fi
}

# The servers' CPU: every sshd listener goes into a cpuacct cgroup of its own, which its
# per-connection processes and the commands they run inherit (the listener's cutime misses
# them: OpenSSH's session processes are not all waited for). On loopback the servers share
# the cores with the client, so their CPU is the floor under any tool's wall time.
servers_cgroup() {
    CG=/sys/fs/cgroup/cpuacct/rexec-bench-$(basename "$W")-$$
    mkdir -p "$CG"
    SSHD_PIDS=$(cat "$W"/sshd*.pid)
    for p in $SSHD_PIDS; do echo "$p" >"$CG/cgroup.procs"; done
}
# server_ns: the servers' CPU so far, in nanoseconds.
server_ns() { cat "$CG/cpuacct.usage"; }
# Waits (up to 10 s) until no sshd has a session child left, so that their CPU is counted.
sessions_gone() {
    local p
    for _ in $(seq 100); do
        for p in $SSHD_PIDS; do pgrep -P "$p" >/dev/null && { sleep 0.1; continue 2; }; done
        return 0
    done
}

start_sshd() { # name first last   (at most 16 addresses per sshd)
    # FLEET_PORT=22: every sshd on port 22 of its own addresses (mpssh-rstp knows no
    # other port); otherwise a free port.
    local port; port=${FLEET_PORT:-$(free_port)}
    {
        echo "Port $port"
        for i in $(seq "$2" "$3"); do echo "ListenAddress $(addr "$i")"; done
        echo "HostKey $W/host_key"
        echo "PidFile $W/$1.pid"
        echo "AuthorizedKeysFile $W/authorized_keys"
        echo "StrictModes no"
        echo "UsePAM no"
        echo "PasswordAuthentication no"
        echo "MaxStartups 1000:30:2000"
        echo "MaxSessions 32"
        echo "Subsystem sftp /usr/lib/openssh/sftp-server"
    } >"$W/$1.conf"
    /usr/sbin/sshd -D -f "$W/$1.conf" -E "$W/$1.log" &
    PIDS+=($!)
    for i in $(seq "$2" "$3"); do PORT[i]=$port; done
}

bench_setup() { # name hosts per_host_users
    LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
    W=$ROOT/target/bench-$1
    HOSTS=$2
    PER_HOST_USERS=$3
    NODE_WIDTH=${#HOSTS}
    [ "$NODE_WIDTH" -lt 2 ] && NODE_WIDTH=2
    rm -rf "$W"
    mkdir -p "$W"
    chmod 755 "$W"
    trap bench_cleanup EXIT
    local users=0
    [ "$PER_HOST_USERS" = 1 ] && users=$HOSTS
    for i in $(seq 0 "$users"); do
        local u; u=$(printf 'rexec-bench%02d' "$i")
        id "$u" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$u"
        usermod -p '*' "$u"   # no password, but not "locked" (sshd refuses locked accounts)
        local h; h=$(home_of "$u")
        rm -rf "$h/.bashrc" "$h/.profile" "$h/.bash_logout" "$h"/*.bin "$h/dl"
    done
    ssh-keygen -q -t ed25519 -N '' -f "$W/host_key"
    ssh-keygen -q -t ed25519 -N '' -f "$W/user_key"
    cp "$W/user_key.pub" "$W/authorized_keys"
    chmod 644 "$W/authorized_keys"
    start_sshd sshd0 0 0
    local last=0 first end
    while [ "$last" -lt "$HOSTS" ]; do
        first=$(( last + 1 )); end=$(( first + 15 )); [ "$end" -gt "$HOSTS" ] && end=$HOSTS
        start_sshd "sshd$first" "$first" "$end"
        last=$end
    done
    : >"$W/known_hosts"
    : >"$W/ssh_config"
    {
        echo "[defaults]"
        echo "identity_files = [\"$W/user_key\"]"
        echo "known_hosts = \"$W/known_hosts\""
        echo "[hosts]"
    } >"$W/hosts.toml"
    : >"$W/ansible.ini"
    : >"$W/pssh_lib_hosts"
    : >"$W/proxy.map"
    local a p u n key
    key=$(cut -d' ' -f1,2 "$W/host_key.pub")
    for i in $(seq 0 "$HOSTS"); do
        a=$(client_addr "$i"); p=${PORT[$i]}; u=$(host_user "$i"); n=$(node "$i")
        # OpenSSH's form: a bare address for port 22, [address]:port otherwise.
        if [ "$p" = 22 ]; then echo "$a $key"; else echo "[$a]:$p $key"; fi >>"$W/known_hosts"
        printf 'Host %s\n  HostName %s\n  Port %s\n  User %s\n' "$n" "$a" "$p" "$u" >>"$W/ssh_config"
        echo "$n = { address = \"$a\", port = $p, user = \"$u\" }" >>"$W/hosts.toml"
        echo "$a:$p $(addr "$i"):$p" >>"$W/proxy.map"
        [ "$i" -gt 0 ] || continue
        echo "$n ansible_host=$a ansible_port=$p ansible_user=$u" >>"$W/ansible.ini"
        echo "$a $p $u" >>"$W/pssh_lib_hosts"
    done
    cat >>"$W/ssh_config" <<CFG
Host *
  IdentityFile $W/user_key
  IdentitiesOnly yes
  UserKnownHostsFile $W/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes
CFG
    for i in $(seq 1 "$HOSTS"); do node "$i"; echo; done >"$W/fleet.txt"
    RESULTS=$W/results.tsv
    : >"$RESULTS"
    rm -f "$W/unfinished.tsv"
    if [ "${LATENCY_MS:-0}" -gt 0 ]; then
        bench_install_proxy
        "$DELAY_PROXY" "$LATENCY_MS" "$W/proxy.map" >"$W/proxy.ready" 2>"$W/proxy.log" &
        PIDS+=($!)
        for _ in $(seq 100); do grep -q ready "$W/proxy.ready" && break; sleep 0.1; done
        grep -q ready "$W/proxy.ready" || { cat "$W/proxy.log"; exit 1; }
    fi
    # Ansible: no connection sharing between runs (ControlPersist would let a later run
    # reuse an earlier run's connections), the fleet's known_hosts, strict checking.
    export ANSIBLE_HOST_KEY_CHECKING=True ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3
    export ANSIBLE_SSH_ARGS="-o ControlMaster=no -o UserKnownHostsFile=$W/known_hosts -o IdentitiesOnly=yes"
    export ANSIBLE_PRIVATE_KEY_FILE=$W/user_key ANSIBLE_LOCAL_TEMP=$W/ansible-tmp
    export ANSIBLE_NOCOLOR=1 ANSIBLE_DEPRECATION_WARNINGS=False ANSIBLE_SYSTEM_WARNINGS=False
    # Wait until every sshd listens.
    for _ in $(seq 100); do
        [ "$(ls "$W"/sshd*.pid 2>/dev/null | wc -l)" -ge "${#PIDS[@]}" ] && break
        sleep 0.1
    done
    servers_cgroup
}

# measure NAME CHECK -- COMMAND...: runs COMMAND under GNU time (wall, user+sys of the
# whole process tree, peak RSS of the largest process), evaluates CHECK, records a line.
measure() {
    local name=$1 check=$2; shift 3
    local t rc=0 before after; t=$(mktemp)
    sessions_gone
    before=$(server_ns)
    # A tool that runs past MEASURE_TIMEOUT seconds (default 900) is stopped and
    # reported as not finished.
    /usr/bin/time -f '%e %U %S %M' -o "$t" timeout "${MEASURE_TIMEOUT:-900}" "$@" \
        >"$W/last.out" 2>"$W/last.err" || rc=$?
    sessions_gone
    after=$(server_ns)
    if [ "$rc" = 124 ]; then
        echo "  $name did not finish within ${MEASURE_TIMEOUT:-900} s: stopped"
        printf '%s\t%s\n' "$name" "${MEASURE_TIMEOUT:-900}" >>"$W/unfinished.tsv"
        rm -f "$t"; return 0
    elif [ "$rc" != 0 ]; then
        echo "  $name FAILED: $(tail -3 "$W/last.err")"; rm -f "$t"; return 0
    fi
    if ! eval "$check"; then
        echo "  $name: result check FAILED (not every host ok, or output incomplete)"
        printf '%s\t%s\n' "$name" "check" >>"$W/unfinished.tsv"
        rm -f "$t"; return 0
    fi
    local wall user sys rss cpu server
    read -r wall user sys rss <"$t"; rm -f "$t"
    cpu=$(echo "$user + $sys" | bc)
    server=$(echo "scale=2; ($after - $before) / 1000000000" | bc)
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$wall" "$cpu" "$rss" "$server" >>"$RESULTS"
    printf '  %-34s wall %6.2fs  cpu %6.2fs  peak rss %7d KiB  servers %6.2fs\n' "$name" "$wall" "$cpu" "$rss" "$server"
}

# tmeasure: measure, after writing out the page cache's dirty data (`sync`, untimed), so
# that no tool's flush to disk waits for an earlier tool's writeback (transfer benchmarks).
tmeasure() { sync; measure "$@"; }

# sum_of FILE: its SHA-256, for result checks.
sum_of() { sha256sum <"$1" | cut -d' ' -f1; }

# machine_line: cores, CPU model, memory, load, OpenSSH version.
machine_line() {
    echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); load (1, 5, 15 min) before the runs ${LOAD_BEFORE:-?}, after $(cut -d' ' -f1-3 /proc/loadavg); $(ssh -V 2>&1)."
}

# report TITLE COMMAND NOTE: the results of this run as a Markdown file under
# bench/results/ (named by $REPORT_NAME), printed too.
report() {
    local title=$1 command=$2 note=$3
    OUT=$ROOT/bench/results/$REPORT_NAME-$(date -u +%Y-%m-%d).md
    mkdir -p "$ROOT/bench/results"
    {
        echo "# $title"
        echo
        machine_line
        echo "Loopback; plain users with no rc files; medians over the runs of each tool (column runs), tools alternating. Command: \`$command\`."
        echo
        python3 - "$RESULTS" "$HOSTS" <<'PY'
import os, statistics, sys, collections
rows = collections.OrderedDict()
for line in open(sys.argv[1]):
    name, wall, cpu, rss, server = line.rstrip("\n").split("\t")
    rows.setdefault(name, []).append((float(wall), float(cpu), int(rss), float(server)))
hosts = int(sys.argv[2])
cores = os.cpu_count()
med = lambda n, i: statistics.median(r[i] for r in rows[n])
base = next((n for n in rows if n.startswith("rexec")), None)
print("| tool | runs | hosts ok | wall s | client CPU s | CPU ms per host | peak RSS MiB | servers' CPU s | floor s | wall / floor | rexec wall ratio | rexec CPU ratio |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for n in rows:
    w, c, r, sv = med(n, 0), med(n, 1), med(n, 2), med(n, 3)
    # The floor: the CPU this run needed (servers and client) spread over every core.
    floor = (sv + c) / cores
    fr = f"{w / floor:.2f}" if floor > 0 else ""
    peer = base is not None and not n.startswith("rexec")
    wr = f"{med(base, 0) / w:.2f}" if peer and w > 0 else ""
    cr = f"{med(base, 1) / c:.2f}" if peer and c > 0 else ""
    print(f"| {n} | {len(rows[n])} | {hosts}/{hosts} in every run | {w:.2f} | {c:.2f} | {1000 * c / hosts:.1f} | {r / 1024:.0f} | {sv:.2f} | {floor:.2f} | {fr} | {wr} | {cr} |")
unfinished = os.path.join(os.path.dirname(sys.argv[1]), "unfinished.tsv")
if os.path.exists(unfinished):
    for line in open(unfinished):
        name, limit = line.rstrip("\n").split("\t")
        if limit == "check":
            print(f"| {name} | 1 | failed its check: not every host ok, or output incomplete | | | | | | | | | |")
        else:
            print(f"| {name} | stopped | did not finish within {limit} s | | | | | | | | | |")
print()
print("Ratios are against the first rexec line. Client CPU is user + system time of the tool")
print("and every process it waited for (one `ssh` per host for parallel-ssh, clush, pdsh and")
print("Ansible). The sshd servers run on the same cores, so wall time includes their work.")
print("Servers' CPU: every sshd of the fleet and all its children (sessions and the commands),")
print("from a cpuacct cgroup. Floor: servers' and client CPU over the cores, the wall time")
print("if every core were busy throughout. Peak RSS is that of the largest single process.")
PY
        [ -z "$note" ] || { echo; echo "$note"; }
    } >"$OUT"
    cat "$OUT"
    echo "written to $OUT"
}

ansible_version() { "$ANSIBLE" --version 2>/dev/null | head -1 | sed 's/\[//; s/\]//'; }
pssh_lib_version() { echo "parallel-ssh $("$PYTHON" -c 'import importlib.metadata as m; print(m.version("parallel-ssh"))')"; }
