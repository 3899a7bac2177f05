#!/usr/bin/env bash
# Throughput and memory of `GET /stream` against a release build.
#
# Starts the server, streams ITEMS items (default 10^7) with delay=0 through curl, samples the
# server's resident memory (VmRSS) every 100 ms, and prints bytes, seconds, MB/s and the peak RSS
# growth over the idle server. Usage: cargo build --release && benches/stream_throughput.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/backflow}
PORT=${PORT:-3931}
ITEMS=${ITEMS:-10000000}
CHUNK=${CHUNK:-10000}
WORK=$(mktemp -d)
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$WORK"' EXIT

HOST=127.0.0.1 PORT=$PORT RUST_LOG=warn DATA_DIR="$WORK" "$BIN" >/dev/null &
SERVER=$!
until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; do sleep 0.1; done

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$SERVER/status"; }
curl -s -o /dev/null "http://127.0.0.1:$PORT/stream?totalItems=1000&delay=0" # warm up
BASE=$(rss_kb)
(while sleep 0.1; do rss_kb; done) >"$WORK/rss" 2>/dev/null &
SAMPLER=$!
read -r SIZE SECONDS_TAKEN < <(curl -s -o /dev/null -w '%{size_download} %{time_total}\n' \
  "http://127.0.0.1:$PORT/stream?totalItems=$ITEMS&chunkSize=$CHUNK&delay=0")
kill "$SAMPLER"
PEAK=$(sort -n "$WORK/rss" | tail -1)
awk -v b="$SIZE" -v s="$SECONDS_TAKEN" -v base="$BASE" -v peak="$PEAK" 'BEGIN {
  printf "%d bytes in %.2f s: %.0f MB/s; RSS %.1f MB idle, peak growth %.1f MB\n",
         b, s, b / s / 1e6, base / 1024, (peak - base) / 1024 }'
