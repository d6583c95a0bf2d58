"""Lab test `bench-quick`: `scripts/bench --quick` (issue 8) in the lab's
place: every metric of every system (unifw, container, nftables, vm) at
N = 1 and 1,000 must give a number (bench exits 1 otherwise, and with
--quick also for a metric over its cap); the results CSV must hold every
system x N x metric cell. Its run time is printed beside the 6-minute
budget (a figure, not an assertion: the machines are shared).
"""

import csv
import subprocess
import sys
import time

import bench_report
import lab
from bench_systems import SYSTEMS

RULES = (1, 1000)
BUDGET_S = 6 * 60


def bench_quick(run):
    """Runs scripts/bench --quick and checks its results."""
    out = run.log_dir / "bench-quick"
    print(f"lab: scripts/bench --quick (results in {out})")
    run.lab.down()
    started = time.monotonic()
    with open(run.log_dir / "bench-quick.log", "w") as log:
        status = subprocess.run([sys.executable, str(lab.ROOT / "scripts" / "bench"), "--quick", "--out", str(out)],
                                cwd=lab.ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    seconds = time.monotonic() - started
    tail = (run.log_dir / "bench-quick.log").read_text(errors="replace").splitlines()[-8:]
    run.check(status == 0, f"bench-quick: scripts/bench --quick exits 0 (got {status}; "
                           f"last lines: {' | '.join(tail)})" if status else "bench-quick: scripts/bench --quick exits 0")
    try:
        with open(out / "results.csv") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        run.fail(f"bench-quick: no results.csv ({exc})")
        return
    have = {(r["system"], int(r["n"]), r["metric"]) for r in rows if r["value"] not in ("", "nan", "over cap")}
    want = {(s, n, m) for s in SYSTEMS for n in RULES for m in bench_report.METRICS}
    missing = sorted(want - have)
    run.check(not missing, f"bench-quick: {len(want)} cells (systems x N x metrics) have a value"
              + (f"; missing {len(missing)}: {missing[:5]}" if missing else ""))
    print(f"  bench-quick took {seconds / 60:.1f} min (budget {BUDGET_S // 60} min: "
          f"{'within' if seconds <= BUDGET_S else 'OVER'}; a figure, not a check)")
