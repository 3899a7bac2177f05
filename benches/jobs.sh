#!/usr/bin/env bash
# Reliable delivery under load: job cycles on each store, batches, the ceiling Redis itself sets
# with the very scripts a cycle runs, and the delay of a long poll's wake-up.
#
# Starts the release binary on STORE=memory, STORE=embedded and STORE=redis (two instances on a
# redis-server of the script's own), then, with examples/job_cycle.rs at CONNECTIONS
# connections for DURATION each:
# - the job cycle: enqueue, lease (count 1) and acknowledge, one task per request; then with
#   batches (enqueue 10 one by one, lease count=10, one batch ack), on each store;
# - the consumer side alone, from a queue filled beforehand: lease + ack one at a time, and
#   lease count=10 + a batch ack;
# - redis-benchmark running the scripts of one cycle (enqueue, lease, ack, and the event
#   script once per event) at the same concurrency: the cycles/s Redis could do if it did
#   nothing else (an ack of an unknown task stands for the ack: it reads the record and answers,
#   which costs less than a real one, so the ceiling errs high);
# - the long poll: from an enqueue's answer (and from its request) to the answer of the lease that
#   was waiting (often before the enqueue's own answer: a negative delay), on one
#   memory and one embedded instance, on one Redis instance, and across the two Redis instances.
# Writes benches/results/jobs.json and prints a Markdown table.
#
# Usage: benches/jobs.sh        DURATION=10 CONNECTIONS=64 PREFILL=800000 SAMPLES=500 by default.
# PREFILL tasks are enqueued before each consumer run; a run whose queue ran dry (a lease that
# found fewer tasks than it asked for) measured empty leases, not jobs: the report names it and
# the script fails, asking for a larger PREFILL.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
PREFILL=${PREFILL:-800000}
SAMPLES=${SAMPLES:-500}

ensure_oha
build_release
CONDITIONS_BEFORE=$(load_conditions)

start_redis

SETTINGS=(QUEUE_CAPACITY=100000000 NOTIFY_INTERVAL_MS=3600000)
url() { echo "http://127.0.0.1:$1"; }
MEMORY=$(free_port); start_backflow "$MEMORY" STORE=memory "${SETTINGS[@]}"
EMBEDDED=$(free_port); start_backflow "$EMBEDDED" STORE=embedded "${SETTINGS[@]}"
REDIS_A=$(free_port)
start_backflow "$REDIS_A" STORE=redis REDIS_URL="redis://127.0.0.1:$REDIS_PORT" REDIS_PREFIX=jobs "${SETTINGS[@]}"
REDIS_B=$(free_port)
start_backflow "$REDIS_B" STORE=redis REDIS_URL="redis://127.0.0.1:$REDIS_PORT" REDIS_PREFIX=jobs "${SETTINGS[@]}"

# The long polls run on servers of their own, whose queues stay empty until each enqueue.
POLL_MEMORY=$(free_port); start_backflow "$POLL_MEMORY" STORE=memory "${SETTINGS[@]}"
POLL_EMBEDDED=$(free_port); start_backflow "$POLL_EMBEDDED" STORE=embedded "${SETTINGS[@]}"
POLL_A=$(free_port)
start_backflow "$POLL_A" STORE=redis REDIS_URL="redis://127.0.0.1:$REDIS_PORT" REDIS_PREFIX=poll "${SETTINGS[@]}"
POLL_B=$(free_port)
start_backflow "$POLL_B" STORE=redis REDIS_URL="redis://127.0.0.1:$REDIS_PORT" REDIS_PREFIX=poll "${SETTINGS[@]}"

client() { "$ROOT/target/release/examples/job_cycle" "$@"; }
OUT="$RESULTS/jobs"
mkdir -p "$OUT"
rm -f "$OUT"/*.json

for store in memory embedded redis; do
  case $store in
    memory) base=$(url "$MEMORY") ;;
    embedded) base=$(url "$EMBEDDED") ;;
    redis) base=$(url "$REDIS_A") ;;
  esac
  echo "$store: job cycles one at a time and in batches of 10, $CONNECTIONS connections, ${DURATION} s each" >&2
  client cycle --base "$base" --connections "$CONNECTIONS" --seconds 2 >/dev/null # warm-up
  client cycle --base "$base" --connections "$CONNECTIONS" --seconds "$DURATION" --batch 1 >"$OUT/cycle-$store-1.json"
  client cycle --base "$base" --connections "$CONNECTIONS" --seconds "$DURATION" --batch 10 >"$OUT/cycle-$store-10.json"
  fill_queue "$base" "$PREFILL"
  client cycle --base "$base" --connections "$CONNECTIONS" --seconds "$DURATION" --batch 1 --consume-only >"$OUT/consume-$store-1.json"
  fill_queue "$base" "$PREFILL"
  client cycle --base "$base" --connections "$CONNECTIONS" --seconds "$DURATION" --batch 10 --consume-only >"$OUT/consume-$store-10.json"
done

echo "long polls: $SAMPLES wake-ups each" >&2
client longpoll --wait "$(url "$POLL_MEMORY")" --enqueue "$(url "$POLL_MEMORY")" --samples "$SAMPLES" >"$OUT/longpoll-memory.json"
client longpoll --wait "$(url "$POLL_EMBEDDED")" --enqueue "$(url "$POLL_EMBEDDED")" --samples "$SAMPLES" >"$OUT/longpoll-embedded.json"
client longpoll --wait "$(url "$POLL_A")" --enqueue "$(url "$POLL_A")" --samples "$SAMPLES" >"$OUT/longpoll-redis-same.json"
client longpoll --wait "$(url "$POLL_A")" --enqueue "$(url "$POLL_B")" --samples "$SAMPLES" >"$OUT/longpoll-redis-across.json"

# The scripts of one cycle, run by redis-benchmark on keys of another prefix. Each queue script
# is the prelude followed by its body, as the server sends it; ARGV[1] is the wake channel.
echo "redis-benchmark: the scripts of a job cycle at $CONNECTIONS connections" >&2
SHA_ENQUEUE=$(load_queue_script queue_enqueue.lua)
SHA_LEASE=$(load_queue_script queue_lease.lua)
SHA_ACK=$(load_queue_script queue_ack.lua)
SHA_PUBLISH=$(load_script publish.lua)
RB_REQUESTS=$((CONNECTIONS * 3000))
rb() { local name=$1; shift; rbench "$OUT/redis-bench-$name.txt" "$CONNECTIONS" "$RB_REQUESTS" "$@"; }
ID='00000000-0000-4000-8000-__rand_int__'
# Enqueue: id, text, priority, delay, max attempts, capacity, no idempotency key.
rb enqueue EVALSHA "$SHA_ENQUEUE" 10 "${RB_QUEUE_KEYS[@]}" "rb:queue:wake" \
  "$ID" job 5 0 5 1000000000 "" "" 86400000 100000
# Lease one task (the enqueues above left RB_REQUESTS of them) with a fresh lease id.
rb lease EVALSHA "$SHA_LEASE" 10 "${RB_QUEUE_KEYS[@]}" "rb:queue:wake" 60000 "$ID"
rb ack EVALSHA "$SHA_ACK" 10 "${RB_QUEUE_KEYS[@]}" "rb:queue:wake" "$ID" "$ID"
EVENT='"type":"info","message":"Task leased: job","event":"queue.leased","taskId":"00000000-0000-4000-8000-000000000000","task":"job","priority":5,"attempt":1,"maxAttempts":5,"leaseExpiresAt":1800000000000'
rb publish EVALSHA "$SHA_PUBLISH" 2 "{rb:events}:ids" "{rb:events}" \
  "2026-01-01T00:00:00.000000000Z" 1000 "rb:events" "$EVENT"

CONDITIONS_AFTER=$(load_conditions)
python3 - "$OUT" "$CONNECTIONS" "$DURATION" "before: $CONDITIONS_BEFORE; after: $CONDITIONS_AFTER" <<'PY'
import json, os, sys
out, connections, duration, conditions = sys.argv[1:]
read = lambda name: json.load(open(os.path.join(out, name)))
rate = lambda name: float(open(os.path.join(out, f"redis-bench-{name}.txt")).read())
rows = {store: {f"{kind}{batch}": read(f"{kind}-{store}-{batch}.json")
                for kind in ("cycle", "consume") for batch in (1, 10)}
        for store in ("memory", "embedded", "redis")}
ceiling = 1 / (1 / rate("enqueue") + 1 / rate("lease") + 1 / rate("ack") + 3 / rate("publish"))
longpoll = {name: read(f"longpoll-{name}.json") for name in ("memory", "embedded", "redis-same", "redis-across")}
json.dump({"stores": rows, "redisCeiling": ceiling,
           "redisBenchmark": {n: rate(n) for n in ("enqueue", "lease", "ack", "publish")},
           "longpoll": longpoll, "conditions": conditions},
          open(os.path.join(out, "..", "jobs.json"), "w"), indent=2)
jps = lambda row: row["jobsPerSecond"]
mem = rows["memory"]
print(f"Jobs acknowledged per second, {connections} connections, {duration} s per run ({conditions}):")
print()
print("| store | cycle, one at a time | cycle, batches of 10 | batch / one | consumer, one at a time | consumer, batches of 10 | batch / one | cycle vs memory |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for store, row in rows.items():
    print(f"| {store} | {jps(row['cycle1']):.0f} | {jps(row['cycle10']):.0f} | {jps(row['cycle10']) / jps(row['cycle1']):.2f}x "
          f"| {jps(row['consume1']):.0f} | {jps(row['consume10']):.0f} | {jps(row['consume10']) / jps(row['consume1']):.2f}x "
          f"| {jps(row['cycle1']) / jps(mem['cycle1']):.0%} |")
bad = {f"{store} {kind}": run["notOk"] for store, row in rows.items() for kind, run in row.items() if run["notOk"]}
print()
print(f"Answers other than 200: {bad or 'none'}.")
dry = [f"{store} {kind}" for store, row in rows.items() for kind, run in row.items()
       if kind.startswith("consume") and run.get("shortLeases", 0)]
print()
print(f"redis-benchmark, the scripts of one cycle: enqueue {rate('enqueue'):.0f}/s, lease {rate('lease'):.0f}/s, "
      f"ack {rate('ack'):.0f}/s, event {rate('publish'):.0f}/s: at most {ceiling:.0f} cycles/s; "
      f"BackFlow on Redis does {jps(rows['redis']['cycle1']):.0f}, {jps(rows['redis']['cycle1']) / ceiling:.0%} of it.")
print()
print("Long poll: the waiting lease answered, after the enqueue was answered (negative: before) and after it was sent, in ms:")
print()
print("| where | after the answer: p50 | p99 | max | after the request: p50 | p99 | max | samples |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for name, label in (("memory", "STORE=memory, one instance"), ("embedded", "STORE=embedded, one instance"),
                    ("redis-same", "STORE=redis, one instance"), ("redis-across", "STORE=redis, lease on one instance, enqueue on the other")):
    row = longpoll[name]
    a, s = row["afterEnqueueAnswered"], row["afterEnqueueSent"]
    print(f"| {label} | {a['p50_ms']:.2f} | {a['p99_ms']:.2f} | {a['max_ms']:.2f} "
          f"| {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['max_ms']:.2f} | {row['samples']} |")
if dry:
    print()
    print(f"NOT VALID: the queue ran dry during {', '.join(dry)}; run again with a larger PREFILL.")
    sys.exit(1)
PY
