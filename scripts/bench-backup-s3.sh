#!/usr/bin/env bash
# Backup and restore timings against S3-compatible object storage, under the benchmark's load.
#
#   scripts/bench-backup-s3.sh
#
# 1. starts a private moto_server (PyPI `moto[server]`) on a spare loopback port with one bucket,
#    a throwaway PostgreSQL database and the release platform on it;
# 2. fills the database with the load generator (FILL_ORDERS orders at LOAD_CLIENTS clients);
# 3. keeps the same load running while `backup --dest s3://bench/run` runs, timed;
# 4. stops the load and times `restore s3://bench/run/<backup>` into a second, empty database,
#    then compares every table's row count with the backup's manifest;
# 5. prints the figures with the machine's load average; everything is cleaned up on exit.
#
# Settings (environment): FILL_ORDERS (20000), LOAD_CLIENTS (16), ACCOUNTS (32), PGHOST
# (127.0.0.1), PGPORT (5432), PGUSER (postgres), CARGO_TARGET_DIR (target), SKIP_BUILD (0),
# LOADGEN (the release tradeplane-loadgen; any build of it works, it only generates the load).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
FILL_ORDERS=${FILL_ORDERS:-20000}
LOAD_CLIENTS=${LOAD_CLIENTS:-16}
ACCOUNTS=${ACCOUNTS:-32}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release
for tool in cargo curl psql createdb dropdb moto_server python3; do
  command -v "$tool" >/dev/null || { echo "bench-backup-s3: $tool is required" >&2; exit 1; }
done
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  (cd "$ROOT" && cargo build --release -p tradeplane-platform --bin tradeplane-platform \
    && cargo build --release -p tradeplane-tests --bin tradeplane-loadgen)
fi
LOADGEN=${LOADGEN:-$BIN/tradeplane-loadgen}

# free_port, start_moto
# shellcheck source=lib/bench-s3.sh
source "$ROOT/scripts/lib/bench-s3.sh"
SUFFIX="$$_$(date +%s)"
SRC="tp_bench_backup_src_$SUFFIX"
DST="tp_bench_backup_dst_$SUFFIX"
WORK=$(mktemp -d -t tp-bench-backup.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  dropdb --if-exists "$SRC" 2>/dev/null || true
  dropdb --if-exists "$DST" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

start_moto "$WORK"

createdb "$SRC"
createdb "$DST"
SRC_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$SRC"
DST_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$DST"
ADMIN_USER=benchadmin
ADMIN_PASSWORD="bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
PORT=$(free_port)
URL="http://127.0.0.1:$PORT"
LISTEN_ADDR="127.0.0.1:$PORT" ADVERTISE_ADDR="127.0.0.1:$PORT" DATABASE_URL="$SRC_URL" \
  LOG_FORMAT=json RUST_LOG=warn JWT_SECRET="bench-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')" \
  ADMIN_USERNAME=$ADMIN_USER ADMIN_PASSWORD="$ADMIN_PASSWORD" \
  RATE_LIMIT_PER_SECOND=1000000 RATE_LIMIT_BURST=1000000 LOGIN_RATE_LIMIT_PER_MINUTE=100000 \
  MAX_CONCURRENT_REQUESTS=1024 "$BIN/tradeplane-platform" >"$WORK/platform.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 120); do curl -fs -o /dev/null --max-time 2 "$URL/health/ready" && break; sleep 0.5; done
curl -fsS -o /dev/null "$URL/health/ready" || { echo "bench-backup-s3: the platform is not ready" >&2; tail -n 20 "$WORK/platform.log" >&2; exit 1; }

load() { # orders, seconds
  LOADGEN_ADMIN_PASSWORD="$ADMIN_PASSWORD" "$LOADGEN" --url "$URL" --admin-user "$ADMIN_USER" \
    --levels "$LOAD_CLIENTS" --orders-per-level "$1" --max-seconds "$2" --accounts "$ACCOUNTS"
}
echo "bench-backup-s3: filling with $FILL_ORDERS orders at $LOAD_CLIENTS clients" >&2
load "$FILL_ORDERS" 300 >"$WORK/fill.txt" 2>"$WORK/fill.err"
tail -n 3 "$WORK/fill.txt" >&2

load 10000000 600 >"$WORK/load.txt" 2>"$WORK/load.err" &
LOAD_PID=$!
PIDS+=("$LOAD_PID")
sleep 5 # the load is running
t0=$(date +%s.%N)
DATABASE_URL="$SRC_URL" RUST_LOG=warn "$BIN/tradeplane-platform" backup --dest s3://bench/run \
  >"$WORK/backup.out" 2>"$WORK/backup.err" || { cat "$WORK/backup.err" >&2; exit 1; }
t1=$(date +%s.%N)
kill "$LOAD_PID" 2>/dev/null || true
wait "$LOAD_PID" 2>/dev/null || true
cat "$WORK/backup.out"
NAME=$(sed -n 's|^backup written: \(s3://[^ ]*\) .*|\1|p' "$WORK/backup.out")
t2=$(date +%s.%N)
DATABASE_URL="$DST_URL" RUST_LOG=warn "$BIN/tradeplane-platform" restore "$NAME" \
  >"$WORK/restore.out" 2>"$WORK/restore.err" || { cat "$WORK/restore.err" >&2; exit 1; }
t3=$(date +%s.%N)
head -n 1 "$WORK/restore.out"

# Every table's rows in the restored database against the backup's manifest.
mismatch=0
while read -r table rows; do
  got=$(psql -qtAX -d "$DST" -c "SELECT count(*) FROM \"$table\"")
  [[ $got == "$rows" ]] || { echo "bench-backup-s3: $table has $got rows, the backup $rows" >&2; mismatch=1; }
done < <(sed -n 's/^  \([a-z_0-9]*\) *\([0-9]*\) rows$/\1 \2/p' "$WORK/restore.out")
[[ $mismatch == 0 ]] || exit 1

awk -v b0="$t0" -v b1="$t1" -v r0="$t2" -v r1="$t3" 'BEGIN {
  printf "backup to S3 (under load): %.2f s\nrestore from S3 into an empty database: %.2f s\n", b1 - b0, r1 - r0 }'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
