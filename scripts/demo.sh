#!/usr/bin/env bash
# The main job end to end on the local stack, as the seed's users run it: PostgreSQL with the
# seed's public.tasks, Debezium in Kafka Connect with the AvroConverter (scripts/debezium.sh),
# Apache Kafka, the registry, SeaweedFS, and the sink (config/local.toml). The demo inserts,
# updates and deletes rows in PostgreSQL (with an ALTER TABLE ... ADD COLUMN on the way), waits
# until the lake holds every change, and prints, read back with pyarrow, what PostgreSQL has
# against the lake's newest image per key and each change's time from its commit in PostgreSQL
# to a readable file in the bucket.
#
#   scripts/demo.sh [ROWS]              (default 300 inserted rows; the stack and Debezium stay
#                                        up: scripts/debezium.sh down; scripts/stack.sh down)
#   scripts/demo.sh --synthetic COUNT   generated Debezium events (kps-cdc-gen) instead, on a
#                                        topic of their own (demo.synthetic.tasks)
#
# DEMO_PROFILE=debug builds and runs the debug binaries instead of the release ones (CI runs the
# demo so, before the tests, to check README's two commands in their order). DEMO_PREFIX and
# DEMO_GROUP: another lake prefix and consumer group (the test of the demo sets its own).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/build-deps.sh
source scripts/build-deps.sh
ensure_build_deps
MODE=pipeline
if [ "${1:-}" = --synthetic ]; then MODE=synthetic; shift; fi
export AWS_ACCESS_KEY_ID=minioadmin AWS_SECRET_ACCESS_KEY=minioadmin
PREFIX=${DEMO_PREFIX:-bronze/cdc/tasks}
export KPS__OUTPUT__PREFIX=$PREFIX KPS__KAFKA__GROUP_ID=${DEMO_GROUP:-connect-minio-s3-sink}

scripts/stack.sh up
if [ "${DEMO_PROFILE:-release}" = debug ]; then
  cargo build --bins
  BIN=target/debug
else
  cargo build --release --bins
  BIN=target/release
fi

# Runs the sink until `done_cmd` succeeds (checked every second, at most 180 s), then SIGTERM.
LOG=.stack/sink.log
run_sink_until() { # done_cmd...
  $BIN/kafka-parquet-sink run --config config/local.toml >"$LOG" 2>&1 &
  local sink=$! ok=0
  trap 'kill $sink 2>/dev/null || true' EXIT
  for _ in $(seq 180); do
    sleep 1
    if ! kill -0 $sink 2>/dev/null; then tail -n 20 "$LOG" >&2; echo "== the sink exited" >&2; exit 1; fi
    if "$@"; then ok=1; break; fi
  done
  kill -TERM $sink
  wait $sink && echo "== sink stopped cleanly (SIGTERM: flushed, uploaded, committed, left the group)"
  trap - EXIT
  grep -E "file uploaded" "$LOG" | tail -n 3 | sed 's/\x1b\[[0-9;]*m//g' || true
  [ "$ok" = 1 ] || { echo "== not done within 180 s" >&2; exit 1; }
}

metric() { awk -v m="$1" '$1 ~ "^"m {s+=$2} END {print s+0}' <<<"$(curl -s --max-time 2 http://127.0.0.1:9102/metrics || true)"; }

if [ "$MODE" = synthetic ]; then
  COUNT=${1:-2000}
  TOPIC=demo.synthetic.tasks
  export KPS__KAFKA__TOPICS=$TOPIC
  echo "== producing $COUNT generated change events to $TOPIC (schema v2 from record $((COUNT / 2)))"
  $BIN/kps-cdc-gen --topic "$TOPIC" --partitions 3 --count "$COUNT" --v2-after $((COUNT / 2)) --seed "$(date +%s)"
  echo "== running the sink (config/local.toml) until every record is written"
  synthetic_done() {
    local consumed buffered
    consumed=$(metric kps_records_consumed_total) buffered=$(metric kps_buffered_records)
    printf '   consumed %s, written %s, buffered %s\n' "$consumed" "$(metric kps_records_written_total)" "$buffered"
    [ "$consumed" -ge "$COUNT" ] && [ "$buffered" -eq 0 ]
  }
  run_sink_until synthetic_done
  echo "== the lake"
  python3 scripts/lake.py show --prefix "$PREFIX/topics/$TOPIC" --rows 5
  exit 0
fi

ROWS=${1:-300}
TOPIC=supabase-habit.public.tasks
if scripts/debezium.sh psql -c 'select 1' >/dev/null 2>&1 && scripts/debezium.sh status | grep -q '"state":"RUNNING"'; then
  echo "== Debezium already running"
else
  scripts/debezium.sh up
fi
# Debezium creates the topic with the first change: the sink looks for it every second.
export KPS__KAFKA__TOPICS=$TOPIC KPS__FLUSH__ROTATE_INTERVAL_MS=${DEMO_ROTATE_MS:-2000} KPS__KAFKA__PROPERTIES__TOPIC_METADATA_REFRESH_INTERVAL_MS=1000
TAG="demo-$(date +%s)-$$"
pg() { scripts/debezium.sh psql -qAt -c "$1"; }
WORK=$(mktemp -d)
$BIN/kafka-parquet-sink run --config config/local.toml >"$LOG" 2>&1 &
SINK=$!
trap 'kill $SINK 2>/dev/null || true; rm -rf "$WORK"' EXIT
echo "== the sink runs (config/local.toml, rotation ${KPS__FLUSH__ROTATE_INTERVAL_MS} ms); changing public.tasks in PostgreSQL ($TAG)"
for ((i = 0; i < ROWS; i++)); do
  pg "insert into public.tasks (title, points) values ('$TAG task $i', $i)"
done
echo "   $ROWS inserts"
pg "update public.tasks set completed = true, title = title || ' done' where title like '$TAG task %' and points % 3 = 0"
echo "   $((ROWS / 3 + (ROWS % 3 > 0))) updates"
pg "alter table public.tasks add column if not exists demo_note text"
echo "   alter table public.tasks add column demo_note text"
pg "insert into public.tasks (title, demo_note) select '$TAG after ' || g, 'note ' || g from generate_series(1, 20) g"
echo "   20 inserts with the new column"
pg "select coalesce(json_agg(id), '[]') from public.tasks where title like '$TAG task %' and points % 5 = 1" >"$WORK/deleted.json"
pg "delete from public.tasks where title like '$TAG task %' and points % 5 = 1"
echo "   $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$WORK/deleted.json") deletes"
pg "select coalesce(json_object_agg(id, title), '{}') from public.tasks where title like '$TAG%'" >"$WORK/pg.json"
echo "== waiting until the lake agrees with PostgreSQL"
status=0
python3 scripts/demo_report.py --prefix "$PREFIX/topics/$TOPIC" --pg "$WORK/pg.json" --deleted "$WORK/deleted.json" --tag "$TAG" --wait 120 >"$WORK/report.txt" || status=$?
kill -TERM $SINK
wait $SINK && echo "== sink stopped cleanly (SIGTERM: flushed, uploaded, committed, left the group)"
grep -E "file uploaded" "$LOG" | tail -n 2 | sed 's/\x1b\[[0-9;]*m//g' || true
cat "$WORK/report.txt"
exit $status
