#!/usr/bin/env bash
# Builds every release artifact into dist/ and writes dist/SHA256SUMS:
#   pixelquery-VERSION-x86_64-linux-musl.tar.gz    static binary (+ README.md)
#   pixelquery-VERSION-aarch64-linux-musl.tar.gz
#   pixelquery-VERSION-cp39-abi3-manylinux2014_{x86_64,aarch64}.manylinux_2_17_*.whl
# Each build script checks and tests its artifacts (see them); their reports are kept in
# dist/build-report.txt. Run before a release, not in CI (it takes the better part of an hour
# on 2 cores: two standard-library builds and two wheel builds).
#
#   scripts/release.sh
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/;T;p;q' Cargo.toml)
[ "$version" = "$(sed -n 's/^version = "\(.*\)"/\1/p' python/pyproject.toml)" ] \
  || { echo "Cargo.toml and python/pyproject.toml disagree on the version" >&2; exit 1; }
t0=$SECONDS
rm -rf dist
mkdir -p dist

scripts/build-static.sh x86_64 aarch64
PIXELQUERY_BIN="$PWD/target/x86_64-unknown-linux-musl/release/pixelquery" scripts/build-wheels.sh x86_64 aarch64

for arch in x86_64 aarch64; do
  name="pixelquery-$version-$arch-linux-musl"
  stage=$(mktemp -d)
  mkdir "$stage/$name"
  cp "target/$arch-unknown-linux-musl/release/pixelquery" README.md "$stage/$name/"
  tar -C "$stage" --owner=0 --group=0 --numeric-owner -czf "dist/$name.tar.gz" "$name"
  rm -rf "$stage"
done
cat target/static/report.txt target/wheels/report.txt > dist/build-report.txt
(cd dist && sha256sum -- *.tar.gz *.whl > SHA256SUMS && sha256sum --quiet -c SHA256SUMS)

echo "== dist/ ($(((SECONDS - t0) / 60)) min)"
(cd dist && for f in *.tar.gz *.whl; do printf '%10s  %s\n' "$(numfmt --to=iec-i --suffix=B "$(stat -c %s "$f")")" "$f"; done)
echo "SHA256SUMS:"
sed 's/^/  /' dist/SHA256SUMS
