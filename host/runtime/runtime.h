/*
 * runtime.h - the Lua runtime of a host: code sets (codeset.c), worker
 * states (lua_state.c), code generations (generation.c), values moved
 * between states (serialize.c), and the modules compiled in. Not API.
 *
 * Threads: a worker's state is built by the thread that starts the host
 * or runs a reload, then used only by that worker's thread (the core
 * calls it through swit__runner, host_int.h).
 */
#ifndef SWIT_RUNTIME_H
#define SWIT_RUNTIME_H

#include "base/buf.h"
#include "core/host_int.h"

/* ---------------------------------------------------------------------
 * Code generations (codeset.c, generation.c, reload.c) */

typedef struct swit__chunk {
  char *name;   /* module name; NULL for a script */
  char *path;   /* file it was read from (the chunk name) */
  char *src;
  size_t len;
} swit__chunk;

typedef struct swit__codeset {
  swit__chunk *scripts;
  size_t nscripts;
  swit__chunk *modules; /* required while loading; served from memory */
  size_t nmodules;
} swit__codeset;

/* lua_state.c */
lua_State *swit__lua_new_state(struct swit_host_s *h, swit__worker *w,
                               const swit__codeset *code, int capture,
                               char *err, size_t errlen);
int swit__lua_registrations(lua_State *L, swit__subdef **defs, size_t *n,
                            char *err, size_t errlen);
int swit__lua_capture(lua_State *L, swit__codeset *code);
/* Bind registration i's handler to subscription ids[i], and keep in the
 * state which script registered each (swit__lua_adopt). */
int swit__lua_bind(struct swit_host_s *h, lua_State *L,
                   const swit__subdef *defs, const uint32_t *ids, size_t n,
                   char *err, size_t errlen);
int swit__lua_on_load(lua_State *L, char *err, size_t errlen);
int swit__lua_handover(lua_State *from, lua_State *to, char *err,
                       size_t errlen);
int swit__lua_dispatch(swit__worker *w, uint32_t n);
int swit__lua_on_start(swit__worker *w);
int64_t swit__lua_timers(swit__worker *w, int64_t now_ms);
void swit__lua_close(swit__worker *w);
/* Make L the worker's state (its thread, or before it starts): its
 * dispatch function and the scripts of its handlers. */
void swit__lua_adopt(swit__worker *w, lua_State *L);
/* The script whose handler serves subscription `sub` in the worker's
 * state, or NULL (a C handler, no Lua). Worker thread. */
const char *swit__lua_script_of(const swit__worker *w, uint32_t sub);
void swit__lua_close_state(lua_State *L);

/* serialize.c: a Lua value as bytes, between states */
int swit__serialize(lua_State *L, int idx, swit__buf *out, char *err,
                    size_t errlen);
int swit__deserialize(lua_State *L, const char *data, size_t len);

/* ---------------------------------------------------------------------
 * Guards (guard.c): every call into Lua is bounded. A frame lives on the
 * caller's stack between enter and leave; frames nest (a load inside a
 * worker's reload). SWIT__GUARD_LOAD: JIT off and a count hook against
 * lua.limits.load_timeout; the others: no cost until the watchdog calls
 * swit__guard_interrupt on the thread past lua.limits.handler_timeout. */
#include <pthread.h>
#include <signal.h>

#define SWIT__GUARD_SIGNAL (SIGRTMIN + 3)  /* docs/embedding.md */
enum { SWIT__GUARD_LOAD, SWIT__GUARD_HANDLER, SWIT__GUARD_TIMER,
       SWIT__GUARD_ON_START };

typedef struct swit__guard_frame {
  void *prev;
  _Alignas(8) unsigned char opaque[48];
} swit__guard_frame;

/* Once per process: the signal handler (swit_host_new calls it). */
void swit__guard_init(void);
void swit__guard_enter(swit__guard_frame *f, lua_State *L, int kind,
                       const swit_config *cfg);
/* After a guarded pcall returned an error: a fresh deadline for the rest
 * of the call, the interrupting hook removed. */
void swit__guard_rearm(swit__guard_frame *f);
int swit__guard_expired(const swit__guard_frame *f);
void swit__guard_leave(swit__guard_frame *f);
/* Interrupt the Lua code `thread` runs under a guard (any thread). */
int swit__guard_interrupt(pthread_t thread);

/* The runner the workers call (lua_state.c). */
extern const swit__runner swit__lua_runner;

/* serialize.c and codeset.c */
int swit__codeset_read(const swit_config *cfg, swit__codeset **out,
                       char *err, size_t errlen);
int swit__codeset_add_module(swit__codeset *cs, const char *name,
                             const char *path, const char *src, size_t len);
void swit__codeset_free(swit__codeset *cs);

/* generation.c: validating and building a generation's states */
int swit__generation_validate(struct swit_host_s *h, swit__codeset *code,
                              swit__subdef **defs, size_t *n, char *err,
                              size_t errlen);
int swit__generation_build(struct swit_host_s *h, swit__worker *w,
                           const swit__codeset *code, size_t nlua,
                           lua_State **out, char *err, size_t errlen);
void swit__generation_swap(swit__worker *w);
int swit__generation_prebuild(struct swit_host_s *h, const swit__codeset *code,
                              size_t nlua, char *err, size_t errlen);
void swit__generation_reap(struct swit_host_s *h);

/* The Lua modules compiled into the binary (generated by the build). */
typedef struct swit__lua_module {
  const char *name;        /* "swit" */
  const char *chunkname;   /* "@swit/init.lua" */
  const unsigned char *src;
  size_t len;
} swit__lua_module;
extern const swit__lua_module swit__lua_modules[]; /* name == NULL ends */

/* C modules for the Lua side (bindings/lua_cmodules.c). */
typedef struct swit__lua_cmodule {
  const char *name;             /* "swit.json" */
  int (*open)(lua_State *L);    /* a lua_CFunction returning the module */
} swit__lua_cmodule;
extern const swit__lua_cmodule swit__lua_cmodules[]; /* name == NULL ends */

#endif /* SWIT_RUNTIME_H */
