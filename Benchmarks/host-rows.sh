#!/bin/sh
# The host rows of the benchmark (fan-out throughput against two AsyncStream
# baselines, allocations per publish, publish p99 with a stalled subscriber),
# all in one run, then a summary: median, min..max and spread per row, and the
# ratios against the baselines measured in the same run.
#   Benchmarks/host-rows.sh [RUNS] [OUT.jsonl]     (default 5 runs; needs a release build:
#   swift build -c release --product devif-bench; EVENTS=200000 per fan-out run)
set -eu
runs=${1:-5}
out=${2:-/tmp/devif-host-rows.jsonl}
bench=${DEVIF_BENCH:-.build/release/devif-bench}
: > "$out"
for n in 1 4 16; do
    # Impls alternate run by run, so changes in load fall on all of them.
    "$bench" fanout --subscribers "$n" --impl all --runs "$runs" --events "${EVENTS:-200000}" >> "$out"
done
"$bench" fanout-allocations --runs "$runs" >> "$out"
# Both configurations interleaved in one process (same load), then each alone.
"$bench" publish-latency --stalled both --runs "$runs" >> "$out"
python3 - "$out" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    s = json.loads(line)
    rows.setdefault((s["measure"], s["impl"]), []).append(s["value"])
med = {k: statistics.median(v) for k, v in rows.items()}
print(f'{"measure":24} {"impl":22} {"n":>3} {"median":>14} {"min":>14} {"max":>14} {"spread":>7}')
for (m, i), v in rows.items():
    spread = (max(v) - min(v)) / med[(m, i)] if med[(m, i)] else 0
    print(f'{m:24} {i:22} {len(v):3d} {med[(m, i)]:14.1f} {min(v):14.1f} {max(v):14.1f} {spread:7.0%}')
print()
for n in (1, 4, 16):
    m = f"fanout-{n}"
    if (m, "devif") in med:
        for b in ("asyncstream", "mutex-continuations"):
            if (m, b) in med:
                print(f"{m}: devif / {b} = {med[(m, 'devif')] / med[(m, b)]:.1f}x (target >= 10x vs asyncstream)")
if ("publish-p99", "devif-stalled") in med and ("publish-p99", "devif-no-stalled") in med:
    r = med[("publish-p99", "devif-stalled")] / med[("publish-p99", "devif-no-stalled")]
    print(f"publish-p99: stalled / no-stalled = {r:.2f}x (target <= 1.1x)")
if ("allocations-per-event", "devif") in med:
    print(f"allocations-per-event: max {max(rows[('allocations-per-event', 'devif')])} (target 0)")
PY
