#!/usr/bin/env bash
# What a burst of logins does to the light routes: GET /health probed at a fixed rate (latency
# corrected for coordinated omission), first idle, then while CONNECTIONS clients send logins
# of a user whose secret is an argon2id hash with the default costs, as fast as the server
# answers them. Every login costs one hash verification on the blocking pool, at most
# LOGIN_VERIFY_MAX_CONCURRENT (the CPU count) at once; the budgets are raised out of the way so
# every login is verified. Prints the logins/s of the burst, the server's CPU time per login
# (what a verification costs, whatever else the machine runs) and the probe's p50 / p99 / max
# in both phases.
#
# Usage: benches/login_burst.sh
#   DURATION=10s CONNECTIONS=64 PROBE_RATE=200 by default; BACKFLOW_BIN=path runs that binary
#   instead of building one.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
PROBE_RATE=${PROBE_RATE:-200}

ensure_oha
[ -n "${BACKFLOW_BIN:-}" ] || build_release
BIN=${BACKFLOW_BIN:-$ROOT/target/release/backflow}
HASH=$(printf '%s' 'bench passphrase' | "$BIN" hash-password)
PORT=$(free_port)
start_backflow "$PORT" STORE=memory AUTH_USERS="ops:$HASH" LOGIN_MAX_PER_MINUTE=1000000 \
  LOGIN_ACCOUNT_MAX_PER_MINUTE=1000000 LOGIN_SUCCESS_MAX_PER_MINUTE=1000000
BASE="http://127.0.0.1:$PORT"
SERVER_PID=$LAST_PID

probe() {
  oha --no-tui --output-format json -z "$DURATION" -c 4 -q "$PROBE_RATE" --latency-correction \
    "$BASE/health" >"$RESULTS/oha-$1.json"
}
oha --no-tui --output-format quiet -z 2s -c 4 "$BASE/health" >/dev/null
probe login_probe_idle
# Wrong passwords cost the same verification and keep the revocation list out of it.
oha --no-tui --output-format json -w -z "$(( ${DURATION%s} + 2 ))s" -c "$CONNECTIONS" -m POST \
  -H 'content-type: application/json' -d '{"username":"ops","password":"wrong passphrase"}' \
  "$BASE/login" >"$RESULTS/oha-login_burst.json" &
BURST=$!
TICKS_BEFORE=$(cpu_ticks "$SERVER_PID")
sleep 1
probe login_probe_burst
wait "$BURST"
TICKS=$(( $(cpu_ticks "$SERVER_PID") - TICKS_BEFORE ))

python3 - "$RESULTS" "$TICKS" "$(getconf CLK_TCK)" "${DURATION%s}" <<'PY'
import json, sys
results, ticks, hz, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
def load(name):
    with open(f"{results}/oha-{name}.json") as f:
        return json.load(f)
burst = load("login_burst")
codes = burst.get("statusCodeDistribution", {})
rate = burst['summary']['requestsPerSec']
# The server's CPU time over the whole burst, which runs the probe's time plus two seconds.
cpu_ms = ticks / hz * 1000 / (rate * (seconds + 2))
print(f"logins: {rate:.1f}/s, answers {codes}; server CPU per login {cpu_ms:.1f} ms")
for phase in ("idle", "burst"):
    probe = load(f"login_probe_{phase}")
    p = probe["latencyPercentiles"]
    print(f"/health {phase}: p50 {p['p50'] * 1000:.2f} ms, p99 {p['p99'] * 1000:.2f} ms, "
          f"max {probe['summary']['slowest'] * 1000:.2f} ms, "
          f"answers {probe.get('statusCodeDistribution', {})}")
PY
