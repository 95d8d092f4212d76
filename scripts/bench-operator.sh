#!/usr/bin/env bash
# Operator scale benchmarks (issue 13 "Scale and quiet"), both in operator/tests/scale_bench.rs,
# with BENCH_PLATFORMS TradingPlatforms (default 1000) in the tests' fake API:
# - reconcile_1000_platforms_then_stay_quiet: the real Controller in the benchmark's process
#   against the in-process fake (its peak RSS includes the fake's store);
# - operator_process_rss_at_1000_platforms: the operator binary (`tradeplane-operator run`) as a
#   child process against the same fake served over plain HTTP on 127.0.0.1; the peak RSS printed
#   is the child's alone.
# Each prints the time until every one has observedGeneration == generation, the peak RSS and the
# API requests during a quiet period (BENCH_QUIET_SECONDS, default 20), next to the goals (< 60 s,
# < 40 MiB, 0), and the script prints the load average. What they do not model is listed in
# operator/tests/scale_bench.rs.
#
# Usage: scripts/bench-operator.sh               debug build of the test and of the operator binary
#        PROFILE=release scripts/bench-operator.sh   both in release (cargo builds the binary the
#                                                    test runs, CARGO_BIN_EXE_tradeplane-operator,
#                                                    in the test's profile)
#        BENCH_TEST=operator_process scripts/bench-operator.sh   only the benchmark whose name
#                                                    contains BENCH_TEST
#        FEATURES=mimalloc ...                       the operator with mimalloc
#        TARGET=musl PROFILE=release ...             the child-process benchmark runs a static musl
#                                                    build of the operator, as the image ships it
#                                                    (needs `rustup target add
#                                                    x86_64-unknown-linux-musl` and musl-gcc from
#                                                    Debian's musl-tools)
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
if [[ ${PROFILE:-debug} == release ]]; then args+=(--release); fi
# FEATURES=mimalloc builds the operator with the allocator its image ships (Dockerfile).
if [[ -n ${FEATURES:-} ]]; then args+=(--features "$FEATURES"); fi
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
# Builds the test and, for the second benchmark, the operator binary in the same profile.
cargo test -q -p tradeplane-operator "${args[@]}" --test scale_bench --no-run
if [[ ${TARGET:-} == musl ]]; then
  musl=x86_64-unknown-linux-musl
  if ! rustup target list --installed | grep -qx "$musl" || ! command -v musl-gcc >/dev/null; then
    echo "TARGET=musl needs: rustup target add $musl; apt-get install musl-tools" >&2
    exit 2
  fi
  CC_x86_64_unknown_linux_musl=musl-gcc cargo build -q -p tradeplane-operator "${args[@]}" \
    --target "$musl" --bin tradeplane-operator
  # Absolute: cargo runs the test in the crate's directory.
  target_dir=$(realpath "${CARGO_TARGET_DIR:-target}")
  export BENCH_OPERATOR_BIN="$target_dir/$musl/${PROFILE:-debug}/tradeplane-operator"
fi
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (nproc $(nproc)), profile ${PROFILE:-debug}, features ${FEATURES:-none}, operator binary ${BENCH_OPERATOR_BIN:-built beside the test}"
# One process per benchmark: VmHWM is a per-process peak, so the in-process benchmark's figure
# would include the fake store of one run before it.
for test in reconcile_1000_platforms_then_stay_quiet operator_process_rss_at_1000_platforms; do
  if [[ -n ${BENCH_TEST:-} && $test != *"$BENCH_TEST"* ]]; then continue; fi
  cargo test -q -p tradeplane-operator "${args[@]}" --test scale_bench -- "$test" --exact --ignored --nocapture
done
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"
