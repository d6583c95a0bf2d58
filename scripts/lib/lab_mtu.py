"""Lab test `mtu`: the output interface's MTU, in unifw and in the Linux
namespace firewall with the same iptables-save file (tests/lab/mtu.ipt;
unifw reads it through tests/lab/mtu.rules, which sets eth1's MTU to 1400).

The receiver's side is a 1400-byte link (eth1 and the receiver's own end);
the receiver advertises an MSS of 1460 (`advmss`), so the sender's TCP
must learn the path MTU from the firewall's ICMP "fragmentation needed".
Each probe goes to its own receiver address, so that one probe's learnt
path MTU (the sender caches it per destination) does not change another:
- a 1450-byte UDP datagram without DF to 10.2.0.3 arrives whole, in two
  fragments on the receiver's link (the firewall cut it);
- a 1450-byte DF ping to 10.2.0.4 gets "Frag needed and DF set (mtu =
  1400)" from 10.1.0.1;
- a TCP stream of 4 MB to 10.2.0.2 arrives in full, and the sender's route
  to it then shows the learnt path MTU of 1400.
"""

import re

import lab
from lab_tests import RECEIVER_FW, RECEIVER_HOST, SENDER_FW, fw_boot, wait_for_line

MTU_RULES = "tests/lab/mtu.rules"
MTU_IPT = "tests/lab/mtu.ipt"
LINK_MTU = "1400"
UDP_HOST, PING_HOST = "10.2.0.3", "10.2.0.4"
STREAM_BYTES = 4 << 20

UDP_SINK = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 6001))
s.settimeout(10)
print("listening", flush=True)
try:
    data, _ = s.recvfrom(65535)
    print(len(data), flush=True)
except socket.timeout:
    print("timeout", flush=True)
"""

# IP_MTU_DISCOVER = 10, IP_PMTUDISC_DONT = 0: no DF, and no local PMTU check.
UDP_SOURCE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 10, 0)
s.sendto(bytes(range(256)) * 5 + bytes(1422 - 1280), (sys.argv[1], 6001))
"""

# The IPv4 packets to ARGV[2] (UDP) on interface ARGV[1], as
# "LENGTH@OFFSET", until one without More Fragments.
FRAGMENT_SNIFF = """
import select, socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind((sys.argv[1], 0))
print("listening", flush=True)
seen, more = [], True
deadline = time.monotonic() + 10
while more and time.monotonic() < deadline:
    if not select.select([s], [], [], 0.5)[0]:
        continue
    ip = s.recv(65535)[14:]
    if ip[16:20] != socket.inet_aton(sys.argv[2]) or ip[9] != 17:
        continue
    field = int.from_bytes(ip[6:8], "big")
    more = bool(field & 0x2000)
    seen.append(f"{int.from_bytes(ip[2:4], 'big')}@{(field & 0x1fff) * 8}")
print(" ".join(seen) or "none", flush=True)
"""

TCP_SINK = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5201))
s.listen(1)
s.settimeout(60)
print("listening", flush=True)
c, _ = s.accept()
c.settimeout(60)
total = 0
while True:
    data = c.recv(1 << 16)
    if not data:
        break
    total += len(data)
print(total, flush=True)
"""

TCP_SOURCE = """
import socket, sys
s = socket.create_connection((sys.argv[1], 5201), timeout=60)
s.sendall(bytes(int(sys.argv[2])))
s.shutdown(socket.SHUT_WR)
s.recv(1)
print("sent", flush=True)
"""


def last_line(path):
    """The last line of file PATH ("" if none)."""
    try:
        return (path.read_text().strip().splitlines() or [""])[-1]
    except FileNotFoundError:
        return ""


def sink(run, label, kind, code, *args):
    """Starts a sink (UDP_SINK, TCP_SINK, FRAGMENT_SNIFF with ARGS) in the
    receiver's namespace; returns (process, log) once it listens."""
    log = run.log_dir / f"mtu-{label}-{kind}.log"
    process = run.lab.start(["python3", "-c", code, *args], ns=run.lab.receiver, out=log)
    if not wait_for_line(log, "listening", 10):
        raise lab.LabError(f"mtu: the {kind} sink did not start")
    return process, log


def receiver_link(run):
    """The receiver's end at MTU 1400, two more addresses, and MSS 1460
    advertised so that TCP depends on path-MTU discovery."""
    the_lab, ns, end = run.lab, run.lab.receiver, run.lab.taps[1]
    the_lab.ip("-n", ns, "link", "set", end, "mtu", LINK_MTU)
    for extra in (UDP_HOST, PING_HOST):
        the_lab.ip("-n", ns, "addr", "add", f"{extra}/24", "dev", end)
    the_lab.ip("-n", ns, "route", "change", "default", "via", RECEIVER_FW, "dev", end, "advmss", "1460")


def outcomes(run, label):
    """What the sender sees of the three probes (see the module's doc)."""
    the_lab, sender = run.lab, run.lab.sender
    receiver_link(run)
    results = {}
    process, log = sink(run, label, "udp", UDP_SINK)
    sniffer, sniffed = sink(run, label, "fragments", FRAGMENT_SNIFF, the_lab.taps[1], UDP_HOST)
    the_lab.run(sender, ["python3", "-c", UDP_SOURCE, UDP_HOST], timeout=10)
    for waited in (process, sniffer):
        try:
            waited.wait(timeout=15)
        except Exception:  # noqa: BLE001 - a sink that hangs is stopped below
            pass
    the_lab.stop([process, sniffer])
    results["udp datagram without DF, bytes received"] = last_line(log)
    results["udp datagram without DF, IP length@offset on the 1400 link"] = last_line(sniffed)

    _, out = the_lab.run(sender, ["ping", "-c1", "-W3", "-M", "do", "-s", "1422", PING_HOST], timeout=10)
    found = re.search(r"From (\S+) .*Frag needed and DF set \(mtu = (\d+)\)", out)
    results["DF ping: frag needed from, mtu"] = found.groups() if found else out.strip().replace("\n", "; ")

    process, log = sink(run, label, "tcp", TCP_SINK)
    _, out = the_lab.run(sender, ["python3", "-c", TCP_SOURCE, RECEIVER_HOST, str(STREAM_BYTES)], timeout=90)
    try:
        process.wait(timeout=15)
    except Exception:  # noqa: BLE001
        pass
    the_lab.stop([process])
    results["TCP stream, bytes received"] = last_line(log)
    _, route = the_lab.run(sender, ["ip", "route", "get", RECEIVER_HOST])
    learnt = re.search(r"\bmtu (\d+)", route)
    results["TCP sender's learnt path MTU"] = learnt.group(1) if learnt else route.strip()
    return results


EXPECTED = {
    "udp datagram without DF, bytes received": "1422",
    # RFC 791 / Linux's cut: 1376 payload bytes (a multiple of 8), then 54.
    "udp datagram without DF, IP length@offset on the 1400 link": "1396@0 74@1376",
    "DF ping: frag needed from, mtu": (SENDER_FW, LINK_MTU),
    "TCP stream, bytes received": str(STREAM_BYTES),
    "TCP sender's learnt path MTU": LINK_MTU,
}


def mtu(run):
    """Path MTU through unifw and through Linux: fragmentation, frag needed,
    path-MTU discovery of a TCP stream; identical outcomes."""
    print("lab: MTU 1400 on the receiver's side (tests/lab/mtu.rules), then the Linux namespace firewall")
    got = {}
    if not fw_boot(run, "mtu", MTU_RULES):
        return
    run.expect_console(r"eth1: MTU 1400", "mtu: unifw's eth1 has the rules file's MTU")
    got["unifw"] = outcomes(run, "unifw")
    run.lab.down()
    run.lab.linuxfw_up(lab.ROOT / MTU_IPT)
    run.lab.ip("-n", run.lab.linuxfw, "link", "set", "eth1", "mtu", LINK_MTU)
    got["linux"] = outcomes(run, "linux")
    for what, want in EXPECTED.items():
        for system in ("unifw", "linux"):
            value = got[system][what]
            run.check(value == want, f"mtu: {system}: {what}: {value}" if value == want
                      else f"mtu: {system}: {what}: expected {want}, got {value}")
    same = got["unifw"] == got["linux"]
    run.check(same, "mtu: unifw and Linux agree on every probe" if same
              else f"mtu: unifw {got['unifw']} but Linux {got['linux']}")
    run.lab.down()
    run.console = None
