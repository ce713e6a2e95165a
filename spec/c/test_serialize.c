/*
 * test_serialize.c - the export/import serializer (host/runtime/serialize.c)
 * on bytes it did not write: nesting past 64 levels, keys it cannot write
 * (nil, NaN, tables), truncations and trailing bytes are refused with
 * SWIT_E_INVAL and leave the stack as it was; a value it wrote reads back
 * equal. Each case was a crash (stack overflow, Lua panic) or a value
 * swit__serialize then refused before; spec/fuzz/fuzz_serialize.c covers
 * the rest. One lua_State, single-threaded.
 */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "check.h"
#include "core/host_int.h"
#include "runtime/runtime.h"

static lua_State *L;

static int reads(const char *data, size_t len)
{
  int top = lua_gettop(L), rc = swit__deserialize(L, data, len);
  int grew = lua_gettop(L) - top;
  lua_settop(L, top);
  return rc == 0 ? (grew == 1 ? 0 : -100) : (grew == 0 ? rc : -200);
}
#define READS(lit) reads((lit), sizeof(lit) - 1)

/* n tables, each the value of key true in the one before */
static size_t nest(char *b, size_t n)
{
  size_t len = 0;
  for (size_t i = 0; i + 1 < n; i++) {
    b[len++] = '{';
    b[len++] = 't';
  }
  b[len++] = '{';
  memset(b + len, '}', n);
  return len + n;
}

static void it_refuses_deep_nesting(void)
{
  char *b = malloc(300000);

  CHECK(reads(b, nest(b, 100000)) == SWIT_E_INVAL);
  /* 64 levels are what swit__serialize writes at most */
  CHECK(reads(b, nest(b, 64)) == 0);
  CHECK(reads(b, nest(b, 65)) == SWIT_E_INVAL);
  free(b);
}

static void it_refuses_keys_it_cannot_write(void)
{
  static const char nan_key[] = {'{', 'd', 0, 0, 0, 0, 0, 0, (char)0xf8,
                                 0x7f, 't', '}'};
  CHECK(READS("{nt}") == SWIT_E_INVAL);      /* nil key */
  CHECK(READS("{{}t}") == SWIT_E_INVAL);     /* table key */
  CHECK(reads(nan_key, sizeof nan_key) == SWIT_E_INVAL);
  CHECK(READS("{tf}") == 0);                 /* boolean key */
}

static void it_refuses_truncation_and_trailing_bytes(void)
{
  CHECK(READS("") == SWIT_E_INVAL);
  CHECK(READS("{") == SWIT_E_INVAL);
  CHECK(READS("s\x05\0\0\0abc") == SWIT_E_INVAL);
  CHECK(READS("d\0\0\0") == SWIT_E_INVAL);
  CHECK(READS("tt") == SWIT_E_INVAL);
  CHECK(READS("x") == SWIT_E_INVAL);
}

static void it_reads_back_what_it_wrote(void)
{
  swit__buf b = {0};
  char err[256];

  CHECK(luaL_dostring(L, "return {a = {1, 2, 'x'}, [true] = false, "
                         "[2.5] = 'y', s = ('z'):rep(1000)}") == 0);
  CHECK(swit__serialize(L, -1, &b, err, sizeof err) == 0);
  CHECK(swit__deserialize(L, b.data, b.len) == 0);
  lua_getfield(L, -1, "a");
  lua_rawgeti(L, -1, 3);
  CHECK(lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "x") == 0);
  lua_settop(L, 0);
  free(b.data);
}

int main(void)
{
  L = luaL_newstate();
  if (!L) return 1;
  luaL_openlibs(L);
  it_refuses_deep_nesting();
  it_refuses_keys_it_cannot_write();
  it_refuses_truncation_and_trailing_bytes();
  it_reads_back_what_it_wrote();
  lua_close(L);
  return check_done("serialize");
}
