#!/usr/bin/env bash
# All tests: unit tests, then integration tests on the real local stack (Apache Kafka 4.4 in
# KRaft mode, SeaweedFS, the test registry) and real Debezium (PostgreSQL 15 and a Kafka Connect
# worker with the Debezium PostgreSQL connector), Azure Blob Storage (Azurite) and Google Cloud
# Storage (fake-gcs-server), which this script starts, installing what is missing (Kafka, Connect
# and Debezium from Maven Central, SeaweedFS, pyarrow, the AvroConverter jars, PostgreSQL, Azurite
# from npm, fake-gcs-server from the Go module proxy), and stops again if it started them.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/build-deps.sh
source scripts/build-deps.sh
ensure_build_deps

started=0
status=$(scripts/stack.sh status)
if ! grep -q down <<<"$status"; then
  echo "[test] using the running local stack"
else
  scripts/stack.sh up
  started=1
fi
dbz_started=0 azurite_started=0 gcs_started=0
cleanup() {
  if [ "$gcs_started" = 1 ]; then scripts/fake-gcs.sh down; fi
  if [ "$azurite_started" = 1 ]; then scripts/azurite.sh down; fi
  if [ "$dbz_started" = 1 ]; then scripts/debezium.sh down; fi
  if [ "$started" = 1 ]; then scripts/stack.sh down; fi
}
trap cleanup EXIT
# Real Debezium (PostgreSQL + Kafka Connect) for tests/debezium_e2e.rs and tests/doctor.rs.
if scripts/debezium.sh psql -c 'select 1' >/dev/null 2>&1 && scripts/debezium.sh status | grep -q '"state":"RUNNING"'; then
  echo "[test] using the running Debezium harness"
else
  scripts/debezium.sh up
  dbz_started=1
fi

# Azure Blob Storage (Azurite) for tests/azure.rs.
if grep -q ' up ' <<<"$(scripts/azurite.sh status)"; then
  echo "[test] using the running Azurite"
else
  scripts/azurite.sh up
  azurite_started=1
fi

# Google Cloud Storage (fake-gcs-server with its XML-API shim) for tests/gcs.rs.
# `up` also (re)writes the key file the tests hand the sink.
if grep -q ' up ' <<<"$(scripts/fake-gcs.sh status)"; then echo "[test] using the running fake-gcs-server"; else gcs_started=1; fi
scripts/fake-gcs.sh up

# The lints of Cargo.toml (no unwrap, expect, panic!, todo!, unimplemented!, unreachable!) and
# every other warning stop the run before a test does.
cargo clippy --all-targets --quiet -- -D warnings
cargo test --all-targets --no-fail-fast -- --test-threads=2
