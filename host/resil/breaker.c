/*
 * breaker.c - one circuit breaker's state machine, and the named breakers
 * of swit.breaker (resil.h).
 *
 *   closed --(failure_threshold failures in a row, or failure_rate of at
 *             least min_calls outcomes within `window`, or a critical
 *             error)--> open
 *   open --(recovery_timeout)--> half_open: success_threshold trial calls
 *   half_open --(every trial call succeeded)--> closed
 *   half_open --(a trial call failed)--> open (the timeout starts again)
 *
 * Outcomes that arrive while open (calls started before it opened) are
 * not counted. A trial whose outcomes have not all come within another
 * recovery_timeout (a caller that never recorded) lets the missing
 * number of calls through again. The window is SWIT__CB_SLICES slices of window/10 each;
 * a slice older than the window is reset when its turn comes again.
 *
 * Threads: any. The state is an atomic so a closed breaker costs one
 * load per call; everything else is under the breaker's lock, and the
 * sync callback runs under it too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resil/resil.h"

const char *swit__breaker_state_name(int state)
{
  switch (state) {
  case SWIT__CB_OPEN: return "open";
  case SWIT__CB_HALF_OPEN: return "half_open";
  default: return "closed";
  }
}

int swit__breaker_check(const swit_cfg_breaker *cfg, char *err, size_t errlen)
{
  if (cfg->failure_threshold == 0 && cfg->failure_rate <= 0) {
    snprintf(err, errlen, "failure_threshold and failure_rate are both 0: "
             "the breaker would never open");
    return SWIT_E_CONFIG;
  }
  if (cfg->success_threshold < 1 || cfg->recovery_ms < 1 ||
      cfg->window_ms < SWIT__CB_SLICES || cfg->min_calls < 1 ||
      cfg->failure_rate < 0 || cfg->failure_rate > 1) {
    snprintf(err, errlen, "success_threshold, min_calls and recovery_timeout "
             "must be positive, window at least %d ms, failure_rate within "
             "0..1", SWIT__CB_SLICES);
    return SWIT_E_CONFIG;
  }
  return 0;
}

void swit__breaker_init(swit__breaker *b, const swit_cfg_breaker *cfg,
                        swit__breaker_sync sync, void *ud)
{
  memset(b, 0, sizeof *b);
  pthread_mutex_init(&b->lock, NULL);
  b->cfg = *cfg;
  b->sync = sync;
  b->sync_ud = ud;
}

void swit__breaker_destroy(swit__breaker *b)
{
  pthread_mutex_destroy(&b->lock);
}

/* Under the lock: enter `to`, count it, tell the sync callback. */
static void enter(swit__breaker *b, int to, int64_t now_ms)
{
  int from = atomic_load_explicit(&b->state, memory_order_relaxed);

  switch (to) {
  case SWIT__CB_OPEN:
    b->open_until_ms = now_ms + b->cfg.recovery_ms;
    atomic_fetch_add(&b->opened, 1);
    break;
  case SWIT__CB_HALF_OPEN:
    b->trial_left = (uint32_t)b->cfg.success_threshold;
    b->trial_ok = 0;
    b->trial_at_ms = now_ms;
    atomic_fetch_add(&b->half_opened, 1);
    break;
  default:
    b->consecutive = 0;
    memset(b->win, 0, sizeof b->win);
    atomic_fetch_add(&b->closed, 1);
    break;
  }
  atomic_store_explicit(&b->state, to, memory_order_release);
  if (b->sync) b->sync(b, from, b->sync_ud);
}

static void trial_changed(swit__breaker *b)
{
  int s = atomic_load_explicit(&b->state, memory_order_relaxed);
  if (b->sync) b->sync(b, s, b->sync_ud);
}

int swit__breaker_allow(swit__breaker *b, int64_t now_ms)
{
  int ok = 0;

  if (atomic_load_explicit(&b->state, memory_order_acquire) == SWIT__CB_CLOSED)
    return 1;
  pthread_mutex_lock(&b->lock);
  switch (atomic_load_explicit(&b->state, memory_order_relaxed)) {
  case SWIT__CB_CLOSED:
    ok = 1;
    break;
  case SWIT__CB_OPEN:
    if (now_ms < b->open_until_ms) break;
    enter(b, SWIT__CB_HALF_OPEN, now_ms);
    /* fall through */
  default:
    if (b->trial_left == 0 && now_ms - b->trial_at_ms >= b->cfg.recovery_ms) {
      /* trial calls whose outcome never came: a new trial */
      b->trial_left = (uint32_t)b->cfg.success_threshold - b->trial_ok;
      b->trial_at_ms = now_ms;
    }
    if (b->trial_left > 0) {
      ok = 1;
      if (--b->trial_left == 0) trial_changed(b);
    }
    break;
  }
  pthread_mutex_unlock(&b->lock);
  if (!ok) atomic_fetch_add_explicit(&b->refused, 1, memory_order_relaxed);
  return ok;
}

void swit__breaker_release(swit__breaker *b)
{
  pthread_mutex_lock(&b->lock);
  if (atomic_load_explicit(&b->state, memory_order_relaxed) ==
          SWIT__CB_HALF_OPEN &&
      b->trial_ok + b->trial_left < (uint32_t)b->cfg.success_threshold) {
    if (b->trial_left++ == 0) trial_changed(b);
  }
  pthread_mutex_unlock(&b->lock);
}

/* Under the lock, closed: count one outcome in the window; 1 when the
 * failure rate now opens the breaker. */
static int window_add(swit__breaker *b, int64_t now_ms, int fail)
{
  int64_t slice = b->cfg.window_ms / SWIT__CB_SLICES;
  int64_t start = now_ms - now_ms % slice;
  size_t k = (size_t)((now_ms / slice) % SWIT__CB_SLICES);
  uint64_t calls = 0, fails = 0;

  if (b->win[k].start_ms != start) {
    b->win[k].start_ms = start;
    b->win[k].calls = b->win[k].fails = 0;
  }
  b->win[k].calls++;
  b->win[k].fails += fail;
  if (!fail || b->cfg.failure_rate <= 0) return 0;
  for (size_t i = 0; i < SWIT__CB_SLICES; i++) {
    if (b->win[i].start_ms <= now_ms - b->cfg.window_ms) continue;
    calls += b->win[i].calls;
    fails += b->win[i].fails;
  }
  return calls >= (uint64_t)b->cfg.min_calls &&
         (double)fails >= b->cfg.failure_rate * (double)calls;
}

static void record_one(swit__breaker *b, int64_t now_ms, int outcome)
{
  int s = atomic_load_explicit(&b->state, memory_order_relaxed);

  if (outcome == SWIT__CB_CRITICAL) {
    enter(b, SWIT__CB_OPEN, now_ms);
    return;
  }
  if (s == SWIT__CB_HALF_OPEN) {
    if (outcome == SWIT__CB_FAIL)
      enter(b, SWIT__CB_OPEN, now_ms);
    else if (++b->trial_ok >= (uint32_t)b->cfg.success_threshold)
      enter(b, SWIT__CB_CLOSED, now_ms);
    return;
  }
  if (s != SWIT__CB_CLOSED) return;       /* open: a late outcome */
  if (outcome == SWIT__CB_OK) {
    b->consecutive = 0;
    window_add(b, now_ms, 0);
    return;
  }
  b->consecutive++;
  if (window_add(b, now_ms, 1) ||
      (b->cfg.failure_threshold > 0 &&
       b->consecutive >= (uint64_t)b->cfg.failure_threshold))
    enter(b, SWIT__CB_OPEN, now_ms);
}

void swit__breaker_record(swit__breaker *b, int64_t now_ms,
                          const uint8_t *outcomes, size_t n)
{
  pthread_mutex_lock(&b->lock);
  for (size_t i = 0; i < n; i++) record_one(b, now_ms, outcomes[i]);
  pthread_mutex_unlock(&b->lock);
}

void swit__breaker_trip(swit__breaker *b, int64_t now_ms)
{
  pthread_mutex_lock(&b->lock);
  enter(b, SWIT__CB_OPEN, now_ms);
  pthread_mutex_unlock(&b->lock);
}

int64_t swit__breaker_tick(swit__breaker *b, int64_t now_ms)
{
  int64_t due = -1;

  if (atomic_load_explicit(&b->state, memory_order_acquire) != SWIT__CB_OPEN)
    return -1;
  pthread_mutex_lock(&b->lock);
  if (atomic_load_explicit(&b->state, memory_order_relaxed) == SWIT__CB_OPEN) {
    if (now_ms >= b->open_until_ms)
      enter(b, SWIT__CB_HALF_OPEN, now_ms);
    else
      due = b->open_until_ms;
  }
  pthread_mutex_unlock(&b->lock);
  return due;
}

/* ------------------------------------------------------------------ */
/* Named breakers (swit.breaker) */

#define NAME_MAX_LEN 128

struct swit__named_breaker {
  swit__breaker b;
  struct swit__resil *r;
  char name[];
};

static void named_sync(swit__breaker *b, int from, void *ud)
{
  swit__named_breaker *nb = ud;
  int to = atomic_load_explicit(&b->state, memory_order_relaxed);

  if (from == to) return;
  swit__log(&nb->r->host->log, to == SWIT__CB_OPEN ? SWIT_LOG_WARN
            : SWIT_LOG_INFO, "breaker '%s': %s -> %s", nb->name,
            swit__breaker_state_name(from), swit__breaker_state_name(to));
}

static int same_cfg(const swit_cfg_breaker *a, const swit_cfg_breaker *b)
{
  return a->failure_threshold == b->failure_threshold &&
         a->success_threshold == b->success_threshold &&
         a->recovery_ms == b->recovery_ms &&
         a->failure_rate == b->failure_rate &&
         a->min_calls == b->min_calls && a->window_ms == b->window_ms;
}

int swit__breaker_named(swit_host_t *h, const char *name, size_t len,
                        const swit_cfg_breaker *cfg)
{
  swit__resil *r = h->resil;
  swit__named_breaker *nb = NULL;
  char err[160];
  uint32_t n;
  int id = SWIT_E_FULL;

  if (!r || !name || len == 0 || len > NAME_MAX_LEN ||
      swit__breaker_check(cfg, err, sizeof err))
    return SWIT_E_INVAL;
  for (size_t i = 0; i < len; i++)       /* printable: a metric label */
    if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f) return SWIT_E_INVAL;
  pthread_mutex_lock(&r->mu);
  n = atomic_load(&r->nnamed);
  for (uint32_t i = 0; i < n; i++) {
    nb = atomic_load(&r->named[i]);
    if (strlen(nb->name) == len && !memcmp(nb->name, name, len)) {
      id = same_cfg(&nb->b.cfg, cfg) ? (int)i : SWIT_E_EXISTS;
      break;
    }
    nb = NULL;
  }
  if (!nb && n < SWIT__NAMED_MAX) {
    if ((nb = calloc(1, sizeof *nb + len + 1))) {
      memcpy(nb->name, name, len);
      nb->r = r;
      swit__breaker_init(&nb->b, cfg, named_sync, nb);
      nb->b.cfg.enabled = 1;
      atomic_store(&r->named[n], nb);
      atomic_store(&r->nnamed, n + 1);
      id = (int)n;
    } else {
      id = SWIT_E_NOMEM;
    }
  }
  pthread_mutex_unlock(&r->mu);
  return id;
}

swit__breaker *swit__named_breaker_get(swit_host_t *h, int32_t id)
{
  swit__resil *r = h->resil;
  swit__named_breaker *nb;

  if (!r || id < 0 || id >= SWIT__NAMED_MAX) return NULL;
  nb = atomic_load_explicit(&r->named[id], memory_order_acquire);
  return nb ? &nb->b : NULL;
}

const char *swit__named_breaker_name(const swit__breaker *b)
{
  return ((const swit__named_breaker *)(const void *)b)->name;
}

void swit__named_breakers_free(swit__resil *r)
{
  uint32_t n = atomic_load(&r->nnamed);
  for (uint32_t i = 0; i < n; i++) {
    swit__named_breaker *nb = atomic_load(&r->named[i]);
    swit__breaker_destroy(&nb->b);
    free(nb);
  }
}
