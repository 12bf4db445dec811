#!/usr/bin/env bash
# Measures WebSocket permessage-deflate on the standalone server, once with
# WS_COMPRESSION=on and once with it off, through the stock
# socket.io-client (scripts/bench-compression.mjs): the server's VmRSS per
# idle connection, the bytes an idle connection moves in IDLE_SECONDS, and
# the bytes and server CPU time of a join-session of MESSAGES messages.
# Builds the release server unless SKIP_BUILD=1; installs the compatibility
# suite's packages (tests/compat) when they are missing.
#
# Usage: scripts/bench-compression.sh
# Environment: CONNECTIONS (2000), IDLE_SECONDS (60), MESSAGES (500),
#              JOINS (50), SKIP_BUILD=1 to reuse target/release/support-chat,
#              SERVER_BIN to run another build of it
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=lib/bench.sh
. scripts/lib/bench.sh

connections=${CONNECTIONS:-2000}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((2 * connections + 256)) ]; then
  echo "warning: $connections connections need an open-file limit above $((2 * connections + 256))" >&2
fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "==> building support-chat (release)"
  cargo build --release -p support-chat
fi
server_bin=${SERVER_BIN:-$root/target/release/support-chat}
if [ ! -d tests/compat/node_modules/socket.io-client ]; then
  (cd tests/compat && npm ci --no-audit --no-fund --silent)
fi

workdir=""
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then stop_processes "$server_pid"; fi
  if [ -n "$workdir" ]; then rm -rf "$workdir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

secret="bench-$(date +%s%N)-secret"
export JWT_SECRET="$secret"
for setting in on off; do
  workdir=$(mktemp -d "${TMPDIR:-/tmp}/chat-bench-deflate.XXXXXX")
  echo "==> WS_COMPRESSION=$setting"
  start_standalone "$workdir" RATE_LIMIT_PER_SEC=0 MAX_SOCKETS_PER_USER=10000 \
    WS_COMPRESSION="$setting" || exit 1
  CONNECTIONS=$connections node scripts/bench-compression.mjs "$url" "$server_pid" "$secret" \
    "compression $setting"
  stop_processes "$server_pid"
  server_pid=""
  rm -rf "$workdir"
  workdir=""
done
