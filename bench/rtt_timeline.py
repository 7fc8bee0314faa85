"""One connection's bench/delay-proxy log as the client sees it, and its round trips.

usage: rtt_timeline.py RTT_MS LOG

LOG lines are `CONN MS DIR BYTES` (DIR `>` client to server, `<` back), as the proxy read
them. The client sends a `>` chunk when the proxy reads it; it receives a `<` chunk half a
round trip after the proxy read it. Chunks of one direction less than 2 ms apart form one
burst. A round trip is one wait of the client: a burst it receives and then answers (or
ends with); each is annotated with the client's time from the last burst it sent, in
RTTs rounded to halves (more than 1 RTT when the server's CPU was slow to answer, e.g. on
a loaded machine; the server's identification comes unasked). The last lines are the
span in RTTs and `round trips: N`, N the number of waits.
"""

import sys


def main():
    rtt = float(sys.argv[1])
    events = []
    conns = set()
    for line in open(sys.argv[2]):
        parts = line.split()
        if len(parts) != 4:
            continue
        conn, ms, direction, size = parts
        conns.add(conn)
        t = float(ms) + (rtt / 2 if direction == "<" else 0.0)
        events.append((t, direction, int(size), conn))
    if len(conns) != 1:
        print(f"expected one connection in the log, found {len(conns)}")
        print("round trips: 0")
        return
    events.sort()
    bursts = []
    for t, d, n, _ in events:
        if bursts and bursts[-1][1] == d and t - bursts[-1][3] < 2.0:
            bursts[-1][2] += n
            bursts[-1][3] = t
            bursts[-1][4] += 1
        else:
            bursts.append([t, d, n, t, 1])
    waits = 0
    last_sent = 0.0
    for i, (t, d, n, _, chunks) in enumerate(bursts):
        note = ""
        if d == ">":
            last_sent = t
        else:
            answered = i + 1 == len(bursts) or bursts[i + 1][1] == ">"
            if answered:
                wait = round(2 * (t - last_sent) / rtt) / 2
                waits += 1
                note = f"  <- wait {waits}: {wait:g} RTT"
        arrow = "client -> server" if d == ">" else "server -> client"
        print(f"{t:8.1f} ms  {arrow}  {n:6d} bytes in {chunks} chunk(s){note}")
    print(f"span: {bursts[-1][3] - bursts[0][0]:.1f} ms = {(bursts[-1][3] - bursts[0][0]) / rtt:.2f} RTT")
    print(f"round trips: {waits}")


main()
