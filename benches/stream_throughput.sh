#!/usr/bin/env bash
# Measures GET /stream with delay=0: bytes per second on loopback and the server's peak resident
# memory growth while it streams, for each item count given (default 10^6 and 10^7).
#
# Usage: benches/stream_throughput.sh [ITEMS...]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
COUNTS=("$@")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(1000000 10000000)

cargo build --release --bin backflow >&2
PORT=$(free_port)
start_backflow "$PORT"
SERVER_PID=$LAST_PID

echo "| items | format | bytes | seconds | MB/s | RSS before KiB | peak RSS KiB | growth KiB |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|"
for items in "${COUNTS[@]}"; do
  for format in json ndjson; do
    before=$(rss_kib "$SERVER_PID")
    peak_file=$(mktemp)
    ( peak=$before
      while kill -0 "$SERVER_PID" 2>/dev/null; do
        now=$(rss_kib "$SERVER_PID"); [ "$now" -gt "$peak" ] && peak=$now && echo "$peak" >"$peak_file"
        sleep 0.05
      done ) &
    SAMPLER=$!
    read -r bytes seconds < <(curl -s -o /dev/null -w '%{size_download} %{time_total}\n' \
      "http://127.0.0.1:$PORT/stream?totalItems=$items&chunkSize=10000&delay=0&format=$format")
    kill "$SAMPLER" 2>/dev/null || true; wait "$SAMPLER" 2>/dev/null || true
    peak=$(cat "$peak_file" 2>/dev/null || echo "$before"); [ -n "$peak" ] || peak=$before
    rm -f "$peak_file"
    python3 -c "b,s=$bytes,$seconds; print(f'| $items | $format | {b} | {s:.2f} | {b/s/1e6:.0f} | $before | $peak | {$peak-$before} |')"
  done
done
