#!/usr/bin/env bash
# How many idle connections one BackFlow holds, what each costs in server memory, and whether
# /health still answers meanwhile.
#
# Each phase runs on a fresh release server, started under this machine's hard limit on open
# files (or SOFT_LIMIT), so its MAX_CONNECTIONS is the limit minus the reserve:
#   silent      COUNT connections that send nothing (default: the server's MAX_CONNECTIONS);
#   keep-alive  COUNT connections that each made one request and stay open, idle;
#   flood       COUNT silent connections, then EXTRA more from a second client: past the cap,
#               the server closes the oldest idle ones to admit the new ones.
# While the connections are held, PROBES requests to /health, each on a new connection, give
# the answers and their latency (see `probe`; PROBE_TIMEOUT seconds at most). Memory per
# connection is the growth of the server's RSS divided by the idle connections it holds (the
# kernel's socket buffers are not in it). The first-request and keep-alive deadlines are set
# long enough for the connections to stay through a phase. The clients run on this machine.
#
# Usage: benches/idle_connections.sh
#   EXTRA=2000 PROBES=20 PROBE_TIMEOUT=5 by default; COUNT=n to hold n connections instead of
#   MAX_CONNECTIONS; SOFT_LIMIT=1024 starts the server under that soft limit (the hard limit
#   unchanged); BACKFLOW_BIN=path runs another build (COUNT defaults to 1500 when that build
#   does not log its MAX_CONNECTIONS).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
EXTRA=${EXTRA:-2000}
PROBES=${PROBES:-20}
PROBE_TIMEOUT=${PROBE_TIMEOUT:-5}
HARD_LIMIT=$(ulimit -Hn)

cargo build --release --bin backflow >&2
ulimit -Sn "$HARD_LIMIT"
CONDITIONS_BEFORE=$(load_conditions)
SCRATCH=$(mktemp -d)
TEMP_DIRS+=("$SCRATCH")

# start_server: a fresh server under SOFT_LIMIT (or the hard limit); sets PORT, SERVER_PID and
# MAX (its MAX_CONNECTIONS, empty when the build does not log it) and COUNT_DEFAULT (MAX,
# or 1500).
start_server() {
  PORT=$(free_port)
  ulimit -Sn "${SOFT_LIMIT:-$HARD_LIMIT}"
  # Deadlines long enough that every connection stays for the whole phase.
  start_backflow "$PORT" RUST_LOG=backflow=info LOG_FORMAT=json \
    FIRST_REQUEST_TIMEOUT_SECONDS=3600 HEADER_READ_TIMEOUT_SECONDS=3600
  ulimit -Sn "$HARD_LIMIT"
  SERVER_PID=$LAST_PID
  MAX=$(python3 -c 'import json, sys
for line in open(sys.argv[1]):
    entry = json.loads(line)
    if "max_connections" in entry:
        print(entry["max_connections"]); break
else:
    print("")' "$RESULTS/backflow-$PORT.log")
  COUNT_DEFAULT=${MAX:-1500}
  sleep 1
}

# hold NAME COUNT [--request]: a client holding COUNT connections until `release NAME`; waits
# until they are open and sets OPENED to how many it opened. (Not for `$(...)`: the client
# must outlive the call.)
hold() {
  local name=$1 count=$2 fd; shift 2
  mkfifo "$SCRATCH/$name.in"
  python3 "$BENCH_DIR/idle_connections.py" "127.0.0.1:$PORT" "$count" "$@" \
    <"$SCRATCH/$name.in" >"$SCRATCH/$name.out" &
  PIDS+=($!)
  # The client holds its connections until this end of its input is closed.
  exec {fd}>"$SCRATCH/$name.in"
  printf -v "HOLD_$name" '%s' "$fd"
  until [ -s "$SCRATCH/$name.out" ]; do sleep 0.1; done
  OPENED=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["opened"])' \
    "$SCRATCH/$name.out")
}

release() {
  local fd_var="HOLD_$1" fd
  fd=${!fd_var}
  exec {fd}>&-
}

# metric NAME LABEL: a sample of the server's /metrics (0 when absent or unanswered).
metric() {
  { curl -fsS --max-time "$PROBE_TIMEOUT" "http://127.0.0.1:$PORT/metrics" 2>/dev/null || true; } |
    awk -v name="$1" -v label="$2" '!found && $1 ~ "^"name && index($1, label) {value=$2; found=1}
      END {print found ? value : 0}'
}

# probe: PROBES requests to /health on new connections; prints how many were answered 200 and
# the p50 and largest latency of the answer (from the connection made to the last byte) and of
# the connection (the client's connect: with thousands of connections to one address, the
# client's kernel searches longer for a free source port).
probe() {
  local i
  for i in $(seq 1 "$PROBES"); do
    curl -s -o /dev/null --max-time "$PROBE_TIMEOUT" \
      -w '%{http_code} %{time_connect} %{time_total}\n' "http://127.0.0.1:$PORT/health" || true
  done | python3 -c 'import statistics, sys
rows = [line.split() for line in sys.stdin]
answer = [float(total) - float(connect) for code, connect, total in rows if code == "200"]
connect = [float(connect) for code, connect, _ in rows if code == "200"]
ms = lambda values, pick: f"{pick(values) * 1000:.1f}" if values else "-"
print(len(answer), ms(answer, statistics.median), ms(answer, max),
      ms(connect, statistics.median), ms(connect, max))'
}

# report LABEL OPENED RSS_BEFORE: one row of the table, for the server as it is now.
report() {
  local label=$1 opened=$2 before=$3 after open closed probed
  after=$(rss_kib "$SERVER_PID")
  open=0
  for state in new idle; do
    open=$(( open + $(metric http_connections_open "\"$state\"" | cut -d. -f1) ))
  done
  closed=$(metric http_connections_closed_total make_room | cut -d. -f1)
  probed=$(probe)
  python3 - "$label" "$opened" "$open" "$closed" "$before" "$after" "$PROBES" $probed <<'EOF'
import sys
label, opened, held, closed, before, after, probes, ok, p50, mx, connect_p50, connect_max = sys.argv[1:]
held, before, after = int(held), int(before), int(after)
# A build without connection metrics: what the client opened, marked as such.
counted = held or int(opened)
per = f"{(after - before) / counted:.2f} KiB" if counted else "-"
held = held or (f"({opened} opened)" if int(opened) else 0)
print(f"| {label} | {opened} | {held} | {closed} | {before / 1024:.1f} → {after / 1024:.1f} MiB "
      f"| {per} | {ok} of {probes} | {p50} / {mx} ms | {connect_p50} / {connect_max} ms |")
EOF
}

stop_server() {
  kill -TERM "$SERVER_PID"
  wait "$SERVER_PID" 2>/dev/null || true
}

echo "| connections | opened | idle on the server | closed to make room | server RSS | per connection | /health answered | answer p50 / max | connect p50 / max |"
echo "|---|---:|---:|---:|---|---:|---:|---:|---:|"

start_server
before=$(rss_kib "$SERVER_PID")
report "none" 0 "$before"
hold silent "${COUNT:-$COUNT_DEFAULT}"
sleep 1
report "silent (no request)" "$OPENED" "$before"
release silent
stop_server

start_server
before=$(rss_kib "$SERVER_PID")
hold kept "${COUNT:-$COUNT_DEFAULT}" --request
sleep 1
report "keep-alive, idle after one request" "$OPENED" "$before"
release kept
stop_server

start_server
before=$(rss_kib "$SERVER_PID")
hold first "${COUNT:-$COUNT_DEFAULT}"
first=$OPENED
hold more "$EXTRA"
sleep 1
report "flood: $EXTRA past the cap" "$(( first + OPENED ))" "$before"
release first
release more
stop_server

echo
echo "server: ${BACKFLOW_BIN:-target/release/backflow}, soft limit ${SOFT_LIMIT:-$HARD_LIMIT} (hard $HARD_LIMIT), MAX_CONNECTIONS ${MAX:-not logged}"
echo "load conditions: before: $CONDITIONS_BEFORE; after: $(load_conditions)"
