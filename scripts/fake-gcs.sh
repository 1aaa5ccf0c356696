#!/usr/bin/env bash
# Google Cloud Storage for the tests: fake-gcs-server 1.56.1 (Go module proxy), built once into
# STACK_DIR/fake-gcs with the XML-API shim of scripts/fake-gcs/main.go (object_store speaks the
# XML API, which fake-gcs-server does not route for uploads), run in memory on
# 127.0.0.1:FAKE_GCS_PORT with a bucket datalake. A sink reaches it with
# `output.url = "gs://datalake/..."` and GOOGLE_SERVICE_ACCOUNT naming the key file this script
# writes (STACK_DIR/fake-gcs/service-account.json: `gcs_base_url` and `disable_oauth`, the
# object_store settings for an emulator).
#
#   scripts/fake-gcs.sh up       build when missing, start, wait until it answers
#   scripts/fake-gcs.sh down     stop it (its data is in memory: gone with it)
#   scripts/fake-gcs.sh status   one line
#
# Environment: FAKE_GCS_PORT (4443), STACK_DIR (.stack/).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
STACK_DIR=${STACK_DIR:-$ROOT/.stack}
FAKE_GCS_PORT=${FAKE_GCS_PORT:-4443}
DIR=$STACK_DIR/fake-gcs
BIN=$DIR/fake-gcs

log() { printf '[fake-gcs] %s\n' "$*" >&2; }
# shellcheck source=scripts/lib-proc.sh
source "$ROOT/scripts/lib-proc.sh"
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

up() {
  mkdir -p "$DIR"
  # Rebuilt when the shim's sources are newer than the binary.
  if [ ! -x "$BIN" ] || [ -n "$(find "$ROOT/scripts/fake-gcs" -newer "$BIN" -type f)" ]; then
    command -v go >/dev/null || { log "Go is needed to build fake-gcs-server (go 1.26 or newer)"; exit 1; }
    log "building fake-gcs-server 1.56.1 with the XML-API shim into $DIR (Go module proxy)"
    (cd "$ROOT/scripts/fake-gcs" && go build -buildvcs=false -o "$BIN" .) >"$DIR/build.log" 2>&1 || { tail -n 20 "$DIR/build.log" >&2; exit 1; }
  fi
  printf '{"gcs_base_url": "http://127.0.0.1:%s", "disable_oauth": true, "client_email": "", "private_key": "", "private_key_id": ""}\n' \
    "$FAKE_GCS_PORT" >"$DIR/service-account.json"
  if port_open "$FAKE_GCS_PORT"; then
    log "port $FAKE_GCS_PORT already open, assuming fake-gcs-server is running"
  else
    nohup "$BIN" -port "$FAKE_GCS_PORT" -bucket datalake >"$DIR/fake-gcs.log" 2>&1 &
    echo $! >"$DIR/fake-gcs.pid"
  fi
  local i
  for ((i = 0; i < 150; i++)); do
    curl -sf "http://127.0.0.1:$FAKE_GCS_PORT/storage/v1/b/datalake" >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -sf "http://127.0.0.1:$FAKE_GCS_PORT/storage/v1/b/datalake" >/dev/null \
    || { log "bucket datalake not reachable; last log lines:"; tail -n 20 "$DIR/fake-gcs.log" >&2; exit 1; }
  log "up: GCS http://127.0.0.1:$FAKE_GCS_PORT (bucket datalake), key file $DIR/service-account.json"
}

down() {
  if stop_pidfile "$DIR/fake-gcs.pid" 5; then log "stopped"; fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) if port_open "$FAKE_GCS_PORT"; then echo "fake-gcs up (port $FAKE_GCS_PORT)"; else echo "fake-gcs down (port $FAKE_GCS_PORT)"; fi ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
