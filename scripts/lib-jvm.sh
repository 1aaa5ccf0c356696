# Sourced by scripts/kafka.sh and scripts/debezium.sh (which define log()).
# wait_ready NAME PIDFILE LOGFILE SECONDS CHECK...: polls CHECK every 0.1 s until it succeeds;
# fails with LOGFILE's first errors and last lines when the process of PIDFILE exits or the time
# runs out.
log_excerpt() { # logfile: the cause is in the first errors, a JVM's shutdown in the last lines
  grep -m 5 -E ' (ERROR|FATAL) |Exception' "$1" >&2 || true
  printf '...\n' >&2
  tail -n 20 "$1" >&2
}
wait_ready() {
  local name=$1 pidfile=$2 logfile=$3 seconds=$4 i
  shift 4
  for ((i = 0; i < seconds * 10; i++)); do
    if "$@"; then return 0; fi
    kill -0 "$(cat "$pidfile")" 2>/dev/null || { log_excerpt "$logfile"; log "$name exited"; exit 1; }
    sleep 0.1
  done
  log_excerpt "$logfile"
  log "$name was not ready within $seconds s"
  exit 1
}
