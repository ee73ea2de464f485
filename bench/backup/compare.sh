#!/usr/bin/env bash
# Full and incremental backups, pgforever next to pgBackRest (Debian's 2.45) on the same cluster in
# the same run: pgbench at SCALE, then 60 s of a ~1% hot-set workload (updates to a small key range
# plus appends), then an incremental from each tool. pgBackRest with its best settings: zstd,
# process-max 2 like ours; repo1 file-level incremental, repo2 block incremental (bundle + block,
# beta on 2.45). Prints a Markdown table. Run as root after `npm run build`:
#   SCALE=50 SECONDS_HOT=60 bash bench/backup/compare.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
SCALE="${SCALE:-50}"
HOT="${SECONDS_HOT:-60}"
USER_NAME=pgforever-test
BIN=/usr/lib/postgresql/15/bin
command -v pgbackrest >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pgbackrest >/dev/null; }

WORK=$(mktemp -d /tmp/pgf-bench-backup-XXXX)
chmod 755 "$WORK"
PGDATA="$WORK/data"; SOCK="$WORK/sock"; PGF_REPO="$WORK/pgforever"; BR_REPO1="$WORK/pgbackrest1"; BR_REPO2="$WORK/pgbackrest2"
mkdir -p "$SOCK" "$PGF_REPO" "$BR_REPO1" "$BR_REPO2" "$WORK/spool" "$WORK/log"
chown -R "$USER_NAME:$USER_NAME" "$WORK"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
AS_USER=(runuser -u "$USER_NAME" -- env PGHOST="$SOCK" PGPORT="$PORT" PGUSER=postgres PGDATABASE=postgres)
as_user() { "${AS_USER[@]}" "$@"; }
trap 'as_user "$BIN/pg_ctl" -D "$PGDATA" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

cat > "$WORK/pgbackrest.conf" <<CONF
[global]
repo1-path=$BR_REPO1
repo1-retention-full=99
repo2-path=$BR_REPO2
repo2-retention-full=99
repo2-bundle=y
repo2-block=y
beta=y
compress-type=zst
process-max=2
start-fast=y
log-level-console=warn
log-path=$WORK/log
lock-path=$WORK/log
spool-path=$WORK/spool
[bench]
pg1-path=$PGDATA
pg1-socket-path=$SOCK
pg1-port=$PORT
pg1-user=postgres
CONF
chown "$USER_NAME:$USER_NAME" "$WORK/pgbackrest.conf"
BR="pgbackrest --config=$WORK/pgbackrest.conf --stanza=bench"

as_user "$BIN/initdb" -D "$PGDATA" -U postgres --data-checksums --auth=trust -E UTF8 --locale=C >/dev/null
PGF_ARCHIVE=$(node bin/pgforever.js archive-command --json --repo "$PGF_REPO" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).archive_command))')
cat >> "$PGDATA/postgresql.conf" <<CONF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$SOCK'
wal_level = replica
archive_mode = on
archive_command = '${PGF_ARCHIVE//\'/\'\'} && $BR archive-push %p'
max_wal_size = 4GB
CONF
as_user "$BIN/pg_ctl" -D "$PGDATA" -l "$WORK/log/server.log" -w start >/dev/null
as_user "$BIN/pgbench" -i -q -s "$SCALE" >/dev/null 2>&1
as_user node bin/pgforever.js init --repo "$PGF_REPO" --log-level warn >/dev/null
as_user $BR stanza-create >/dev/null

# measure NAME CMD...: wall seconds, CPU seconds, peak RSS (MiB) and bytes read from disk.
measure() {
  local name=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" "$@" > "$WORK/out-$name" 2>"$WORK/err-$name" || { cat "$WORK/err-$name" >&2; exit 1; }
  read -r wall user sys rss < "$WORK/time"
  printf '%s %s %s %s\n' "$wall" "$(echo "$user + $sys" | bc)" "$((rss / 1024))" > "$WORK/m-$name"
}
du_bytes() { du -sb "$1" | cut -f1; }

# Each tool starts from a clean checkpoint, so neither pays for flushing what pgbench -i left dirty.
as_user "$BIN/psql" -qc CHECKPOINT >/dev/null
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
measure pgf-full "${AS_USER[@]}" node bin/pgforever.js backup --repo "$PGF_REPO" --pgdata "$PGDATA" --json --log-level warn
PGF_AFTER_FULL=$(du_bytes "$PGF_REPO/packs")
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
measure br1-full "${AS_USER[@]}" $BR --repo=1 --type=full backup
BR1_AFTER_FULL=$(du_bytes "$BR_REPO1/backup")
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
measure br2-full "${AS_USER[@]}" $BR --repo=2 --type=full backup
BR2_AFTER_FULL=$(du_bytes "$BR_REPO2/backup")

# ~1% hot set: updates to the first 1% of accounts plus appends to history.
ROWS=$((SCALE * 100000)); HOTSET=$((ROWS / 100))
cat > "$WORK/hot.sql" <<SQL
\set aid random(1, $HOTSET)
\set delta random(-5000, 5000)
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, :aid, :delta, CURRENT_TIMESTAMP);
SQL
chown "$USER_NAME:$USER_NAME" "$WORK/hot.sql"
as_user "$BIN/pgbench" -n -c 2 -T "$HOT" -f "$WORK/hot.sql" >/dev/null 2>&1
as_user "$BIN/psql" -qc CHECKPOINT >/dev/null

sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
measure pgf-incr "${AS_USER[@]}" node bin/pgforever.js backup --repo "$PGF_REPO" --pgdata "$PGDATA" --json --log-level warn
PGF_INCR=$(( $(du_bytes "$PGF_REPO/packs") - PGF_AFTER_FULL ))
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
measure br1-incr "${AS_USER[@]}" $BR --repo=1 --type=incr backup
BR1_INCR=$(( $(du_bytes "$BR_REPO1/backup") - BR1_AFTER_FULL ))
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
measure br2-incr "${AS_USER[@]}" $BR --repo=2 --type=incr backup
BR2_INCR=$(( $(du_bytes "$BR_REPO2/backup") - BR2_AFTER_FULL ))

mb() { echo "scale=1; $1 / 1000000" | bc; }
row() { # name label stored
  read -r wall cpu rss < "$WORK/m-$1"
  printf '| %s | %s s | %s s | %s MiB | %s MB |\n' "$2" "$wall" "$cpu" "$rss" "$(mb "$3")"
}
echo "SCALE=$SCALE, hot set ${HOT}s on $HOTSET of $ROWS accounts; $(nproc) vCPU; pgBackRest $(pgbackrest version | cut -d' ' -f2); $(git rev-parse --short HEAD)"
echo
echo '| backup | wall | CPU | peak RSS | stored |'
echo '|---|---|---|---|---|'
row pgf-full 'pgforever full' "$PGF_AFTER_FULL"
row br1-full 'pgBackRest full (repo1)' "$BR1_AFTER_FULL"
row br2-full 'pgBackRest full, bundle+block (repo2)' "$BR2_AFTER_FULL"
row pgf-incr "pgforever incremental ($(node -e 'const s=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));console.log(s.detection)' "$WORK/out-pgf-incr"))" "$PGF_INCR"
row br1-incr 'pgBackRest incr, file level' "$BR1_INCR"
row br2-incr 'pgBackRest incr, block (bundle+block)' "$BR2_INCR"
