#!/usr/bin/env bash
# Installs the S3-compatible server the storage tests start on loopback: moto's server mode
# (Apache-2.0) from PyPI, in a virtualenv of its own so the system Python stays untouched.
set -euo pipefail
venv="${PGFOREVER_S3_VENV:-$HOME/.cache/pgforever/moto}"
if [ -x "$venv/bin/moto_server" ]; then
  exit 0
fi
echo "install: installing moto[server] into $venv" >&2
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
