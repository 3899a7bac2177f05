"""Turns the oha JSON results of benches/load.sh into a table, a JSON summary and an SVG chart.

Each route was run once per round, right after the floor of that round. A route's figures are
medians over the rounds: requests/s, the ratio to the same round's floor, p50 and p99. Errors
and non-2xx answers are summed over the rounds, so one bad round shows.

Usage: report.py RESULTS_DIR SVG_PATH --rounds N [--connections C --duration D --heavy-n N
                 --probe-rate R --conditions TEXT]
"""

import argparse
import json
import os
import statistics
import sys

# oha counts requests cut off by `-z` under this error; load.sh passes `-w` so there are none,
# but count them apart from real errors if they show up.
DEADLINE_ABORT = "aborted due to deadline"
# The 80 % of the floor the light routes must reach.
TARGET_RATIO = 0.80
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

parser = argparse.ArgumentParser()
parser.add_argument("results")
parser.add_argument("svg")
parser.add_argument("--rounds", type=int, required=True)
parser.add_argument("--connections", type=int, default=64)
parser.add_argument("--duration", default="10s")
parser.add_argument("--heavy-n", type=int, default=35)
parser.add_argument("--probe-rate", type=int, default=200)
parser.add_argument("--conditions", default="")
args = parser.parse_args()


def cpu_seconds(name, round_):
    """Server CPU time (user + system) during the run, if load.sh recorded it."""
    path = os.path.join(args.results, f"cpu-{name}-{round_}.txt")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return int(f.read().strip()) / CLOCK_TICKS


def load(name, round_):
    """One oha run: requests/s, latency percentiles in ms, answers by class, errors."""
    with open(os.path.join(args.results, f"oha-{name}-{round_}.json")) as f:
        data = json.load(f)
    pct = data.get("latencyPercentiles") or {}
    statuses = data.get("statusCodeDistribution") or {}
    errors = data.get("errorDistribution") or {}
    return {
        "rps": data["summary"]["requestsPerSec"],
        "p50_ms": (pct.get("p50") or 0) * 1000,
        "p99_ms": (pct.get("p99") or 0) * 1000,
        "ok": sum(v for k, v in statuses.items() if k.startswith("2")),
        "non_2xx": sum(v for k, v in statuses.items() if not k.startswith("2")),
        "errors": sum(v for k, v in errors.items() if k != DEADLINE_ABORT),
        "aborted": errors.get(DEADLINE_ABORT, 0),
        "error_kinds": sorted(k for k in errors if k != DEADLINE_ABORT),
    }


def pair(first, second, round_):
    """Both halves ran at once: the server's rate is their sum, its latency the worse half."""
    enq, deq = load(first, round_), load(second, round_)
    return {
        "rps": enq["rps"] + deq["rps"],
        "p50_ms": max(enq["p50_ms"], deq["p50_ms"]),
        "p99_ms": max(enq["p99_ms"], deq["p99_ms"]),
        "ok": enq["ok"] + deq["ok"],
        "non_2xx": enq["non_2xx"] + deq["non_2xx"],
        "errors": enq["errors"] + deq["errors"],
        "aborted": enq["aborted"] + deq["aborted"],
        "error_kinds": sorted(set(enq["error_kinds"]) | set(deq["error_kinds"])),
    }


def with_cpu(run, name, round_):
    """Adds the server's CPU microseconds per answered request."""
    seconds = cpu_seconds(name, round_)
    answered = run["ok"] + run["non_2xx"]
    run["cpu_us"] = seconds * 1e6 / answered if seconds is not None and answered else None
    return run


def summarize(runs, floors):
    cpus = [r["cpu_us"] for r in runs if r.get("cpu_us") is not None]
    # Paired by round before filtering, so a missing figure never shifts the rounds.
    cpu_ratios = [r["cpu_us"] / f["cpu_us"] for r, f in zip(runs, floors)
                  if r.get("cpu_us") is not None and f.get("cpu_us")]
    return {
        "cpu_us": statistics.median(cpus) if cpus else None,
        "cpu_ratio": statistics.median(cpu_ratios) if cpu_ratios else None,
        "rps": statistics.median(r["rps"] for r in runs),
        "ratio": statistics.median(r["rps"] / f["rps"] for r, f in zip(runs, floors)),
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "ok": sum(r["ok"] for r in runs),
        "non_2xx": sum(r["non_2xx"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "aborted": sum(r["aborted"] for r in runs),
        "error_kinds": sorted({k for r in runs for k in r["error_kinds"]}),
        "rps_per_round": [round(r["rps"]) for r in runs],
    }


rounds = range(1, args.rounds + 1)
# Runs made of two load generators at once, and their halves.
PAIRS = {
    "enqueue_dequeue": ("enqueue", "dequeue"),
    "enqueue_dequeue_memory": ("enqueue_memory", "dequeue_memory"),
    "enqueue_dequeue_redis": ("enqueue_redis", "dequeue_redis"),
    "floor_pair": ("floor_enqueue", "floor_get"),
}


def run_of(name, round_):
    return with_cpu(pair(*PAIRS[name], round_) if name in PAIRS else load(name, round_), name, round_)


floors = {
    name: [run_of(name, r) for r in rounds]
    for name in ("floor", "floor_pair")
}
# (name, label, held to the target, the floor it is compared with)
ROUTES = [
    ("floor", "bare axum /health (floor)", False, "floor"),
    ("floor_pair", "bare axum POST /enqueue + GET /health (at once)", False, "floor"),
    ("health", "GET /health", True, "floor"),
    ("queue_status", "GET /queue/status", True, "floor"),
    ("protected", "GET /protected (valid token)", True, "floor"),
    ("protected_memory", "GET /protected, STORE=memory", False, "floor"),
    ("enqueue_dequeue", "POST /enqueue + GET /dequeue (at once)", True, "floor"),
    ("enqueue_dequeue", "POST /enqueue + GET /dequeue, vs the floor driven alike", True, "floor_pair"),
    ("enqueue_dequeue_memory", "POST /enqueue + GET /dequeue, STORE=memory", False, "floor"),
    ("enqueue_fsync", "POST /enqueue alone, FSYNC_COMMITS=true", False, "floor"),
    ("protected_redis", "GET /protected, STORE=redis", False, "floor"),
    ("enqueue_dequeue_redis", "POST /enqueue + GET /dequeue, STORE=redis", False, "floor"),
    ("health_info", "GET /health, RUST_LOG=info", False, "floor"),
]
rows = []
for name, label, targeted, floor in ROUTES:
    runs = [run_of(name, r) for r in rounds]
    rows.append(
        {"name": name, "route": label, "target": targeted, "floor": floor,
         **summarize(runs, floors[floor])}
    )

floor_idle = load("floor_probe_idle", 1)
idle = load("health_probe_idle", 1)
saturated = load("health_probe_saturated", 1)
heavy = load("heavy", 1)

# The cost of durability: the embedded store (the default) against the memory store, the same
# route in the same round. Targets: /protected >= 90 % (the revocation check never touches the
# disk), enqueue + dequeue >= 70 %; synced enqueues >= 8000/s with p99 < 30 ms.
STORE_TARGETS = [
    ("protected", "protected_memory", "GET /protected", 0.90),
    ("enqueue_dequeue", "enqueue_dequeue_memory", "POST /enqueue + GET /dequeue", 0.70),
]
stores = []
for embedded, memory, label, target in STORE_TARGETS:
    ratios = [run_of(embedded, r)["rps"] / run_of(memory, r)["rps"] for r in rounds]
    stores.append({"route": label, "ratio": statistics.median(ratios), "target": target,
                   "ratio_per_round": [round(x, 3) for x in ratios]})
fsync = summarize([run_of("enqueue_fsync", r) for r in rounds], floors["floor"])


def redis_bench(name):
    """Requests/s of one redis-benchmark run recorded by load.sh."""
    with open(os.path.join(args.results, f"redis-bench-{name}.txt")) as f:
        return float(f.read().strip())


# STORE=redis: /protected against the embedded store in the same round (target >= 60 %), and
# the pair against what Redis itself does with the same commands (target >= 50 %): a pair of
# requests costs Redis one enqueue script, one dequeue script and two publishing scripts.
redis_rates = {name: redis_bench(name) for name in ("zscore", "enqueue", "dequeue", "publish")}
pair_ceiling = 2 / (1 / redis_rates["enqueue"] + 1 / redis_rates["dequeue"]
                    + 2 / redis_rates["publish"])
protected_redis = [run_of("protected_redis", r) for r in rounds]
pair_redis = [run_of("enqueue_dequeue_redis", r) for r in rounds]
redis_summary = {
    "redis_benchmark": redis_rates,
    "pair_ceiling": pair_ceiling,
    "protected_vs_embedded": statistics.median(
        p["rps"] / run_of("protected", r)["rps"] for p, r in zip(protected_redis, rounds)),
    "pair_vs_ceiling": statistics.median(p["rps"] / pair_ceiling for p in pair_redis),
    "p99_ms": max(statistics.median(x["p99_ms"] for x in protected_redis),
                  statistics.median(x["p99_ms"] for x in pair_redis)),
}

print(
    f"{args.connections} connections, {args.duration} per run, median of {args.rounds} rounds "
    f"(each route compared with the floor of its own round)"
)
print()
def cpu_text(row):
    if row["cpu_us"] is None:
        return "n/a"
    return f"{row['cpu_us']:.1f} ({row['cpu_ratio']:.2f}x)"


print(
    "| route | requests/s | vs floor | p50 ms | p99 ms | non-2xx | errors | "
    "server CPU µs/request (vs floor) | requests/s per round |"
)
print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
for row in rows:
    print(
        f"| {row['route']} | {row['rps']:.0f} | {row['ratio'] * 100:.0f}% | {row['p50_ms']:.2f} | "
        f"{row['p99_ms']:.2f} | {row['non_2xx']} | {row['errors']} | {cpu_text(row)} | "
        f"{', '.join(str(v) for v in row['rps_per_round'])} |"
    )
for row in rows:
    if row["error_kinds"]:
        print(f"errors on {row['route']}: {', '.join(row['error_kinds'])}")
print()
print("STORE=embedded (the default) against STORE=memory, same route, same round:")
print()
print("| route | embedded vs memory | target | per round |")
print("|---|---:|---:|---|")
for row in stores:
    print(
        f"| {row['route']} | {row['ratio'] * 100:.0f}% | >= {row['target'] * 100:.0f}% | "
        f"{', '.join(f'{x * 100:.0f}%' for x in row['ratio_per_round'])} |"
    )
print()
print(
    f"POST /enqueue alone with FSYNC_COMMITS=true at {args.connections} connections: "
    f"{fsync['rps']:.0f}/s (target >= 8000), p50 {fsync['p50_ms']:.2f} ms, "
    f"p99 {fsync['p99_ms']:.2f} ms (target < 30), {fsync['non_2xx']} non-2xx, "
    f"{fsync['errors']} errors"
)
print()
print(f"STORE=redis, against what Redis itself does with the same commands (redis-benchmark, "
      f"{args.connections} connections):")
print()
print("| | requests/s | compared with | target |")
print("|---|---:|---|---:|")
print(f"| redis-benchmark ZSCORE (the revocation check) | {redis_rates['zscore']:.0f} | | |")
for name in ("enqueue", "dequeue", "publish"):
    print(f"| redis-benchmark EVALSHA {name} script | {redis_rates[name]:.0f} | | |")
print(f"| GET /protected, STORE=redis | {statistics.median(x['rps'] for x in protected_redis):.0f} | "
      f"{redis_summary['protected_vs_embedded'] * 100:.0f}% of STORE=embedded | >= 60% |")
print(f"| POST /enqueue + GET /dequeue, STORE=redis | "
      f"{statistics.median(x['rps'] for x in pair_redis):.0f} | "
      f"{redis_summary['pair_vs_ceiling'] * 100:.0f}% of the {pair_ceiling:.0f}/s Redis "
      f"allows for its commands | >= 50% |")
print(f"| p99 of those two routes (median of rounds, the worse) | "
      f"{redis_summary['p99_ms']:.2f} ms | | < 10 ms |")
print()
print(f"GET /health probed at {args.probe_rate}/s (4 connections, latency corrected):")
print()
print("| server | p50 ms | p99 ms | ok / non-2xx / errors |")
print("|---|---:|---:|---|")
for label, run in [
    ("floor, idle", floor_idle),
    ("BackFlow, compute pool idle", idle),
    (f"BackFlow, pool saturated by /heavy-task-worker?n={args.heavy_n}", saturated),
]:
    print(
        f"| {label} | {run['p50_ms']:.2f} | {run['p99_ms']:.2f} | "
        f"{run['ok']} / {run['non_2xx']} / {run['errors']} |"
    )
print()
print(
    f"heavy load meanwhile: {heavy['rps']:.1f} jobs/s, {heavy['ok']} ok, "
    f"{heavy['non_2xx']} non-2xx, {heavy['errors']} errors"
)
if args.conditions:
    print(f"\nload conditions: {args.conditions}")

with open(os.path.join(args.results, "load.json"), "w") as f:
    json.dump(
        {
            "connections": args.connections,
            "duration": args.duration,
            "rounds": args.rounds,
            "conditions": args.conditions,
            "rows": rows,
            "stores": stores,
            "fsync_enqueue": fsync,
            "redis": redis_summary,
            "health_probe": {
                "rate": args.probe_rate,
                "floor_idle": floor_idle,
                "idle": idle,
                "saturated": saturated,
            },
            "heavy": heavy,
        },
        f,
        indent=2,
    )

# A horizontal bar chart of requests/s per route, the floors first, with the 80 % target marked.
# Enqueue + dequeue gets one bar, labelled with its ratio to both floors.
alike = {r["name"]: r["ratio"] for r in rows if r["floor"] == "floor_pair"}
bars = [r for r in rows if r["floor"] == "floor"]
width, bar_h, gap, left, right = 980, 26, 12, 330, 290
top_margin = 56
height = top_margin + len(bars) * (bar_h + gap) + 30
scale = (width - left - right) / max(r["rps"] for r in bars)
floor_rps = bars[0]["rps"]
parts = [
    f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
    f'font-family="sans-serif" font-size="13">',
    f'<rect width="{width}" height="{height}" fill="#fff"/>',
    f'<text x="12" y="22" font-size="15" font-weight="bold">Requests/s at '
    f"{args.connections} connections, median of {args.rounds} rounds</text>",
    f'<text x="12" y="40" fill="#555">in parentheses: median ratio to the bare axum floor '
    f"of the same round; dashed line: 80 % of the floor</text>",
]
for i, row in enumerate(bars):
    y = top_margin + i * (bar_h + gap)
    w = row["rps"] * scale
    if row["name"].startswith("floor"):
        color = "#9aa5b1"
    elif not row["target"]:
        color = "#b9c7e6"
    else:
        best = max(row["ratio"], alike.get(row["name"], 0))
        color = "#2f6fdf" if best >= TARGET_RATIO else "#d9534f"
    ratio = f'{row["ratio"] * 100:.0f}%'
    if row["name"] in alike:
        ratio += f'; {alike[row["name"]] * 100:.0f}% of the floor driven alike'
    parts.append(f'<text x="{left - 8}" y="{y + bar_h * 0.68}" text-anchor="end">{row["route"]}</text>')
    parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}"/>')
    parts.append(f'<text x="{left + w + 6:.1f}" y="{y + bar_h * 0.68}">{row["rps"]:.0f} ({ratio})</text>')
target_x = left + floor_rps * TARGET_RATIO * scale
bottom = top_margin + len(bars) * (bar_h + gap)
parts.append(
    f'<line x1="{target_x:.1f}" y1="{top_margin - 4}" x2="{target_x:.1f}" y2="{bottom}" '
    f'stroke="#333" stroke-dasharray="4 3"/>'
)
parts.append(f'<text x="{target_x:.1f}" y="{bottom + 16}" text-anchor="middle" fill="#333">80 %</text>')
parts.append("</svg>")
os.makedirs(os.path.dirname(os.path.abspath(args.svg)), exist_ok=True)
with open(args.svg, "w") as f:
    f.write("\n".join(parts) + "\n")
print(f"\nchart written to {args.svg}", file=sys.stderr)
