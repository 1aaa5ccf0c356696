#!/usr/bin/env bash
# All tests: unit tests, then integration tests on the real local stack, which this script starts
# (installing tansu, SeaweedFS and pyarrow when missing) and stops again if it started it.
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
cleanup() { if [ "$started" = 1 ]; then scripts/stack.sh down; fi; }
trap cleanup EXIT

cargo test --all-targets --no-fail-fast -- --test-threads=2
