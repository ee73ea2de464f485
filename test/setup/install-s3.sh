#!/usr/bin/env bash
# Installs the S3-compatible server the storage tests start on loopback: versitygw (Apache-2.0) in
# its posix mode, built by `go install` from the Go module proxy into ~/.cache/pgforever, where it
# stays across runs. Chosen over moto and s3s-fs because it verifies checksums before accepting
# data, honours If-None-Match on PUT and multipart completion, publishes objects atomically as
# files, and is fast enough to push GiBs through (moto keeps everything in memory and accepts bad
# checksums; s3s-fs keeps an object whose checksum it has just rejected).
set -euo pipefail
version=v1.8.0
# versitygw v1.8.0's go.mod asks for Go 1.25.0; its linux-amd64 toolchain module, pinned by hash.
go_toolchain=go1.25.0
go_toolchain_sha256=891083c63e4d7a5020bdaa1911a9c5a1a966b993d9d3c1137d1727be04435e02
cache="${PGFOREVER_CACHE:-$HOME/.cache/pgforever}"
target="$cache/versitygw-$version/versitygw"
if [ -x "$target" ] && [ "$(readlink "$cache/bin/versitygw" 2>/dev/null)" = "$target" ]; then
  exit 0
fi
log() { echo "install: $*" >&2; }

# A Go 1.21 or newer downloads the toolchain versitygw needs by itself (GOTOOLCHAIN=auto). Without
# one (Debian 12 ships 1.19), fetch that toolchain from the Go module proxy, which serves it as the
# module golang.org/toolchain, exactly as the go command would.
go_minor() { "$1" env GOVERSION 2>/dev/null | sed -n 's/^go1\.\([0-9]*\).*/\1/p'; }
if command -v go >/dev/null 2>&1 && [ "$(go_minor go)" -ge 21 ] 2>/dev/null; then
  go=go
else
  go="$cache/$go_toolchain/bin/go"
  if [ ! -x "$go" ]; then
    if [ "$(uname -m)" != x86_64 ]; then
      log "no Go 1.21 or newer found: install one (https://go.dev/doc/install), then rerun"
      exit 1
    fi
    for tool in curl unzip; do
      if ! command -v "$tool" >/dev/null 2>&1; then
        [ "$(id -u)" = 0 ] || { log "missing $tool: install it, then rerun"; exit 1; }
        apt-get update -qq && apt-get install -y -qq --no-install-recommends curl ca-certificates unzip >/dev/null
      fi
    done
    log "fetching the Go $go_toolchain toolchain from the Go module proxy"
    scratch="$(mktemp -d)"
    trap 'rm -rf "$scratch"' EXIT
    curl -fsSL "https://proxy.golang.org/golang.org/toolchain/@v/v0.0.1-$go_toolchain.linux-amd64.zip" -o "$scratch/go.zip"
    echo "$go_toolchain_sha256  $scratch/go.zip" | sha256sum --check --quiet
    unzip -q "$scratch/go.zip" -d "$scratch"
    mkdir -p "$cache"
    rm -rf "${cache:?}/$go_toolchain"
    mv "$scratch/golang.org/toolchain@v0.0.1-$go_toolchain.linux-amd64" "$cache/$go_toolchain"
  fi
fi

log "building versitygw $version (go install)"
GOTOOLCHAIN=auto GOFLAGS=-modcacherw GOPATH="$cache/go" GOBIN="$cache/versitygw-$version" \
  "$go" install -trimpath -ldflags=-s "github.com/versity/versitygw/cmd/versitygw@$version" 2>&1 |
  { grep -v '^go: downloading' >&2 || true; }
mkdir -p "$cache/bin"
ln -sfn "$target" "$cache/bin/versitygw"
