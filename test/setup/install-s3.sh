#!/usr/bin/env bash
# Installs the S3-compatible server the storage tests start on loopback (see test/support).
set -euo pipefail
