#!/usr/bin/env bash
# Opens N concurrent Server-Sent Event streams to a release BackFlow and reports the server's
# memory per connection and the time for one event to reach all of them.
#
# Usage: benches/sse_scale.sh [N]     (N=10000 by default; needs about 2N file descriptors)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
N=${1:-10000}
ulimit -n $(( N * 2 + 1024 )) 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cargo build --release --bin backflow --example sse_scale >&2
PORT=$(free_port)
# A long notification period keeps the periodic producer out of the fan-out measurement.
start_backflow "$PORT" SSE_MAX_CONNECTIONS=$(( N + 10 )) NOTIFY_INTERVAL_MS=3600000
SERVER_PID=$LAST_PID
"$ROOT/target/release/examples/sse_scale" "127.0.0.1:$PORT" "$SERVER_PID" "$N" | tee "$RESULTS/sse_scale.json"
