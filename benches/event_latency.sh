#!/usr/bin/env bash
# What Redis adds to the delay of an event: from an enqueue to its `queue.enqueued` event on an
# open /notifications stream, for one instance on the embedded store (the event goes from the
# handler to the local broadcast), and for two instances on one Redis (the event goes through
# the publishing script, Redis pub/sub and each instance's relay), watched on the instance that
# published and on the other one.
#
# Usage: benches/event_latency.sh        EVENTS=2000 EVERY_MS=2 by default.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
EVENTS=${EVENTS:-2000}
EVERY_MS=${EVERY_MS:-2}

build_release
start_redis

QUIET=(NOTIFY_INTERVAL_MS=3600000 QUEUE_CAPACITY=100000000)
EMBEDDED=$(free_port); start_backflow "$EMBEDDED" STORE=embedded "${QUIET[@]}"
A=$(free_port); start_backflow "$A" STORE=redis REDIS_URL="redis://127.0.0.1:$REDIS_PORT" "${QUIET[@]}"
B=$(free_port); start_backflow "$B" STORE=redis REDIS_URL="redis://127.0.0.1:$REDIS_PORT" "${QUIET[@]}"

probe() {
  "$ROOT/target/release/examples/event_latency" --events "$EVENTS" --every-ms "$EVERY_MS" "$@"
}
url() { echo "http://127.0.0.1:$1"; }
probe --publish "$(url "$EMBEDDED")" --watch "$(url "$EMBEDDED")" >"$RESULTS/latency-embedded.json"
probe --publish "$(url "$A")" --watch "$(url "$A"),$(url "$B")" >"$RESULTS/latency-redis.json"

python3 - "$RESULTS" "$(url "$EMBEDDED")" "$(url "$A")" "$(url "$B")" "$EVENTS" "$EVERY_MS" <<'PY'
import json, os, sys
results, embedded, a, b, events, every = sys.argv[1:]
local = json.load(open(os.path.join(results, "latency-embedded.json")))[embedded]
redis = json.load(open(os.path.join(results, "latency-redis.json")))
print(f"{events} enqueues, one every {every} ms; enqueue sent -> event received on the stream:")
print()
print("| where the event is watched | p50 ms | p99 ms | max ms | received |")
print("|---|---:|---:|---:|---:|")
rows = [("STORE=embedded, the one instance", local),
        ("STORE=redis, the instance that published", redis[a]),
        ("STORE=redis, the other instance", redis[b])]
for label, row in rows:
    print(f"| {label} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['max_ms']:.2f} | {row['received']} |")
print()
for label, row in rows[1:]:
    print(f"Redis adds {row['p50_ms'] - local['p50_ms']:.2f} ms at p50 and "
          f"{row['p99_ms'] - local['p99_ms']:.2f} ms at p99 ({label.split(', ')[1]}).")
PY
