#!/usr/bin/env bash
# The automatic-assignment benchmark: a cluster of NODES gateways and
# workers (2 of each) with ASSIGNMENT=auto and POOL_CAPACITY=CAPACITY (10),
# everything else at its defaults; AGENTS (100) agents of one pool connect
# over the gateways, then SESSIONS (1000) customers open a session each at
# RATE (100) per second on an open-loop schedule, and `chat-bench assign`
# reports how long each session took from its due time to its assignment,
# what never got one, the generator's lag, the load spread over the agents
# (from the agent directory) and the CPU of the gateways, workers, Redis,
# PostgreSQL and the bench over the run.
#
# Builds the release binaries, creates a fresh database on DATABASE_URL's
# server and a fresh key prefix on REDIS_URL (defaults: the local servers),
# and stops and removes everything it started on exit.
#
# Usage: scripts/bench-assign.sh
# Environment: REDIS_URL, DATABASE_URL (a server where the user may create
#              databases), NODES (2), AGENTS (100), SESSIONS (1000), RATE
#              (100/s), CAPACITY (10), TIMEOUT (30 s after the last due
#              creation), SKIP_BUILD=1, TOKIO_WORKER_THREADS.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=lib/bench.sh
. scripts/lib/bench.sh
# shellcheck source=lib/servers.sh
. scripts/lib/servers.sh

redis_url=${REDIS_URL:-redis://127.0.0.1:6379}
admin_url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
nodes=${NODES:-2}
agents=${AGENTS:-100}
sessions=${SESSIONS:-1000}
rate=${RATE:-100}
capacity=${CAPACITY:-10}
timeout=${TIMEOUT:-30}

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "==> building gateway, worker and chat-bench (release)"
  cargo build --release -p chat-gateway -p chat-worker -p chat-bench
fi
bin="$root/target/release"

workdir=$(mktemp -d "${TMPDIR:-/tmp}/chat-bench-assign.XXXXXX")
name_run_data assign "$admin_url"
pids=()
cleanup() {
  stop_processes "${pids[@]}"
  drop_run_data "$admin_url" "$database" "$redis_url" "$prefix"
  rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

psql "$admin_url" -qc "CREATE DATABASE $database" >/dev/null
export REDIS_URL="$redis_url" DATABASE_URL="$database_url" KEY_PREFIX="$prefix"
export JWT_SECRET="assign-$(date +%s%N)-secret" HOST=127.0.0.1 RUST_LOG="${RUST_LOG:-warn}"
# The two settings under test; every other one keeps its default (the
# per-socket and REST budgets included: each customer writes once).
export ASSIGNMENT=auto POOL_CAPACITY="$capacity"

start_cluster_processes "$bin" "$workdir" "$nodes" "$nodes"
url_list=$(IFS=,; echo "${urls[*]}")
gateway_list=$(IFS=,; echo "${gateway_pids[*]}")
worker_list=$(IFS=,; echo "${worker_pids[*]}")
# Redis: the server REDIS_URL names. PostgreSQL: the postmaster of the
# server DATABASE_URL names (the parent of its checkpointer) with its
# children, read at each snapshot, so backends opened during the run count.
redis_pid=$(redis-cli -u "$redis_url" info server 2>/dev/null | tr -d '\r' | sed -n 's/^process_id://p')
checkpointer=$(psql "$admin_url" -Atc "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'" 2>/dev/null || true)
postmaster=""
if [ -n "$checkpointer" ]; then postmaster=$(ps -o ppid= -p "$checkpointer" 2>/dev/null | tr -d ' ' || true); fi
procs="gateway=$gateway_list;worker=$worker_list"
[ -n "$redis_pid" ] && procs+=";redis=$redis_pid"
[ -n "$postmaster" ] && procs+=";postgres=$postmaster+"
echo "==> gateways at $url_list (pids $gateway_list), workers $worker_list, database $database, prefix $prefix"
echo "==> ASSIGNMENT=$ASSIGNMENT POOL_CAPACITY=$POOL_CAPACITY; watching $procs"

status=0
echo
echo "==> assign: $agents agents, $sessions sessions at $rate/s over $nodes gateways"
as_client "$bin/chat-bench" assign --url "$url_list" --agents "$agents" --sessions "$sessions" --rate "$rate" \
  --capacity "$capacity" --timeout "$timeout" --procs "$procs" || status=1
processes_survived "$workdir" "${pids[@]}" || status=1
# What the servers logged at warn and above (RUST_LOG), for a run that
# went wrong; the logs go with the work directory.
for log in "$workdir"/*.err; do
  lines=$(grep -c . "$log" || true)
  if [ "$lines" -gt 0 ]; then
    echo "==> $(basename "$log" .err) logged $lines line(s); the last ones:"
    tail -5 "$log"
  fi
done
exit "$status"
