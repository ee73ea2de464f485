#!/usr/bin/env bash
# Native core benchmark (issue 2): builds a pgbench cluster (PostgreSQL 15, data checksums) in a temp
# directory, then measures per-core throughput of the hot paths on its relation files, in Rust
# (crates/core/benches/core.rs) and through napi (bench/core/napi.mjs). Prints markdown tables.
#   bash bench/core/run.sh            # scale 50 (about 750 MB of relation files)
#   SCALE=10 bash bench/core/run.sh
# Run as root to measure cold reads (it drops the page cache) and to run PostgreSQL as pgforever-test.
set -euo pipefail
cd "$(dirname "$0")/../.."
scale=${SCALE:-50}
bin=/usr/lib/postgresql/15/bin
os_user=pgforever-test

work=$(mktemp -d /tmp/pgforever-bench-core.XXXXXX)
as_server() { if [ "$(id -u)" = 0 ]; then runuser -u "$os_user" -- "$@"; else "$@"; fi; }
cleanup() {
  as_server "$bin/pg_ctl" -D "$work/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
if [ "$(id -u)" = 0 ]; then
  id "$os_user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$os_user"
  chown "$os_user" "$work"
fi

as_server "$bin/initdb" -D "$work/data" --data-checksums -A trust -U postgres >/dev/null
# Unix socket in the private temp dir only: no TCP port to collide with.
as_server "$bin/pg_ctl" -D "$work/data" -l "$work/server.log" -w \
  -o "-c listen_addresses='' -k $work -c max_wal_size=4GB" start >/dev/null
as_server "$bin/pgbench" -h "$work" -U postgres -i -q -s "$scale" postgres 2>&1 | tail -1
as_server "$bin/pg_ctl" -D "$work/data" -m fast -w stop >/dev/null

echo "## cluster: pgbench -i -s $scale, PostgreSQL 15, data checksums; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo
cargo bench --quiet -p pgforever-core --bench core -- "$work/data"
echo
npm run --silent build:native >/dev/null 2>&1
npm run --silent build:ts >/dev/null 2>&1 || true # others' type errors must not stop the bench; tsc still emits
node bench/core/napi.mjs "$work/data"
