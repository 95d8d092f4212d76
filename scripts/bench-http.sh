#!/usr/bin/env bash
# The HTTP stack's own cost: wrk against the platform's /health/live (every middleware layer,
# no database) next to a bare axum hello server (tests/src/bin/tradeplane-bare-http.rs), same
# machine, same run, printed side by side with the ratio and the load average.
#
#   scripts/bench-http.sh          (env: CONNECTIONS=64, THREADS=2, SECONDS_PER_RUN=10, SKIP_BUILD=0)
#
# Needs wrk (Debian: apt-get install wrk). The goal (issue 10): /health/live >= 0.8x bare axum at
# 64 connections.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
command -v wrk >/dev/null || { echo "bench-http: wrk is required (apt-get install wrk)" >&2; exit 1; }
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  (cd "$ROOT" && cargo build --release -p tradeplane-platform --bin tradeplane-platform -p tradeplane-tests --bin tradeplane-bare-http)
fi
WORK=$(mktemp -d -t tp-bench-http.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  return 1
}
wait_up() { for _ in $(seq 1 100); do curl -fsS -o /dev/null "$1" && return 0; sleep 0.2; done; echo "bench-http: $1 never answered" >&2; exit 1; }
# Requests/s and p50/p99 (ms) of one wrk run against $1.
measure() {
  local out
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency "$1")
  local rps p50 p99
  rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
  p50=$(awk '$1 == "50%" { print $2 }' <<<"$out")
  p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
  echo "$rps $p50 $p99"
}

pp=$(free_port); bp=$(free_port)
(cd "$WORK" && LISTEN_ADDR="127.0.0.1:$pp" DATABASE_URL="sqlite://$WORK/p.db?mode=rwc" RUST_LOG=warn LOG_FORMAT=json \
  exec "$BIN/tradeplane-platform" >"$WORK/platform.log" 2>&1) &
PIDS+=($!)
"$BIN/tradeplane-bare-http" "127.0.0.1:$bp" >"$WORK/bare.log" 2>&1 &
PIDS+=($!)
wait_up "http://127.0.0.1:$pp/health/live"
wait_up "http://127.0.0.1:$bp/"

echo "== load before: $(cut -d' ' -f1-3 /proc/loadavg)"
read -r b_rps b_p50 b_p99 < <(measure "http://127.0.0.1:$bp/")
read -r p_rps p_p50 p_p99 < <(measure "http://127.0.0.1:$pp/health/live")
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-26s %12s %10s %10s\n' "target (wrk -t$THREADS -c$CONNECTIONS)" "requests/s" "p50" "p99"
printf '%-26s %12s %10s %10s\n' "bare axum /" "$b_rps" "$b_p50" "$b_p99"
printf '%-26s %12s %10s %10s\n' "platform /health/live" "$p_rps" "$p_p50" "$p_p99"
awk -v p="$p_rps" -v b="$b_rps" 'BEGIN { printf "ratio platform / bare: %.2fx (goal >= 0.80x)\n", (b > 0 ? p / b : 0) }'
