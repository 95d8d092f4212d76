#!/usr/bin/env bash
# Mutation testing of the pure engine crate (issue 10, "Tests that would catch a broken
# rollback"): cargo-mutants changes engine/src one small edit at a time (an operator flipped, a
# function body replaced, a condition negated), builds, and runs the engine's unit and
# integration tests against each mutant. A mutant the tests still pass on is "missed". Prints
# the kill rate of viable mutants (unviable ones do not compile and count for nothing) and
# fails when it is below MIN_KILL_RATE.
#
#   scripts/mutants.sh                 # every mutant of engine/ (~460; see docs/benchmarks.md for the time)
#   scripts/mutants.sh --iterate       # only those not caught by the previous run in OUT_DIR
#   scripts/mutants.sh -f engine/src/book.rs   # extra arguments go to cargo mutants
#
# Not part of every CI run: it builds and tests once per mutant. Settings (environment):
# JOBS (2; parallel builds), PROPTEST_CASES (64 here instead of proptest's 256: every mutant
# also runs the property tests), CARGO_PROFILE_DEV_DEBUG (0), MIN_KILL_RATE (90), OUT_DIR (target/mutants; cargo mutants
# writes OUT_DIR/mutants.out, which --iterate reads back). Needs `cargo install cargo-mutants`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
JOBS=${JOBS:-2}
MIN_KILL_RATE=${MIN_KILL_RATE:-90}
OUT_DIR=${OUT_DIR:-$ROOT/target/mutants}
export PROPTEST_CASES=${PROPTEST_CASES:-64}
# No debug info in the per-mutant builds: the link of the three test binaries is most of a
# mutant's build time.
export CARGO_PROFILE_DEV_DEBUG=${CARGO_PROFILE_DEV_DEBUG:-0}

command -v cargo-mutants >/dev/null || {
  echo "mutants: cargo-mutants is required: cargo install --locked cargo-mutants" >&2
  exit 1
}
mkdir -p "$OUT_DIR"
cd "$ROOT"
started=$(date +%s)
status=0
# Doc tests are left out (--lib --tests): compiling them per mutant triples the time, and the
# one doc test repeats what the unit tests check. cargo mutants exits 2 when mutants were
# missed and 3 on timeouts; the figure below is the verdict.
cargo mutants -p tradeplane-engine -j "$JOBS" -o "$OUT_DIR" "$@" -- --lib --tests || status=$?
if [[ $status != 0 && $status != 2 && $status != 3 ]]; then
  echo "mutants: cargo mutants failed (exit $status)" >&2
  exit "$status"
fi
elapsed=$(($(date +%s) - started))

python3 - "$OUT_DIR/mutants.out/outcomes.json" "$MIN_KILL_RATE" "$elapsed" <<'PY'
import json, sys
path, minimum, elapsed = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
counts = {}
for o in json.load(open(path))["outcomes"]:
    if o["scenario"] == "Baseline":
        continue
    counts[o["summary"]] = counts.get(o["summary"], 0) + 1
caught = counts.get("CaughtMutant", 0)
missed = counts.get("MissedMutant", 0)
timeout = counts.get("Timeout", 0)
unviable = counts.get("Unviable", 0)
viable = caught + missed + timeout
# A mutant that makes the tests hang is detected too (cargo mutants reports it apart).
rate = 100.0 * (caught + timeout) / viable if viable else 0.0
print(f"mutants: {caught + missed + timeout + unviable} tested in {elapsed // 60}m{elapsed % 60:02d}s: "
      f"{caught} caught, {timeout} timed out, {missed} missed, {unviable} unviable")
print(f"mutants: kill rate {rate:.1f}% of {viable} viable mutants (minimum {minimum:g}%)")
if missed:
    print(f"mutants: the missed ones are listed in {path.rsplit('/', 1)[0]}/missed.txt")
sys.exit(0 if rate >= minimum else 1)
PY
