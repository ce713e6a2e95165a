/*
 * serialize.c - carries a Lua value from one lua_State to another as
 * bytes: what the old generation's swit.export() returns is written here
 * and read into the new generation's state for swit.import().
 *
 * Values: nil, booleans, numbers, strings and tables of them (keys of the
 * same kinds), nested up to 64 levels. Functions, userdata, cdata,
 * threads and cycles are refused with a message naming the path
 * ("swit.export: cannot hand over a function at .cache.fn"). Runs on the
 * worker thread that swaps its state; touches only the states it is given.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "runtime/runtime.h"

enum { T_NIL = 'n', T_FALSE = 'f', T_TRUE = 't', T_NUM = 'd', T_STR = 's',
       T_TABLE = '{', T_END = '}' };

#define MAX_DEPTH 64

static int put(swit__buf *b, const void *p, size_t len)
{
  if (b->len + len > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
    char *v;
    while (cap < b->len + len) cap *= 2;
    if (!(v = realloc(b->data, cap))) return SWIT_E_NOMEM;
    b->data = v;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, len);
  b->len += len;
  return 0;
}

static int put_tag(swit__buf *b, char tag)
{
  return put(b, &tag, 1);
}

typedef struct wctx {
  lua_State *L;
  swit__buf *b;
  char *err;
  size_t errlen;
  char path[256];
} wctx;

static int write_value(wctx *w, int idx, int depth);

static int refuse(wctx *w, const char *what)
{
  snprintf(w->err, w->errlen, "swit.export: cannot hand over %s at %s", what,
           w->path[0] ? w->path : "the top level");
  return SWIT_E_SCRIPT;
}

/* Append ".key" or "[n]" to the path for messages; returns the old end. */
static size_t path_push(wctx *w, int kidx)
{
  size_t end = strlen(w->path);
  if (lua_type(w->L, kidx) == LUA_TSTRING)
    snprintf(w->path + end, sizeof w->path - end, ".%s", lua_tostring(w->L, kidx));
  else
    snprintf(w->path + end, sizeof w->path - end, "[%g]", lua_tonumber(w->L, kidx));
  return end;
}

static int write_table(wctx *w, int idx, int depth)
{
  int rc;

  if (depth >= MAX_DEPTH) return refuse(w, "tables nested too deep (or a cycle)");
  if ((rc = put_tag(w->b, T_TABLE))) return rc;
  lua_checkstack(w->L, 4);
  lua_pushnil(w->L);
  while (lua_next(w->L, idx)) {
    int k = lua_gettop(w->L) - 1, v = k + 1, kt = lua_type(w->L, k);
    size_t end = path_push(w, k);
    rc = 0;
    if (kt != LUA_TSTRING && kt != LUA_TNUMBER && kt != LUA_TBOOLEAN)
      rc = refuse(w, "a table key that is not a string, number or boolean");
    if (!rc) rc = write_value(w, k, depth + 1);
    if (!rc) rc = write_value(w, v, depth + 1);
    w->path[end] = '\0';
    lua_pop(w->L, 1);
    if (rc) {
      lua_pop(w->L, 1);
      return rc;
    }
  }
  return put_tag(w->b, T_END);
}

static int write_value(wctx *w, int idx, int depth)
{
  lua_State *L = w->L;
  size_t len;
  uint32_t n32;
  double d;
  const char *s;
  int rc;

  switch (lua_type(L, idx)) {
  case LUA_TNIL: return put_tag(w->b, T_NIL);
  case LUA_TBOOLEAN: return put_tag(w->b, lua_toboolean(L, idx) ? T_TRUE : T_FALSE);
  case LUA_TNUMBER:
    d = lua_tonumber(L, idx);
    if ((rc = put_tag(w->b, T_NUM))) return rc;
    return put(w->b, &d, sizeof d);
  case LUA_TSTRING:
    s = lua_tolstring(L, idx, &len);
    if (len > UINT32_MAX) return refuse(w, "a string over 4 GB");
    n32 = (uint32_t)len;
    if ((rc = put_tag(w->b, T_STR)) || (rc = put(w->b, &n32, sizeof n32))) return rc;
    return put(w->b, s, len);
  case LUA_TTABLE: return write_table(w, idx, depth);
  default: {
    char what[64];
    snprintf(what, sizeof what, "a %s", luaL_typename(L, idx));
    return refuse(w, what);
  }
  }
}

int swit__serialize(lua_State *L, int idx, swit__buf *out, char *err,
                    size_t errlen)
{
  wctx w = {.L = L, .b = out, .err = err, .errlen = errlen};
  int rc;

  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  out->len = 0;
  rc = write_value(&w, idx, 0);
  if (rc == SWIT_E_NOMEM) snprintf(err, errlen, "swit.export: out of memory");
  return rc;
}

/* ------------------------------------------------------------------ */
/* Reading: the bytes come from swit__serialize in this process, but are
 * read as if hostile (spec/fuzz/fuzz_serialize.c): what is read is what
 * swit__serialize can write, so a nesting past MAX_DEPTH, a key that is
 * not a string, number (not NaN) or boolean, or a truncation is refused,
 * and nothing raises a Lua error except running out of memory. */

typedef struct rctx {
  lua_State *L;
  const char *p, *end;
} rctx;

static int read_value(rctx *r, int depth);

static int take(rctx *r, void *out, size_t len)
{
  if ((size_t)(r->end - r->p) < len) return -1;
  memcpy(out, r->p, len);
  r->p += len;
  return 0;
}

static int key_ok(lua_State *L, int idx)
{
  switch (lua_type(L, idx)) {
  case LUA_TSTRING:
  case LUA_TBOOLEAN: return 1;
  case LUA_TNUMBER: return lua_tonumber(L, idx) == lua_tonumber(L, idx);
  default: return 0;
  }
}

static int read_table(rctx *r, int depth)
{
  if (depth >= MAX_DEPTH || !lua_checkstack(r->L, 4)) return -1;
  lua_newtable(r->L);
  while (r->p < r->end && *r->p != T_END) {
    if (read_value(r, depth + 1) || !key_ok(r->L, -1) ||
        read_value(r, depth + 1))
      return -1;
    lua_rawset(r->L, -3);
  }
  if (r->p >= r->end) return -1;
  r->p++;
  return 0;
}

static int read_value(rctx *r, int depth)
{
  uint32_t n32;
  double d;
  char tag;

  if (take(r, &tag, 1)) return -1;
  switch (tag) {
  case T_NIL: lua_pushnil(r->L); return 0;
  case T_FALSE: lua_pushboolean(r->L, 0); return 0;
  case T_TRUE: lua_pushboolean(r->L, 1); return 0;
  case T_NUM:
    if (take(r, &d, sizeof d)) return -1;
    lua_pushnumber(r->L, d);
    return 0;
  case T_STR:
    if (take(r, &n32, sizeof n32) || (size_t)(r->end - r->p) < n32) return -1;
    lua_pushlstring(r->L, r->p, n32);
    r->p += n32;
    return 0;
  case T_TABLE: return read_table(r, depth);
  default: return -1;
  }
}

int swit__deserialize(lua_State *L, const char *data, size_t len)
{
  rctx r = {L, data, data + len};
  int top = lua_gettop(L);

  if (!lua_checkstack(L, 4) || read_value(&r, 0) || r.p != r.end) {
    lua_settop(L, top);
    return SWIT_E_INVAL;
  }
  return 0;
}
