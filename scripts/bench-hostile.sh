#!/usr/bin/env bash
# Hostile-client benchmark of the standalone server: builds `support-chat`
# and `chat-bench` in release mode, starts the server on a free port with
# its default budgets (no tuning variables: only a throw-away data
# directory and a random JWT secret), runs `chat-bench hostile` against it
# (one flooding socket per event kind, then non-reading sockets asking for
# large joins, with a control chat measured throughout), prints the CPU
# time of the server and of the bench, and stops the server by its PID.
#
# Usage: scripts/bench-hostile.sh [extra chat-bench hostile flags]
# Environment: SKIP_BUILD=1 to reuse the release binaries.
# Exit status: that of the bench (1 when a phase failed), 1 as well when the
# server died.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=lib/bench.sh
. scripts/lib/bench.sh

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "==> building support-chat and chat-bench (release)"
  cargo build --release -p support-chat -p chat-bench
fi
server_bin="$root/target/release/support-chat"
bench_bin="$root/target/release/chat-bench"

workdir=$(mktemp -d "${TMPDIR:-/tmp}/chat-hostile.XXXXXX")
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then stop_processes "$server_pid"; fi
  rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# CPU seconds (user, system) of a process from /proc/PID/stat, whose
# command name may hold spaces: fields count from its closing parenthesis.
cpu_seconds() {
  local ticks
  ticks=$(getconf CLK_TCK)
  sed 's/^.*) //' "/proc/$1/stat" | awk -v hz="$ticks" '{printf "user %.2f s, system %.2f s", $12 / hz, $13 / hz}'
}

secret="hostile-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export JWT_SECRET="$secret"
echo "==> starting support-chat (data in $workdir, default budgets)"
start_standalone "$workdir" || exit 1
echo "server CPU before the run: $(cpu_seconds "$server_pid")"

status=0
started=$(date +%s.%N)
# The bench prints its own CPU time as its last line.
"$bench_bin" hostile --url "$url" --pid "$server_pid" "$@" || status=$?
finished=$(date +%s.%N)

echo
echo "==> per-process CPU over the run ($(awk -v a="$started" -v b="$finished" 'BEGIN {printf "%.1f", b - a}') s)"
if server_survived "$workdir"; then
  echo "support-chat (pid $server_pid): $(cpu_seconds "$server_pid") since it started; VmRSS $(awk '/^VmRSS/ {print $2, $3}' "/proc/$server_pid/status")"
else
  status=1
fi
exit "$status"
