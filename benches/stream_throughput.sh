#!/usr/bin/env bash
# Measures GET /stream with delay=0 and the largest chunk: bytes per second on loopback (read by
# curl into /dev/null) and the server's peak resident memory growth while it streams, for each
# item count given (default 10^6 and 10^7) and both formats.
#
# Each run gets a fresh server, so its growth is measured from that server's idle size and not
# hidden by memory an earlier run left with the allocator. The peak is the kernel's high-water
# mark (VmHWM, reset just before the request), not a sample. Runs are repeated REPEAT times; the
# table gives the median throughput and the largest growth.
#
# Usage: benches/stream_throughput.sh [ITEMS...]      (REPEAT=3 by default)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
COUNTS=("$@")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(1000000 10000000)
REPEAT=${REPEAT:-3}

build_release
CONDITIONS_BEFORE=$(load_conditions)

# one_run ITEMS FORMAT: sets RUN to "bytes seconds idle_kib growth_kib" for one fresh server.
# (A variable, not output: in a `$(...)` subshell the server and its data directory would not be
# recorded for the cleanup.)
one_run() {
  local port pid idle bytes seconds
  port=$(free_port)
  start_backflow "$port" STREAM_MAX_ITEMS=100000000
  pid=$LAST_PID
  idle=$(rss_kib "$pid")
  reset_peak_rss "$pid"
  read -r bytes seconds < <(curl -sS -o /dev/null -w '%{size_download} %{time_total}\n' \
    "http://127.0.0.1:$port/stream?totalItems=$1&chunkSize=10000&delay=0&format=$2")
  RUN="$bytes $seconds $idle $(( $(peak_rss_kib "$pid") - idle ))"
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
}

echo "| items | format | bytes | seconds (median) | MB/s (median of $REPEAT) | MB/s per run | idle RSS | peak RSS growth (largest) |"
echo "|---:|---|---:|---:|---:|---|---:|---:|"
for items in "${COUNTS[@]}"; do
  for format in json ndjson; do
    runs=()
    for _ in $(seq 1 "$REPEAT"); do
      one_run "$items" "$format"
      runs+=("$RUN")
    done
    printf '%s\n' "${runs[@]}" | python3 -c "
import statistics, sys
runs = [line.split() for line in sys.stdin if line.strip()]
size = int(runs[0][0])
secs = [float(r[1]) for r in runs]
rates = [int(r[0]) / float(r[1]) / 1e6 for r in runs]
idle = max(int(r[2]) for r in runs)
growth = max(int(r[3]) for r in runs)
print(f'| {$items:,} | $format | {size / 1e6:.1f} MB | {statistics.median(secs):.2f} | '
      f'{statistics.median(rates):.0f} | {\", \".join(f\"{r:.0f}\" for r in rates)} | '
      f'{idle / 1024:.1f} MiB | {growth / 1024:.1f} MiB |')
"
  done
done
echo
echo "load conditions: before: $CONDITIONS_BEFORE; after: $(load_conditions)"
