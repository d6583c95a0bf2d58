"""Lab test `pool`: three unifw instances in bump-in-the-wire mode
(tests/lab/pool.rules: `wire eth0 eth1`, management and /metrics on eth2)
as a pool behind Open vSwitch standing in for networking-sfc's data plane.

Open vSwitch (Debian's openvswitch-switch) runs from the test's log
directory (its own database, sockets and logs), with the userspace datapath
(`datapath_type=netdev`: no kernel module here). On its bridge: the sender
(10.9.0.1) and the receiver (10.9.0.2), one subnet with static neighbours,
and each instance's ingress (eth0) and egress (eth1) taps. The flows do
what networking-sfc's OVS driver does for a port pair group: a packet from
the sender is hashed over its 5-tuple by `multipath(symmetric_l3l4+udp, ...
hrw ...)` onto one member, its destination MAC rewritten to that member's
ingress port; one from the receiver is hashed the same way (the hash is
symmetric: source and destination swapped give the same value) onto the
same member's egress port; what a member sends out of its other side goes
on to the receiver or the sender. The rules accept new connections from the
sender side only, so a reply that reached another member than its request
would be refused there (and counted): no rule drops and every flow working
shows that both directions of every flow crossed one member.

Then the last member is stopped and its bucket removed (the hash over the
remaining two keeps their flows where they were: highest random weight).
New connections succeed through the other two. Established connections on
the stopped member break: their next segment reaches a member that never
saw their SYN, and unifw's connection tracking, like Linux's with
`nf_conntrack_tcp_loose=0`, calls a mid-stream segment INVALID, which the
rules drop; established connections on the other members go on.

UNIFW_POOL_HASH replaces the hash fields (a mutant: `nw_src` is not
symmetric, and the test fails).
"""

import json
import os
import re
import time

import lab
from lab_tests import wait_for_line

POOL_RULES = "tests/lab/pool.rules"
SIZE = 3
MEM = "64M"
BOOT_DEADLINE = 150
SENDER, RECEIVER = "10.9.0.1", "10.9.0.2"
SENDER_MAC, RECEIVER_MAC = "02:00:00:00:09:01", "02:00:00:00:09:02"
MGMT_HOST, MGMT_FW = "10.3.0.1", "10.3.0.2"
TRAFFIC = str(lab.ROOT / "scripts" / "lib" / "pool_traffic.py")
# OpenFlow port numbers: the sender, the receiver, each member's sides.
S_PORT, R_PORT = 1, 2
TCP_DPORT, UDP_DPORT = 5000, 5001
GET = ("import sys, urllib.request; "
       "sys.stdout.write(urllib.request.urlopen('http://%s:9100/metrics', timeout=10).read().decode())" % MGMT_FW)


def ingress_port(k):
    """OpenFlow port of member K's ingress (eth0)."""
    return 10 + k


def egress_port(k):
    """OpenFlow port of member K's egress (eth1)."""
    return 20 + k


def member_mac(k, nic):
    """MAC of member K's NIC (0 ingress, 1 egress, 2 management)."""
    return f"52:54:00:00:2{k}:0{nic}"


class Pool:
    """Open vSwitch, the sender's and receiver's links, and the members."""

    def __init__(self, run):
        self.run, self.lab = run, run.lab
        name = self.lab.name
        self.dir = run.log_dir / "pool"
        self.bridge = f"{name}-br"
        self.links = (f"{name}-ps", f"{name}-pr")
        self.taps = [tuple(f"{name}-i{k}{side}" for side in "abm") for k in range(SIZE)]
        self.mgmt = [f"{name}-m{k}" for k in range(SIZE)]
        self.members = {}
        self.ovs_processes = []
        self.hash = os.environ.get("UNIFW_POOL_HASH", "symmetric_l3l4+udp")

    # Open vSwitch.

    def vsctl(self, *args):
        """ovs-vsctl on the test's database."""
        return lab.sh(["ovs-vsctl", f"--db=unix:{self.dir}/db.sock", "--timeout=30", *args])

    def appctl(self, *args):
        """(status, output) of ovs-appctl to the test's ovs-vswitchd."""
        return lab.output_of(lab.as_root(["ovs-appctl", "-t", f"{self.dir}/ovs-vswitchd.ctl", *args]), timeout=30)

    def ovs_up(self):
        """ovsdb-server and ovs-vswitchd in the foreground (they die with
        us), state under the log directory, and the bridge."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.iterdir():
            stale.unlink()
        db = self.dir / "conf.db"
        lab.sh(["ovsdb-tool", "create", str(db), "/usr/share/openvswitch/vswitch.ovsschema"])
        self.ovs_processes.append(self.lab.start(
            ["ovsdb-server", str(db), f"--remote=punix:{self.dir}/db.sock", f"--unixctl={self.dir}/ovsdb-server.ctl",
             f"--log-file={self.dir}/ovsdb-server.log", "--no-chdir"]))
        deadline = time.monotonic() + 20
        while not (self.dir / "db.sock").exists():
            if time.monotonic() > deadline:
                raise lab.LabError("pool: ovsdb-server did not start")
            time.sleep(0.1)
        self.vsctl("--no-wait", "init")
        self.ovs_processes.append(self.lab.start(
            ["env", f"OVS_RUNDIR={self.dir}", "ovs-vswitchd", f"unix:{self.dir}/db.sock",
             f"--unixctl={self.dir}/ovs-vswitchd.ctl", f"--log-file={self.dir}/ovs-vswitchd.log", "--no-chdir"]))
        self.vsctl("add-br", self.bridge, "--", "set", "bridge", self.bridge, "datapath_type=netdev",
                   "fail_mode=secure")

    def add_port(self, device, number):
        """DEVICE on the bridge as OpenFlow port NUMBER."""
        self.vsctl("add-port", self.bridge, device, "--", "set", "interface", device, f"ofport_request={number}")

    def flows(self, live):
        """The bridge's flows for members LIVE: a symmetric hash picks the
        member (its index in LIVE) for both directions of a flow."""
        n = len(live)
        pick = f"multipath({self.hash},0,hrw,{n},0,NXM_NX_REG0[0..3])"
        lines = [f"table=0,priority=100,in_port={S_PORT},ip,actions={pick},resubmit(,1)",
                 f"table=0,priority=100,in_port={R_PORT},ip,actions={pick},resubmit(,2)",
                 "table=0,priority=0,actions=drop"]
        for j, k in enumerate(live):
            lines += [f"table=0,priority=90,in_port={egress_port(k)},ip,"
                      f"actions=mod_dl_dst:{RECEIVER_MAC},output:{R_PORT}",
                      f"table=0,priority=90,in_port={ingress_port(k)},ip,"
                      f"actions=mod_dl_dst:{SENDER_MAC},output:{S_PORT}",
                      f"table=1,reg0={j},actions=mod_dl_dst:{member_mac(k, 0)},output:{ingress_port(k)}",
                      f"table=2,reg0={j},actions=mod_dl_dst:{member_mac(k, 1)},output:{egress_port(k)}"]
        path = self.dir / f"flows-{n}.txt"
        path.write_text("\n".join(lines) + "\n")
        lab.sh(["ovs-ofctl", "-O", "OpenFlow13", "replace-flows", f"unix:{self.dir}/{self.bridge}.mgmt", str(path)])

    def member_of(self, port):
        """The member behind OpenFlow PORT, or None."""
        return port % 10 if port >= 10 else None

    def trace(self, protocol, sport):
        """(member of the request, member of the reply) of the flow from
        SENDER:SPORT by PROTOCOL, as the bridge's flows steer them now."""
        dport = TCP_DPORT if protocol == "tcp" else UDP_DPORT
        sides = [(S_PORT, SENDER, RECEIVER, sport, dport), (R_PORT, RECEIVER, SENDER, dport, sport)]
        found = []
        for in_port, src, dst, tp_src, tp_dst in sides:
            flow = (f"in_port={in_port},{protocol},dl_src={SENDER_MAC},dl_dst={RECEIVER_MAC},nw_src={src},"
                    f"nw_dst={dst},{protocol}_src={tp_src},{protocol}_dst={tp_dst}")
            _, out = self.appctl("ofproto/trace", self.bridge, flow)
            outputs = re.findall(r"output:(\d+)", out)
            found.append(self.member_of(int(outputs[-1])) if outputs else None)
        return tuple(found)

    # Links and members.

    def link_up(self):
        """The sender's and receiver's namespaces, each joined to the bridge
        by a veth pair, one subnet, static neighbours (ARP is not steered).
        The namespaces come first (`Lab.up` stops every process)."""
        hosts = ((self.lab.sender, SENDER, SENDER_MAC, RECEIVER, RECEIVER_MAC),
                 (self.lab.receiver, RECEIVER, RECEIVER_MAC, SENDER, SENDER_MAC))
        for (ns, address, mac, peer, peer_mac), link, port in zip(hosts, self.links, (S_PORT, R_PORT)):
            self.lab.ip("link", "add", link, "type", "veth", "peer", "name", "pool0", "netns", ns)
            self.lab.ip("-n", ns, "link", "set", "pool0", "address", mac, "up")
            self.lab.ip("-n", ns, "addr", "add", f"{address}/24", "dev", "pool0")
            self.lab.ip("-n", ns, "neigh", "replace", peer, "lladdr", peer_mac, "dev", "pool0", "nud", "permanent")
            # Full checksums: the userspace datapath reads the veth without
            # its checksum offload state, and a partial checksum would reach
            # the other side unfinished.
            lab.sh(lab.in_ns(ns, ["ethtool", "-K", "pool0", "tx", "off"]), check=True)
            self.quiet_up(link)
            self.add_port(link, port)

    def quiet_up(self, device):
        """DEVICE up without IPv6 (no router solicitations into the pool)."""
        lab.sh(["sysctl", "-qw", f"net.ipv6.conf.{device}.disable_ipv6=1"], check=False)
        self.lab.ip("link", "set", device, "up")

    def boot(self, k):
        """Member K in QEMU (TCG, MEM), its taps made first."""
        for tap in self.taps[k]:
            self.lab.ip(*lab.tap_add(tap))
            self.quiet_up(tap)
        console = self.run.log_dir / f"pool-{k}.log"
        command = lab.qemu_command("microvm", "tcg", list(self.taps[k]), serial=f"file:{console}",
                                   macs=[member_mac(k, nic) for nic in range(3)])
        command[command.index("-m") + 1] = MEM
        self.members[k] = self.lab.start(command, out=f"{console}.stderr")

    def attach(self, k):
        """Member K's data taps on the bridge, its management tap in its
        own namespace as 10.3.0.1; True once it answers there."""
        ingress, egress, mgmt = self.taps[k]
        for tap in (ingress, egress, mgmt):
            self.lab.wait_carrier(tap, BOOT_DEADLINE)
        self.add_port(ingress, ingress_port(k))
        self.add_port(egress, egress_port(k))
        ns = self.mgmt[k]
        self.lab.ip("netns", "add", ns)
        self.lab.ip("link", "set", mgmt, "netns", ns)
        self.lab.ip("-n", ns, "addr", "add", f"{MGMT_HOST}/24", "dev", mgmt)
        self.lab.ip("-n", ns, "link", "set", mgmt, "up")
        return self.lab.ping(ns, MGMT_FW, BOOT_DEADLINE)

    def metrics(self, k):
        """Member K's /metrics as {(name, labels...): value}, or None (the
        text is kept in the log directory, with the bridge's flows)."""
        status, out = self.lab.run(self.mgmt[k], ["python3", "-c", GET], timeout=30, merge=False)
        (self.run.log_dir / f"pool-{k}.metrics").write_text(out)
        _, flows = lab.output_of(lab.as_root(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows",
                                              f"unix:{self.dir}/{self.bridge}.mgmt"]), timeout=30)
        (self.run.log_dir / "pool-flows.txt").write_text(flows)
        if status != 0:
            return None
        samples = {}
        for line in out.splitlines():
            match = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
            if match:
                labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', match.group(2) or "")))
                samples[(match.group(1), labels)] = float(match.group(3))
        return samples

    def down(self):
        """Stops the members and Open vSwitch; removes taps, links and
        namespaces (the lab's own go with `Lab.down`)."""
        self.lab.stop(list(self.members.values()))
        self.appctl("exit")
        lab.output_of(lab.as_root(["ovs-appctl", "-t", f"{self.dir}/ovsdb-server.ctl", "exit"]), timeout=10)
        self.lab.stop(self.ovs_processes)
        for ns in self.mgmt:
            if os.path.exists(f"/run/netns/{ns}"):
                lab.sh(["ip", "netns", "del", ns], check=False)
        for device in [*self.links, self.bridge, *(tap for taps in self.taps for tap in taps)]:
            if os.path.exists(f"/sys/class/net/{device}"):
                lab.sh(["ip", "link", "del", device], check=False)


def forwarded(samples, interface):
    """Packets a member forwarded out of INTERFACE."""
    return int(samples.get(("unifw_interface_forwarded_packets_total", (("interface", interface),)), 0))


def drops(samples, reason):
    """A member's drops for REASON, all interfaces."""
    return int(sum(v for (name, labels), v in samples.items()
                   if name == "unifw_drops_total" and ("reason", reason) in labels))


def run_flows(run, tcp_ports, udp_ports, what):
    """Runs the flows from the sender; checks every one worked."""
    joined = [",".join(str(p) for p in ports) for ports in (tcp_ports, udp_ports)]
    status, out = run.lab.run(run.lab.sender, ["python3", TRAFFIC, "flows", RECEIVER, *joined], timeout=120,
                              merge=False)
    try:
        results = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        results = {"traffic": f"exit {status}: {out.strip()[:200]}"}
    failed = {flow: error for flow, error in results.items() if error != "ok"}
    run.check(status == 0 and not failed and len(results) == len(tcp_ports) + len(udp_ports),
              f"pool: {what}: {len(results) - len(failed)}/{len(tcp_ports) + len(udp_ports)} flows work"
              + (f" (failed: {dict(list(failed.items())[:4])})" if failed else ""))


def pick_ports(pool, first, wanted):
    """TCP source ports from FIRST on, WANTED of them per member (by the
    bridge's hash), for connections held across the failover."""
    chosen = {k: [] for k in range(SIZE)}
    for port in range(first, first + 400):
        member = pool.trace("tcp", port)[0]
        if member is not None and len(chosen[member]) < wanted:
            chosen[member].append(port)
        if all(len(ports) == wanted for ports in chosen.values()):
            break
    return chosen


def steady(run, pool):
    """Thirty flows through the whole pool: steering and counters."""
    tcp_ports, udp_ports = list(range(41000, 41015)), list(range(42000, 42015))
    traces = {(proto, p): pool.trace(proto, p) for proto, ports in (("tcp", tcp_ports), ("udp", udp_ports))
              for p in ports}
    asymmetric = [flow for flow, (there, back) in traces.items() if there != back or there is None]
    run.check(not asymmetric, f"pool: the bridge steers both directions of each of the 30 flows to one member "
                              f"(hash {pool.hash}; asymmetric: {asymmetric[:4]})")
    shares = [sum(1 for there, _ in traces.values() if there == k) for k in range(SIZE)]
    run_flows(run, tcp_ports, udp_ports, "15 TCP and 15 UDP flows through 3 members")
    samples = [pool.metrics(k) for k in range(SIZE)]
    run.check(all(s is not None for s in samples), "pool: every member serves /metrics on its management NIC")
    for k, s in enumerate(samples):
        if s is None:
            continue
        out, back, refused = forwarded(s, "eth1"), forwarded(s, "eth0"), drops(s, "rule_drop")
        run.check(out > 0 and back > 0 and refused == 0,
                  f"pool: member {k}: {shares[k]} flows by the hash, forwarded {out} towards the receiver and "
                  f"{back} back, {refused} refused (a reply that missed its request's member would be)")


def failover(run, pool):
    """The last member stops and leaves the hash; new connections work,
    established ones on it break, the others' go on."""
    held = pick_ports(pool, 43000, 2)
    go = run.log_dir / "pool-go"
    go.unlink(missing_ok=True)
    log = run.log_dir / "pool-held.log"
    ports = ",".join(str(p) for member in held.values() for p in member)
    run.lab.start(["python3", TRAFFIC, "hold", RECEIVER, ports, str(go)], ns=run.lab.sender, out=log)
    if not wait_for_line(log, "open", 30):
        run.fail("pool: connections to hold across the failover did not open")
        return
    stopped = SIZE - 1
    run.lab.stop([pool.members.pop(stopped)])
    pool.flows(list(range(SIZE - 1)))
    moved = [p for k in range(SIZE - 1) for p in held[k] if pool.trace("tcp", p)[0] != k]
    run.check(not moved, f"pool: after member {stopped} left, the survivors keep their flows (moved: {moved})")
    new_tcp, new_udp = list(range(44000, 44010)), list(range(45000, 45010))
    run_flows(run, new_tcp, new_udp, f"member {stopped} stopped: 10 TCP and 10 UDP new flows")
    go.touch()
    deadline = time.monotonic() + 30
    results = None
    while results is None and time.monotonic() < deadline:
        lines = log.read_text().splitlines() if log.exists() else []
        results = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
        time.sleep(0.2)
    if results is None:
        run.fail("pool: the held connections did not report")
        return
    survived = [p for k in range(SIZE - 1) for p in held[k] if results.get(f"tcp/{p}") == "ok"]
    broken = [p for p in held[stopped] if results.get(f"tcp/{p}") != "ok"]
    invalid = sum(drops(s, "rule_drop") for s in (pool.metrics(k) for k in range(SIZE - 1)) if s)
    run.check(len(survived) == 2 * (SIZE - 1) and len(broken) == len(held[stopped]),
              f"pool: established connections on the survivors go on ({len(survived)}/{2 * (SIZE - 1)}); those on "
              f"member {stopped} break ({len(broken)}/{len(held[stopped])}): their next segments reach a member "
              f"without their state, INVALID there ({invalid} refused on the survivors)")
    run.check(invalid > 0, "pool: the survivors refused the stopped member's mid-stream segments")


def pool(run):
    """The pool test (see the module docstring)."""
    print(f"lab: a pool of {SIZE} bump-in-the-wire members behind Open vSwitch, symmetric hash, failover")
    run.image(POOL_RULES)
    the_pool = Pool(run)
    started = time.monotonic()
    try:
        run.lab.up(0)
        the_pool.ovs_up()
        the_pool.link_up()
        for k in range(SIZE):
            the_pool.boot(k)
        up = [the_pool.attach(k) for k in range(SIZE)]
        run.check(all(up), f"pool: {SIZE} members boot (TCG, -m {MEM}) and answer on their management NIC "
                           f"({time.monotonic() - started:.0f} s)")
        if not all(up):
            return
        the_pool.flows(list(range(SIZE)))
        serve_log = run.log_dir / "pool-serve.log"
        run.lab.start(["python3", TRAFFIC, "serve"], ns=run.lab.receiver, out=serve_log)
        if not wait_for_line(serve_log, "serving", 10):
            run.fail("pool: the receiver's echo servers did not start")
            return
        steady(run, the_pool)
        failover(run, the_pool)
        print(f"  (pool test: {time.monotonic() - started:.0f} s)")
    finally:
        the_pool.down()
