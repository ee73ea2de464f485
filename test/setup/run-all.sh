#!/usr/bin/env bash
# The whole test suite: install what is missing, build, then Rust checks and tests and the TypeScript
# suite (unit and integration; integration tests start their own PostgreSQL and S3 servers).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  PATH="$HOME/.cargo/bin:$PATH"
fi
bash test/setup/install.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --quiet
npx tsc --noEmit -p tsconfig.json
# The release packages for this host, built here rather than inside the parallel test run (the zig
# build of the addon takes a core for about a minute); test/e2e/npm-install builds them again, from cache.
bash npm/pack.sh .tmp/packages "linux-$(node -p process.arch)-gnu" >/dev/null
npx vitest run
