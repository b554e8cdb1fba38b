#!/usr/bin/env bash
# Builds static musl `pixelquery` binaries for x86_64 and aarch64 Linux, checks that they are
# static, runs the smoke tests with each (aarch64 under qemu-aarch64-static) and with the
# default build, and checks that all of them give identical output.
#
#   scripts/build-static.sh [x86_64] [aarch64]      (default: both)
#
# Binaries: target/{x86_64,aarch64}-unknown-linux-musl/release/pixelquery.
# Report (also printed): target/static/report.txt. Needs root and apt: the Debian packages
# below are installed when missing; nothing is downloaded from anywhere else. The corpus
# checks use ../shared/corpus (or PIXELQUERY_CORPUS) when it is there.
#
# How (see README, "Install"): Debian's rustc-web/cargo-web and its rust-web-src build the
# standard library for the musl target (`-Z build-std`, allowed by RUSTC_BOOTSTRAP=1, since
# Debian ships no prebuilt musl std). rustc links with the plain gcc driver of each
# architecture (musl-gcc would drop -static-pie) and finds, through `-L native=DIR`, a
# folder holding musl's C runtime objects and libc.a (Debian's musl-dev), gcc's
# crtbeginS.o/crtendS.o and LLVM's libunwind.a (Debian's libunwind-14-dev, for the
# unwinder std needs: musl has none). That libunwind was built against glibc with
# _FORTIFY_SOURCE and calls __fprintf_chk (only to print its last words before abort());
# musl has no _chk functions, so a 10-line shim forwarding it to vfprintf is compiled with
# the same gcc and added to the folder's copy of libunwind.a. The shim and those archives are
# link-time inputs of this release build only; `cargo build` stays free of C.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
out="$root/target/static"
mkdir -p "$out"
arches=("$@")
[ ${#arches[@]} -gt 0 ] || arches=(x86_64 aarch64)
for a in "${arches[@]}"; do
  case "$a" in x86_64 | aarch64) ;; *) echo "usage: $0 [x86_64] [aarch64]" >&2; exit 2 ;; esac
done
report="$out/report.txt"
exec > >(tee "$report") 2>&1

need_packages() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

need_packages file binutils gcc rustc-web cargo-web rust-web-src gcc-aarch64-linux-gnu qemu-user-static
# The arm64 archives are fetched with `apt-get download`, which needs arm64 package lists.
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
  apt-get update -qq
fi

# The folder rustc's musl link searches (`-L native=`): musl's crt objects and libc.a, gcc's
# crtbeginS.o/crtendS.o, libunwind.a (+ the __fprintf_chk shim). Debian archives are
# unpacked here, not installed: libunwind-14-dev conflicts with libunwind-dev, and its
# arm64 copy with the amd64 one.
link_dir() {
  local arch=$1
  local deb_arch cc dir="$out/link-$arch"
  case "$arch" in
    x86_64) deb_arch=amd64 cc=x86_64-linux-gnu-gcc ;;
    aarch64) deb_arch=arm64 cc=aarch64-linux-gnu-gcc ;;
  esac
  if [ ! -f "$dir/done" ]; then
    rm -rf "$dir"
    mkdir -p "$dir/debs" "$dir/unpacked"
    (cd "$dir/debs" && apt-get download -q -o APT::Sandbox::User=root \
      "musl-dev:$deb_arch" "libunwind-14-dev:$deb_arch" >/dev/null)
    for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$dir/unpacked"; done
    cp "$dir/unpacked/usr/lib/$arch-linux-musl/"{crt1.o,crti.o,crtn.o,rcrt1.o,Scrt1.o,libc.a} "$dir/"
    for o in crtbegin.o crtend.o crtbeginS.o crtendS.o crtbeginT.o; do cp "$("$cc" -print-file-name="$o")" "$dir/"; done
    cat > "$dir/fortify_shim.c" <<'EOF'
/* __fprintf_chk for a glibc-built libunwind.a linked against musl: print, as fprintf. */
typedef struct _IO_FILE FILE;
int vfprintf(FILE *, const char *, __builtin_va_list);
int __fprintf_chk(FILE *f, int flag, const char *fmt, ...) {
  __builtin_va_list ap;
  int n;
  (void)flag;
  __builtin_va_start(ap, fmt);
  n = vfprintf(f, fmt, ap);
  __builtin_va_end(ap);
  return n;
}
EOF
    "$cc" -O2 -fPIC -fno-stack-protector -ffreestanding -c "$dir/fortify_shim.c" -o "$dir/fortify_shim.o"
    install -m 644 "$dir/unpacked/usr/lib/llvm-14/lib/libunwind.a" "$dir/libunwind.a"
    ar rs "$dir/libunwind.a" "$dir/fortify_shim.o" 2>/dev/null
    for deb in "$dir"/debs/*.deb; do dpkg-deb --show --showformat='${Package}:${Architecture} ${Version}\n' "$deb"; done > "$dir/done"
  fi
  echo "$dir"
}

build_musl() {
  local arch=$1 triple="$1-unknown-linux-musl" dir cc
  dir=$(link_dir "$arch")
  cc="$arch-linux-gnu-gcc"
  local var="CARGO_TARGET_$(echo "$triple" | tr a-z- A-Z_)"
  echo "== build $triple (Debian $(/usr/bin/rustc --version | cut -d' ' -f1-2), std from rust-web-src)"
  echo "   link inputs: $(paste -sd, "$dir/done" | sed 's/,/, /g'), gcc $("$cc" -dumpversion) crt objects"
  local t0=$SECONDS
  # Debian's toolchain lives in /usr/bin: bypass the rustup shims (and rust-toolchain.toml).
  env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS \
    RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
    "${var}_LINKER=$cc" "${var}_RUSTFLAGS=-L native=$dir" \
    nice -n 10 /usr/bin/cargo build --release --locked --quiet --target "$triple" \
    -Z build-std=std,panic_abort
  echo "   built in $((SECONDS - t0)) s"
}

# Static, self-contained: no program interpreter, no shared library needed.
check_static() {
  local bin=$1 arch=$2
  local desc
  desc=$(file -b "$bin")
  echo "   file: $desc"
  echo "$desc" | grep -Eq 'statically linked|static-pie linked' || { echo "FAIL: $bin is not static" >&2; exit 1; }
  if readelf -lW "$bin" | grep -q INTERP || readelf -dW "$bin" | grep -q NEEDED; then
    echo "FAIL: $bin has an interpreter or needs shared libraries" >&2
    readelf -dW "$bin" >&2
    exit 1
  fi
  echo "   readelf: no INTERP, no NEEDED"
  if [ "$arch" = "$(uname -m)" ]; then
    if ldd "$bin" 2>&1 | grep -q '=>'; then echo "FAIL: ldd finds shared libraries" >&2; exit 1; fi
    echo "   ldd: $(ldd "$bin" 2>&1 | head -1 | tr -d '\t')"
  fi
  echo "   size: $(stat -c %s "$bin") bytes ($(numfmt --to=iec-i --suffix=B "$(stat -c %s "$bin")"))"
}

corpus="${PIXELQUERY_CORPUS:-$root/../shared/corpus}"
[ -f "$corpus/MANIFEST.tsv" ] || corpus=""

# The smoke tests; their outputs go to target/static/smoke/LABEL for the comparison.
smoke() {
  local label=$1 bin=$2
  shift 2
  local run=("$@") dir="$out/smoke/$label" work
  rm -rf "$dir"
  mkdir -p "$dir"
  work=$(mktemp -d)
  pq() { "${run[@]}" "$bin" "$@"; }
  echo "   version: $(pq --version)"
  {
    pq inspect fixtures/cog/u16_deflate_pred2_tiled16_pixel.tif --json --pixel-hash \
      | grep -o '"pixels_sha256_16": "[0-9a-f]*"' | sed 's/^/fixture /'
    if [ -n "$corpus" ]; then
      for f in ts/S2L_T52_20230611_10m.tif variants/s2_32652_zstd_pred2.tif variants/dem_4326_float32_pred3.tif; do
        want=$(awk -F'\t' -v p="$f" '$1==p {print $19}' "$corpus/MANIFEST.tsv")
        got=$(pq inspect "$corpus/$f" --json --pixel-hash | sed -n 's/.*"pixels_sha256_16": "\([0-9a-f]*\)".*/\1/p')
        [ "$got" = "$want" ] || { echo "FAIL: $label: $f hash $got, GDAL says $want" >&2; exit 1; }
        echo "$f $got (GDAL: $want)"
      done
    fi
  } > "$dir/hashes.txt"
  grep -q '"pixels_sha256_16": "ed5f4f041d4b0d63"' "$dir/hashes.txt" || { echo "FAIL: $label: fixture hash" >&2; exit 1; }
  echo "   ok   pixel hashes: fixture$([ -n "$corpus" ] && echo ' + 3 corpus files') equal GDAL's"
  pq demo "$work/demo" > "$work/demo.txt"
  grep -q "8 scenes ingested" "$work/demo.txt" || { cat "$work/demo.txt"; echo "FAIL: $label: demo" >&2; exit 1; }
  # The demo's NDVI table (the timing line aside).
  grep -E '^20[0-9]{2}-' "$work/demo.txt" > "$dir/demo-ndvi.txt"
  echo "   ok   demo: $(wc -l < "$dir/demo-ndvi.txt") dates of NDVI"
  if [ -n "$corpus" ]; then
    pq ingest "$work/wh" "$corpus/ts/S2L_T52_20230611_10m.tif" "$corpus/ts/S2L_T52_20230716_10m.tif" \
      "$corpus/ts/S2L_T52_20230820_10m.tif" --product sentinel2_l2a --memory-budget 32 > /dev/null
    pq query "$work/wh" --point 127.9407,36.4548 --index ndvi > "$dir/query.txt"
    echo "   ok   ingest 3 corpus scenes in 32 MB + point query: $(wc -l < "$dir/query.txt") lines"
  fi
  # A panic must unwind (exit 101, message on stderr), not abort: the store turns decoder
  # panics into errors with catch_unwind, which needs a working unwinder. Writing to a full
  # device panics in the CLI's printing today.
  local rc=0
  pq inspect fixtures/cog/u16_deflate_pred2_tiled16_pixel.tif > /dev/full 2> "$work/panic.txt" || rc=$?
  if [ "$rc" = 101 ] && grep -q 'panicked' "$work/panic.txt"; then
    echo "   ok   a panic unwinds to main (exit 101)"
  elif [ "$rc" -ge 128 ] || grep -q -i 'abort' "$work/panic.txt"; then
    echo "FAIL: $label: a panic aborted (exit $rc): $(head -3 "$work/panic.txt")" >&2
    exit 1
  else
    echo "   note unwinding not exercised (writing to /dev/full exits $rc without a panic)"
  fi
  rm -rf "$work"
}

echo "PixelQuery static builds, $(date -u +%Y-%m-%dT%H:%MZ), $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo '+changes')"
echo "== default build (glibc, dynamic; rustup $(cargo --version | cut -d' ' -f2)), the reference"
cargo build --release --locked --quiet
default_bin=target/release/pixelquery
echo "   file: $(file -b "$default_bin" | cut -d, -f1-2,4)"
echo "   size: $(stat -c %s "$default_bin") bytes"
smoke default "$default_bin"

for arch in "${arches[@]}"; do
  triple="$arch-unknown-linux-musl"
  build_musl "$arch"
  bin="target/$triple/release/pixelquery"
  check_static "$bin" "$arch"
  runner=()
  [ "$arch" = "$(uname -m)" ] || runner=("qemu-$arch-static")
  [ ${#runner[@]} -eq 0 ] || echo "   run under ${runner[*]} ($(qemu-"$arch"-static --version | head -1))"
  smoke "$arch-musl" "$bin" "${runner[@]}"
done

echo "== identical output"
for arch in "${arches[@]}"; do
  for f in hashes.txt demo-ndvi.txt query.txt; do
    [ -f "$out/smoke/default/$f" ] || continue
    cmp -s "$out/smoke/default/$f" "$out/smoke/$arch-musl/$f" \
      || { echo "FAIL: $arch-musl $f differs from the default build's" >&2; diff "$out/smoke/default/$f" "$out/smoke/$arch-musl/$f" >&2; exit 1; }
  done
  echo "   ok   $arch-musl = default build (pixel hashes, demo NDVI table, query output; $(cat "$out"/smoke/default/*.txt | sha256sum | cut -c1-16))"
done
echo "PASS: static musl ${arches[*]}"
