#!/usr/bin/env bash
# Two builds of BackFlow side by side under the load of benches/load.sh: requests/s of each on
# the same routes, in alternating runs (A then B, then B then A, ...) so both see the same
# machine, and the median over rounds of B's rate divided by A's in the same round.
#
# Usage: benches/compare_builds.sh A_BINARY B_BINARY [LABEL]
#   DURATION=10s CONNECTIONS=64 ROUNDS=5 PREFILL=300000 by default; STORE=memory (the HTTP
#   layer's cost, not the store's). Routes: GET /health, GET /queue/status, GET /protected and
#   POST /enqueue + GET /dequeue at once.
#   TOGETHER=1 loads A and B at the same time, each with its own oha, instead of one after the
#   other: both builds then share the very same moments of the machine, and the scheduler's
#   equal shares of CPU make the ratio of their rates the inverse ratio of their costs, which a
#   noisy shared machine disturbs far less than it disturbs one run against the next.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
A_BIN=$1 B_BIN=$2 LABEL=${3:-B vs A}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-5}
PREFILL=${PREFILL:-300000}
STORE=${STORE:-memory}
HALF=$((CONNECTIONS / 2))
ensure_oha

start() {
  local port=$1 bin=$2
  BACKFLOW_BIN=$bin start_backflow "$port" STORE="$STORE" QUEUE_CAPACITY=100000000 LOGIN_MAX_PER_MINUTE=1000000
  oha --no-tui --output-format quiet -n "$PREFILL" -c "$CONNECTIONS" -m POST \
    -H 'content-type: application/json' -d '{"task":"prefill","priority":5}' \
    "http://127.0.0.1:$port/enqueue" >/dev/null
}
A_PORT=$(free_port); start "$A_PORT" "$A_BIN"
B_PORT=$(free_port); start "$B_PORT" "$B_BIN"
token() {
  curl -fsS -X POST "http://127.0.0.1:$1/login" -H 'content-type: application/json' \
    -d '{"username":"admin","password":"admin123"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}
A_TOKEN=$(token "$A_PORT"); B_TOKEN=$(token "$B_PORT")

rps() { python3 -c 'import json,sys; print(json.load(sys.stdin)["summary"]["requestsPerSec"])'; }
# run PORT TOKEN ROUTE: requests/s of one run.
run() {
  local port=$1 token=$2 route=$3 base="http://127.0.0.1:$1"
  case $route in
    pair)
      local first
      first=$(mktemp)
      oha --no-tui --output-format json -w -z "$DURATION" -c "$HALF" -m POST \
        -H 'content-type: application/json' -d '{"task":"load","priority":5}' "$base/enqueue" >"$first" &
      local second
      second=$(oha --no-tui --output-format json -w -z "$DURATION" -c "$HALF" "$base/dequeue" | rps)
      wait
      python3 -c "import sys; print(float(sys.argv[1]) + float(sys.argv[2]))" "$(rps <"$first")" "$second"
      rm -f "$first" ;;
    /protected)
      oha --no-tui --output-format json -w -z "$DURATION" -c "$CONNECTIONS" \
        -H "Authorization: Bearer $token" "$base$route" | rps ;;
    *)
      oha --no-tui --output-format json -w -z "$DURATION" -c "$CONNECTIONS" "$base$route" | rps ;;
  esac
}

ROUTES=(/health /queue/status /protected pair)
for route in "${ROUTES[@]}"; do
  oha --no-tui --output-format quiet -z 2s -c "$CONNECTIONS" "http://127.0.0.1:$A_PORT/health" >/dev/null
  oha --no-tui --output-format quiet -z 2s -c "$CONNECTIONS" "http://127.0.0.1:$B_PORT/health" >/dev/null
  for round in $(seq 1 "$ROUNDS"); do
    # A first in odd rounds, B first in even ones, so neither always runs on a warmer machine.
    if [[ ${TOGETHER:-0} == 1 ]]; then
      together=$(mktemp)
      run "$A_PORT" "$A_TOKEN" "$route" >"$together" &
      a_pid=$!
      b=$(run "$B_PORT" "$B_TOKEN" "$route")
      wait "$a_pid"
      a=$(cat "$together"); rm -f "$together"
    elif (( round % 2 )); then
      a=$(run "$A_PORT" "$A_TOKEN" "$route"); b=$(run "$B_PORT" "$B_TOKEN" "$route")
    else
      b=$(run "$B_PORT" "$B_TOKEN" "$route"); a=$(run "$A_PORT" "$A_TOKEN" "$route")
    fi
    echo "$route $round $a $b"
  done
done >"$RESULTS/compare.txt"

MODE="alternating runs"
[[ ${TOGETHER:-0} == 1 ]] && MODE="A and B loaded at the same time"
python3 - "$RESULTS/compare.txt" "$LABEL" "$(load_conditions)" "$MODE" <<'PY'
import statistics, sys
path, label, conditions, mode = sys.argv[1:]
rows = {}
for line in open(path):
    route, _, a, b = line.split()
    rows.setdefault(route, []).append((float(a), float(b)))
print(f"{label}: requests/s, {mode}, median of {len(next(iter(rows.values())))} rounds")
print()
print("| route | A | B | B / A (median of rounds) | per round |")
print("|---|---:|---:|---:|---|")
for route, runs in rows.items():
    ratios = [b / a for a, b in runs]
    name = "POST /enqueue + GET /dequeue" if route == "pair" else f"GET {route}"
    print(f"| {name} | {statistics.median(a for a, _ in runs):.0f} | "
          f"{statistics.median(b for _, b in runs):.0f} | {statistics.median(ratios) * 100:.1f}% | "
          f"{', '.join(f'{r * 100:.0f}%' for r in ratios)} |")
print()
print(f"conditions: {conditions}")
PY
