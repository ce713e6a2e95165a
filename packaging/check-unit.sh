#!/bin/sh
# packaging/check-unit.sh - test packaging.systemd: packaging/swit.service.in
# with ExecStart on the built binary, checked offline by systemd-analyze:
# `verify` must print nothing (it exits 0 on an unknown key or a bad
# value and only warns, so any output fails), and `security --offline`
# must rate the exposure at most THRESHOLD, in tenths (20 = 2.0, on
# systemd's scale of 0 to 10). A copy with an unknown key
# must fail the same check, so a silent checker cannot pass.
#   check-unit.sh UNIT_IN SWIT_BINARY TMP_ROOT THRESHOLD
# A missing systemd-analyze fails the test (scripts/install-deps.sh
# installs it with the package systemd; a build that cannot have it is
# configured with -DSWIT_WITH_SYSTEMD_ANALYZE=OFF and has no such test).
set -eu
unit_in=$1 bin=$2 tmp_root=$3 threshold=$4
fail() { echo "packaging.systemd: $*" >&2; exit 1; }
command -v systemd-analyze >/dev/null 2>&1 ||
  fail "systemd-analyze not found (Debian package systemd; scripts/install-deps.sh installs it)"

mkdir -p "$tmp_root"
tmp=$(mktemp -d "$tmp_root/unit-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/ok" "$tmp/bad"
sed -e "s|@SWIT_UNIT_BINDIR@|$(dirname "$bin")|g" \
    -e "s|@SWIT_UNIT_DOCDIR@|/usr/share/doc/swit|g" "$unit_in" >"$tmp/ok/swit.service"
grep -q '@SWIT_' "$tmp/ok/swit.service" && fail "a placeholder is left: $(grep '@SWIT_' "$tmp/ok/swit.service")"

# verify: exit code 0 and not a word of output
check() {
  out=$(systemd-analyze verify --man=no "$1" 2>&1) || { echo "$out"; return 1; }
  [ -z "$out" ] || { echo "$out"; return 1; }
}
check "$tmp/ok/swit.service" || fail "systemd-analyze verify found problems (above)"
sed 's/^Type=exec$/Type=exec\nNoSuchKey=1/' "$tmp/ok/swit.service" >"$tmp/bad/swit.service"
if check "$tmp/bad/swit.service" >/dev/null; then
  fail "a unit with an unknown key passed the check"
fi

systemd-analyze security --offline=true --threshold="$threshold" \
  "$tmp/ok/swit.service" >"$tmp/security.txt" 2>&1 ||
  { cat "$tmp/security.txt"; fail "exposure above $threshold"; }
level=$(grep 'Overall exposure level' "$tmp/security.txt")
echo "packaging.systemd: systemd-analyze verify: no finding; $level"
