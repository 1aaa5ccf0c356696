#!/usr/bin/env bash
# All tests: unit tests, then integration tests on the real local stack and the real Debezium
# harness, which this script starts (installing tansu, SeaweedFS, pyarrow and the Debezium jars
# when missing) and stops again if it started them.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

started=0
status=$(scripts/stack.sh status)
if ! grep -q down <<<"$status"; then
  echo "[test] using the running local stack"
else
  scripts/stack.sh up
  started=1
fi
dbz_started=0
cleanup() {
  if [ "$dbz_started" = 1 ]; then scripts/debezium.sh down; fi
  if [ "$started" = 1 ]; then scripts/stack.sh down; fi
}
trap cleanup EXIT
# Real Debezium (PostgreSQL + the embedded connector) for tests/debezium_e2e.rs.
if scripts/debezium.sh psql -c 'select 1' >/dev/null 2>&1; then
  echo "[test] using the running Debezium harness"
else
  scripts/debezium.sh up
  dbz_started=1
fi

cargo test --all-targets --no-fail-fast -- --test-threads=2
