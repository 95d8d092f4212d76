#!/usr/bin/env bash
# End-to-end benchmark: orders over HTTP, next to the database's own one-row-INSERT commit rate
# on the same machine: pgbench for PostgreSQL, tradeplane-sqlite-bench (same file settings as
# the platform: WAL, synchronous=FULL) for SQLite.
#
#   scripts/bench-e2e.sh
#
# 1. builds tradeplane-platform, tradeplane-loadgen and tradeplane-sqlite-bench in release
#    (SKIP_BUILD=1 reuses them),
# 2. per backend (BACKENDS): starts the platform on a spare loopback port on a throwaway database,
#    waits for /health/ready, runs the load generator once per concurrency level and reads the
#    platform's /metrics and CPU time around each level (SQL statements per batch, CPU per
#    order), stops it (SIGTERM),
# 3. runs the reference at the same levels (pgbench -c C, clients capped below max_connections;
#    the SQLite writer with C connections),
# 4. prints both side by side with the machine's load average; the databases and the platform
#    are cleaned up on any exit.
#
# The order mix trades four symbols (the three default instruments and SOL-USD). REPLICAS
# (PostgreSQL only) runs the platform as 1, 2, 3 … replicas on one database — symbols leased to
# one owner each, orders sent round robin to every replica and forwarded to the owner — and
# prints each next to the same reference.
#
# Settings (environment): BACKENDS (postgres,sqlite), REPLICAS (1; e.g. 1,2,3), LEVELS (1,4,16,64,128), ORDERS_PER_LEVEL
# (3000), MAX_SECONDS (20), ACCOUNTS (32), PGBENCH_SECONDS (10), PGHOST (127.0.0.1), PGPORT
# (5432), PGUSER (postgres), CARGO_TARGET_DIR (target), SKIP_BUILD (0), MAX_CONCURRENT_REQUESTS
# (1024; the rate limits are lifted because every simulated trader comes from 127.0.0.1), OUT_DIR
# (a temporary directory, removed at the end unless set), FEATURES (empty: the system allocator,
# as the figures in docs/benchmarks.md were measured; tradeplane-platform/mimalloc builds the
# platform with the allocator its image ships, see the Dockerfile).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BACKENDS=${BACKENDS:-postgres,sqlite}
REPLICAS=${REPLICAS:-1}
SYMBOLS=BTC-USD,ETH-USD,AAPL,SOL-USD
INSTRUMENTS='[{"symbol":"BTC-USD","tickSize":"0.01","lotSize":"0.0001","minQty":"0.0001","maxQty":"100","maxNotional":"5000000","priceBandBps":1000},{"symbol":"ETH-USD","tickSize":"0.01","lotSize":"0.001","minQty":"0.001","maxQty":"1000","maxNotional":"5000000","priceBandBps":1000},{"symbol":"AAPL","tickSize":"0.01","lotSize":"1","minQty":"1","maxQty":"100000","maxNotional":"10000000","priceBandBps":1000},{"symbol":"SOL-USD","tickSize":"0.01","lotSize":"0.01","minQty":"0.01","maxQty":"100000","maxNotional":"5000000","priceBandBps":1000}]'
LEVELS=${LEVELS:-1,4,16,64,128}
ORDERS_PER_LEVEL=${ORDERS_PER_LEVEL:-3000}
MAX_SECONDS=${MAX_SECONDS:-20}
ACCOUNTS=${ACCOUNTS:-32}
PGBENCH_SECONDS=${PGBENCH_SECONDS:-10}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
FEATURES=${FEATURES:-}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release

need=(cargo curl)
[[ ",$BACKENDS," == *,postgres,* ]] && need+=(psql createdb dropdb pgbench)
for tool in "${need[@]}"; do
  command -v "$tool" >/dev/null || { echo "bench-e2e: $tool is required" >&2; exit 1; }
done

SUFFIX="$$_$(date +%s)"
if [[ -n "${OUT_DIR:-}" ]]; then
  mkdir -p "$OUT_DIR"
  WORK=$OUT_DIR
  KEEP_WORK=1
else
  WORK=$(mktemp -d -t tp-bench.XXXXXX)
  KEEP_WORK=0
fi
PLATFORM_PIDS=()
URLS=()
CREATED_DBS=()

stop_platform() {
  local pid
  for pid in "${PLATFORM_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PLATFORM_PIDS[@]}"; do
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "bench-e2e: platform $pid ignored SIGTERM for 25s; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  PLATFORM_PIDS=()
  URLS=()
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
  (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -p tradeplane-platform -p tradeplane-tests \
    ${FEATURES:+--features "$FEATURES"})
fi
for b in tradeplane-platform tradeplane-loadgen tradeplane-sqlite-bench; do
  [[ -x "$BIN/$b" ]] || { echo "bench-e2e: $BIN/$b is missing (build first)" >&2; exit 1; }
done

# A loopback port nothing listens on (bash's /dev/tcp: a refused connect means free).
free_port() {
  local candidate
  for _ in $(seq 1 200); do
    candidate=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "bench-e2e: no free port found" >&2
  return 1
}

ADMIN_USER=benchadmin
ADMIN_PASSWORD="bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"

JWT_SECRET_BENCH="bench-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"

# Starts $3 (default 1) platform replicas on DATABASE_URL=$1, logging to $2-<i>.log; adds to
# URLS and PLATFORM_PIDS, and waits until every replica is ready.
start_platform() {
  local db_url=$1 log=$2 count=${3:-1} i port pid url
  for i in $(seq 1 "$count"); do
    port=$(free_port)
    url="http://127.0.0.1:$port"
    LISTEN_ADDR="127.0.0.1:$port" ADVERTISE_ADDR="127.0.0.1:$port" DATABASE_URL="$db_url" \
      LOG_FORMAT=json RUST_LOG=warn JWT_SECRET="$JWT_SECRET_BENCH" INSTRUMENTS="$INSTRUMENTS" \
      ADMIN_USERNAME=$ADMIN_USER ADMIN_PASSWORD="$ADMIN_PASSWORD" \
      RATE_LIMIT_PER_SECOND=1000000 RATE_LIMIT_BURST=1000000 LOGIN_RATE_LIMIT_PER_MINUTE=100000 \
      MAX_CONCURRENT_REQUESTS=${MAX_CONCURRENT_REQUESTS:-1024} \
      "$BIN/tradeplane-platform" >"$log-$i.log" 2>&1 &
    pid=$!
    PLATFORM_PIDS+=("$pid")
    URLS+=("$url")
    local ready=0
    for _ in $(seq 1 120); do
      if ! kill -0 "$pid" 2>/dev/null; then
        echo "bench-e2e: the platform exited during start-up:" >&2
        tail -n 30 "$log-$i.log" >&2
        exit 1
      fi
      if curl -fsS -o /dev/null --max-time 2 "$url/health/ready"; then ready=1; break; fi
      sleep 0.5
    done
    if [[ $ready != 1 ]]; then
      echo "bench-e2e: the platform did not become ready within 60s:" >&2
      tail -n 30 "$log-$i.log" >&2
      exit 1
    fi
  done
  # Replicas lease the symbols among themselves: let a join settle (two lease rounds).
  ((count > 1)) && sleep 3
  return 0
}

# Sum of a metric's samples (all label sets) over every replica's /metrics.
metric() {
  local u
  for u in "${URLS[@]}"; do curl -fsS --max-time 5 "$u/metrics"; done |
    awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { printf "%.0f\n", s }'
}

# Runs every level against the running platform; writes $1.csv: the load generator's columns
# plus statements per batch and platform CPU microseconds per 2xx answer.
run_levels() {
  local out=$1 first=1 c
  IFS=, read -r -a levels <<<"$LEVELS"
  for c in "${levels[@]}"; do
    local s0 n0 t0 s1 n1 t1
    s0=$(metric match_batch_statements_sum); n0=$(metric match_batch_statements_count)
    LOADGEN_ADMIN_PASSWORD="$ADMIN_PASSWORD" "$BIN/tradeplane-loadgen" \
      --url "$(IFS=,; echo "${URLS[*]}")" --symbols "$SYMBOLS" --admin-user "$ADMIN_USER" \
      --levels "$c" --orders-per-level "$ORDERS_PER_LEVEL" --max-seconds "$MAX_SECONDS" \
      --accounts "$ACCOUNTS" --csv "$out-$c.csv" >"$out-$c.txt" 2>"$out-$c.err" || {
      echo "bench-e2e: the load generator failed at $c:" >&2; tail -n 5 "$out-$c.err" >&2; exit 1; }
    grep -E '^loadgen: c=' "$out-$c.err" >&2 || true
    s1=$(metric match_batch_statements_sum); n1=$(metric match_batch_statements_count)
    if [[ $first == 1 ]]; then
      head -n 1 "$out-$c.csv" | sed 's/$/,statements_per_batch,cpu_us_per_order/' >"$out.csv"
      first=0
    fi
    # The load generator measures CPU per answer itself (process_cpu_seconds_total of every
    # replica, around the measured part only: the traders' set-up and its Argon2 are left out).
    tail -n +2 "$out-$c.csv" | awk -F, -v s="$((s1 - s0))" -v n="$((n1 - n0))" \
      '{ printf "%s,%.2f,%.0f\n", $0, (n > 0 ? s / n : 0), $NF }' >>"$out.csv"
  done
}

# pgbench, one-row INSERT per transaction, at every level: writes $1 (concurrency,clients,tps,p50,p99).
pgbench_levels() {
  local out=$1 db="tp_bench_pgb_$SUFFIX" c
  createdb "$db"
  CREATED_DBS+=("$db")
  psql -q -v ON_ERROR_STOP=1 -d "$db" <<'SQL'
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
  local max_conn in_use reserved cap
  max_conn=$(psql -Atqc "SHOW max_connections" -d "$db")
  in_use=$(psql -Atqc "SELECT count(*) FROM pg_stat_activity" -d "$db")
  reserved=$(psql -Atqc "SHOW superuser_reserved_connections" -d "$db")
  cap=$((max_conn - reserved - in_use - 2))
  echo "concurrency,clients,tps,p50_ms,p99_ms" >"$out"
  IFS=, read -r -a levels <<<"$LEVELS"
  for c in "${levels[@]}"; do
    local clients=$c jobs logdir tps p50 p99
    if ((clients > cap)); then
      echo "bench-e2e: pgbench clients capped at $cap for level $c (max_connections=$max_conn, $in_use in use)" >&2
      clients=$cap
    fi
    jobs=$((clients < 2 ? clients : 2))
    logdir="$WORK/pgbench-$c"
    mkdir -p "$logdir"
    (cd "$logdir" && pgbench -n -f "$WORK/insert.sql" -c "$clients" -j "$jobs" -T "$PGBENCH_SECONDS" \
      -l --log-prefix=tx "$db") >"$WORK/pgbench-$c.txt" 2>&1 || {
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
    echo "$c,$clients,$tps,$p50,$p99" >>"$out"
    rm -rf "$logdir"
  done
}

# The SQLite writer at every level, on a fresh file: writes $1 in pgbench's columns.
sqlite_levels() {
  local out=$1 c
  echo "concurrency,clients,tps,p50_ms,p99_ms" >"$out"
  IFS=, read -r -a levels <<<"$LEVELS"
  for c in "${levels[@]}"; do
    rm -f "$WORK"/ref.db*
    echo "$c,$("$BIN/tradeplane-sqlite-bench" "$WORK/ref.db" "$c" "$PGBENCH_SECONDS")" >>"$out"
  done
}

# Prints the platform's levels ($1) next to the reference's ($2), named $3.
side_by_side() {
  awk -F, -v ref="$3" '
    NR == FNR { if (FNR > 1) { tps[$1] = $3; pc[$1] = $2; p50[$1] = $4; p99[$1] = $5 } next }
    FNR == 1 {
      printf "%5s | %9s %8s %8s %5s %5s %6s %7s | %8s %9s %8s %8s | %6s\n",
        "conc", "orders/s", "p50ms", "p99ms", "4xx", "5xx+e", "stmt/b", "cpu_us", "ref cli", ref "/s", "p50ms", "p99ms", "ratio"
      next
    }
    {
      c = $1; r = (tps[c] > 0) ? $5 / tps[c] : 0
      printf "%5s | %9.0f %8.2f %8.2f %5d %5d %6.1f %7.0f | %8s %9.0f %8.2f %8.2f | %5.2fx\n",
        c, $5, $6, $8, $10, $11 + $12, $(NF - 1), $NF, pc[c], tps[c], p50[c], p99[c], r
    }' "$2" "$1"
}

echo "== load before the run: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$WORK/load.txt"
IFS=, read -r -a backends <<<"$BACKENDS"
IFS=, read -r -a replica_counts <<<"$REPLICAS"
for backend in "${backends[@]}"; do
  case $backend in
    postgres) counts=("${replica_counts[@]}") ;;
    sqlite) counts=(1) ;; # one process serves the file
    *) echo "bench-e2e: unknown backend $backend (postgres, sqlite)" >&2; exit 1 ;;
  esac
  runs=()
  for r in "${counts[@]}"; do
    name="$backend-r$r"
    if [[ $backend == postgres ]]; then
      db="tp_bench_app_${r}_$SUFFIX"
      createdb "$db"
      CREATED_DBS+=("$db")
      db_url="postgres://$PGUSER@$PGHOST:$PGPORT/$db"
    else
      db_url="sqlite://$WORK/platform.db?mode=rwc"
    fi
    echo "== $backend: $r replica(s), symbols $SYMBOLS, levels $LEVELS, $ORDERS_PER_LEVEL requests or ${MAX_SECONDS}s per level, $ACCOUNTS accounts" >&2
    start_platform "$db_url" "$WORK/$name" "$r"
    run_levels "$WORK/$name"
    if cat "$WORK/$name"-*.log | grep -q '"level":"ERROR"'; then
      echo "bench-e2e: the platform logged errors during the run (first lines):" >&2
      cat "$WORK/$name"-*.log | grep '"level":"ERROR"' | head -n 5 >&2
    fi
    if [[ $backend == postgres ]]; then
      psql -Atq -F' ' -d "$db" -c "
        SELECT 'commits', xact_commit, 'rollbacks', xact_rollback, 'deadlocks', deadlocks FROM pg_stat_database WHERE datname = current_database();
        SELECT relname, 'ins', n_tup_ins, 'upd', n_tup_upd, 'del', n_tup_del FROM pg_stat_user_tables
         WHERE n_tup_ins + n_tup_upd + n_tup_del > 0 ORDER BY relname;" >"$WORK/$name-db-writes.txt"
    fi
    # Stop the platform first so the next run and the reference have the machine to themselves.
    stop_platform
    runs+=("$r")
  done
  echo "== $backend: reference" >&2
  if [[ $backend == postgres ]]; then
    pgbench_levels "$WORK/postgres-ref.csv"
    ref="pgbench"
  else
    sqlite_levels "$WORK/sqlite-ref.csv"
    ref="sqlite"
  fi
  for r in "${runs[@]}"; do
    {
      echo
      echo "== $backend, $r replica(s): platform (orders over HTTP, durable) vs $ref (one-row INSERT per commit), same machine"
      side_by_side "$WORK/$backend-r$r.csv" "$WORK/$backend-ref.csv" "$ref"
      [[ -f "$WORK/$backend-r$r-db-writes.txt" ]] && grep '^commits' "$WORK/$backend-r$r-db-writes.txt"
    } >>"$WORK/summary.txt"
  done
done
echo "== load after the run: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$WORK/load.txt"
cat "$WORK/summary.txt"
cat "$WORK/load.txt"
echo "(orders/s counts 2xx answers to POST /orders and DELETE /orders/{id}; stmt/b = SQL statements"
echo " per committed batch, BEGIN and COMMIT included; cpu_us = platform CPU per 2xx answer over the measured part (set-up excluded);"
echo " ratio = platform / reference; SQLite runs with synchronous=FULL, as the platform does)"
