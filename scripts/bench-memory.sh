#!/usr/bin/env bash
# Peak RSS of the sink under a burst: COUNT Debezium events (default 1,000,000) already waiting
# in a topic of PARTITIONS partitions (default 24), consumed with flush.max_buffered_bytes =
# LIMIT_MIB MiB (default 64) and no other flush trigger within reach. The goal (issue 4): peak
# RSS <= limit + 64 MiB. Uses the local stack (started and stopped here if it is not running).
#
#   scripts/bench-memory.sh            COUNT=200000 LIMIT_MIB=32 scripts/bench-memory.sh
#   TOPIC=bench-mem-... scripts/bench-memory.sh   (consume a topic an earlier run filled)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
COUNT=${COUNT:-1000000}
PARTITIONS=${PARTITIONS:-24}
LIMIT_MIB=${LIMIT_MIB:-64}
OUT=${OUT:-$ROOT/target/bench-memory}
mkdir -p "$OUT"

log() { printf '[bench-memory] %s\n' "$*" >&2; }

source scripts/bench-lib.sh

cargo build --release --quiet --bins
run_id=$(date +%s)-$$ # the pid too: two runs may start in one second (the tests run them side by side)
group="bench-mem-$run_id"
prefix="bench/mem-$run_id"
if [ -n "${TOPIC:-}" ]; then
  topic=$TOPIC # a topic of an earlier run, already holding COUNT events
else
  topic="bench-mem-$run_id"
  log "producing $COUNT events to $topic ($PARTITIONS partitions)"
  target/release/kps-cdc-gen --topic "$topic" --partitions "$PARTITIONS" --count "$COUNT" --seed 7 >"$OUT/produce.log"
fi

metrics_port=19402
cat >"$OUT/sink.toml" <<TOML
[kafka]
bootstrap_servers = "127.0.0.1:${KAFKA_PORT:-9092}"
group_id = "$group"
topics = ["$topic"]
[schema_registry]
url = "http://127.0.0.1:${REGISTRY_PORT:-8081}"
[s3]
endpoint = "http://127.0.0.1:${S3_PORT:-9000}"
access_key_id = "minioadmin"
secret_access_key = "minioadmin"
allow_http = true
[output]
prefix = "$prefix"
[flush]
max_records = 100000000
max_file_bytes = 1073741824
rotate_interval_ms = 3600000
max_buffered_bytes = $((LIMIT_MIB * 1024 * 1024))
[metrics]
listen = "127.0.0.1:$metrics_port"
TOML

metric() { curl -s "http://127.0.0.1:$metrics_port/metrics" | awk -v m="$1" '$1 ~ "^"m"({|$)" {s += $2} END {printf "%d", s}'; }

start=$(date +%s.%N)
/usr/bin/time -v target/release/kafka-parquet-sink run --config "$OUT/sink.toml" 2>"$OUT/sink.log" &
time_pid=$!
sleep 1
sink_pid=$(pgrep -P "$time_pid")
while [ "$(metric kps_records_consumed_total)" -lt "$COUNT" ]; do
  kill -0 "$sink_pid" 2>/dev/null || { tail -20 "$OUT/sink.log"; exit 1; }
  sleep 0.5
done
consumed_at=$(date +%s.%N)
memory_flushes=$(curl -s "http://127.0.0.1:$metrics_port/metrics" | awk '/^kps_files_uploaded_total/ && /reason="memory"/ {s += $2} END {printf "%d", s}')
kill -TERM "$sink_pid"
wait "$time_pid"
peak_kib=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$OUT/sink.log")
peak_mib=$((peak_kib / 1024))
goal=$((LIMIT_MIB + 64))
verdict=$([ "$peak_mib" -le "$goal" ] && echo "within" || echo "OVER")
echo "topic=$topic" >&2
printf 'records=%d partitions=%d limit=%dMiB peak_rss=%dMiB goal<=%dMiB (%s) consume_s=%.1f memory_flushes=%d\n' \
  "$COUNT" "$PARTITIONS" "$LIMIT_MIB" "$peak_mib" "$goal" "$verdict" "$(echo "$consumed_at - $start" | bc)" "$memory_flushes" | tee "$OUT/result.txt"
[ "$verdict" = within ]
