#!/usr/bin/env bash
# Peak memory and time of every command on two hostile logs (issue #27), for the README's
# "Shared warehouses" figures:
#   1. a commit of 200,000 `add` actions (about 45 MB) appended to a small warehouse;
#   2. a copy of a commit named as version 2^64-1 and another as 2^63-1 (`verify`).
#
#   scripts/hostile-memory.sh [PIXELQUERY_BINARY] [WORK_DIR]
#
# Defaults: target/release/pixelquery, a new temporary folder. Needs GNU time
# (/usr/bin/time, Debian package `time`). Run it with an older build's binary to compare.
# Each command runs under a 3 GB address-space limit, so a build without the bounds fails
# (it is killed) instead of exhausting the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
pq="$(realpath "${1:-target/release/pixelquery}")"
work="${2:-$(mktemp -d)}"
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
mkdir -p "$work/src"
for d in 01 02; do
  cp fixtures/cog/u16_deflate_pred2_tiled16_pixel.tif "$work/src/S_202301$d.tif"
done
w="$work/wh"
rm -rf "$w"
"$pq" ingest "$w" "$work/src" --product sentinel2_l2a --date-pattern '(\d{8})' >/dev/null
log="$w/catalog/_delta_log"

measure() { # label, command...
  local label=$1; shift
  (ulimit -v 3000000; /usr/bin/time -o "$work/time" -f '%M %e' "$@" >/dev/null 2>"$work/err") \
    || true
  local out; out=$(tail -1 "$work/time")
  local err; err=$(head -1 "$work/err" | cut -c1-110)
  printf '%-8s %6d MB %6.2f s  %s\n' "$label" $(( ${out% *} / 1024 )) "${out#* }" "$err"
}

# 1. 200,000 adds in the next commit.
awk 'BEGIN { for (i = 0; i < 200000; i++)
  printf "{\"add\":{\"path\":\"kind=fragment/part-20240101T000000Z-%016x.parquet\",\"partitionValues\":{\"kind\":\"fragment\"},\"size\":10,\"modificationTime\":1700000000000,\"dataChange\":true,\"tags\":{\"pixelquery.checksum\":\"xxh3:0123456789abcdef\"}}}\n", i }' \
  > "$log/00000000000000000002.json"
echo "a commit of 200,000 adds: log $(( $(du -sb "$log" | cut -f1) / 1000000 )) MB"
measure info "$pq" info "$w"
measure query "$pq" query "$w" --point 400100,4039900 --crs EPSG:32652 --bands B04
measure verify "$pq" verify "$w"
measure vacuum "$pq" vacuum "$w"
measure compact "$pq" compact "$w"

# 2. Far versions.
rm "$log/00000000000000000002.json"
cp "$log/00000000000000000001.json" "$log/18446744073709551615.json"
cp "$log/00000000000000000001.json" "$log/09223372036854775807.json"
echo "versions 2^64-1 and 2^63-1: log $(( $(du -sb "$log" | cut -f1) / 1000 )) kB"
measure verify "$pq" verify "$w"
