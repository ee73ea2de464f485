#!/usr/bin/env bash
# Installs what `npm run bench` needs besides the project itself, from Debian packages: PostgreSQL 15
# (server, pgbench, contrib), pgBackRest, zstd (the CLI for the physical limits) and GNU time (CPU time,
# peak memory and block reads of each measured command). Idempotent: with everything present it does
# nothing. Run as root once; the benchmark starts its servers as the unprivileged pgforever-test user,
# which it creates here.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

missing=()
[ -x /usr/lib/postgresql/15/bin/postgres ] && [ -x /usr/lib/postgresql/15/bin/pgbench ] || missing+=(postgresql-15)
command -v pgbackrest >/dev/null 2>&1 || missing+=(pgbackrest)
command -v zstd >/dev/null 2>&1 || missing+=(zstd)
[ -x /usr/bin/time ] || missing+=(time)

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "bench/setup.sh: missing Debian packages ${missing[*]}: run it as root once" >&2
    exit 1
  fi
  # The packaged "main" cluster on 5432 would only be a stray server beside the benchmark's own.
  if [[ " ${missing[*]} " == *" postgresql-15 "* ]] && [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends postgresql-common >/dev/null
    pg_conftool /etc/postgresql-common/createcluster.conf set create_main_cluster off
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null
  echo "bench/setup.sh: installed ${missing[*]}" >&2
fi

if [ "$(id -u)" = 0 ] && ! getent passwd pgforever-test >/dev/null; then
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin pgforever-test
fi
