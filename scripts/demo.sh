#!/usr/bin/env bash
# The main job end to end on the local stack: bring the stack up, produce sample Debezium change
# events of public.tasks, run the sink until every offset is committed, stop it with SIGTERM,
# and show the Parquet files in the bucket with a few rows read back by pyarrow.
#
#   scripts/demo.sh [COUNT]        (default 2000 records; the stack stays up: scripts/stack.sh down)
#
# DEMO_PROFILE=debug builds and runs the debug binaries instead of the release ones (CI runs the
# demo so, before the tests, to check README's two commands in their order).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/build-deps.sh
source scripts/build-deps.sh
ensure_build_deps
COUNT=${1:-2000}
TOPIC=supabase-habit.public.tasks
export AWS_ACCESS_KEY_ID=minioadmin AWS_SECRET_ACCESS_KEY=minioadmin

scripts/stack.sh up
if [ "${DEMO_PROFILE:-release}" = debug ]; then
  cargo build --bins
  BIN=target/debug
else
  cargo build --release --bins
  BIN=target/release
fi

echo "== producing $COUNT change events to $TOPIC (schema v2 from record $((COUNT / 2)))"
$BIN/kps-cdc-gen --topic "$TOPIC" --partitions 3 --count "$COUNT" --v2-after $((COUNT / 2)) --seed "$(date +%s)"

echo "== running the sink (config/local.toml) until the group's lag is 0"
LOG=.stack/sink.log
$BIN/kafka-parquet-sink run --config config/local.toml >"$LOG" 2>&1 &
SINK=$!
trap 'kill $SINK 2>/dev/null || true' EXIT
# Done when every record consumed so far is committed and nothing is buffered.
for _ in $(seq 120); do
  sleep 1
  m=$(curl -s --max-time 2 http://127.0.0.1:9102/metrics || true)
  consumed=$(awk '/^kps_records_consumed_total/ {s+=$2} END {print s+0}' <<<"$m")
  buffered=$(awk '/^kps_buffered_records/ {s+=$2} END {print s+0}' <<<"$m")
  written=$(awk '/^kps_records_written_total/ {s+=$2} END {print s+0}' <<<"$m")
  printf '   consumed %s, written %s, buffered %s\n' "$consumed" "$written" "$buffered"
  if [ "$consumed" -ge "$COUNT" ] && [ "$buffered" -eq 0 ]; then break; fi
done
kill -TERM $SINK
wait $SINK && echo "== sink stopped cleanly (SIGTERM: flushed, uploaded, committed, left the group)"
trap - EXIT
grep -E "file uploaded" "$LOG" | tail -n 3 | sed 's/\x1b\[[0-9;]*m//g' || true

echo "== the lake"
python3 scripts/lake.py show --prefix "bronze/cdc/tasks/topics/$TOPIC" --rows 5
