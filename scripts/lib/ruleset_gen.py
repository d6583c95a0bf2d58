"""Random iptables-save rulesets for the lab's random differential test
(`scripts/test --lab fw-random`, scripts/lib/lab_random.py): the same file
goes into unifw and, with iptables-restore, into the Linux namespace
firewall, and probe.py's flows must get the same verdicts from both.

  generate(seed, features) -> the file's text

The rules speak of the lab's addresses (hosts 10.1.0.2-9 on the sender's
side, eth0; 10.2.0.2-9 on the receiver's, eth1; the firewall 10.1.0.1 and
10.2.0.1) and of probe.py's ports (PLAN_PORTS), so that they match some
probes and not others. FEATURES (a set of names, `FEATURES` lists them all)
chooses what the rules may use beyond plain matches and verdicts.

Every ruleset begins by accepting ICMP between the firewall and hosts .2
(INPUT and OUTPUT): the lab checks that a firewall is up by pinging it from
there, and probes never come from .2 to the firewall. Whatever depends on
the order or timing of packets is kept deterministic: a rate limit either
never runs out (burst 10,000) or counts only ICMP echoes from the sender's
side, which one process sends in plan order; so do the `-m recent` rules
(their --seconds span the whole run: only the order of packets counts) and
the `-m hashlimit` rules (1/hour per source, a table of 2 entries expiring
after an hour: only the order counts).
"""

import random

# Each feature, and what it adds to the rules.
FEATURES = {
    "chains": "user chains: -N, -j CHAIN, -g CHAIN (to later chains only: no loops)",
    "return": "-j RETURN in user and built-in chains",
    "syn": "--syn and ! --syn",
    "tcpflags": "--tcp-flags MASK COMP",
    "log": "-j LOG and -j NFLOG (matching goes on)",
    "limit": "-m limit",
    "recent": "-m recent --set/--rcheck/--update/--remove with --seconds, --hitcount, --rdest, --mask, !",
    "hashlimit": "-m hashlimit: per source over ICMP echoes (burst, above, !, a shared table, a full table)",
    "addrtype": "-m addrtype --src-type/--dst-type",
    "ttl": "-m ttl",
    "length": "-m length",
    "pkttype": "-m pkttype",
    "tcpmss": "-m tcpmss --mss A:B (SYNs carry MSS 1460, other segments none)",
    "output": "rules and a DROP policy in OUTPUT (the firewall's own packets)",
    "notrack": "*raw PREROUTING/OUTPUT -j NOTRACK or CT --notrack, and --ctstate UNTRACKED",
    "ports": "-m multiport [!] --ports LIST (the source or the destination port)",
    "string": "-m string over the probes' payloads (\"unifw pN\" at byte 28 of UDP and ICMP): --string, "
              "--hex-string, --icase, --from/--to windows, bm and kmp, !",
    "physdev": "-m physdev (nothing is bridged: a plain option never holds, all negated always do)",
}

PORTS = [22, 53, 80, 443, 999, 1023, 1024, 3306, 5000, 5432, 5999, 6000, 6001, 6015, 7000, 8000, 9000,
         10000, 20000, 40000, 50000]
SIDES = ("10.1.0", "10.2.0")
FIREWALL = ("10.1.0.1", "10.2.0.1")
REJECT_ICMP = ["icmp-net-unreachable", "icmp-host-unreachable", "icmp-port-unreachable",
               "icmp-proto-unreachable", "icmp-net-prohibited", "icmp-host-prohibited", "icmp-admin-prohibited"]


class Gen:
    def __init__(self, seed, features):
        self.rng = random.Random(seed)
        self.seed = seed
        self.f = set(features)
        self.chains = [f"C{i}" for i in range(self.rng.randint(1, 4))] if "chains" in self.f else []

    def pct(self, p):
        return self.rng.random() * 100 < p

    def host(self, side):
        return f"{SIDES[side]}.{self.rng.randint(2, 9)}"

    def net(self, side):
        length = self.rng.choice([24, 29, 30, 31, 32, 32])
        base = self.rng.randint(0, 9) & ~((1 << (32 - length)) - 1) if length > 24 else 0
        return f"{SIDES[side]}.{base}/{length}"

    def neg(self, p=15):
        return "! " if self.pct(p) else ""

    def ports(self):
        a = self.rng.choice(PORTS)
        if self.pct(30):
            b = self.rng.choice([p for p in PORTS if p >= a])
            return f"{a}:{b}"
        return str(a)

    def matches(self, chain):
        """The match part of one rule of CHAIN (INPUT, FORWARD, OUTPUT, a
        user chain reached from INPUT/FORWARD, or raw PREROUTING/OUTPUT)."""
        m = []
        out = chain in ("OUTPUT", "raw-OUTPUT")
        inbound = chain in ("INPUT", "raw-PREROUTING")
        side = self.rng.randint(0, 1)
        if out:
            if self.pct(40):
                m.append(f"-s {FIREWALL[self.rng.randint(0, 1)]}/32")
            if self.pct(50):
                m.append(f"{self.neg()}-d {self.net(side)}")
            if self.pct(30) and chain == "OUTPUT":
                m.append(f"{self.neg()}-o eth{side}")
        else:
            if self.pct(50):
                m.append(f"{self.neg()}-s {self.net(side)}")
            if inbound and self.pct(30):
                m.append(f"-d {FIREWALL[self.rng.randint(0, 1)]}/32")
            elif self.pct(40):
                m.append(f"{self.neg()}-d {self.net(1 - side)}")
            if self.pct(30):
                m.append(f"{self.neg()}-i eth{side}")
            if chain == "FORWARD" and self.pct(20):
                m.append(f"{self.neg()}-o eth{1 - side}")
        proto = self.rng.choice(["tcp", "tcp", "udp", "udp", "icmp", None])
        if proto:
            m.append(f"-p {proto}")
        if proto in ("tcp", "udp"):
            if self.pct(50):
                m.append(f"-m {proto} {self.neg()}--dport {self.ports()}")
            elif self.pct(30):
                m.append(f"-m multiport {self.neg(10)}--dports {','.join(str(p) for p in self.rng.sample(PORTS, 3))}")
            if self.pct(15):
                m.append(f"-m {proto} --sport {self.rng.choice(['600:699', '1024:65535', '30000:30100', '700:799'])}")
            if "ports" in self.f and self.pct(15):
                # multiport refuses a range A:A (iptables: "invalid portrange").
                ports = [p.split(":")[0] if p.count(":") and len(set(p.split(":"))) == 1 else p
                         for p in (self.ports() for _ in range(self.rng.randint(1, 3)))]
                if self.pct(20):
                    ports.append(self.rng.choice(['600:699', '30000:30100']))
                m.append(f"-m multiport {self.neg(25)}--ports {','.join(ports)}")
        if proto == "tcp":
            if "syn" in self.f and self.pct(20):
                m.append(f"-m tcp {self.neg(40)}--syn")
            elif "tcpflags" in self.f and self.pct(20):
                mask, comp = self.rng.choice([("SYN,ACK", "SYN"), ("SYN,RST,ACK,FIN", "SYN"), ("RST", "RST"),
                                              ("ACK,RST", "ACK,RST"), ("ALL", "NONE"), ("FIN,SYN", "FIN,SYN")])
                m.append(f"-m tcp {self.neg(20)}--tcp-flags {mask} {comp}")
        if proto == "tcp" and "tcpmss" in self.f and self.pct(10):
            a = self.rng.choice([0, 536, 1400, 1460, 1461])
            m.append(f"-m tcpmss {self.neg(30)}--mss {a}:{a + self.rng.choice([0, 60, 1000])}")
        if proto == "icmp" and self.pct(60):
            kinds = ["echo-request", "echo-reply", "destination-unreachable", "port-unreachable", "8", "3/3"]
            m.append(f"-m icmp {self.neg(10)}--icmp-type {self.rng.choice(kinds)}")
        if not chain.startswith("raw") and self.pct(25):
            states = ["NEW", "ESTABLISHED", "RELATED,ESTABLISHED", "INVALID", "NEW,ESTABLISHED"]
            if "notrack" in self.f:
                states += ["UNTRACKED", "UNTRACKED", "NEW,UNTRACKED"]
            m.append(f"-m conntrack {self.neg(10)}--ctstate {self.rng.choice(states)}")
        if "addrtype" in self.f and self.pct(12):
            which = self.rng.choice(["--dst-type", "--src-type"])
            m.append(f"-m addrtype {self.neg(20)}{which} {self.rng.choice(['LOCAL', 'UNICAST', 'BROADCAST', 'LOCAL'])}")
        if "ttl" in self.f and self.pct(10):
            m.append(f"-m ttl --ttl-{self.rng.choice(['eq', 'lt', 'gt'])} {self.rng.choice([62, 63, 64, 65])}")
        if "length" in self.f and self.pct(10):
            a = self.rng.choice([0, 28, 40, 60, 84])
            m.append(f"-m length {self.neg(20)}--length {a}:{a + self.rng.choice([10, 30, 100, 2000])}")
        if "pkttype" in self.f and self.pct(8):
            m.append(f"-m pkttype {self.neg(20)}--pkt-type {self.rng.choice(['unicast', 'broadcast', 'multicast'])}")
        if "string" in self.f and not chain.startswith("raw") and self.pct(12):
            m.append(self.string())
        if "limit" in self.f and not chain.startswith("raw") and self.pct(8):
            m.append("-m limit --limit 10000/sec --limit-burst 10000")
        elif "hashlimit" in self.f and not chain.startswith("raw") and self.pct(6):
            # Never runs out; one configuration for every rule naming it.
            m.append(f"-m hashlimit --hashlimit-upto 10000/sec --hashlimit-burst 10000 "
                     f"--hashlimit-mode srcip,dstport --hashlimit-name H{self.seed}-any")
        if "physdev" in self.f and chain in ("INPUT", "FORWARD") and self.pct(6):
            m.append("-m physdev " + self.rng.choice(["--physdev-in eth0", "--physdev-is-bridged",
                                                      "! --physdev-is-bridged", "! --physdev-in eth1 ! --physdev-is-in",
                                                      "--physdev-is-in"]))
        if self.pct(5):
            m.append(f'-m comment --comment "random {self.rng.randint(0, 999)}"')
        return m, proto

    def string(self):
        """A -m string match over the probes' payloads: UDP datagrams and
        ICMP echoes carry "unifw pN" (N the probe's number) from byte 28
        of the IP packet; the firewall's ICMP errors quote them further on."""
        n = self.rng.randint(1, 9)
        algo = self.rng.choice(["bm", "kmp"])
        neg = self.neg(20)
        kind = self.rng.choice(["plain", "icase", "hex", "window", "window"])
        if kind == "plain":
            return f'-m string --algo {algo} {neg}--string "unifw p{n}"'
        if kind == "icase":
            return f'-m string --algo {algo} {neg}--string "UNIFW P{n}" --icase'
        if kind == "hex":
            return f'-m string --algo {algo} {neg}--hex-string "|75 6e 69 66 77| p{n}"'
        # "w pN" is bytes 32..36: --to 36 holds it wholly, 35 does not;
        # --from 33 misses it. (Four bytes: TCP headers' random sequence
        # numbers do not hold it by chance.)
        start = self.rng.choice([0, 28, 32, 33])
        end = self.rng.choice([35, 36, 40, 90, 65535])
        return f'-m string --algo {algo} --from {start} --to {max(end, start)} {neg}--string "w p{n}"' 

    def target(self, chain, proto, later):
        """The target of a rule in CHAIN; LATER: the user chains it may
        jump to."""
        options = ["-j ACCEPT", "-j DROP", "-j DROP"]
        if not chain.startswith("raw"):
            kind = self.rng.choice(REJECT_ICMP + (["tcp-reset", "tcp-reset"] if proto == "tcp" else []))
            options += [f"-j REJECT --reject-with {kind}", "-j REJECT"]
        if later:
            options += [f"-j {self.rng.choice(later)}"] * 3 + [f"-g {self.rng.choice(later)}"]
        if "return" in self.f and (chain in self.chains or self.pct(20)):
            options += ["-j RETURN"] * 2
        if "log" in self.f and not chain.startswith("raw"):
            options += [f'-j LOG --log-prefix "r{self.rng.randint(0, 99)} "', "-j NFLOG --nflog-group 1"]
        return self.rng.choice(options)

    def rules(self, chain, n, later=()):
        out = []
        for _ in range(n):
            m, proto = self.matches(chain)
            target = self.target(chain, proto, list(later))
            # Sometimes the never-running-out limit comes before other
            # matches: unifw splits such a rule in two (not with RETURN or
            # a goto, which it refuses there).
            stateful = [x for x in m if x.startswith(("-m limit", "-m hashlimit"))]
            if stateful and len(m) > 1 and not target.startswith("-g") and target != "-j RETURN" and self.pct(50):
                m.remove(stateful[0])
                m.insert(self.rng.randint(0, len(m) - 1), stateful[0])
            out.append(f"-A {chain} {' '.join(m)} {target}".replace("  ", " "))
        return out

    def limited(self):
        """A rule whose limit runs out: ICMP echoes from the sender's hosts
        .3-.9 only (sent in plan order by one process), a small burst."""
        chain = self.rng.choice(["FORWARD", "INPUT"])
        burst = self.rng.randint(1, 4)
        verdict = self.rng.choice(["ACCEPT", "DROP", "REJECT --reject-with icmp-admin-prohibited"])
        limit = f"-m limit --limit 1/hour --limit-burst {burst}"
        if self.pct(40):
            # Before the type match: every ICMP packet from those hosts
            # spends a token (unifw splits the rule).
            return (f"-A {chain} -p icmp -m iprange --src-range 10.1.0.3-10.1.0.9 {limit} -m icmp --icmp-type 8 "
                    f"-j {verdict}")
        return (f"-A {chain} -p icmp -m iprange --src-range 10.1.0.3-10.1.0.9 -m icmp --icmp-type 8 "
                f"{limit} -j {verdict}")

    def hashlimited(self):
        """Rules of one hashlimit table over ICMP echoes from the sender's
        hosts .3-.9 (sent in plan order by one process): per source (or
        per pair of sources: --hashlimit-srcmask 31), a small burst at
        1/hour; sometimes a table of 2 entries (a third source is dropped,
        Linux's hot drop); a second rule naming the table with another
        rate and burst (Linux ignores them: the first rule's hold)."""
        # Mostly FORWARD: most of the plan's echoes cross the firewall.
        chain = self.rng.choice(["FORWARD", "FORWARD", "FORWARD", "INPUT"])
        echo = f"-A {chain} -p icmp -m iprange --src-range 10.1.0.3-10.1.0.9 -m icmp --icmp-type 8"
        name = f"--hashlimit-name H{self.seed}-echo"
        mode = self.rng.choice(["srcip", "srcip", "srcip,dstip", "srcip --hashlimit-srcmask 31"])
        size = self.rng.choice(["", "", " --hashlimit-htable-size 1 --hashlimit-htable-max 2"])
        burst = self.rng.randint(1, 3)
        verdict = lambda: self.rng.choice(["ACCEPT", "DROP", "REJECT --reject-with icmp-admin-prohibited",  # noqa: E731
                                           "REJECT --reject-with icmp-host-prohibited"])
        rate = self.rng.choice(["--hashlimit-upto 1/hour", "! --hashlimit-above 1/hour", "--hashlimit-above 1/hour"])
        lines = [f"{echo} -m hashlimit {rate} --hashlimit-burst {burst} --hashlimit-mode {mode}{size} {name} "
                 f"-j {verdict()}"]
        if self.pct(50):
            lines.append(f"{echo} -m hashlimit --hashlimit-above 1000/sec --hashlimit-burst 50 "
                         f"--hashlimit-mode dstip {name} -j {verdict()}")
        return lines

    def recent(self, n):
        """Rules of recent table Rn: ICMP echoes from the sender's hosts
        .3-.9 only (sent in plan order by one process) are remembered and
        counted, with windows longer than the run."""
        chain = self.rng.choice(["FORWARD", "INPUT"])
        echo = f"-A {chain} -p icmp -m iprange --src-range 10.1.0.3-10.1.0.9 -m icmp --icmp-type 8"
        side = self.rng.choice(["", " --rsource", " --rdest"])
        mask = self.rng.choice(["", "", " --mask 255.255.255.254"])
        # Named after the seed too: Linux keeps a table while some rule
        # names it, also across an iptables-restore.
        name = f" --name R{self.seed}-{n}{side}{mask}"
        # Verdicts a probe tells apart (an accepted echo's reply may be
        # dropped on its way back, which would hide the recent match).
        verdict = lambda: self.rng.choice(["DROP", "REJECT --reject-with icmp-admin-prohibited",  # noqa: E731
                                           "REJECT --reject-with icmp-host-prohibited"])
        set_rule = f"{echo} -m recent --set{name}" + self.rng.choice(["", "", f" -j {verdict()}"])
        if self.pct(40):
            # --set before the type match (unifw splits the rule).
            set_rule = set_rule.replace(" -m icmp --icmp-type 8 -m recent --set" + name,
                                        " -m recent --set" + name + " -m icmp --icmp-type 8")
        checks = []
        for _ in range(self.rng.randint(1, 2)):
            cmd = self.rng.choice(["--rcheck", "--update", "--update"])
            hit = self.rng.choice(["", f" --hitcount {self.rng.randint(1, 4)}"])
            reap = self.rng.choice(["", "", " --reap"])
            checks.append(f"{echo} -m recent {self.neg(20)}{cmd} --seconds 3600{reap}{hit}{name} -j {verdict()}")
        if self.pct(20):
            checks.append(f"{echo} -m recent --remove{name} -j {verdict()}")
        lines = checks + [set_rule]
        self.rng.shuffle(lines)
        return lines

    def ruleset(self):
        lines = ["# random ruleset (scripts/lib/ruleset_gen.py)"]
        if "notrack" in self.f:
            lines += ["*raw", ":PREROUTING ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
            for chain in ("PREROUTING", "OUTPUT"):
                for rule in self.rules(f"raw-{chain}", self.rng.randint(1, 3)):
                    rule = rule.rsplit(" -j ", 1)[0].rsplit(" -g ", 1)[0]
                    target = self.rng.choice(["-j NOTRACK", "-j CT --notrack", "-j NOTRACK"])
                    lines.append(rule.replace(f"-A raw-{chain}", f"-A {chain}") + " " + target)
            lines.append("COMMIT")
        policy = lambda: self.rng.choice(["ACCEPT", "DROP"])  # noqa: E731
        out_policy = policy() if "output" in self.f else "ACCEPT"
        lines += ["*filter", f":INPUT {policy()} [0:0]", f":FORWARD {policy()} [0:0]", f":OUTPUT {out_policy} [0:0]"]
        lines += [f":{c} - [0:0]" for c in self.chains]
        for side in (0, 1):
            lines.append(f"-A INPUT -s {SIDES[side]}.2/32 -p icmp -j ACCEPT")
        if "output" in self.f:
            for side in (0, 1):
                lines.append(f"-A OUTPUT -d {SIDES[side]}.2/32 -p icmp -j ACCEPT")
        if "limit" in self.f and self.pct(70):
            lines.append(self.limited())
        if "hashlimit" in self.f and self.pct(80):
            lines += self.hashlimited()
        if "recent" in self.f:
            for n in range(self.rng.randint(1, 2)):
                lines += self.recent(n)
        lines += self.rules("FORWARD", self.rng.randint(8, 25), self.chains)
        lines += self.rules("INPUT", self.rng.randint(3, 10), self.chains)
        if "output" in self.f:
            lines += self.rules("OUTPUT", self.rng.randint(2, 8))
        for i, c in enumerate(self.chains):
            lines += self.rules(c, self.rng.randint(2, 8), self.chains[i + 1:])
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"


def generate(seed, features):
    """The text of random ruleset SEED using FEATURES (names of `FEATURES`)."""
    unknown = set(features) - set(FEATURES)
    if unknown:
        raise ValueError(f"unknown features: {', '.join(sorted(unknown))} (known: {', '.join(FEATURES)})")
    return Gen(seed, features).ruleset()


if __name__ == "__main__":
    import sys
    print(generate(int(sys.argv[1]) if len(sys.argv) > 1 else 1, sys.argv[2].split(",") if len(sys.argv) > 2
                   else FEATURES), end="")
