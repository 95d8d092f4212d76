#!/usr/bin/env bash
# WebSocket fan-out benchmark: N market-data subscribers on one symbol, trades driven over REST,
# delivered messages per second and the platform's resident memory, per N.
#
#   scripts/bench-ws-fanout.sh
#
# 1. refuses to run when the 1-minute load average is 3 or more (the figures would measure the
#    neighbours; FORCE=1 runs anyway and says so in the output),
# 2. builds tradeplane-platform and tradeplane-ws-fanout in release (SKIP_BUILD=1 reuses them),
# 3. per level of SUBSCRIBERS: starts the platform on a spare loopback port on a throwaway SQLite
#    file with the per-IP limits lifted (every subscriber comes from 127.0.0.1), runs the
#    benchmark, stops the platform (SIGTERM),
# 4. prints one line per level with the load average before and after.
#
# Settings (environment): SUBSCRIBERS (1000,5000,10000), SECONDS_PER_LEVEL (15), TRADERS (4),
# CARGO_TARGET_DIR (target), PROFILE (release; debug only to try the script), SKIP_BUILD (0),
# FORCE (0). Goal (issue 11): 10,000 subscribers
# under 250 MiB and at least 60k delivered messages/s.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SUBSCRIBERS=${SUBSCRIBERS:-1000,5000,10000}
SECONDS_PER_LEVEL=${SECONDS_PER_LEVEL:-15}
TRADERS=${TRADERS:-4}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PROFILE=${PROFILE:-release}
BIN=$TARGET_DIR/$PROFILE

load1() { cut -d' ' -f1 /proc/loadavg; }
if [[ ${FORCE:-0} != 1 ]] && awk -v l="$(load1)" 'BEGIN { exit !(l >= 3) }'; then
  echo "load average $(load1) >= 3: the figures would not mean anything; set FORCE=1 to run anyway" >&2
  exit 2
fi
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  (cd "$ROOT" && cargo build --profile "${PROFILE/debug/dev}" -p tradeplane-platform -p tradeplane-tests \
    --bin tradeplane-platform --bin tradeplane-ws-fanout)
fi
# The subscribers need one descriptor each.
ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d)
PID=
cleanup() {
  [[ -n $PID ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "ws fan-out ($PROFILE): $(nproc) cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg)${FORCE:+ (FORCE=1)}"
IFS=, read -ra LEVELS <<<"$SUBSCRIBERS"
for n in "${LEVELS[@]}"; do
  P=$(port)
  rm -f "$WORK"/p.db*
  (cd "$WORK" && exec env -i PATH="$PATH" \
    LISTEN_ADDR=127.0.0.1:$P DATABASE_URL="sqlite://$WORK/p.db?mode=rwc" \
    ADMIN_PASSWORD=fanout-admin-password \
    RATE_LIMIT_PER_SECOND=1000000 RATE_LIMIT_BURST=1000000 LOGIN_RATE_LIMIT_PER_MINUTE=100000 \
    MAX_CONNECTIONS=$((n * 2 + 100)) MAX_CONNECTIONS_PER_IP=$((n + 50)) \
    WS_MAX_CONNECTIONS_PER_IP=$((n + 10)) \
    "$BIN/tradeplane-platform" >"$WORK/platform-$n.log" 2>&1) &
  PID=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$P/health/ready" >/dev/null && break
    sleep 0.1
  done
  "$BIN/tradeplane-ws-fanout" --url "http://127.0.0.1:$P" --admin-password fanout-admin-password \
    --pid "$PID" --subscribers "$n" --seconds "$SECONDS_PER_LEVEL" --traders "$TRADERS"
  kill "$PID"; wait "$PID" 2>/dev/null || true
  PID=
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
