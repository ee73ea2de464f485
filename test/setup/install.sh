#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine. Idempotent: a second run
# finds everything present and returns quickly.
set -euo pipefail
cd "$(dirname "$0")/../.."

need_apt=()
command -v /usr/lib/postgresql/15/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql-15 postgresql-contrib-15)
command -v pg_waldump >/dev/null 2>&1 || [ -x /usr/lib/postgresql/15/bin/pg_waldump ] || need_apt+=(postgresql-15)
if [ "${#need_apt[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "missing Debian packages: ${need_apt[*]} (run this script as root once, or install them)" >&2
    exit 1
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust (rustup) first" >&2
  exit 1
fi

bash test/setup/install-s3.sh

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run --silent build
