#!/usr/bin/env python3
"""Scrapes unifw's /metrics and attacks it, for the lab's metrics test
(scripts/lib/lab_tests.py). Run inside the management namespace:

  scrape.py get HOST PORT         one scrape, parsed with prometheus_client's
                                  text parser (the reference parser of the
                                  format); prints JSON: {"status", "bytes",
                                  "samples": [[name, labels, value], ...]};
                                  exits 1 if the text does not parse
  scrape.py hostile HOST PORT     hostile requests, one after the other (and
                                  a flood of connections at once); prints
                                  "CASE RESULT" lines, RESULT being the
                                  status code of the answer, "reset",
                                  "closed" (no answer), "timeout" (nothing in
                                  the case's time), or counts for the flood
  scrape.py from SRC HOST PORT    one GET from source address SRC; prints
                                  the status code, "reset", "refused"
                                  (reset before the handshake completed) or
                                  "closed"

Plain sockets: what an HTTP client library would do for us (retries,
keep-alive, header normalisation) would hide what the server does.
"""

import json
import socket
import sys
import time

from prometheus_client.parser import text_string_to_metric_families


def exchange(host, port, request, wait=10.0, source=None, pause=None, rcvbuf=None):
    """Sends REQUEST (bytes; with PAUSE, sends PAUSE[0] bytes, waits PAUSE[1]
    s, then nothing more) and reads until the server closes. Returns (what,
    data): what is the status code, "reset", "closed" or "timeout"."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(wait)
    data = b""
    try:
        if source:
            s.bind((source, 0))
        s.connect((host, port))
        try:
            s.sendall(request[:pause[0]] if pause else request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking it all: read the answer
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        return ("reset" if not data else status_of(data)), data
    except ConnectionRefusedError:
        return "refused", data
    except socket.timeout:
        return ("timeout" if not data else status_of(data)), data
    finally:
        s.close()
    return (status_of(data) if data else "closed"), data


def status_of(data):
    """The status code of an HTTP response (as text), or "garbage"."""
    line = data.split(b"\r\n", 1)[0].split(b" ")
    if len(line) >= 2 and line[0].startswith(b"HTTP/1.") and line[1].isdigit():
        return line[1].decode()
    return "garbage"


def get(host, port):
    """One scrape, parsed."""
    what, data = exchange(host, port, b"GET /metrics HTTP/1.1\r\nHost: unifw\r\nAccept: text/plain\r\n\r\n")
    result = {"status": what, "bytes": len(data), "samples": []}
    if what == "200":
        head, _, body = data.partition(b"\r\n\r\n")
        result["content_type"] = next((line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
                                       if line.lower().startswith(b"content-type:")), "")
        try:
            for family in text_string_to_metric_families(body.decode("utf-8")):
                for sample in family.samples:
                    result["samples"].append([sample.name, sample.labels, sample.value])
        except (ValueError, UnicodeDecodeError) as exc:
            print(json.dumps({"status": "unparsable", "error": str(exc)}))
            sys.exit(1)
    print(json.dumps(result))


def hostile(host, port):
    """Each hostile case in turn; one line each."""
    cases = [
        ("oversized", b"GET /metrics HTTP/1.1\r\nX-Padding: " + b"a" * 100_000 + b"\r\n\r\n", {}),
        ("slow", b"GET /metrics HTTP/1.1\r\nHost: unifw\r\n\r\n", {"pause": (8, 0), "wait": 12}),
        ("method", b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", {}),
        ("path", b"GET /../../etc/passwd HTTP/1.1\r\n\r\n", {}),
        ("version", b"GET /metrics HTTP/2.0\r\n\r\n", {}),
        ("garbage", bytes(range(256)) * 4, {}),
        ("no-request", b"", {"wait": 12}),
    ]
    for name, request, options in cases:
        started = time.monotonic()
        what, _ = exchange(host, port, request, **options)
        print(f"{name} {what} {time.monotonic() - started:.1f}s", flush=True)
    # A flood: many connections at once, none sending. The server has a
    # fixed number of sockets; the rest must be refused at once, and the
    # ones it took must be timed out.
    held, refused = [], 0
    for _ in range(50):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(3)
        try:
            s.connect((host, port))
            held.append(s)
        except (ConnectionRefusedError, ConnectionResetError, socket.timeout):
            refused += 1
            s.close()
    started = time.monotonic()
    ended = 0
    for s in held:
        s.settimeout(max(0.1, 15 - (time.monotonic() - started)))
        try:
            while s.recv(4096):
                pass
            ended += 1
        except (ConnectionResetError, socket.timeout):
            ended += 1 if time.monotonic() - started < 15 else 0
        finally:
            s.close()
    print(f"flood connected={len(held)} refused={refused} ended={ended} {time.monotonic() - started:.1f}s", flush=True)
    # Reading a response through a tiny window, slowly: it must still end.
    # (First the timed-out sockets listen again: a reset one waits up to
    # 1 s for its RST to leave.)
    time.sleep(2)
    what, data = exchange(host, port, b"GET /metrics HTTP/1.1\r\n\r\n", wait=30, rcvbuf=1024)
    print(f"small-window {what} {len(data)}", flush=True)


def main():
    """The subcommands above."""
    args = sys.argv[1:]
    if len(args) == 3 and args[0] in ("get", "hostile"):
        (get if args[0] == "get" else hostile)(args[1], int(args[2]))
    elif len(args) == 4 and args[0] == "from":
        print(exchange(args[2], int(args[3]), b"GET /metrics HTTP/1.1\r\n\r\n", source=args[1])[0])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
