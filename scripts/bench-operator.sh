#!/usr/bin/env bash
# Operator scale benchmark (issue 13 "Scale and quiet"): the real Controller against the tests'
# in-process fake API with BENCH_PLATFORMS TradingPlatforms (default 1000). Prints the time until
# every one has observedGeneration == generation, the peak RSS and the API requests during a quiet
# period (BENCH_QUIET_SECONDS, default 20), next to the goals (< 60 s, < 40 MiB, 0), plus the load
# average. What it does not model is listed in operator/tests/scale_bench.rs.
#
# Usage: scripts/bench-operator.sh               debug build (what the figures in the docs used)
#        PROFILE=release scripts/bench-operator.sh
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
if [[ ${PROFILE:-debug} == release ]]; then args+=(--release); fi
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
cargo test -q -p tradeplane-operator "${args[@]}" --test scale_bench --no-run
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (nproc $(nproc)), profile ${PROFILE:-debug}"
cargo test -q -p tradeplane-operator "${args[@]}" --test scale_bench -- --ignored --nocapture --test-threads 1
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"
