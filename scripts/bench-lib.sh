# Sourced by the bench scripts: the Docker image's glibc malloc settings (Dockerfile; fewer
# arenas, large blocks mmapped and returned; MALLOC_TUNING=off keeps glibc's defaults), and the
# local stack, started here and stopped on exit unless it was already running.
# shellcheck source=scripts/build-deps.sh
source scripts/build-deps.sh
ensure_build_deps
if [ "${MALLOC_TUNING:-on}" = on ]; then
  export MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-2} MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-131072} MALLOC_TRIM_THRESHOLD_=${MALLOC_TRIM_THRESHOLD_:-131072}
fi
started_stack=""
# Not `status | grep -q`: under pipefail grep's early exit fails the pipeline, and the stack
# would never start.
if grep -q down <<<"$(scripts/stack.sh status)"; then
  scripts/stack.sh up
  started_stack=1
fi
bench_cleanup() { if [ -n "$started_stack" ]; then scripts/stack.sh down; fi; }
trap bench_cleanup EXIT

# delay_s3 PORT: sets SINK_S3, the S3 endpoint the sinks use: $S3 itself, or with S3_DELAY_MS > 0
# scripts/delay_proxy.py on PORT in front of it, every answer that much later (as from an object
# store across a network), stopped on exit.
delay_s3() {
  SINK_S3=$S3
  [ "${S3_DELAY_MS:-0}" != 0 ] || return 0
  python3 scripts/delay_proxy.py --listen "$1" --target "127.0.0.1:${S3_PORT:-9000}" --delay-ms "$S3_DELAY_MS" &
  proxy_pid=$!
  trap 'kill $proxy_pid 2>/dev/null || true; bench_cleanup' EXIT
  SINK_S3=http://127.0.0.1:$1
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && break; sleep 0.1; done
}

# Timing and /usr/bin/time -v figures.
now() { date +%s.%N; }
peak_mib() { awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); printf "%d", $2 / 1024}' "$1"; }
cpu_s() { awk -F: '/(User|System) time \(seconds\)/ {s += $2} END {printf "%.1f", s}' "$1"; }

# produce_events BIN TOPIC: COUNT Debezium events (seed 7) to a new topic of PARTITIONS partitions
# ($OUT/produce.log), BAD_PERCENT of them (default 0) sent as bad records; sets COUNT to what was
# produced (a final delete may add its tombstone), tombstones to how many of them are tombstones
# and bad to how many are bad.
produce_events() {
  "$1"/kps-cdc-gen --bootstrap "$KAFKA" --registry "$REGISTRY" --topic "$2" --partitions "$PARTITIONS" \
    --count "$COUNT" --seed 7 --bad-percent "${BAD_PERCENT:-0}" >"$OUT/produce.log"
  tombstones=$(grep -o '"tombstone": [0-9]*' "$OUT/produce.log" | grep -o '[0-9]*$' || echo 0)
  bad=$(grep -o '"bad": [0-9]*' "$OUT/produce.log" | grep -o '[0-9]*$' || echo 0)
  COUNT=$(head -1 "$OUT/produce.log" | awk '{print $2}')
}

# timed_sink BIN NAME GROUP PREFIX S3_ENDPOINT [OUTPUT_KEYS]: runs the sink (config
# $OUT/NAME.toml, log with /usr/bin/time figures $OUT/NAME.log) on $topic until GROUP's commits
# cover COUNT records, then stops it; prints the wall seconds from process start. Fails, with the
# head of the sink's log, when the sink exits first (a refused config, say).
timed_sink() {
  cat >"$OUT/$2.toml" <<TOML
[kafka]
bootstrap_servers = "$KAFKA"
group_id = "$3"
topics = ["$topic"]
[schema_registry]
url = "$REGISTRY"
[s3]
endpoint = "$5"
allow_http = true
[output]
prefix = "$4"
${6:-}
[flush]
max_records = $FLUSH
rotate_interval_ms = ${ROTATE_MS:-2000}
[metrics]
listen = ""
TOML
  local t0 t1 time_pid wait_pid ended
  t0=$(now)
  /usr/bin/time -v "$1"/kafka-parquet-sink run --config "$OUT/$2.toml" 2>"$OUT/$2.log" &
  time_pid=$!
  python3 scripts/peer_sink.py --bootstrap "$KAFKA" --registry "$REGISTRY" --topic "$topic" --group "$3" \
    --expect "$COUNT" --wait-committed --partitions "$PARTITIONS" >/dev/null &
  wait_pid=$!
  # Whichever ends first: the commits covering every record, or the sink (which then failed).
  wait -n -p ended "$wait_pid" "$time_pid" || true
  t1=$(now)
  if [ "$ended" = "$time_pid" ]; then
    kill "$wait_pid" 2>/dev/null || true
    printf '[bench] the sink (%s) exited before committing every record; its log %s:\n' "$2" "$OUT/$2.log" >&2
    head -5 "$OUT/$2.log" >&2
    return 1
  fi
  pkill -TERM -P "$time_pid" || true
  wait "$time_pid" || true
  echo "$t1 - $t0" | bc
}
