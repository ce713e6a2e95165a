/*
 * lua_state.c - building a worker's lua_State and entering it.
 *
 * A state gets the standard libraries, the swit modules compiled into the
 * binary (package.preload), lua.package_path, a line-atomic print, and
 * then runs the user's scripts in config order. The host enters Lua
 * through the Lua C API only: one lua_pcall per batch (swit._dispatch),
 * plus on_start and timer calls on worker 0.
 *
 * States are created on the thread that starts the host, with the worker
 * set as the calling thread's current worker so that the swit module
 * captures the right one; afterwards only that worker's thread uses it.
 */
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "host_int.h"
#include "msg_int.h"

/* Error handler kept at stack index 1 of every state: turns any error
 * value into a string (Lua errors already carry "file:line:"). */
static int on_error(lua_State *L)
{
  const char *s = lua_tostring(L, 1);
  if (!s) s = luaL_typename(L, 1);
  lua_pushstring(L, s);
  return 1;
}

static const char print_src[] =
  "local concat, tostring, select, out = table.concat, tostring, select, io.stdout\n"
  "return function(...)\n"
  "  local n, t = select('#', ...), {}\n"
  "  for i = 1, n do t[i] = tostring((select(i, ...))) end\n"
  "  out:write(concat(t, '\\t') .. '\\n')\n"
  "end\n";

static int preload_modules(lua_State *L, char *err, size_t errlen)
{
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  for (const swit__lua_module *m = swit__lua_modules; m->name; m++) {
    if (luaL_loadbuffer(L, (const char *)m->src, m->len, m->chunkname)) {
      snprintf(err, errlen, "%s", lua_tostring(L, -1));
      lua_pop(L, 3);
      return SWIT_E_SCRIPT;
    }
    lua_setfield(L, -2, m->name);
  }
  lua_pop(L, 2);
  return 0;
}

/* Prepend lua.package_path: "dir" becomes dir/?.lua;dir/?/init.lua, an
 * entry with a '?' is used as is; relative entries are relative to the
 * config file's directory. */
static void set_package_path(lua_State *L, const swit_config *c)
{
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < c->lua.package_path.n; i++) {
    const char *p = c->lua.package_path.items[i];
    char dir[4096];
    if (p[0] != '/' && c->base_dir && c->base_dir[0])
      snprintf(dir, sizeof dir, "%s/%s", c->base_dir, p);
    else
      snprintf(dir, sizeof dir, "%s", p);
    if (strchr(dir, '?')) {
      luaL_addstring(&b, dir);
      luaL_addchar(&b, ';');
    } else {
      lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", dir, dir);
      luaL_addvalue(&b);
    }
  }
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  luaL_addvalue(&b);            /* pops the old path */
  luaL_pushresult(&b);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
}

static int call(lua_State *L, int nargs, int nres, char *err, size_t errlen)
{
  if (lua_pcall(L, nargs, nres, 1) == 0) return 0;
  snprintf(err, errlen, "%s", lua_tostring(L, -1));
  lua_pop(L, 1);
  return SWIT_E_SCRIPT;
}

static int setup(lua_State *L, swit_host_t *h, char *err, size_t errlen)
{
  const swit_config *c = h->cfg;
  int rc;

  luaL_openlibs(L);
  lua_pushcfunction(L, on_error);                   /* stack index 1 */
  if ((rc = preload_modules(L, err, errlen))) return rc;
  set_package_path(L, c);
  if (luaL_loadbuffer(L, print_src, sizeof print_src - 1, "=swit.print") ||
      lua_pcall(L, 0, 1, 1)) {
    snprintf(err, errlen, "%s", lua_tostring(L, -1));
    return SWIT_E_SCRIPT;
  }
  lua_setglobal(L, "print");
  lua_getglobal(L, "require");
  lua_pushstring(L, "swit");
  if ((rc = call(L, 1, 1, err, errlen))) return rc;
  lua_setfield(L, LUA_REGISTRYINDEX, "swit.module");
  for (size_t i = 0; i < c->lua.scripts.n; i++) {
    const char *path = c->lua.scripts.items[i];
    if (luaL_loadfile(L, path)) {
      snprintf(err, errlen, "%s", lua_tostring(L, -1));
      return SWIT_E_SCRIPT;
    }
    if ((rc = call(L, 0, 0, err, errlen))) return rc;
  }
  return 0;
}

lua_State *swit__lua_new_state(swit_host_t *h, swit__worker *w, char *err,
                               size_t errlen)
{
  swit__worker *prev = swit__current_worker;
  lua_State *L = luaL_newstate();

  if (!L) {
    snprintf(err, errlen, "cannot create a Lua state (out of memory)");
    return NULL;
  }
  swit__current_worker = w;
  if (setup(L, h, err, errlen) != 0) {
    lua_close(L);
    L = NULL;
  }
  swit__current_worker = prev;
  return L;
}

/* ------------------------------------------------------------------ */
/* Calling into the swit module */

static void push_fn(lua_State *L, const char *name)
{
  lua_getfield(L, LUA_REGISTRYINDEX, "swit.module");
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
}

/* Reads one registration table at the top of the stack into a sub. */
static int read_registration(lua_State *L, swit__sub *s)
{
  const char *ordering;

  lua_getfield(L, -1, "topic");
  s->topic = strdup(lua_tostring(L, -1));
  lua_getfield(L, -2, "group");
  s->group = lua_isstring(L, -1) ? strdup(lua_tostring(L, -1)) : NULL;
  lua_getfield(L, -3, "dead_letter");
  s->dead_letter = lua_isstring(L, -1) ? strdup(lua_tostring(L, -1)) : NULL;
  lua_getfield(L, -4, "ordering");
  ordering = lua_tostring(L, -1);
  s->ordering = !ordering || !strcmp(ordering, "key") ? SWIT_ORDER_KEY
              : !strcmp(ordering, "none")             ? SWIT_ORDER_NONE
                                                      : SWIT_ORDER_PARTITION;
  lua_getfield(L, -5, "max_attempts");
  s->max_attempts = (uint32_t)lua_tointeger(L, -1);
  lua_getfield(L, -6, "exactly_once");
  s->exactly_once = lua_toboolean(L, -1);
  lua_getfield(L, -7, "jetstream");
  s->jetstream = lua_isnil(L, -1) ? -1 : lua_toboolean(L, -1);
  lua_pop(L, 7);
  return s->topic ? 0 : SWIT_E_NOMEM;
}

/* Finalize the registrations of state L. With h->subs unset, create the
 * subscriptions from them; otherwise check they match (every state runs
 * the same scripts, so a mismatch means the scripts register
 * nondeterministically). */
int swit__lua_registrations(swit_host_t *h, lua_State *L, char *err,
                            size_t errlen)
{
  size_t n;
  int rc;

  push_fn(L, "_finalize");
  if ((rc = call(L, 0, 1, err, errlen))) return rc;
  n = lua_objlen(L, -1);
  if (h->subs && n != h->nlua_subs) {
    snprintf(err, errlen, "scripts registered %zu handlers in one worker "
             "and %zu in another: registration must not depend on the "
             "worker", h->nlua_subs, n);
    lua_pop(L, 1);
    return SWIT_E_SCRIPT;
  }
  if (!h->subs) {
    rc = swit__subs_create(h, n);
    for (size_t i = 0; rc == 0 && i < n; i++) {
      lua_rawgeti(L, -1, (int)i + 1);
      rc = read_registration(L, h->subs[i]);
      lua_pop(L, 1);
    }
    if (rc) snprintf(err, errlen, "out of memory reading registrations");
  }
  lua_pop(L, 1);
  return rc;
}

int swit__lua_bind_dispatch(swit__worker *w)
{
  push_fn(w->L, "_dispatch");
  w->dispatch_ref = luaL_ref(w->L, LUA_REGISTRYINDEX);
  return w->dispatch_ref == LUA_REFNIL ? SWIT_E_SCRIPT : 0;
}

/* One lua_pcall for the batch; a Lua error marks the message at the
 * cursor for retry (with the error as its reason) and the loop goes on
 * from the next message. */
int swit__lua_dispatch(swit__worker *w, uint32_t n)
{
  lua_State *L = w->L;
  uint32_t from = 0;

  while (from < n) {
    size_t len;
    const char *msg;
    uint32_t at;

    lua_rawgeti(L, LUA_REGISTRYINDEX, w->dispatch_ref);
    lua_pushinteger(L, from);
    lua_pushinteger(L, n);
    if (lua_pcall(L, 2, 0, 1) == 0) return 0;
    msg = lua_tolstring(L, -1, &len);
    at = w->ffi.cursor;
    swit__msg_set_result(w, &w->ffi.msgs[at], SWIT_RES_RETRY, msg, len);
    lua_pop(L, 1);
    from = at + 1;
  }
  return 0;
}

int swit__lua_on_start(swit__worker *w)
{
  lua_State *L = w->L;
  char err[1024];

  push_fn(L, "_on_start");
  if (call(L, 0, 1, err, sizeof err) == 0) {
    int ok = lua_isnil(L, -1);
    if (!ok) snprintf(err, sizeof err, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    if (ok) return 0;
  }
  swit__log(&w->host->log, SWIT_LOG_ERROR, "%s", err);
  return SWIT_E_SCRIPT;
}

int64_t swit__lua_timers(swit__worker *w, int64_t now_ms)
{
  lua_State *L = w->L;
  char err[1024];
  int64_t next;

  push_fn(L, "_timers");
  lua_pushnumber(L, (lua_Number)now_ms);
  if (call(L, 1, 1, err, sizeof err) != 0) {
    swit__log(&w->host->log, SWIT_LOG_ERROR, "timers: %s", err);
    return -1;
  }
  next = (int64_t)lua_tonumber(L, -1);
  lua_pop(L, 1);
  return next;
}

void swit__lua_close(swit__worker *w)
{
  if (!w->L) return;
  lua_close(w->L);
  w->L = NULL;
}
