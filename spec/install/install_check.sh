#!/bin/sh
# install_check.sh - test install.check: `cmake --install` (what
# `make install` runs) into a staged DESTDIR and PREFIX, then a copy of
# examples/install-check, outside the tree, is built against the staged
# copy twice - with `pkg-config --cflags --libs libswit` and with
# find_package(swit) - and each program runs on the memory broker.
#   install_check.sh BUILD_DIR EXAMPLE_DIR TMP_ROOT CC CMAKE [CFLAGS]
# CFLAGS: what libswit was built with that a program must share (the
# sanitizers of a -DSWIT_SANITIZE build), or empty.
set -eu
build=$1 example=$2 tmp_root=$3 cc=$4 cmake=$5 extra=${6:-}
fail() { echo "install.check: $*" >&2; exit 1; }

mkdir -p "$tmp_root"
tmp=$(mktemp -d "$tmp_root/install-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=/opt/swit-install-check
DESTDIR="$tmp/stage" "$cmake" --install "$build" --prefix "$prefix" \
  >"$tmp/install.log" || { cat "$tmp/install.log"; fail "cmake --install failed"; }
root="$tmp/stage$prefix"
pc=$(find "$root" -name libswit.pc)
[ -n "$pc" ] || fail "libswit.pc not installed"
libdir=$(dirname "$(dirname "$pc")")
for f in bin/swit include/swit/swit.h include/swit/swit_version.h \
         share/doc/swit/embedding.md share/doc/swit/examples/install-check/main.c; do
  [ -e "$root/$f" ] || fail "$f not installed"
done
for f in libswit.so libswit.a cmake/swit/swit-config.cmake \
         cmake/swit/swit-config-version.cmake cmake/swit/swit-targets.cmake; do
  [ -e "$libdir/$f" ] || fail "$libdir/$f not installed"
done
"$root/bin/swit" --version | grep -q '^swit [0-9]' || fail "the installed swit does not run"

mkdir "$tmp/src"
cp "$example/main.c" "$example/CMakeLists.txt" "$tmp/src/"

# pkg-config, from the staged copy (libswit.pc finds its prefix itself)
flags=$(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs libswit) ||
  fail "pkg-config --cflags --libs libswit failed"
case "$flags" in *"$root/"*) ;; *) fail "pkg-config gave $flags, not the staged copy" ;; esac
# shellcheck disable=SC2086 # the flags are words
"$cc" -std=c11 -Wall -Wextra -Werror $extra -o "$tmp/check-pc" "$tmp/src/main.c" \
  $flags -Wl,-rpath,"$libdir" || fail "the pkg-config build failed"
ldd "$tmp/check-pc" | grep -q "$libdir/libswit.so" || fail "not linked to the staged libswit.so"
"$tmp/check-pc" || fail "the pkg-config build did not run"

# find_package(swit): swit::swit
"$cmake" -S "$tmp/src" -B "$tmp/cm" -DCMAKE_PREFIX_PATH="$root" \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$extra" \
  -DCMAKE_EXE_LINKER_FLAGS="$extra" >"$tmp/cm.log" 2>&1 &&
  "$cmake" --build "$tmp/cm" >>"$tmp/cm.log" 2>&1 ||
  { cat "$tmp/cm.log"; fail "the find_package build failed"; }
"$tmp/cm/install-check" || fail "the find_package build did not run"
echo "install.check: staged install, pkg-config and find_package builds ran"
