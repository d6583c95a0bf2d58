"""Lab test `connlimit`: tests/lab/connlimit.ipt (`--connlimit-above 2`
per source in FORWARD, over it a TCP reset) in unifw, then the same file
in the Linux namespace firewall (iptables-restore). From the sender to a
server on the receiver that holds each connection open until the client
closes it: two connections open, a third is refused (reset), the first
closes (FIN both ways: TIME_WAIT, no longer counted), and a fourth opens.
Each result must be the expected one, and unifw's must equal Linux's.
"""

from lab_tests import RECEIVER_HOST, fw_boot, through_linux, wait_for_line

RULES = "tests/lab/connlimit.ipt"
PORT = 5020

# On the receiver: accepts, and closes each connection when its client does.
SERVER = r"""
import socket, threading
def hold(conn):
    with conn:
        while conn.recv(65536):
            pass
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", %d))
t.listen(16)
print("serving", flush=True)
while True:
    conn, _ = t.accept()
    threading.Thread(target=hold, args=(conn,), daemon=True).start()
""" % PORT

# On the sender: opens connections to DST in order, keeping them, closes
# the first after the third, opens a fourth; prints what each got.
CLIENT = r"""
import socket, sys, time
dst, port = sys.argv[1], int(sys.argv[2])
def open_one(sport):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", sport))
    s.settimeout(5)
    try:
        s.connect((dst, port))
        s.send(b"hello")
        return s, "ok"
    except ConnectionRefusedError:
        return None, "refused"
    except socket.timeout:
        return None, "timeout"
    except OSError as e:
        return None, type(e).__name__
got = []
s1, r = open_one(42001); got.append(r)
s2, r = open_one(42002); got.append(r)
s3, r = open_one(42003); got.append(r)
if s1:
    s1.shutdown(socket.SHUT_WR)
    s1.settimeout(5)
    try:
        while s1.recv(100):
            pass
    except OSError:
        pass
    s1.close()
time.sleep(1)
s4, r = open_one(42004); got.append(r)
print(" ".join(got))
"""

EXPECTED = "ok ok refused ok"


def observe(run, tag):
    """Runs CLIENT against SERVER through the firewall in place; returns
    its line ("ok ok refused ok" expected), or None."""
    the_lab = run.lab
    log = run.log_dir / f"{tag}-server.log"
    server = the_lab.start(["python3", "-c", SERVER], ns=the_lab.receiver, out=log)
    if not wait_for_line(log, "serving", 5):
        the_lab.stop([server])
        run.fail(f"connlimit: {tag}: the server did not start")
        return None
    _, out = the_lab.run(the_lab.sender, ["python3", "-c", CLIENT, RECEIVER_HOST, str(PORT)], timeout=60)
    the_lab.stop([server])
    return (out.strip().splitlines() or [""])[-1]


def connlimit(run):
    print(f"lab: connlimit with {RULES}: two connections per source, the third reset, room again after a close")
    ours = None
    if fw_boot(run, "connlimit", RULES):
        ours = observe(run, "connlimit-unifw")
        run.expect_no_console("PANIC|ERROR", "connlimit: no errors on the unifw console")
    linux = through_linux(run, "connlimit", RULES, lambda: observe(run, "connlimit-linux"))
    run.check(ours == EXPECTED, f"connlimit: unifw: {ours}" + ("" if ours == EXPECTED else f" (expected {EXPECTED})"))
    run.check(linux == ours, f"connlimit: Linux: {linux}" + ("" if linux == ours else " (differs)"))
