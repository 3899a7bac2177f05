#!/usr/bin/env bash
# Start-up time and memory of the embedded store holding a large queue.
#
# Starts the release binary on a new DATA_DIR, fills its queue with TASKS tasks over HTTP (see
# fill_queue in lib.sh), stops it, then starts it RESTARTS times on that store and reports the
# time from exec to the first answer of /ready (median), the resident memory per queued task
# (against the same server on an empty store), and the database's size per task.
#
# Usage: benches/store_startup.sh        TASKS=1000000 RESTARTS=3 by default.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
TASKS=${TASKS:-1000000}
RESTARTS=${RESTARTS:-3}

build_release
new_data_dir; FULL_DIR=$NEW_DIR

# start_timed DIR: starts the server on DIR and waits for /ready; sets LAST_PID, LAST_PORT and
# SECONDS_TO_READY (from exec to the first answer).
start_timed() {
  local dir=$1 port started
  port=$(free_port)
  started=$(date +%s.%N)
  env HOST=127.0.0.1 PORT="$port" RUST_LOG=warn DATA_DIR="$dir" QUEUE_CAPACITY=100000000 \
    "$ROOT/target/release/backflow" >>"$RESULTS/store-startup.log" 2>&1 &
  LAST_PID=$!
  LAST_PORT=$port
  PIDS+=("$LAST_PID")
  until curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1; do
    kill -0 "$LAST_PID" 2>/dev/null || { echo "the server exited; see $RESULTS/store-startup.log" >&2; exit 1; }
    sleep 0.01
  done
  SECONDS_TO_READY=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$started" "$(date +%s.%N)")
}

stop() {
  kill -TERM "$1"
  while kill -0 "$1" 2>/dev/null; do sleep 0.05; done
}

start_timed "$FULL_DIR"
fill_queue "http://127.0.0.1:$LAST_PORT" "$TASKS"
stop "$LAST_PID"
TIMES=()
for _ in $(seq 1 "$RESTARTS"); do
  start_timed "$FULL_DIR"
  TIMES+=("$SECONDS_TO_READY")
  FULL_RSS=$(rss_kib "$LAST_PID")
  stop "$LAST_PID"
done
new_data_dir
start_timed "$NEW_DIR"
EMPTY_TIME=$SECONDS_TO_READY
EMPTY_RSS=$(rss_kib "$LAST_PID")
stop "$LAST_PID"
DB_BYTES=$(stat -c %s "$FULL_DIR/backflow.db")

python3 - "$TASKS" "$EMPTY_TIME" "$FULL_RSS" "$EMPTY_RSS" "$DB_BYTES" "${TIMES[@]}" <<'PY'
import statistics, sys
tasks, empty_s, full_kib, empty_kib, db_bytes = sys.argv[1:6]
times = [float(t) for t in sys.argv[6:]]
tasks = int(tasks)
print(f"embedded store holding {tasks} queued tasks (release build):")
print(f"- start-up to the first /ready answer: median {statistics.median(times):.2f} s "
      f"(runs: {', '.join(f'{t:.2f}' for t in times)}); empty store {float(empty_s):.2f} s")
print(f"- resident memory: {int(full_kib) / 1024:.0f} MiB vs {int(empty_kib) / 1024:.1f} MiB empty: "
      f"{(int(full_kib) - int(empty_kib)) * 1024 / tasks:.0f} bytes per queued task")
print(f"- database file: {int(db_bytes) / 2**20:.0f} MiB, {int(db_bytes) / tasks:.0f} bytes per task")
PY
rm -f "$RESULTS/store-startup.log"
