#!/usr/bin/env bash
# Benchmarks the standalone server on this machine: builds `support-chat` and
# `chat-bench` in release mode, starts the server on a free port with a
# throw-away data directory and the rate limit off, measures the memory of
# idle connections, then runs the load test at each given rate, and stops
# the server on exit. With SWEEP=1 it runs `chat-bench sweep` instead of the
# idle and load runs: steps at rising rates until one fails, and the highest
# rate that passed.
#
# Usage: scripts/bench-standalone.sh [RATE ...]        (default: 1000)
#        SWEEP=1 scripts/bench-standalone.sh [RATE ...] (default: 1000, 2000, …)
#        COSTS=1 scripts/bench-standalone.sh [RATE ...] (what one message
#                costs the server: CPU, context switches, system calls,
#                bytes to storage, at each RATE)
# Environment: CONNECTIONS (10000), PAIRS (100), DURATION (20), WARMUP (3),
#              SKIP_IDLE=1 to skip the idle run, SKIP_BUILD=1 to reuse the
#              release binaries; for the sweep SESSIONS (200), STEP_SECONDS
#              (15), SWEEP_FROM (1000), SWEEP_STEP (1000), used when no RATE
#              is given.
# Exit status: non-zero when any run failed (lost, duplicated or
# out-of-order messages, failed connections, the bench behind its
# schedule); for the sweep, when no step passed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=lib/bench.sh
. scripts/lib/bench.sh

connections=${CONNECTIONS:-10000}
pairs=${PAIRS:-100}
duration=${DURATION:-20}
warmup=${WARMUP:-3}
rates=("$@")
if ! sweep_requested && [ ${#rates[@]} -eq 0 ]; then rates=(1000); fi

# Each connection is a descriptor in the server and one in the bench.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "==> open-file limit: $(ulimit -n)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((connections + 256)) ]; then
  echo "warning: $connections connections need an open-file limit above $((connections + 256))" >&2
fi

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "==> building support-chat and chat-bench (release)"
  cargo build --release -p support-chat -p chat-bench
fi
server_bin="$root/target/release/support-chat"
bench_bin="$root/target/release/chat-bench"

workdir=$(mktemp -d "${TMPDIR:-/tmp}/chat-bench.XXXXXX")
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then stop_processes "$server_pid"; fi
  rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

secret="bench-$(date +%s%N)-secret"
export JWT_SECRET="$secret"
echo "==> starting support-chat (data in $workdir)"
start_standalone "$workdir" RATE_LIMIT_PER_SEC=0 || exit 1

server_memory() {
  echo "server VmRSS: $(awk '/^VmRSS/ {print $2, $3}' "/proc/$server_pid/status")"
}
status=0
if sweep_requested; then
  run_sweep "$bench_bin" "$url" "" || status=1
  server_memory
elif costs_requested; then
  # The standalone server uses neither: counters of the machine's servers
  # would only add other users' traffic.
  for rate in "${rates[@]}"; do
    REDIS_URL="" DATABASE_URL="" run_costs "$bench_bin" "$url" "--pids server=$server_pid" \
      "$rate" "" || status=1
  done
else
  run_bench "$bench_bin" "$url" "$server_pid" "" "" server_memory || status=1
fi

server_survived "$workdir" || status=1
exit "$status"
