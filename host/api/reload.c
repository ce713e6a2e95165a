/*
 * reload.c - hot reload: replace the running Lua code without losing,
 * duplicating or reordering a message.
 *
 * swit_host_reload runs on the caller's thread (SIGHUP handler loop, the
 * file watcher, an embedder), one reload at a time (reload_lock: a
 * request made during a reload waits its turn; none is dropped):
 *   1. the candidate code set is read from the files (or, for a
 *      rollback, the previous good generation's in-memory copy);
 *   2. it is validated in a scratch state (load, registrations, every
 *      swit.on_load); on failure the running generation stays and the
 *      error (file:line) is returned, logged and counted;
 *   3. subscriptions are diffed: unchanged ones keep their broker
 *      subscription and group membership; added ones enter the table;
 *   4. every worker's new state is built here (generation.c); a failure
 *      up to here undoes step 3 and changes nothing else. Only then are
 *      the removed subscriptions paused and drained by the running (old)
 *      code and unsubscribed, and the generation counter moves on; each
 *      worker, between two batches,
 *      hands its state over, swaps to the new state and reports (its
 *      queue waits only for that); the old states are closed here;
 *   5. added subscriptions are subscribed once every worker runs the new
 *      code.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"

/* Pause and drain the active Lua subscriptions the new code no longer
 * has (marked in `keep`), then unsubscribe them. */
static void drain_removed(swit_host_t *h, const uint8_t *keep)
{
  swit__deadline end = swit__deadline_in(h->cfg->server.shutdown_timeout_ms);

  for (size_t i = 0; i < h->nsubs; i++) {
    swit__sub *s = h->subs[i];
    if (keep[i] || s->ccb || !atomic_load(&s->active)) continue;
    atomic_fetch_add(&s->paused_by, 1);
    swit__sub_reconcile_pause(s);
  }
  for (size_t i = 0; i < h->nsubs; i++) {
    swit__sub *s = h->subs[i];
    if (keep[i] || s->ccb || !atomic_load(&s->active)) continue;
    while (atomic_load(&s->inflight) > 0 && !swit__deadline_passed(end))
      swit__sleep_ms(2);
    if (atomic_load(&s->inflight) > 0)
      swit__log(&h->log, SWIT_LOG_WARN, "reload: '%s' (group %s) still had "
                "%ld message(s) in flight at the deadline; they go back to "
                "the broker", s->topic, s->group, (long)atomic_load(&s->inflight));
    atomic_store(&s->active, 0);
    swit__subs_unsubscribe(h, s);
    swit__log(&h->log, SWIT_LOG_INFO, "reload: unsubscribed '%s' (group %s)",
              s->topic, s->group);
  }
}

/* Kick every worker and wait until each has switched to `gen`. */
static int wait_for_swaps(swit_host_t *h, unsigned gen)
{
  swit__deadline end = swit__deadline_in(h->cfg->server.shutdown_timeout_ms);
  int late = 0;

  for (size_t i = 0; i < h->nworkers; i++) swit__queue_kick(&h->workers[i].q);
  pthread_mutex_lock(&h->swap_lock);
  for (size_t i = 0; i < h->nworkers; i++) {
    while (atomic_load(&h->workers[i].seen_gen) != gen) {
      swit__cond_wait_until(&h->swap_cv, &h->swap_lock,
                            swit__deadline_min(end, 10));
      if (swit__deadline_passed(end)) {
        late++;
        break;
      }
    }
  }
  pthread_mutex_unlock(&h->swap_lock);
  return late;
}

/* Steps 3-5 for a validated code set and its registrations. Takes
 * `code` on success. Everything that can fail (adding the new
 * subscriptions to the table, building every worker's new state) comes
 * first and is undone on failure; the irreversible steps (draining and
 * unsubscribing the removed subscriptions, moving the generation on)
 * come after, so a failed reload leaves the running code with every
 * subscription it had. */
static int commit(swit_host_t *h, swit__codeset *code, swit__subdef *defs,
                  size_t n, const uint32_t *ids, char *err, size_t errlen)
{
  uint8_t keep[SWIT__MAX_SUBS] = {0};
  size_t before = h->nsubs;
  unsigned gen;
  int rc = 0, late;

  for (size_t i = 0; i < n; i++)
    if (ids[i]) keep[ids[i] - 1] = 1;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    uint32_t id;
    if (ids[i] == 0) rc = swit__subs_add(h, &defs[i], NULL, NULL, &id);
  }
  if (rc)
    snprintf(err, errlen, rc == SWIT_E_FULL ? "more than %d subscriptions"
             : "out of memory", SWIT__MAX_SUBS);
  /* every worker's new state, built here and not on the workers */
  if (rc == 0) rc = swit__generation_prebuild(h, code, n, err, errlen);
  if (rc) {   /* the new code is not installed; the caller frees it */
    swit__subs_truncate(h, before);
    return rc;
  }
  for (size_t i = before; i < h->nsubs; i++) keep[i] = 1;
  drain_removed(h, keep);
  swit__codeset_free(h->prev_code);
  h->prev_code = h->code;
  h->code = code;
  gen = atomic_fetch_add(&h->generation, 1) + 1;
  late = wait_for_swaps(h, gen);
  swit__generation_reap(h);
  if (late)
    swit__log(&h->log, SWIT_LOG_WARN, "reload: %d worker(s) still in a "
              "handler at the deadline switch to generation %u after it",
              late, gen);
  for (size_t i = before; i < h->nsubs; i++) {
    char serr[256];
    if (swit__subs_subscribe(h, h->subs[i], serr, sizeof serr) == 0) {
      swit__log(&h->log, SWIT_LOG_INFO, "reload: subscribed '%s' (group %s)",
                h->subs[i]->topic, h->subs[i]->group);
      continue;
    }
    swit__log(&h->log, SWIT_LOG_ERROR, "reload: cannot subscribe '%s': %s",
              h->subs[i]->topic, serr);
    atomic_store(&h->subs[i]->active, 0);
  }
  return 0;
}

static int reload_locked(swit_host_t *h, int rollback, char *err,
                         size_t errlen)
{
  swit__codeset *code = NULL;
  swit__subdef *defs = NULL;
  uint32_t *ids = NULL;
  size_t n = 0;
  int rc = 0;

  if (rollback && !h->prev_code) {
    snprintf(err, errlen, "rollback: there is no previous generation");
    return SWIT_E_STATE;
  }
  if (rollback)                 /* its modules are served from memory */
    code = h->prev_code;
  else
    rc = swit__codeset_read(h->cfg, &code, err, errlen);
  if (rc == 0) rc = swit__generation_validate(h, code, &defs, &n, err, errlen);
  if (rc == 0 && !(ids = calloc(n ? n : 1, sizeof *ids))) rc = SWIT_E_NOMEM;
  if (rc == 0) rc = swit__subs_resolve(h, defs, n, ids, err, errlen);
  if (rc == 0) {
    if (rollback) h->prev_code = NULL;
    rc = commit(h, code, defs, n, ids, err, errlen);
    if (rc && rollback) h->prev_code = code;  /* still there to roll back to */
  }
  if (rc && !rollback) swit__codeset_free(code);
  swit__subdefs_free(defs, n);
  free(ids);
  return rc;
}

int swit_host_reload(swit_host_t *h, int flags, unsigned *generation,
                     char *err, size_t errlen)
{
  int rollback = (flags & SWIT_RELOAD_ROLLBACK) != 0;
  unsigned gen = 0;
  char ebuf[1024];
  int64_t t0 = swit__now_ms();
  int rc;

  if (!err) err = ebuf, errlen = sizeof ebuf;
  pthread_mutex_lock(&h->reload_lock);
  if (atomic_load(&h->state) != SWIT__RUNNING) {
    rc = SWIT_E_STATE;
    snprintf(err, errlen, "reload: the host is not running");
  } else if (!rollback && (rc = swit__sec_reload(h, err, errlen)) != 0) {
    /* the keyrings first: a bad one keeps the running keys and code */
  } else if (!h->code && h->sec && h->sec->msg && !rollback) {
    rc = 0;                               /* the keys were all to reload */
  } else if (!h->code) {
    rc = SWIT_E_STATE;
    snprintf(err, errlen, "reload: the host runs no Lua scripts");
  } else {
    rc = reload_locked(h, rollback, err, errlen);
  }
  gen = atomic_load(&h->generation);
  pthread_mutex_unlock(&h->reload_lock);
  if (rc == 0) {
    atomic_fetch_add(&h->reloads_ok, 1);
    swit__log(&h->log, SWIT_LOG_INFO, "%s: now running code generation %u "
              "(%ld ms)", rollback ? "rollback" : "reload", gen,
              (long)(swit__now_ms() - t0));
  } else if (rc != SWIT_E_STATE || atomic_load(&h->state) == SWIT__RUNNING) {
    atomic_fetch_add(&h->reloads_failed, 1);
    swit__log(&h->log, SWIT_LOG_ERROR, "%s rejected, generation %u keeps "
              "running: %s", rollback ? "rollback" : "reload",
              atomic_load(&h->generation), err);
  }
  if (generation) *generation = atomic_load(&h->generation);
  return rc;
}
