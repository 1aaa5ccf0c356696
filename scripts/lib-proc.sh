# Sourced by the scripts that stop what they started (stack.sh, kafka.sh, debezium.sh,
# azurite.sh, fake-gcs.sh, bench-peers.sh).
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

# stop_pidfile FILE SECONDS [SIGNAL]: stop_process on the PID that FILE holds, then removes FILE;
# fails (status 1) when there was no FILE or its process was not running.
stop_pidfile() {
  [ -f "$1" ] || return 1
  local rc=0
  stop_process "$(cat "$1")" "$2" "${3:-TERM}" || rc=1
  rm -f "$1"
  return "$rc"
}
