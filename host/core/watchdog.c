/*
 * watchdog.c - the thread that notices workers stuck in a handler, a
 * timer or on_start (host_int.h, "watchdog.c").
 *
 * Every tick (a tenth of lua.limits.handler_timeout, between 10 ms and
 * 1 s) it reads each worker's busy_since_us. Past the limit the worker is
 * marked stuck: the dispatcher sends its unordered work elsewhere and
 * the log says so once; a stop interrupts a stuck worker (worker.c).
 * When the worker is free again the mark goes. The watchdog reads workers, never writes
 * their batch; it owns only its thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/host_int.h"

typedef struct swit__watchdog {
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t cv;
  int stop;
  int64_t tick_ms;
} swit__watchdog;

static const char *busy_what(int kind)
{
  return kind == SWIT__BUSY_ON_START ? "on_start"
       : kind == SWIT__BUSY_TIMER ? "a timer" : "a handler";
}

static void check_worker(swit_host_t *h, swit__worker *w, uint64_t now,
                         int64_t limit_us)
{
  int64_t since = atomic_load_explicit(&w->busy_since_us,
                                       memory_order_acquire);

  if (!since || (int64_t)now - since <= limit_us) {
    atomic_store(&w->stuck, 0);
    return;
  }
  if (!atomic_exchange(&w->stuck, 1)) {
    uint32_t sid = atomic_load(&w->busy_sub);
    int kind = atomic_load(&w->busy_kind);
    const swit__sub *sub = kind == SWIT__BUSY_BATCH && sid &&
                           sid <= SWIT__MAX_SUBS ? h->subs[sid - 1] : NULL;
    swit__log(&h->log, SWIT_LOG_ERROR, "[worker %u] stuck in %s for %.1f s "
              "(past lua.limits.handler_timeout%s%s%s): it gets no new "
              "unordered work, and a stop will interrupt it", w->id, busy_what(kind),
              (double)((int64_t)now - since) / 1e6, sub ? ", topic '" : "",
              sub ? sub->topic : "", sub ? "'" : "");
  }
}

static void *watchdog_main(void *arg)
{
  swit_host_t *h = arg;
  swit__watchdog *d = h->watchdog;
  int64_t limit_us = h->cfg->lua.limits.handler_timeout_ms * 1000;

  pthread_mutex_lock(&d->lock);
  while (!d->stop) {
    swit__cond_wait_until(&d->cv, &d->lock, swit__deadline_in(d->tick_ms));
    if (d->stop) break;
    pthread_mutex_unlock(&d->lock);
    for (size_t i = 0; i < h->nworkers; i++)
      check_worker(h, &h->workers[i], swit__now_us(), limit_us);
    pthread_mutex_lock(&d->lock);
  }
  pthread_mutex_unlock(&d->lock);
  return NULL;
}

int swit__watchdog_start(swit_host_t *h, char *err, size_t errlen)
{
  swit__watchdog *d = calloc(1, sizeof *d);
  int64_t tick = h->cfg->lua.limits.handler_timeout_ms / 10;

  if (!d) return swit__fail(err, errlen, SWIT_E_NOMEM, "out of memory");
  d->tick_ms = tick < 10 ? 10 : tick > 1000 ? 1000 : tick;
  pthread_mutex_init(&d->lock, NULL);
  swit__cond_init_monotonic(&d->cv);
  h->watchdog = d;
  if (pthread_create(&d->thread, NULL, watchdog_main, h) != 0) {
    h->watchdog = NULL;
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->lock);
    free(d);
    return swit__fail(err, errlen, SWIT_E_SYS, "cannot start the watchdog");
  }
  return 0;
}

void swit__watchdog_stop(swit_host_t *h)
{
  swit__watchdog *d = h->watchdog;

  if (!d) return;
  pthread_mutex_lock(&d->lock);
  d->stop = 1;
  pthread_cond_signal(&d->cv);
  pthread_mutex_unlock(&d->lock);
  pthread_join(d->thread, NULL);
  pthread_cond_destroy(&d->cv);
  pthread_mutex_destroy(&d->lock);
  free(d);
  h->watchdog = NULL;
}
