"""The `hostile` lab test: spoofed sources, IP options and ICMP to
broadcast and multicast addresses, sent to unifw and to a Linux namespace
firewall with the same iptables-save file (tests/lab/hostile.ipt, which
accepts everything); both must treat every case alike, and as Linux does
by default with rp_filter = 1 (what the lab's Linux firewall sets).

The sender crafts each case of scripts/lib/hostile.py (raw socket, spoofed
sources) to the receiver; sniffers on both sides see what arrived (with its
IP options) and what came back (ICMP parameter problems). Then the sender
pings the firewall side's broadcast, the limited broadcast and all-hosts
multicast: the firewall must not answer.
"""

import time

import lab
from lab_tests import RECEIVER_HOST, fw_boot, through_linux, wait_for_line

HOSTILE = str(lab.ROOT / "scripts" / "lib" / "hostile.py")
RULES = "tests/lab/hostile.ipt"
GROUP_ADDRESSES = ("10.1.0.255", "255.255.255.255", "224.0.0.1")

# What Linux does with each case (and so must unifw): "drop", "pass OPTIONS"
# (the options as the receiver sees them), or "icmp TYPE CODE REST".
EXPECTED = {
    "own-eth0": "drop",
    "own-eth1": "drop",
    "receiver-subnet": "drop",
    "no-route-back": "drop",
    "subnet-broadcast": "drop",
    "lsrr": "drop",
    "ssrr": "drop",
    "bad-rr-pointer": "icmp 12 0 16000000",
    "bad-length": "icmp 12 0 15000000",
    "record-route": "pass 070b080a0200010000000000",
    "router-alert": "pass 94040000",
    "unknown-option": "pass 019904abcd000000",
    "plain": "pass -",
}


def outcomes(run, tag):
    """{case: outcome} for one system, and the group pings' answers."""
    the_lab = run.lab
    logs = {side: run.log_dir / f"hostile-{tag}-sniff-{side}.log" for side in ("sender", "receiver")}
    sniffers = [the_lab.start(["python3", HOSTILE, "sniff"], ns=ns, out=logs[side])
                for side, ns in (("sender", the_lab.sender), ("receiver", the_lab.receiver))]
    for log in logs.values():
        wait_for_line(log, "sniffing", 5)
    _, sent = the_lab.run(the_lab.sender, ["python3", HOSTILE, "send", RECEIVER_HOST])
    answers = {}
    for group in GROUP_ADDRESSES:
        _, out = the_lab.run(the_lab.sender, ["ping", "-b", "-c3", "-i0.3", "-W1", group])
        answers[group] = sorted({line.split()[3].rstrip(":") for line in out.splitlines() if " bytes from " in line})
    time.sleep(0.5)
    the_lab.stop(sniffers)
    received = [line.split() for line in logs["receiver"].read_text().splitlines()]
    returned = [line.split() for line in logs["sender"].read_text().splitlines()]
    names = [line.split()[1] for line in sent.splitlines() if line.startswith("sent ")]
    result = {}
    for index, name in enumerate(names):
        sport = str(40000 + index)
        arrived = [f[5] for f in received if f[:1] == ["udp"] and f[2] == sport]
        errors = [" ".join(f[2:5]) for f in returned if f[:1] == ["icmp"] and f[5] == sport]
        result[name] = f"pass {arrived[0]}" if arrived else f"icmp {errors[0]}" if errors else "drop"
    return result, answers


def hostile(run):
    """unifw, then Linux, with tests/lab/hostile.ipt; every case as EXPECTED
    in both, and no answer to a group ping from either firewall."""
    print(f"lab: hostile traffic ({RULES}) in unifw and in Linux (rp_filter 1)")
    results = {}
    if fw_boot(run, "hostile", RULES):
        results["unifw"] = outcomes(run, "unifw")
        run.expect_no_console("PANIC|ERROR", "hostile: no errors on the unifw console")
    linux = through_linux(run, "hostile", RULES, lambda: outcomes(run, "linux"))
    if linux is not None:
        results["linux"] = linux
    for system, (cases, answers) in results.items():
        for name, want in EXPECTED.items():
            got = cases.get(name, "not sent")
            run.check(got == want, f"hostile: {system}: {name}: {got}" + ("" if got == want else f" (want {want})"))
        for group, who in answers.items():
            firewall = [a for a in who if a in lab.FIREWALL]
            run.check(not firewall, f"hostile: {system}: no answer from the firewall to ping {group} "
                                    f"({', '.join(who) or 'none'})")
    if len(results) == 2:
        run.check(results["unifw"] == results["linux"], "hostile: unifw and Linux agree on every case")
