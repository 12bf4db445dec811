# What the benchmark scripts share: starting the standalone server or a
# cluster's processes and stopping them, finding the URL a server announced,
# naming and removing a cluster run's database and keys, checking that its
# processes survived, and running the idle
# and load measurements or the sweep. Sourced, not run; reads the caller's
# `connections`, `pairs`, `duration`, `warmup` and `rates`, and for the
# sweep the environment (see `run_sweep`).

# Stops the given processes: SIGTERM, up to 10 s each to exit, then SIGKILL.
stop_processes() {
  local pid
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  done
}

# Prints the URL in the line "NAME listening on http://…" of OUT, waiting up
# to 10 s for it; prints nothing when PID exited first or never said it.
announced_url() {
  local out=$1 pid=$2 name=$3 url=""
  for _ in $(seq 1 100); do
    url=$(sed -n "s/^$name listening on \(http:[^ ]*\).*/\1/p" "$out")
    [ -n "$url" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "$url"
}

# Names what a cluster run of KIND creates on the shared servers, unique
# to this run so that runs side by side or left over never meet: sets
# `database` (on ADMIN_URL's server), `database_url` (that database there)
# and `prefix` (for the Redis keys).
name_run_data() {
  local kind=$1 admin_url=$2
  database="chat_${kind}_$(date +%s)_$$"
  prefix="$kind$(date +%s)$$"
  # shellcheck disable=SC2034 # read by the caller
  database_url=$(database_on "$admin_url" "$database")
}

# Prints the URL of the database DATABASE on ADMIN_URL's server. A run that
# moves to a server of its own after naming its data keeps the name and
# takes the URL from here.
database_on() {
  local admin_url=$1 database=$2
  echo "${admin_url%/*}/$database"
}

# Removes what a cluster run created on the shared servers, as far as it
# can (a server that went away leaves nothing to do): the database DATABASE
# on ADMIN_URL's server and every key under PREFIX on REDIS_URL. An empty
# DATABASE or PREFIX skips that server, for a run whose database or keys
# live on a throwaway server that goes away with them.
drop_run_data() {
  local admin_url=$1 database=$2 redis_url=$3 prefix=$4
  if [ -n "$database" ]; then
    psql "$admin_url" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  if [ -n "$prefix" ]; then
    redis-cli -u "$redis_url" --scan --pattern "$prefix:*" 2>/dev/null | xargs -r redis-cli -u "$redis_url" del >/dev/null 2>&1 || true
  fi
}

# Whether every one of the PIDs still runs; when one died, says so with the
# end of the logs in WORKDIR and returns 1, since a run that lost a process
# measured something else than the cluster it started.
processes_survived() {
  local workdir=$1 pid status=0
  shift
  for pid in "$@"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "a process died during the run; see its log:" >&2
      tail -5 "$workdir"/*.err >&2
      status=1
    fi
  done
  return "$status"
}

# Runs a command as the load generator: at a higher CPU priority than the
# servers (GENERATOR_NICE, -10; 0 for none). The generator stands in for
# clients on machines of their own; sharing the cores, it would otherwise
# queue for one behind the servers' threads and fall behind its schedule,
# and a step would fail on the generator's lag with the servers still
# keeping up. With the priority, the servers are the ones that wait for a
# core, and that wait counts in their latency. A negative value needs root
# (or CAP_SYS_NICE); without it the command runs at the default priority.
as_client() {
  local nice=${GENERATOR_NICE:--10}
  if [ "$nice" != 0 ] && [ "$(nice -n "$nice" nice 2>/dev/null)" = "$nice" ]; then
    nice -n "$nice" "$@"
  else
    "$@"
  fi
}

# Runs the idle measurement (unless SKIP_IDLE=1) against URLS
# (comma-separated) with the servers' PIDS (comma-separated), then the load
# test at each rate; WHERE ends the headings ("" or ", …"), and AFTER_LOAD,
# when not empty, is a command run after each load. Returns 1 when any run
# failed.
run_bench() {
  local bench=$1 urls=$2 pids=$3 idle_where=$4 load_where=$5 after_load=$6
  local status=0 rate
  if [ "${SKIP_IDLE:-0}" != 1 ]; then
    echo
    echo "==> idle: $connections connections$idle_where"
    "$bench" idle --url "$urls" --connections "$connections" --pid "$pids" --hold 5 || status=1
  fi
  for rate in "${rates[@]}"; do
    echo
    echo "==> load: $pairs pairs at $rate msg/s for ${duration} s$load_where"
    as_client "$bench" load --url "$urls" --pairs "$pairs" --rate "$rate" --duration "$duration" --warmup "$warmup" \
      || status=1
    if [ -n "$after_load" ]; then $after_load; fi
  done
  return "$status"
}

# Whether the caller asked for the sweep instead of the idle and load runs
# (SWEEP=1).
sweep_requested() {
  [ "${SWEEP:-0}" = 1 ]
}

# Runs `chat-bench sweep` against URLS (comma-separated): the rates given to
# the script (`rates`, lowest first) when there are any, else SWEEP_FROM
# (1000) upwards in steps of SWEEP_STEP (1000); SESSIONS (200) pairs set up
# once, STEP_SECONDS (15) measured per step. WHERE ends the heading ("" or
# ", …"). Returns 1 when no step passed.
run_sweep() {
  local bench=$1 urls=$2 where=$3
  local sessions=${SESSIONS:-200} step_seconds=${STEP_SECONDS:-15}
  local rate_args
  if [ ${#rates[@]} -gt 0 ]; then
    rate_args=(--rates "$(IFS=,; echo "${rates[*]}")")
  else
    rate_args=(--from "${SWEEP_FROM:-1000}" --step "${SWEEP_STEP:-1000}")
  fi
  echo
  echo "==> sweep: $sessions sessions, ${step_seconds} s per step$where"
  as_client "$bench" sweep --url "$urls" --sessions "$sessions" --step-seconds "$step_seconds" "${rate_args[@]}"
}

# Starts the release `support-chat` in the background over the data
# directory $1, with the given VAR=value settings on top of a free port on
# loopback; sets `server_pid` and `url`, or prints the server's errors and
# returns 1 when it does not come up.
start_standalone() {
  local workdir=$1
  shift
  env PORT=0 HOST=127.0.0.1 CHAT_DATA_DIR="$workdir" RUST_LOG="${RUST_LOG:-warn}" "$@" \
    "$server_bin" >"$workdir/server.out" 2>"$workdir/server.err" &
  server_pid=$!
  url=$(announced_url "$workdir/server.out" "$server_pid" support-chat)
  if [ -z "$url" ]; then
    echo "the server did not start:" >&2
    cat "$workdir/server.err" >&2
    return 1
  fi
  echo "==> server pid $server_pid at $url"
}

# Starts WORKERS workers, then GATEWAYS gateways, of BIN with the exported
# settings, each on ports of its own and logging into WORKDIR. Fills the
# caller's arrays worker_pids, gateway_pids and urls (each gateway's
# announced URL), and adds every PID to pids for stop_processes; exits when
# a gateway does not start.
start_cluster_processes() {
  local bin=$1 workdir=$2 workers=$3 gateways=$4 n pid url
  worker_pids=()
  for n in $(seq 1 "$workers"); do
    ADMIN_PORT=0 "$bin/worker" >"$workdir/worker$n.out" 2>"$workdir/worker$n.err" &
    pids+=($!)
    worker_pids+=($!)
  done
  urls=()
  gateway_pids=()
  for n in $(seq 1 "$gateways"); do
    PORT=0 "$bin/gateway" >"$workdir/gateway$n.out" 2>"$workdir/gateway$n.err" &
    pid=$!
    pids+=("$pid")
    gateway_pids+=("$pid")
    url=$(announced_url "$workdir/gateway$n.out" "$pid" gateway)
    if [ -z "$url" ]; then
      echo "gateway $n did not start:" >&2
      cat "$workdir/gateway$n.err" >&2
      exit 1
    fi
    urls+=("$url")
  done
}

# Whether the standalone server of `start_standalone` still runs; when it
# died, says so with the end of its log and returns 1.
server_survived() {
  local workdir=$1
  if kill -0 "$server_pid" 2>/dev/null; then
    return 0
  fi
  echo "the server died during the run:" >&2
  tail -20 "$workdir/server.err" >&2
  return 1
}

# Whether the caller asked what each message costs (COSTS=1).
costs_requested() {
  [ "${COSTS:-0}" = 1 ]
}

# Runs one load step at RATE against URLS and prints, beside the bench's
# report, what every process spent per message: CPU and context switches of
# each kind named in PID_SPECS ("--pids gateway=1,2 --pids worker=3"), and
# with REDIS_URL and DATABASE_URL set, Redis's commands and bytes and
# PostgreSQL's commits and row changes, and its statements where the
# database has pg_stat_statements (scripts/lib/costs.py).
run_costs() {
  local bench=$1 urls=$2 pid_specs=$3 rate=$4 where=$5
  local work before after out messages
  work=$(mktemp -d "${TMPDIR:-/tmp}/chat-costs.XXXXXX")
  before=$work/before.json after=$work/after.json out=$work/load.txt
  local backing=()
  [ -n "${REDIS_URL:-}" ] && backing+=(--redis "$REDIS_URL")
  [ -n "${DATABASE_URL:-}" ] && backing+=(--database "$DATABASE_URL")
  echo
  echo "==> costs: $pairs pairs at $rate msg/s for ${duration} s$where"
  # shellcheck disable=SC2086 # PID_SPECS is a list of flags
  python3 "$root/scripts/lib/costs.py" snapshot $pid_specs "${backing[@]}" >"$before"
  local started=$SECONDS status=0
  local TIMEFORMAT='%U %S'
  { time as_client "$bench" load --url "$urls" --pairs "$pairs" --rate "$rate" --duration "$duration" \
      --warmup "$warmup" >"$out"; } 2>"$work/bench-cpu" || status=1
  # shellcheck disable=SC2086
  python3 "$root/scripts/lib/costs.py" snapshot $pid_specs "${backing[@]}" >"$after"
  cat "$out"
  messages=$(awk '$1 == "sent" {print $2; exit}' "$out")
  if [ -z "$messages" ] || [ "$messages" = 0 ]; then
    echo "no messages sent; no costs to report" >&2
    rm -rf "$work"
    return 1
  fi
  python3 "$root/scripts/lib/costs.py" report "$before" "$after" --messages "$messages"
  awk -v n="$messages" -v s=$((SECONDS - started)) \
    '{printf "  %-10s CPU %7.1f us   (the generator, over %d s)\n", "chat-bench", ($1 + $2) / n * 1e6, s}' \
    <(tail -1 "$work/bench-cpu")
  rm -rf "$work"
  return "$status"
}
