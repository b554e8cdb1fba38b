#!/usr/bin/env bash
# Builds a statically linked `pixelquery` for x86_64 or aarch64 Linux, checks that it is
# static, and runs a smoke test with it (under qemu-aarch64-static for aarch64).
#
#   scripts/build-static.sh [x86_64|aarch64]     (default: x86_64)
#
# x86_64 uses the pinned rustup toolchain. aarch64 uses Debian's rustc-web/cargo-web (the
# only route to an aarch64 standard library on these machines: rustup offers no other
# target here), gcc-aarch64-linux-gnu as the linker and qemu-user-static to run the result.
# Missing Debian packages are installed (needs root and apt).
set -euo pipefail
arch="${1:-x86_64}"
cd "$(dirname "$0")/.."
root="$(pwd)"

need_packages() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

case "$arch" in
  x86_64)
    target=x86_64-unknown-linux-gnu
    need_packages file
    RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target "$target"
    run=()
    ;;
  aarch64)
    target=aarch64-unknown-linux-gnu
    dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
    need_packages file rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu \
      libc6-dev-arm64-cross qemu-user-static
    # Debian's toolchain lives in /usr/bin; bypass the rustup shims (and rust-toolchain.toml).
    env RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc \
      CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
      RUSTFLAGS='-C target-feature=+crt-static' \
      CARGO_TARGET_DIR="$root/target" \
      /usr/bin/cargo build --release --locked --target "$target"
    run=(qemu-aarch64-static)
    ;;
  *)
    echo "usage: $0 [x86_64|aarch64]" >&2
    exit 2
    ;;
esac

bin="target/$target/release/pixelquery"
echo "== $bin"
file "$bin"
file "$bin" | grep -Eq 'statically linked|static-pie linked' || { echo "FAIL: not statically linked" >&2; exit 1; }
# ldd prints "statically linked" / "not a dynamic executable" for static binaries, and
# "lib... => path" lines for every shared library a dynamic one needs.
if ldd "$bin" 2>&1 | grep -q '=>'; then
  echo "FAIL: ldd finds dynamic dependencies" >&2
  ldd "$bin" >&2
  exit 1
fi
echo "ldd: $(ldd "$bin" 2>&1 | head -1 | tr -d '\t')"
echo "size: $(stat -c %s "$bin") bytes"

echo "== smoke test"
pq() { "${run[@]}" "$bin" "$@"; }
pq --version
hash=$(pq inspect fixtures/cog/u16_deflate_pred2_tiled16_pixel.tif --json --pixel-hash | grep -o '"pixels_sha256_16": "[0-9a-f]*"')
[ "$hash" = '"pixels_sha256_16": "ed5f4f041d4b0d63"' ] || { echo "FAIL: fixture hash $hash" >&2; exit 1; }
corpus="$root/../shared/corpus"
if [ -f "$corpus/MANIFEST.tsv" ]; then
  for f in ts/S2L_T52_20230611_10m.tif variants/s2_32652_zstd_pred2.tif variants/dem_4326_float32_pred3.tif; do
    want=$(awk -F'\t' -v p="$f" '$1==p {print $19}' "$corpus/MANIFEST.tsv")
    got=$(pq inspect "$corpus/$f" --json --pixel-hash | sed -n 's/.*"pixels_sha256_16": "\([0-9a-f]*\)".*/\1/p')
    [ "$got" = "$want" ] || { echo "FAIL: $f hash $got, GDAL says $want" >&2; exit 1; }
    echo "ok   $f $got"
  done
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
pq demo "$work/demo" > "$work/demo.txt"
grep -q "8 scenes ingested" "$work/demo.txt" || { cat "$work/demo.txt"; echo "FAIL: demo" >&2; exit 1; }
# The demo's NDVI table, minus the timing line, is the cross-architecture reference.
grep -E '^20[0-9]{2}-' "$work/demo.txt" > "target/demo-ndvi-$arch.txt"
echo "ok   demo ($(wc -l < "target/demo-ndvi-$arch.txt") dates)"
if [ -f "$corpus/MANIFEST.tsv" ]; then
  pq ingest "$work/wh" "$corpus/ts/S2L_T52_20230611_10m.tif" "$corpus/ts/S2L_T52_20230716_10m.tif" \
    "$corpus/ts/S2L_T52_20230820_10m.tif" --product sentinel2_l2a --memory-budget 16 > /dev/null
  pq query "$work/wh" --point 127.9407,36.4548 --index ndvi > "target/smoke-query-$arch.txt"
  echo "ok   ingest + query: $(tr '\n' ' ' < "target/smoke-query-$arch.txt" | cut -c1-120)"
fi
for other in x86_64 aarch64; do
  if [ "$other" != "$arch" ] && [ -f "target/demo-ndvi-$other.txt" ]; then
    cmp -s "target/demo-ndvi-$other.txt" "target/demo-ndvi-$arch.txt" && echo "ok   demo output identical to $other" \
      || { echo "FAIL: demo output differs from $other" >&2; exit 1; }
    if [ -f "target/smoke-query-$other.txt" ]; then
      cmp -s "target/smoke-query-$other.txt" "target/smoke-query-$arch.txt" && echo "ok   query output identical to $other" \
        || { echo "FAIL: query output differs from $other" >&2; exit 1; }
    fi
  fi
done
echo "PASS: static $arch binary"
