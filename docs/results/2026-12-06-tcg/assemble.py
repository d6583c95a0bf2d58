#!/usr/bin/env python3
"""How this folder's tables were assembled from three scripts/bench runs
on the same machine on 2026-12-06/07 (results/ is not committed; their
raw tool outputs are in raw.tar.xz):

  A  scripts/bench --seconds 5 --runs 1 --cap 90 --memory-resolution 8
       --max-connections 70000                      (every N, every system;
       stopped by hand while nftables loaded 1,000,000 rules, uncapped)
  B  the same options, --rules 1000000 --systems nftables,vm
       (after the restore and the VM's launch honoured the cap)
  C  --rules "1 ... 100000" --systems vm --metrics launch_time --cap 90
       (after the VM's addresses came up only with its rules loaded: in A
       it answered before iptables-restore had finished)

  assemble.py A B C OUT    writes OUT/results.{csv,json}, tables.md, *.png
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts" / "lib"))
import bench_report  # noqa: E402

REMEASURED = "re-measured in run C with the rules loaded before the first reply"


def load(folder):
    """A run's results."""
    return json.loads((Path(folder) / "results.json").read_text())


def main():
    """A's results, N = 1,000,000 of nftables and vm from B, the VM's
    launch time from C."""
    a, b, c, out = sys.argv[1:5]
    results = [r for r in load(a) if not (r["n"] == 1000000 and r["system"] in ("nftables", "vm"))]
    results += load(b)
    launch = {(r["n"]): r for r in load(c) if r["system"] == "vm" and r["metric"] == "launch_time"}
    for index, r in enumerate(results):
        if r["system"] == "vm" and r["metric"] == "launch_time" and r["n"] in launch:
            results[index] = dict(launch[r["n"]], note=REMEASURED)
    order = {name: k for k, name in enumerate(("unifw", "container", "nftables", "vm"))}
    results.sort(key=lambda r: (r["n"], order[r["system"]]))
    header = ("# unifw and three Linux firewalls, N = 1 ... 1,000,000 rules (2026-12-06, this project's 2-core "
              "machine)\n\naccelerator tcg (no VMX/SVM here); 5 s measurements, one run each; cap 90 s; "
              "memory to 8 MiB; concurrent connections up to 70,000. Assembled from three runs: see assemble.py "
              "and README.md.")
    Path(out).mkdir(parents=True, exist_ok=True)
    bench_report.write(results, out, header)


if __name__ == "__main__":
    main()
