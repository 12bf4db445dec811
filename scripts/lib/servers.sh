# Throwaway Redis and PostgreSQL servers for scripts/test and
# scripts/cluster-up, started from the installed binaries on free loopback
# ports, with their files in a directory of the caller's. Sourced, not run.
#
# PostgreSQL refuses to run as root: under root its tools run as the
# `postgres` user, who then owns the server's directory.

SERVERS_INSTALL_HINT="Install them with: apt-get install redis-server postgresql"

# The directory holding initdb and pg_ctl: the one on the PATH, else the
# newest under /usr/lib/postgresql. Prints nothing when there is none.
pg_bin_dir() {
  local initdb dir
  initdb=$(command -v initdb 2>/dev/null || true)
  if [ -n "$initdb" ] && [ -x "$(dirname "$initdb")/pg_ctl" ]; then
    dirname "$initdb"
    return
  fi
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
      echo "$dir"
      return
    fi
  done
}

# psql, from the PATH or beside the server binaries.
psql_bin() {
  local dir
  if command -v psql >/dev/null 2>&1; then
    command -v psql
    return
  fi
  dir=$(pg_bin_dir)
  if [ -n "$dir" ] && [ -x "$dir/psql" ]; then
    echo "$dir/psql"
  fi
}

# Fails with the install hint unless the named tools are available:
# `redis` (redis-server), `postgres` (initdb and pg_ctl), `psql`.
require_server_tools() {
  local tool missing=()
  for tool in "$@"; do
    case "$tool" in
      redis) command -v redis-server >/dev/null 2>&1 || missing+=("redis-server") ;;
      postgres) [ -n "$(pg_bin_dir)" ] || missing+=("initdb and pg_ctl") ;;
      psql) [ -n "$(psql_bin)" ] || missing+=("psql") ;;
    esac
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "$(basename "$0"): ${missing[*]} not found. $SERVERS_INSTALL_HINT" >&2
    echo "(or point REDIS_URL and DATABASE_URL at running servers)" >&2
    return 1
  fi
}

# A loopback port nothing listens on right now.
free_port() {
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  echo "no free port found" >&2
  return 1
}

# Whether a Redis server answers PING on 127.0.0.1:$1.
redis_answers() {
  local reply
  reply=$(
    (
      exec 3<>"/dev/tcp/127.0.0.1/$1" &&
        printf 'PING\r\n' >&3 &&
        read -r -t 2 line <&3 &&
        printf '%s' "$line"
    ) 2>/dev/null
  ) || return 1
  [ "${reply%$'\r'}" = "+PONG" ]
}

# Starts redis-server in directory $1 (no persistence) and sets
# THROWAWAY_REDIS_PID and THROWAWAY_REDIS_URL.
start_throwaway_redis() {
  local dir=$1 port attempt
  mkdir -p "$dir"
  for attempt in 1 2 3; do
    port=$(free_port)
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
      --dir "$dir" --logfile "$dir/redis.log" --daemonize no &
    THROWAWAY_REDIS_PID=$!
    for _ in $(seq 1 100); do
      if redis_answers "$port"; then
        THROWAWAY_REDIS_URL="redis://127.0.0.1:$port"
        return 0
      fi
      kill -0 "$THROWAWAY_REDIS_PID" 2>/dev/null || break
      sleep 0.1
    done
    stop_throwaway_redis
    echo "redis-server did not start on port $port (attempt $attempt):" >&2
    tail -n 5 "$dir/redis.log" >&2 2>/dev/null || true
  done
  return 1
}

stop_throwaway_redis() {
  if [ -n "${THROWAWAY_REDIS_PID:-}" ]; then
    kill -TERM "$THROWAWAY_REDIS_PID" 2>/dev/null || true
    wait "$THROWAWAY_REDIS_PID" 2>/dev/null || true
    THROWAWAY_REDIS_PID=""
  fi
}

# Runs a PostgreSQL server tool as the user the server runs as.
_pg_tool() {
  local tool=$1
  shift
  if [ "$(id -u)" = 0 ]; then
    (cd "$THROWAWAY_PG_DIR" && runuser -u postgres -- "$THROWAWAY_PG_BIN/$tool" "$@")
  else
    "$THROWAWAY_PG_BIN/$tool" "$@"
  fi
}

# Creates and starts a PostgreSQL cluster in directory $1 (which must not
# exist yet) and sets THROWAWAY_PG_URL (its `postgres` database, user
# `postgres`, no password) and THROWAWAY_PG_PID (the postmaster's). It runs
# for tests, without durability (fsync, synchronous_commit and
# full_page_writes off); further NAME=VALUE arguments are server settings
# on top of those, the later one winning, e.g. `fsync=on`.
start_throwaway_postgres() {
  local port attempt setting settings=""
  THROWAWAY_PG_DIR=$1
  shift
  for setting in "$@"; do settings+=" -c $setting"; done
  THROWAWAY_PG_BIN=$(pg_bin_dir)
  mkdir -p "$THROWAWAY_PG_DIR"
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$THROWAWAY_PG_DIR"
  fi
  if ! _pg_tool initdb -D "$THROWAWAY_PG_DIR/data" -A trust -U postgres --no-sync -E UTF8 \
    >"$THROWAWAY_PG_DIR/initdb.log" 2>&1; then
    echo "initdb failed:" >&2
    cat "$THROWAWAY_PG_DIR/initdb.log" >&2
    return 1
  fi
  for attempt in 1 2 3; do
    port=$(free_port)
    if _pg_tool pg_ctl -D "$THROWAWAY_PG_DIR/data" -l "$THROWAWAY_PG_DIR/server.log" -w -t 60 \
      -o "-p $port -k $THROWAWAY_PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off$settings" \
      start >/dev/null; then
      THROWAWAY_PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
      THROWAWAY_PG_PID=$(head -n 1 "$THROWAWAY_PG_DIR/data/postmaster.pid")
      return 0
    fi
    echo "PostgreSQL did not start on port $port (attempt $attempt):" >&2
    tail -n 5 "$THROWAWAY_PG_DIR/server.log" >&2 2>/dev/null || true
  done
  return 1
}

# Stops the server of `start_throwaway_postgres` by its postmaster's PID: a
# fast shutdown (SIGINT), up to 30 s to finish, then an immediate one
# (SIGQUIT).
stop_throwaway_postgres() {
  local pid=${THROWAWAY_PG_PID:-}
  if [ -n "$pid" ]; then
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -QUIT "$pid" 2>/dev/null; then
      for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
    fi
    THROWAWAY_PG_PID=""
  elif [ -n "${THROWAWAY_PG_DIR:-}" ] && [ -f "$THROWAWAY_PG_DIR/data/postmaster.pid" ]; then
    _pg_tool pg_ctl -D "$THROWAWAY_PG_DIR/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
  fi
}

# The throwaway server's processes, comma-separated: its postmaster and the
# postmaster's children (backends, checkpointer, WAL writer, …).
throwaway_postgres_pids() {
  local children
  children=$(pgrep -d, -P "$THROWAWAY_PG_PID" || true)
  echo "$THROWAWAY_PG_PID${children:+,$children}"
}

# Starts a Redis Cluster of MASTERS masters with REPLICAS replicas each in
# directory $1 (one redis-server per node, no persistence, free ports for
# clients and for the cluster bus), forms it with `redis-cli --cluster
# create` and waits (up to 30 s) until every node reports cluster_state:ok.
# Sets THROWAWAY_REDIS_CLUSTER_PIDS (array) and
# THROWAWAY_REDIS_CLUSTER_NODES (127.0.0.1:P1,127.0.0.1:P2,…, the form
# REDIS_CLUSTER_NODES takes). Stop it with stop_throwaway_redis_cluster.
start_throwaway_redis_cluster() {
  local dir=$1 masters=$2 replicas=$3 count port bus n deadline pid
  local addresses=() ports=()
  count=$((masters * (1 + replicas)))
  mkdir -p "$dir"
  THROWAWAY_REDIS_CLUSTER_PIDS=()
  for n in $(seq 1 "$count"); do
    port=$(free_port)
    bus=$(free_port)
    while [ "$bus" = "$port" ]; do bus=$(free_port); done
    redis-server --port "$port" --cluster-port "$bus" --bind 127.0.0.1 --cluster-announce-ip 127.0.0.1 \
      --cluster-enabled yes --cluster-config-file "$dir/nodes-$port.conf" --cluster-node-timeout 1000 \
      --appendonly no --save '' --dir "$dir" --logfile "$dir/redis-$port.log" --daemonize no &
    THROWAWAY_REDIS_CLUSTER_PIDS+=($!)
    ports+=("$port")
    addresses+=("127.0.0.1:$port")
  done
  deadline=$((SECONDS + 30))
  for n in "${!ports[@]}"; do
    until redis_answers "${ports[$n]}"; do
      pid=${THROWAWAY_REDIS_CLUSTER_PIDS[$n]}
      if ! kill -0 "$pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
        echo "redis-server on port ${ports[$n]} did not start:" >&2
        tail -n 5 "$dir/redis-${ports[$n]}.log" >&2 2>/dev/null || true
        return 1
      fi
      sleep 0.1
    done
  done
  if ! redis-cli --cluster create "${addresses[@]}" --cluster-replicas "$replicas" --cluster-yes \
    >"$dir/cluster-create.out" 2>&1; then
    echo "redis-cli --cluster create failed:" >&2
    tail -n 20 "$dir/cluster-create.out" >&2
    return 1
  fi
  for port in "${ports[@]}"; do
    until redis-cli -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; do
      if [ "$SECONDS" -ge "$deadline" ]; then
        echo "the Redis Cluster did not reach cluster_state:ok within 30 s (node $port)" >&2
        return 1
      fi
      sleep 0.1
    done
  done
  THROWAWAY_REDIS_CLUSTER_NODES=$(IFS=,; echo "${addresses[*]}")
}

# Stops the nodes of start_throwaway_redis_cluster by their PIDs.
stop_throwaway_redis_cluster() {
  local pid
  for pid in "${THROWAWAY_REDIS_CLUSTER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${THROWAWAY_REDIS_CLUSTER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  THROWAWAY_REDIS_CLUSTER_PIDS=()
}
