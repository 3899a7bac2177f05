#!/usr/bin/env bash
# Real-browser end-to-end test of the demo page, then of event streams over HTTPS.
#
# Builds the server (debug: quicker to build than release, and fast enough for this) unless
# BACKFLOW_BIN names a binary already built, starts it on a free loopback port with a throw-away
# data directory and 200 ms notifications, runs demo.e2e.mjs in headless Chromium against it,
# then stops it with SIGTERM. Then starts it again with HTTPS (TLS_SELF_SIGNED=true: a
# certificate made at start-up) and runs https.e2e.mjs: 10 EventSources to one origin, all
# receiving over HTTP/2. Exits non-zero when a check fails or a server does not stop cleanly.
# Needs `bash e2e/install.sh` once.
#
#   bash e2e/run.sh
#   UPDATE_DOCS_SCREENSHOT=1 bash e2e/run.sh   # also copies the screenshot to docs/demo.png
#   node e2e/demo.e2e.mjs http://127.0.0.1:3000  # against a server that is already running
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
e2e="$root/e2e"
artifacts="$e2e/artifacts"
chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
mkdir -p "$artifacts"

if [[ ! -d "$e2e/node_modules/playwright-core" ]]; then
  echo "e2e: node packages missing; run: bash e2e/install.sh" >&2
  exit 1
fi
if [[ ! -x "$chromium" ]]; then
  echo "e2e: no browser at $chromium; run: bash e2e/install.sh" >&2
  exit 1
fi

# BACKFLOW_BIN: a server binary already built (scripts/test passes the one `cargo test` built,
# which `cargo build` would build again: dev-dependencies change the features of shared crates).
if [[ -n "${BACKFLOW_BIN:-}" && -x "${BACKFLOW_BIN}" ]]; then
  binary="$BACKFLOW_BIN"
else
  echo "== e2e: building the server"
  (cd "$root" && cargo build --locked --bin backflow)
  binary="${CARGO_TARGET_DIR:-$root/target}/debug/backflow"
fi

free_port() {
  node -e 'const s = require("node:net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}
port="$(free_port)"
url="http://127.0.0.1:$port"
scratch="$(mktemp -d)"
server_log="$artifacts/server.log"
server_pid=""

stop_server() {
  [[ -n "$server_pid" ]] || return 0
  local pid="$server_pid" status=0
  server_pid=""
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "e2e: the server ignored SIGTERM for 15 s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    return 1
  fi
  wait "$pid" || status=$?
  return "$status"
}
trap 'stop_server || true; rm -rf "$scratch"' EXIT

# start_server DATA_DIR [NAME=VALUE...]: starts the server on $port with the test settings plus
# these, logging to $server_log, and waits until $url/health answers.
start_server() {
  local data="$1"
  shift
  # Run from the scratch directory so a developer's .env is not picked up; pin the demo users.
  echo "== e2e: starting the server on $url (log: $server_log)"
  (
    cd "$scratch"
    exec env HOST=127.0.0.1 PORT="$port" APP_ENV=development \
      AUTH_USERS="admin:admin123,user:user123" DATA_DIR="$data" \
      NOTIFY_INTERVAL_MS=200 SHUTDOWN_TIMEOUT_SECONDS=5 LOG_FORMAT=json \
      CHILD_MAX_N=44 WORKER_MAX_N=48 "$@" \
      RUST_LOG="${RUST_LOG:-backflow=info,tower_http=warn}" "$binary"
  ) >"$server_log" 2>&1 &
  server_pid=$!
  for _ in $(seq 300); do
    # The HTTPS server's certificate is self-signed: the probe does not check it.
    NODE_TLS_REJECT_UNAUTHORIZED=0 node -e \
      'fetch(process.argv[1]).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))' \
      "$url/health" 2>/dev/null && return 0
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "e2e: the server exited during start-up:" >&2
      cat "$server_log" >&2
      exit 1
    fi
    sleep 0.1
  done
}

start_server "$scratch/data"

echo "== e2e: browser checks"
test_status=0
node "$e2e/demo.e2e.mjs" "$url" || test_status=$?

server_status=0
stop_server || server_status=$?
if [[ "$server_status" -ne 0 ]]; then
  echo "e2e: the server did not stop cleanly on SIGTERM (exit $server_status)" >&2
fi
if [[ "$test_status" -ne 0 || "$server_status" -ne 0 ]]; then
  echo "== e2e: server log (last 40 lines)" >&2
  tail -n 40 "$server_log" >&2
  exit 1
fi

echo "== e2e: event streams over HTTPS and HTTP/2"
port="$(free_port)"
url="https://localhost:$port"
server_log="$artifacts/server-https.log"
start_server "$scratch/data-https" TLS_SELF_SIGNED=true
https_status=0
node "$e2e/https.e2e.mjs" "$url" || https_status=$?
server_status=0
stop_server || server_status=$?
if [[ "$https_status" -ne 0 || "$server_status" -ne 0 ]]; then
  echo "== e2e: HTTPS server log (last 40 lines)" >&2
  tail -n 40 "$server_log" >&2
  exit 1
fi

if [[ "${UPDATE_DOCS_SCREENSHOT:-}" == "1" ]]; then
  mkdir -p "$root/docs"
  cp "$artifacts/demo.png" "$root/docs/demo.png"
  echo "== e2e: docs/demo.png updated"
fi
echo "== e2e: passed"
