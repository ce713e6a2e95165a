#!/usr/bin/env bash
# scripts/run-example.sh - run one broker example (examples/<name>) the way
# `make examples` and ctest (example.<name>) do, and check what it printed.
#
#   run-example.sh SWIT_BIN EXAMPLE_DIR IDLE [VAR=@FILE | VAR=VALUE]...
#
# Each VAR=@FILE sets VAR to the first line of FILE (the endpoint a test
# fixture wrote: build/kafka-mock/bootstrap, build/nats-server/url, ...).
# Runs `swit run EXAMPLE_DIR/swit.yaml --exit-when-idle=IDLE` (bounded by
# `timeout 120`) and passes when it exits 0 and its stdout, sorted, is
# EXAMPLE_DIR/expected.txt, sorted: every expected line once, nothing else.
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 SWIT_BIN EXAMPLE_DIR IDLE [VAR=@FILE]..." >&2; exit 2; }
bin=$1 dir=$2 idle=$3
shift 3
for kv in "$@"; do
  var=${kv%%=*} val=${kv#*=}
  if [ "${val:0:1}" = @ ]; then
    [ -r "${val:1}" ] || { echo "run-example.sh: ${val:1} missing: is the broker fixture up?" >&2; exit 1; }
    val=$(head -n1 "${val:1}")
  fi
  export "$var=$val"
done
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
code=0
timeout 120 "$bin" run "$dir/swit.yaml" --exit-when-idle="$idle" >"$out" 2>"$err" || code=$?
if [ "$code" -ne 0 ] || ! diff <(sort "$dir/expected.txt") <(sort "$out") >/dev/null; then
  echo "run-example.sh: $dir: exit $code; expected (sorted) vs printed (sorted):" >&2
  diff <(sort "$dir/expected.txt") <(sort "$out") >&2 || true
  echo "--- stderr:" >&2
  cat "$err" >&2
  exit 1
fi
cat "$out"
echo "run-example.sh: $dir: $(wc -l <"$out") line(s) as expected"
