"""Traffic of the `pool` lab test (lab_pool.py), run in the lab's namespaces:

  pool_traffic.py serve                       TCP echo on 5000, UDP echo on 5001
  pool_traffic.py flows DST TCP_PORTS UDP_PORTS
      one TCP connection (20 round trips of 1 KiB) from each source port in
      TCP_PORTS and one UDP exchange (5 datagrams) from each in UDP_PORTS
      (comma-separated); prints one JSON object {port: "ok" | error}
  pool_traffic.py hold DST PORTS GO_FILE
      opens one TCP connection from each of PORTS, does a round trip, prints
      "open"; once GO_FILE exists does another round trip on each (5 s
      timeout) and prints the JSON result as `flows` does.
"""

import json
import os
import socket
import sys
import threading
import time

TCP_PORT, UDP_PORT = 5000, 5001


def serve():
    """Echo servers until killed."""
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("0.0.0.0", TCP_PORT))
    tcp.listen(64)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", UDP_PORT))

    def echo(conn):
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)

    def accept():
        while True:
            conn, _ = tcp.accept()
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    print("serving", flush=True)
    while True:
        data, peer = udp.recvfrom(65536)
        udp.sendto(data, peer)


def round_trip(conn, size=1024):
    """Sends SIZE bytes and reads them back."""
    conn.sendall(bytes(size))
    got = 0
    while got < size:
        data = conn.recv(65536)
        if not data:
            raise ConnectionError("closed")
        got += len(data)


def connect(dst, sport, timeout=5):
    """A TCP connection from source port SPORT."""
    conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    conn.settimeout(timeout)
    conn.bind(("0.0.0.0", sport))
    conn.connect((dst, TCP_PORT))
    return conn


def tcp_flow(dst, sport):
    """One connection, 20 round trips."""
    with connect(dst, sport) as conn:
        for _ in range(20):
            round_trip(conn)


def udp_flow(dst, sport):
    """Five datagrams, each answered (one retry each)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", sport))
        sock.settimeout(2)
        for n in range(5):
            for attempt in range(2):
                sock.sendto(n.to_bytes(2, "big") * 50, (dst, UDP_PORT))
                try:
                    sock.recvfrom(65536)
                    break
                except socket.timeout:
                    if attempt:
                        raise


def attempt(results, key, work):
    """Runs WORK, records "ok" or the error under KEY."""
    try:
        work()
        results[key] = "ok"
    except OSError as exc:
        results[key] = f"{type(exc).__name__}: {exc}"


def ports(text):
    """Comma-separated ports ("" is none)."""
    return [int(p) for p in text.split(",") if p]


def flows(dst, tcp_ports, udp_ports):
    """Every flow at once (threads), so the pool shares them."""
    results = {}
    threads = [threading.Thread(target=attempt, args=(results, f"tcp/{p}", lambda p=p: tcp_flow(dst, p)))
               for p in ports(tcp_ports)]
    threads += [threading.Thread(target=attempt, args=(results, f"udp/{p}", lambda p=p: udp_flow(dst, p)))
                for p in ports(udp_ports)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps(results), flush=True)


def hold(dst, held_ports, go_file):
    """Connections held open across a change of the pool."""
    conns = {}
    for port in ports(held_ports):
        conn = connect(dst, port)
        round_trip(conn)
        conns[port] = conn
    print("open", flush=True)
    while not os.path.exists(go_file):
        time.sleep(0.1)
    results = {}
    for port, conn in conns.items():
        attempt(results, f"tcp/{port}", lambda conn=conn: round_trip(conn))
    print(json.dumps(results), flush=True)


def main():
    """The command line above."""
    command, args = sys.argv[1], sys.argv[2:]
    if command == "serve":
        serve()
    elif command == "flows":
        flows(*args)
    elif command == "hold":
        hold(*args)
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
