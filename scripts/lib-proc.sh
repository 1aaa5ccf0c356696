# Sourced by the scripts that stop what they started (stack.sh, kafka.sh, debezium.sh,
# azurite.sh, bench-peers.sh).
# stop_process PID SECONDS [SIGNAL]: sends SIGNAL (TERM) to PID, waits up to SECONDS for it to
# exit, then kills it; fails (status 1) when PID was not running.
stop_process() {
  local pid=$1 tenths=$(($2 * 10)) sig=${3:-TERM} i
  kill -"$sig" "$pid" 2>/dev/null || return 1
  for ((i = 0; i < tenths; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}
