#!/usr/bin/env bash
# The codec table of docs/performance.md: COUNT Debezium events (default 1,000,000) of the
# tasks table are produced once to a fresh topic of PARTITIONS partitions; then the sink (release
# build) consumes the whole topic once per codec of output.compression (snappy, zstd, zstd at
# level 9, lz4, gzip, none), each with its own group into its own prefix, files of FLUSH records.
# Time: process start until the group's committed offsets cover every record. Size: the bytes of
# the files in the lake; rows and distinct offsets are counted back with pyarrow and must equal
# the records produced (tombstones excepted). One row per codec, as Markdown.
#
#   scripts/bench-codecs.sh         COUNT=200000 scripts/bench-codecs.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# pip installs as root here on purpose (a throwaway machine): no warning about it on the terminal.
export PIP_ROOT_USER_ACTION=ignore
cd "$ROOT"
COUNT=${COUNT:-1000000}
PARTITIONS=${PARTITIONS:-4}
FLUSH=${FLUSH:-100000}
OUT=${OUT:-$ROOT/target/bench-codecs}
# PROFILE=debug: the smoke test of tests/bench_scripts.rs; figures only mean something in release.
PROFILE=${PROFILE:-release}
KAFKA=127.0.0.1:${KAFKA_PORT:-9092}
REGISTRY=http://127.0.0.1:${REGISTRY_PORT:-8081}
S3=http://127.0.0.1:${S3_PORT:-9000}
export AWS_ACCESS_KEY_ID=minioadmin AWS_SECRET_ACCESS_KEY=minioadmin
mkdir -p "$OUT"
log() { printf '[bench-codecs] %s\n' "$*" >&2; }
python3 -c "import confluent_kafka, fastavro, pyarrow" 2>/dev/null || python3 -m pip install --quiet confluent-kafka fastavro pyarrow
source scripts/bench-lib.sh
if [ "$PROFILE" = release ]; then cargo build --release --quiet --bins; else cargo build --quiet --bins; fi
BIN=target/$PROFILE
run_id=$(date +%s)-$$ # the pid too: two runs may start in one second (the tests run them side by side)
topic="bench-codecs-$run_id"
log "producing $COUNT events to $topic ($PARTITIONS partitions)"
produce_events "$BIN" "$topic"
rows_expected=$((COUNT - tombstones))

echo "records=$COUNT partitions=$PARTITIONS flush=$FLUSH machine: $(nproc) cores"
printf '| codec | level | wall s | records/s | CPU s | lake MiB | bytes/row | vs snappy |\n|---|---:|---:|---:|---:|---:|---:|---:|\n'
snappy_bytes=""
for spec in snappy:0 zstd:0 zstd:9 lz4:0 gzip:0 none:0; do
  codec=${spec%%:*} level=${spec##*:}
  group="bench-codec-$run_id-$codec-$level" prefix="bench/codecs-$run_id/$codec-$level"
  wall=$(ROTATE_MS=2000 timed_sink "$BIN" "$codec-$level" "$group" "$prefix" "$S3" "compression = \"$codec\"
compression_level = $level")
  lake=$(python3 scripts/lake.py --endpoint "$S3" count --prefix "$prefix")
  read -r bytes rows distinct < <(python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["bytes"], d["rows"], d["distinct_offsets"])' <<<"$lake")
  if [ "$rows" != "$rows_expected" ] || [ "$distinct" != "$rows_expected" ]; then
    log "$codec level $level: $rows rows, $distinct distinct offsets in the lake, expected $rows_expected"; exit 1
  fi
  [ -z "$snappy_bytes" ] && snappy_bytes=$bytes
  printf '| %s | %s | %.1f | %d | %s | %.1f | %.1f | %.2fx |\n' "$codec" "$([ "$level" = 0 ] && echo default || echo "$level")" "$wall" \
    "$(echo "$COUNT / $wall" | bc)" "$(cpu_s "$OUT/$codec-$level.log")" "$(echo "$bytes / 1048576" | bc -l)" \
    "$(echo "$bytes / $rows" | bc -l)" "$(echo "$bytes / $snappy_bytes" | bc -l)"
done
