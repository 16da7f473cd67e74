#!/usr/bin/python3
"""Turns the benchmark's sample lines into the table, JSON and chart.

    Benchmarks/report.py OUT_DIR SAMPLES.jsonl [SAMPLES.jsonl ...]

Every sample is one JSON line {"measure", "impl", "value", "unit", "note"?}
(devif-bench, the C baselines and the lab script print the same shape).
Each row of the issue's table pairs devif's samples with its baseline's from
the same run: runs, median, spread (min-max), the ratio of the medians, the
target and whether it is met. Writes OUT_DIR/results.json, OUT_DIR/table.md
and OUT_DIR/chart.png (when matplotlib is importable), and prints the table.
"""
import json
import statistics
import sys
from pathlib import Path

# measure, devif impl, baseline impl, label, how the target is checked, target.
#   min-ratio: devif/baseline >= target (more is better)
#   max-ratio: devif/baseline <= target (less is better)
#   max-diff:  devif - baseline <= target (less is better, same unit)
#   exact:     devif == target (no baseline)
#   max:       devif <= target (no baseline; less is better)
#   min:       devif >= target (no baseline; more is better)
ROWS = [
    ("bulk-in", "devif", "libusb-c", "bulk IN MB/s from SourceSink", "min-ratio", 0.95),
    ("bulk-in-stream", "devif", "libusb-c", "bulk IN MB/s from SourceSink, devif reading an IN stream as an AsyncSequence", "min-ratio", 0.95),
    ("bulk-in-stream-executor", "devif", "libusb-c", "bulk IN MB/s from SourceSink, devif reading an IN stream as an AsyncSequence in a task on USBHandle.completionExecutor", "min-ratio", 0.95),
    ("bulk-out", "devif", "libusb-c", "bulk OUT MB/s to SourceSink, devif's OUT stream", "min-ratio", 0.95),
    ("usbip-bulk-in", "devif", "libusb-c", "bulk IN MB/s from SourceSink over USB/IP (vhci, loopback TCP)", "min-ratio", 0.95),
    ("bulk-loopback", "devif", "libusb-c", "bulk loopback MB/s", "min-ratio", 0.95),
    ("bulk-loopback-64", "devif", "libusb-c", "bulk loopback, 64-byte round trips, MB/s", "min-ratio", 0.95),
    ("hid-echo", "devif", "hidapi-c", "HID 64-byte echo round trip (us)", "max-ratio", 1.05),
    ("plug-arrival", "devif", "libusb-c", "plug to subscriber arrival (ms)", "max-diff", 2.0),
    # The same target paired: one plug, devif's publication after a raw
    # libusb callback in the same process (plug-arrival's two sides see
    # different plugs, whose own time swings by 5-100 ms).
    ("plug-lag", "devif", None, "single plug: arrival after libusb's callback for the same plug, median (ms)", "max", 2.0),
    ("fanout-1", "devif", "asyncstream", "fan-out deliveries/s, 1 subscriber", "min-ratio", 10.0),
    ("fanout-4", "devif", "asyncstream", "fan-out deliveries/s, 4 subscribers", "min-ratio", 10.0),
    ("fanout-16", "devif", "asyncstream", "fan-out deliveries/s, 16 subscribers", "min-ratio", 10.0),
    ("fanout-1", "devif", "mutex-continuations", "fan-out, 1 subscriber vs Mutex+continuations", None, None),
    ("fanout-4", "devif", "mutex-continuations", "fan-out, 4 subscribers vs Mutex+continuations", None, None),
    ("fanout-16", "devif", "mutex-continuations", "fan-out, 16 subscribers vs Mutex+continuations", None, None),
    ("allocations-per-event", "devif", None, "allocations per published event", "exact", 0.0),
    # libusb's usbfs backend callocs each submission's URB array: 1 is
    # libusb's own, and devif adds nothing to it.
    ("sync-transfer-allocations", "devif", None, "allocations per warm synchronous bulk transfer (libusb's URB array included)", "max", 1.0),
    ("control-transfer-allocations", "devif", None, "allocations per warm synchronous control transfer into the caller's memory (libusb's URB array included)", "max", 1.0),
    ("publish-p99", "devif-stalled", "devif-no-stalled", "publish p99 (ns), one stalled subscriber vs none", "max-ratio", 1.1),
    ("idle-rss", "devif-usb-watch", "udevadm-monitor", "idle RSS (KiB) of devif-usb watch", "max-ratio", 3.0),
    # The same processes' anonymous memory (heap, stacks, written data),
    # without the file pages they map (shared, reclaimable).
    ("idle-rss-anon", "devif-usb-watch", "udevadm-monitor", "idle anonymous RSS (KiB) of devif-usb watch", None, None),
    ("burst-lag", "devif", None, "burst of 24: arrival after libusb's callback, median (ms)", "max", 10.0),
    ("burst-lag-p95", "devif", None, "burst of 24: arrival after libusb's callback, p95 (ms)", "max", 50.0),
    ("storm-reported", "devif", None, "storm (300 random plugs and unplugs of 24): devices libusb's callback saw that devif reported (%)", "min", 99.0),
    ("storm-lag", "devif", None, "storm: arrival after libusb's callback, median (ms)", "max", 10.0),
    ("storm-lag-p95", "devif", None, "storm: arrival after libusb's callback, p95 (ms)", "max", 50.0),
    ("list-32", "devif-usb-list", "lsusb", "list wall time with 32 devices (ms)", "max-ratio", 1.0),
    ("rules-names", "devif-usb-rules-names-32", "devif-usb-rules-names-1", "rules names wall time, 32 devices vs 1 (ms)", "max-ratio", 1.2),
]


def load(paths):
    samples = []
    for path in paths:
        p = Path(path)
        if not p.exists():
            print(f"report: {path} is missing (that part did not run)", file=sys.stderr)
            continue
        for n, line in enumerate(p.read_text().splitlines(), 1):
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                s = json.loads(line)
                float(s["value"])
                samples.append(s)
            except (ValueError, KeyError, TypeError):
                print(f"report: {path}:{n}: not a sample line, skipped", file=sys.stderr)
    return samples


def stats(values):
    if not values:
        return None
    return {"runs": len(values), "median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt(x):
    if x is None:
        return "-"
    if abs(x) >= 1e6:
        return f"{x / 1e6:.2f}M"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def cell(st, unit):
    if st is None:
        return "not run"
    return f"{fmt(st['median'])} {unit} ({fmt(st['min'])}-{fmt(st['max'])}, n={st['runs']})"


def evaluate(samples):
    rows = []
    for measure, impl, base_impl, label, check, target in ROWS:
        mine = [float(s["value"]) for s in samples if s["measure"] == measure and s["impl"] == impl]
        theirs = [float(s["value"]) for s in samples if s["measure"] == measure and s["impl"] == base_impl]
        unit = next((s["unit"] for s in samples if s["measure"] == measure), "")
        d, b = stats(mine), stats(theirs)
        row = {"measure": measure, "label": label, "unit": unit, "devif_impl": impl, "baseline_impl": base_impl,
               "devif": d, "baseline": b, "check": check, "target": target, "ratio": None, "diff": None, "met": None}
        if d and b and b["median"]:
            row["ratio"] = d["median"] / b["median"]
            row["diff"] = d["median"] - b["median"]
        if d and check == "exact":
            row["met"] = d["median"] == target
        elif d and check == "max":
            row["met"] = d["median"] <= target
        elif d and check == "min":
            row["met"] = d["median"] >= target
        elif row["ratio"] is not None and check:
            row["met"] = {"min-ratio": row["ratio"] >= target, "max-ratio": row["ratio"] <= target,
                          "max-diff": row["diff"] <= target}[check]
        rows.append(row)
    return rows


def target_text(row):
    check, t = row["check"], row["target"]
    if check is None:
        return "(for reference)"
    return {"min-ratio": f">= {t:g}x", "max-ratio": f"<= {t:g}x", "max-diff": f"<= +{t:g} {row['unit']}",
            "exact": f"= {t:g}", "max": f"<= {t:g} {row['unit']}", "min": f">= {t:g} {row['unit']}"}[check]


def table(rows):
    lines = ["| measure | devif: median (min-max, runs) | baseline in the same run | devif / baseline | target | met |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        base = f"{r['baseline_impl']}: {cell(r['baseline'], r['unit'])}" if r["baseline_impl"] else "-"
        if r["check"] == "max-diff" and r["diff"] is not None:
            rel = f"{r['ratio']:.3g}x ({r['diff']:+.1f} {r['unit']})"
        else:
            rel = f"{r['ratio']:.3g}x" if r["ratio"] is not None else "-"
        met = {True: "yes", False: "**no**", None: "-"}[r["met"]]
        lines.append(f"| {r['label']} | {cell(r['devif'], r['unit'])} | {base} | {rel} | {target_text(r)} | {met} |")
    return "\n".join(lines)


def chart(rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report: matplotlib is not installed; no chart (apt-get install python3-matplotlib)", file=sys.stderr)
        return False
    # One scale for every row: how many times better devif is than its
    # baseline (>1 better), so rows with opposite directions read alike.
    shown = [r for r in rows if r["ratio"] and r["check"] in ("min-ratio", "max-ratio", "max-diff")]
    if not shown:
        return False
    labels, goodness, marks, colours = [], [], [], []
    for r in shown:
        higher_better = r["check"] == "min-ratio"
        g = r["ratio"] if higher_better else 1 / r["ratio"]
        if r["check"] == "min-ratio":
            m = r["target"]
        elif r["check"] == "max-ratio":
            m = 1 / r["target"]
        else:  # a difference: the ratio that difference would give
            m = r["baseline"]["median"] / (r["baseline"]["median"] + r["target"])
        labels.append(f"{r['label']}\nvs {r['baseline_impl']}")
        goodness.append(g)
        marks.append(m)
        colours.append("#2e7d32" if r["met"] else "#c62828")
    fig, ax = plt.subplots(figsize=(10, 0.62 * len(shown) + 1.6))
    y = range(len(shown))
    ax.barh(y, goodness, color=colours, height=0.6)
    ax.scatter(marks, y, marker="|", s=400, color="black", zorder=3, label="target")
    for i, g in enumerate(goodness):
        ax.text(g * 1.05, i, f"{g:.2f}x", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.axvline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_yticks(list(y))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("devif relative to its baseline, same run (>1: devif better; log scale)")
    ax.set_title("devif vs baselines (green: target met, red: missed; | target)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main():
    if len(sys.argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 64
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    samples = load(sys.argv[2:])
    rows = evaluate(samples)
    (out / "results.json").write_text(json.dumps({"rows": rows, "samples": samples}, indent=1) + "\n")
    md = table(rows)
    (out / "table.md").write_text(md + "\n")
    print(md)
    if chart(rows, out / "chart.png"):
        print(f"\nchart: {out / 'chart.png'}")
    print(f"results: {out / 'results.json'}, table: {out / 'table.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
