#!/usr/bin/env bash
# The scale run: CONNECTIONS (100,000) authenticated idle sockets over
# enough gateways that none holds more than about 16,000 (GATEWAYS, default
# ceil(CONNECTIONS / 16000)), with WORKERS (2) workers, while pool
# broadcasts and a live chat run through them (`chat-bench scale`).
# Builds the release binaries, creates a fresh database on DATABASE_URL's
# server (unset: a throwaway PostgreSQL of its own) and a fresh key prefix
# on REDIS_URL (default: the local server), or with REDIS_CLUSTER=1 on a
# throwaway Redis Cluster of 3 masters (REDIS_REPLICAS replicas each, 1);
# starts the processes with the rate limit off, runs the measurement and
# prints its summary, and stops everything it started on exit.
#
# Every process, the generator's helpers included, stays under this
# machine's descriptor limit: the script raises its soft limit to the hard
# one for its children, and the generator holds its customers in helper
# processes of PER_PROCESS (15,000) sockets each.
#
# Usage: scripts/bench-scale.sh
#        CONNECTIONS=20000 scripts/bench-scale.sh
#        REDIS_CLUSTER=1 scripts/bench-scale.sh
# Environment: CONNECTIONS (100000), AGENTS (1000, part of CONNECTIONS),
#              GATEWAYS, WORKERS (2), PER_PROCESS (15000), SOURCES (source
#              addresses 127.0.0.2 upwards, default one per 12,500
#              sockets, at least 2), CONCURRENCY (200 per process),
#              BROADCAST_RATE (2/s), CHAT_PAIRS (100), CHAT_RATE (200 msg/s),
#              DURATION (20), WARMUP (3), PARTITIONS (16), REDIS_URL,
#              REDIS_CLUSTER=1, REDIS_REPLICAS (1), DATABASE_URL,
#              SKIP_BUILD=1, TOKIO_WORKER_THREADS.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=lib/bench.sh
. scripts/lib/bench.sh
# shellcheck source=lib/servers.sh
. scripts/lib/servers.sh

connections=${CONNECTIONS:-100000}
agents=${AGENTS:-1000}
gateways=${GATEWAYS:-$(((connections + 15999) / 16000))}
workers=${WORKERS:-2}
per_process=${PER_PROCESS:-15000}
sources=${SOURCES:-$(((connections + 12499) / 12500))}
if [ "$sources" -lt 2 ]; then sources=2; fi
own_postgres=0
if [ -z "${DATABASE_URL:-}" ]; then own_postgres=1; fi
redis_cluster=${REDIS_CLUSTER:-0}

# As many descriptors as the machine lets every child have.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
limit=$(ulimit -n)
per_gateway=$(((connections + 2 * ${CHAT_PAIRS:-100} + gateways - 1) / gateways))
if [ "$limit" != unlimited ]; then
  if [ $((per_gateway + 500)) -gt "$limit" ]; then
    echo "$(basename "$0"): $per_gateway sockets per gateway exceed the descriptor limit $limit; raise GATEWAYS" >&2
    exit 2
  fi
  if [ $((per_process + 500)) -gt "$limit" ]; then
    echo "$(basename "$0"): PER_PROCESS=$per_process exceeds the descriptor limit $limit" >&2
    exit 2
  fi
fi

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "==> building gateway, worker and chat-bench (release)"
  cargo build --release -p chat-gateway -p chat-worker -p chat-bench
fi
bin="$root/target/release"

workdir=$(mktemp -d "${TMPDIR:-/tmp}/chat-bench-scale.XXXXXX")
chmod 755 "$workdir"
pids=()
redis_url=${REDIS_URL:-redis://127.0.0.1:6379}
admin_url=${DATABASE_URL:-}
name_run_data scale "$admin_url"
cleanup() {
  stop_processes "${pids[@]}"
  # A throwaway Redis Cluster or PostgreSQL goes away with the keys or the
  # database on it.
  local shared_prefix=$prefix shared_database=$database
  if [ "$redis_cluster" = 1 ]; then
    stop_throwaway_redis_cluster
    shared_prefix=""
  fi
  if [ "$own_postgres" = 1 ]; then
    stop_throwaway_postgres
    shared_database=""
  fi
  drop_run_data "$admin_url" "$shared_database" "$redis_url" "$shared_prefix"
  rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$own_postgres" = 1 ]; then
  echo "==> starting a throwaway PostgreSQL"
  require_server_tools postgres
  start_throwaway_postgres "$workdir/postgres"
  admin_url=$THROWAWAY_PG_URL
  database_url=$(database_on "$admin_url" "$database")
fi
psql "$admin_url" -qc "CREATE DATABASE $database" >/dev/null

unset REDIS_URL REDIS_CLUSTER_NODES
if [ "$redis_cluster" = 1 ]; then
  echo "==> starting a Redis Cluster: 3 masters, ${REDIS_REPLICAS:-1} replica(s) each"
  require_server_tools redis
  start_throwaway_redis_cluster "$workdir/redis-cluster" 3 "${REDIS_REPLICAS:-1}"
  export REDIS_CLUSTER_NODES="$THROWAWAY_REDIS_CLUSTER_NODES"
  redis_pids=$(IFS=,; echo "${THROWAWAY_REDIS_CLUSTER_PIDS[*]}")
  backplane="Redis Cluster $REDIS_CLUSTER_NODES"
else
  export REDIS_URL="$redis_url"
  redis_pids=$(pgrep -d, -x redis-server || true)
  backplane="Redis $REDIS_URL"
fi
export DATABASE_URL="$database_url" KEY_PREFIX="$prefix" PARTITIONS="${PARTITIONS:-16}"
export JWT_SECRET="scale-$(date +%s%N)-secret" RATE_LIMIT_PER_SEC=0 HOST=127.0.0.1 RUST_LOG="${RUST_LOG:-warn}"

start_cluster_processes "$bin" "$workdir" "$workers" "$gateways"
url_list=$(IFS=,; echo "${urls[*]}")
gateway_list=$(IFS=,; echo "${gateway_pids[*]}")
worker_list=$(IFS=,; echo "${worker_pids[*]}")
if [ "$own_postgres" = 1 ]; then
  postgres_list=$(throwaway_postgres_pids)
else
  postgres_list=$(pgrep -d, -x postgres || true)
fi
procs="worker=$worker_list"
[ -n "$redis_pids" ] && procs+=";redis=$redis_pids"
[ -n "$postgres_list" ] && procs+=";postgres=$postgres_list"
echo "==> $gateways gateways (pids $gateway_list), $workers workers, $backplane, database $database"
echo "==> descriptor limit per process $limit; about $per_gateway sockets per gateway"

status=0
"$bin/chat-bench" scale --url "$url_list" --pid "$gateway_list" --procs "$procs" \
  --connections "$connections" --agents "$agents" --per-process "$per_process" --sources "$sources" \
  --concurrency "${CONCURRENCY:-200}" --broadcast-rate "${BROADCAST_RATE:-2}" \
  --chat-pairs "${CHAT_PAIRS:-100}" --chat-rate "${CHAT_RATE:-200}" \
  --duration "${DURATION:-20}" --warmup "${WARMUP:-3}" || status=1
processes_survived "$workdir" "${pids[@]}" || status=1
exit "$status"
