#!/usr/bin/env bash
# Compares how `pixelquery` binaries resolve host names with the built-in resolver and with
# the C library's (PIXELQUERY_RESOLVER=system): glibc's in the default build, musl's in the
# static builds. The evidence behind docs/name-resolution.md.
#
#   scripts/compare-resolvers.sh LABEL=BINARY[@RUNNER] ...
#   e.g. scripts/compare-resolvers.sh default=target/release/pixelquery \
#          musl-x86_64=target/x86_64-unknown-linux-musl/release/pixelquery \
#          musl-aarch64=target/aarch64-unknown-linux-musl/release/pixelquery@qemu-aarch64-static
#
# Needs root: it runs in a private mount namespace (unshare -m) where /etc/resolv.conf and
# /etc/hosts are replaced by test files, with scripts/dns-test-server.py answering on
# 127.0.0.153:53. Nothing leaves the machine: every name resolves to a loopback address, and
# `inspect http://NAME:1/x.tif` then fails to connect ("resolved") or fails to resolve.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || { sed -n '2,9p' "$0" >&2; exit 2; }
if [ "${PQ_IN_NAMESPACE:-}" != 1 ]; then
  exec unshare -m env PQ_IN_NAMESPACE=1 "$(pwd)/scripts/compare-resolvers.sh" "$@"
fi

work=$(mktemp -d)
printf '127.0.0.1 localhost\n127.0.0.1 fromhosts.pq.test fromhosts-alias\n' > "$work/hosts"
printf 'search pq.test\nnameserver 127.0.0.153\noptions timeout:2 attempts:1\n' > "$work/resolv.conf"
mount --bind "$work/hosts" /etc/hosts
mount --bind "$work/resolv.conf" /etc/resolv.conf
python3 scripts/dns-test-server.py 127.0.0.153 53 > "$work/dns.log" 2>&1 &
dns_pid=$!
trap 'kill "$dns_pid" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do grep -q ready "$work/dns.log" && break; sleep 0.1; done

names=(localhost fromhosts.pq.test fromhosts-alias plain.pq.test alias.pq.test v6.pq.test big.pq.test plain nosuch.pq.test)
what=("localhost" "/etc/hosts" "/etc/hosts alias" "DNS A" "DNS CNAME" "DNS AAAA only"
  "DNS, 40 A records (UDP truncated)" "short name + resolv.conf search" "NXDOMAIN")

# One word for the outcome: resolved (the connection to the loopback port was refused),
# or why not.
outcome() {
  local err=$1
  if grep -qi 'refused' <<< "$err"; then
    echo "resolved"
  elif grep -qiE 'no such host|NXDOMAIN|not known|does not resolve|no address' <<< "$err"; then
    echo "not found"
  elif grep -qiE 'timed out|no answer|temporary failure' <<< "$err"; then
    echo "timeout"
  else
    echo "error: $(head -c 80 <<< "$err")"
  fi
}

printf '%-36s' "name (how it resolves)"
columns=()
for spec in "$@"; do
  label=${spec%%=*}
  for mode in builtin system; do columns+=("$label $mode"); printf ' | %-22s' "$label $mode"; done
done
echo
for i in "${!names[@]}"; do
  printf '%-36s' "${names[$i]} (${what[$i]})"
  for spec in "$@"; do
    target=${spec#*=}
    bin=${target%%@*}
    runner=()
    [ "$bin" = "$target" ] || runner=("${target#*@}")
    for mode in builtin system; do
      t0=$(date +%s%N)
      err=$(PIXELQUERY_RESOLVER=$mode timeout 30 "${runner[@]}" "$bin" inspect "http://${names[$i]}:1/x.tif" 2>&1 >/dev/null || true)
      ms=$((($(date +%s%N) - t0) / 1000000))
      printf ' | %-22s' "$(outcome "$err") $((ms / 1000)).$((ms % 1000 / 100))s"
      echo "${names[$i]} $spec $mode: $err" >> "$work/errors.txt"
    done
  done
  echo
done
echo
echo "messages:"
sed 's/^/  /' "$work/errors.txt" | cut -c1-220
