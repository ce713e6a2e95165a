/*
 * lua_state.c - building a worker's lua_State and entering it.
 *
 * A state gets the standard libraries, the swit modules compiled into the
 * binary (package.preload), lua.package_path, a line-atomic print, and
 * then runs the scripts of a code generation (codeset.c) in config
 * order, requiring modules through the generation's loader. Before any
 * script, it runs lua/swit/core.lua with the FFI cdef and the table of
 * exports (swit__ffi_api, a lightuserdata: no symbol lookup, no
 * -rdynamic), then lua/swit/init.lua, whose second result, the host's
 * entry points, is kept in the registry ("swit.host"), away from the
 * public swit table. The host enters Lua through the Lua C API only: one
 * lua_pcall per batch (dispatch), plus on_start and timer calls on
 * worker 0.
 *
 * States are created on the thread that starts the host, with the worker
 * set as the calling thread's current worker so that the swit module
 * captures the right one; afterwards only that worker's thread uses it.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "runtime/runtime.h"
#include "core/msg_int.h"
#include "ffi_int.h"

/* Error handler kept at stack index 1 of every state: turns any error
 * value into a string (Lua errors already carry "file:line:"). */
static int on_error(lua_State *L)
{
  const char *s = lua_tostring(L, 1);
  if (!s) s = luaL_typename(L, 1);
  lua_pushstring(L, s);
  return 1;
}

/* ------------------------------------------------------------------ */
/* lua.limits.memory: every state's allocator wraps LuaJIT's own (kept
 * for speed and for lua_close, which destroys LuaJIT's arena only when
 * it sees its own allocator) and counts the bytes the state holds, as
 * LuaJIT's gc.total does. While armed - inside a lua_pcall of this file,
 * never in an unprotected API call, where a refused allocation would
 * panic - an allocation that would take the count past the limit is
 * refused: LuaJIT raises "not enough memory" (LUA_ERRMEM) in the running
 * Lua code. Frees and shrinks always pass. */
typedef struct lua_mem {
  lua_Alloc f;          /* LuaJIT's allocator */
  void *ud;
  size_t used, limit;
  int armed;
  int tripped;          /* an allocation was refused since arming */
  atomic_uint *exceeded;/* the host's count (swit_lua_memory_exceeded_total) */
} lua_mem;

static void *limited_alloc(void *ud, void *p, size_t osize, size_t nsize)
{
  lua_mem *m = ud;
  void *r;

  if (m->armed && nsize > osize && m->used - osize + nsize > m->limit) {
    m->tripped = 1;
    return NULL;
  }
  r = m->f(m->ud, p, osize, nsize);
  if (r || nsize == 0) m->used = m->used - osize + nsize;
  return r;
}

static lua_mem *mem_of(lua_State *L)
{
  void *ud;
  return lua_getallocf(L, &ud) == limited_alloc ? ud : NULL;
}

static int limit_memory(lua_State *L, swit_host_t *h)
{
  lua_mem *m = calloc(1, sizeof *m);

  if (!m) return -1;
  m->exceeded = &h->lua_memory_exceeded;
  m->f = lua_getallocf(L, &m->ud);
  m->limit = (size_t)h->cfg->lua.limits.memory;
  m->used = (size_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 +
            (size_t)lua_gc(L, LUA_GCCOUNTB, 0);
  lua_setallocf(L, limited_alloc, m);
  return 0;
}

/* lua_pcall with the limit armed. Past the limit, the error at the top
 * is replaced by one naming lua.limits.memory, and a full collection
 * gives the state back what the failed call left as garbage; a call that
 * hit the limit but caught the error in Lua is collected and counted
 * too. */
static int pcall_limited(lua_State *L, int nargs, int nres)
{
  lua_mem *m = mem_of(L);
  int rc;

  if (!m) return lua_pcall(L, nargs, nres, 1);
  m->tripped = 0;
  m->armed = 1;
  rc = lua_pcall(L, nargs, nres, 1);
  m->armed = 0;
  if (rc != 0 && (rc == LUA_ERRMEM || m->tripped)) {
    const char *e = lua_tostring(L, -1);
    char why[512];

    snprintf(why, sizeof why, "lua.limits.memory exceeded: the worker's Lua "
             "state would hold more than %zu bytes (%s)", m->limit,
             e ? e : "not enough memory");
    lua_pop(L, 1);
    lua_gc(L, LUA_GCCOLLECT, 0);
    lua_pushstring(L, why);
  } else if (m->tripped) {        /* caught in Lua (pcall): still collect */
    lua_gc(L, LUA_GCCOLLECT, 0);
  }
  if (m->tripped || rc == LUA_ERRMEM) atomic_fetch_add(m->exceeded, 1);
  return rc;
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
  for (const swit__lua_cmodule *c = swit__lua_cmodules; c->name; c++) {
    lua_pushcfunction(L, c->open);
    lua_setfield(L, -2, c->name);
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
  if (pcall_limited(L, nargs, nres) == 0) return 0;
  snprintf(err, errlen, "%s", lua_tostring(L, -1));
  lua_pop(L, 1);
  return SWIT_E_SCRIPT;
}

/* package.loaders gets the generation's searcher (lua/swit/loader.lua):
 * modules of `code` load from memory; with `capture`, modules required
 * from disk are recorded in the registry's "swit.captured" list. */
static int install_loader(lua_State *L, const swit__codeset *code, int capture,
                          char *err, size_t errlen)
{
  lua_getglobal(L, "require");
  lua_pushstring(L, "swit.loader");
  if (call(L, 1, 1, err, errlen)) return SWIT_E_SCRIPT;
  lua_createtable(L, 0, (int)code->nmodules);
  for (size_t i = 0; i < code->nmodules; i++) {
    const swit__chunk *m = &code->modules[i];
    lua_createtable(L, 0, 2);
    lua_pushlstring(L, m->src, m->len);
    lua_setfield(L, -2, "src");
    lua_pushstring(L, m->path);
    lua_setfield(L, -2, "path");
    lua_setfield(L, -2, m->name);
  }
  if (capture) {
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "swit.captured");
  } else {
    lua_pushnil(L);
  }
  return call(L, 2, 0, err, errlen);
}

/* Runs package.preload[name] with the nargs values on the stack as its
 * arguments (instead of require's module name): its first result becomes
 * package.loaded[name], the preload entry goes (the module cannot be run
 * again without them), and the other nres - 1 results stay on the stack. */
static int load_internal(lua_State *L, const char *name, int nargs, int nres,
                         char *err, size_t errlen)
{
  int rc;

  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_getfield(L, -1, name);
  lua_pushnil(L);
  lua_setfield(L, -3, name);
  lua_replace(L, -2);               /* args..., package, chunk */
  lua_insert(L, -2 - nargs);        /* chunk, args..., package */
  lua_insert(L, -2 - nargs);        /* package, chunk, args... */
  if ((rc = call(L, nargs, nres, err, errlen))) {
    lua_pop(L, 1);
    return rc;
  }
  lua_getfield(L, -nres - 1, "loaded");
  lua_pushvalue(L, -nres - 1);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
  lua_remove(L, -nres);             /* the first result, now in loaded */
  lua_remove(L, -nres);             /* package: the other results stay */
  return 0;
}

/* os.exit() in a script: never ends the process mid-stream. While the
 * host runs, it asks for a graceful stop (swit_host_stop_requested) and
 * fails the calling handler, timer or on_start (its message is given
 * back); while loading, it is an error like any other (refused). */
static int os_exit(lua_State *L)
{
  swit_host_t *h;
  int code = lua_isboolean(L, 1) ? !lua_toboolean(L, 1)
                                 : (int)luaL_optinteger(L, 1, 0);

  lua_getfield(L, LUA_REGISTRYINDEX, "swit.hostptr");
  h = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!h || !swit__current_worker || swit__current_worker->L != L)
    return luaL_error(L, "os.exit() while loading the scripts: refused");
  if (!atomic_exchange(&h->stop_requested, 1)) {
    atomic_store(&h->stop_code, code);
    swit__log(&h->log, SWIT_LOG_WARN, "[worker %u] a script called "
              "os.exit(%d): the host stops gracefully",
              swit__current_worker->id, code);
  }
  return luaL_error(L, "os.exit(%d): the host is stopping", code);
}

/* The config of the host a state belongs to, for its guards. */
static const swit_config *state_cfg(lua_State *L)
{
  const swit_config *c;

  lua_getfield(L, LUA_REGISTRYINDEX, "swit.cfg");
  c = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return c;
}

/* The bounds swit.on and swit.every check their arguments against: the
 * config keys' own (one definition for every entry point). */
static void push_limits(lua_State *L)
{
  const swit_cfg_field *f =
      swit__config_field(swit__subscriber_fields, "max_attempts");

  lua_createtable(L, 0, 4);
  lua_pushnumber(L, (lua_Number)f->min);
  lua_setfield(L, -2, "max_attempts_min");
  lua_pushnumber(L, (lua_Number)f->max);
  lua_setfield(L, -2, "max_attempts_max");
  lua_pushnumber(L, SWIT_TOPIC_MAX);
  lua_setfield(L, -2, "topic_max");
  lua_pushnumber(L, (lua_Number)SWIT_EVERY_MAX_MS);
  lua_setfield(L, -2, "every_max_ms");
}

static int setup(lua_State *L, swit_host_t *h, const swit__codeset *code,
                 int capture, char *err, size_t errlen)
{
  int rc;

  lua_pushlightuserdata(L, (void *)h->cfg);
  lua_setfield(L, LUA_REGISTRYINDEX, "swit.cfg");
  lua_pushlightuserdata(L, h);
  lua_setfield(L, LUA_REGISTRYINDEX, "swit.hostptr");
  lua_getglobal(L, "os");
  lua_pushcfunction(L, os_exit);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 1);
  lua_pushcfunction(L, on_error);                   /* stack index 1 */
  if ((rc = preload_modules(L, err, errlen))) return rc;
  set_package_path(L, h->cfg);
  if (luaL_loadbuffer(L, print_src, sizeof print_src - 1, "=swit.print") ||
      lua_pcall(L, 0, 1, 1)) {
    snprintf(err, errlen, "%s", lua_tostring(L, -1));
    return SWIT_E_SCRIPT;
  }
  lua_setglobal(L, "print");
  if ((rc = install_loader(L, code, capture, err, errlen))) return rc;
  lua_pushstring(L, swit__ffi_cdef);
  lua_pushlightuserdata(L, (void *)&swit__ffi_api);
  if ((rc = load_internal(L, "swit.core", 2, 1, err, errlen))) return rc;
  lua_pushstring(L, "swit");
  push_limits(L);
  if ((rc = load_internal(L, "swit", 2, 2, err, errlen))) return rc;
  lua_setfield(L, LUA_REGISTRYINDEX, "swit.host");
  for (size_t i = 0; i < code->nscripts; i++) {
    const swit__chunk *c = &code->scripts[i];
    char chunkname[1024];
    snprintf(chunkname, sizeof chunkname, "@%s", c->path);
    if (luaL_loadbuffer(L, c->src, c->len, chunkname)) {
      snprintf(err, errlen, "%s", lua_tostring(L, -1));
      return SWIT_E_SCRIPT;
    }
    if ((rc = call(L, 0, 0, err, errlen))) return rc;
  }
  return 0;
}

lua_State *swit__lua_new_state(swit_host_t *h, swit__worker *w,
                               const swit__codeset *code, int capture,
                               char *err, size_t errlen)
{
  swit__worker *prev = swit__current_worker;
  lua_State *L = luaL_newstate();

  if (!L) {
    snprintf(err, errlen, "cannot create a Lua state (out of memory)");
    return NULL;
  }
  swit__guard_frame g;
  int rc;

  if (limit_memory(L, h)) {
    lua_close(L);
    snprintf(err, errlen, "cannot create a Lua state (out of memory)");
    return NULL;
  }
  swit__current_worker = w;
  luaL_openlibs(L);     /* before the guard: opening `jit` turns the JIT on */
  swit__guard_enter(&g, L, SWIT__GUARD_LOAD, h->cfg);
  rc = setup(L, h, code, capture, err, errlen);
  swit__guard_leave(&g);
  if (rc != 0) {
    swit__lua_close_state(L);
    L = NULL;
  }
  swit__current_worker = prev;
  return L;
}

void swit__lua_close_state(lua_State *L)
{
  lua_mem *m;

  if (!L) return;
  if ((m = mem_of(L)) != NULL)
    lua_setallocf(L, m->f, m->ud);   /* lua_close must see LuaJIT's own */
  lua_close(L);
  free(m);
}

/* ------------------------------------------------------------------ */
/* Calling into the swit module */

/* An entry point of the swit module (the table it keeps for the host). */
static void push_fn(lua_State *L, const char *name)
{
  lua_getfield(L, LUA_REGISTRYINDEX, "swit.host");
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
}

static char *dup_field(lua_State *L, int idx, const char *key)
{
  char *v = NULL;
  lua_getfield(L, idx, key);
  if (lua_isstring(L, -1)) v = strdup(lua_tostring(L, -1));
  lua_pop(L, 1);
  return v;
}

/* Reads the registration table at the top of the stack. */
static int read_registration(lua_State *L, swit__subdef *d)
{
  const char *ordering;
  int t = lua_gettop(L);

  d->topic = dup_field(L, t, "topic");
  d->group = dup_field(L, t, "group");
  d->dead_letter = dup_field(L, t, "dead_letter");
  d->script = dup_field(L, t, "script");
  lua_getfield(L, t, "ordering");
  ordering = lua_tostring(L, -1);
  d->ordering = !ordering || !strcmp(ordering, "key") ? SWIT_ORDER_KEY
              : !strcmp(ordering, "none")             ? SWIT_ORDER_NONE
                                                      : SWIT_ORDER_PARTITION;
  lua_getfield(L, t, "max_attempts");
  d->max_attempts = (uint32_t)lua_tointeger(L, -1);
  lua_getfield(L, t, "exactly_once");
  d->exactly_once = lua_toboolean(L, -1);
  lua_getfield(L, t, "jetstream");
  d->jetstream = lua_isnil(L, -1) ? -1 : lua_toboolean(L, -1);
  lua_settop(L, t);
  return d->topic ? 0 : SWIT_E_NOMEM;
}

/* The state's registrations, in registration order (defaults not yet
 * applied). The caller frees *defs with swit__subdefs_free. */
int swit__lua_registrations(lua_State *L, swit__subdef **defs, size_t *n,
                            char *err, size_t errlen)
{
  int rc;

  *defs = NULL;
  *n = 0;
  push_fn(L, "finalize");
  if ((rc = call(L, 0, 1, err, errlen))) return rc;
  *n = lua_objlen(L, -1);
  *defs = calloc(*n ? *n : 1, sizeof **defs);
  rc = *defs ? 0 : SWIT_E_NOMEM;
  for (size_t i = 0; rc == 0 && i < *n; i++) {
    lua_rawgeti(L, -1, (int)i + 1);
    rc = read_registration(L, &(*defs)[i]);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (rc) snprintf(err, errlen, "out of memory reading registrations");
  return rc;
}

/* Copy what the validation state's loader captured into the code set. */
int swit__lua_capture(lua_State *L, swit__codeset *code)
{
  int rc = 0;
  size_t n;

  lua_getfield(L, LUA_REGISTRYINDEX, "swit.captured");
  n = lua_objlen(L, -1);
  for (size_t i = 1; rc == 0 && i <= n; i++) {
    size_t len;
    const char *src;
    lua_rawgeti(L, -1, (int)i);
    lua_getfield(L, -1, "name");
    lua_getfield(L, -2, "path");
    lua_getfield(L, -3, "src");
    src = lua_tolstring(L, -1, &len);
    rc = swit__codeset_add_module(code, lua_tostring(L, -3),
                                  lua_tostring(L, -2), src, len);
    lua_pop(L, 4);
  }
  lua_pop(L, 1);
  return rc;
}

/* Which script registered the handler of each subscription id, for the
 * health checks: a userdata in the state's registry, so it lives and
 * dies with the state; the names themselves live with the host. */
typedef struct swit__sub_scripts {
  uint32_t n;
  const char *name[];         /* [n], by sub id; NULL: not a Lua handler */
} swit__sub_scripts;

static void keep_scripts(swit_host_t *h, lua_State *L,
                         const swit__subdef *defs, const uint32_t *ids,
                         size_t n)
{
  uint32_t max = 0;
  swit__sub_scripts *t;

  for (size_t i = 0; i < n; i++)
    if (ids[i] > max) max = ids[i];
  t = lua_newuserdata(L, sizeof *t + (max + 1) * sizeof *t->name);
  t->n = max + 1;
  for (uint32_t i = 0; i <= max; i++) t->name[i] = NULL;
  for (size_t i = 0; i < n; i++)
    if (defs[i].script) t->name[ids[i]] = swit__subs_script(h, defs[i].script);
  lua_setfield(L, LUA_REGISTRYINDEX, "swit.scripts");
}

const char *swit__lua_script_of(const swit__worker *w, uint32_t sub)
{
  return w->scripts && sub < w->scripts->n ? w->scripts->name[sub] : NULL;
}

void swit__lua_adopt(swit__worker *w, lua_State *L)
{
  w->L = L;
  push_fn(L, "dispatch");
  w->dispatch_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, LUA_REGISTRYINDEX, "swit.scripts");
  w->scripts = lua_touserdata(L, -1);
  lua_pop(L, 1);
}

int swit__lua_bind(swit_host_t *h, lua_State *L, const swit__subdef *defs,
                   const uint32_t *ids, size_t n, char *err, size_t errlen)
{
  keep_scripts(h, L, defs, ids, n);
  push_fn(L, "bind");
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushinteger(L, ids[i]);
    lua_rawseti(L, -2, (int)i + 1);
  }
  return call(L, 1, 0, err, errlen);
}

/* Runs a function of the swit module that returns nil or an error. */
static int call_checked(lua_State *L, const char *fn, int nargs, char *err,
                        size_t errlen)
{
  int rc, ok;

  push_fn(L, fn);
  lua_insert(L, -1 - nargs);
  if ((rc = call(L, nargs, 1, err, errlen))) return rc;
  ok = lua_isnil(L, -1);
  if (!ok) snprintf(err, errlen, "%s", lua_tostring(L, -1));
  lua_pop(L, 1);
  return ok ? 0 : SWIT_E_SCRIPT;
}

int swit__lua_on_load(lua_State *L, char *err, size_t errlen)
{
  swit__guard_frame g;
  int rc;

  swit__guard_enter(&g, L, SWIT__GUARD_LOAD, state_cfg(L));
  rc = call_checked(L, "on_load", 0, err, errlen);
  swit__guard_leave(&g);
  return rc;
}

static int export_state(lua_State *from, char *err, size_t errlen)
{
  swit__guard_frame g;
  int rc;

  swit__guard_enter(&g, from, SWIT__GUARD_LOAD, state_cfg(from));
  push_fn(from, "export");
  rc = call(from, 0, 1, err, errlen);
  swit__guard_leave(&g);
  return rc;
}

static int import_state(lua_State *to, char *err, size_t errlen)
{
  swit__guard_frame g;
  int rc;

  swit__guard_enter(&g, to, SWIT__GUARD_LOAD, state_cfg(to));
  push_fn(to, "import");
  lua_insert(to, -2);
  rc = call(to, 1, 0, err, errlen);
  swit__guard_leave(&g);
  return rc;
}

/* swit.export() of `from` -> bytes -> swit.import() of `to`. */
int swit__lua_handover(lua_State *from, lua_State *to, char *err,
                       size_t errlen)
{
  swit__buf buf = {0};
  int rc;

  if ((rc = export_state(from, err, errlen))) return rc;
  if (lua_isnil(from, -1)) {
    lua_pop(from, 1);
    return 0;
  }
  rc = swit__serialize(from, -1, &buf, err, errlen);
  lua_pop(from, 1);
  if (rc == 0 && swit__deserialize(to, buf.data, buf.len) != 0) {
    snprintf(err, errlen, "swit.import: cannot read the handed-over state");
    rc = SWIT_E_INVAL;
  }
  free(buf.data);
  if (rc) return rc;
  return import_state(to, err, errlen);
}

/* One lua_pcall for the batch; a Lua error marks the message at the
 * cursor for retry (with the error as its reason) and the loop goes on
 * from the next message. */
int swit__lua_dispatch(swit__worker *w, uint32_t n)
{
  lua_State *L = w->L;
  uint32_t from = 0;
  swit__guard_frame g;

  swit__guard_enter(&g, L, SWIT__GUARD_HANDLER, w->host->cfg);
  atomic_store(&w->in_lua, 1);
  while (from < n) {
    size_t len;
    const char *msg;
    uint32_t at;

    lua_rawgeti(L, LUA_REGISTRYINDEX, w->dispatch_ref);
    lua_pushinteger(L, from);
    lua_pushinteger(L, n);
    if (pcall_limited(L, 2, 1) == 0) {
      if (lua_type(L, -1) == LUA_TNUMBER)  /* stopped at a message boundary */
        swit__worker_give_back(w, (uint32_t)lua_tointeger(L, -1), n);
      lua_pop(L, 1);
      break;
    }
    msg = lua_tolstring(L, -1, &len);
    at = w->ffi.cursor;
    w->ffi.msgs[at].serial = 0;     /* its msg is stale, as after a return */
    if (atomic_load(&w->host->stop_requested) ||  /* os.exit(): keep it */
        __atomic_load_n(&w->ffi.stop, __ATOMIC_RELAXED))  /* interrupted */
      w->ffi.msgs[at].result = SWIT__RES_GIVE_BACK;
    else
      swit__msg_set_result(w, &w->ffi.msgs[at], SWIT_RETRY, msg, len);
    lua_pop(L, 1);
    from = at + 1;
    if (swit__guard_expired(&g)) {  /* stopped: the rest get a new bound */
      swit__guard_rearm(&g);
      atomic_store_explicit(&w->busy_since_us, (int64_t)swit__now_us(),
                            memory_order_release);
    }
  }
  atomic_store(&w->in_lua, 0);
  swit__guard_leave(&g);
  return 0;
}

int swit__lua_on_start(swit__worker *w)
{
  char err[1024];
  swit__guard_frame g;
  int rc;

  swit__guard_enter(&g, w->L, SWIT__GUARD_ON_START, w->host->cfg);
  atomic_store(&w->in_lua, 1);
  rc = call_checked(w->L, "on_start", 0, err, sizeof err);
  atomic_store(&w->in_lua, 0);
  swit__guard_leave(&g);
  if (rc) swit__log(&w->host->log, SWIT_LOG_ERROR, "%s", err);
  return rc;
}

int64_t swit__lua_timers(swit__worker *w, int64_t now_ms)
{
  lua_State *L = w->L;
  char err[1024];
  int64_t next;

  swit__guard_frame g;
  int rc;

  swit__guard_enter(&g, L, SWIT__GUARD_TIMER, w->host->cfg);
  atomic_store(&w->in_lua, 1);
  push_fn(L, "timers");
  lua_pushnumber(L, (lua_Number)now_ms);
  rc = call(L, 1, 1, err, sizeof err);
  atomic_store(&w->in_lua, 0);
  swit__guard_leave(&g);
  if (rc != 0) {
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
  swit__lua_close_state(w->L);
  w->L = NULL;
  w->scripts = NULL;
}

/* ------------------------------------------------------------------ */
/* The runner the workers call (host_int.h) */

static void worker_free(swit__worker *w)
{
  swit__lua_close(w);
  swit__lua_close_state(atomic_exchange(&w->next_L, NULL));
  swit__lua_close_state(atomic_exchange(&w->old_L, NULL));
}

/* Only a worker inside Lua: a signal would cut a C handler's sleep or
 * read short (EINTR), and C handlers are not interrupted. */
static void interrupt(swit__worker *w)
{
  if (w->thread_started && atomic_load(&w->in_lua))
    swit__guard_interrupt(w->thread);
}

const swit__runner swit__lua_runner = {
  .interrupt = interrupt,
  .dispatch = swit__lua_dispatch,
  .on_start = swit__lua_on_start,
  .timers = swit__lua_timers,
  .swap = swit__generation_swap,
  .script_of = swit__lua_script_of,
  .worker_free = worker_free,
};
