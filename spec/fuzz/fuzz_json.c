/*
 * fuzz_json.c - libFuzzer harness of the JSON decoder behind msg:json()
 * (bindings/lua_json.c). One lua_State per process; each input is
 * decoded under lua_pcall (a raise is a finding: only out-of-memory may
 * raise), must give a value or nil plus a message, and the stack is
 * cleared afterwards. A decoded value is checked against the input's
 * first byte (the JSON type it must have).
 * Built with -DSWIT_FUZZ=ON (spec/fuzz/CMakeLists.txt).
 */
#include <stdint.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lualib.h>

#include "lua_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *L;

/* The Lua type a JSON text must decode to, from its first non-space byte. */
static int type_of(const uint8_t *p, size_t n)
{
  size_t i = 0;
  while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
    i++;
  if (i == n) return LUA_TNONE;
  switch (p[i]) {
  case '{': case '[': return LUA_TTABLE;
  case '"': return LUA_TSTRING;
  case 't': case 'f': return LUA_TBOOLEAN;
  case 'n': return LUA_TLIGHTUSERDATA; /* null */
  default: return LUA_TNUMBER;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (!L) {
    if (!(L = luaL_newstate())) abort();
    luaL_openlibs(L);
  }
  lua_settop(L, 0);
  lua_pushcfunction(L, swit__lua_json_decode);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 2, 0) != 0) abort();
  if (lua_isnil(L, 1)) {
    if (!lua_isstring(L, 2)) abort();
  } else if (lua_type(L, 1) != type_of(data, size)) {
    abort();
  }
  lua_settop(L, 0);
  return 0;
}
