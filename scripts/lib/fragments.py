#!/usr/bin/env python3
"""Fragment trains for the lab's fragment test (scripts/lib/lab_fragments.py).

Plain sockets only (no scapy), as root inside a lab namespace:

  fragments.py send DST PORT      sends the scenarios' fragments to DST:PORT
                                  with raw IPv4 (IP_HDRINCL); other sources
                                  (10.1.0.3-9) must be addresses of the sender
  fragments.py sniff SECONDS      counts, per scenario, the fragments that
                                  arrive (AF_PACKET) and the datagrams whose
                                  every fragment arrived; prints "sniffing",
                                  then one "SCENARIO FRAGMENTS DATAGRAMS" line
                                  per scenario after SECONDS or SIGTERM

The IP identification tells scenarios apart: scenario S, datagram N has id
S * 1000 + N; the noise of scenario "interleaved" uses ids from 60000.
"""

import signal
import socket
import struct
import sys
import time

PAYLOAD = 2000
# (name, datagrams sent, fragments each): what a complete datagram is.
SCENARIOS = ["in-order", "reverse", "dup-middle", "overlap", "incomplete", "tiny-first", "interleaved"]
NOISE_ID = 60000
NOISE_SOURCES = [f"10.1.0.{host}" for host in range(3, 10)]


def checksum(data):
    """The Internet checksum of DATA."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return ~total & 0xffff


def transport(proto, src, dst, port, ident):
    """A UDP datagram's or TCP segment's bytes (checksummed), PAYLOAD long."""
    data = (b"frag%05d" % ident) * (PAYLOAD // 9 + 1)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst)
    if proto == socket.IPPROTO_UDP:
        body = data[:PAYLOAD - 8]
        header = struct.pack("!HHHH", 40000 + ident % 1000, port, PAYLOAD, 0)
    else:
        body = data[:PAYLOAD - 20]
        # ACK|PSH, as a segment of an established connection would be.
        header = struct.pack("!HHIIBBHHH", 40000 + ident % 1000, port, ident, 1, 5 << 4, 0x18, 65535, 0, 0)
    segment = header + body
    total = checksum(pseudo + struct.pack("!BBH", 0, proto, len(segment)) + segment)
    at = 6 if proto == socket.IPPROTO_UDP else 16
    return segment[:at] + struct.pack("!H", total) + segment[at + 2:]


def fragment(proto, src, dst, ident, payload, start, end, more):
    """An IPv4 fragment carrying PAYLOAD[START:END] (the kernel fills the
    header checksum)."""
    piece = payload[start:end]
    flags = (0x2000 if more else 0) | (start // 8)
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(piece), ident, flags, 64, proto, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    return header + piece


def pieces(scenario):
    """The (start, end, more) pieces of one datagram of SCENARIO, in sending order."""
    a, b, c = (0, 800, True), (800, 1600, True), (1600, PAYLOAD, False)
    return {
        "in-order": [a, b, c],
        "reverse": [c, b, a],
        "dup-middle": [a, b, b, c],
        # [792, 1600) overlaps the first fragment's last 8 bytes (RFC 1858).
        "overlap": [a, (792, 1600, True), c],
        "incomplete": [a, c],
        # 16 bytes: the TCP header cut (RFC 1858 3.1), then the rest.
        "tiny-first": [(0, 16, True), (16, 800, True), b, c],
        "interleaved": [a, b, c],
    }[scenario]


def send(dst, port):
    """Sends every scenario: 20 datagrams each (one for "interleaved",
    whose first fragment is followed by 200 first fragments of other
    sources before the rest)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    src = "10.1.0.2"
    for number, scenario in enumerate(SCENARIOS, start=1):
        proto = socket.IPPROTO_TCP if scenario == "tiny-first" else socket.IPPROTO_UDP
        count = 1 if scenario == "interleaved" else 20
        for n in range(count):
            ident = number * 1000 + n
            payload = transport(proto, src, dst, port, ident)
            for index, (start, end, more) in enumerate(pieces(scenario)):
                s.sendto(fragment(proto, src, dst, ident, payload, start, end, more), (dst, 0))
                time.sleep(0.002)
                if scenario == "interleaved" and index == 0:
                    send_noise(s, dst, port)
        time.sleep(0.2)
    print("sent", flush=True)


def send_noise(s, dst, port):
    """200 first fragments of datagrams from the other sources that never complete."""
    for n in range(200):
        src = NOISE_SOURCES[n % len(NOISE_SOURCES)]
        payload = transport(socket.IPPROTO_UDP, src, dst, port, n)
        s.sendto(fragment(socket.IPPROTO_UDP, src, dst, NOISE_ID + n, payload, 0, 800, True), (dst, 0))
        time.sleep(0.002)


def sniff(seconds):
    """Counts arriving fragments and complete datagrams per scenario."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
    s.settimeout(0.2)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    seen = {}
    print("sniffing", flush=True)
    deadline = time.monotonic() + seconds
    while not stop and time.monotonic() < deadline:
        try:
            pkt, addr = s.recvfrom(65535)
        except (socket.timeout, InterruptedError):
            continue
        if addr[0] == "lo" or addr[2] == socket.PACKET_OUTGOING or len(pkt) < 20:
            continue
        ident, flags = struct.unpack("!HH", pkt[4:8])
        length = struct.unpack("!H", pkt[2:4])[0] - (pkt[0] & 0x0f) * 4
        if not flags & 0x3fff:
            continue
        start = (flags & 0x1fff) * 8
        seen.setdefault(ident, []).append((start, start + length, bool(flags & 0x2000)))
    report(seen)


def whole(fragments):
    """Whether FRAGMENTS cover a datagram from 0 to its last fragment's end."""
    ends = [end for _, end, more in fragments if not more]
    covered = 0
    for start, end, _ in sorted(fragments):
        if start > covered:
            return False
        covered = max(covered, end)
    return bool(ends) and covered == ends[0]


def report(seen):
    """One line per scenario: fragments seen, complete datagrams seen."""
    for number, scenario in enumerate(SCENARIOS, start=1):
        ids = [i for i in seen if number * 1000 <= i < number * 1000 + 1000]
        fragments = sum(len(seen[i]) for i in ids)
        print(f"{scenario} {fragments} {sum(1 for i in ids if whole(seen[i]))}", flush=True)
    noise = sum(len(v) for i, v in seen.items() if i >= NOISE_ID)
    print(f"noise {noise} 0", flush=True)


def main():
    if sys.argv[1:2] == ["send"]:
        send(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1:2] == ["sniff"]:
        sniff(float(sys.argv[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
