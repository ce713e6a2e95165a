/*
 * guard.c - bounds on every call into Lua (runtime.h, "Guards").
 *
 * Two kinds of guard, each set by the thread that makes the call and kept
 * in thread-local storage (a lua_State is used by one thread at a time):
 *
 *   load     loading scripts, on_load, export/import: the JIT compiler is
 *            off for the call and a count hook checks the deadline every
 *            SWIT__GUARD_COUNT instructions, so Lua code cannot outrun
 *            lua.limits.load_timeout: the call fails with the file:line
 *            where it was stopped. JIT on again afterwards.
 *   run      handlers, timers, on_start: the JIT stays on and no hook
 *            runs (no cost). When the worker's watchdog sees the call past
 *            lua.limits.handler_timeout it sends the worker thread
 *            SWIT__GUARD_SIGNAL; the handler sets a hook on the thread's
 *            state (as luajit.c does on SIGINT), which raises an error at
 *            the next instruction the interpreter runs.
 *
 * What this cannot stop (LuaJIT runs no hook inside a compiled trace, and
 * none in C): a tight loop that stays in compiled code, or a C function
 * that blocks. Those are bounded from outside: /healthz names the stuck
 * worker, it gets no new unordered work, and a stop abandons it after
 * server.shutdown_timeout plus the grace, with an unclean exit code.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>

#include "runtime/runtime.h"

#define SWIT__GUARD_COUNT 1000

typedef struct guard {
  lua_State *L;
  int64_t deadline_ms;
  int64_t limit_ms;
  const char *what;           /* "loading", "a handler", ... */
  const char *key;            /* the config key of the limit */
  int load;
} guard;

static _Thread_local guard *tl_guard;

/* "file:line: " of the Lua code the hook stopped (level 0 in a hook). */
static void where(lua_State *L, char *out, size_t cap)
{
  lua_Debug d;

  out[0] = '\0';
  for (int level = 0; level < 4; level++) {
    if (!lua_getstack(L, level, &d) || !lua_getinfo(L, "Sl", &d)) return;
    if (d.currentline > 0) {
      snprintf(out, cap, "%s:%d: ", d.short_src, d.currentline);
      return;
    }
  }
}

static void timeout_hook(lua_State *L, lua_Debug *ar)
{
  guard *g = tl_guard;
  char at[256];

  (void)ar;
  if (!g || g->L != L) {                   /* stale: the call is over */
    lua_sethook(L, NULL, 0, 0);
    return;
  }
  if (swit__now_ms() < g->deadline_ms) {
    if (!g->load) lua_sethook(L, NULL, 0, 0);   /* an early signal */
    return;
  }
  /* from now on every instruction raises, until the guarded call
   * returns: a pcall in the script cannot swallow the error and go on */
  lua_sethook(L, timeout_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
  where(L, at, sizeof at);
  lua_pushfstring(L, "%s%s took longer than %s (%d ms) and was stopped", at,
                  g->what, g->key, (int)g->limit_ms);
  lua_error(L);
}

/* The watchdog's signal: runs on the worker thread, between two of its
 * instructions; only sets a hook (async-signal-safe in practice: it is
 * what LuaJIT's own interpreter does on SIGINT). */
static void on_signal(int sig)
{
  guard *g = tl_guard;

  (void)sig;
  if (g && g->L && !g->load)
    lua_sethook(g->L, timeout_hook,
                LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static void install(void)
{
  struct sigaction sa;

  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SWIT__GUARD_SIGNAL, &sa, NULL);
}

void swit__guard_init(void)
{
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, install);
}

void swit__guard_enter(swit__guard_frame *f, lua_State *L, int kind,
                       const swit_config *cfg)
{
  static const char *const whats[] = {"loading the scripts", "a handler",
                                      "a timer", "on_start"};
  guard *g = (guard *)f->opaque;

  _Static_assert(sizeof(guard) <= sizeof f->opaque, "frame holds a guard");
  g->L = L;
  g->load = kind == SWIT__GUARD_LOAD;
  g->limit_ms = g->load ? cfg->lua.limits.load_timeout_ms
                        : cfg->lua.limits.handler_timeout_ms;
  g->key = g->load ? "lua.limits.load_timeout"
                   : "lua.limits.handler_timeout";
  g->what = whats[kind];
  g->deadline_ms = swit__now_ms() + g->limit_ms;
  f->prev = tl_guard;
  tl_guard = g;
  if (g->load) {
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    lua_sethook(L, timeout_hook, LUA_MASKCOUNT, SWIT__GUARD_COUNT);
  }
}

void swit__guard_rearm(swit__guard_frame *f)
{
  guard *g = (guard *)f->opaque;

  if (!g->load) lua_sethook(g->L, NULL, 0, 0);
  g->deadline_ms = swit__now_ms() + g->limit_ms;
}

int swit__guard_expired(const swit__guard_frame *f)
{
  const guard *g = (const guard *)f->opaque;
  return swit__now_ms() >= g->deadline_ms;
}

void swit__guard_leave(swit__guard_frame *f)
{
  guard *g = (guard *)f->opaque;

  lua_sethook(g->L, NULL, 0, 0);
  if (g->load) luaJIT_setmode(g->L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_ON);
  tl_guard = f->prev;
}

int swit__guard_interrupt(pthread_t thread)
{
  return pthread_kill(thread, SWIT__GUARD_SIGNAL) == 0 ? 0 : SWIT_E_SYS;
}
