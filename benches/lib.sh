# Shared helpers for the load scripts: build, start and stop servers on loopback, read memory
# and note the load the machine was under. Sourced, not run.

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
RESULTS="$BENCH_DIR/results"
mkdir -p "$RESULTS"
PIDS=()
TEMP_DIRS=()

# Stops only the processes this script started (by pid) and removes its data directories.
cleanup() {
  local pid dir
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  for dir in "${TEMP_DIRS[@]}"; do
    rm -rf "$dir"
  done
}
# The script's own exit status is kept: the cleanup's is not.
trap 'status=$?; cleanup; exit "$status"' EXIT

# build_release: the release binary and the examples the scripts start. Every script builds the
# same set, so one script's build is the next one's (building the binary alone resolves other
# features and rebuilds everything).
build_release() {
  cargo build --release --bin backflow --examples >&2
}

ensure_oha() {
  if ! command -v oha >/dev/null 2>&1; then
    echo "installing oha (cargo install oha --locked)..." >&2
    cargo install oha --locked >&2
  fi
}

# fill_queue BASE COUNT [BODY]: enqueues COUNT tasks (BODY, a priority-5 task by default) on the
# server at BASE, over HTTP with oha at 64 connections: the way every script fills a queue, on
# any store.
fill_queue() {
  local base=$1 count=$2 body=${3:-'{"task":"prefill","priority":5}'}
  ensure_oha
  echo "filling the queue at $base with $count tasks over HTTP" >&2
  oha --no-tui --output-format quiet -n "$count" -c 64 -m POST \
    -H 'content-type: application/json' -d "$body" "$base/enqueue" >/dev/null
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_healthy PORT [SCHEME]: waits until /health answers (https: certificate not checked).
wait_healthy() {
  local port=$1 scheme=${2:-http}
  for _ in $(seq 1 300); do
    curl -fsSk "$scheme://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server on port $port did not become healthy" >&2
  return 1
}

# new_data_dir: makes a fresh directory for DATA_DIR, removed on exit, and sets NEW_DIR to it
# (a variable, not output: in a `$(...)` subshell the directory would not be recorded for removal).
new_data_dir() {
  NEW_DIR="$(mktemp -d)"
  TEMP_DIRS+=("$NEW_DIR")
}

# start_backflow PORT [VAR=value ...]: starts the release binary (or $BACKFLOW_BIN, to compare
# another build) with a bench configuration (logs at warn unless RUST_LOG is given); later
# VAR=value pairs override the defaults. Sets LAST_PID.
start_backflow() {
  local port=$1; shift
  new_data_dir
  # Every load comes from 127.0.0.1: MAX_CONNECTIONS_PER_IP is lifted out of its way.
  env HOST=127.0.0.1 PORT="$port" RUST_LOG=warn DATA_DIR="$NEW_DIR" \
      JWT_SECRET=bench-secret-bench-secret-bench-secret MAX_CONNECTIONS_PER_IP=1000000 "$@" \
      "${BACKFLOW_BIN:-$ROOT/target/release/backflow}" >"$RESULTS/backflow-$port.log" 2>&1 &
  PIDS+=($!)
  LAST_PID=$!
  wait_healthy "$port" "${HEALTH_SCHEME:-http}"
}

# start_floor PORT [EXAMPLE]: a floor server built as an example (bare_axum, the floor of the
# load tests, unless another is named). Sets LAST_PID.
start_floor() {
  local port=$1 example=${2:-bare_axum}
  PORT="$port" "$ROOT/target/release/examples/$example" >/dev/null 2>&1 &
  PIDS+=($!)
  LAST_PID=$!
  wait_healthy "$port"
}

rss_kib() {
  awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}

# peak_rss_kib PID: the highest resident size since the last reset_peak_rss.
peak_rss_kib() {
  awk '/^VmHWM:/ {print $2}' "/proc/$1/status"
}

# reset_peak_rss PID: sets the kernel's peak-RSS mark (VmHWM) back to the current RSS.
reset_peak_rss() {
  echo 5 >"/proc/$1/clear_refs"
}

# load_conditions: one line describing how busy the machine is, for the report.
load_conditions() {
  local builds
  builds=$(ps -eo comm= | grep -cE '^(rustc|cc1|cc1plus|ld|clang)' || true)
  printf '%s cores (%s), load average %s, %s compiler processes running' \
    "$(nproc)" "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "$builds"
}

# cpu_ticks PID: user plus system CPU time the process has used, in clock ticks (1/100 s).
cpu_ticks() {
  awk '{print $14 + $15}' "/proc/$1/stat"
}

# start_redis: a redis-server of the script's own on a free loopback port, without persistence;
# sets REDIS_PORT (and REDIS_PID) once it answers.
start_redis() {
  command -v redis-server >/dev/null || { echo "redis-server is required (apt-get install redis-server redis-tools)" >&2; exit 1; }
  new_data_dir
  REDIS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$NEW_DIR" \
    >"$RESULTS/redis.log" 2>&1 &
  PIDS+=($!)
  REDIS_PID=$!
  until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do sleep 0.05; done
}

rcli() { redis-cli -p "$REDIS_PORT" "$@"; }

# The store's scripts, for redis-benchmark to run them as the server does: a queue script is the
# prelude followed by its body; its KEYS are RB_QUEUE_KEYS (another prefix than the servers').
LUA="$ROOT/src/store/redis/lua"
RB_QUEUE_KEYS=()
for name in tasks ready delayed leased dead acked acked:ends keys keys:ends arrivals; do
  RB_QUEUE_KEYS+=("{rb:queue}:$name")
done
load_queue_script() { rcli SCRIPT LOAD "$(cat "$LUA/queue_prelude.lua"; echo; cat "$LUA/$1")"; }
load_script() { rcli SCRIPT LOAD "$(cat "$LUA/$1")"; }

# rbench FILE CONNECTIONS REQUESTS COMMAND...: writes the requests/s of COMMAND to FILE (read
# from the right of redis-benchmark's CSV line, whose name is the command unescaped).
# __rand_int__ in an argument becomes a random 12-digit number.
rbench() {
  local file=$1 connections=$2 requests=$3; shift 3
  redis-benchmark -p "$REDIS_PORT" -c "$connections" -n "$requests" -r 1000000000000 --csv "$@" \
    | python3 -c 'import sys; print(sys.stdin.read().splitlines()[-1].rsplit(",", 7)[1].strip("\""))' \
    >"$file"
}
