#!/usr/bin/env python3
"""Numbered UDP flows, to check that a firewall loses and reorders nothing
within a flow (the lab's `vcpus` test: flows spread over two vCPUs).

  order_probe.py recv PORT [--idle SEC]
      counts datagrams on UDP PORT until SEC seconds (default 3) pass
      without one after the first, then prints one JSON line: per flow
      (source address:port) the datagrams received, how many came with a
      lower number than one before them (reordered), repeats, and the
      highest number seen
  order_probe.py send DST PORT --flows F --count N --rate R
      sends N datagrams on each of F flows (F sockets, each its own
      source port) to DST:PORT, round-robin, R datagrams/s in all; each
      carries its flow's number (4 bytes, big-endian) from 0
"""

import argparse
import json
import socket
import struct
import sys
import time


def recv(port, idle):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(("0.0.0.0", port))
    print("listening", flush=True)
    flows = {}
    sock.settimeout(None)
    while True:
        try:
            data, (addr, sport) = sock.recvfrom(2048)
        except socket.timeout:
            break
        sock.settimeout(idle)
        if len(data) < 4:
            continue
        (seq,) = struct.unpack("!I", data[:4])
        flow = flows.setdefault(f"{addr}:{sport}", {"received": 0, "reordered": 0, "repeats": 0, "highest": -1,
                                                    "seen": set()})
        flow["received"] += 1
        if seq in flow["seen"]:
            flow["repeats"] += 1
        elif seq < flow["highest"]:
            flow["reordered"] += 1
        flow["seen"].add(seq)
        flow["highest"] = max(flow["highest"], seq)
    for flow in flows.values():
        del flow["seen"]
    print(json.dumps(flows), flush=True)


def send(dst, port, flows, count, rate):
    socks = []
    for _ in range(flows):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("0.0.0.0", 0))
        sock.connect((dst, port))
        socks.append(sock)
    interval = 1.0 / rate
    start = time.monotonic()
    sent = 0
    for seq in range(count):
        payload = struct.pack("!I", seq) + b"x" * 14
        for sock in socks:
            due = start + sent * interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                sock.send(payload)
            except OSError as e:
                print(f"send failed: {e}", file=sys.stderr)
            sent += 1
    print(json.dumps({"sent": sent, "seconds": round(time.monotonic() - start, 3)}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("recv")
    r.add_argument("port", type=int)
    r.add_argument("--idle", type=float, default=3.0)
    s = sub.add_parser("send")
    s.add_argument("dst")
    s.add_argument("port", type=int)
    s.add_argument("--flows", type=int, default=16)
    s.add_argument("--count", type=int, default=1000)
    s.add_argument("--rate", type=float, default=2000)
    args = parser.parse_args()
    if args.mode == "recv":
        recv(args.port, args.idle)
    else:
        send(args.dst, args.port, args.flows, args.count, args.rate)


if __name__ == "__main__":
    main()
