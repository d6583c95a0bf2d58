"""Traffic measurements of scripts/bench and scripts/bench-forward, from the
lab's sender to its receiver through whatever firewall stands between them
(CONVENTIONS.md's metrics table says which tool measures what).

Every measurement takes the lab and a `Measure` (run length, time cap,
where raw output goes) and returns a number, or raises `OverCap` when its
tool ran past the cap: a firewall too slow to finish is recorded as "over
cap", not left out.
"""

import json
import math
import re
import time
from pathlib import Path

import lab

RECEIVER = lab.HOSTS[1]
PROBE = str(Path(__file__).resolve().parent / "probe.py")
ECHO_PORT = "5001"
SOCKPERF_PORT = "11111"
# concurrent_connections' ports at the receiver, from this one up: one
# address pair has about 28,000 ephemeral ports (hold_ports).
HOLD_PORT = 5101
HOLD_PER_PORT = 20000
TOOLS = str(Path(__file__).resolve().parent / "bench_tools.py")
# 64-byte Ethernet frames: 14 + 20 + 8 + 18 bytes of payload + 4 (FCS).
SMALL_PAYLOAD = 18


class OverCap(Exception):
    """A measurement ran past its time cap."""


class Measure:
    """How long each measurement runs (SECONDS), its cap (CAP seconds) and
    where raw tool output goes (OUT_DIR)."""

    def __init__(self, the_lab, seconds, cap, out_dir, quick=False, max_connections=20000):
        """Measurements in THE_LAB. QUICK (scripts/bench --quick, a check
        that every metric gives a number, not a measurement to quote): 1 s
        search steps, the rate searches' ladders start higher (no N there
        is slow) and skip the bisection. MAX_CONNECTIONS: concurrent
        connections' ceiling."""
        self.lab = the_lab
        self.max_connections = max_connections
        self.seconds = seconds
        self.cap = cap
        self.quick = quick
        self.step_s = 1 if quick else max(seconds // 4, 2)
        # Bisection steps after the ladder (each halves the gap, in log scale).
        self.bisect = 3
        # Parallel iperf3 streams (flows) per measurement.
        self.streams = 1
        self.dir = Path(out_dir)
        self.servers = []

    def run(self, ns, command, timeout=None, keep=None, merge=False):
        """COMMAND's output in NS (stderr too if MERGE); OverCap past the
        cap (or TIMEOUT if shorter); the output also goes to KEEP (a file
        name) if given."""
        status, out = self.lab.run(ns, command, timeout=min(timeout or self.cap, self.cap), merge=merge)
        if keep:
            (self.dir / keep).write_text(out)
        if status == 124:
            raise OverCap(f"{command[0]} ran past {self.cap} s")
        return out

    # Servers in the receiver's namespace.

    def hold_ports(self):
        """concurrent_connections' destination ports (a list of str)."""
        return [str(HOLD_PORT + k) for k in range(math.ceil(self.max_connections / HOLD_PER_PORT))]

    def start_servers(self, kinds=("iperf3", "sockperf", "echo")):
        """Servers at the receiver, once they listen: iperf3, sockperf (TCP
        and UDP) and the echo servers (probe.py's for tcp_crr, and
        bench_tools.py hold-serve's processes for concurrent connections);
        KINDS chooses."""
        receiver = self.lab.receiver
        ports = []
        if "iperf3" in kinds:
            self.servers.append(self.lab.start(["iperf3", "-s", "-B", RECEIVER], ns=receiver,
                                               out=self.dir / "iperf3-server.log"))
            ports.append("5201")
        if "sockperf" in kinds:
            self.servers += [self.lab.start(["sockperf", "sr", "--tcp", "-i", RECEIVER, "-p", SOCKPERF_PORT],
                                            ns=receiver),
                             self.lab.start(["sockperf", "sr", "-i", RECEIVER, "-p", SOCKPERF_PORT], ns=receiver)]
            ports.append(SOCKPERF_PORT)
        if "echo" in kinds:
            self.servers += [self.lab.start(["python3", PROBE, "serve", ECHO_PORT], ns=receiver),
                             self.lab.start(["python3", TOOLS, "hold-serve", ",".join(self.hold_ports()),
                                             str(self.max_connections)], ns=receiver)]
            ports += [ECHO_PORT, *self.hold_ports()]
        deadline = time.monotonic() + 15
        while not all(f":{port} " in self.lab.run(receiver, ["ss", "-ltn"])[1] for port in ports):
            if time.monotonic() > deadline:
                raise lab.LabError("the receiver's servers did not start")
            time.sleep(0.1)

    def stop_servers(self):
        """Stops what start_servers started."""
        self.lab.stop(self.servers)
        self.servers = []

    # iperf3.

    def iperf(self, tag, args, seconds):
        """One iperf3 client run (JSON kept as TAG.json): its "end", or None.
        With `self.streams` > 1, that many parallel streams (flows with
        their own source ports, which a multiqueue NIC may spread over
        its queues); the end report sums them."""
        if self.streams > 1:
            args = [*args, "-P", str(self.streams)]
        report = self.run(self.lab.sender, ["iperf3", "-c", RECEIVER, *args, "-J"], timeout=seconds + 30,
                          keep=f"{tag}.json")
        try:
            return json.loads(report)["end"]
        except (ValueError, KeyError):
            return None

    def tcp_throughput(self, tag):
        """Receiver's TCP goodput over SECONDS, Mb/s."""
        end = self.iperf(tag, ["-t", str(self.seconds)], self.seconds)
        try:
            return end["sum_received"]["bits_per_second"] / 1e6
        except (TypeError, KeyError):
            return math.nan

    def udp_step(self, tag, bits, length, max_loss):
        """One UDP run at BITS/s offered in LENGTH-byte datagrams: the end
        report if under MAX_LOSS percent lost and >= 90% of the rate was
        really offered (iperf3 falls short when its control connection
        crawls, as through 1M iptables rules), else None."""
        # iperf3's -b is per stream.
        per_stream = int(bits / max(self.streams, 1))
        end = self.iperf(f"{tag}-{int(bits)}", ["-u", "-l", str(length), "-b", str(per_stream), "-t", str(self.step_s)],
                         self.step_s)
        try:
            if end["sum"]["lost_percent"] < max_loss and end["sum_sent"]["bits_per_second"] >= 0.9 * bits:
                return end
        except (TypeError, KeyError):
            pass
        return None

    def search(self, tag, low, high, length, max_loss, quick=None):
        """The highest offered rate (bits/s) in [LOW, HIGH] that passes
        udp_step: a x4 ladder from LOW, then `self.bisect` (3) geometric
        bisection steps (RFC 2544's binary search; 3 leaves it within 19%
        of the true rate, 6 within 2.2%). (rate, end report), or
        (0, None) if even LOW fails. QUICK (default self.quick): the ladder
        starts at 64 x LOW (from LOW again if that fails) and stops there."""
        quick = self.quick if quick is None else quick
        good, best, bad, rate = 0, None, None, low * 64 if quick else low
        while rate <= high:
            end = self.udp_step(tag, rate, length, max_loss)
            if end is None:
                bad = rate
                break
            good, best, rate = rate, end, rate * 4
        if quick and good == 0 and bad is not None and bad > low:
            # The quick ladder started too high: from the true low.
            return self.search(tag, low, bad, length, max_loss, quick=False)
        if bad is not None and good > 0 and not quick:
            for _ in range(self.bisect):
                middle = int(math.sqrt(good * bad))
                if not good < middle < bad:
                    break
                end = self.udp_step(tag, middle, length, max_loss)
                if end is None:
                    bad = middle
                else:
                    good, best = middle, end
        return good, best

    def udp_throughput(self, tag):
        """Receiver's Mb/s at the highest rate of 1448-byte datagrams with
        < 1% loss (from 64 kb/s: iptables with 1M rules passes a few hundred
        kb/s)."""
        _, end = self.search(tag, 64e3, 16e9, 1448, 1)
        return end["sum_received"]["bits_per_second"] / 1e6 if end else 0.0

    def small_packet_rate(self, tag):
        """The highest rate of 64-byte frames (18-byte UDP payloads)
        forwarded with < 0.1% loss, packets/s (RFC 2544 throughput)."""
        bits_per_packet = SMALL_PAYLOAD * 8
        good, _ = self.search(tag, 1000 * bits_per_packet, 4e6 * bits_per_packet, SMALL_PAYLOAD, 0.1)
        return good / bits_per_packet

    # Request/response.

    def sockperf_rr(self, tag, tcp):
        """Request/response over one TCP connection or UDP socket for
        SECONDS (sockperf ping-pong, 14-byte messages: its smallest, as
        it carries a header): round trips per second."""
        out = self.run(self.lab.sender, ["sockperf", "pp", *(["--tcp"] if tcp else []), "-i", RECEIVER, "-p",
                                         SOCKPERF_PORT, "-m", "14", "-t", str(self.seconds)],
                       timeout=self.seconds + 30, keep=f"{tag}.txt")
        found = re.search(r"RunTime=([\d.]+) sec; SentMessages=\d+; ReceivedMessages=(\d+)", out)
        return int(found.group(2)) / float(found.group(1)) if found and float(found.group(1)) > 0 else math.nan

    def tcp_crr(self, tag):
        """TCP connections/s: connect, 1-byte request, its echo, close,
        repeated for SECONDS (bench_tools.py crr, netperf's TCP_CRR)."""
        out = self.run(self.lab.sender, ["python3", TOOLS, "crr", RECEIVER,
                                         ECHO_PORT, str(self.seconds)], timeout=self.seconds + 30, keep=f"{tag}.txt")
        return float(out.split()[0]) if out.strip() else math.nan

    def concurrent(self, tag):
        """Established TCP connections held at once while new ones still
        open (RFC 3511 5.2), up to max_connections (bench_tools.py hold)."""
        out = self.run(self.lab.sender, ["python3", TOOLS, "hold", RECEIVER, ",".join(self.hold_ports()),
                                         str(self.max_connections)], keep=f"{tag}.txt", merge=True)
        last = (out.strip().splitlines() or [""])[-1]
        return float(last) if last.isdigit() else math.nan

    # Latency.

    def ping_mean(self, tag, address, count, interval):
        """Mean RTT (ms) of COUNT echoes from the sender to ADDRESS."""
        out = self.run(self.lab.sender, ["ping", "-c", str(count), "-i", str(interval), "-W1", "-q", address],
                       timeout=count * interval + 30, keep=f"{tag}.txt")
        found = re.search(r"^(?:rtt|round-trip)[^=]*= [\d.]+/([\d.]+)/", out, re.MULTILINE)
        return float(found.group(1)) if found else math.nan

    def idle_ping(self, tag):
        """Sender -> the firewall's own address, 1 probe/s, mean RTT (ms):
        min(SECONDS, 10) probes."""
        return self.ping_mean(tag, lab.FIREWALL[0], min(self.seconds, 10), 1)

    def icmp_latency(self, tag):
        """Sender -> receiver through the firewall, 100 echoes at 10 ms."""
        return self.ping_mean(tag, RECEIVER, 100, 0.01)

    def ping_distribution(self, tag, count=200, interval=0.01, load_pps=0):
        """Sender -> receiver through the firewall, COUNT echoes at
        INTERVAL seconds: (median, 99th percentile) RTT in ms, lost echoes
        left out. With LOAD_PPS > 0, 64-byte UDP frames (iperf3, 18-byte
        payloads) flow from the sender to the receiver at that rate
        meanwhile (the iperf3 server must run)."""
        load = None
        if load_pps > 0:
            seconds = int(count * interval) + 3
            bits = int(load_pps * SMALL_PAYLOAD * 8)
            streams = ["-P", str(self.streams)] if self.streams > 1 else []
            load = self.lab.start(["iperf3", "-c", RECEIVER, "-u", "-l", str(SMALL_PAYLOAD), "-b",
                                   str(bits // max(self.streams, 1)), "-t", str(seconds), *streams],
                                  ns=self.lab.sender, out=self.dir / f"{tag}-load.json")
            time.sleep(1)
        try:
            out = self.run(self.lab.sender, ["ping", "-c", str(count), "-i", str(interval), "-W1", RECEIVER],
                           timeout=count * interval + 30, keep=f"{tag}.txt")
        finally:
            if load:
                self.lab.stop([load])
        rtts = sorted(float(t) for t in re.findall(r"time=([\d.]+) ms", out))
        if not rtts:
            return math.nan, math.nan
        return rtts[len(rtts) // 2], rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]

    def tcp_latency(self, tag):
        """SYN -> SYN-ACK RTT (ms) of 100 hping3 -S probes at 10 ms to
        iperf3's listening port (hping3 prints its summary on stderr)."""
        out = self.run(self.lab.sender, ["hping3", "-S", "-p", "5201", "-c", "100", "-i", "u10000", RECEIVER],
                       timeout=60, keep=f"{tag}.txt", merge=True)
        found = re.search(r"round-trip min/avg/max = [\d.]+/([\d.]+)/", out)
        return float(found.group(1)) if found else math.nan


def shape_links(the_lab, rate):
    """`tc` token buckets of RATE (e.g. 1gbit) on the sender's and the
    receiver's lab interfaces (both directions of the chain)."""
    for index, (ns, _) in enumerate(the_lab.sides):
        lab.sh(["ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", the_lab.taps[index], "root", "tbf",
                "rate", rate, "burst", "256kb", "latency", "50ms"])
