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
#   scripts/kafka.sh start-secure DIR PORT CONTROLLER BASE
#                                                the same broker with eight secured listeners
#                                                more on BASE .. BASE+7 (below), its TLS material
#                                                made once in DIR/tls by openssl
#   scripts/kafka.sh stop DIR [--kill]           SIGTERM (or SIGKILL) the broker of DIR and wait
#   scripts/kafka.sh dump-log FILE...            Kafka's DumpLogSegments of log segments (each
#                                                batch's compresscodec, offsets)
#
# start and start-secure exit 3 when a port given was taken before the broker could bind it.
#
# The secured listeners, each as a managed Kafka offers it (DIR/listeners.env names the ports):
#   BASE+0 SSL       TLS, the broker's certificate signed by DIR/tls/ca.pem (Aiven, MSK TLS)
#   BASE+1 MTLS      TLS with ssl.client.auth=required: DIR/tls/client.pem + client.key (Strimzi)
#   BASE+2 SCRAM     SASL_SSL SCRAM-SHA-512 and -256, user kps / kps-scram-secret created at
#                    format time (MSK SCRAM, Strimzi), and PLAIN, kps / kps-plain-secret
#                    (Confluent Cloud's SASL_SSL PLAIN)
#   BASE+3 OAUTH     SASL_SSL OAUTHBEARER, Kafka's unsecured-JWS validator requiring scope
#                    "kafka" (the OIDC tokens of scripts/oidc_stub.py)
#   BASE+4 PLAIN     SASL_PLAINTEXT PLAIN, user kps / kps-plain-secret (Confluent Cloud's mechanism)
#   BASE+5 MSKIAM    SASL_SSL OAUTHBEARER checked as MSK checks IAM tokens: each token goes to the
#                    verifier whose URL is in DIR/mskiam-verifier.url (scripts/aws_stub.py
#                    /msk-verify); re-authentication every 10 s (connections.max.reauth.ms)
#   BASE+6 BADHOST   TLS, a certificate for kafka.invalid only (a hostname mismatch)
#   BASE+7 EXPIRED   TLS, a certificate that expired in 2020
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
# shellcheck source=scripts/lib-proc.sh
source "$ROOT/scripts/lib-proc.sh"

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
java_cmd() { # class args...: java with Kafka's classpath (and KAFKA_EXTRA_CLASSPATH) and logging
  # shellcheck disable=SC2086
  exec java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g} -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" -cp "$LIBS/*${KAFKA_EXTRA_CLASSPATH:+:$KAFKA_EXTRA_CLASSPATH}" "$@"
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

start() { # dir port controller_port [secure_base]
  local dir=$1 port=$2 cport=$3 base=${4:-}
  mkdir -p "$dir"
  if [ -f "$dir/kafka.pid" ] && kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null; then log "already running in $dir"; return; fi
  if port_open "$port"; then log "port $port is already open: another broker?"; exit 1; fi
  local format_args=()
  if [ -n "$base" ]; then
    tls_material "$dir/tls"
    validator "$dir/classes"
    export KAFKA_EXTRA_CLASSPATH=$dir/classes
    secure_properties "$dir" "$port" "$cport" "$base" >"$dir/server.properties"
    format_args=(--add-scram "SCRAM-SHA-512=[name=kps,password=kps-scram-secret]" --add-scram "SCRAM-SHA-256=[name=kps,password=kps-scram-secret]")
  else
    properties "$dir" "$port" "$cport" >"$dir/server.properties"
  fi
  if [ ! -f "$dir/data/meta.properties" ]; then
    local id; id=$(java_cmd kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
    (java_cmd kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties" "${format_args[@]}") >"$dir/format.log" 2>&1 \
      || { cat "$dir/format.log" >&2; exit 1; }
  fi
  java_cmd kafka.Kafka "$dir/server.properties" >>"$dir/kafka.log" 2>&1 &
  echo $! >"$dir/kafka.pid"
  started() { grep -q "Kafka Server started" "$dir/kafka.log" 2>/dev/null && port_open "$port"; }
  if ! (wait_ready "the broker" "$dir/kafka.pid" "$dir/kafka.log" 60 started); then
    # Ports picked free by a caller can be taken before the broker binds them (by another
    # process's outgoing connection): exit 3 says so, and the caller may pick new ones.
    if grep -q "Address already in use" "$dir/kafka.log"; then log "a port of the broker was taken meanwhile (Address already in use)"; exit 3; fi
    exit 1
  fi
  log "Apache Kafka $KAFKA_VERSION on 127.0.0.1:$port (log dirs $dir/data)"
}

# A throwaway CA and the certificates the secured listeners and their clients use, made once:
# ca.pem (the trusted CA), other-ca.pem (a CA nobody uses: "unknown CA"), broker.p12 (127.0.0.1
# and localhost), badhost.p12 (kafka.invalid only), expired.p12 (2020-01-01 .. 2020-01-02),
# client.pem + client.key (CN=kps-client, for mutual TLS). Keystores' password: kps-store-pass.
tls_material() { # dir
  local d=$1
  [ -f "$d/.complete" ] && return
  command -v openssl >/dev/null || { log "openssl is needed to make the secured listeners' certificates"; exit 1; }
  rm -rf "$d" && mkdir -p "$d"
  if ! (cd "$d" && make_tls >openssl.log 2>&1); then
    cat "$d/openssl.log" >&2
    log "could not make the TLS material in $d"
    exit 1
  fi
  touch "$d/.complete"
}

make_tls() { # in the folder of the material
  set -e
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 -subj "/CN=kps test CA"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.pem -days 30 -subj "/CN=kps other CA"
  local name
  for name in broker:/CN=127.0.0.1:IP:127.0.0.1,DNS:localhost badhost:/CN=kafka.invalid:DNS:kafka.invalid client:/CN=kps-client:DNS:kps-client; do
    IFS=: read -r n subject san <<<"$name"
    openssl req -newkey rsa:2048 -nodes -keyout "$n.key" -out "$n.csr" -subj "$subject"
    printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\n' "$san" >"$n.ext"
    openssl x509 -req -in "$n.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$n.pem" -days 30 -extfile "$n.ext"
  done
  # An expired certificate: `openssl ca` takes explicit validity dates.
  mkdir -p ca-db && : >ca-db/index.txt && echo 1000 >ca-db/serial
  printf '%s\n' '[ca]' 'default_ca = test' '[test]' 'database = ca-db/index.txt' 'serial = ca-db/serial' \
    'new_certs_dir = ca-db' 'certificate = ca.pem' 'private_key = ca.key' 'default_md = sha256' 'policy = any' \
    '[any]' 'commonName = supplied' '[ext]' 'subjectAltName = IP:127.0.0.1,DNS:localhost' 'basicConstraints = CA:FALSE' >ca.cnf
  openssl req -newkey rsa:2048 -nodes -keyout expired.key -out expired.csr -subj "/CN=127.0.0.1"
  openssl ca -batch -config ca.cnf -extensions ext -startdate 20200101000000Z -enddate 20200102000000Z -in expired.csr -out expired.pem
  for name in broker badhost expired; do
    openssl pkcs12 -export -in "$name.pem" -inkey "$name.key" -certfile ca.pem -name kafka -out "$name.p12" -passout pass:kps-store-pass
  done
}

# The MSKIAM listener's server callback (scripts/kafka/MskIamValidator.java), compiled once.
validator() { # classes dir
  local out=$1
  [ -f "$out/kps/MskIamValidator.class" ] && return
  mkdir -p "$out"
  javac -nowarn -cp "$LIBS/*" -d "$out" "$ROOT/scripts/kafka/MskIamValidator.java" >&2
}

secure_properties() { # dir port controller_port base
  local d=$1 tls=$1/tls b=$4
  properties "$1" "$2" "$3" | grep -v -E '^(listeners|advertised.listeners|listener.security.protocol.map)='
  local names=(SSL MTLS SCRAM OAUTH PLAIN MSKIAM BADHOST EXPIRED) protos=(SSL SSL SASL_SSL SASL_SSL SASL_PLAINTEXT SASL_SSL SSL SSL)
  local listeners="PLAINTEXT://127.0.0.1:$2" map="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT" i
  : >"$d/listeners.env"
  for i in "${!names[@]}"; do
    listeners+=",${names[$i]}://127.0.0.1:$((b + i))"
    map+=",${names[$i]}:${protos[$i]}"
    echo "${names[$i]}=$((b + i))" >>"$d/listeners.env"
  done
  cat <<EOF
listeners=$listeners,CONTROLLER://127.0.0.1:$3
advertised.listeners=$listeners
listener.security.protocol.map=$map
ssl.keystore.type=PKCS12
ssl.keystore.location=$tls/broker.p12
ssl.keystore.password=kps-store-pass
ssl.key.password=kps-store-pass
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.pem
listener.name.mtls.ssl.client.auth=required
listener.name.badhost.ssl.keystore.location=$tls/badhost.p12
listener.name.expired.ssl.keystore.location=$tls/expired.p12
listener.name.scram.sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN
listener.name.scram.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_kps="kps-plain-secret";
listener.name.scram.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.scram.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.plain.sasl.enabled.mechanisms=PLAIN
listener.name.plain.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_kps="kps-plain-secret";
listener.name.oauth.sasl.enabled.mechanisms=OAUTHBEARER
listener.name.oauth.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="broker" unsecuredValidatorRequiredScope="kafka";
listener.name.mskiam.sasl.enabled.mechanisms=OAUTHBEARER
listener.name.mskiam.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="broker" verifierUrlFile="$d/mskiam-verifier.url";
listener.name.mskiam.oauthbearer.sasl.server.callback.handler.class=kps.MskIamValidator
listener.name.mskiam.oauthbearer.connections.max.reauth.ms=10000
EOF
}

stop() { # dir [--kill]
  local dir=$1 sig=TERM
  [ "${2:-}" = --kill ] && sig=KILL
  if stop_pidfile "$dir/kafka.pid" 30 "$sig"; then log "broker of $dir stopped ($sig)"; fi
}

case "${1:-}" in
  libs) libs ;;
  assemble) shift; [ $# -ge 2 ] || { echo "usage: $0 assemble POM DEST [MAVEN ARGS]" >&2; exit 2; }; assemble "$@" ;;
  start) [ $# = 4 ] || { echo "usage: $0 start DIR PORT CONTROLLER_PORT" >&2; exit 2; }; libs >/dev/null; start "$2" "$3" "$4" ;;
  start-secure) [ $# = 5 ] || { echo "usage: $0 start-secure DIR PORT CONTROLLER_PORT BASE" >&2; exit 2; }; libs >/dev/null; start "$2" "$3" "$4" "$5" ;;
  dump-log) shift; [ $# -ge 1 ] || { echo "usage: $0 dump-log FILE..." >&2; exit 2; }; libs >/dev/null; java_cmd org.apache.kafka.tools.DumpLogSegments --files "$(IFS=,; echo "$*")" ;;
  stop) [ $# -ge 2 ] || { echo "usage: $0 stop DIR [--kill]" >&2; exit 2; }; stop "$2" "${3:-}" ;;
  *) echo "usage: $0 libs | start DIR PORT CONTROLLER_PORT | start-secure DIR PORT CONTROLLER_PORT BASE | stop DIR [--kill]" >&2; exit 2 ;;
esac
