#!/usr/bin/env bash
# Start-up time and memory of the embedded store holding a large queue.
#
# Starts the release binary on a new DATA_DIR, fills its queue with TASKS tasks over HTTP (see
# fill_queue in lib.sh): a tenth of them delayed by 30 days, and a tenth leased (12-hour leases,
# taken with POST /tasks/lease count=100), the rest queued; stops it, then starts it RESTARTS
# times on that store and reports the time from exec to the first answer of /ready (median),
# the resident memory per task (against the same server on an empty store), and the database's
# size per task, and the CPU time to /ready (which the machine's other work moves far less than
# the wall time). Every start checks /queue/status: the counts of each state are back.
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
  # The CPU time it took: unlike the wall time, it hardly moves with what else the machine runs.
  CPU_TO_READY=$(awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$LAST_PID/stat")
}

stop() {
  kill -TERM "$1"
  while kill -0 "$1" 2>/dev/null; do sleep 0.05; done
}

TENTH=$((TASKS / 10))
LEASE_BATCH=100
start_timed "$FULL_DIR"
FILL_BASE="http://127.0.0.1:$LAST_PORT"
fill_queue "$FILL_BASE" "$((TASKS - TENTH))"
fill_queue "$FILL_BASE" "$TENTH" '{"task":"later","priority":5,"delayMs":2592000000}'
echo "leasing $TENTH tasks ($LEASE_BATCH per request)" >&2
oha --no-tui --output-format quiet -n "$((TENTH / LEASE_BATCH))" -c 16 -m POST \
  -H 'content-type: application/json' -d "{\"count\":$LEASE_BATCH,\"leaseMs\":43200000}" \
  "$FILL_BASE/tasks/lease" >/dev/null
EXPECTED=$(curl -fsS "$FILL_BASE/queue/status" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["size"], s["delayed"], s["leased"], s["dead"])')
echo "queued, delayed, leased, dead: $EXPECTED" >&2
stop "$LAST_PID"
TIMES=()
CPU_TIMES=()
CONDITIONS=$(load_conditions)
for _ in $(seq 1 "$RESTARTS"); do
  start_timed "$FULL_DIR"
  TIMES+=("$SECONDS_TO_READY")
  CPU_TIMES+=("$CPU_TO_READY")
  FOUND=$(curl -fsS "http://127.0.0.1:$LAST_PORT/queue/status" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["size"], s["delayed"], s["leased"], s["dead"])')
  [[ "$FOUND" == "$EXPECTED" ]] || { echo "after a restart the counts are $FOUND, not $EXPECTED" >&2; exit 1; }
  FULL_RSS=$(rss_kib "$LAST_PID")
  stop "$LAST_PID"
done
new_data_dir
start_timed "$NEW_DIR"
EMPTY_TIME=$SECONDS_TO_READY
EMPTY_RSS=$(rss_kib "$LAST_PID")
stop "$LAST_PID"
DB_BYTES=$(stat -c %s "$FULL_DIR/backflow.db")

python3 - "$TASKS" "$EMPTY_TIME" "$FULL_RSS" "$EMPTY_RSS" "$DB_BYTES" "$EXPECTED" "$CONDITIONS" "${CPU_TIMES[*]}" "${TIMES[@]}" <<'PY'
import statistics, sys
tasks, empty_s, full_kib, empty_kib, db_bytes, counts, conditions, cpu = sys.argv[1:9]
times = [float(t) for t in sys.argv[9:]]
cpu = [float(t) for t in cpu.split()]
tasks = int(tasks)
queued, delayed, leased, _ = counts.split()
print(f"embedded store holding {tasks} tasks: {queued} queued, {delayed} delayed, {leased} leased (release build):")
print(f"- start-up to the first /ready answer: median {statistics.median(times):.2f} s "
      f"(runs: {', '.join(f'{t:.2f}' for t in times)}); empty store {float(empty_s):.2f} s")
print(f"- CPU time to the first /ready answer: median {statistics.median(cpu):.2f} s "
      f"(runs: {', '.join(f'{t:.2f}' for t in cpu)})")
print(f"- machine: {conditions}")
print(f"- resident memory: {int(full_kib) / 1024:.0f} MiB vs {int(empty_kib) / 1024:.1f} MiB empty: "
      f"{(int(full_kib) - int(empty_kib)) * 1024 / tasks:.0f} bytes per task")
print(f"- database file: {int(db_bytes) / 2**20:.0f} MiB, {int(db_bytes) / tasks:.0f} bytes per task")
PY
rm -f "$RESULTS/store-startup.log"
