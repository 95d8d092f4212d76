#!/usr/bin/env bash
# Point-in-time archiving under the benchmark's load: its cost, its lag, and a restore.
#
#   scripts/bench-pitr.sh
#
# 1. starts a private moto_server (PyPI `moto[server]`) with one bucket, a throwaway PostgreSQL
#    database and the release platform WITHOUT archiving; runs the load generator (A);
# 2. restarts the platform with ARCHIVE_DEST=s3://bench/run (ARCHIVE_INTERVAL_SECONDS, default
#    5) and runs the same load (B), sampling /metrics every second for the archive's lag (seconds
#    since the last shipped segment) and backlog (changes waiting in the database); a backup to
#    the bucket is taken, timed, in the middle of B;
# 3. after B, writes a named restore point, waits for it to be shipped, and times
#    `restore s3://bench/run --until-seq N` into an empty database; compares the orders, trades
#    and audit rows there with the source at the restore point;
# 4. turns archiving off (`archive disable`), restarts without it and runs the load again (A'),
#    so the cost is read against runs on both sides; prints everything with the load average.
#
# Settings (environment): CLIENTS (16), SECONDS_PER_RUN (20), ACCOUNTS (32), ARCHIVE_INTERVAL
# (5), PGHOST/PGPORT/PGUSER, CARGO_TARGET_DIR (target), SKIP_BUILD (0).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CLIENTS=${CLIENTS:-16}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-20}
ACCOUNTS=${ACCOUNTS:-32}
ARCHIVE_INTERVAL=${ARCHIVE_INTERVAL:-5}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release
for tool in cargo curl psql createdb dropdb moto_server python3; do
  command -v "$tool" >/dev/null || { echo "bench-pitr: $tool is required" >&2; exit 1; }
done
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  (cd "$ROOT" && cargo build --release -p tradeplane-platform --bin tradeplane-platform \
    && cargo build --release -p tradeplane-tests --bin tradeplane-loadgen)
fi
LOADGEN=$BIN/tradeplane-loadgen

# free_port, start_moto
# shellcheck source=lib/bench-s3.sh
source "$ROOT/scripts/lib/bench-s3.sh"
SUFFIX="$$_$(date +%s)"
SRC="tp_bench_pitr_src_$SUFFIX"
DST="tp_bench_pitr_dst_$SUFFIX"
WORK=$(mktemp -d -t tp-bench-pitr.XXXXXX)
PIDS=()
PLATFORM_PID=
cleanup() {
  for p in "${PIDS[@]}" $PLATFORM_PID; do kill "$p" 2>/dev/null || true; done
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
JWT="bench-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
PORT=$(free_port)
URL="http://127.0.0.1:$PORT"

start_platform() { # extra env assignments...
  env LISTEN_ADDR="127.0.0.1:$PORT" ADVERTISE_ADDR="127.0.0.1:$PORT" DATABASE_URL="$SRC_URL" \
    LOG_FORMAT=json RUST_LOG=warn JWT_SECRET="$JWT" \
    ADMIN_USERNAME=$ADMIN_USER ADMIN_PASSWORD="$ADMIN_PASSWORD" \
    RATE_LIMIT_PER_SECOND=1000000 RATE_LIMIT_BURST=1000000 LOGIN_RATE_LIMIT_PER_MINUTE=100000 \
    MAX_CONCURRENT_REQUESTS=1024 "$@" "$BIN/tradeplane-platform" >>"$WORK/platform.log" 2>&1 &
  PLATFORM_PID=$!
  for _ in $(seq 1 120); do curl -fs -o /dev/null --max-time 2 "$URL/health/ready" && break; sleep 0.5; done
  curl -fsS -o /dev/null "$URL/health/ready" || { echo "bench-pitr: the platform is not ready" >&2; tail -n 20 "$WORK/platform.log" >&2; exit 1; }
}
stop_platform() {
  kill -TERM "$PLATFORM_PID" 2>/dev/null || true
  wait "$PLATFORM_PID" 2>/dev/null || true
  PLATFORM_PID=
}
load() { # label
  LOADGEN_ADMIN_PASSWORD="$ADMIN_PASSWORD" "$LOADGEN" --url "$URL" --admin-user "$ADMIN_USER" \
    --levels "$CLIENTS" --orders-per-level 10000000 --max-seconds "$SECONDS_PER_RUN" \
    --accounts "$ACCOUNTS" >"$WORK/$1.txt" 2>"$WORK/$1.err"
}
row() { sed -n '2p' "$WORK/$1.txt"; }
metric() { curl -fs "$URL/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

echo "bench-pitr: A (archiving off), $CLIENTS clients, $SECONDS_PER_RUN s" >&2
start_platform
load a
stop_platform

echo "bench-pitr: B (ARCHIVE_DEST=s3://bench/run, every ${ARCHIVE_INTERVAL}s), with a backup in the middle" >&2
start_platform ARCHIVE_DEST=s3://bench/run ARCHIVE_INTERVAL_SECONDS="$ARCHIVE_INTERVAL"
load b &
LOAD_PID=$!
: >"$WORK/lag.txt"
(
  while kill -0 "$LOAD_PID" 2>/dev/null; do
    shipped=$(metric archive_last_shipped_timestamp_seconds || echo 0)
    backlog=$(metric archive_backlog_changes || echo 0)
    echo "$(date +%s.%N) ${shipped:-0} ${backlog:-0}" >>"$WORK/lag.txt"
    sleep 1
  done
) &
SAMPLER=$!
sleep $((SECONDS_PER_RUN / 2))
t0=$(date +%s.%N)
DATABASE_URL="$SRC_URL" RUST_LOG=warn "$BIN/tradeplane-platform" backup --dest s3://bench/run \
  >"$WORK/backup.out" 2>"$WORK/backup.err" || { cat "$WORK/backup.err" >&2; exit 1; }
t1=$(date +%s.%N)
wait "$LOAD_PID"
wait "$SAMPLER" 2>/dev/null || true
sleep 2 # the last accepted orders settle
POINT=$(DATABASE_URL="$SRC_URL" RUST_LOG=warn "$BIN/tradeplane-platform" archive restore-point bench-end)
SEQ=$(sed -n 's/^restore point #\([0-9]*\) .*/\1/p' <<<"$POINT")
[[ -n $SEQ ]] || { echo "bench-pitr: no restore point: $POINT" >&2; exit 1; }
counts() { psql -qtAX -d "$1" -c "SELECT (SELECT count(*) FROM orders) || ' ' || (SELECT count(*) FROM trades) || ' ' || (SELECT count(*) FROM audit_events)"; }
SOURCE_COUNTS=$(counts "$SRC")
for _ in $(seq 1 120); do
  left=$(psql -qtAX -d "$SRC" -c "SELECT count(*) FROM change_log WHERE id <= $SEQ")
  [[ $left == 0 ]] && break
  sleep 0.5
done
STATUS=$(DATABASE_URL="$SRC_URL" RUST_LOG=warn "$BIN/tradeplane-platform" archive status)
stop_platform
t2=$(date +%s.%N)
DATABASE_URL="$DST_URL" RUST_LOG=warn "$BIN/tradeplane-platform" restore s3://bench/run --until-seq "$SEQ" \
  >"$WORK/restore.out" 2>"$WORK/restore.err" || { cat "$WORK/restore.err" >&2; exit 1; }
t3=$(date +%s.%N)
RESTORED_COUNTS=$(counts "$DST")
[[ $RESTORED_COUNTS == "$SOURCE_COUNTS" ]] || {
  echo "bench-pitr: restored orders/trades/audit rows $RESTORED_COUNTS, the source had $SOURCE_COUNTS" >&2; exit 1; }

DATABASE_URL="$SRC_URL" RUST_LOG=warn "$BIN/tradeplane-platform" archive disable >/dev/null
echo "bench-pitr: A' (archiving off again)" >&2
start_platform
load a2
stop_platform

echo "                      $(head -n 1 "$WORK/a.txt")"
echo "A  archiving off      $(row a)"
echo "B  archiving on       $(row b)"
echo "A' archiving off      $(row a2)"
awk '{ if ($2 > 0) { lag = $1 - $2; if (lag > max) max = lag; sum += lag; n++ } if ($3 > maxb) maxb = $3 }
     END { if (n) printf "archive lag during B (s since the last shipped segment, sampled each second): mean %.1f, max %.1f; backlog max %d changes\n", sum / n, max, maxb;
           else print "archive lag: no segment shipped during B" }' "$WORK/lag.txt"
echo "$STATUS"
grep -E "^(backup written|restored|then replayed)" "$WORK/backup.out" "$WORK/restore.out" | sed 's/^[^:]*://'
awk -v b0="$t0" -v b1="$t1" -v r0="$t2" -v r1="$t3" 'BEGIN {
  printf "backup to S3 (under load, archiving on): %.2f s\nrestore from S3 --until-seq (backup + replay) into an empty database: %.2f s\n", b1 - b0, r1 - r0 }'
echo "restored orders/trades/audit rows: $RESTORED_COUNTS (source at the restore point: $SOURCE_COUNTS)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
