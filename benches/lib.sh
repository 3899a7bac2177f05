# Shared helpers for the load scripts: build, start and stop servers on loopback.
# Sourced, not run.

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
RESULTS="$BENCH_DIR/results"
mkdir -p "$RESULTS"
PIDS=()

cleanup() {
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT

ensure_oha() {
  if ! command -v oha >/dev/null 2>&1; then
    echo "installing oha (cargo install oha --locked)..." >&2
    cargo install oha --locked >&2
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_healthy() {
  local port=$1
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server on port $port did not become healthy" >&2
  return 1
}

# start_backflow PORT [VAR=value ...]: starts the release binary with a bench configuration.
start_backflow() {
  local port=$1; shift
  local data_dir
  data_dir="$(mktemp -d)"
  env HOST=127.0.0.1 PORT="$port" RUST_LOG=warn DATA_DIR="$data_dir" \
      JWT_SECRET=bench-secret-bench-secret-bench-secret "$@" \
      "$ROOT/target/release/backflow" >"$RESULTS/backflow-$port.log" 2>&1 &
  PIDS+=($!)
  LAST_PID=$!
  wait_healthy "$port"
}

start_floor() {
  local port=$1
  PORT="$port" "$ROOT/target/release/examples/bare_axum" >/dev/null 2>&1 &
  PIDS+=($!)
  LAST_PID=$!
  wait_healthy "$port"
}

rss_kib() {
  awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}
