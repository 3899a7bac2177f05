"""Turns the oha JSON results of benches/load.sh into a table, a JSON summary and an SVG chart."""
import json
import os
import sys

results, svg_path = sys.argv[1], sys.argv[2]


def load(name):
    with open(os.path.join(results, f"oha-{name}.json")) as f:
        data = json.load(f)
    summary = data["summary"]
    pct = data.get("latencyPercentiles", {})
    statuses = data.get("statusCodeDistribution", {})
    ok = sum(v for k, v in statuses.items() if k.startswith("2"))
    non_2xx = sum(v for k, v in statuses.items() if not k.startswith("2"))
    errors = sum(data.get("errorDistribution", {}).values())
    return {
        "rps": summary["requestsPerSec"],
        "p50_ms": (pct.get("p50") or 0) * 1000,
        "p99_ms": (pct.get("p99") or 0) * 1000,
        "ok": ok,
        "non_2xx": non_2xx,
        "errors": errors,
    }


floor = load("floor")
rows = [("bare axum /health (floor)", floor)]
for name, label in [
    ("health", "GET /health"),
    ("queue_status", "GET /queue/status"),
    ("protected", "GET /protected (valid token)"),
]:
    rows.append((label, load(name)))
enq, deq = load("enqueue"), load("dequeue")
pairs = {
    "rps": min(enq["rps"], deq["rps"]) * 2,
    "p50_ms": max(enq["p50_ms"], deq["p50_ms"]),
    "p99_ms": max(enq["p99_ms"], deq["p99_ms"]),
    "ok": enq["ok"] + deq["ok"],
    # An empty queue answers 404 by contract; count it apart from failures.
    "non_2xx": enq["non_2xx"] + deq["non_2xx"],
    "errors": enq["errors"] + deq["errors"],
}
rows.append(("POST /enqueue + GET /dequeue (together)", pairs))
saturated = load("health_saturated")
heavy = load("heavy")

print(f"| route | requests/s | vs floor | p50 ms | p99 ms | non-2xx | errors |")
print(f"|---|---:|---:|---:|---:|---:|---:|")
for label, r in rows:
    print(
        f"| {label} | {r['rps']:.0f} | {r['rps'] / floor['rps'] * 100:.0f}% | {r['p50_ms']:.2f} | "
        f"{r['p99_ms']:.2f} | {r['non_2xx']} | {r['errors']} |"
    )
print()
print(
    f"GET /health while /heavy-task-worker?n=35 saturates the pool: {saturated['rps']:.0f} req/s, "
    f"p50 {saturated['p50_ms']:.2f} ms, p99 {saturated['p99_ms']:.2f} ms, errors {saturated['errors']} "
    f"(heavy: {heavy['rps']:.1f} req/s, {heavy['ok']} ok, {heavy['non_2xx']} refused with 503)"
)

with open(os.path.join(results, "load.json"), "w") as f:
    json.dump({"rows": [{"route": l, **r} for l, r in rows], "health_saturated": saturated, "heavy": heavy}, f, indent=2)

# A horizontal bar chart of requests/s per route, the floor first.
width, bar_h, gap, left = 760, 26, 12, 300
height = 60 + len(rows) * (bar_h + gap)
top = max(r["rps"] for _, r in rows)
parts = [
    f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="13">',
    f'<rect width="{width}" height="{height}" fill="#fff"/>',
    f'<text x="{left}" y="24" font-size="15" font-weight="bold">Requests/s at 64 connections (higher is better)</text>',
]
for i, (label, r) in enumerate(rows):
    y = 44 + i * (bar_h + gap)
    w = (width - left - 90) * r["rps"] / top
    color = "#9aa5b1" if i == 0 else "#2f6fdf"
    parts.append(f'<text x="{left - 8}" y="{y + bar_h * 0.68}" text-anchor="end">{label}</text>')
    parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}"/>')
    parts.append(
        f'<text x="{left + w + 6:.1f}" y="{y + bar_h * 0.68}">{r["rps"]:.0f} ({r["rps"] / floor["rps"] * 100:.0f}%)</text>'
    )
parts.append("</svg>")
with open(svg_path, "w") as f:
    f.write("\n".join(parts))
print(f"\nchart written to {svg_path}", file=sys.stderr)
