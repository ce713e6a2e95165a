/*
 * generation.c - code generations: validating a code set, building a
 * worker's state from it, and the swap a worker makes between batches.
 *
 * Validation runs on the starting or reloading thread, in a scratch
 * state: the scripts load (capturing the modules they require into the
 * code set), every swit.on_load self-check passes, and the registrations
 * come back with defaults applied. Building runs a generation's code in
 * a worker's fresh state and binds its handlers to the host's stable
 * subscription ids. The swap runs on the worker thread itself, between
 * two batches: build, hand state over (swit.export -> swit.import), close
 * the old state, report to the reload coordinator.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"

int swit__generation_validate(swit_host_t *h, swit__codeset *code,
                              swit__subdef **defs, size_t *n, char *err,
                              size_t errlen)
{
  lua_State *L = swit__lua_new_state(h, NULL, code, 1, err, errlen);
  int rc = L ? 0 : SWIT_E_SCRIPT;

  *defs = NULL;
  *n = 0;
  if (rc == 0) rc = swit__lua_registrations(L, defs, n, err, errlen);
  if (rc == 0 && swit__lua_capture(L, code) != 0) {
    snprintf(err, errlen, "out of memory copying the required modules");
    rc = SWIT_E_NOMEM;
  }
  if (rc == 0) rc = swit__lua_on_load(L, err, errlen);
  for (size_t i = 0; rc == 0 && i < *n; i++)
    if (swit__subdef_defaults(h, &(*defs)[i])) rc = SWIT_E_NOMEM;
  swit__lua_close_state(L);
  if (rc) {
    swit__subdefs_free(*defs, *n);
    *defs = NULL;
    *n = 0;
  }
  return rc;
}

/* Every registration of a built state must name a subscription the
 * validation created, and there must be as many (`nlua`, what the
 * validated code registered): the scripts ran the same code, so anything
 * else means registration depends on the worker or on time. */
static int map_ids(swit_host_t *h, swit__subdef *defs, size_t n, size_t nlua,
                   uint32_t *ids, char *err, size_t errlen)
{
  int rc = 0;

  for (size_t i = 0; rc == 0 && i < n; i++)
    rc = swit__subdef_defaults(h, &defs[i]);
  if (rc == 0) rc = swit__subs_resolve(h, defs, n, ids, err, errlen);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    if (ids[i]) continue;
    snprintf(err, errlen, "a worker's scripts registered topic '%s' (group "
             "'%s') that the validated code did not: registrations must not "
             "depend on the worker or on time", defs[i].topic, defs[i].group);
    rc = SWIT_E_SCRIPT;
  }
  if (rc == 0 && nlua != n) {
    snprintf(err, errlen, "a worker's scripts registered %zu handlers where "
             "the validated code registered %zu: registrations must not "
             "depend on the worker or on time", n, nlua);
    rc = SWIT_E_SCRIPT;
  }
  return rc;
}

int swit__generation_build(swit_host_t *h, swit__worker *w,
                           const swit__codeset *code, size_t nlua,
                           lua_State **out, char *err, size_t errlen)
{
  lua_State *L = swit__lua_new_state(h, w, code, 0, err, errlen);
  swit__subdef *defs = NULL;
  uint32_t *ids = NULL;
  size_t n = 0;
  int rc = L ? 0 : SWIT_E_SCRIPT;

  if (rc == 0) rc = swit__lua_registrations(L, &defs, &n, err, errlen);
  if (rc == 0 && !(ids = calloc(n ? n : 1, sizeof *ids))) rc = SWIT_E_NOMEM;
  if (rc == 0) rc = map_ids(h, defs, n, nlua, ids, err, errlen);
  if (rc == 0) rc = swit__lua_bind(h, L, defs, ids, n, err, errlen);
  swit__subdefs_free(defs, n);
  free(ids);
  if (rc) {
    swit__lua_close_state(L);
    return rc;
  }
  *out = L;
  return 0;
}

/* ------------------------------------------------------------------ */
/* The swap, on the worker thread between batches */

static void report_swap(swit_host_t *h, swit__worker *w, unsigned gen)
{
  pthread_mutex_lock(&h->swap_lock);
  atomic_store(&w->seen_gen, gen);
  pthread_cond_broadcast(&h->swap_cv);
  pthread_mutex_unlock(&h->swap_lock);
}

/* The coordinator (reload.c) builds every worker's next state before it
 * moves the generation on, so a worker's own pause is only the hand-over
 * and a pointer swap; the old state goes back to the coordinator to
 * close (or, if the coordinator stopped waiting, is closed here next
 * time). The exchanges make a state belong to exactly one side. */
void swit__generation_swap(swit__worker *w)
{
  swit_host_t *h = w->host;
  unsigned gen = atomic_load(&h->generation);
  lua_State *L, *old;
  char err[1024];

  if (gen == atomic_load(&w->seen_gen)) return;
  L = atomic_exchange(&w->next_L, NULL);
  if (!L) {            /* the coordinator could not build it: keep ours */
    report_swap(h, w, gen);
    return;
  }
  if (w->L && swit__lua_handover(w->L, L, err, sizeof err) != 0)
    swit__log(&h->log, SWIT_LOG_ERROR, "[worker %u] generation %u starts "
              "without the state of generation %u: %s", w->id, gen,
              w->ffi.generation, err);
  old = atomic_exchange(&w->old_L, w->L);
  swit__lua_close_state(old);
  swit__lua_adopt(w, L);
  w->ffi.generation = gen;
  if (w->id == 0)
    w->next_timer_ms = swit__lua_timers(w, swit__now_ms() +
                                           atomic_load(&h->timer_skew_ms));
  report_swap(h, w, gen);
}

/* Build every worker's state for `code`, whose validation registered
 * `nlua` handlers (coordinator thread). Nothing else changes: on failure
 * none is left pending. */
int swit__generation_prebuild(swit_host_t *h, const swit__codeset *code,
                              size_t nlua, char *err, size_t errlen)
{
  for (size_t i = 0; i < h->nworkers; i++) {
    swit__worker *w = &h->workers[i];
    lua_State *L = NULL;
    int rc = swit__generation_build(h, w, code, nlua, &L, err, errlen);
    if (rc) {
      for (size_t j = 0; j < i; j++)
        swit__lua_close_state(atomic_exchange(&h->workers[j].next_L, NULL));
      return rc;
    }
    /* a state still pending from a reload a stuck worker never took */
    swit__lua_close_state(atomic_exchange(&w->next_L, L));
  }
  return 0;
}

/* Close the states the workers left behind when they switched. */
void swit__generation_reap(swit_host_t *h)
{
  for (size_t i = 0; i < h->nworkers; i++)
    swit__lua_close_state(atomic_exchange(&h->workers[i].old_L, NULL));
}
