#!/usr/bin/env bash
# Times static musl binaries against the default (glibc) build in one run: the demo, and an
# ingest of the 12 corpus scenes (../shared/corpus/ts) into a new warehouse. The binaries
# take turns, round after round (the 2 shared cores' load drifts), each run in a fresh
# folder; prints medians and each binary's ratio to the default build's median.
#
#   scripts/bench-static.sh [ROUNDS] [LABEL=BINARY ...]
#     default: 7 rounds; musl=target/x86_64-unknown-linux-musl/release/pixelquery
#
# Builds nothing: run scripts/build-static.sh x86_64 first. Without the corpus, the ingest
# takes the demo's own 40 scene files instead. PIXELQUERY_CORPUS: another corpus folder.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-7}
shift || true
bins=("default=target/release/pixelquery")
if [ $# -gt 0 ]; then bins+=("$@"); else bins+=("musl=target/x86_64-unknown-linux-musl/release/pixelquery"); fi
for spec in "${bins[@]}"; do
  [ -x "${spec#*=}" ] || { echo "missing ${spec#*=}: build it first (scripts/build-static.sh x86_64)" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
scenes="${PIXELQUERY_CORPUS:-$(pwd)/../shared/corpus}/ts"
if [ ! -d "$scenes" ]; then
  target/release/pixelquery demo "$work/demo-src" > /dev/null
  scenes="$work/demo-src/scenes"
fi

echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $rounds rounds"
python3 - "$work" "$scenes" "$rounds" "${bins[@]}" <<'EOF'
import os, shutil, statistics, subprocess, sys, time

work, scenes, rounds, specs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
bins = [tuple(s.split("=", 1)) for s in specs]
n_scenes = len([f for f in os.listdir(scenes) if f.endswith(".tif")])
tasks = {
    "demo": lambda b, d: [b, "demo", d],
    f"ingest {n_scenes} scenes": lambda b, d: [b, "ingest", d, scenes, "--product", "sentinel2_l2a"],
}
times = {(t, label): [] for t in tasks for label, _ in bins}
for r in range(rounds + 1):  # round 0 warms the page cache and is not counted
    for task, argv in tasks.items():
        for label, binary in bins:
            out = os.path.join(work, "run")
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.perf_counter()
            subprocess.run(argv(binary, out), check=True, stdout=subprocess.DEVNULL)
            if r > 0:
                times[(task, label)].append(time.perf_counter() - t0)
print(f"| {'task':<22} | {'binary':<10} | median s | min s | max s | / default |")
print(f"|{'-' * 24}|{'-' * 12}|----------|-------|-------|-----------|")
for task in tasks:
    base = statistics.median(times[(task, bins[0][0])])
    for label, _ in bins:
        ts = times[(task, label)]
        m = statistics.median(ts)
        print(f"| {task:<22} | {label:<10} | {m:8.3f} | {min(ts):5.2f} | {max(ts):5.2f} | {m / base:8.2f}x |")
EOF
