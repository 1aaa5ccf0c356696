# Sourced by scripts/kafka.sh and scripts/debezium.sh (which define log()).
# wait_ready NAME PIDFILE LOGFILE SECONDS CHECK...: polls CHECK every 0.1 s until it succeeds;
# fails with the last lines of LOGFILE when the process of PIDFILE exits or the time runs out.
wait_ready() {
  local name=$1 pidfile=$2 logfile=$3 seconds=$4 i
  shift 4
  for ((i = 0; i < seconds * 10; i++)); do
    if "$@"; then return 0; fi
    kill -0 "$(cat "$pidfile")" 2>/dev/null || { tail -n 40 "$logfile" >&2; log "$name exited"; exit 1; }
    sleep 0.1
  done
  tail -n 40 "$logfile" >&2
  log "$name was not ready within $seconds s"
  exit 1
}
