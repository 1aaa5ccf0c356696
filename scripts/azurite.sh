#!/usr/bin/env bash
# Azure Blob Storage for the tests: Azurite (npm `azurite`, the emulator Microsoft publishes),
# installed into STACK_DIR/azurite once, run in memory on 127.0.0.1:AZURITE_PORT with the
# development account devstoreaccount1 and a container datalake. A sink reaches it with
# `output.url = "az://datalake/..."` and AZURE_STORAGE_USE_EMULATOR=true.
#
#   scripts/azurite.sh up       install when missing, start, wait until the container exists
#   scripts/azurite.sh down     stop it (its data is in memory: gone with it)
#   scripts/azurite.sh status   one line
#
# Environment: AZURITE_PORT (10000; object_store's emulator default, else also set
# AZURITE_BLOB_STORAGE_URL for the sink), STACK_DIR (.stack/).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
STACK_DIR=${STACK_DIR:-$ROOT/.stack}
AZURITE_PORT=${AZURITE_PORT:-10000}
AZURITE_VERSION=3.37.0
DIR=$STACK_DIR/azurite

log() { printf '[azurite] %s\n' "$*" >&2; }
# shellcheck source=scripts/lib-proc.sh
source "$ROOT/scripts/lib-proc.sh"
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
helper() { python3 "$ROOT/scripts/azure_blob.py" "$@" --endpoint "http://127.0.0.1:$AZURITE_PORT"; }

up() {
  mkdir -p "$DIR"
  if [ ! -x "$DIR/node_modules/.bin/azurite-blob" ]; then
    command -v npm >/dev/null || { log "npm is needed to install Azurite (Node.js 18 or newer)"; exit 1; }
    log "installing Azurite $AZURITE_VERSION (npm) into $DIR"
    npm install --prefix "$DIR" --silent --no-audit --no-fund "azurite@$AZURITE_VERSION" >"$DIR/npm.log" 2>&1 \
      || { tail -n 20 "$DIR/npm.log" >&2; exit 1; }
  fi
  if port_open "$AZURITE_PORT"; then
    log "port $AZURITE_PORT already open, assuming Azurite is running"
  else
    nohup "$DIR/node_modules/.bin/azurite-blob" --inMemoryPersistence --blobHost 127.0.0.1 --blobPort "$AZURITE_PORT" \
      --skipApiVersionCheck --silent >"$DIR/azurite.log" 2>&1 &
    echo $! >"$DIR/azurite.pid"
  fi
  local i
  for ((i = 0; i < 150; i++)); do
    helper ping >/dev/null 2>&1 && break
    sleep 0.2
  done
  helper create-container --container datalake >/dev/null || { log "container datalake could not be created; last log lines:"; tail -n 20 "$DIR/azurite.log" >&2; exit 1; }
  log "up: Azure Blob Storage http://127.0.0.1:$AZURITE_PORT/devstoreaccount1 (container datalake)"
}

down() {
  if stop_pidfile "$DIR/azurite.pid" 5; then log "stopped"; fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) if port_open "$AZURITE_PORT"; then echo "azurite up (port $AZURITE_PORT)"; else echo "azurite down (port $AZURITE_PORT)"; fi ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
