#!/usr/bin/env python3
"""Sends malformed Ethernet frames out of an interface (AF_PACKET): random
bytes, truncated and corrupted IPv4/TCP/UDP/ICMP/ARP headers, bad lengths,
odd EtherTypes, all addressed to the firewall's MAC or broadcast. For the
lab test that the kernel survives them. Deterministic (fixed seed).

Usage: garbage.py IFACE FIREWALL_MAC COUNT
"""
import random
import socket
import struct
import sys


def ipv4_header(rng, payload_len, proto):
    version_ihl = rng.choice([0x45, 0x45, 0x45, 0x46, 0x4F, 0x44, 0x35, 0x00])
    total = rng.choice([20 + payload_len, rng.randrange(0, 65536), 19, 0])
    frag = rng.choice([0, 0, 0x2000, rng.randrange(0, 65536)])
    ttl = rng.choice([64, 1, 0, 255])
    header = struct.pack("!BBHHHBBH4s4s", version_ihl, 0, total & 0xFFFF, rng.randrange(65536), frag, ttl,
                         proto, 0, bytes([10, 1, 0, 2]), bytes([10, 2, 0, rng.choice([2, 1, 255, 0])]))
    return header


def frame(rng, dst_mac, src_mac):
    kind = rng.randrange(6)
    if kind == 0:  # random bytes, random length (maybe shorter than Ethernet)
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 1515)))
    ethertype = rng.choice([0x0800, 0x0800, 0x0806, 0x86DD, 0x8100, rng.randrange(65536)])
    eth = dst_mac + src_mac + struct.pack("!H", ethertype)
    if ethertype == 0x0806:
        arp = bytes(rng.randrange(256) for _ in range(rng.choice([0, 8, 27, 28, 60])))
        return eth + arp
    proto = rng.choice([1, 6, 17, 47, rng.randrange(256)])
    payload = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 7, 8, 19, 20, 64, 1400])))
    packet = ipv4_header(rng, len(payload), proto) + payload
    cut = rng.choice([len(packet), len(packet), rng.randrange(len(packet) + 1)])
    return eth + packet[:cut]


def main():
    iface, mac_text, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    dst_mac = bytes(int(b, 16) for b in mac_text.split(":"))
    rng = random.Random(1858)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((iface, 0))
    src_mac = sock.getsockname()[4]
    sent = 0
    for _ in range(count):
        data = frame(rng, rng.choice([dst_mac, dst_mac, b"\xff" * 6]), src_mac)
        try:
            sock.send(data)
            sent += 1
        except OSError:
            pass  # the kernel refuses some (too short): fine
    print(sent)


if __name__ == "__main__":
    main()
