#!/usr/bin/env bash
# HTTP load test of the light routes against a bare axum floor built in the same run.
#
# Builds release binaries, starts BackFlow and the floor on loopback, drives each route with oha
# for DURATION at CONNECTIONS connections, and prints a table of requests/s (and the ratio to the
# floor), p99 latency and errors. Also measures /health while the heavy pool is saturated.
# Writes benches/results/load.json and docs/load.svg.
#
# Usage: benches/load.sh            (DURATION=10s CONNECTIONS=64 by default)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}

ensure_oha
cargo build --release --bin backflow --example bare_axum >&2

FLOOR_PORT=$(free_port); start_floor "$FLOOR_PORT"
PORT=$(free_port)
start_backflow "$PORT" QUEUE_CAPACITY=100000000 LOGIN_MAX_PER_MINUTE=1000000
BASE="http://127.0.0.1:$PORT"

TOKEN=$(curl -fsS -X POST "$BASE/login" -H 'content-type: application/json' \
  -d '{"username":"admin","password":"admin123"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

run_oha() { # name, extra oha args...
  local name=$1; shift
  oha --no-tui --output-format json -z "$DURATION" -c "$CONNECTIONS" "$@" >"$RESULTS/oha-$name.json"
}

echo "floor: bare axum /health" >&2
run_oha floor "http://127.0.0.1:$FLOOR_PORT/health"
echo "backflow /health" >&2
run_oha health "$BASE/health"
echo "backflow /queue/status" >&2
run_oha queue_status "$BASE/queue/status"
echo "backflow /protected" >&2
run_oha protected -H "Authorization: Bearer $TOKEN" "$BASE/protected"
echo "backflow enqueue + dequeue (half the connections each, at once)" >&2
HALF=$((CONNECTIONS / 2))
oha --no-tui --output-format json -z "$DURATION" -c "$HALF" -m POST -H 'content-type: application/json' \
  -d '{"task":"load","priority":5}' "$BASE/enqueue" >"$RESULTS/oha-enqueue.json" &
ENQ=$!
oha --no-tui --output-format json -z "$DURATION" -c "$HALF" "$BASE/dequeue" >"$RESULTS/oha-dequeue.json"
wait "$ENQ"

echo "backflow /health while the heavy pool is saturated" >&2
MAX_INFLIGHT=$(( $(nproc) * 2 ))
oha --no-tui --output-format json -z "$DURATION" -c "$MAX_INFLIGHT" "$BASE/heavy-task-worker?n=35" \
  >"$RESULTS/oha-heavy.json" &
HEAVY=$!
sleep 1
oha --no-tui --output-format json -z "$DURATION" -c 8 "$BASE/health" >"$RESULTS/oha-health_saturated.json"
wait "$HEAVY"

python3 "$BENCH_DIR/report.py" "$RESULTS" "$ROOT/docs/load.svg"
