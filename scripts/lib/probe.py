#!/usr/bin/env python3
"""Probe traffic for the lab's forwarding tests (scripts/lib/lab_tests.py).

Plain sockets only (no scapy). Run inside a lab namespace, as root for the
raw-socket commands:

  probe.py serve PORT...              TCP and UDP echo servers on PORT...
  probe.py tcp DST PORT [-t SEC]      connect, send, read the echo; prints one
                                      word: ok, refused, timeout, or the errno
                                      name (EHOSTUNREACH, ...)
  probe.py udp DST PORT [-t SEC]      same over a connected UDP socket (an ICMP
                                      port-unreachable gives "refused")
  probe.py sniff                      prints every IPv4 packet arriving on a
                                      non-loopback interface, one line each,
                                      until SIGTERM (AF_PACKET)
  probe.py plan [N] [--seed S] [--local PCT]
                                      writes N probes (default 300) between
                                      the lab's extra addresses, both ways;
                                      PCT percent of them (default 0) go to
                                      one of the firewall's own addresses
                                      instead
  probe.py send PLAN [--rate R]       sends the plan's probes whose source
                                      address is local: TCP SYNs (connect),
                                      UDP datagrams, ICMP echoes
  probe.py judge PLAN LOG...          verdict of each probe from the sniff
                                      logs of both ends; prints
                                      "ID VERDICT" lines

A plan line is "ID PROTO SRC SPORT DST DPORT" (PROTO tcp, udp or icmp; for
icmp SPORT is the echo identifier and DPORT is ignored). Verdicts: "pass"
(the probe reached its destination), "rst" (a TCP RST came back instead),
"icmp-T/C" (an ICMP error of type T, code C quoting the probe came back),
"drop" (nothing arrived and nothing came back). A probe to the firewall
itself (which runs no servers) passes when it is answered: an echo reply,
or a SYN-ACK; a closed port's answer is "rst" or "icmp-3/3".
"""

import argparse
import errno
import os
import selectors
import signal
import socket
import struct
import sys
import time


def serve(ports):
    """Echo servers: every TCP connection and UDP datagram is echoed."""
    sel = selectors.DefaultSelector()
    for port in ports:
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind(("0.0.0.0", port))
        t.listen(128)
        t.setblocking(False)
        sel.register(t, selectors.EVENT_READ, "accept")
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("0.0.0.0", port))
        sel.register(u, selectors.EVENT_READ, "udp")
    print("serving", *ports, flush=True)
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            try:
                if key.data == "accept":
                    conn, _ = sock.accept()
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ, "tcp")
                elif key.data == "udp":
                    data, peer = sock.recvfrom(65535)
                    sock.sendto(data, peer)
                else:
                    data = sock.recv(65535)
                    if data:
                        sock.sendall(data)
                    else:
                        sel.unregister(sock)
                        sock.close()
            except OSError:
                if key.data == "tcp":
                    sel.unregister(sock)
                    sock.close()


def outcome(exc):
    if isinstance(exc, socket.timeout):
        return "timeout"
    if exc.errno == errno.ECONNREFUSED:
        return "refused"
    return errno.errorcode.get(exc.errno, str(exc.errno))


def client(kind, dst, port, timeout):
    """One request/response over TCP or a connected UDP socket."""
    stype = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    payload = b"unifw-probe %d\n" % os.getpid()
    with socket.socket(socket.AF_INET, stype) as s:
        s.settimeout(timeout)
        try:
            s.connect((dst, port))
            s.send(payload)
            data = s.recv(65535)
            return "ok" if data == payload else "bad-echo"
        except OSError as exc:
            return outcome(exc)


def ip_fields(pkt):
    """(proto, src, dst, l4 bytes) of an IPv4 packet, or None."""
    if len(pkt) < 20 or pkt[0] >> 4 != 4:
        return None
    ihl = (pkt[0] & 15) * 4
    return pkt[9], socket.inet_ntoa(pkt[12:16]), socket.inet_ntoa(pkt[16:20]), pkt[ihl:]


def describe(pkt):
    """One line for a captured packet: what the judge needs."""
    f = ip_fields(pkt)
    if f is None:
        return None
    proto, src, dst, l4 = f
    if proto in (6, 17) and len(l4) >= 4:
        sport, dport = struct.unpack("!HH", l4[:4])
        name = "tcp" if proto == 6 else "udp"
        flags = l4[13] if proto == 6 and len(l4) >= 14 else 0
        return f"{name} {src} {sport} {dst} {dport} {flags}"
    if proto == 1 and len(l4) >= 8:
        typ, code = l4[0], l4[1]
        if typ in (0, 8):
            ident, _ = struct.unpack("!HH", l4[4:8])
            return f"icmp {src} {ident} {dst} 0 {typ}"
        inner = ip_fields(l4[8:])
        if inner is None:
            return None
        iproto, isrc, idst, il4 = inner
        iname = {1: "icmp", 6: "tcp", 17: "udp"}.get(iproto, str(iproto))
        if iproto == 1 and len(il4) >= 8:
            sport, dport = struct.unpack("!H", il4[4:6])[0], 0
        elif len(il4) >= 4:
            sport, dport = struct.unpack("!HH", il4[:4])
        else:
            return None
        return f"icmperr {src} {typ} {code} {iname} {isrc} {sport} {idst} {dport}"
    return None


def sniff(describe_packet=None, ethertype=0x0800):
    """Captures incoming frames of ETHERTYPE (default IPv4) until SIGTERM;
    one line per packet, as DESCRIBE_PACKET (default `describe`) gives it
    (None: not printed)."""
    describe_packet = describe_packet or describe
    # Cooked (SOCK_DGRAM): the packet without the link-layer header.
    s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ethertype))
    s.settimeout(0.2)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    print("sniffing", flush=True)
    while not stop:
        try:
            pkt, addr = s.recvfrom(65535)
        except socket.timeout:
            continue
        except InterruptedError:
            continue
        # addr = (ifname, proto, pkttype, ...): keep what arrives from the wire.
        if addr[0] == "lo" or addr[2] == socket.PACKET_OUTGOING:
            continue
        line = describe_packet(pkt)
        if line:
            print(line, flush=True)


# Ports the differential ruleset (tests/lab/fw-diff.ipt) cares about, and
# some it does not: both sides of each range edge appear.
PLAN_PORTS = [22, 53, 80, 443, 999, 1023, 1024, 3306, 5000, 5432, 5999, 6000,
              6001, 6015, 6021, 7000, 7999, 8000, 8085, 8091, 9000, 9100,
              9101, 10000, 20000, 20001, 40000, 40001, 50000]


def plan(n, seed, local=0):
    """N probes: protocol, direction (70% sender -> receiver), hosts .2-.9
    on each side, destination port from PLAN_PORTS; the source port (or
    ICMP identifier) is unique, privileged for every fifth probe, and in
    700-799 or 850 for some (the ruleset matches those). LOCAL percent of
    the probes go from hosts .3-.9 to one of the firewall's addresses
    (10.1.0.1 or 10.2.0.1: Linux answers for either on any interface)
    instead."""
    import random
    rng = random.Random(seed)
    for i in range(n):
        proto = rng.choice(["tcp", "tcp", "udp", "udp", "icmp"])
        fwd = rng.random() < 0.7
        a = "10.1.0.%d" % rng.randint(2, 9)
        b = "10.2.0.%d" % rng.randint(2, 9)
        src, dst = (a, b) if fwd else (b, a)
        if local and rng.random() * 100 < local:
            side = 1 if fwd else 2
            src, dst = "10.%d.0.%d" % (side, rng.randint(3, 9)), "10.%d.0.1" % rng.randint(1, 2)
        sport = 30000 + i if i % 5 else 600 + i // 5 * 2 + rng.randint(0, 1)
        if i == 7:
            sport = 850
        dport = 0 if proto == "icmp" else rng.choice(PLAN_PORTS)
        print(f"p{i} {proto} {src} {sport} {dst} {dport}")


def read_plan(path):
    plan = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 6 and not line.startswith("#"):
                pid, proto, src, sport, dst, dport = parts
                plan.append((pid, proto, src, int(sport), dst, int(dport)))
    return plan


def local_addrs():
    out = os.popen("ip -4 -o addr show").read().split()
    return {w.split("/")[0] for w in out if w.count(".") == 3 and "/" in w}


def icmp_checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def send(path, rate, linger):
    """Sends each local probe once, at RATE per second; keeps TCP sockets
    open for LINGER seconds so the kernel does not reset them early."""
    mine = local_addrs()
    # One raw socket per source address, bound to it: an unbound one
    # would send every echo from the interface's first address.
    icmp = {}
    keep = []
    sent = 0
    for pid, proto, src, sport, dst, dport in read_plan(path):
        if src not in mine:
            continue
        try:
            if proto == "icmp":
                body = b"unifw " + pid.encode()
                hdr = struct.pack("!BBHHH", 8, 0, 0, sport, 1)
                csum = icmp_checksum(hdr + body)
                hdr = struct.pack("!BBHHH", 8, 0, csum, sport, 1)
                if src not in icmp:
                    icmp[src] = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
                    icmp[src].bind((src, 0))
                icmp[src].sendto(hdr + body, (dst, 0))
            else:
                stype = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
                s = socket.socket(socket.AF_INET, stype)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((src, sport))
                s.setblocking(False)
                if proto == "tcp":
                    # One SYN only: no retransmission muddles the verdict.
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, 1)
                    s.connect_ex((dst, dport))
                else:
                    s.sendto(b"unifw " + pid.encode(), (dst, dport))
                keep.append(s)
            sent += 1
        except OSError as exc:
            print(f"probe {pid}: {exc}", file=sys.stderr)
        time.sleep(1.0 / rate)
    time.sleep(linger)
    print(f"sent {sent}", file=sys.stderr)


def judge(path, logs):
    seen = set()
    for log in logs:
        with open(log) as f:
            for line in f:
                seen.add(tuple(line.split()))
    tcp_in, udp_in, echo_in, rst, errs = set(), set(), set(), set(), {}
    for ev in seen:
        if ev[0] == "tcp" and len(ev) == 6:
            _, src, sport, dst, dport, flags = ev
            if int(flags) & 0x02 and not int(flags) & 0x10:
                tcp_in.add((src, sport, dst, dport))
            if int(flags) & 0x12 == 0x12:
                # A SYN-ACK: the probe reached its destination (the firewall).
                tcp_in.add((dst, dport, src, sport))
            if int(flags) & 0x04:
                rst.add((dst, dport, src, sport))
        elif ev[0] == "udp" and len(ev) == 6:
            udp_in.add(ev[1:5])
        elif ev[0] == "icmp" and ev[5] == "8":
            echo_in.add((ev[1], ev[2], ev[3]))
        elif ev[0] == "icmp" and ev[5] == "0":
            # An echo reply: the request reached its destination (the firewall).
            echo_in.add((ev[3], ev[2], ev[1]))
        elif ev[0] == "icmperr":
            _, _, typ, code, iname, isrc, isport, idst, idport = ev
            key = (iname, isrc, isport, idst) + (() if iname == "icmp" else (idport,))
            errs[key] = f"icmp-{typ}/{code}"
    for pid, proto, src, sport, dst, dport in read_plan(path):
        s, d = str(sport), str(dport)
        if proto == "tcp":
            arrived = (src, s, dst, d) in tcp_in
            back = "rst" if (src, s, dst, d) in rst else errs.get(("tcp", src, s, dst, d))
        elif proto == "udp":
            arrived = (src, s, dst, d) in udp_in
            back = errs.get(("udp", src, s, dst, d))
        else:
            arrived = (src, s, dst) in echo_in
            back = errs.get(("icmp", src, s, dst))
        print(pid, "pass" if arrived else back or "drop")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("serve")
    p.add_argument("ports", type=int, nargs="+")
    for kind in ("tcp", "udp"):
        p = sub.add_parser(kind)
        p.add_argument("dst")
        p.add_argument("port", type=int)
        p.add_argument("-t", "--timeout", type=float, default=3.0)
    sub.add_parser("sniff")
    p = sub.add_parser("plan")
    p.add_argument("n", type=int, nargs="?", default=300)
    p.add_argument("--seed", type=int, default=4)
    p.add_argument("--local", type=float, default=0)
    p = sub.add_parser("send")
    p.add_argument("plan")
    p.add_argument("--rate", type=float, default=200)
    p.add_argument("--linger", type=float, default=2.5)
    p = sub.add_parser("judge")
    p.add_argument("plan")
    p.add_argument("logs", nargs="+")
    a = ap.parse_args()
    if a.cmd == "serve":
        serve(a.ports)
    elif a.cmd in ("tcp", "udp"):
        print(client(a.cmd, a.dst, a.port, a.timeout))
    elif a.cmd == "sniff":
        sniff()
    elif a.cmd == "plan":
        plan(a.n, a.seed, a.local)
    elif a.cmd == "send":
        send(a.plan, a.rate, a.linger)
    else:
        judge(a.plan, a.logs)


if __name__ == "__main__":
    main()
