#!/usr/bin/env bash
# End-to-end benchmark: orders over HTTP against PostgreSQL, next to pgbench's single-row-insert
# rate on the same machine and the same PostgreSQL (issue 4, "Benchmarks").
#
#   scripts/bench-e2e.sh
#
# 1. builds tradeplane-platform and tradeplane-loadgen in release (SKIP_BUILD=1 reuses them),
# 2. creates two throwaway databases (one for the platform, one for pgbench),
# 3. starts the platform on a spare loopback port and waits for /health/ready,
# 4. runs the load generator at each concurrency level,
# 5. stops the platform (SIGTERM), then runs pgbench with a one-row INSERT per transaction at
#    the same levels (clients capped below max_connections),
# 6. prints both side by side; the databases and the platform are cleaned up on any exit.
#
# Settings (environment): LEVELS (1,4,16,64,128), ORDERS_PER_LEVEL (3000), MAX_SECONDS (20),
# ACCOUNTS (32), PGBENCH_SECONDS (10), PGHOST (127.0.0.1), PGPORT (5432), PGUSER (postgres),
# CARGO_TARGET_DIR (target), SKIP_BUILD (0), MAX_CONCURRENT_REQUESTS (1024; the rate limits are
# lifted because every simulated trader comes from 127.0.0.1), OUT_DIR (a temporary directory, removed at the end
# unless set).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LEVELS=${LEVELS:-1,4,16,64,128}
ORDERS_PER_LEVEL=${ORDERS_PER_LEVEL:-3000}
MAX_SECONDS=${MAX_SECONDS:-20}
ACCOUNTS=${ACCOUNTS:-32}
PGBENCH_SECONDS=${PGBENCH_SECONDS:-10}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release

for tool in cargo psql createdb dropdb pgbench curl; do
  command -v "$tool" >/dev/null || { echo "bench-e2e: $tool is required" >&2; exit 1; }
done

SUFFIX="$$_$(date +%s)"
DB_APP="tp_bench_app_$SUFFIX"
DB_PGB="tp_bench_pgb_$SUFFIX"
if [[ -n "${OUT_DIR:-}" ]]; then
  mkdir -p "$OUT_DIR"
  WORK=$OUT_DIR
  KEEP_WORK=1
else
  WORK=$(mktemp -d -t tp-bench.XXXXXX)
  KEEP_WORK=0
fi
PLATFORM_PID=""
CREATED_DBS=()

stop_platform() {
  [[ -n "$PLATFORM_PID" ]] || return 0
  if kill -0 "$PLATFORM_PID" 2>/dev/null; then
    kill -TERM "$PLATFORM_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$PLATFORM_PID" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$PLATFORM_PID" 2>/dev/null; then
      echo "bench-e2e: platform ignored SIGTERM for 25s; sending SIGKILL" >&2
      kill -KILL "$PLATFORM_PID" 2>/dev/null || true
    fi
  fi
  wait "$PLATFORM_PID" 2>/dev/null || true
  PLATFORM_PID=""
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  stop_platform
  for db in "${CREATED_DBS[@]}"; do
    dropdb --if-exists --force "$db" 2>/dev/null \
      || echo "bench-e2e: could not drop database $db; drop it by hand" >&2
  done
  if [[ $KEEP_WORK == 0 ]]; then
    rm -rf "$WORK"
  else
    echo "bench-e2e: outputs kept in $WORK" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  echo "== building (release) into $TARGET_DIR" >&2
  (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -p tradeplane-platform -p tradeplane-tests)
fi
for b in tradeplane-platform tradeplane-loadgen; do
  [[ -x "$BIN/$b" ]] || { echo "bench-e2e: $BIN/$b is missing (build first)" >&2; exit 1; }
done

# A loopback port nothing listens on (bash's /dev/tcp: a refused connect means free).
PORT=""
for _ in $(seq 1 200); do
  candidate=$((20000 + RANDOM % 20000))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
    PORT=$candidate
    break
  fi
done
[[ -n "$PORT" ]] || { echo "bench-e2e: no free port found" >&2; exit 1; }

createdb "$DB_APP"
CREATED_DBS+=("$DB_APP")
createdb "$DB_PGB"
CREATED_DBS+=("$DB_PGB")

ADMIN_USER=benchadmin
ADMIN_PASSWORD="bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
URL="http://127.0.0.1:$PORT"

echo "== platform on $URL, database $DB_APP" >&2
LISTEN_ADDR="127.0.0.1:$PORT" \
  DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$DB_APP" \
  LOG_FORMAT=json RUST_LOG=warn \
  ADMIN_USERNAME=$ADMIN_USER ADMIN_PASSWORD="$ADMIN_PASSWORD" \
  RATE_LIMIT_PER_SECOND=1000000 RATE_LIMIT_BURST=1000000 LOGIN_RATE_LIMIT_PER_MINUTE=100000 \
  MAX_CONCURRENT_REQUESTS=${MAX_CONCURRENT_REQUESTS:-1024} \
  "$BIN/tradeplane-platform" >"$WORK/platform.log" 2>&1 &
PLATFORM_PID=$!

ready=0
for _ in $(seq 1 120); do
  if ! kill -0 "$PLATFORM_PID" 2>/dev/null; then
    echo "bench-e2e: the platform exited during start-up:" >&2
    tail -n 30 "$WORK/platform.log" >&2
    exit 1
  fi
  if curl -fsS -o /dev/null --max-time 2 "$URL/health/ready"; then
    ready=1
    break
  fi
  sleep 0.5
done
if [[ $ready != 1 ]]; then
  echo "bench-e2e: the platform did not become ready within 60s:" >&2
  tail -n 30 "$WORK/platform.log" >&2
  exit 1
fi
# Start-up lines (e.g. the 503s of /health/ready while it was starting) are not the run's.
log_lines_at_ready=$(wc -l <"$WORK/platform.log")

echo "== load generator: levels $LEVELS, $ORDERS_PER_LEVEL requests or ${MAX_SECONDS}s per level, $ACCOUNTS accounts" >&2
LOADGEN_ADMIN_PASSWORD="$ADMIN_PASSWORD" "$BIN/tradeplane-loadgen" \
  --url "$URL" --admin-user "$ADMIN_USER" \
  --levels "$LEVELS" --orders-per-level "$ORDERS_PER_LEVEL" --max-seconds "$MAX_SECONDS" \
  --accounts "$ACCOUNTS" --csv "$WORK/platform.csv" | tee "$WORK/platform.txt"

if tail -n +"$((log_lines_at_ready + 1))" "$WORK/platform.log" | grep -q '"level":"ERROR"'; then
  echo "bench-e2e: the platform logged errors during the run (first lines):" >&2
  tail -n +"$((log_lines_at_ready + 1))" "$WORK/platform.log" | grep '"level":"ERROR"' | head -n 5 >&2
fi
# Where the time went: the platform's CPU seconds, and what the run wrote per table and commit.
if [[ -r /proc/$PLATFORM_PID/stat ]]; then
  awk -v hz="$(getconf CLK_TCK)" '{ printf "platform CPU: %.1fs user, %.1fs system\n", $14 / hz, $15 / hz }' \
    "/proc/$PLATFORM_PID/stat" | tee "$WORK/platform-cpu.txt" >&2
fi
psql -Atq -F' ' -d "$DB_APP" -c "
  SELECT 'commits', xact_commit, 'rollbacks', xact_rollback FROM pg_stat_database WHERE datname = current_database();
  SELECT relname, 'ins', n_tup_ins, 'upd', n_tup_upd, 'del', n_tup_del FROM pg_stat_user_tables
   WHERE n_tup_ins + n_tup_upd + n_tup_del > 0 ORDER BY relname;" | tee "$WORK/db-writes.txt" >&2
# Stop the platform first so pgbench has the machine (and the connection slots) to itself.
stop_platform

echo "== pgbench: one-row INSERT per transaction, ${PGBENCH_SECONDS}s per level, database $DB_PGB" >&2
psql -q -v ON_ERROR_STOP=1 -d "$DB_PGB" <<'SQL'
CREATE TABLE bench_insert (
    id         bigserial PRIMARY KEY,
    account    bigint      NOT NULL,
    payload    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
SQL
cat >"$WORK/insert.sql" <<'SQL'
\set account random(1, 100000)
INSERT INTO bench_insert (account, payload) VALUES (:account, 'BTC-USD buy limit 30000.00 0.0100');
SQL

max_conn=$(psql -Atqc "SHOW max_connections" -d "$DB_PGB")
in_use=$(psql -Atqc "SELECT count(*) FROM pg_stat_activity" -d "$DB_PGB")
reserved=$(psql -Atqc "SHOW superuser_reserved_connections" -d "$DB_PGB")
cap=$((max_conn - reserved - in_use - 2))

echo "concurrency,clients,tps,p50_ms,p99_ms" >"$WORK/pgbench.csv"
IFS=, read -r -a levels <<<"$LEVELS"
for c in "${levels[@]}"; do
  clients=$c
  if ((clients > cap)); then
    echo "bench-e2e: pgbench clients capped at $cap for level $c (max_connections=$max_conn, $in_use in use)" >&2
    clients=$cap
  fi
  jobs=$((clients < 2 ? clients : 2))
  logdir="$WORK/pgbench-$c"
  mkdir -p "$logdir"
  (cd "$logdir" && pgbench -n -f "$WORK/insert.sql" -c "$clients" -j "$jobs" -T "$PGBENCH_SECONDS" \
    -l --log-prefix=tx "$DB_PGB") >"$WORK/pgbench-$c.txt" 2>&1 || {
    echo "bench-e2e: pgbench failed at $c clients:" >&2
    tail -n 5 "$WORK/pgbench-$c.txt" >&2
    exit 1
  }
  tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$WORK/pgbench-$c.txt" | head -n 1)
  # Per-transaction log: the third field is the latency in microseconds.
  read -r p50 p99 < <(cat "$logdir"/tx.* | awk '{print $3}' | sort -n | awk '
    { v[NR] = $1 }
    END {
      if (NR == 0) { print "0 0"; exit }
      i50 = int(NR * 0.50 + 0.999999); i99 = int(NR * 0.99 + 0.999999)
      printf "%.3f %.3f\n", v[i50] / 1000, v[i99] / 1000
    }')
  echo "$c,$clients,$tps,$p50,$p99" >>"$WORK/pgbench.csv"
  rm -rf "$logdir"
done

echo
echo "== platform (orders over HTTP) vs pgbench (one-row INSERT per commit), same machine"
awk -F, '
  NR == FNR { if (FNR > 1) { tps[$1] = $3; pc[$1] = $2; p50[$1] = $4; p99[$1] = $5 } next }
  FNR == 1 {
    printf "%5s | %9s %8s %8s %5s %5s | %8s %9s %8s %8s | %6s\n",
      "conc", "orders/s", "p50ms", "p99ms", "4xx", "5xx+e", "pgb cli", "inserts/s", "p50ms", "p99ms", "ratio"
    next
  }
  {
    c = $1; r = (tps[c] > 0) ? $5 / tps[c] : 0
    printf "%5s | %9.0f %8.2f %8.2f %5d %5d | %8s %9.0f %8.2f %8.2f | %5.2fx\n",
      c, $5, $6, $8, $10, $11 + $12, pc[c], tps[c], p50[c], p99[c], r
  }' "$WORK/pgbench.csv" "$WORK/platform.csv" | tee "$WORK/summary.txt"
echo "(orders/s counts 2xx answers to POST /orders and DELETE /orders/{id}; ratio = platform / pgbench)"
