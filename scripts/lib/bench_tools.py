#!/usr/bin/env python3
"""Connection clients of scripts/bench (bench_measure.py), run in the
sender's namespace against probe.py's echo server at the receiver:

  bench_tools.py crr DST PORT SECONDS   connect, send 1 byte, read its echo,
                                        close, repeated: prints connections/s
  bench_tools.py hold DST PORTS LIMIT   opens connections (each must connect
                                        and echo within 2 s) to the ports of
                                        PORTS (a,b,...) in turn and keeps them
                                        all open, until 3 fail in a row or LIMIT:
                                        prints how many were held at once
  bench_tools.py hold-serve PORTS LIMIT echo servers for `hold` on PORTS, in
                                        as many processes as LIMIT
                                        connections need (SO_REUSEPORT)

One process can hold only as many connections as its open-files limit
(20,000 in this project's sessions, which even root cannot raise), so both
sides spread LIMIT connections over several processes; and one address
pair has about 28,000 ephemeral ports, so `hold` spreads them over several
destination ports (bench_measure.hold_ports).
"""

import math
import os
import resource
import selectors
import signal
import socket
import sys
import time

# Descriptors a process keeps for other things than connections.
SPARE_FDS = 64


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


def room():
    """Connections one process can hold: its open-files limit, raised to
    the hard limit, less SPARE_FDS."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard - SPARE_FDS


def hold_some(dst, ports, first, want, tries):
    """Opens up to WANT connections, the Kth (from FIRST) to PORTS[K %
    len]; each must connect and echo; TRIES failures in a row (a lost SYN
    on a loaded host is not the limit; reasons on stderr) end it. Returns
    the open sockets."""
    held, failures = [], 0
    while len(held) < want and failures < tries:
        sock = None
        port = ports[(first + len(held)) % len(ports)]
        try:
            sock = socket.create_connection((dst, port), timeout=2)
            one_exchange(sock)
            held.append(sock)
            failures = 0
        except OSError as exc:
            print(f"connection {first + len(held) + 1} (port {port}) failed: {exc}", file=sys.stderr)
            failures += 1
            if sock is not None:
                sock.close()
    return held


def hold(dst, ports, limit, tries=3):
    """Connections held open at once, up to LIMIT, opened one after the
    other by a chain of child processes (each holds what its open-files
    limit allows and keeps them until the count is done): prints the count."""
    per_process = room()
    total, children = 0, []
    while total < limit:
        want = min(per_process, limit - total)
        count_r, count_w = os.pipe()
        release_r, release_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(count_r)
            os.close(release_w)
            for _, earlier in children:
                os.close(earlier)
            held = hold_some(dst, ports, total, want, tries)
            os.write(count_w, f"{len(held)}\n".encode())
            os.close(count_w)
            os.read(release_r, 1)  # until the parent closes its end
            os._exit(0)
        os.close(count_w)
        os.close(release_r)
        with os.fdopen(count_r) as answer:
            count = int(answer.read().strip() or 0)
        children.append((pid, release_w))
        total += count
        if count < want:
            break
    for pid, release in children:
        os.close(release)
        os.waitpid(pid, 0)
    print(total)


def echo_forever(ports):
    """Accepts on PORTS (SO_REUSEPORT, shared with the other processes)
    and echoes every connection, until its parent is gone."""
    parent = os.getppid()
    selector = selectors.DefaultSelector()
    for port in ports:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind(("0.0.0.0", port))
        listener.listen(1024)
        listener.setblocking(False)
        selector.register(listener, selectors.EVENT_READ, "accept")
    while os.getppid() == parent:
        for key, _ in selector.select(timeout=1):
            sock = key.fileobj
            try:
                if key.data == "accept":
                    conn, _ = sock.accept()
                    conn.setblocking(False)
                    selector.register(conn, selectors.EVENT_READ, "echo")
                    continue
                data = sock.recv(65535)
                if data:
                    sock.sendall(data)
                    continue
            except BlockingIOError:
                continue
            except OSError:
                if key.data == "accept":
                    continue
            selector.unregister(sock)
            sock.close()
    os._exit(0)


def hold_serve(ports, limit):
    """Echo servers for LIMIT held connections on PORTS: enough processes
    that the kernel's SO_REUSEPORT spread (by address hash, not even) stays
    within each one's open-files limit; runs until killed."""
    processes = max(2, math.ceil(1.5 * limit / room()))
    children = []
    for _ in range(processes):
        pid = os.fork()
        if pid == 0:
            echo_forever(ports)
        children.append(pid)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"serving {processes} processes", flush=True)
    try:
        for pid in children:
            os.waitpid(pid, 0)
    finally:
        for pid in children:
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass


def main():
    """The command line."""
    mode = sys.argv[1]
    if mode == "crr":
        crr(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    elif mode == "hold":
        hold(sys.argv[2], [int(p) for p in sys.argv[3].split(",")], int(sys.argv[4]))
    else:
        hold_serve([int(p) for p in sys.argv[2].split(",")], int(sys.argv[3]))


if __name__ == "__main__":
    main()
