#!/usr/bin/env python3
"""Floods for the `flood-neighbours` lab test (lab_flood.py) and
scripts/flood-gap: whole Ethernet frames written to an AF_PACKET socket,
built with struct (no scapy), so the sender's own routing and ARP stay out
of the way and the spoofed sources cost nothing to send.

Run inside a lab namespace, as root:

  flood.py syn IFACE DSTMAC DST PORT [--rate R] [--seconds S] [--sources A.B.C.X-Y] [--exclude A,B]
      TCP SYNs to DST:PORT through the gateway at DSTMAC, from the
      sources (default 10.1.0.3-254) minus EXCLUDE, random source ports;
      R frames/s (0: as fast as one process goes) for S seconds (0:
      until SIGTERM). Prints "sent N frames in T s: R frames/s" at the end.
  flood.py arp IFACE TARGET [--count N] [--rate R] [--sources ...] [--exclude ...]
      N broadcast ARP requests for TARGET, cycling through the sources,
      each from a new random (unicast, locally administered) MAC.
  flood.py arp-sniff
      prints "arp OP SPA TPA SHA" for every ARP frame arriving from the
      wire, until SIGTERM.

Source addresses are spoofed, but only ever inside the lab's own subnets;
destinations are only the lab's own.
"""

import argparse
import os
import random
import signal
import socket
import struct
import sys
import time

import probe

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
# Pacing: frames go out in bursts, one burst per tick.
TICK_S = 0.002


def checksum(data):
    """The Internet checksum of DATA."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def mac_bytes(text):
    return bytes(int(part, 16) for part in text.split(":"))


def own_mac(iface):
    with open(f"/sys/class/net/{iface}/address") as f:
        return mac_bytes(f.read().strip())


def sources(spec, exclude):
    """The addresses A.B.C.X..Y of SPEC, without those in EXCLUDE."""
    prefix, _, span = spec.rpartition(".")
    low, _, high = span.partition("-")
    skip = set(exclude.split(",")) if exclude else set()
    found = [f"{prefix}.{n}" for n in range(int(low), int(high or low) + 1)]
    return [address for address in found if address not in skip]


def syn_frame(src_mac, dst_mac, src, dst, sport, dport, seq):
    """An Ethernet frame with a TCP SYN (full checksums, as a NIC sends it)."""
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = s + d + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), seq & 0xFFFF, 0, 64, 6, 0, s, d)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return dst_mac + src_mac + struct.pack("!H", ETH_P_IP) + ip + tcp


def arp_frame(src_mac, spa, tpa):
    """A broadcast ARP request from SPA (at SRC_MAC) for TPA, padded to 60 bytes."""
    arp = struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, 1, src_mac, socket.inet_aton(spa), b"\0" * 6,
                      socket.inet_aton(tpa))
    frame = b"\xff" * 6 + src_mac + struct.pack("!H", ETH_P_ARP) + arp
    return frame + b"\0" * (60 - len(frame))


def random_mac(rng):
    """A unicast, locally administered MAC."""
    return bytes([0x02, *(rng.randrange(256) for _ in range(5))])


def blast(sock, frames, rate, seconds, count=None):
    """Sends FRAMES in turn (cycling) at RATE frames/s (0: flat out) for
    SECONDS (0: until SIGTERM) or COUNT frames; returns (sent, elapsed)."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    send, n, sent = sock.send, len(frames), 0
    start = time.monotonic()
    end = start + seconds if seconds else float("inf")
    burst = max(1, int(rate * TICK_S)) if rate else 256
    while not stop and (count is None or sent < count):
        now = time.monotonic()
        if now >= end:
            break
        if rate and sent >= (now - start) * rate:
            time.sleep(TICK_S / 2)
            continue
        for _ in range(min(burst, count - sent) if count is not None else burst):
            try:
                send(frames[sent % n])
            except OSError:
                # The device queue is full (a tap whose reader lags): the
                # frame was not offered; try the next one.
                time.sleep(0.0005)
                continue
            sent += 1
    return sent, time.monotonic() - start


def report(sent, elapsed):
    print(f"sent {sent} frames in {elapsed:.2f} s: {sent / max(elapsed, 1e-9):.0f} frames/s", flush=True)


def packet_socket(iface):
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((iface, 0))
    return sock


def syn(args):
    rng = random.Random(args.seed)
    src_mac, dst_mac = own_mac(args.iface), mac_bytes(args.dstmac)
    addresses = sources(args.sources, args.exclude)
    # A pool of distinct frames: every source, random source ports.
    frames = [syn_frame(src_mac, dst_mac, addresses[i % len(addresses)], args.dst, rng.randrange(1024, 65536),
                        args.port, rng.randrange(1 << 32)) for i in range(max(4096, len(addresses)))]
    print(f"flooding {args.dst}:{args.port} from {len(addresses)} sources", flush=True)
    report(*blast(packet_socket(args.iface), frames, args.rate, args.seconds))


def arp(args):
    rng = random.Random(args.seed)
    addresses = sources(args.sources, args.exclude)
    frames = [arp_frame(random_mac(rng), addresses[i % len(addresses)], args.target) for i in range(args.count)]
    print(f"ARP flood: {args.count} requests for {args.target} from {len(addresses)} sources", flush=True)
    report(*blast(packet_socket(args.iface), frames, args.rate, 0, args.count))


def describe_arp(pkt):
    """One line per ARP packet: operation, sender and target address, sender MAC."""
    if len(pkt) < 28:
        return None
    op = struct.unpack("!H", pkt[6:8])[0]
    sha, spa, tpa = pkt[8:14], socket.inet_ntoa(pkt[14:18]), socket.inet_ntoa(pkt[24:28])
    return f"arp {op} {spa} {tpa} {sha.hex(':')}"


def arp_sniff():
    probe.sniff(describe_arp, ethertype=ETH_P_ARP)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    s = commands.add_parser("syn")
    s.add_argument("iface")
    s.add_argument("dstmac")
    s.add_argument("dst")
    s.add_argument("port", type=int)
    s.add_argument("--rate", type=float, default=10000)
    s.add_argument("--seconds", type=float, default=0)
    s.add_argument("--sources", default="10.1.0.3-254")
    s.add_argument("--exclude", default="")
    s.add_argument("--seed", type=int, default=os.getpid())
    a = commands.add_parser("arp")
    a.add_argument("iface")
    a.add_argument("target")
    a.add_argument("--count", type=int, default=20000)
    a.add_argument("--rate", type=float, default=2000)
    a.add_argument("--sources", default="10.2.0.3-254")
    a.add_argument("--exclude", default="")
    a.add_argument("--seed", type=int, default=1)
    commands.add_parser("arp-sniff")
    args = parser.parse_args()
    if args.command == "syn":
        syn(args)
    elif args.command == "arp":
        arp(args)
    else:
        arp_sniff()


if __name__ == "__main__":
    sys.exit(main())
