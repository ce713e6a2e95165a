#!/bin/sh
# packaging/check-docker.sh - test packaging.docker. The image cannot be
# built here (no container runtime in CI), so this checks what would
# break it silently: every shared library the swit binary links, and the
# cjson module swit loads at run time, come from a package of
# `scripts/install-deps.sh --runtime` (the final image's list), from a
# direct dependency of one, or from a package of priority "required"
# (in every Debian image); and packaging/Dockerfile installs with those
# lists, starts from Debian 12 and runs as a user other than root.
#   check-docker.sh SOURCE_DIR SWIT_BINARY
set -eu
src=$1 bin=$2
fail() { echo "packaging.docker: $*" >&2; exit 1; }

runtime=$("$src/scripts/install-deps.sh" --list-runtime)
deps=$(for p in $runtime; do dpkg-query -W -f='${Depends}\n' "$p" 2>/dev/null; done |
       tr ',|' '\n\n' | sed 's/([^)]*)//; s/:any//; s/ //g' | sort -u)
covered() {
  echo "$runtime" | grep -qx "$1" && return 0
  echo "$deps" | grep -qx "$1" && return 0
  [ "$(dpkg-query -W -f='${Priority}' "$1" 2>/dev/null)" = required ]
}
owner() { dpkg -S "$1" 2>/dev/null | head -n1 | cut -d: -f1; }

n=0
for lib in $(ldd "$bin" | awk '/=>/ { print $3 }'); do
  pkg=$(owner "$(readlink -f "$lib")")
  [ -n "$pkg" ] || pkg=$(owner "$lib")
  [ -n "$pkg" ] || fail "no package owns $lib"
  covered "$pkg" || fail "swit links $lib from $pkg, which install-deps.sh --runtime does not bring"
  n=$((n + 1))
done
cjson=$(luajit -e 'print(package.searchpath("cjson", package.cpath))')
pkg=$(owner "$(readlink -f "$cjson")")
covered "$pkg" || fail "cjson ($cjson, $pkg) is not in install-deps.sh --runtime"

df=$src/packaging/Dockerfile
grep -q '^FROM debian:12' "$df" || fail "the Dockerfile does not start from Debian 12"
grep -q 'install-deps.sh --build' "$df" || fail "the build stage does not use install-deps.sh --build"
grep -q 'install-deps.sh --runtime' "$df" || fail "the image does not use install-deps.sh --runtime"
user=$(grep '^USER ' "$df" | tail -n1 | awk '{ print $2 }')
[ -n "$user" ] && [ "$user" != root ] && [ "$user" != 0 ] || fail "the image runs as root"
echo "packaging.docker: $n linked libraries and cjson covered by install-deps.sh --runtime; runs as $user"
