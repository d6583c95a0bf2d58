#!/usr/bin/env python3
"""Connection clients of scripts/bench (bench_measure.py), run in the
sender's namespace against probe.py's echo server at the receiver:

  bench_tools.py crr DST PORT SECONDS   connect, send 1 byte, read its echo,
                                        close, repeated: prints connections/s
  bench_tools.py hold DST PORT LIMIT    opens connections (each must connect
                                        and echo within 2 s) and keeps them
                                        all open, until 3 fail in a row or LIMIT:
                                        prints how many were held at once
"""

import socket
import sys
import time


def one_exchange(sock):
    """Sends one byte and reads its echo."""
    sock.sendall(b"x")
    if sock.recv(1) != b"x":
        raise OSError("no echo")


def crr(dst, port, seconds):
    """Connections/s over SECONDS (failed attempts do not count)."""
    done, deadline = 0, time.monotonic() + seconds
    started = time.monotonic()
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((dst, port), timeout=2) as sock:
                one_exchange(sock)
                done += 1
        except OSError:
            pass
    print(f"{done / (time.monotonic() - started):.1f}")


def hold(dst, port, limit, tries=3):
    """Connections held open at once, up to LIMIT: each new one must
    connect and echo while all before it stay open; TRIES failures in a
    row (a lost SYN on a loaded host is not the limit; reasons on stderr)
    end the count."""
    held, failures = [], 0
    while len(held) < limit and failures < tries:
        sock = None
        try:
            sock = socket.create_connection((dst, port), timeout=2)
            one_exchange(sock)
            held.append(sock)
            failures = 0
        except OSError as exc:
            print(f"connection {len(held) + 1} failed: {exc}", file=sys.stderr)
            failures += 1
            if sock is not None:
                sock.close()
    print(len(held))


def main():
    """The command line."""
    mode, dst, port, amount = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    if mode == "crr":
        crr(dst, port, float(amount))
    else:
        hold(dst, port, int(amount))


if __name__ == "__main__":
    main()
