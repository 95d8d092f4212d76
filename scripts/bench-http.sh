#!/usr/bin/env bash
# The HTTP stack's own cost: wrk against the platform's /health/live (every middleware layer,
# no database) next to a bare axum hello server (tests/src/bin/tradeplane-bare-http.rs), same
# machine, same run, printed side by side with the ratio and the load average.
#
#   scripts/bench-http.sh   (env: CONNECTIONS=64, THREADS=2, SECONDS_PER_RUN=10, ROUNDS=3, SKIP_BUILD=0,
#                            FEATURES=)
#
# FEATURES="tradeplane-platform/mimalloc,tradeplane-tests/mimalloc" builds both servers with
# mimalloc, the allocator the image ships (Dockerfile); the default is the system allocator, as
# the figures in docs/benchmarks.md were measured.
#
# The two servers are measured in turn, ROUNDS times, and the medians compared. Besides
# requests/s it prints each server's CPU time per request (user + system, from /proc), which a
# busy machine disturbs far less than throughput: on a shared 2-core machine wrk, the server and
# everything else compete for the same cores.
#
# Needs wrk (Debian: apt-get install wrk). The goal (issue 10): /health/live >= 0.8x bare axum at
# 64 connections.
set -euo pipefail
FEATURES=${FEATURES:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
ROUNDS=${ROUNDS:-3}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
command -v wrk >/dev/null || { echo "bench-http: wrk is required (apt-get install wrk)" >&2; exit 1; }
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  (cd "$ROOT" && cargo build --release -p tradeplane-platform --bin tradeplane-platform -p tradeplane-tests --bin tradeplane-bare-http \
    ${FEATURES:+--features "$FEATURES"})
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
# CPU ticks (user + system) used so far by process $1.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# Requests/s, p50/p99 (ms) and CPU microseconds per request of one wrk run against $1, served by
# process $2.
measure() {
  local out t0 t1
  t0=$(ticks "$2")
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency "$1")
  t1=$(ticks "$2")
  local rps p50 p99 reqs
  rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
  p50=$(awk '$1 == "50%" { print $2 }' <<<"$out")
  p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
  reqs=$(awk '/requests in/ { print $1 }' <<<"$out")
  awk -v a="$t0" -v b="$t1" -v n="$reqs" -v hz="$(getconf CLK_TCK)" -v r="$rps" -v p50="$p50" -v p99="$p99" \
    'BEGIN { printf "%s %s %s %.1f\n", r, p50, p99, (n > 0 ? (b - a) / hz * 1e6 / n : 0) }'
}
# The median of the numbers on stdin.
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

pp=$(free_port); bp=$(free_port)
(cd "$WORK" && LISTEN_ADDR="127.0.0.1:$pp" DATABASE_URL="sqlite://$WORK/p.db?mode=rwc" RUST_LOG=warn LOG_FORMAT=json \
  exec "$BIN/tradeplane-platform" >"$WORK/platform.log" 2>&1) &
PIDS+=($!)
"$BIN/tradeplane-bare-http" "127.0.0.1:$bp" >"$WORK/bare.log" 2>&1 &
PIDS+=($!)
wait_up "http://127.0.0.1:$pp/health/live"
wait_up "http://127.0.0.1:$bp/"

PLATFORM_PID=${PIDS[0]}
BARE_PID=${PIDS[1]}
echo "== load before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-26s %12s %10s %10s %14s\n' "round (wrk -t$THREADS -c$CONNECTIONS)" "requests/s" "p50" "p99" "CPU us/req"
: >"$WORK/bare.txt"; : >"$WORK/platform.txt"
for round in $(seq 1 "$ROUNDS"); do
  measure "http://127.0.0.1:$bp/" "$BARE_PID" | tee -a "$WORK/bare.txt" | awk -v n="$round" '{ printf "%-26s %12s %10s %10s %14s\n", n " bare axum /", $1, $2, $3, $4 }'
  measure "http://127.0.0.1:$pp/health/live" "$PLATFORM_PID" | tee -a "$WORK/platform.txt" | awk -v n="$round" '{ printf "%-26s %12s %10s %10s %14s\n", n " platform /health/live", $1, $2, $3, $4 }'
done
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
b_rps=$(cut -d' ' -f1 "$WORK/bare.txt" | median); p_rps=$(cut -d' ' -f1 "$WORK/platform.txt" | median)
b_cpu=$(cut -d' ' -f4 "$WORK/bare.txt" | median); p_cpu=$(cut -d' ' -f4 "$WORK/platform.txt" | median)
printf 'median requests/s: bare %s, platform %s\n' "$b_rps" "$p_rps"
printf 'median CPU us per request: bare %s, platform %s\n' "$b_cpu" "$p_cpu"
awk -v p="$p_rps" -v b="$b_rps" 'BEGIN { printf "ratio platform / bare, requests/s: %.2fx (goal >= 0.80x)\n", (b > 0 ? p / b : 0) }'
awk -v p="$p_cpu" -v b="$b_cpu" 'BEGIN { printf "ratio bare / platform, CPU per request: %.2fx (what the ratio would be with wrk on its own cores)\n", (p > 0 ? b / p : 0) }'
