#!/usr/bin/env bash
# How many direct-tcpip channels one connection to an OpenSSH sshd carries at once (the
# evidence behind rexec's cap on channels per jump host connection; README "Jump hosts").
# Not a test: it prints what it measured.
#
# An sshd with OpenSSH's defaults for MaxSessions (10) and MaxStartups, started with a
# soft RLIMIT_NOFILE of 1024 (what systemd gives a service), one `ssh -N -L` connection to
# it, and N TCP connections through the forward, each one direct-tcpip channel to an echo
# server, all held open at once. Needs root (a throw-away sshd) and the harness's test
# user `rexec-test` (run any test once to create it).
#
#   bench/jump-channels.sh [N]     # default 1500
set -euo pipefail
N=${1:-1500}
USER_NAME=rexec-test
dir=$(mktemp -d /tmp/rexec-jump-channels.XXXXXX)
chmod 755 "$dir"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$dir/sshd.pid" ] && kill "$(cat "$dir/sshd.pid")" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SSHD_PORT=$(free_port); ECHO_PORT=$(free_port); FWD_PORT=$(free_port)
ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$dir/user_key"
cp "$dir/user_key.pub" "$dir/authorized_keys"; chmod 644 "$dir/authorized_keys"
cat > "$dir/sshd_config" <<CONF
Port $SSHD_PORT
ListenAddress 127.0.0.1
HostKey $dir/host_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
AllowUsers $USER_NAME
LogLevel VERBOSE
CONF
mkdir -p /run/sshd
(ulimit -Sn 1024; exec /usr/sbin/sshd -D -e -f "$dir/sshd_config" 2> "$dir/sshd.log") &
pids+=($!)
cat > "$dir/echo.py" <<'PY'
import selectors, socket, sys
sel = selectors.DefaultSelector()
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1]))); ls.listen(4096); ls.setblocking(False)
sel.register(ls, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        s = key.fileobj
        if s is ls:
            c, _ = ls.accept(); c.setblocking(False); sel.register(c, selectors.EVENT_READ)
            continue
        try:
            d = s.recv(4096)
        except OSError:
            d = b""
        if d:
            s.sendall(d)
        else:
            sel.unregister(s); s.close()
PY
cat > "$dir/client.py" <<'PY'
import socket, sys, time
n, port = int(sys.argv[1]), int(sys.argv[2])
held, first_failure = [], None
t0 = time.time()
for i in range(n):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"x")
        if s.recv(1) == b"x":
            held.append(s)
            continue
        s.close()
        first_failure = first_failure or f"channel {i + 1}: closed"
    except OSError as e:
        first_failure = first_failure or f"channel {i + 1}: {e}"
print(f"{len(held)} of {n} channels open at once on one connection "
      f"({time.time() - t0:.1f}s); first failure: {first_failure}")
PY
python3 "$dir/echo.py" "$ECHO_PORT" & pids+=($!)
sleep 1
ssh -N -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ControlMaster=no \
  -o LogLevel=ERROR -i "$dir/user_key" -p "$SSHD_PORT" \
  -L "127.0.0.1:$FWD_PORT:127.0.0.1:$ECHO_PORT" "$USER_NAME@127.0.0.1" 2> "$dir/ssh.log" &
pids+=($!)
sleep 2
sshd -V 2>&1 | head -1
python3 "$dir/client.py" "$N" "$FWD_PORT"
echo "sshd log, counted:"
sort "$dir/sshd.log" | uniq -c | sort -rn | head -5
echo "ssh client log (last line): $(tail -1 "$dir/ssh.log")"
