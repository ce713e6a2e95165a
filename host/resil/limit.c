/*
 * limit.c - intake limits of a subscription (resil.h), as an interceptor:
 * messaging.subscribers.<name>.rate_limit and .concurrency.
 *
 * Both pause intake at the broker instead of making a worker wait: each
 * holds at most one count of the subscription's paused_by (the count the
 * queues' backpressure, the circuit and the operator's pause use), so the
 * adapter stops delivering with the membership kept and nothing given
 * back.
 *
 *   rate_limit   a token bucket of `burst` tokens filled at `rate` per
 *                second. intake (the adapter's thread) takes one token per
 *                message delivered; a delivery is never refused, so the
 *                bucket may go below zero, and then the subscription is
 *                paused until the bucket is back at zero. Over any span the
 *                messages taken in are at most burst + rate * span + what
 *                the adapter delivered in the one call that emptied the
 *                bucket. The timer thread (started at registration) ends
 *                the pause when due.
 *   concurrency  a bulkhead: while the subscription's messages taken in and
 *                not yet settled (sub->inflight: queued, being handled or
 *                parked for a retry) reach the cap, it is paused; released
 *                (after a settle) ends the pause below the cap. The workers
 *                a slow subscription can occupy are thus at most its cap
 *                plus one adapter delivery.
 *
 * Lock order: a limit's lock -> sub pause_lock (swit__sub_reconcile_pause);
 * the timer takes a limit's lock without holding lm->mu.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "obs/obs.h"
#include "resil/resil.h"

typedef struct sub_limit {
  swit__sub *sub;
  double rate, burst;         /* rate 0: no rate limit */
  int64_t cap;                /* 0: no concurrency cap */
  pthread_mutex_t lock;       /* everything below */
  double tokens;
  int64_t last_us;            /* tokens were counted at this time */
  int64_t due_us;             /* held_rate: the bucket is at zero then */
  int held_rate, held_cap;    /* each holds one count of paused_by */
  atomic_int any_held;        /* held_rate || held_cap, read without lock */
  atomic_uint_fast64_t rate_pauses, cap_pauses;   /* metrics */
} sub_limit;

struct swit__limits {
  swit__resil *r;
  sub_limit *_Atomic lim[SWIT__MAX_SUBS + 1];   /* NULL: not looked at */
  atomic_uint maxsub;
  pthread_mutex_t mu;         /* creation, the timer's wait */
  pthread_cond_t cv;
  atomic_uint kicks;          /* a rate pause began: the timer looks again */
  int stop;                   /* under mu */
  pthread_t timer;
  int timer_started;
};

/* A subscription without limits. */
static sub_limit no_limit;
#define NONE (&no_limit)

/* ------------------------------------------------------------------ */
/* Holding a pause (under l->lock) */

static void hold(sub_limit *l, int *held, int want)
{
  if (*held == want) return;
  *held = want;
  atomic_store(&l->any_held, l->held_rate || l->held_cap);
  atomic_fetch_add(&l->sub->paused_by, want ? 1 : -1);
  swit__sub_reconcile_pause(l->sub);
}

static void refill(sub_limit *l, int64_t now_us)
{
  if (now_us > l->last_us) {
    l->tokens += (double)(now_us - l->last_us) * l->rate / 1e6;
    if (l->tokens > l->burst) l->tokens = l->burst;
    l->last_us = now_us;
  }
}

static void kick(struct swit__limits *lm)
{
  atomic_fetch_add(&lm->kicks, 1);
  pthread_mutex_lock(&lm->mu);
  pthread_cond_signal(&lm->cv);
  pthread_mutex_unlock(&lm->mu);
}

/* ------------------------------------------------------------------ */
/* The limits of a subscription */

static sub_limit *limit_slow(struct swit__limits *lm, swit__sub *sub)
{
  sub_limit *l;

  pthread_mutex_lock(&lm->mu);
  l = atomic_load(&lm->lim[sub->id]);
  if (!l) {
    const swit_cfg_subscriber *s = sub->scfg;
    l = NONE;
    if (s && (s->rate_limit.rate > 0 || s->concurrency > 0)) {
      sub_limit *n = calloc(1, sizeof *n);
      if (n) {
        n->sub = sub;
        n->rate = s->rate_limit.rate;
        n->burst = (double)s->rate_limit.burst;
        n->cap = s->concurrency;
        n->tokens = n->burst;
        n->last_us = (int64_t)swit__now_us();
        pthread_mutex_init(&n->lock, NULL);
        l = n;
        if (sub->id > atomic_load(&lm->maxsub))
          atomic_store(&lm->maxsub, sub->id);
      } else {
        swit__log(&lm->r->host->log, SWIT_LOG_ERROR, "out of memory for the "
                  "intake limits of '%s'; it runs without them", sub->topic);
      }
    }
    atomic_store_explicit(&lm->lim[sub->id], l, memory_order_release);
  }
  pthread_mutex_unlock(&lm->mu);
  return l;
}

static inline sub_limit *limit_of(struct swit__limits *lm, swit__sub *sub)
{
  sub_limit *l = atomic_load_explicit(&lm->lim[sub->id],
                                      memory_order_acquire);
  return l ? l : limit_slow(lm, sub);
}

/* ------------------------------------------------------------------ */
/* The interceptor */

static void l_intake(void *hs, swit__sub *sub, size_t n)
{
  struct swit__limits *lm = hs;
  sub_limit *l = limit_of(lm, sub);
  int start_timer = 0;

  if (l == NONE) return;
  pthread_mutex_lock(&l->lock);
  if (l->rate > 0) {
    int64_t now = (int64_t)swit__now_us();
    refill(l, now);
    l->tokens -= (double)n;
    if (l->tokens < 0) {
      l->due_us = now + (int64_t)ceil(-l->tokens * 1e6 / l->rate);
      if (!l->held_rate) {
        atomic_fetch_add(&l->rate_pauses, 1);
        hold(l, &l->held_rate, 1);
        start_timer = 1;
      }
    }
  }
  if (l->cap > 0 && !l->held_cap && atomic_load(&sub->inflight) >= l->cap) {
    atomic_fetch_add(&l->cap_pauses, 1);
    hold(l, &l->held_cap, 1);
  }
  pthread_mutex_unlock(&l->lock);
  if (start_timer) kick(lm);
}

static void l_released(void *hs, swit__sub *sub, size_t n)
{
  struct swit__limits *lm = hs;
  sub_limit *l = atomic_load_explicit(&lm->lim[sub->id],
                                      memory_order_acquire);
  (void)n;
  if (!l || l == NONE || l->cap == 0 || !atomic_load(&l->any_held)) return;
  pthread_mutex_lock(&l->lock);
  if (l->held_cap && atomic_load(&sub->inflight) < l->cap)
    hold(l, &l->held_cap, 0);
  pthread_mutex_unlock(&l->lock);
}

static const swit__icpt_ops limit_ops = {
  .name = "limit",
  .intake = l_intake,
  .released = l_released,
};

/* ------------------------------------------------------------------ */
/* The timer: ends rate pauses when the bucket is back at zero */

/* End l's rate pause if due; returns when it is due (us) if still held,
 * else -1. */
static int64_t tick(sub_limit *l, int64_t now_us)
{
  int64_t due = -1;

  pthread_mutex_lock(&l->lock);
  if (l->held_rate) {
    refill(l, now_us);
    if (l->tokens >= 0)
      hold(l, &l->held_rate, 0);
    else
      due = l->due_us = now_us + (int64_t)ceil(-l->tokens * 1e6 / l->rate);
  }
  pthread_mutex_unlock(&l->lock);
  return due;
}

static void *timer_main(void *arg)
{
  struct swit__limits *lm = arg;

  for (;;) {
    unsigned seen = atomic_load(&lm->kicks);
    uint32_t max = atomic_load(&lm->maxsub);
    int64_t now = (int64_t)swit__now_us(), next = -1;

    for (uint32_t id = 1; id <= max; id++) {
      sub_limit *l = atomic_load(&lm->lim[id]);
      int64_t due;
      if (!l || l == NONE || l->rate <= 0) continue;
      due = tick(l, now);
      if (due >= 0 && (next < 0 || due < next)) next = due;
    }
    pthread_mutex_lock(&lm->mu);
    if (!lm->stop && atomic_load(&lm->kicks) == seen) {
      if (next < 0) {
        pthread_cond_wait(&lm->cv, &lm->mu);
      } else {
        struct timespec ts = {(time_t)(next / 1000000),
                              (long)(next % 1000000) * 1000L};
        pthread_cond_timedwait(&lm->cv, &lm->mu, &ts);
      }
    }
    if (lm->stop) {
      pthread_mutex_unlock(&lm->mu);
      return NULL;
    }
    pthread_mutex_unlock(&lm->mu);
  }
}

/* ------------------------------------------------------------------ */
/* Lifecycle */

int swit__limit_register(swit_host_t *h, char *err, size_t errlen)
{
  const swit_cfg_named *subs = &h->cfg->messaging.subscribers;
  swit__resil *r = h->resil;
  struct swit__limits *lm;
  pthread_condattr_t ca;
  int any = 0, k;

  for (size_t i = 0; i < subs->n; i++) {
    const swit_cfg_subscriber *s =
        (const swit_cfg_subscriber *)subs->elems + i;
    any |= s->rate_limit.rate > 0 || s->concurrency > 0;
  }
  if (!any) return 0;
  if (!(lm = calloc(1, sizeof *lm))) return SWIT_E_NOMEM;
  lm->r = r;
  pthread_mutex_init(&lm->mu, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&lm->cv, &ca);
  pthread_condattr_destroy(&ca);
  r->limits = lm;
  if ((k = swit__icpt_add(h, &limit_ops, lm)) < 0) return k;
  if (pthread_create(&lm->timer, NULL, timer_main, lm) != 0) {
    snprintf(err, errlen, "cannot start the rate limits' timer thread");
    return SWIT_E_NOMEM;
  }
  lm->timer_started = 1;
  return 0;
}

void swit__limit_free(swit__resil *r)
{
  struct swit__limits *lm = r->limits;

  if (!lm) return;
  if (lm->timer_started) {
    pthread_mutex_lock(&lm->mu);
    lm->stop = 1;
    pthread_cond_signal(&lm->cv);
    pthread_mutex_unlock(&lm->mu);
    pthread_join(lm->timer, NULL);
  }
  for (size_t id = 1; id <= SWIT__MAX_SUBS; id++) {
    sub_limit *l = atomic_load(&lm->lim[id]);
    if (!l || l == NONE) continue;
    pthread_mutex_destroy(&l->lock);
    free(l);
  }
  pthread_cond_destroy(&lm->cv);
  pthread_mutex_destroy(&lm->mu);
  free(lm);
  r->limits = NULL;
}

/* ------------------------------------------------------------------ */
/* /metrics */

int swit__limit_render(swit_host_t *h, swit__buf *b)
{
  struct swit__limits *lm = h->resil ? h->resil->limits : NULL;
  uint32_t max = lm ? atomic_load(&lm->maxsub) : 0;

  if (!max) return 0;
  swit__buf_printf(b, "# HELP swit_intake_pauses_total Subscriptions paused "
                   "at the broker by an intake limit (rate_limit, "
                   "concurrency)\n# TYPE swit_intake_pauses_total counter\n");
  for (uint32_t id = 1; id <= max; id++) {
    sub_limit *l = atomic_load(&lm->lim[id]);
    for (int by = 0; l && l != NONE && by < 2; by++) {
      if (by == 0 ? l->rate <= 0 : l->cap <= 0) continue;
      swit__buf_add(b, "swit_intake_pauses_total{topic=\"", 32);
      swit__buf_prom(b, l->sub->topic, strlen(l->sub->topic), 1);
      swit__buf_add(b, "\",group=\"", 9);
      swit__buf_prom(b, l->sub->group, strlen(l->sub->group), 1);
      swit__buf_printf(b, "\",by=\"%s\"} %llu\n",
                       by == 0 ? "rate_limit" : "concurrency",
                       (unsigned long long)atomic_load(
                           by == 0 ? &l->rate_pauses : &l->cap_pauses));
    }
  }
  return b->data ? 0 : SWIT_E_NOMEM;
}
