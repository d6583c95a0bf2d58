"""Lab test `fw-random`: random iptables-save rulesets
(scripts/lib/ruleset_gen.py) in unifw and in the Linux namespace firewall,
each with the same probe flows (probe.py: new TCP connections, UDP
datagrams and ICMP echoes both ways between hosts .2-.9 of each side, and
some from hosts .3-.9 to the firewall's own addresses), which must get the
same verdict from both: passed (or answered, for the firewall), dropped,
reset, or the same ICMP error.

Environment: FW_RANDOM_ROUNDS rulesets (default 3), FW_RANDOM_SEED the
first one's seed (default 1; round K uses SEED + K), FW_RANDOM_PROBES
probes per ruleset (default 200), FW_RANDOM_FEATURES a comma-separated
list of ruleset_gen.FEATURES (default: all of them). A failing ruleset
stays in the log directory as random-SEED.ipt, with both sides' verdicts.
"""

import os

import lab
import ruleset_gen
from lab_tests import PROBE, fw_boot, fw_compare, probe_run, through_linux

# What unifw supports of ruleset_gen.FEATURES.
SUPPORTED = ("chains", "return", "syn", "tcpflags", "log", "limit", "addrtype", "ttl", "length", "pkttype",
             "output", "notrack", "tcpmss", "recent", "ports", "hashlimit", "string", "physdev")


def fw_random(run):
    rounds = int(os.environ.get("FW_RANDOM_ROUNDS", "3"))
    first = int(os.environ.get("FW_RANDOM_SEED", "1"))
    probes = os.environ.get("FW_RANDOM_PROBES", "200")
    wanted = os.environ.get("FW_RANDOM_FEATURES")
    features = wanted.split(",") if wanted else list(SUPPORTED)
    print(f"lab: random differential test, {rounds} rulesets x {probes} probes, features {','.join(features)}")
    for seed in range(first, first + rounds):
        tag = f"random-{seed}"
        rules = run.log_dir / f"{tag}.ipt"
        rules.write_text(ruleset_gen.generate(seed, features))
        plan = run.log_dir / f"{tag}.plan"
        _, text = lab.output_of(["python3", PROBE, "plan", probes, "--seed", str(seed), "--local", "25"],
                                merge=False)
        plan.write_text(text)
        ours, linux = run.log_dir / f"{tag}-unifw.verdicts", run.log_dir / f"{tag}-linux.verdicts"
        if not fw_boot(run, tag, rules):
            continue
        probe_run(run, plan, ours, introduce=True)
        run.expect_no_console("PANIC|ERROR", f"{tag}: no errors on the unifw console")
        if through_linux(run, tag, rules, lambda: probe_run(run, plan, linux, introduce=True) or True):
            fw_compare(run, plan, ours, linux, tag)
