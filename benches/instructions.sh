#!/usr/bin/env bash
# User-space instructions per request of the bare axum floor and of BackFlow's light routes,
# counted by valgrind's callgrind while oha sends a fixed number of requests.
#
# Unlike requests/s, an instruction count does not depend on what else the machine is running,
# so it tells whether a change made the server cheaper even on a busy shared box. It leaves out
# the kernel's share (sockets, scheduling), which is the same for every route.
#
# Usage: benches/instructions.sh        (REQUESTS=5000 per route by default; needs valgrind;
#        STORE=embedded by default, as a user runs it (its writer thread's instructions count);
#        BACKFLOW_BIN=path/to/another/build compares another build against the same floor)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
REQUESTS=${REQUESTS:-5000}
STORE=${STORE:-embedded}

command -v valgrind >/dev/null || { echo "valgrind is required (apt-get install valgrind)" >&2; exit 1; }
ensure_oha
build_release

# start_under_callgrind NAME BINARY [VAR=value...]: starts BINARY under callgrind on a free port,
# with these variables; sets PORT and VG_PID.
start_under_callgrind() {
  local name=$1 binary=$2; shift 2
  PORT=$(free_port)
  env PORT="$PORT" HOST=127.0.0.1 "$@" valgrind --tool=callgrind --callgrind-out-file="$RESULTS/callgrind-$name.out" \
    "$binary" >"$RESULTS/callgrind-$name.log" 2>&1 &
  VG_PID=$!
  PIDS+=("$VG_PID")
  wait_healthy "$PORT"
}

# callgrind_command CMD: sends a command to the server's callgrind. Valgrind reads commands only
# when a thread runs, so a probe request wakes an idle server (one request of error in thousands).
callgrind_command() {
  # vgdb names its pipes after $HOST: the same value as the server's (its listen address).
  HOST=127.0.0.1 callgrind_control "$1" "$VG_PID" >/dev/null 2>&1 &
  local control=$!
  while kill -0 "$control" 2>/dev/null; do
    curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 || true
    sleep 0.2
  done
  wait "$control"
}

# count SLUG LABEL PATH [oha args...]: warms up, zeroes the counters, sends REQUESTS requests and
# prints the instructions per request counted since the reset.
count() {
  local slug=$1 label=$2 path=$3; shift 3
  oha --no-tui --output-format quiet -n 200 -c 8 "$@" "http://127.0.0.1:$PORT$path" >/dev/null
  callgrind_command --zero
  oha --no-tui --output-format quiet -n "$REQUESTS" -c 8 "$@" "http://127.0.0.1:$PORT$path" >/dev/null
  callgrind_command --dump="$slug"
  local dump
  dump=$(grep -l "^desc: Trigger: dump $slug\$" "$RESULTS"/callgrind-*.out.* | tail -1)
  printf '| %s | %s |\n' "$label" "$(( $(awk '/^summary:/ {print $2}' "$dump") / REQUESTS ))"
}

stop() {
  kill -TERM "$VG_PID" 2>/dev/null || true
  wait "$VG_PID" 2>/dev/null || true
}

rm -f "$RESULTS"/callgrind-*
echo "| requests ($REQUESTS each, 8 connections, STORE=$STORE) | instructions per request |"
echo "|---|---:|"
start_under_callgrind floor "$ROOT/target/release/examples/bare_axum"
count floor "bare axum /health (floor)" /health
stop

new_data_dir; DATA_DIR=$NEW_DIR
start_under_callgrind backflow "${BACKFLOW_BIN:-$ROOT/target/release/backflow}" RUST_LOG=warn DATA_DIR="$DATA_DIR" STORE="$STORE" \
  JWT_SECRET=bench-secret-bench-secret-bench-secret QUEUE_CAPACITY=100000000 LOGIN_MAX_PER_MINUTE=1000000
TOKEN=$(curl -fsS -X POST "http://127.0.0.1:$PORT/login" -H 'content-type: application/json' \
  -d '{"username":"admin","password":"admin123"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
count health "GET /health" /health
count queue_status "GET /queue/status" /queue/status
count protected "GET /protected" /protected -H "Authorization: Bearer $TOKEN"
count enqueue "POST /enqueue" /enqueue -m POST -H 'content-type: application/json' -d '{"task":"load","priority":5}'
# The enqueue runs (warm-up included) left more tasks than this dequeues: none finds it empty.
count dequeue "GET /dequeue" /dequeue
stop
