"""Lab test `fragments`: fragment trains through unifw and through a Linux
namespace firewall with the same iptables-save file, sniffed at the
receiver; both must deliver the same datagrams (scripts/lib/fragments.py
sends and counts)."""

import time

import lab
from lab_tests import RECEIVER_HOST, fw_boot, through_linux, wait_for_line

FRAGMENTS = str(lab.ROOT / "scripts" / "lib" / "fragments.py")
RULES = "tests/lab/fragments.ipt"
# UDP and TCP to port 5001 are accepted by the rules.
PORT = "5001"
# Complete datagrams the receiver must see, per scenario (Linux's behaviour).
# "tiny-first": the first fragment cuts the TCP header (RFC 1858 3.1);
# Linux reassembles before the rules and reads the ports from the whole
# datagram, and so does unifw.
EXPECTED = {"in-order": 20, "reverse": 20, "dup-middle": 20, "overlap": 0, "incomplete": 0, "interleaved": 1,
            "noise": 0, "tiny-first": 20}


def send_and_count(run, tag):
    """Sends the scenarios from the sender and returns {scenario: (fragments,
    datagrams)} sniffed at the receiver."""
    the_lab = run.lab
    for host in range(3, 10):
        the_lab.ip("-n", the_lab.sender, "addr", "add", f"10.1.0.{host}/24", "dev", the_lab.taps[0])
    log = run.log_dir / f"fragments-{tag}-sniff.log"
    sniffer = the_lab.start(["python3", FRAGMENTS, "sniff", "90"], ns=the_lab.receiver, out=log)
    wait_for_line(log, "sniffing", 5)
    time.sleep(0.3)
    status, out = the_lab.run(the_lab.sender, ["python3", FRAGMENTS, "send", RECEIVER_HOST, PORT], timeout=120)
    if status != 0:
        run.fail(f"fragments ({tag}): the sender failed: {out}")
    time.sleep(1.0)
    the_lab.stop([sniffer])
    counts = {}
    for line in log.read_text().splitlines():
        words = line.split()
        if len(words) == 3 and words[1].isdigit():
            counts[words[0]] = (int(words[1]), int(words[2]))
    return counts


def fragments(run):
    """The same scenarios through unifw and through Linux: in order,
    reverse order, a duplicated middle fragment, one datagram interleaved
    with 200 first fragments of 7 other sources, overlapping fragments, an
    incomplete train, and a TCP first fragment that cuts the TCP header.
    Each scenario's complete datagrams at the receiver must match Linux's."""
    print(f"lab: fragments, {RULES} in unifw and in Linux iptables")
    if not fw_boot(run, "fragments", RULES):
        return
    ours = send_and_count(run, "unifw")
    run.expect_no_console("PANIC|ERROR", "fragments: no errors on the unifw console")
    linux = through_linux(run, "fragments", RULES, lambda: send_and_count(run, "linux"))
    if linux is None:
        return
    for scenario in EXPECTED:
        (our_frags, our_whole), (linux_frags, linux_whole) = ours.get(scenario, (-1, -1)), linux.get(scenario, (-1, -1))
        numbers = f"unifw {our_whole} datagrams ({our_frags} fragments), Linux {linux_whole} ({linux_frags})"
        want = EXPECTED[scenario]
        same = our_whole == linux_whole == want
        if scenario in ("overlap", "incomplete", "noise"):
            same = same and our_frags == 0
        run.check(same, f"fragments: {scenario}: {numbers}; expected {want} datagrams")
