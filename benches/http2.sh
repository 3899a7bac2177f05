#!/usr/bin/env bash
# HTTP/2 against HTTP/1.1 on the light routes, in one run on one machine: the same release
# BackFlow twice (plain port: HTTP/1.1 and h2c; HTTPS with TLS_SELF_SIGNED: HTTP/1.1 and h2 by
# ALPN), loaded in turn by oha at the same number of requests in flight. Reports requests/s,
# p99 and the server's CPU time per request, then TLS handshakes per second (HTTP/1.1 over TLS
# without keep-alive: every request a full handshake).
#
# Usage: benches/http2.sh [DURATION] [IN_FLIGHT]     (10s and 64 by default; IN_FLIGHT is
#        split as 8 connections of IN_FLIGHT/8 streams for HTTP/2)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DURATION=${1:-10s}
IN_FLIGHT=${2:-64}
H2_CONNECTIONS=8
H2_STREAMS=$(( IN_FLIGHT / H2_CONNECTIONS ))

build_release
ensure_oha
CONDITIONS_BEFORE=$(load_conditions)
SETTINGS=(STORE=memory NOTIFY_INTERVAL_MS=3600000 LOGIN_MAX_PER_MINUTE=1000000)

PLAIN_PORT=$(free_port)
start_backflow "$PLAIN_PORT" "${SETTINGS[@]}"
PLAIN_PID=$LAST_PID
TLS_PORT=$(free_port)
HEALTH_SCHEME=https start_backflow "$TLS_PORT" "${SETTINGS[@]}" TLS_SELF_SIGNED=true
TLS_PID=$LAST_PID

# run NAME PID URL OHA-ARGS...: one oha run, its JSON and the server's CPU ticks spent.
run() {
  local name=$1 pid=$2 url=$3; shift 3
  local before after
  before=$(cpu_ticks "$pid")
  oha --no-tui --output-format json -z "$DURATION" "$@" "$url" >"$RESULTS/http2-$name.json"
  after=$(cpu_ticks "$pid")
  echo $(( after - before )) >"$RESULTS/http2-$name.ticks"
}

for route in /health /queue/status; do
  tag=${route//\//_}
  run "h1$tag" "$PLAIN_PID" "http://127.0.0.1:$PLAIN_PORT$route" -c "$IN_FLIGHT"
  run "h2c$tag" "$PLAIN_PID" "http://127.0.0.1:$PLAIN_PORT$route" \
    --http2 -c "$H2_CONNECTIONS" -p "$H2_STREAMS"
  run "tls-h1$tag" "$TLS_PID" "https://127.0.0.1:$TLS_PORT$route" --insecure -c "$IN_FLIGHT"
  run "tls-h2$tag" "$TLS_PID" "https://127.0.0.1:$TLS_PORT$route" --insecure \
    --http2 -c "$H2_CONNECTIONS" -p "$H2_STREAMS"
done
run handshakes "$TLS_PID" "https://127.0.0.1:$TLS_PORT/health" --insecure --disable-keepalive \
  -c "$IN_FLIGHT"

python3 - "$RESULTS" "$CONDITIONS_BEFORE; after: $(load_conditions)" <<'EOF2'
import json, os, sys
results = sys.argv[1]
def load(name):
    report = json.load(open(os.path.join(results, f"http2-{name}.json")))
    ticks = int(open(os.path.join(results, f"http2-{name}.ticks")).read())
    summary = report["summary"]
    total = sum(report["statusCodeDistribution"].values())
    ok = report["statusCodeDistribution"].get("200", 0)
    return summary["requestsPerSec"], report["latencyPercentiles"]["p99"] * 1000, \
        ticks * 10_000 / max(total, 1), ok, total
print("| route | protocol | requests/s | vs HTTP/1.1 | p99 | server CPU per request | 200s |")
print("|---|---|---:|---:|---:|---:|---:|")
for route in ["/health", "/queue/status"]:
    tag = route.replace("/", "_")
    base = load(f"h1{tag}")[0]
    for name, label in [("h1", "HTTP/1.1"), ("h2c", "h2c (prior knowledge)"),
                        ("tls-h1", "HTTPS HTTP/1.1"), ("tls-h2", "HTTPS h2")]:
        rps, p99, cpu, ok, total = load(f"{name}{tag}")
        print(f"| `{route}` | {label} | {rps:,.0f} | {rps / base:.2f} | {p99:.2f} ms "
              f"| {cpu:.1f} µs | {ok} of {total} |")
rps, p99, cpu, ok, total = load("handshakes")
print(f"\nTLS handshakes (HTTP/1.1 over TLS, no keep-alive): {rps:,.0f} per second, "
      f"p99 {p99:.2f} ms, server CPU {cpu:.0f} µs per handshake and request, {ok} of {total} 200s")
print(f"\nload conditions: before: {sys.argv[2]}")
EOF2
