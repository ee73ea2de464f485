#!/usr/bin/env bash
# Builds the npm packages a release publishes, as tarballs in OUTDIR:
#   @pgforever/native-<platform>, one per platform named (default: every one under npm/): the napi
#     addon linked against glibc 2.17 (cargo zigbuild), so that it loads on RHEL 8, Ubuntu 20.04 and
#     other older distributions and not only where it was built, and pgforever-archive linked
#     statically (each archive_command call then starts in about a millisecond, with no loader);
#   pgforever itself, whose package.json gains optionalDependencies on those packages. They are added
#     here and not in the checkout: until they are published, npm ci would refuse the checkout.
# Publish the platform tarballs first, then pgforever's.
#
# Each addon must compute what the checkout's own build computes (npm/addon-check.cjs), in that
# platform's Node: for another architecture, the official Node binary from npm (node-linux-<arch>)
# under qemu, after the Rust core's tests ran there too.
#
# Needs a built checkout (npm run build), cargo-zigbuild with zig (`cargo install cargo-zigbuild`,
# `pip install ziglang`), and for linux-arm64-gnu on an x86_64 host Debian's gcc-aarch64-linux-gnu
# (the static client's linker, and the C library qemu runs arm64 programs with) and qemu-user.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: npm/pack.sh OUTDIR [linux-x64-gnu|linux-arm64-gnu]..." >&2; exit 2; }
out="$(realpath -m "$1")"
shift
platforms=("$@")
if [ ${#platforms[@]} -eq 0 ]; then
  for dir in npm/*/; do platforms+=("$(basename "$dir")"); done
fi

fail() {
  echo "npm/pack.sh: $*" >&2
  exit 1
}

version="$(node -p 'require("./package.json").version')"
[ -f dist/cli-bundle/main.js ] || fail "dist/ is not built: run npm run build first"
command -v cargo-zigbuild >/dev/null 2>&1 || fail "cargo-zigbuild not found: cargo install cargo-zigbuild (and pip install ziglang for zig)"

host_addon="src/native/pgforever.linux-$(node -p process.arch)-gnu.node"
[ -f "$host_addon" ] || fail "$host_addon is not built: run npm run build first"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$out"
expected="$(node npm/addon-check.cjs "$host_addon")"

# The newest glibc symbol version an ELF file asks for (readelf reads any architecture's ELF).
newest_glibc() {
  readelf -W --dyn-syms "$1" | grep -o 'GLIBC_[0-9.]*' | sort -V | tail -n 1
}

for platform in "${platforms[@]}"; do
  case "$platform" in
    linux-x64-gnu) triple=x86_64-unknown-linux-gnu arch=x86_64 node_arch=x64 ;;
    linux-arm64-gnu) triple=aarch64-unknown-linux-gnu arch=aarch64 node_arch=arm64 ;;
    *) fail "unknown platform $platform (linux-x64-gnu or linux-arm64-gnu)" ;;
  esac
  [ "$(node -p "require('./npm/$platform/package.json').version")" = "$version" ] ||
    fail "npm/$platform/package.json has another version than package.json ($version)"
  rustup target list --installed 2>/dev/null | grep -qx "$triple" || fail "no Rust standard library for $triple: rustup target add $triple"

  client_env=()
  run_node=(node)
  if [ "$arch" != "$(uname -m)" ]; then
    command -v "$arch-linux-gnu-gcc" >/dev/null 2>&1 || fail "$arch-linux-gnu-gcc not found: apt-get install gcc-$arch-linux-gnu"
    upper="$(echo "$triple" | tr 'a-z-' 'A-Z_')"
    client_env=("CARGO_TARGET_${upper}_LINKER=$arch-linux-gnu-gcc")
    command -v "qemu-$arch" >/dev/null 2>&1 || fail "qemu-$arch not found: apt-get install qemu-user (the core's tests run on the $arch build)"
    # The addon's hot paths take other instructions on this architecture (crc-fast, zstd): test them there.
    env "${client_env[@]}" "CC_${triple//-/_}=$arch-linux-gnu-gcc" "AR_${triple//-/_}=$arch-linux-gnu-ar" \
      "CARGO_TARGET_${upper}_RUNNER=qemu-$arch -cpu max -L /usr/$arch-linux-gnu" \
      cargo test --release --quiet -p pgforever-core --target "$triple" >&2
    node_package="node-linux-$node_arch@$(node -p 'process.versions.node.split(".")[0]')"
    mkdir -p "$stage/node-$node_arch"
    (cd "$stage/node-$node_arch" && npm pack --silent "$node_package" >/dev/null && tar xzf ./*.tgz) || fail "cannot fetch $node_package from the npm registry"
    run_node=("qemu-$arch" -L "/usr/$arch-linux-gnu" "$stage/node-$node_arch/package/bin/node")
  fi

  cargo zigbuild --release --quiet -p pgforever-node --target "$triple.2.17"
  env "${client_env[@]}" cargo rustc --release --quiet -p pgforever-archive-client --bin pgforever-archive --target "$triple" -- -C target-feature=+crt-static

  addon="target/$triple/release/libpgforever_node.so"
  client="target/$triple/release/pgforever-archive"
  glibc="$(newest_glibc "$addon")"
  [ "$(printf '%s\n' "$glibc" GLIBC_2.17 | sort -V | tail -n 1)" = GLIBC_2.17 ] || fail "$addon needs $glibc, newer than glibc 2.17"
  ! readelf -l "$client" | grep -q 'Requesting program interpreter' || fail "$client is not linked statically"

  dir="$stage/$platform"
  mkdir -p "$dir"
  cp "npm/$platform/package.json" "npm/$platform/README.md" "$dir/"
  cp "$addon" "$dir/pgforever.$platform.node"
  cp "$client" "$dir/pgforever-archive"
  chmod 0755 "$dir/pgforever-archive"
  actual="$("${run_node[@]}" npm/addon-check.cjs "$dir/pgforever.$platform.node")" || fail "the $platform addon does not load in Node"
  [ "$actual" = "$expected" ] || fail "the $platform addon computes other results than $host_addon: $actual against $expected"
  npm pack --silent --pack-destination "$out" "$dir" >/dev/null
  echo "$out/pgforever-native-$platform-$version.tgz"
done

# pgforever: the files the checkout's package.json names, and that package.json with the platform
# packages as optional dependencies (npm installs the one matching the host's os, cpu and libc).
root="$stage/pgforever"
mkdir -p "$root"
npm pack --dry-run --json --ignore-scripts | node -e '
  const files = JSON.parse(require("fs").readFileSync(0, "utf8"))[0].files;
  for (const { path } of files) if (path !== "package.json") console.log(path);
' | while IFS= read -r path; do
  mkdir -p "$root/$(dirname "$path")"
  cp -p "$path" "$root/$path"
done
node -e '
  const fs = require("fs");
  const pkg = JSON.parse(fs.readFileSync("package.json", "utf8"));
  const platforms = fs.readdirSync("npm", { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort();
  pkg.optionalDependencies = Object.fromEntries(platforms.map((p) => [`@pgforever/native-${p}`, pkg.version]));
  fs.writeFileSync(process.argv[1], JSON.stringify(pkg, null, 2) + "\n");
' "$root/package.json"
npm pack --silent --ignore-scripts --pack-destination "$out" "$root" >/dev/null
echo "$out/pgforever-$version.tgz"
