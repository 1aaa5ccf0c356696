# Sourced by the bench scripts: the Docker image's glibc malloc settings (Dockerfile; fewer
# arenas, large blocks mmapped and returned; MALLOC_TUNING=off keeps glibc's defaults), and the
# local stack, started here and stopped on exit unless it was already running.
if [ "${MALLOC_TUNING:-on}" = on ]; then
  export MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-2} MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-131072} MALLOC_TRIM_THRESHOLD_=${MALLOC_TRIM_THRESHOLD_:-131072}
fi
started_stack=""
if scripts/stack.sh status | grep -q down; then
  scripts/stack.sh up
  started_stack=1
fi
bench_cleanup() { if [ -n "$started_stack" ]; then scripts/stack.sh down; fi; }
trap bench_cleanup EXIT
