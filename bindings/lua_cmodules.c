/*
 * lua_cmodules.c - the C modules of the Lua side (classic lua_CFunctions,
 * which may build Lua values, unlike the FFI exports), preloaded into
 * every state the host builds: require "swit.json" gives the JSON
 * decoder msg:json() uses.
 */
#include <stddef.h>

#include "runtime/runtime.h"
#include "lua_json.h"

const swit__lua_cmodule swit__lua_cmodules[] = {
  {"swit.json", swit__luaopen_json},
  {NULL, NULL},
};
