#!/usr/bin/env bash
# Table mode under a steady stream (issue 19): how soon a reader sees a row, and what files the
# table holds after compaction. For each commit interval in COMMITS_MS (default "1000 10000"):
# a fresh topic of PARTITIONS partitions (4) receives RATE Debezium events a second (2000, by
# kps-cdc-gen once a second) for SECONDS (600 for the first interval, SHORT_SECONDS = 120 for
# the others); the sink (release build, output.format = "delta", files rotating every
# ROTATE_MS = 500, compaction after every 10 commits up to TARGET_MB = 128 MiB, and once idle
# for IDLE_MS = 30000) writes the topic's table; a reader (scripts/delta.py watch: the deltalake package, polling every 200 ms)
# notes when it first sees each row. Time to visible = that moment minus the row's Kafka
# timestamp (when it was produced), so it holds the rotation, the upload, the wait for the
# commit, the commit and the reader's poll. Also per run: the table commits' duration (from the
# sink's log), and the sizes of the files uploaded against those of the table's current
# snapshot per partition value (compaction merges the first into the second): when the reader
# has seen every row (15 s after the load, the compactions by count done), and again once the
# idle round has run (IDLE_MS + 15 s later). S3_DELAY_MS > 0
# puts scripts/delay_proxy.py between the sink and S3 (the reader reads S3 directly).
#
#   scripts/bench-table.sh        SECONDS_FIRST=120 S3_DELAY_MS=40 scripts/bench-table.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PIP_ROOT_USER_ACTION=ignore
cd "$ROOT"
PARTITIONS=${PARTITIONS:-4}
RATE=${RATE:-2000}
COMMITS_MS=${COMMITS_MS:-"1000 10000"}
SECONDS_FIRST=${SECONDS_FIRST:-600}
SHORT_SECONDS=${SHORT_SECONDS:-120}
ROTATE_MS=${ROTATE_MS:-500}
TARGET_MB=${TARGET_MB:-128}
MIN_FILES=${MIN_FILES:-10}
IDLE_MS=${IDLE_MS:-30000}
PROFILE=${PROFILE:-release}
OUT=${OUT:-$ROOT/target/bench-table}
KAFKA=127.0.0.1:${KAFKA_PORT:-9092}
REGISTRY=http://127.0.0.1:${REGISTRY_PORT:-8081}
S3=http://127.0.0.1:${S3_PORT:-9000}
S3_DELAY_MS=${S3_DELAY_MS:-0}
export AWS_ACCESS_KEY_ID=minioadmin AWS_SECRET_ACCESS_KEY=minioadmin
mkdir -p "$OUT"
log() { printf '[bench-table] %s\n' "$*" >&2; }

python3 -c "import deltalake, pyarrow" 2>/dev/null || python3 -m pip install --quiet deltalake==1.6.6 pyarrow
source scripts/bench-lib.sh
delay_s3 "${S3_PROXY_PORT:-19401}"
if [ "$PROFILE" = release ]; then cargo build --release --quiet --bins; else cargo build --quiet --bins; fi
BIN=target/$PROFILE
run_id=$(date +%s)-$$ # the pid too: two runs may start in one second (the tests run them side by side)

# quantiles of numbers on stdin: "count p10 p50 p90 max"
quantiles() { sort -n | awk '{a[NR] = $1} END {if (NR == 0) {print "0 - - - -"; exit} q = "0.1 0.5 0.9"; n = split(q, qs, " "); printf "%d", NR; for (i = 1; i <= n; i++) {j = int(qs[i] * NR + 0.999); if (j < 1) j = 1; printf " %s", a[j]} printf " %s\n", a[NR]}'; }
mib() { awk '{printf "%.2f", $1 / 1048576}'; }

{
printf '| commit interval | S3 delay | run | rows seen / produced | visible p50 | p90 | p99 | max | commits | commit p50 | commit p99 | files uploaded (median) | table files, median (at the end of the load) | table files, median (idle round done) | files per partition value: MiB each (idle round done) |\n'
printf '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n'
first=1
for commit in $COMMITS_MS; do
  seconds=$SHORT_SECONDS
  if [ -n "$first" ]; then seconds=$SECONDS_FIRST; first=""; fi
  name="c$commit-d$S3_DELAY_MS"
  topic="bench-table-$run_id-$commit"
  prefix="bench/table-$run_id/$name"
  group="bench-table-$run_id-$commit"
  # The topic and its schemas exist before the sink subscribes.
  "$BIN"/kps-cdc-gen --bootstrap "$KAFKA" --registry "$REGISTRY" --topic "$topic" --partitions "$PARTITIONS" --count 1 --seed 1 >/dev/null
  cat >"$OUT/$name.toml" <<TOML
[kafka]
bootstrap_servers = "$KAFKA"
group_id = "$group"
topics = ["$topic"]
[schema_registry]
url = "$REGISTRY"
[s3]
endpoint = "$SINK_S3"
allow_http = true
[output]
prefix = "$prefix"
format = "delta"
[table]
commit_interval_ms = $commit
compaction_min_files = $MIN_FILES
compaction_idle_ms = $IDLE_MS
target_file_bytes = $((TARGET_MB * 1048576))
[flush]
max_records = 1000000
rotate_interval_ms = $ROTATE_MS
[metrics]
listen = ""
TOML
  "$BIN"/kafka-parquet-sink run --config "$OUT/$name.toml" >/dev/null 2>"$OUT/$name.log" &
  sink_pid=$!
  python3 scripts/delta.py --endpoint "$S3" watch --table "$prefix/topics/$topic" --seconds $((seconds + 15)) >"$OUT/$name.watch.json" &
  watch_pid=$!
  # Whatever stops this run, the sink and the reader do not outlive it.
  trap 'kill "$sink_pid" "$watch_pid" 2>/dev/null || true' EXIT
  log "$name: $RATE events/s for ${seconds}s into $topic, commits every ${commit} ms"
  end=$(( $(date +%s) + seconds ))
  i=0
  rows_produced=0 # records with a row (tombstones have none), the first one's included
  while [ "$(date +%s)" -lt "$end" ]; do
    t0=$(now)
    i=$((i + 1))
    # Its first line ("produced N records to T: {ops}"); no `| head` (pipefail would stop here).
    produced=$("$BIN"/kps-cdc-gen --bootstrap "$KAFKA" --registry "$REGISTRY" --topic "$topic" --partitions "$PARTITIONS" --count "$RATE" --seed "$i")
    produced=${produced%%$'\n'*}
    n=$(awk '{print $2}' <<<"$produced")
    t=$(grep -o '"tombstone": [0-9]*' <<<"$produced" | grep -o '[0-9]*$' || echo 0)
    rows_produced=$((rows_produced + n - t))
    sleep "$(echo "1 - ($(now) - $t0)" | bc | awk '{print ($1 > 0) ? $1 : 0}')"
  done
  rows_produced=$((rows_produced + 1))
  wait "$watch_pid"
  python3 scripts/delta.py --endpoint "$S3" count --table "$prefix/topics/$topic" >"$OUT/$name.live.json"
  sleep $((IDLE_MS / 1000 + 15))
  python3 scripts/delta.py --endpoint "$S3" count --table "$prefix/topics/$topic" >"$OUT/$name.count.json"
  kill -TERM "$sink_pid"
  wait "$sink_pid" || true
  read -r rows p50 p90 p99 max < <(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['rows'], d['p50_ms'], d['p90_ms'], d['p99_ms'], d['max_ms'])" "$OUT/$name.watch.json")
  read -r commits _ c50 _ _ < <(grep -o 'table commit.*duration_ms=[0-9]*' "$OUT/$name.log" | grep -o '[0-9]*$' | quantiles)
  c99=$(grep -o 'table commit.*duration_ms=[0-9]*' "$OUT/$name.log" | grep -o '[0-9]*$' | sort -n | awk '{a[NR] = $1} END {j = int(0.99 * NR + 0.999); if (j < 1) j = 1; print (NR ? a[j] : "-")}')
  read -r uploaded _ up50 _ _ < <(grep 'file uploaded' "$OUT/$name.log" | grep -o ' bytes=[0-9]*' | grep -o '[0-9]*' | quantiles)
  # "N files, M MiB" of a count, and (with per) each partition value's file sizes in MiB
  files_of() { python3 -c "
import json, statistics, sys
d = json.load(open(sys.argv[1]))
sizes = sorted(s for v in d['file_bytes'].values() for s in v)
if sys.argv[2] == 'per':
    print('; '.join('%s: %s' % (p, ' + '.join('%.1f' % (s / 1048576) for s in sorted(v, reverse=True))) for p, v in sorted(d['file_bytes'].items())))
else:
    print('%d, %.2f MiB' % (len(sizes), statistics.median(sizes) / 1048576 if sizes else 0))
" "$1" "$2"; }
  printf '| %s ms | %s ms | %s s | %s / %s | %s ms | %s ms | %s ms | %s ms | %s | %s ms | %s ms | %s (%s MiB) | %s | %s | %s |\n' \
    "$commit" "$S3_DELAY_MS" "$seconds" "$rows" "$rows_produced" "$p50" "$p90" "$p99" "$max" "$commits" "$c50" "$c99" "$uploaded" "$(echo "$up50" | mib)" \
    "$(files_of "$OUT/$name.live.json" all)" "$(files_of "$OUT/$name.count.json" all)" "$(files_of "$OUT/$name.count.json" per)"
done
} | tee "$OUT/result.md"
echo "target_file_bytes = $TARGET_MB MiB, compaction_min_files = $MIN_FILES, compaction_idle_ms = $IDLE_MS, rotate_interval_ms = $ROTATE_MS, $PARTITIONS partitions, $RATE events/s; machine: $(nproc) cores" | tee -a "$OUT/result.md"
