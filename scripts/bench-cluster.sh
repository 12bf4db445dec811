#!/usr/bin/env bash
# Benchmarks a cluster of gateways and workers (NODES of each, 2) on this
# machine: builds the release binaries, creates a fresh database on
# DATABASE_URL's server and a fresh key prefix on REDIS_URL (defaults: the
# local servers), starts the processes with the rate limit off, measures
# the memory of idle connections spread over the gateways, then runs the load test at each
# given rate with customers and their agents on different gateways, and
# stops everything on exit. With SWEEP=1 it runs `chat-bench sweep` instead
# of the idle and load runs: steps at rising rates until one fails, and the
# highest rate that passed.
#
# Usage: scripts/bench-cluster.sh [RATE ...]          (default: 1000)
#        SWEEP=1 scripts/bench-cluster.sh [RATE ...]  (default: 1000, 2000, …)
#        COSTS=1 scripts/bench-cluster.sh [RATE ...]  (what one message costs
#                each process, Redis and PostgreSQL, at each RATE; unless
#                DATABASE_URL is given, against a PostgreSQL of its own,
#                durable like a production server's defaults and with
#                pg_stat_statements, for the statements each message runs)
# Environment: REDIS_URL, DATABASE_URL (a server where the user may create
#              databases), CONNECTIONS (10000), PAIRS (100), DURATION (20),
#              WARMUP (3), SKIP_IDLE=1, SKIP_BUILD=1, NODES (gateways and
#              workers, 2 of each), TOKIO_WORKER_THREADS
#              (runtime threads per process; unset: one per CPU); for the sweep SESSIONS
#              (200), STEP_SECONDS (15), SWEEP_FROM (1000), SWEEP_STEP (1000),
#              used when no RATE is given.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=lib/bench.sh
. scripts/lib/bench.sh
# shellcheck source=lib/servers.sh
. scripts/lib/servers.sh

redis_url=${REDIS_URL:-redis://127.0.0.1:6379}
admin_url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
# The costs' own PostgreSQL: only its processes are counted, and it can load
# pg_stat_statements, which a running server cannot without a restart.
own_postgres=0
if costs_requested && [ -z "${DATABASE_URL:-}" ]; then own_postgres=1; fi
connections=${CONNECTIONS:-10000}
pairs=${PAIRS:-100}
nodes=${NODES:-2}
duration=${DURATION:-20}
warmup=${WARMUP:-3}
rates=("$@")
if ! sweep_requested && [ ${#rates[@]} -eq 0 ]; then rates=(1000); fi

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "==> building gateway, worker and chat-bench (release)"
  cargo build --release -p chat-gateway -p chat-worker -p chat-bench
fi
bin="$root/target/release"

workdir=$(mktemp -d "${TMPDIR:-/tmp}/chat-bench-cluster.XXXXXX")
name_run_data bench "$admin_url"
pids=()
cleanup() {
  stop_processes "${pids[@]}"
  # The own PostgreSQL goes away with the database on it.
  local shared_database=$database
  if [ "$own_postgres" = 1 ]; then
    stop_throwaway_postgres
    shared_database=""
  fi
  drop_run_data "$admin_url" "$shared_database" "$redis_url" "$prefix"
  rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$own_postgres" = 1 ]; then
  echo "==> starting a PostgreSQL with pg_stat_statements (fsync and synchronous_commit on)"
  require_server_tools postgres
  chmod 755 "$workdir"
  start_throwaway_postgres "$workdir/postgres" fsync=on synchronous_commit=on full_page_writes=on \
    wal_sync_method=fdatasync shared_preload_libraries=pg_stat_statements pg_stat_statements.track=all
  admin_url=$THROWAWAY_PG_URL
  database_url=$(database_on "$admin_url" "$database")
fi
psql "$admin_url" -qc "CREATE DATABASE $database" >/dev/null
if [ "$own_postgres" = 1 ]; then
  psql "$database_url" -qc "CREATE EXTENSION pg_stat_statements" >/dev/null
fi
export REDIS_URL="$redis_url" DATABASE_URL="$database_url" KEY_PREFIX="$prefix"
export JWT_SECRET="bench-$(date +%s%N)-secret" RATE_LIMIT_PER_SEC=0 HOST=127.0.0.1 RUST_LOG="${RUST_LOG:-warn}"
# The processes run as a user starts them: TOKIO_WORKER_THREADS, when set,
# passes through to try other thread counts.

start_cluster_processes "$bin" "$workdir" "$nodes" "$nodes"
url_list=$(IFS=,; echo "${urls[*]}")
pid_list=$(IFS=,; echo "${gateway_pids[*]}")
echo "==> gateways at $url_list (pids $pid_list), database $database, prefix $prefix"

status=0
if sweep_requested; then
  run_sweep "$bin/chat-bench" "$url_list" ", customers and agents on different gateways" || status=1
elif costs_requested; then
  worker_list=$(IFS=,; echo "${worker_pids[*]}")
  for rate in "${rates[@]}"; do
    # PostgreSQL's processes: those of the server started here, else every
    # postgres on the machine (on a machine running nothing else, this
    # run's).
    if [ "$own_postgres" = 1 ]; then
      postgres_list=$(throwaway_postgres_pids)
    else
      postgres_list=$(pgrep -d, -x postgres || true)
    fi
    run_costs "$bin/chat-bench" "$url_list" \
      "--pids gateway=$pid_list --pids worker=$worker_list --pids postgres=$postgres_list" \
      "$rate" ", customers and agents on different gateways" || status=1
  done
else
  run_bench "$bin/chat-bench" "$url_list" "$pid_list" " over both gateways" \
    ", customers and agents on different gateways" "" || status=1
fi
processes_survived "$workdir" "${pids[@]}" || status=1
exit "$status"
