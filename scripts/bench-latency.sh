#!/usr/bin/env bash
# The object-store latency table of docs/performance.md: scripts/bench-e2e.sh for each of
# S3_DELAY_MS 0 and 40, PARTITIONS 1 and 4, FLUSH 1,000 and 100,000 records, COUNT records each
# (default 100,000), one round, the sink's files rotating after ROTATE_MS (500: with 4
# partitions a file of 100,000 records never fills, and the last files of each run close by time,
# which the wall time includes); prints one row per run: the sink and the Python peer in
# records/s, and the sink against the peer and against its own run without added latency.
#
#   scripts/bench-latency.sh        COUNT=200000 scripts/bench-latency.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
COUNT=${COUNT:-100000}
OUT=${OUT:-$ROOT/target/bench-latency}
mkdir -p "$OUT"
rate() { awk -v who="$2" '$0 ~ "^"who {print $(NF-4)}' "$1"; }
printf '| S3 delay | partitions | file records | sink records/s | peer records/s | sink / peer | sink / sink at 0 ms |\n|---:|---:|---:|---:|---:|---:|---:|\n'
declare -A base
for parts in 1 4; do
  for flush in 1000 100000; do
    for delay in 0 40; do
      dir="$OUT/d$delay-p$parts-f$flush"
      ROTATE_MS=${ROTATE_MS:-500} COUNT=$COUNT PARTITIONS=$parts FLUSH=$flush ROUNDS=1 S3_DELAY_MS=$delay OUT="$dir" scripts/bench-e2e.sh >"$dir.log" 2>&1 \
        || { echo "bench-e2e failed for delay $delay, $parts partitions, flush $flush: see $dir.log" >&2; exit 1; }
      sink=$(rate "$dir/result.txt" kafka-parquet-sink)
      peer=$(rate "$dir/result.txt" "python peer")
      [ "$delay" = 0 ] && base[$parts-$flush]=$sink
      printf '| %s ms | %s | %s | %s | %s | %.1fx | %.2fx |\n' "$delay" "$parts" "$flush" "$sink" "$peer" \
        "$(echo "$sink / $peer" | bc -l)" "$(echo "$sink / ${base[$parts-$flush]}" | bc -l)"
    done
  done
done
