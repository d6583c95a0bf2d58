"""Lab test `nat`: tests/lab/nat.ipt (the sender's subnet masqueraded
behind eth1's address 10.2.0.1, port 2222 of it forwarded to the sender's
echo server) in unifw, then the same file in the Linux namespace firewall
(iptables-restore). From the sender, through the masquerade: a TCP stream
(256 KiB each way to a blocking echo server, offloads on: partial
checksums and TSO), a UDP
datagram, a 3000-byte UDP datagram (fragmented both ways), three pings, a
UDP datagram to a closed port (the receiver's port unreachable must come
back translated: `refused`); from the receiver, TCP and UDP to
10.2.0.1:2222 (DNAT to 10.1.0.2:5001; FORWARD accepts it by
`-m conntrack --ctorigdstport 2222`, so UDP to 2223, DNATed to the same
server, times out). The receiver's sniffer gives the
source address and whether the source port was kept. Each result must be
the expected one, and unifw's must equal Linux's.
"""

import time

from lab_tests import PROBE, RECEIVER_FW, RECEIVER_HOST, fw_boot, fw_serve, through_linux, wait_for_line

RULES = "tests/lab/nat.ipt"
POOL_RULES = "tests/lab/nat-pool.ipt"

# Six UDP flows at once from ports 41001-41006 to the receiver's echo
# server, each socket kept open: prints what each got (ok or timeout).
POOL_CLIENT = r"""
import socket
socks = []
for port in range(41001, 41007):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    s.settimeout(1.5)
    s.connect(("10.2.0.2", 5001))
    socks.append(s)
words = []
for s in socks:
    s.send(b"pool")
    try:
        words.append("ok" if s.recv(100) == b"pool" else "bad")
    except socket.timeout:
        words.append("timeout")
print(" ".join(words))
"""

# A client in the sender's namespace: binds PORT, sends SIZE bytes to
# DST:5001 over PROTO and reads the echo; prints ok or what went wrong.
CLIENT = r"""
import socket, sys, threading
proto, dst, port, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.settimeout(5)
data = bytes(i % 251 for i in range(size))
try:
    s.connect((dst, int(sys.argv[5]) if len(sys.argv) > 5 else 5001))
    if proto == "tcp":
        threading.Thread(target=s.sendall, args=(data,), daemon=True).start()
        got = b""
        while len(got) < size:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    else:
        s.send(data)
        got = s.recv(65536)
    print("ok" if got == data else f"short {len(got)}")
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print(type(e).__name__)
"""

# A blocking TCP echo server on port 5010 for the stream (probe.py's
# echo server is non-blocking and gives up on a full send buffer).
STREAM_SERVER = r"""
import socket, threading
def echo(conn):
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            conn.sendall(data)
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", 5010))
t.listen(16)
print("serving", flush=True)
while True:
    conn, _ = t.accept()
    threading.Thread(target=echo, args=(conn,), daemon=True).start()
"""

# (name, namespace side, proto, destination, source port, size, destination port)
CASES = (
    ("tcp stream", "s", "tcp", RECEIVER_HOST, 40001, 262144, 5010),
    ("udp", "s", "udp", RECEIVER_HOST, 40002, 100, 5001),
    ("udp fragmented", "s", "udp", RECEIVER_HOST, 40003, 3000, 5001),
    ("udp closed port", "s", "udp", RECEIVER_HOST, 40004, 10, 5999),
    ("dnat tcp", "r", "tcp", RECEIVER_FW, 40005, 1000, 2222),
    ("dnat udp", "r", "udp", RECEIVER_FW, 40006, 100, 2222),
    ("dnat udp other port", "r", "udp", RECEIVER_FW, 40007, 100, 2223),
)

EXPECTED = {
    "tcp stream": "ok",
    "udp": "ok",
    "udp fragmented": "ok",
    "udp closed port": "refused",
    "dnat tcp": "ok",
    "dnat udp": "ok",
    # DNATed to the same server, but FORWARD wants --ctorigdstport 2222.
    "dnat udp other port": "timeout",
    "ping": "ok",
    # At the receiver: masqueraded to eth1's address, the port kept.
    "tcp stream seen from": "10.2.0.1 port kept",
    "udp seen from": "10.2.0.1 port kept",
    "udp fragmented seen from": "10.2.0.1 port kept",
}


def observe(run, tag):
    """Runs CASES and a ping through the firewall in place; returns what
    each gave, and how the receiver saw the masqueraded sources."""
    the_lab = run.lab
    ns = {"s": the_lab.sender, "r": the_lab.receiver}
    sniff = run.log_dir / f"{tag}-sniff-receiver.log"
    sniffer = the_lab.start(["python3", PROBE, "sniff"], ns=the_lab.receiver, out=sniff)
    stream_log = run.log_dir / f"{tag}-stream-server.log"
    server = the_lab.start(["python3", "-c", STREAM_SERVER], ns=the_lab.receiver, out=stream_log)
    wait_for_line(sniff, "sniffing", 5)
    wait_for_line(stream_log, "serving", 5)
    seen = {}
    for name, side, proto, dst, sport, size, dport in CASES:
        _, out = the_lab.run(ns[side], ["python3", "-c", CLIENT, proto, dst, str(sport), str(size), str(dport)],
                             timeout=30)
        seen[name] = (out.strip().splitlines() or [""])[-1]
    code, _ = the_lab.run(the_lab.sender, ["ping", "-c3", "-i0.2", "-W2", "-q", RECEIVER_HOST])
    seen["ping"] = "ok" if code == 0 else "lost"
    time.sleep(0.3)
    the_lab.stop([sniffer, server])
    lines = [line.split() for line in sniff.read_text().splitlines()]
    for name, side, proto, dst, sport, _, dport in CASES:
        if side != "s" or dport not in (5001, 5010):
            continue
        # "PROTO SRC SPORT DST DPORT FLAGS" of a packet to the echo server
        # from the client's port (another port: the source was moved).
        first = next((f for f in lines if len(f) == 6 and f[0] == proto and f[2] == str(sport)
                      and f[3] == dst and f[4] == str(dport)), None)
        seen[f"{name} seen from"] = f"{first[1]} port kept" if first else "port changed or not seen"
    return seen


def observe_pool(run, tag):
    """Runs POOL_CLIENT from the sender; returns how many flows were
    answered and the source ports the receiver saw (sorted, as a string)."""
    the_lab = run.lab
    sniff = run.log_dir / f"{tag}-sniff-receiver.log"
    sniffer = the_lab.start(["python3", PROBE, "sniff"], ns=the_lab.receiver, out=sniff)
    wait_for_line(sniff, "sniffing", 5)
    _, out = the_lab.run(the_lab.sender, ["python3", "-c", POOL_CLIENT], timeout=30)
    time.sleep(0.3)
    the_lab.stop([sniffer])
    words = (out.strip().splitlines() or [""])[-1].split()
    ports = sorted({f[2] for f in (line.split() for line in sniff.read_text().splitlines())
                    if len(f) == 6 and f[0] == "udp" and f[1] == RECEIVER_FW and f[4] == "5001"})
    return {"pool answered": str(words.count("ok")), "pool source ports": " ".join(ports)}


def nat_pool(run):
    """The SNAT port range of POOL_RULES with more flows than ports."""
    expected = {"pool answered": "4", "pool source ports": "6000 6001 6002 6003"}
    ours = None
    if fw_boot(run, "nat-pool", POOL_RULES) and fw_serve(run):
        ours = observe_pool(run, "nat-pool-unifw")
        run.expect_no_console("PANIC|ERROR", "nat: no errors on the unifw console (pool)")
    linux = through_linux(run, "nat-pool", POOL_RULES, lambda: fw_serve(run) and observe_pool(run, "nat-pool-linux"))
    compare(run, expected, ours, linux)


def compare(run, expected, ours, linux):
    for name, want in expected.items():
        got, reference = (ours or {}).get(name), (linux or {}).get(name)
        run.check(got == want, f"nat: unifw {name}: {got}" + ("" if got == want else f" (expected {want})"))
        run.check(reference == got, f"nat: Linux {name}: {reference}" + ("" if reference == got else " (differs)"))


def nat(run):
    print(f"lab: NAT with {RULES}: masquerade, port forward, ICMP errors, fragments; unifw vs Linux")
    ours = None
    if fw_boot(run, "nat", RULES) and fw_serve(run):
        ours = observe(run, "nat-unifw")
        run.expect_no_console("PANIC|ERROR", "nat: no errors on the unifw console")
    linux = through_linux(run, "nat", RULES, lambda: fw_serve(run) and observe(run, "nat-linux"))
    compare(run, EXPECTED, ours, linux)
    nat_pool(run)
