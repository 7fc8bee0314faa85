#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2034  # result checks are strings that measure() evals later
# Command fan-out benchmarks of issue 5: rexec against parallel-ssh (pssh), clush
# (clustershell), pdsh, Ansible (ad-hoc, `command` module), the Python parallel-ssh
# library, and (issue 13) mpssh-rstp and Fabric (bench/peers.sh), on loopback hosts, as
# plain users with no shell start-up files. Not a test:
# it prints figures and writes bench/results/exec-<scenario>-<date>.md.
#
#   bench/exec.sh fanout      # `true` on HOSTS hosts (default 100), parallelism 100
#   bench/exec.sh defaults    # `true` on 100 hosts, every tool with its default parallelism
#   bench/exec.sh output      # 10 MB of stdout from each of 20 hosts (OUTPUT_MB)
#   bench/exec.sh latency     # `true` on 100 hosts behind 20 ms of round-trip time
#   bench/exec.sh reuse       # the same command twice on 100 hosts: one client vs two runs
#
# Environment: HOSTS, RUNS (default 3), PAR (default 100), TOOLS (space-separated subset
# of: rexec parallel-ssh clush pdsh ansible pssh-lib mpssh-rstp fabric), RUNS_<tool> (fewer runs for one
# tool, e.g. RUNS_ansible=1), LATENCY_MS (latency scenario, 20), OUTPUT_MB (output
# scenario, 10), MEASURE_TIMEOUT (seconds before a tool is stopped, 900), REXEC_BEFORE
# (another rexec binary, measured as "rexec-before" next to rexec in fanout and latency).
set -euo pipefail
SCENARIO=${1:-fanout}
# The command line as given, for the results file.
CMDLINE="$(env | grep -E '^(HOSTS|RUNS|RUNS_[a-z_]+|PAR|TOOLS|LATENCY_MS|OUTPUT_MB|MEASURE_TIMEOUT)=' | sed -E "s/=(.* .*)/='\1'/" | sort | tr '\n' ' ')bench/exec.sh $SCENARIO"
RUNS=${RUNS:-3}
PAR=${PAR:-100}
ALL_TOOLS="rexec parallel-ssh clush pdsh ansible pssh-lib mpssh-rstp fabric"
TOOLS=${TOOLS:-$ALL_TOOLS}
# mpssh-rstp reaches port 22 only: the fleet's sshd listen there (on their own addresses).
[[ " $TOOLS " == *" mpssh-rstp "* ]] && export FLEET_PORT=22
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
unset SSH_AUTH_SOCK
bench_install
bench_install_python

case $SCENARIO in
    fanout) HOSTS=${HOSTS:-100} ;;
    defaults | latency | reuse) HOSTS=${HOSTS:-100} ;;
    output) HOSTS=${HOSTS:-20} ;;
    *) echo "unknown scenario $SCENARIO" >&2; exit 2 ;;
esac
[ "$SCENARIO" = latency ] && LATENCY_MS=${LATENCY_MS:-20}
bench_setup "exec-$SCENARIO" "$HOSTS" 0
RANGE=$(fleet_range)
# shellcheck source=bench/peers.sh
source "$ROOT/bench/peers.sh"
[[ " $TOOLS " == *" mpssh-rstp "* || " $TOOLS " == *" fabric "* ]] && peers_install
# Logins the fleet's sshd accepted so far (mpssh-rstp's result check: it prints nothing
# for a host whose command succeeded silently, and reports some channel errors as success).
accepted() { cat "$W"/sshd*.log | grep -c "Accepted publickey" || true; }
export PDSH_SSH_ARGS="-F $W/ssh_config %h"
RX=("$REXEC" -i "$W/hosts.toml" --no-agent -q -l "$RANGE")
ANS=("$ANSIBLE" all -i "$W/ansible.ini" -m command)

count() { grep -c -- "$1" "$W/last.out" || true; }
expect() { local n; n=$(count "$1"); [ "$n" = "$2" ] || { echo "  expected $2 lines matching $1, got $n"; false; }; }
# uses TOOL: TOOL is in $TOOLS and has runs left in this round: RUNS_<TOOL> (dashes as
# underscores, e.g. RUNS_ansible=1, RUNS_pssh_lib=1) caps one tool's runs below RUNS.
uses() {
    local cap="RUNS_${1//-/_}"
    [[ " $TOOLS " == *" $1 "* ]] && [ "$run" -le "${!cap:-$RUNS}" ]
}

# One round of `$CMD` (a command with no output) on every host; $1: "" for each
# tool's default parallelism, or a number. $2: a suffix for the tool names.
round_true() {
    local par=$1 tag=${2:-} f=() p=() a=() l=100
    if [ -n "$par" ]; then f=(-f "$par"); p=(-p "$par"); a=(-f "$par"); l=$par; fi
    uses rexec && measure "rexec$tag" 'expect "ok (exit 0)" "$HOSTS"' -- \
        "${RX[@]}" "${f[@]}" true
    # REXEC_BEFORE: another build of rexec (an older commit), for before/after figures.
    [ -n "${REXEC_BEFORE:-}" ] && uses rexec && measure "rexec-before$tag" \
        'expect "ok (exit 0)" "$HOSTS"' -- "$REXEC_BEFORE" "${RX[@]:1}" "${f[@]}" true
    uses parallel-ssh && measure "parallel-ssh$tag" 'expect "\[SUCCESS\]" "$HOSTS"' -- \
        parallel-ssh "${p[@]}" -h "$W/fleet.txt" -x "-F $W/ssh_config" true
    uses clush && measure "clush$tag" '[ ! -s "$W/last.err" ]' -- \
        clush "${f[@]}" -o "-F $W/ssh_config" -w "$RANGE" true
    uses pdsh && measure "pdsh$tag" '[ ! -s "$W/last.err" ]' -- \
        pdsh -S -R ssh "${f[@]}" -w "$RANGE" true
    uses ansible && measure "ansible$tag" 'expect "rc=0" "$HOSTS"' -- \
        "${ANS[@]}" "${a[@]}" -a true
    # The library's default pool_size is 100 (there is no "default" run without one).
    uses pssh-lib && measure "pssh-lib$tag" 'expect "exit=0" "$HOSTS"' -- \
        "$PYTHON" "$ROOT/bench/pssh_lib.py" "$W/pssh_lib_hosts" "$W/user_key" "$l" 1 true
    # mpssh-rstp: default parallelism 100, its default 10 ms pause between hosts set to 0.
    ACCEPTED=$(accepted)
    uses mpssh-rstp && [ "${#MPSSH[@]}" -gt 0 ] && measure "mpssh-rstp$tag" \
        '[ ! -s "$W/last.out" ] && [ $(( $(accepted) - ACCEPTED )) = "$HOSTS" ]' -- \
        "${MPSSH[@]}" -p "$l" -f "$W/mpssh_hosts" true
    # Fabric's ThreadingGroup: one thread per host, all at once (no parallelism limit).
    uses fabric && measure "fabric$tag" 'expect "exit=0" "$HOSTS"' -- \
        "${FABRIC[@]}" true
    return 0
}

# OUTPUT_MB (default 10) of stdout per host: lines of 64 characters (65 bytes with the
# newline), 160,000 lines for 10 MB.
OUTPUT_MB=${OUTPUT_MB:-10}
LINES=$(( OUTPUT_MB * 16000 ))
LINE=0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ@#
BIG="yes $LINE | head -n $LINES"
round_output() {
    local total=$(( HOSTS * LINES ))
    rm -rf "$W"/out-*
    uses rexec && measure "rexec" 'expect "^$LINE\$" "$total"' -- \
        "${RX[@]}" -f "$PAR" "$BIG"
    uses rexec && measure "rexec --out-dir" \
        '[ "$(cat "$W"/out-rexec/*.out | grep -c -x "$LINE")" = "$total" ]' -- \
        "${RX[@]}" -f "$PAR" --out-dir "$W/out-rexec" "$BIG"
    uses parallel-ssh && measure "parallel-ssh -i" 'expect "^$LINE\$" "$total"' -- \
        parallel-ssh -i -p "$PAR" -h "$W/fleet.txt" -x "-F $W/ssh_config" "$BIG"
    uses parallel-ssh && measure "parallel-ssh -o" \
        '[ "$(cat "$W"/out-pssh/* | grep -c -x "$LINE")" = "$total" ]' -- \
        parallel-ssh -o "$W/out-pssh" -p "$PAR" -h "$W/fleet.txt" -x "-F $W/ssh_config" "$BIG"
    uses clush && measure "clush" 'expect ": $LINE\$" "$total"' -- \
        clush -f "$PAR" -o "-F $W/ssh_config" -w "$RANGE" "$BIG"
    uses pdsh && measure "pdsh" 'expect ": $LINE\$" "$total"' -- \
        pdsh -S -R ssh -f "$PAR" -w "$RANGE" "$BIG"
    uses ansible && measure "ansible" 'expect "^$LINE\$" "$total"' -- \
        "${ANS[@]}" -f "$PAR" -a "sh -c '$BIG'"
    uses pssh-lib && measure "pssh-lib" 'expect "lines=$LINES" "$HOSTS"' -- \
        "$PYTHON" "$ROOT/bench/pssh_lib.py" "$W/pssh_lib_hosts" "$W/user_key" "$PAR" 1 "$BIG"
    uses mpssh-rstp && [ "${#MPSSH[@]}" -gt 0 ] && measure "mpssh-rstp" 'expect " -> $LINE\$" "$total"' -- \
        "${MPSSH[@]}" -p "$PAR" -f "$W/mpssh_hosts" "$BIG"
    uses fabric && measure "fabric" 'expect "lines=$LINES" "$HOSTS"' -- \
        "${FABRIC[@]}" "$BIG"
    return 0
}

# The same command twice on the same hosts.
round_reuse() {
    local twice=$(( 2 * HOSTS ))
    uses rexec && measure "rexec library, 2 runs on one connection" \
        'expect "^run 2: $HOSTS/$HOSTS ok" 1' -- \
        "$ROOT/target/release/examples/reuse" "$W/hosts.toml" "$RANGE" 2 true "$PAR"
    uses rexec && measure "rexec CLI, run twice" 'expect "ok (exit 0)" "$twice"' -- \
        sh -c '"$@" && "$@"' sh "${RX[@]}" -f "$PAR" true
    uses pssh-lib && measure "pssh-lib, 2 runs on one client" 'expect "exit=0" "$twice"' -- \
        "$PYTHON" "$ROOT/bench/pssh_lib.py" "$W/pssh_lib_hosts" "$W/user_key" "$PAR" 2 true
    uses parallel-ssh && measure "parallel-ssh, run twice" 'expect "\[SUCCESS\]" "$twice"' -- \
        sh -c '"$@" && "$@"' sh parallel-ssh -p "$PAR" -h "$W/fleet.txt" -x "-F $W/ssh_config" true
    uses clush && measure "clush, run twice" '[ ! -s "$W/last.err" ]' -- \
        sh -c '"$@" && "$@"' sh clush -f "$PAR" -o "-F $W/ssh_config" -w "$RANGE" true
    uses pdsh && measure "pdsh, run twice" '[ ! -s "$W/last.err" ]' -- \
        sh -c '"$@" && "$@"' sh pdsh -S -R ssh -f "$PAR" -w "$RANGE" true
    uses ansible && measure "ansible, run twice" 'expect "rc=0" "$twice"' -- \
        sh -c '"$@" && "$@"' sh "${ANS[@]}" -f "$PAR" -a true
    return 0
}

[ "$SCENARIO" = reuse ] && cargo build --release --locked --quiet --example reuse

for run in $(seq 1 "$RUNS"); do
    echo "run $run/$RUNS: $SCENARIO, $HOSTS hosts"
    case $SCENARIO in
        fanout | latency) round_true "$PAR" ;;
        defaults) round_true "" " (default)" ;;
        output) round_output ;;
        reuse) round_reuse ;;
    esac
done

TOOLNOTE="parallel-ssh, clush and pdsh run OpenSSH's ssh (one process per host); Ansible
(ansible-core, ad-hoc, \`command\` module, no ControlPersist between runs) runs ssh and a
Python module on each host; pssh-lib is the Python parallel-ssh library (libssh2, no host key
check; bench/pssh_lib.py). $(ansible_version); $(pssh_lib_version)."
if [[ " $TOOLS " == *" mpssh-rstp "* || " $TOOLS " == *" fabric "* ]]; then
    TOOLNOTE="$TOOLNOTE mpssh-rstp ($(mpssh_version), built from source with cargo outside rexec's tree;
russh 0.57) authenticates through its own ssh-agent holding the fleet's key and checks host keys
against the fleet's known_hosts (russh's check_known_hosts; an unknown key fails the host), port 22
only; run with -d 0 (its default pauses 10 ms between hosts). Fabric ($(fabric_version)) runs
through bench/fabric_exec.py: ThreadingGroup, one thread per host, known_hosts loaded and unknown
keys refused (paramiko RejectPolicy)."
fi
case $SCENARIO in
    fanout)
        REPORT_NAME=exec-fanout-${HOSTS}hosts
        report "Command fan-out: \`true\` on $HOSTS hosts, parallelism $PAR" \
            "$CMDLINE" "$TOOLNOTE" ;;
    defaults)
        REPORT_NAME=exec-defaults
        report "Command fan-out: \`true\` on $HOSTS hosts, each tool's default parallelism" \
            "$CMDLINE" "Defaults: rexec 64 hosts at once, parallel-ssh (pssh) 32, clush 64, pdsh 32, Ansible 5 forks; the pssh-lib line uses the library's default pool_size of 100. $TOOLNOTE" ;;
    output)
        REPORT_NAME=exec-output-${OUTPUT_MB}MB
        report "$OUTPUT_MB MB of stdout from each of $HOSTS hosts, parallelism $PAR" \
            "$CMDLINE" "Each host prints $LINES lines of 64 characters ($(( LINES * 65 )) bytes); every tool's output was checked complete (line count). rexec without --out-dir and parallel-ssh -i hold each host's output until the host is done, then print it; rexec --out-dir streams to DIR/<host>.out; clush and pdsh print lines as they arrive, prefixed with the host. $TOOLNOTE" ;;
    latency)
        REPORT_NAME=exec-latency
        report "Command fan-out: \`true\` on $HOSTS hosts behind ${LATENCY_MS} ms of round-trip time, parallelism $PAR" \
            "$CMDLINE" "Every connection goes through bench/delay-proxy (one process, delaying each direction by $(( LATENCY_MS / 2 )) ms); its own CPU is not counted for any tool. $TOOLNOTE" ;;
    reuse)
        REPORT_NAME=exec-reuse
        report "The same command (\`true\`) twice on $HOSTS hosts: one client keeping its connections against two separate runs, parallelism $PAR" \
            "$CMDLINE" "rexec library: examples/reuse.rs (Pool::connect_all, then Pool::run_command_on twice); pssh-lib: one ParallelSSHClient, run_command twice. The other lines run the tool twice in a row. $TOOLNOTE" ;;
esac
