"""scripts/bench's results: raw CSV and JSON, a Markdown table per metric
(systems x N) and a PNG plot per metric with a logarithmic x axis, like the
study's figures.

A result is a dict: system, n, metric, value, unit, runs, min, max, accel,
note. value is a number, "over cap" (the measurement ran past its cap,
recorded with the cap in note) or "n/a" (not measurable for that system,
note says why).
"""

import csv
import json
import math
import sys
from pathlib import Path

# metric: (unit, better, what); better is "higher" or "lower".
METRICS = {
    "image_size": ("bytes", "lower", "bytes of the bootable artifacts"),
    "launch_time": ("ms", "lower", "process start to the first echo reply from 10.1.0.1"),
    "idle_ping": ("ms", "lower", "sender to the firewall's own address, 1 probe/s, mean RTT"),
    "tcp_throughput": ("Mb/s", "higher", "iperf3 TCP goodput through the firewall"),
    "udp_throughput": ("Mb/s", "higher", "iperf3 UDP, 1448-byte datagrams, highest rate with < 1% loss"),
    "small_packet_rate": ("packets/s", "higher", "64-byte frames forwarded with < 0.1% loss (RFC 2544)"),
    "tcp_rr": ("requests/s", "higher", "sockperf ping-pong over one TCP connection"),
    "udp_rr": ("requests/s", "higher", "sockperf ping-pong over UDP"),
    "tcp_crr": ("connections/s", "higher", "connect, 1-byte request and echo, close"),
    "concurrent_connections": ("connections", "higher", "established TCP connections held at once (RFC 3511)"),
    "icmp_latency": ("ms", "lower", "sender to receiver, mean RTT of 100 echoes at 10 ms"),
    "tcp_latency": ("ms", "lower", "hping3 -S SYN to SYN-ACK, mean of 100"),
    "cpu_idle": ("% of a core", "lower", "host CPU of the firewall, idle"),
    "cpu_load": ("% of a core", "lower", "host CPU of the firewall under iperf3 TCP"),
    "memory": ("MiB", "lower", "smallest -m that boots and forwards"),
}
COLUMNS = ("system", "n", "metric", "value", "unit", "runs", "min", "max", "accel")


def cell(result):
    """A result's value as a table cell."""
    value = result["value"]
    if isinstance(value, str):
        return value
    if math.isnan(value):
        return "failed"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def write(results, out_dir, header):
    """results.csv, results.json, tables.md and METRIC.png in OUT_DIR;
    HEADER (Markdown) opens tables.md."""
    out = Path(out_dir)
    with open(out / "results.csv", "w", newline="") as raw:
        writer = csv.writer(raw)
        writer.writerow(COLUMNS)
        for result in results:
            writer.writerow([f"{result[column]:.6g}" if isinstance(result[column], float) else result[column]
                             for column in COLUMNS])
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    lines = [header, ""]
    for metric, (unit, better, what) in METRICS.items():
        mine = [r for r in results if r["metric"] == metric]
        if not mine:
            continue
        ns = sorted({r["n"] for r in mine})
        systems = list(dict.fromkeys(r["system"] for r in mine))
        lines += [f"### {metric} ({unit}, {better} is better)", "", what, "",
                  "| system | " + " | ".join(f"N={n:,}" for n in ns) + " |",
                  "|---|" + "---:|" * len(ns)]
        for system in systems:
            cells = []
            for n in ns:
                found = [r for r in mine if r["system"] == system and r["n"] == n]
                cells.append(cell(found[0]) if found else "")
            lines.append(f"| {system} | " + " | ".join(cells) + " |")
        notes = sorted({f"{r['system']}: {r['note']}" for r in mine if r.get("note")})
        lines += [""] + [f"- {note}" for note in notes] + [""]
        plot(metric, mine, unit, out / f"{metric}.png")
    (out / "tables.md").write_text("\n".join(lines) + "\n")


def plot(metric, results, unit, path):
    """One PNG: a line per system over N (log x), min-max as error bars."""
    try:
        import matplotlib
    except ImportError:
        # Debian's python3-matplotlib, when this Python is another one
        # (a pyenv build of the same version does not look there).
        sys.path.append("/usr/lib/python3/dist-packages")
        try:
            import matplotlib
        except ImportError:
            return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(figsize=(6, 4))
    for system in dict.fromkeys(r["system"] for r in results):
        points = sorted((r["n"], r["value"], r["min"], r["max"]) for r in results
                        if r["system"] == system and not isinstance(r["value"], str) and not math.isnan(r["value"]))
        if not points:
            continue
        xs, ys, lows, highs = zip(*points)
        axes.errorbar(xs, ys, yerr=[[y - lo for y, lo in zip(ys, lows)], [hi - y for y, hi in zip(ys, highs)]],
                      marker="o", capsize=3, label=system)
    axes.set_xscale("log")
    axes.set_xlabel("rules (N)")
    axes.set_ylabel(unit)
    axes.set_title(metric.replace("_", " "))
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
