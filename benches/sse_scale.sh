#!/usr/bin/env bash
# Opens N concurrent Server-Sent Event streams to a release BackFlow and reports the server's
# memory per connection, then publishes EVENTS events one at a time and reports how long each
# took to reach all N streams (p50/p99/max over every delivery) and the server's CPU time per
# delivery. The same probe first runs against two floors: the machine's (examples/raw_fanout.rs:
# no framework, one `write` per stream in a single loop) and axum's (a plain `Sse` stream fed by
# a broadcast channel), so BackFlow's figures come with what the kernel and axum cost at best.
# The probe runs on the same machine, so its own reading competes with the server.
#
# Then the same BackFlow probe over HTTP/2 (h2c): N streams as N/100 connections of 100 streams.
#
# Usage: benches/sse_scale.sh [N] [EVENTS]     (10000 and 5 by default; needs about N + 100
#        file descriptors per process, which the script asks for up to the hard limit)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
N=${1:-10000}
EVENTS=${2:-5}
WANT_FDS=$(( N + 1024 ))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$WANT_FDS" ]; then
  echo "the hard limit on open files ($(ulimit -Hn)) is below the $WANT_FDS needed" >&2
  exit 1
fi
ulimit -n "$WANT_FDS"

build_release
CONDITIONS_BEFORE=$(load_conditions)

# probe NAME PORT PID [h2:K]: runs the probe against one server, then stops that server.
probe() {
  "$ROOT/target/release/examples/sse_scale" "127.0.0.1:$2" "$3" "$N" "$EVENTS" ${4:+"$4"} \
    >"$RESULTS/sse_scale-$1.json"
  kill -TERM "$3"
  wait "$3" 2>/dev/null || true
}

RAW_PORT=$(free_port)
start_floor "$RAW_PORT" raw_fanout
probe raw "$RAW_PORT" "$LAST_PID"

FLOOR_PORT=$(free_port)
start_floor "$FLOOR_PORT"
probe floor "$FLOOR_PORT" "$LAST_PID"

PORT=$(free_port)
# A long notification period keeps the periodic producer out of the fan-out measurement.
start_backflow "$PORT" SSE_MAX_CONNECTIONS=$(( N + 10 )) NOTIFY_INTERVAL_MS=3600000
probe backflow "$PORT" "$LAST_PID"

PORT=$(free_port)
start_backflow "$PORT" SSE_MAX_CONNECTIONS=$(( N + 10 )) NOTIFY_INTERVAL_MS=3600000
probe backflow-h2 "$PORT" "$LAST_PID" h2:100

python3 - "$RESULTS" "$CONDITIONS_BEFORE; after: $(load_conditions)" <<'EOF2'
import json, os, sys
print("| server | streams open | RSS before → after | per connection | events reaching all "
      "| fan-out p50 | p99 | max | server CPU per delivery |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
for name, label in [("raw", "raw writes, no framework (machine floor)"),
                    ("floor", "bare axum Sse + broadcast (axum floor)"),
                    ("backflow", "BackFlow /notifications"),
                    ("backflow-h2", "BackFlow /notifications over h2c, 100 streams per connection")]:
    r = json.load(open(os.path.join(sys.argv[1], f"sse_scale-{name}.json")))
    print(f"| {label} | {r['open']} of {r['requested']} "
          f"| {r['rssBeforeKiB'] / 1024:.1f} → {r['rssAfterKiB'] / 1024:.1f} MiB "
          f"| {r['bytesPerConnection'] / 1024:.1f} KiB | {r['eventsReachingAll']} of {r['events']} "
          f"| {r['fanoutP50Ms']:.0f} ms | {r['fanoutP99Ms']:.0f} ms | {r['fanoutMaxMs']:.0f} ms "
          f"| {r['serverCpuMicrosPerDelivery']:.1f} µs |")
print(f"\nload conditions: before: {sys.argv[2]}")
EOF2
