#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian 12 machine (run as root there; CI runs
# it unattended). Idempotent: a second run finds everything present and only rebuilds incrementally.
set -euo pipefail
cd "$(dirname "$0")/../.."
export DEBIAN_FRONTEND=noninteractive
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  PATH="$HOME/.cargo/bin:$PATH"
fi

log() { echo "install: $*" >&2; }

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    log "missing Debian packages: $* (run test/setup/install.sh as root once, or install them)"
    exit 1
  fi
  if [ -z "${apt_updated:-}" ]; then
    apt-get update -qq
    apt_updated=1
  fi
  apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" >/dev/null
}

# PostgreSQL 15 from Debian: the server, contrib (amcheck; Debian's postgresql-15 provides
# postgresql-contrib-15) and the reference tools (pg_waldump, pg_verifybackup, pg_checksums, pgbench).
# Tests start their own clusters; the packaged "main" cluster on 5432 would only be a stray server,
# so postgresql-common is told not to create it.
pg15=/usr/lib/postgresql/15
if [ ! -x "$pg15/bin/postgres" ] || [ ! -x "$pg15/bin/pg_waldump" ] || [ ! -e "$pg15/lib/amcheck.so" ]; then
  log "installing Debian postgresql-15"
  [ -e /etc/postgresql-common/createcluster.conf ] || apt_install postgresql-common
  pg_conftool /etc/postgresql-common/createcluster.conf set create_main_cluster off
  apt_install postgresql-15
fi

# The build links C code (zstd) into the Rust addon.
command -v cc >/dev/null 2>&1 || apt_install gcc libc6-dev

if ! command -v cargo >/dev/null 2>&1; then
  log "cargo not found: install Rust (rustup) first"
  exit 1
fi
# npm/pack.sh, which a test runs as a release would: zig links the addon against glibc 2.17.
if ! python3 -m ziglang version >/dev/null 2>&1; then
  log "installing zig (PyPI ziglang)"
  python3 -m pip install --quiet --disable-pip-version-check ziglang==0.17.1
fi
if ! command -v cargo-zigbuild >/dev/null 2>&1; then
  log "installing cargo-zigbuild"
  cargo install --quiet --locked cargo-zigbuild@0.24.1
fi
if ! command -v node >/dev/null 2>&1 || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  log "Node.js 20 or newer is required"
  exit 1
fi

# initdb and postgres refuse root: as root, test servers run as pgforever-test (test/support/os-user.ts).
# They execute binaries from node_modules, and archive/restore commands from this checkout, so every
# directory above the checkout must be searchable by that user.
if [ "$(id -u)" = 0 ]; then
  getent passwd pgforever-test >/dev/null ||
    useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin pgforever-test
  dirs=()
  dir="$PWD"
  while [ "$dir" != / ]; do
    dirs=("$dir" "${dirs[@]}")
    dir="$(dirname "$dir")"
  done
  for dir in "${dirs[@]}"; do
    if ! setpriv --reuid=pgforever-test --regid=pgforever-test --clear-groups test -x "$dir"; then
      log "letting pgforever-test search $dir (chmod o+x)"
      chmod o+x "$dir"
    fi
  done
fi

bash test/setup/install-s3.sh

# npm ci on a fresh clone; where node_modules exists but lags package-lock.json (a pull brought new
# packages), an in-place npm install, so that nothing running from node_modules loses it.
node_modules_current() {
  [ -f node_modules/.package-lock.json ] && node -e '
    const wanted = require("./package-lock.json").packages;
    const present = require("./node_modules/.package-lock.json").packages;
    for (const [path, pkg] of Object.entries(wanted)) {
      if (path === "" || pkg.optional || pkg.peer) continue;
      if (present[path]?.version !== pkg.version) process.exit(1);
    }'
}
if [ ! -d node_modules ]; then
  npm ci --no-audit --no-fund
elif ! node_modules_current; then
  npm install --no-audit --no-fund
fi
npm run --silent build
