#!/usr/bin/env bash
# Runs BackFlow as one server made of several instances on this machine: Redis, N instances
# (default 2) sharing it, and nginx in front of them, configured from
# deploy/nginx.conf.template. Prints the URL and what to try; Ctrl-C stops everything.
#
#   scripts/cluster.sh [N]
#
# Environment: PORT (nginx's port, default 8080), STORE (default redis; `memory` gives each
# instance its own state), JWT_SECRET (shared by the instances; generated for this run when
# unset), REDIS_PREFIX (default backflow), RUST_LOG (default backflow=info), and any other
# BackFlow setting, which every instance inherits.
# Installs redis-server and nginx with apt-get when they are missing (as root).
set -euo pipefail
cd "$(dirname "$0")/.."

instances=${1:-2}
if ! [[ $instances =~ ^[1-9][0-9]?$ ]]; then
  echo "usage: $0 [N]   (N instances, 1..99, default 2)" >&2
  exit 2
fi
port=${PORT:-8080}
store=${STORE:-redis}
prefix=${REDIS_PREFIX:-backflow}

# --- programs -------------------------------------------------------------------------------
find_program() {
  command -v "$1" 2>/dev/null || { [[ -x /usr/sbin/$1 ]] && echo "/usr/sbin/$1"; } || true
}
missing=()
[[ -n $(find_program redis-server) ]] || missing+=(redis-server)
[[ -n $(find_program nginx) ]] || missing+=(nginx)
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing: ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "== installing ${missing[*]}"
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
redis_server=$(find_program redis-server)
nginx=$(find_program nginx)

echo "== building the release binary"
cargo build --release --locked --bin backflow
backflow=$PWD/target/release/backflow

# --- everything this run starts, stopped on exit ---------------------------------------------
run_dir=$(mktemp -d -t backflow-cluster.XXXXXX)
# nginx's workers run as an unprivileged user when nginx is started as root.
chmod 755 "$run_dir"
pids=()
stop_all() {
  trap - EXIT INT TERM
  echo
  echo "== stopping"
  # In reverse order of start, each waited for: nginx first (no new requests), then the
  # instances (they drain, and may still need Redis to close), then Redis.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  echo "logs were in $run_dir"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# A loopback port nothing listens on (each process is started before the next port is picked).
free_port() {
  local candidate
  for _ in $(seq 50); do
    candidate=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "no free port found" >&2
  return 1
}

# Waits until something accepts connections on 127.0.0.1:$1 while process $2 lives.
wait_for_port() {
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    if ! kill -0 "$2" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  return 1
}

# --- Redis ----------------------------------------------------------------------------------
redis_port=$(free_port)
mkdir -p "$run_dir/redis"
"$redis_server" --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly yes \
  --appendfsync everysec --dir "$run_dir/redis" --logfile "$run_dir/redis.log" \
  --daemonize no &
pids+=($!)
wait_for_port "$redis_port" "${pids[-1]}" || { echo "redis-server did not start:" >&2; cat "$run_dir/redis.log" >&2; exit 1; }
redis_url=redis://127.0.0.1:$redis_port
echo "== redis on $redis_url (append-only file in $run_dir/redis)"

# --- instances ------------------------------------------------------------------------------
export JWT_SECRET=${JWT_SECRET:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}
upstreams=""
for ((i = 1; i <= instances; i++)); do
  instance_port=$(free_port)
  HOST=127.0.0.1 PORT=$instance_port STORE=$store REDIS_URL=$redis_url REDIS_PREFIX=$prefix \
    TRUSTED_PROXIES=127.0.0.1/32 DATA_DIR="$run_dir/data-$i" RUST_LOG=${RUST_LOG:-backflow=info} \
    "$backflow" >"$run_dir/backflow-$i.log" 2>&1 &
  pids+=($!)
  if ! wait_for_port "$instance_port" "${pids[-1]}"; then
    echo "instance $i did not start:" >&2
    tail -5 "$run_dir/backflow-$i.log" >&2
    exit 1
  fi
  upstreams+="server 127.0.0.1:$instance_port; "
  echo "== instance $i on 127.0.0.1:$instance_port (log: $run_dir/backflow-$i.log)"
done

# --- nginx ----------------------------------------------------------------------------------
config=$(<deploy/nginx.conf.template)
config=${config//'${BACKFLOW_LISTEN_PORT}'/"$port"}
config=${config//'${BACKFLOW_UPSTREAMS}'/"$upstreams"}
config=${config//'${BACKFLOW_NGINX_RUN_DIR}'/"$run_dir"}
config=${config//'${BACKFLOW_NGINX_LOG_DIR}'/"$run_dir"}
if [[ $config == *'${'* ]]; then
  echo "deploy/nginx.conf.template has a placeholder this script does not fill" >&2
  exit 1
fi
printf '%s\n' "$config" >"$run_dir/nginx.conf"
"$nginx" -p "$run_dir/" -c "$run_dir/nginx.conf" -e "$run_dir/error.log" -g 'daemon off;' &
pids+=($!)
wait_for_port "$port" "${pids[-1]}" || { echo "nginx did not start:" >&2; cat "$run_dir/error.log" >&2; exit 1; }

url=http://127.0.0.1:$port
cat <<EOF

BackFlow: $instances instances (STORE=$store) behind nginx at $url
logs: $run_dir (nginx: access.log, error.log)

Try:
  curl -s $url/health
  curl -N $url/notifications    # Server-Sent Events through nginx (Ctrl-C ends it)
  TOKEN=\$(curl -s -X POST $url/login -H 'Content-Type: application/json' \\
    -d '{"username":"admin","password":"admin123"}' | sed 's/.*"token":"\\([^"]*\\)".*/\\1/')
  curl -s $url/protected -H "Authorization: Bearer \$TOKEN"
  curl -s -X POST $url/logout -H "Authorization: Bearer \$TOKEN"
  curl -s -X POST $url/enqueue -H 'Content-Type: application/json' -d '{"task":"a","priority":1}'
  curl -s $url/dequeue
  grep -o 'upstream=[^ ]*' $run_dir/access.log | sort | uniq -c   # requests per instance

Ctrl-C stops nginx, the instances and Redis.
EOF

# Runs until Ctrl-C, or until one of the processes exits. Ctrl-C reaches the processes too,
# which may stop before this shell runs its trap: give the trap a moment to say so first.
wait -n "${pids[@]}" || true
sleep 0.5
echo "a process of the cluster exited; see the logs in $run_dir" >&2
exit 1
