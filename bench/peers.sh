# shellcheck shell=bash disable=SC2034  # variables here are used by the scripts that source it
# Peers built outside rexec's tree (issue 13), sourced after bench_setup:
#   mpssh-rstp  a russh-based parallel ssh (github.com/z-image/mpssh-rstp), built from its
#               source with cargo in $PEERS/mpssh-rstp, never a dependency of rexec.
#               It knows only port 22 and keys from ssh-agent, and checks host keys against
#               $HOME/.ssh/known_hosts: it gets its own agent holding the fleet's user key
#               and a HOME whose known_hosts is the fleet's. Runs need FLEET_PORT=22.
#   fabric      Fabric (PyPI, paramiko based) in a venv under $PEERS, run through
#               bench/fabric_exec.py with the fleet's known_hosts and unknown keys refused.
# After peers_install: "${MPSSH[@]}" -f "$W/mpssh_hosts" COMMAND and "${FABRIC[@]}" COMMAND run
# COMMAND on every host of the fleet. mpssh-rstp prints nothing for a host whose command
# succeeded without output, "HOST => ..." for a failure.
PEERS=${PEERS:-/work/peers}
MPSSH_REPO=${MPSSH_REPO:-/work/.mirror/z-image+mpssh-rstp/repo}

peers_install() {
    mkdir -p "$PEERS"
    MPSSH=()
    if [[ " ${TOOLS:-mpssh-rstp} " != *" mpssh-rstp "* ]]; then
        :   # not asked for: not built
    elif [ -d "$PEERS/mpssh-rstp" ] || { [ -d "$MPSSH_REPO" ] && git clone -q "$MPSSH_REPO" "$PEERS/mpssh-rstp"; }; then
        (cd "$PEERS/mpssh-rstp" && cargo build --release --quiet)
        local home=$W/mpssh-home
        mkdir -p "$home/.ssh"
        cp "$W/known_hosts" "$home/.ssh/known_hosts"
        if [ -z "${MPSSH_AGENT_PID:-}" ]; then
            # Its own agent on its own socket; the other tools never see it.
            local agent
            agent=$(ssh-agent -s -a "$W/mpssh-agent.sock" | sed -n 's/^SSH_AGENT_PID=\([0-9]*\);.*/\1/p')
            MPSSH_AGENT_PID=$agent
            PIDS+=("$agent")
            SSH_AUTH_SOCK="$W/mpssh-agent.sock" ssh-add -q "$W/user_key" </dev/null
        fi
        # Addresses, not names: mpssh-rstp has no ssh_config.
        local i
        for i in $(seq 1 "$HOSTS"); do client_addr "$i"; done >"$W/mpssh_hosts"
        MPSSH=(env HOME="$home" SSH_AUTH_SOCK="$W/mpssh-agent.sock"
            "$PEERS/mpssh-rstp/target/release/mpssh-rstp" -u "$(host_user 1)" -d 0)
    else
        echo "mpssh-rstp: no source (neither $PEERS/mpssh-rstp nor $MPSSH_REPO)" >&2
    fi
    FABRIC_VENV=$PEERS/fabric-venv
    if [ ! -x "$FABRIC_VENV/bin/python" ] || ! "$FABRIC_VENV/bin/python" -c 'import fabric' 2>/dev/null; then
        python3 -m venv "$FABRIC_VENV"
        "$FABRIC_VENV/bin/pip" install -q fabric
    fi
    FABRIC=("$FABRIC_VENV/bin/python" "$ROOT/bench/fabric_exec.py" "$W/pssh_lib_hosts"
        "$W/user_key" "$W/known_hosts")
}
mpssh_version() { echo "mpssh-rstp $(git -C "$PEERS/mpssh-rstp" log -1 --format='%h (%cs)' 2>/dev/null)"; }
fabric_version() { "$FABRIC_VENV/bin/python" -c 'import fabric, paramiko; print(f"fabric {fabric.__version__}, paramiko {paramiko.__version__}")'; }
