#!/usr/bin/env bash
# Apache Kafka 4.4.0 in KRaft mode (one combined broker + controller), assembled from Maven
# Central into a cached folder (scripts/kafka/pom.xml: what the Apache tarball's libs/ holds) and
# run on the machine's Java 17, as the tarball's bin/ scripts do. Used by scripts/stack.sh (the
# local stack's broker), scripts/debezium.sh (the Connect worker's classpath) and by tests that
# need a broker of their own to stop and restart.
#
#   scripts/kafka.sh libs                        assemble the jars when missing; print their folder
#   scripts/kafka.sh assemble POM DEST [ARGS]    the same for another pom (the Connect worker's)
#   scripts/kafka.sh start DIR PORT CONTROLLER   format DIR once, start the broker on its log
#                                                directory, wait until it serves metadata
#   scripts/kafka.sh stop DIR [--kill]           SIGTERM (or SIGKILL) the broker of DIR and wait
#
# Environment: KPS_CACHE (~/.cache/kafka-parquet-sink) for the jars; KAFKA_HEAP_OPTS
# (-Xms256m -Xmx1g).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KAFKA_VERSION=4.4.0
KPS_CACHE=${KPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kafka-parquet-sink}
LIBS=$KPS_CACHE/kafka-$KAFKA_VERSION/libs

log() { printf '[kafka] %s\n' "$*" >&2; }
# shellcheck source=scripts/lib-jvm.sh
source "$ROOT/scripts/lib-jvm.sh"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# `mvn dependency:copy-dependencies` of POM into DEST, once: into a temporary folder, renamed
# into place only when complete, so an interrupted install is redone rather than used.
assemble() { # pom dest [maven args...]
  local pom=$1 dest=$2; shift 2
  [ -f "$dest/.complete" ] && return
  command -v mvn >/dev/null || { log "Maven (mvn) is needed to assemble $dest from Maven Central"; exit 1; }
  log "assembling $(basename "$dest") from Maven Central into $dest (once)"
  local tmp="$dest.tmp.$$"
  rm -rf "$tmp" && mkdir -p "$tmp"
  if ! mvn -q -B -f "$pom" dependency:copy-dependencies -DoutputDirectory="$tmp" -DincludeScope=runtime "$@" >"$tmp.log" 2>&1; then
    tail -n 30 "$tmp.log" >&2
    log "Maven could not resolve what $pom names (log above)"
    rm -rf "$tmp"
    exit 1
  fi
  touch "$tmp/.complete"
  rm -rf "$dest" && mkdir -p "$(dirname "$dest")" && mv "$tmp" "$dest" && rm -f "$tmp.log"
}

libs() {
  assemble "$ROOT/scripts/kafka/pom.xml" "$LIBS"
  echo "$LIBS"
}

# Replaces the shell it runs in: call it in a subshell, ( ... ), $( ... ) or with &, so that
# the pid of a background broker is the JVM's, which stop() signals.
java_cmd() { # class args...: java with Kafka's classpath and logging
  # shellcheck disable=SC2086
  exec java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g} -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" -cp "$LIBS/*" "$@"
}

# server.properties for a single-node cluster on loopback. Group and transaction settings are
# Kafka's defaults except where a one-node test cluster needs otherwise (replication 1) or where
# the tests wait on them: consumer-protocol (KIP-848) session and heartbeat bounds low enough for
# the tests' 10 s sessions, no initial rebalance delay.
properties() { # dir port controller_port
  cat <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$3
listeners=PLAINTEXT://127.0.0.1:$2,CONTROLLER://127.0.0.1:$3
advertised.listeners=PLAINTEXT://127.0.0.1:$2
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$1/data
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.consumer.min.session.timeout.ms=6000
group.consumer.session.timeout.ms=10000
group.consumer.min.heartbeat.interval.ms=1000
group.consumer.heartbeat.interval.ms=1000
log.cleaner.backoff.ms=1000
EOF
}

start() { # dir port controller_port
  local dir=$1 port=$2 cport=$3
  mkdir -p "$dir"
  if [ -f "$dir/kafka.pid" ] && kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null; then log "already running in $dir"; return; fi
  if port_open "$port"; then log "port $port is already open: another broker?"; exit 1; fi
  properties "$dir" "$port" "$cport" >"$dir/server.properties"
  if [ ! -f "$dir/data/meta.properties" ]; then
    local id; id=$(java_cmd kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
    (java_cmd kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties") >"$dir/format.log" 2>&1 \
      || { cat "$dir/format.log" >&2; exit 1; }
  fi
  java_cmd kafka.Kafka "$dir/server.properties" >>"$dir/kafka.log" 2>&1 &
  echo $! >"$dir/kafka.pid"
  started() { grep -q "Kafka Server started" "$dir/kafka.log" 2>/dev/null && port_open "$port"; }
  wait_ready "the broker" "$dir/kafka.pid" "$dir/kafka.log" 60 started
  log "Apache Kafka $KAFKA_VERSION on 127.0.0.1:$port (log dirs $dir/data)"
}

stop() { # dir [--kill]
  local dir=$1 sig=TERM pid
  [ "${2:-}" = --kill ] && sig=KILL
  [ -f "$dir/kafka.pid" ] || return 0
  pid=$(cat "$dir/kafka.pid")
  if kill -"$sig" "$pid" 2>/dev/null; then
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    log "broker of $dir stopped ($sig)"
  fi
  rm -f "$dir/kafka.pid"
}

case "${1:-}" in
  libs) libs ;;
  assemble) shift; [ $# -ge 2 ] || { echo "usage: $0 assemble POM DEST [MAVEN ARGS]" >&2; exit 2; }; assemble "$@" ;;
  start) [ $# = 4 ] || { echo "usage: $0 start DIR PORT CONTROLLER_PORT" >&2; exit 2; }; libs >/dev/null; start "$2" "$3" "$4" ;;
  stop) [ $# -ge 2 ] || { echo "usage: $0 stop DIR [--kill]" >&2; exit 2; }; stop "$2" "${3:-}" ;;
  *) echo "usage: $0 libs | start DIR PORT CONTROLLER_PORT | stop DIR [--kill]" >&2; exit 2 ;;
esac
