#!/usr/bin/env bash
# Builds the Python package's abi3 wheels (CPython >= 3.9) for manylinux x86_64 and aarch64,
# checks their platform tags and the libraries the extension needs, and runs the Python
# tests with the x86_64 wheel installed in a fresh virtual environment without Rust on PATH.
#
#   scripts/build-wheels.sh [x86_64] [aarch64]      (default: both)
#
# Wheels: dist/. Report (also printed): target/wheels/report.txt.
# Tools (scripts/wheel-tools.txt) go into a virtual environment, target/wheel-tools.
# x86_64 builds with the pinned rustup toolchain; aarch64 with Debian's rustc-web/cargo-web
# and its arm64 standard library (libstd-rust-web-dev:arm64), as scripts/build-static.sh
# does. Both link with zig (maturin --zig) against glibc 2.17's symbols: manylinux2014.
#
# The tests compare the package with the `pixelquery` command: PIXELQUERY_BIN (default: the
# static musl binary of scripts/build-static.sh, else target/release/pixelquery).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
arches=("$@")
[ ${#arches[@]} -gt 0 ] || arches=(x86_64 aarch64)
for a in "${arches[@]}"; do
  case "$a" in x86_64 | aarch64) ;; *) echo "usage: $0 [x86_64] [aarch64]" >&2; exit 2 ;; esac
done
out="$root/target/wheels"
wheels="$root/dist"
mkdir -p "$out" "$wheels"
exec > >(tee "$out/report.txt") 2>&1

need_packages() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}
need_packages python3-venv binutils unzip
if [[ " ${arches[*]} " == *" aarch64 "* ]]; then
  dpkg --print-foreign-architectures | grep -qx arm64 || { dpkg --add-architecture arm64; apt-get update -qq; }
  need_packages rustc-web cargo-web libstd-rust-web-dev:arm64
fi

tools="$root/target/wheel-tools"
[ -x "$tools/bin/python" ] || python3 -m venv "$tools"
"$tools/bin/pip" install -q --disable-pip-version-check -r scripts/wheel-tools.txt

version=$(sed -n 's/^version = "\(.*\)"/\1/p' python/pyproject.toml)
echo "PixelQuery wheels $version, $(date -u +%Y-%m-%dT%H:%MZ), $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo '+changes')"
echo "tools: $("$tools/bin/maturin" --version), zig $("$tools/bin/python" -m ziglang version), auditwheel $("$tools/bin/auditwheel" --version | head -1 | cut -d' ' -f2)"

# Libraries a manylinux extension may need (the manylinux2014 policy's list, less the X11
# and GL ones that have no business here).
allowed_needed='^(libc\.so\.6|libm\.so\.6|libgcc_s\.so\.1|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|ld-linux-(x86-64|aarch64)\.so\.[12])$'

build() {
  local arch=$1 t0=$SECONDS
  local args=(build --release --locked --manifest-path python/Cargo.toml --out "$wheels"
    --zig --compatibility manylinux2014 --auditwheel check --quiet)
  echo "== $arch wheel"
  rm -f "$wheels"/pixelquery-"$version"-*"$arch".whl
  # The tools first on PATH: maturin runs zig as `python3 -m ziglang`.
  if [ "$arch" = "$(uname -m)" ]; then
    env PATH="$tools/bin:$PATH" "$tools/bin/maturin" "${args[@]}"
  else
    # Then Debian's cargo and rustc (with their arm64 std), ahead of rustup's.
    env PATH="$tools/bin:/usr/bin:$PATH" RUSTC=/usr/bin/rustc \
      "$tools/bin/maturin" "${args[@]}" --target "$arch-unknown-linux-gnu"
  fi
  echo "   built in $((SECONDS - t0)) s"
}

# The checks auditwheel and pip make, spelled out: file name tags, the platform tag the
# extension's symbols allow, the shared libraries it needs, its machine.
check() {
  local arch=$1 whl so tmp
  whl=$(ls "$wheels"/pixelquery-"$version"-cp39-abi3-*"$arch".whl)
  echo "   $(basename "$whl"): $(stat -c %s "$whl") bytes"
  [[ "$(basename "$whl")" == *-cp39-abi3-*manylinux2014_"$arch"* && "$(basename "$whl")" == *manylinux_2_17_"$arch"* ]] \
    || { echo "FAIL: unexpected wheel tags: $whl" >&2; exit 1; }
  echo "   ok   tags: cp39-abi3 (CPython >= 3.9, one wheel), manylinux_2_17 = manylinux2014"
  "$tools/bin/auditwheel" show "$whl" > "$out/auditwheel-$arch.txt"
  grep -q "manylinux_2_17_$arch" "$out/auditwheel-$arch.txt" || { cat "$out/auditwheel-$arch.txt"; echo "FAIL: auditwheel" >&2; exit 1; }
  echo "   ok   auditwheel show: $(tr '\n' ' ' < "$out/auditwheel-$arch.txt" | grep -o 'consistent with the following platform tag: "[^"]*"')"
  tmp=$(mktemp -d)
  unzip -q "$whl" -d "$tmp"
  so=$(find "$tmp" -name '_pixelquery*.so')
  echo "   extension: ${so#"$tmp"/}, $(file -b "$so" | cut -d, -f1-2)"
  local needed
  needed=$(readelf -dW "$so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  echo "   needs: $(echo "$needed" | paste -sd' ')"
  echo "$needed" | grep -Evq "$allowed_needed" && { echo "FAIL: the extension needs a library outside the manylinux policy" >&2; exit 1; }
  local glibc
  glibc=$(readelf -VW "$so" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
  echo "   ok   needs only the manylinux system libraries; newest symbol version $glibc"
  [ "$(printf '%s\n' "$glibc" GLIBC_2.17 | sort -V | tail -1)" = GLIBC_2.17 ] || { echo "FAIL: $glibc > 2.17" >&2; exit 1; }
  rm -rf "$tmp"
}

for arch in "${arches[@]}"; do
  build "$arch"
  check "$arch"
done

if [[ " ${arches[*]} " == *" x86_64 "* ]]; then
  echo "== x86_64 wheel in a fresh virtual environment, no Rust on PATH: python/tests"
  bin=${PIXELQUERY_BIN:-}
  [ -n "$bin" ] || for b in target/x86_64-unknown-linux-musl/release/pixelquery target/release/pixelquery; do
    [ -x "$b" ] && { bin="$root/$b"; break; }
  done
  [ -n "$bin" ] || { echo "FAIL: no pixelquery binary to compare with (build one, or set PIXELQUERY_BIN)" >&2; exit 1; }
  venv="$out/test-venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r python/requirements-test.txt
  # --only-binary: pip must take the wheel as it is, never build.
  "$venv/bin/pip" install -q --disable-pip-version-check --only-binary :all: --no-index \
    --find-links "$wheels" "pixelquery==$version"
  # PATH: the venv and a folder of the few tools the tests may call, none of them Rust's.
  nobin="$out/path-without-rust"
  rm -rf "$nobin"
  mkdir -p "$nobin"
  for t in sh env; do ln -s "$(command -v "$t")" "$nobin/$t"; done
  env -i HOME="$HOME" LANG=C.UTF-8 PATH="$venv/bin:$nobin" PIXELQUERY_BIN="$bin" sh -c '
    for t in cargo rustc rustup maturin; do
      if command -v "$t" >/dev/null; then echo "FAIL: $t is on PATH" >&2; exit 1; fi
    done
    echo "   PATH has no cargo, rustc, rustup or maturin; tests compare with $PIXELQUERY_BIN"
    cd python/tests && python -m pytest -q -p no:cacheprovider .' \
    || { echo "FAIL: python tests" >&2; exit 1; }
fi
echo "PASS: wheels ${arches[*]}"
