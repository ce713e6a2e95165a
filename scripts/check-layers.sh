#!/usr/bin/env bash
# scripts/check-layers.sh - fail when a layer of libswit reaches up.
#
#   scripts/check-layers.sh SOURCE_DIR OBJECT_DIR
#
# The layers, bottom to top (docs/architecture.md draws them):
#   0 base  1 config  2 core  3 obs, brokers/*  4 resil
#   5 runtime, bindings/  6 net  7 api (and the generated broker list)  8 cli
# A file may include and call only its own layer and the layers below.
# Two checks:
#   includes: every `#include "layer/file.h"` in host/ and bindings/;
#   calls:    every undefined symbol of each object file (nm) is looked up
#             in the objects that define it; a definition in a higher
#             layer is an upward call (data references count too).
# Run by ctest as arch.layers; OBJECT_DIR is the swit_obj target's folder.
set -euo pipefail
src=${1:?source dir}
obj=${2:?object dir}

rank_of() {   # path (source or object, relative) -> rank, or empty
  case "$1" in
    host/base/*) echo 0 ;;
    host/config/*) echo 1 ;;
    host/core/*) echo 2 ;;
    host/obs/*|brokers/*) echo 3 ;;
    host/resil/*) echo 4 ;;
    host/runtime/*|bindings/*|gen/swit_lua_modules*|gen/swit_ffi_cdef*) echo 5 ;;
    host/net/*) echo 6 ;;
    host/api/*|gen/swit_brokers*) echo 7 ;;
    host/cli/*) echo 8 ;;
  esac
}

fail=0
report() { echo "check-layers: $*" >&2; fail=1; }

# ---- includes -------------------------------------------------------------
cd "$src"
nfiles=0
while IFS= read -r f; do
  r=$(rank_of "$f")
  [ -n "$r" ] || continue
  nfiles=$((nfiles + 1))
  while IFS=: read -r line inc; do
    dir=${inc%%/*}
    [ "$dir" != "$inc" ] || continue          # "swit_ffi.h", local headers
    t=$(rank_of "host/$dir/x")
    [ -n "$t" ] || continue                   # "swit/swit.h": public API
    if [ "$t" -gt "$r" ]; then
      report "$f:$line: includes \"$inc\" (layer $t) from layer $r"
    fi
  done < <(grep -n '^#include "' "$f" | sed 's/^\([0-9]*\):#include "\([^"]*\)".*/\1:\2/')
done < <(find host bindings -name '*.[ch]' | sort)
[ "$nfiles" -gt 20 ] || report "only $nfiles source files found under $src"

# ---- calls ------------------------------------------------------------------
cd "$obj"
defs=$(mktemp)
nobj=0
while IFS= read -r o; do
  rel=${o#./}
  r=$(rank_of "$rel")
  [ -n "$r" ] || continue
  nobj=$((nobj + 1))
  nm --defined-only -g "$o" | awk -v r="$r" -v f="$rel" 'NF == 3 {print $3, r, f}'
done < <(find . -name '*.o' | sort) > "$defs"
[ "$nobj" -gt 20 ] || report "only $nobj object files found under $obj"

uses=$(mktemp)
trap 'rm -f "$defs" "$uses"' EXIT
while IFS= read -r o; do
  rel=${o#./}
  r=$(rank_of "$rel")
  [ -n "$r" ] || continue
  nm -u "$o" | awk -v r="$r" -v f="$rel" '{print $2, r, f}'
done < <(find . -name '*.o' | sort) > "$uses"
# defs: symbol rank file; uses: symbol rank file -> upward uses
bad=$(awk 'NR == FNR {rank[$1] = $2; file[$1] = $3; next}
           ($1 in rank) && rank[$1] > $2 {
             sub(/\.o$/, "", $3); f = file[$1]; sub(/\.o$/, "", f)
             printf "%s: uses %s, defined in %s (layer %s) from layer %s\n",
                    $3, $1, f, rank[$1], $2
           }' "$defs" "$uses")
if [ -n "$bad" ]; then
  while IFS= read -r l; do report "$l"; done <<< "$bad"
fi

if [ "$fail" -ne 0 ]; then
  echo "check-layers: FAILED (see docs/architecture.md, 'Layers')" >&2
  exit 1
fi
echo "check-layers: $nfiles source files and $nobj objects, no upward include or call"
