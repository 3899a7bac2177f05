#!/usr/bin/env python3
"""How heavy requests affect /health latency and the async-runtime lag of a running server.

Start a release build with the demonstration route, then run this script:

    ENABLE_BLOCKING_DEMO=true PORT=3000 target/release/backflow &
    python3 benches/runtime_lag.py http://127.0.0.1:3000 42

For each scenario it sends the heavy requests at once, polls /health every 10 ms until they are
answered, and reads the runtime_lag_distribution_seconds histogram before and after.
"""

import json
import statistics
import sys
import threading
import time
import urllib.request

BASE = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:3000"
N = sys.argv[2] if len(sys.argv) > 2 else "42"


def get(path):
    started = time.perf_counter()
    with urllib.request.urlopen(BASE + path, timeout=300) as response:
        body = response.read()
    return time.perf_counter() - started, body


def lag_totals():
    _, text = get("/metrics")
    totals = {}
    for line in text.decode().splitlines():
        for name in ("sum", "count"):
            if line.startswith(f"runtime_lag_distribution_seconds_{name} "):
                totals[name] = float(line.split()[1])
    return totals


def scenario(name, paths, idle_seconds=0.0):
    before = lag_totals()
    answers = []
    workers = [
        threading.Thread(target=lambda p=p: answers.append(get(p))) for p in paths
    ]
    for worker in workers:
        worker.start()
    started = time.perf_counter()
    health = []
    while any(w.is_alive() for w in workers) or time.perf_counter() - started < idle_seconds:
        health.append(get("/health")[0])
        time.sleep(0.01)
    for worker in workers:
        worker.join()
    time.sleep(0.3)  # let the lag probe record its late tick
    after = lag_totals()
    ticks = max(after["count"] - before["count"], 1)
    mean_lag = (after["sum"] - before["sum"]) / ticks
    done = "; ".join(
        f"{json.loads(body)['method']} {json.loads(body)['duration']} (wall {wall:.2f} s)"
        for wall, body in answers
    )
    print(f"{name}: {done}")
    print(
        f"    /health p50 {statistics.median(health) * 1000:.1f} ms, "
        f"max {max(health) * 1000:.1f} ms ({len(health)} samples); "
        f"mean runtime lag {mean_lag * 1000:.1f} ms"
    )


scenario("idle", [], idle_seconds=1.5)
scenario("1 x rayon", [f"/heavy-task-worker?n={N}&pool=rayon"])
scenario("1 x spawn_blocking", [f"/heavy-task-worker?n={N}&pool=blocking"])
scenario("2 x child process", [f"/heavy-task-child?n={N}"] * 2)
scenario("1 x blocking demo", [f"/heavy-task-blocking?n={N}"])
scenario("2 x blocking demo", [f"/heavy-task-blocking?n={N}"] * 2)
