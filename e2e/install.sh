#!/usr/bin/env bash
# Installs what the browser test needs and a fresh machine lacks: Debian's Chromium (only when
# /usr/bin/chromium is missing; no browser build is ever downloaded) and the pinned node packages
# of e2e/ from package-lock.json.
set -euo pipefail
cd "$(dirname "$0")"

if [[ ! -x /usr/bin/chromium ]]; then
  echo "== e2e: installing Debian's chromium"
  sudo=""
  [[ "$(id -u)" -eq 0 ]] || sudo="sudo"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y chromium
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "e2e: node (>= 20) and npm are required" >&2
  exit 1
fi
echo "== e2e: npm ci"
npm ci --no-audit --no-fund
