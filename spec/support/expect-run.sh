#!/usr/bin/env bash
# spec/support/expect-run.sh - run a program for ctest and judge how it
# ended, for tests that also look at its output (the embedding example):
#
#   expect-run.sh 'REGEX' PROGRAM [ARGS...]
#
# Passes only if PROGRAM exits 0, its output (stdout and stderr, printed
# here) matches the extended regular expression REGEX, and holds no
# sanitizer report (ASan, LSan, UBSan, TSan). ctest's own
# PASS_REGULAR_EXPRESSION would ignore the exit code.
set -uo pipefail
[ $# -ge 2 ] || { echo "usage: $0 REGEX PROGRAM [ARGS...]" >&2; exit 2; }
want=$1; shift
out=$("$@" 2>&1); rc=$?
printf '%s\n' "$out"
if grep -Eq 'ERROR: (Address|Leak)Sanitizer|runtime error: |WARNING: ThreadSanitizer' <<<"$out"; then
  echo "expect-run.sh: sanitizer report in the output of $1" >&2; exit 1
fi
[ "$rc" -eq 0 ] || { echo "expect-run.sh: $1 exited $rc" >&2; exit 1; }
grep -Eq -- "$want" <<<"$out" || { echo "expect-run.sh: no match for '$want' in the output of $1" >&2; exit 1; }
