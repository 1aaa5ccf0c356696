#!/usr/bin/env bash
# End to end through the real broker, side by side with a hand-written peer (issue 6):
# COUNT Debezium events (default 1,000,000) of the tasks table are produced once to a fresh topic
# of PARTITIONS partitions on the local stack; then, per round, the sink (release build) and the
# Python peer (scripts/peer_sink.py: confluent-kafka + fastavro + pyarrow, Snappy Parquet per
# flush of FLUSH records) each consume the whole topic with their own group into their own
# prefix. A run's time is from process start until the group's committed offsets cover every
# record (commits follow uploads, so every file is in S3 by then); peak RSS from /usr/bin/time.
# A `null` consumer (librdkafka, no decoding) gives the broker's ceiling in the same run.
# CPU seconds (user + system, from /usr/bin/time) show how much work each did per record, which
# holds even where the broker bounds the wall-clock rate.
# Both lakes are counted afterwards: rows and distinct offsets must equal the records produced
# (tombstones excepted).
# The sink also runs in table mode (output.format = "delta", a commit every TABLE_COMMIT_MS,
# default 2000): timed the same way (its group's offsets follow each table commit), its table
# counted by the deltalake package, and its commits' durations (from its log) given as p50/p99.
# BAD_PERCENT (default 0) of the records are produced bad (corrupt Avro bodies, unknown schema
# ids, unframed values; see kps-cdc-gen --bad-percent): the sink then runs with
# errors.tolerance = "all" and a dead-letter topic of its own, and the Python peer, which has no
# such routing, is left out. The same events without the bad ones go to a topic of their own, and
# the sink runs on it in every round right after its run on the bad ones: the result gives the
# ratio of the two rates, both measured on the same machine state.
#
#   scripts/bench-e2e.sh              COUNT=200000 ROUNDS=1 scripts/bench-e2e.sh
#   BAD_PERCENT=10 scripts/bench-e2e.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# pip installs as root here on purpose (a throwaway machine): no warning about it on the terminal.
export PIP_ROOT_USER_ACTION=ignore
cd "$ROOT"
COUNT=${COUNT:-1000000}
PARTITIONS=${PARTITIONS:-4}
FLUSH=${FLUSH:-100000}
TABLE_COMMIT_MS=${TABLE_COMMIT_MS:-2000}
ROUNDS=${ROUNDS:-3}
# PROFILE=debug runs the debug build (the smoke test in tests/bench_scripts.rs); figures are
# only meaningful with release.
PROFILE=${PROFILE:-release}
OUT=${OUT:-$ROOT/target/bench-e2e}
KAFKA=127.0.0.1:${KAFKA_PORT:-9092}
REGISTRY=http://127.0.0.1:${REGISTRY_PORT:-8081}
S3=http://127.0.0.1:${S3_PORT:-9000}
# S3_DELAY_MS > 0 puts scripts/delay_proxy.py between both sinks and S3: every response comes
# that much later, as from an object store across a network (40 ms: an ordinary S3 round trip).
S3_DELAY_MS=${S3_DELAY_MS:-0}
BAD_PERCENT=${BAD_PERCENT:-0}
export AWS_ACCESS_KEY_ID=minioadmin AWS_SECRET_ACCESS_KEY=minioadmin
mkdir -p "$OUT"
log() { printf '[bench-e2e] %s\n' "$*" >&2; }

python3 -c "import confluent_kafka, fastavro, pyarrow" 2>/dev/null || python3 -m pip install --quiet confluent-kafka fastavro pyarrow
source scripts/bench-lib.sh
delay_s3 "${S3_PROXY_PORT:-19400}"

if [ "$PROFILE" = release ]; then cargo build --release --quiet --bins; else cargo build --quiet --bins; fi
BIN=target/$PROFILE
run_id=$(date +%s)-$$ # the pid too: two runs may start in one second (the tests run them side by side)
topic="bench-e2e-$run_id"
with_bad() { [ "$(echo "$BAD_PERCENT > 0" | bc)" = 1 ]; }
if with_bad; then
  # The same events without the bad ones, for the sink to run on in the same rounds: the cost of
  # the bad records as a ratio of two runs on the same machine state.
  requested=$COUNT
  log "producing $COUNT events to $topic-clean ($PARTITIONS partitions), none bad"
  BAD_PERCENT=0 produce_events "$BIN" "$topic-clean"
  clean_count=$COUNT
  mv "$OUT/produce.log" "$OUT/produce-clean.log"
  COUNT=$requested
fi
log "producing $COUNT events to $topic ($PARTITIONS partitions)"
produce_events "$BIN" "$topic"
log "$(head -1 "$OUT/produce.log")"

# With bad records: the sink's routing of them, into a dead-letter topic of this run (the sink
# refuses to start on one that does not exist).
errors=""
if with_bad; then
  python3 - "$KAFKA" "$topic-dlq" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
for f in admin.create_topics([NewTopic(sys.argv[2], 1, 1)]).values():
    f.result(30)
PY
  errors="[errors]
tolerance = \"all\"
dead_letter_topic = \"$topic-dlq\""
fi

run_null() { # round
  local t0; t0=$(now)
  /usr/bin/time -v python3 scripts/peer_sink.py --bootstrap "$KAFKA" --registry "$REGISTRY" --topic "$topic" \
    --group "bench-null-$run_id-$1" --expect "$COUNT" --null >/dev/null 2>"$OUT/null-$1.time"
  echo "$(echo "$(now) - $t0" | bc) $(peak_mib "$OUT/null-$1.time") $(cpu_s "$OUT/null-$1.time")"
}

run_sink() { # round
  local group="bench-sink-$run_id-$1" prefix="bench/e2e-$run_id/sink-$1" wall
  wall=$(timed_sink "$BIN" "sink-$1" "$group" "$prefix" "$SINK_S3" "$errors")
  echo "$wall $(peak_mib "$OUT/sink-$1.log") $(cpu_s "$OUT/sink-$1.log") $prefix"
}

run_clean() { # round: the sink on the topic without the bad records
  local group="bench-clean-$run_id-$1" prefix="bench/e2e-$run_id/clean-$1"
  topic="$topic-clean" COUNT="$clean_count" timed_sink "$BIN" "clean-$1" "$group" "$prefix" "$SINK_S3"
}

run_table() { # round
  local group="bench-table-$run_id-$1" prefix="bench/e2e-$run_id/table-$1" wall
  wall=$(timed_sink "$BIN" "table-$1" "$group" "$prefix" "$SINK_S3" "format = \"delta\"
[table]
commit_interval_ms = $TABLE_COMMIT_MS
$errors")
  echo "$wall $(peak_mib "$OUT/table-$1.log") $(cpu_s "$OUT/table-$1.log") $prefix"
}

run_peer() { # round
  local group="bench-peer-$run_id-$1" prefix="bench/e2e-$run_id/peer-$1"
  if with_bad; then echo "0 0 0 -"; return; fi
  local t0; t0=$(now)
  /usr/bin/time -v python3 scripts/peer_sink.py --bootstrap "$KAFKA" --registry "$REGISTRY" --topic "$topic" \
    --group "$group" --s3 "$SINK_S3" --prefix "$prefix" --flush "$FLUSH" --expect "$COUNT" >"$OUT/peer-$1.out" 2>"$OUT/peer-$1.time"
  echo "$(echo "$(now) - $t0" | bc) $(peak_mib "$OUT/peer-$1.time") $(cpu_s "$OUT/peer-$1.time") $prefix"
}

: >"$OUT/rounds.txt"
for r in $(seq 1 "$ROUNDS"); do
  read -r null_s null_mib null_cpu < <(run_null "$r")
  read -r sink_s sink_mib sink_cpu sink_prefix < <(run_sink "$r")
  clean_s=-
  if with_bad; then read -r clean_s < <(run_clean "$r"); fi
  read -r table_s table_mib table_cpu table_prefix < <(run_table "$r")
  read -r peer_s peer_mib peer_cpu peer_prefix < <(run_peer "$r")
  log "round $r: null consumer ${null_s}s, sink ${sink_s}s (${sink_mib} MiB, ${sink_cpu} CPU s), table ${table_s}s (${table_mib} MiB, ${table_cpu} CPU s), peer ${peer_s}s (${peer_mib} MiB, ${peer_cpu} CPU s)"
  echo "$null_s $null_mib $null_cpu $sink_s $sink_mib $sink_cpu $peer_s $peer_mib $peer_cpu $sink_prefix $peer_prefix $table_s $table_mib $table_cpu $table_prefix $clean_s" >>"$OUT/rounds.txt"
done

median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
col() { awk -v c="$1" '{print $c}' "$OUT/rounds.txt" | median; }
null_s=$(col 1); null_mib=$(col 2); null_cpu=$(col 3)
sink_s=$(col 4); sink_mib=$(col 5); sink_cpu=$(col 6)
peer_s=$(col 7); peer_mib=$(col 8); peer_cpu=$(col 9)
table_s=$(col 12); table_mib=$(col 13); table_cpu=$(col 14)
read -r _ _ _ _ _ _ _ _ _ sink_prefix peer_prefix _ _ _ table_prefix _ < <(tail -1 "$OUT/rounds.txt")
lake() { python3 scripts/lake.py --endpoint "$S3" count --prefix "$1"; }
sink_lake=$(lake "$sink_prefix")
peer_lake="- (not run: bad records)"
with_bad || peer_lake=$(lake "$peer_prefix")
table_lake=$(python3 scripts/delta.py --endpoint "$S3" count --table "$table_prefix/topics/$topic")
# Commit durations of every table round, from the sink's "table commit ... duration_ms=N" lines.
commit_ms=$(cat "$OUT"/table-*.log | grep -o 'table commit.*duration_ms=[0-9]*' | grep -o '[0-9]*$' | sort -n || true)
pct() { awk -v p="$1" '{a[NR] = $1} END {if (NR == 0) print "-"; else {i = int(p * NR + 0.999); if (i < 1) i = 1; print a[i]}}'; }
rate() { echo "$COUNT / $1" | bc; }
# topic_records TOPIC: the records in TOPIC, by its partitions' high watermarks.
topic_records() {
  python3 - "$KAFKA" "$1" <<'PY'
import sys
from confluent_kafka import Consumer, TopicPartition
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": "bench-count"})
parts = c.list_topics(sys.argv[2], timeout=10).topics[sys.argv[2]].partitions
print(sum(c.get_watermark_offsets(TopicPartition(sys.argv[2], p), timeout=10)[1] for p in parts))
PY
}
row() { printf '%-34s %8.1f %10d %8.1f %12d %8s\n' "$1" "$2" "$(rate "$2")" "$3" "$(rate "$3")" "$4 MiB"; }
{
  echo "broker=Apache Kafka 4.4.0 (same machine) s3_delay_ms=$S3_DELAY_MS records=$COUNT partitions=$PARTITIONS flush=$FLUSH rounds=$ROUNDS (medians) tombstones=$tombstones bad=$bad ($BAD_PERCENT%) machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%d GiB", $2 / 1048576}' /proc/meminfo)"
  printf '%-34s %8s %10s %8s %12s %8s\n' "" "wall s" "records/s" "CPU s" "records/CPU s" "peak RSS"
  row "broker ceiling (null consumer)" "$null_s" "$null_cpu" "$null_mib"
  row "kafka-parquet-sink" "$sink_s" "$sink_cpu" "$sink_mib"
  row "kafka-parquet-sink, Delta table" "$table_s" "$table_cpu" "$table_mib"
  if with_bad; then
    printf 'sink at %.0f%% of the broker ceiling; %s bad records routed to %s-dlq by each run (%s in it after %s runs)\n' \
      "$(echo "100 * $null_s / $sink_s" | bc -l)" "$bad" "$topic" "$(topic_records "$topic-dlq")" "$((2 * ROUNDS))"
    # The ratio of each round's pair of runs, then their median: the pairs share machine state.
    clean_s=$(col 16)
    ratio=$(awk '{print $16 / $4}' "$OUT/rounds.txt" | median)
    printf 'the same events without the bad ones (%s-clean, right after each sink run): %.1f s, %d records/s; with %s%% bad: %.2fx of that (median of the rounds'"'"' ratios)\n' \
      "$topic" "$clean_s" "$(echo "$clean_count / $clean_s" | bc)" "$BAD_PERCENT" "$ratio"
  else
    row "python peer (fastavro + pyarrow)" "$peer_s" "$peer_cpu" "$peer_mib"
    printf 'sink / peer: %.1fx records/s, %.1fx records per CPU second; sink at %.0f%% of the broker ceiling\n' \
      "$(echo "$peer_s / $sink_s" | bc -l)" "$(echo "$peer_cpu / $sink_cpu" | bc -l)" "$(echo "100 * $null_s / $sink_s" | bc -l)"
  fi
  printf 'table / files: %.2fx records/s; table commits (every %s ms): %s, duration p50 %s ms, p99 %s ms\n' \
    "$(echo "$sink_s / $table_s" | bc -l)" "$TABLE_COMMIT_MS" "$(echo "$commit_ms" | grep -c . || true)" "$(echo "$commit_ms" | pct 0.5)" "$(echo "$commit_ms" | pct 0.99)"
  echo "sink lake: $sink_lake (expected rows = distinct offsets = $((COUNT - tombstones - bad)))"
  echo "table lake: $table_lake"
  echo "peer lake: $peer_lake"
} | tee "$OUT/result.txt"
