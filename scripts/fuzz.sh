#!/usr/bin/env bash
# scripts/fuzz.sh - run every libFuzzer harness of a -DSWIT_FUZZ=ON build
# on its seed corpus (spec/fuzz/corpus/<harness>/) for a bounded time.
#   scripts/fuzz.sh [BUILD_DIR] [SECONDS_EACH] [harness...]
# `make fuzz` runs it as a smoke (20 s each); longer runs use the same
# command with more seconds. New inputs go to BUILD_DIR/fuzz-corpus/, never
# into the committed seeds; a crash leaves its input in
# BUILD_DIR/fuzz-artifacts/ and fails the script: reproduce it with
# `BUILD_DIR/spec/fuzz/<harness> <that file>` and, once fixed, commit the
# input under spec/fuzz/corpus/<harness>/ as its regression seed.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-fuzz}
secs=${2:-20}
shift $(( $# < 2 ? $# : 2 ))
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(fuzz_config fuzz_json fuzz_trace fuzz_serialize fuzz_http)

mkdir -p "$build/fuzz-artifacts"
for h in "${harnesses[@]}"; do
  bin=$build/spec/fuzz/$h
  [ -x "$bin" ] || { echo "fuzz.sh: $bin not built (make fuzz)" >&2; exit 2; }
  mkdir -p "$build/fuzz-corpus/$h"
  echo "fuzz.sh: $h for ${secs}s" >&2
  # -timeout: one input over 10 s is a finding (a hang); -rss_limit_mb
  # bounds memory; detect_leaks stays on (ASan's default)
  "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
         -print_final_stats=1 -artifact_prefix="$build/fuzz-artifacts/$h-" \
         "$build/fuzz-corpus/$h" "spec/fuzz/corpus/$h" 2>"$build/fuzz-$h.log" || {
    tail -n 60 "$build/fuzz-$h.log" >&2
    echo "fuzz.sh: $h FAILED (log: $build/fuzz-$h.log)" >&2
    exit 1
  }
  grep -E '^stat::number_of_executed_units' "$build/fuzz-$h.log" |
    sed "s/^/fuzz.sh: $h /" >&2
done
