#!/usr/bin/env bash
# HTTP load test of the light routes against a bare axum floor measured in the same run.
#
# Builds release binaries, starts BackFlow (logs at warn) and the floor on loopback, and drives
# each route with oha for DURATION at CONNECTIONS connections, ROUNDS times in turn (floor first
# in every round), so each route is compared with the floor measured minutes apart at most.
# Enqueue + dequeue runs two load generators at once (half the connections each), so it is also
# compared with the floor driven the same way (POST /enqueue + GET /health at once). The
# report gives the median over rounds of requests/s and of the ratio to that round's floor, p50
# and p99 latency, non-2xx answers and errors. A second BackFlow logging at info (one line per
# request) shows what request logs cost. Then, once: /health probed at a fixed rate, first idle,
# then while /heavy-task-worker saturates the compute pool (and the idle floor, for reference).
# Every run also records the server's CPU time, so the report gives CPU per request.
#
# The store is a dimension: the main server runs the default STORE=embedded, a second one
# STORE=memory, and the routes that touch the store (/protected, enqueue + dequeue) run on both
# in every round, so the cost of durability is a ratio measured minutes apart at most. A third
# server (STORE=embedded, FSYNC_COMMITS=true) takes POST /enqueue alone at full concurrency:
# the rate of synced enqueues. A fourth (STORE=redis, on a redis-server of the script's own)
# runs the store's routes too, and redis-benchmark then runs the very scripts and commands
# those routes send, as the ceiling of what Redis itself does here. Writes
# benches/results/load.json and docs/load.svg.
#
# Usage: benches/load.sh
#   DURATION=10s (in seconds) CONNECTIONS=64 ROUNDS=3 PREFILL=300000 HEAVY_N=35 PROBE_RATE=200 by default.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-3}
# Tasks queued before the enqueue/dequeue run, so dequeues never find the queue empty (a 404).
PREFILL=${PREFILL:-300000}
HEAVY_N=${HEAVY_N:-35}
PROBE_RATE=${PROBE_RATE:-200}

ensure_oha
build_release
rm -f "$RESULTS"/oha-*.json "$RESULTS"/cpu-*.txt
CONDITIONS_BEFORE=$(load_conditions)

FLOOR_PORT=$(free_port); start_floor "$FLOOR_PORT"; FLOOR_PID=$LAST_PID

LIMITS=(QUEUE_CAPACITY=100000000 LOGIN_MAX_PER_MINUTE=1000000)
PORT=$(free_port)
start_backflow "$PORT" STORE=embedded "${LIMITS[@]}"
SERVER_PID=$LAST_PID
BASE="http://127.0.0.1:$PORT"
MEMORY_PORT=$(free_port)
start_backflow "$MEMORY_PORT" STORE=memory "${LIMITS[@]}"
MEMORY_PID=$LAST_PID
MEMORY_BASE="http://127.0.0.1:$MEMORY_PORT"
fill_queue "$BASE" "$PREFILL"
fill_queue "$MEMORY_BASE" "$PREFILL"
FSYNC_PORT=$(free_port)
start_backflow "$FSYNC_PORT" STORE=embedded FSYNC_COMMITS=true "${LIMITS[@]}"
FSYNC_PID=$LAST_PID
FSYNC_BASE="http://127.0.0.1:$FSYNC_PORT"
INFO_PORT=$(free_port)
start_backflow "$INFO_PORT" RUST_LOG=backflow=info
INFO_PID=$LAST_PID

start_redis
REDIS_BF_PORT=$(free_port)
start_backflow "$REDIS_BF_PORT" STORE=redis REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
  REDIS_PREFIX=bench "${LIMITS[@]}"
REDIS_BF_PID=$LAST_PID
REDIS_BASE="http://127.0.0.1:$REDIS_BF_PORT"
fill_queue "$REDIS_BASE" "$PREFILL"

token_of() {
  curl -fsS -X POST "$1/login" -H 'content-type: application/json' \
    -d '{"username":"admin","password":"admin123"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}
TOKEN=$(token_of "$BASE")
MEMORY_TOKEN=$(token_of "$MEMORY_BASE")
REDIS_TOKEN=$(token_of "$REDIS_BASE")

# run_oha NAME ROUND [oha args...]: -w lets requests in flight at the deadline finish, so they
# are not counted as errors.
run_oha() {
  local name=$1 round=$2; shift 2
  oha --no-tui --output-format json -w -z "$DURATION" "$@" >"$RESULTS/oha-$name-$round.json"
}

# measure NAME ROUND SERVER_PID [oha args...]: run_oha, plus the CPU time the server used,
# which depends far less on what else the machine is doing than requests/s does.
measure() {
  local name=$1 round=$2 pid=$3; shift 3
  local before
  before=$(cpu_ticks "$pid")
  run_oha "$name" "$round" "$@"
  echo $(( $(cpu_ticks "$pid") - before )) >"$RESULTS/cpu-$name-$round.txt"
}

# measure_pair NAME ROUND SERVER_PID POST_NAME POST_URL GET_NAME GET_URL: two load generators
# at once, half the connections each: one posts the enqueue body to POST_URL, the other gets
# GET_URL. The server's CPU time is recorded for the pair as NAME.
ENQUEUE_BODY='{"task":"load","priority":5}'
measure_pair() {
  local name=$1 round=$2 pid=$3 post_name=$4 post_url=$5 get_name=$6 get_url=$7
  local before poster
  before=$(cpu_ticks "$pid")
  run_oha "$post_name" "$round" -c "$HALF" -m POST -H 'content-type: application/json' \
    -d "$ENQUEUE_BODY" "$post_url" &
  poster=$!
  run_oha "$get_name" "$round" -c "$HALF" "$get_url"
  wait "$poster"
  echo $(( $(cpu_ticks "$pid") - before )) >"$RESULTS/cpu-$name-$round.txt"
}

# Warm-up: connections, allocator pools and caches, on both servers.
oha --no-tui --output-format quiet -z 2s -c "$CONNECTIONS" "http://127.0.0.1:$FLOOR_PORT/health" >/dev/null
oha --no-tui --output-format quiet -z 2s -c "$CONNECTIONS" "$BASE/health" >/dev/null
oha --no-tui --output-format quiet -z 2s -c "$CONNECTIONS" "$MEMORY_BASE/health" >/dev/null
oha --no-tui --output-format quiet -z 2s -c "$CONNECTIONS" "$REDIS_BASE/health" >/dev/null

HALF=$((CONNECTIONS / 2))
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round/$ROUNDS: floor, floor pair, /health, /queue/status, /protected and enqueue+dequeue (embedded, memory, redis), synced enqueues, /health at info" >&2
  measure floor "$round" "$FLOOR_PID" -c "$CONNECTIONS" "http://127.0.0.1:$FLOOR_PORT/health"
  # The floor driven like the enqueue + dequeue pair below.
  measure_pair floor_pair "$round" "$FLOOR_PID" \
    floor_enqueue "http://127.0.0.1:$FLOOR_PORT/enqueue" floor_get "http://127.0.0.1:$FLOOR_PORT/health"
  measure health "$round" "$SERVER_PID" -c "$CONNECTIONS" "$BASE/health"
  measure queue_status "$round" "$SERVER_PID" -c "$CONNECTIONS" "$BASE/queue/status"
  measure protected "$round" "$SERVER_PID" -c "$CONNECTIONS" -H "Authorization: Bearer $TOKEN" "$BASE/protected"
  measure protected_memory "$round" "$MEMORY_PID" -c "$CONNECTIONS" -H "Authorization: Bearer $MEMORY_TOKEN" "$MEMORY_BASE/protected"
  # Half the connections enqueue while the other half dequeue, at once.
  measure_pair enqueue_dequeue "$round" "$SERVER_PID" enqueue "$BASE/enqueue" dequeue "$BASE/dequeue"
  measure_pair enqueue_dequeue_memory "$round" "$MEMORY_PID" \
    enqueue_memory "$MEMORY_BASE/enqueue" dequeue_memory "$MEMORY_BASE/dequeue"
  measure protected_redis "$round" "$REDIS_BF_PID" -c "$CONNECTIONS" -H "Authorization: Bearer $REDIS_TOKEN" "$REDIS_BASE/protected"
  measure_pair enqueue_dequeue_redis "$round" "$REDIS_BF_PID" \
    enqueue_redis "$REDIS_BASE/enqueue" dequeue_redis "$REDIS_BASE/dequeue"
  # Every connection enqueues: each answer waits for an fsync, shared by a batch.
  measure enqueue_fsync "$round" "$FSYNC_PID" -c "$CONNECTIONS" -m POST \
    -H 'content-type: application/json' -d "$ENQUEUE_BODY" "$FSYNC_BASE/enqueue"
  measure health_info "$round" "$INFO_PID" -c "$CONNECTIONS" "http://127.0.0.1:$INFO_PORT/health"
done

# What Redis itself does here with the commands the routes send, at the same concurrency, on
# keys of another prefix: GET /protected sends one ZSCORE; an enqueue + dequeue pair runs the
# enqueue and dequeue scripts once and the event-publishing script twice.
echo "redis-benchmark: ZSCORE and the store's scripts at $CONNECTIONS connections" >&2
SHA_ENQUEUE=$(load_queue_script queue_enqueue.lua)
SHA_DEQUEUE=$(load_queue_script queue_dequeue.lua)
SHA_PUBLISH=$(load_script publish.lua)
RB_REQUESTS=$((CONNECTIONS * 4000))
rb() { local name=$1; shift; rbench "$RESULTS/redis-bench-$name.txt" "$CONNECTIONS" "$RB_REQUESTS" "$@"; }
rcli ZADD "{rb:revoked}" 4000000000 member >/dev/null
rb zscore ZSCORE "{rb:revoked}" member
# ARGV: the wake channel, then id, text, priority, delay, max attempts, capacity, no
# idempotency key (key, fingerprint, lifetime, keys kept).
rb enqueue EVALSHA "$SHA_ENQUEUE" 10 "${RB_QUEUE_KEYS[@]}" "rb:queue:wake" \
  '00000000-0000-4000-8000-__rand_int__' load 5 0 5 1000000000 "" "" 86400000 100000
rb dequeue EVALSHA "$SHA_DEQUEUE" 10 "${RB_QUEUE_KEYS[@]}" "rb:queue:wake"
EVENT='"type":"info","message":"Task enqueued: load","event":"queue.enqueued","taskId":"00000000-0000-4000-8000-000000000000","task":"load","priority":5,"queueSize":1'
# ARGV: timestamp, events retained, channel, then the events.
rb publish EVALSHA "$SHA_PUBLISH" 2 "{rb:events}:ids" "{rb:events}" \
  "2026-01-01T00:00:00.000000000Z" 1000 "rb:events" "$EVENT"

# /health as a monitor would probe it: a fixed rate, latency corrected for coordinated omission.
echo "/health probed at $PROBE_RATE/s, idle, then while /heavy-task-worker?n=$HEAVY_N saturates the pool" >&2
# The floor probed the same way shows what the machine itself adds to the latency.
probe() { run_oha "$1" 1 -c 4 -q "$PROBE_RATE" --latency-correction "$2"; }
probe floor_probe_idle "http://127.0.0.1:$FLOOR_PORT/health"
probe health_probe_idle "$BASE/health"
# As many heavy clients as HEAVY_MAX_INFLIGHT (2 x CPUs): every slot busy, none refused.
# It starts a second before the probe and ends a second after it.
oha --no-tui --output-format json -w -z "$(( ${DURATION%s} + 2 ))s" -c $(( $(nproc) * 2 )) \
  "$BASE/heavy-task-worker?n=$HEAVY_N" >"$RESULTS/oha-heavy-1.json" &
HEAVY=$!
sleep 1
probe health_probe_saturated "$BASE/health"
wait "$HEAVY"

CONDITIONS_AFTER=$(load_conditions)
python3 "$BENCH_DIR/report.py" "$RESULTS" "$ROOT/docs/load.svg" \
  --rounds "$ROUNDS" --connections "$CONNECTIONS" --duration "$DURATION" \
  --heavy-n "$HEAVY_N" --probe-rate "$PROBE_RATE" \
  --conditions "before: $CONDITIONS_BEFORE; after: $CONDITIONS_AFTER"

# The info-level server logged one line per request, hundreds of megabytes per run: keep its
# size in the record, not the lines.
INFO_LOG="$RESULTS/backflow-$INFO_PORT.log"
echo "request log of the RUST_LOG=info server: $(du -h "$INFO_LOG" | cut -f1), removed" >&2
rm -f "$INFO_LOG"
