#!/usr/bin/env python3
"""Crafted hostile packets for the `hostile` lab test (lab_hostile.py).

Plain raw sockets (no scapy). Run inside a lab namespace, as root:

  hostile.py send DST     sends each case of CASES once to DST: a UDP
                          datagram from the case's source address, with the
                          case's IP options, to DST port 7000, source port
                          the case's number (40000 + i)
  hostile.py sniff        prints every IPv4 UDP and ICMP packet arriving
                          from the wire, one line each, until SIGTERM:
                            udp SRC SPORT DST DPORT OPTIONS-HEX
                            icmp SRC TYPE CODE REST-HEX QUOTED-SPORT

Source addresses are spoofed, destinations are only the lab's own.
"""

import socket
import struct
import sys

import probe

# (name, source address, IP options): the source "sender" is the sender's
# own 10.1.0.2. Lab addresses (CONVENTIONS.md); 192.0.2.1 (TEST-NET-1) is
# only ever a source, never a destination.
CASES = [
    ("own-eth0", "10.1.0.1", b""),
    ("own-eth1", "10.2.0.1", b""),
    ("receiver-subnet", "10.2.0.7", b""),
    ("no-route-back", "192.0.2.1", b""),
    ("subnet-broadcast", "10.1.0.255", b""),
    ("lsrr", "sender", bytes([1, 131, 7, 4, 10, 2, 0, 9])),
    ("ssrr", "sender", bytes([1, 137, 7, 4, 10, 2, 0, 9])),
    ("bad-rr-pointer", "sender", bytes([7, 7, 3, 0, 0, 0, 0, 0])),
    ("bad-length", "sender", bytes([1, 68, 40, 5])),
    ("record-route", "sender", bytes([7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0])),
    ("router-alert", "sender", bytes([148, 4, 0, 0])),
    ("unknown-option", "sender", bytes([1, 0x99, 4, 0xab, 0xcd])),
    ("plain", "sender", b""),
]
SENDER = "10.1.0.2"
DPORT = 7000


def packet(src, dst, sport, options):
    """An IPv4 UDP datagram with OPTIONS (padded with end-of-options); the
    kernel fills in the header checksum (IP_HDRINCL)."""
    options += b"\0" * (-len(options) % 4)
    payload = b"unifw hostile probe"
    udp = struct.pack("!HHHH", sport, DPORT, 8 + len(payload), 0) + payload
    ihl = 5 + len(options) // 4
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 4 * ihl + len(udp), sport, 0, 64, 17, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    return header + options + udp


def send(dst):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    for index, (name, src, options) in enumerate(CASES):
        source = SENDER if src == "sender" else src
        s.sendto(packet(source, dst, 40000 + index, options), (dst, 0))
        print(f"sent {name} from {source}", flush=True)


def describe(pkt):
    """One line for a UDP or ICMP packet, else None."""
    if len(pkt) < 20 or pkt[0] >> 4 != 4:
        return None
    ihl = (pkt[0] & 15) * 4
    proto, src, dst = pkt[9], socket.inet_ntoa(pkt[12:16]), socket.inet_ntoa(pkt[16:20])
    options, l4 = pkt[20:ihl], pkt[ihl:]
    if proto == 17 and len(l4) >= 4:
        sport, dport = struct.unpack("!HH", l4[:4])
        return f"udp {src} {sport} {dst} {dport} {options.hex() or '-'}"
    if proto == 1 and len(l4) >= 8:
        quoted_sport = "-"
        inner = l4[8:]
        if len(inner) >= 20 and inner[9] == 17:
            inner_ihl = (inner[0] & 15) * 4
            if len(inner) >= inner_ihl + 2:
                quoted_sport = str(struct.unpack("!H", inner[inner_ihl:inner_ihl + 2])[0])
        return f"icmp {src} {l4[0]} {l4[1]} {l4[4:8].hex()} {quoted_sport}"
    return None


def main():
    if sys.argv[1:2] == ["send"] and len(sys.argv) == 3:
        send(sys.argv[2])
    elif sys.argv[1:] == ["sniff"]:
        probe.sniff(describe)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
