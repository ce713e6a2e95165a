/*
 * fuzz_serialize.c - libFuzzer harness of the export/import serializer
 * (host/runtime/serialize.c). Each input is read with swit__deserialize
 * into one lua_State kept for the process (outside lua_pcall, as
 * swit__lua_handover calls it: a Lua error would be a panic, so a
 * finding). What it accepts must be written again by swit__serialize
 * without a refusal, and read back into a value equal to the first
 * (numbers bit for bit); what it refuses leaves the stack as it was.
 * Built with -DSWIT_FUZZ=ON (spec/fuzz/CMakeLists.txt).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "core/host_int.h"
#include "runtime/runtime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *L;

static int same(int a, int b);

static size_t count(int t)
{
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    n++;
  }
  return n;
}

/* Tables a and b have the same number of keys and every key of a is in
 * b with an equal value (one pass each way: linear, not exponential). */
static int same_table(int a, int b)
{
  lua_pushnil(L);
  while (lua_next(L, a)) {
    lua_pushvalue(L, -2);
    lua_rawget(L, b);
    if (!same(lua_gettop(L) - 1, lua_gettop(L))) {
      lua_pop(L, 3);
      return 0;
    }
    lua_pop(L, 2);
  }
  return count(a) == count(b);
}

static int same(int a, int b)
{
  double x, y;
  size_t la, lb;
  const char *sa, *sb;

  if (lua_type(L, a) != lua_type(L, b)) return 0;
  switch (lua_type(L, a)) {
  case LUA_TNIL: return 1;
  case LUA_TBOOLEAN: return lua_toboolean(L, a) == lua_toboolean(L, b);
  case LUA_TNUMBER:
    x = lua_tonumber(L, a);
    y = lua_tonumber(L, b);
    return memcmp(&x, &y, sizeof x) == 0;
  case LUA_TSTRING:
    sa = lua_tolstring(L, a, &la);
    sb = lua_tolstring(L, b, &lb);
    return la == lb && memcmp(sa, sb, la) == 0;
  case LUA_TTABLE:
    if (!lua_checkstack(L, 8)) abort();
    return same_table(a, b);
  default: return 0;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  swit__buf b = {0};
  char err[512];

  if (!L) {
    if (!(L = luaL_newstate())) abort();
    luaL_openlibs(L);
  }
  lua_settop(L, 0);
  if (swit__deserialize(L, (const char *)data, size) != 0) {
    if (lua_gettop(L) != 0) abort();
    return 0;
  }
  if (lua_gettop(L) != 1) abort();
  if (swit__serialize(L, 1, &b, err, sizeof err) != 0) abort();
  if (swit__deserialize(L, b.data, b.len) != 0 || lua_gettop(L) != 2) abort();
  if (!same(1, 2)) abort();
  free(b.data);
  lua_settop(L, 0);
  return 0;
}
