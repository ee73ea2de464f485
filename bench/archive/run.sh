#!/usr/bin/env bash
# WAL archiving benchmark (issue 5), on PostgreSQL 15 with 16 MiB segments:
# - archive drain: let SEGMENTS (default 100) segments pile up while archive_command fails, switch
#   archive_command, time until pg_stat_archiver has counted them all archived. For /bin/true, for
#   `zstd -1` into a directory, for the command `pgforever archive-command` prints (the
#   pgforever-archive client and its daemon) and for the plain Node CLI (`pgforever archive-push`).
#   WORKLOAD=pgbench (default): the WAL of `pgbench -i` (COPY, index builds: compresses about 10x);
#   WORKLOAD=md5: INSERTs of md5 text (compresses about 3x, so compression costs more).
# - archive-get: the printed restore_command called once per segment, serially, as recovery does,
#   over the segments just archived (the client and its prefetching daemon, then the Node CLI).
# - stored size of idle segments: the segments closed by archive_timeout on an idle cluster,
#   simulated by IDLE (default 10) pg_switch_wal() calls: stored object size, and zstd of the whole
#   segment at the same level for comparison (what storing it without trimming would cost).
# Uses `sleep` only to poll the archiver with a deadline; timings come from the server's clock.
#   bash bench/archive/run.sh
#   SEGMENTS=200 IDLE=20 bash bench/archive/run.sh
# Prints markdown. Run as root (PostgreSQL runs as pgforever-test) or as an unprivileged user.
set -euo pipefail
cd "$(dirname "$0")/../.."
segments=${SEGMENTS:-100}
workload=${WORKLOAD:-pgbench}
idle=${IDLE:-10}
bin=/usr/lib/postgresql/15/bin
os_user=pgforever-test
checkout=$PWD
node=$(command -v node)

work=$(mktemp -d /tmp/pgforever-bench-archive.XXXXXX)
pgdata=$work/data
as_server() { if [ "$(id -u)" = 0 ]; then runuser -u "$os_user" -- "$@"; else "$@"; fi; }
cleanup() {
  as_server "$bin/pg_ctl" -D "$pgdata" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
if [ "$(id -u)" = 0 ]; then
  id "$os_user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$os_user"
  chown "$os_user" "$work"
  chmod 755 "$work"
fi

npm run --silent build >/dev/null

as_server "$bin/initdb" -D "$pgdata" -A trust -U postgres --no-sync >/dev/null
# Unix socket in the private temp dir only: no TCP port to collide with. archive_command is set with
# ALTER SYSTEM, which a command-line setting would override.
as_server "$bin/pg_ctl" -D "$pgdata" -l "$work/server.log" -w -o "-c listen_addresses='' -k $work \
  -c wal_level=replica -c archive_mode=on -c max_wal_size=16GB \
  -c checkpoint_timeout=1h -c wal_keep_size=2GB" start >/dev/null
psql() { as_server "$bin/psql" -X -q -A -t -h "$work" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
export PGHOST=$work PGUSER=postgres PGDATABASE=postgres

repo=$work/repo
as_server mkdir "$repo" "$work/zstd"
as_server "$node" bin/pgforever.js init --repo "$repo" --log-level warn >/dev/null
printed=$("$node" bin/pgforever.js archive-command --json --repo "$repo" | "$node" -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(0, "utf8")).archive_command)')
restore=$("$node" bin/pgforever.js archive-command --json --repo "$repo" | "$node" -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(0, "utf8")).restore_command)')
node_push="$node $checkout/bin/pgforever.js archive-push --repo $repo \"%p\""
node_get="$node $checkout/bin/pgforever.js archive-get --repo $repo %f \"%p\""

ready() { find "$pgdata/pg_wal/archive_status" -name '*.ready' | wc -l; }
set_command() {
  psql -c "ALTER SYSTEM SET archive_command = '${1//\'/\'\'}'" >/dev/null
}

# Fills the backlog while archiving fails, then prints its size.
backlog() {
  set_command /bin/false
  psql -c "SELECT pg_reload_conf()" >/dev/null
  psql -c "CREATE TABLE IF NOT EXISTS filler (g int, h text)" >/dev/null
  while [ "$(ready)" -lt "$segments" ]; do
    if [ "$workload" = md5 ]; then
      psql -c "INSERT INTO filler SELECT g, md5(g::text) FROM generate_series(1, 400000) g" >/dev/null
    else
      as_server "$bin/pgbench" -h "$work" -U postgres -i -q -s 10 postgres >/dev/null 2>&1
    fi
  done
  psql -c "SELECT pg_switch_wal()" >/dev/null
  ready
}

# Switches archive_command and waits (in the server, polling every 10 ms) until `count` more files
# are archived; prints the seconds taken.
drain() {
  local command=$1 count=$2
  set_command "$command"
  psql <<SQL | tail -1
DO \$\$
DECLARE
  start bigint;
  now_archived bigint;
  t0 timestamptz;
BEGIN
  SELECT archived_count INTO start FROM pg_stat_archiver;
  t0 := clock_timestamp();
  PERFORM pg_reload_conf();
  LOOP
    PERFORM pg_stat_clear_snapshot();
    SELECT archived_count INTO now_archived FROM pg_stat_archiver;
    EXIT WHEN now_archived >= start + $count;
    IF clock_timestamp() - t0 > interval '30 minutes' THEN
      RAISE EXCEPTION 'the backlog was not drained in 30 minutes (% of $count)', now_archived - start;
    END IF;
    PERFORM pg_sleep(0.01);
  END LOOP;
  RAISE NOTICE '%', round(extract(epoch FROM clock_timestamp() - t0)::numeric, 3);
END
\$\$;
SQL
}

row() { # label command
  local n secs
  n=$(backlog)
  # Dirty pages of the previous row (zstd output, say) would otherwise be flushed by this row's fsyncs.
  sync
  secs=$(drain "$2" "$n" 2>&1 | sed -n 's/^.*NOTICE: *//p')
  printf '| %s | %s | %s | %.1f |\n' "$1" "$n" "$secs" "$(echo "$n / $secs" | bc -l)"
}

echo "## archive drain: PostgreSQL 15, 16 MiB segments, workload $workload, $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo
echo "| archive_command | segments | seconds | segments/s |"
echo "|---|---|---|---|"
row '`/bin/true`' /bin/true
row '`zstd -1` into a directory' "zstd -1 -q -f %p -o $work/zstd/%f.zst"
row 'what `pgforever archive-command` prints (pgforever-archive + daemon)' "$printed"
row '`pgforever archive-push` (Node CLI, no client)' "$node_push"
echo
stored=$(du -sb "$repo/wal" | cut -f1)
raw=$(find "$repo/wal" -name '*.zst' | wc -l)
echo "repository: $raw WAL objects, $((stored / 1048576)) MiB stored for $((raw * 16)) MiB of WAL"
echo

# archive-get, serially, as recovery asks: the first `segments` archived segments.
names=$(find "$repo/wal/00000001" -name '*.zst' -printf '%f\n' | sed 's/\.zst$//' | grep -E '^[0-9A-F]{24}$' | sort | sed -n "1,${segments}p")
count=$(echo "$names" | wc -l)
get_loop() { # directory restore_command
  as_server mkdir -p "$1/pg_wal/archive_status"
  as_server bash -c '
    cd "$1"; command=$2; shift 2
    start=$(date +%s.%N)
    for name in "$@"; do
      line=${command//%f/$name}; line=${line//%p/pg_wal/RECOVERYXLOG}
      sh -c "$line" || { echo "restore_command failed for $name" >&2; exit 1; }
      rm pg_wal/RECOVERYXLOG
    done
    echo "$(date +%s.%N) - $start" | bc -l' _ "$1" "$2" $names
}
echo "## archive-get: restore_command called serially for $count archived segments"
echo
echo "| restore_command | seconds | segments/s |"
echo "|---|---|---|"
secs=$(get_loop "$work/get-client" "$restore")
printf '| what `pgforever archive-command` prints (client + prefetching daemon) | %.2f | %.1f |\n' "$secs" "$(echo "$count / $secs" | bc -l)"
secs=$(get_loop "$work/get-node" "$node_get")
printf '| `pgforever archive-get` (Node CLI, prefetching into the spool) | %.2f | %.1f |\n' "$secs" "$(echo "$count / $secs" | bc -l)"
echo

# Idle segments: a little WAL, then a switch, as archive_timeout does on an idle cluster.
set_command "$printed"
psql -c "SELECT pg_reload_conf()" >/dev/null
before=$(psql -c "SELECT archived_count FROM pg_stat_archiver")
for _ in $(seq "$idle"); do
  psql -c "SELECT txid_current(); CHECKPOINT; SELECT pg_switch_wal()" >/dev/null
done
for _ in $(seq 600); do
  [ "$(psql -c "SELECT archived_count FROM pg_stat_archiver")" -ge $((before + idle)) ] && break
  sleep 0.1
done
last=$(psql -c "SELECT last_archived_wal FROM pg_stat_archiver")
idle_names=$(find "$repo/wal/00000001" -name '*.zst' -printf '%f\n' | sed 's/\.zst$//' | sort | tail -n "$idle")
trimmed=0 whole=0
for name in $idle_names; do
  trimmed=$((trimmed + $(stat -c %s "$repo/wal/00000001/$name.zst")))
  whole=$((whole + $(zstd -1 -q -c "$pgdata/pg_wal/$name" | wc -c)))
done
echo "## idle segments (archive_timeout): $idle segments closed by pg_switch_wal after a checkpoint, last $last"
echo
echo "| stored as | bytes per segment |"
echo "|---|---|"
echo "| pgforever object (trailing zeros trimmed, zstd level 1) | $((trimmed / idle)) |"
echo "| zstd -1 of the whole 16 MiB segment (no trimming) | $((whole / idle)) |"
