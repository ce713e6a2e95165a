/*
 * limit.c - intake limits of a subscription (resil.h), as an interceptor:
 * messaging.subscribers.<name>.rate_limit and .concurrency.
 *
 * Both are strict: a message over a limit is not routed to a worker. The
 * intake hook (the adapter's thread, core/intercept.h) takes every
 * delivery of a limited subscription, routes what the limits allow now
 * (swit__dispatch_route) and holds the rest here, in arrival order, with
 * the subscription paused at the broker (one count of its paused_by, the
 * count the queues' backpressure, the circuit and the operator's pause
 * use) while anything is held. Nothing is refused, given back or
 * dead-lettered because of a limit: held messages stay unsettled at the
 * broker (sub->inflight counts them) until they are routed.
 *
 *   rate_limit   a token bucket (swit__bucket) of `burst` tokens refilled
 *                at `rate` per second, one token per message routed: over
 *                any span t, at most burst + rate * t messages reach the
 *                workers.
 *   concurrency  a bulkhead: the messages routed and not yet settled
 *                (queued, being handled, parked for a retry) are at most
 *                `concurrency`, so at most that many handlers of the
 *                subscription run at once. released (after a settle) lets
 *                the held ones in.
 *
 * The pump (this file's timer.c thread) routes held messages as tokens
 * come back (it sleeps until the bucket has one) or as settles lower the
 * count (released kicks it). What is held is at most the deliveries an
 * adapter makes before its pause takes effect: one delivery (memory: a
 * batch of up to 256; NATS core and JetStream: one batch; RabbitMQ and
 * Kafka: what the client had already received, within prefetch /
 * the fetch queue). At stop the pump keeps routing within the limits
 * while the host drains; once the subscription is unsubscribed or the
 * workers are halted, what is still held is given back (SWIT_SETTLE_
 * REQUEUE), as the worker queues' contents are.
 *
 * Lock order: l->order -> l->lock -> sub pause_lock; l->order -> a worker
 * queue's lock (routing). Workers (released) take l->lock only, then the
 * timer's lock (the kick).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obs/obs.h"
#include "resil/resil.h"

#define PUMP_CHUNK 256        /* messages routed per pump step */
#define BUCKET_MAX 1e6        /* the config's bounds of rate and burst */

/* ------------------------------------------------------------------ */
/* The token bucket and the room: pure */

int swit__bucket_init(swit__bucket *b, double rate, double burst,
                      int64_t now_us)
{
  if (!(rate >= SWIT_CFG_RATE_MIN && rate <= BUCKET_MAX && burst >= 1 &&
        burst <= BUCKET_MAX))
    return SWIT_E_INVAL;                 /* NaN fails every comparison */
  b->rate = rate;
  b->burst = floor(burst);
  b->tokens = b->burst;
  b->last_us = now_us;
  return 0;
}

static void bucket_refill(swit__bucket *b, int64_t now_us)
{
  if (now_us > b->last_us) {
    double add = (double)(now_us - b->last_us) * b->rate / 1e6;
    b->tokens = add >= b->burst - b->tokens ? b->burst : b->tokens + add;
    b->last_us = now_us;
  }
}

size_t swit__bucket_take(swit__bucket *b, int64_t now_us, size_t want)
{
  double whole;

  bucket_refill(b, now_us);
  whole = floor(b->tokens);
  if ((double)want < whole) whole = (double)want;
  b->tokens -= whole;
  return (size_t)whole;
}

int64_t swit__bucket_due(const swit__bucket *b, int64_t now_us)
{
  double tokens = b->tokens;
  int64_t wait;

  if (now_us > b->last_us)
    tokens += (double)(now_us - b->last_us) * b->rate / 1e6;
  if (tokens >= 1) return now_us;
  wait = (int64_t)ceil((1 - tokens) * 1e6 / b->rate);  /* <= 1000 s */
  return now_us > INT64_MAX - wait ? INT64_MAX : now_us + wait;
}

size_t swit__limit_room(size_t n, size_t tokens, int64_t cap,
                        int64_t admitted)
{
  if (tokens < n) n = tokens;
  if (cap > 0) {
    int64_t room = admitted >= cap ? 0 : cap - admitted;
    if ((uint64_t)room < n) n = (size_t)room;
  }
  return n;
}

/* ------------------------------------------------------------------ */
/* The limits of a subscription */

typedef struct sub_limit {
  swit__sub *sub;
  int has_rate;
  int64_t cap;                /* 0: no concurrency cap */
  pthread_mutex_t order;      /* held by whoever routes: the sink, the pump */
  pthread_mutex_t lock;       /* everything below */
  swit__bucket bucket;
  int64_t admitted;           /* routed to the workers, not yet settled */
  swit_delivery *ring;        /* held, oldest first from head */
  size_t rcap, head, n;
  int paused;                 /* holds one count of paused_by */
  atomic_size_t nheld;        /* n, read without the lock */
  atomic_uint_fast64_t rate_pauses, cap_pauses;   /* metrics */
} sub_limit;

struct swit__limits {
  swit__resil *r;
  sub_limit *_Atomic lim[SWIT__MAX_SUBS + 1];   /* NULL: not looked at */
  atomic_uint maxsub;
  pthread_mutex_t mu;         /* creation */
  swit__rtimer pump;
  int oom_logged;             /* under mu */
};

/* A subscription without limits. */
static sub_limit no_limit;
#define NONE (&no_limit)

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
      int64_t now = (int64_t)swit__now_us();
      if (n) {
        n->sub = sub;
        n->cap = s->concurrency;
        n->has_rate = s->rate_limit.rate > 0 &&
                      swit__bucket_init(&n->bucket, s->rate_limit.rate,
                                        (double)s->rate_limit.burst, now) == 0;
        pthread_mutex_init(&n->order, NULL);
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

/* Under l->lock: how many of n may be routed now (taken from the bucket
 * and counted as admitted); *by_cap: the cap is what stops the rest. */
static size_t admit(sub_limit *l, int64_t now_us, size_t n, int *by_cap)
{
  size_t want = swit__limit_room(n, SIZE_MAX, l->cap, l->admitted);
  size_t k = l->has_rate ? swit__bucket_take(&l->bucket, now_us, want) : want;

  *by_cap = want < n && k == want;
  l->admitted += (int64_t)k;
  return k;
}

/* Under l->lock: room for `more` held messages; 0 or -1. */
static int reserve(sub_limit *l, size_t more)
{
  size_t cap = l->rcap ? l->rcap : 64;
  swit_delivery *r;

  if (l->n + more <= l->rcap) return 0;
  while (cap < l->n + more) cap *= 2;
  if (!(r = malloc(cap * sizeof *r))) return -1;
  for (size_t i = 0; i < l->n; i++)
    r[i] = l->ring[(l->head + i) % l->rcap];
  free(l->ring);
  l->ring = r;
  l->rcap = cap;
  l->head = 0;
  return 0;
}

static void hold(sub_limit *l, const swit_delivery *d, size_t n)
{
  for (size_t i = 0; i < n; i++)
    l->ring[(l->head + l->n + i) % l->rcap] = d[i];
  l->n += n;
  atomic_store(&l->nheld, l->n);
}

static void unhold(sub_limit *l, swit_delivery *out, size_t k)
{
  for (size_t i = 0; i < k; i++)
    out[i] = l->ring[(l->head + i) % l->rcap];
  l->head = (l->head + k) % l->rcap;
  l->n -= k;
  atomic_store(&l->nheld, l->n);
}

/* Under l->lock: paused exactly while something is held. */
static void sync_pause(sub_limit *l)
{
  int want = l->n > 0;

  if (want == l->paused) return;
  l->paused = want;
  atomic_fetch_add(&l->sub->paused_by, want ? 1 : -1);
  swit__sub_reconcile_pause(l->sub);
}

/* ------------------------------------------------------------------ */
/* The interceptor */

static int l_intake(void *hs, swit__sub *sub, const swit_delivery *d,
                    size_t n)
{
  struct swit__limits *lm = hs;
  sub_limit *l = limit_of(lm, sub);
  size_t k = 0;
  int by_cap = 0, began = 0, oom = 0;

  if (l == NONE) return 0;
  pthread_mutex_lock(&l->order);
  pthread_mutex_lock(&l->lock);
  if (l->n == 0) k = admit(l, (int64_t)swit__now_us(), n, &by_cap);
  if (k < n && reserve(l, n - k) != 0) {
    l->admitted += (int64_t)(n - k);     /* cannot hold: let them in */
    k = n;
    oom = 1;
  }
  if (k < n) {
    began = !l->paused;
    if (began)
      atomic_fetch_add(by_cap ? &l->cap_pauses : &l->rate_pauses, 1);
    hold(l, d + k, n - k);
    sync_pause(l);
  }
  pthread_mutex_unlock(&l->lock);
  if (k) swit__dispatch_route(sub, d, k);
  pthread_mutex_unlock(&l->order);
  if (began) swit__rtimer_kick(&lm->pump);
  if (oom)
    swit__log(&lm->r->host->log, SWIT_LOG_ERROR, "out of memory holding "
              "messages of '%s' over its intake limits: %zu let in past them",
              sub->topic, n);
  return 1;
}

static void l_released(void *hs, swit__sub *sub, size_t n)
{
  struct swit__limits *lm = hs;
  sub_limit *l = atomic_load_explicit(&lm->lim[sub->id],
                                      memory_order_acquire);
  int wake;

  if (!l || l == NONE) return;
  pthread_mutex_lock(&l->lock);
  l->admitted -= (int64_t)n;
  if (l->admitted < 0) l->admitted = 0;
  wake = l->n > 0 && l->cap > 0;
  pthread_mutex_unlock(&l->lock);
  if (wake) swit__rtimer_kick(&lm->pump);
}

static const swit__icpt_ops limit_ops = {
  .name = "limit",
  .intake = l_intake,
  .released = l_released,
};

/* ------------------------------------------------------------------ */
/* The pump: routes held messages as the limits allow */

/* The adapter will not take them back through the workers any more: the
 * subscription is gone or the stop halted the workers. */
static int routing_over(const swit__sub *sub)
{
  swit_host_t *h = sub->host;

  return !atomic_load(&((swit__sub *)sub)->subscribed) ||
         (h->nworkers &&
          __atomic_load_n(&h->workers[0].ffi.stop, __ATOMIC_RELAXED));
}

static void give_back(swit__sub *sub, const swit_delivery *d, size_t k)
{
  swit_host_t *h = sub->host;

  for (size_t i = 0; i < k; i++) {
    swit_settle s = {d[i].token, SWIT_SETTLE_REQUEUE};
    h->ops->settle(h->broker, sub->handle, &s, 1);
  }
  atomic_fetch_sub(&sub->inflight, (int_fast64_t)k);
  atomic_fetch_sub(&h->inflight, (int_fast64_t)k);
}

/* Route what l may route now; when to look again (us), or -1. */
static int64_t pump_one(sub_limit *l, int64_t now_us)
{
  swit_delivery batch[PUMP_CHUNK];
  int64_t due = -1;

  pthread_mutex_lock(&l->order);
  for (;;) {
    size_t k;
    int by_cap, over = routing_over(l->sub);

    pthread_mutex_lock(&l->lock);
    k = l->n < PUMP_CHUNK ? l->n : PUMP_CHUNK;
    if (!over) k = admit(l, now_us, k, &by_cap);
    if (k == 0) {
      if (l->n && l->has_rate && (l->cap == 0 || l->admitted < l->cap))
        due = swit__bucket_due(&l->bucket, now_us);
      sync_pause(l);
      pthread_mutex_unlock(&l->lock);
      break;
    }
    unhold(l, batch, k);
    pthread_mutex_unlock(&l->lock);
    if (over)
      give_back(l->sub, batch, k);
    else
      swit__dispatch_route(l->sub, batch, k);
    now_us = (int64_t)swit__now_us();
  }
  pthread_mutex_unlock(&l->order);
  return due;
}

static int64_t pump_scan(void *ud, int64_t now_us)
{
  struct swit__limits *lm = ud;
  uint32_t max = atomic_load(&lm->maxsub);
  int64_t next = -1;

  for (uint32_t id = 1; id <= max; id++) {
    sub_limit *l = atomic_load(&lm->lim[id]);
    int64_t due;
    if (!l || l == NONE || atomic_load(&l->nheld) == 0) continue;
    due = pump_one(l, now_us);
    if (due >= 0 && (next < 0 || due < next)) next = due;
  }
  return next;
}

/* ------------------------------------------------------------------ */
/* Lifecycle */

int swit__limit_register(swit_host_t *h, char *err, size_t errlen)
{
  const swit_cfg_named *subs = &h->cfg->messaging.subscribers;
  swit__resil *r = h->resil;
  struct swit__limits *lm;
  int any = 0, k;

  for (size_t i = 0; i < subs->n; i++) {
    const swit_cfg_subscriber *s =
        (const swit_cfg_subscriber *)subs->elems + i;
    swit__bucket b;
    if (s->rate_limit.rate > 0 &&
        swit__bucket_init(&b, s->rate_limit.rate, (double)s->rate_limit.burst,
                          0) != 0) {
      snprintf(err, errlen, "%s: messaging.subscribers.%s.rate_limit: rate "
               "must be in 0.001..1000000 and burst in 1..1000000",
               h->cfg->path, subs->names[i]);
      return SWIT_E_CONFIG;
    }
    any |= s->rate_limit.rate > 0 || s->concurrency > 0;
  }
  if (!any) return 0;
  if (!(lm = calloc(1, sizeof *lm))) return SWIT_E_NOMEM;
  lm->r = r;
  pthread_mutex_init(&lm->mu, NULL);
  swit__rtimer_init(&lm->pump);
  r->limits = lm;
  if ((k = swit__icpt_add(h, &limit_ops, lm)) < 0) return k;
  if (swit__rtimer_start(&lm->pump, pump_scan, lm) != 0) {
    snprintf(err, errlen, "cannot start the intake limits' thread");
    return SWIT_E_NOMEM;
  }
  return 0;
}

void swit__limit_free(swit__resil *r)
{
  struct swit__limits *lm = r->limits;

  if (!lm) return;
  swit__rtimer_destroy(&lm->pump);
  for (size_t id = 1; id <= SWIT__MAX_SUBS; id++) {
    sub_limit *l = atomic_load(&lm->lim[id]);
    if (!l || l == NONE) continue;
    while (l->n > 0) {                   /* a stop that did not drain */
      swit_delivery batch[PUMP_CHUNK];
      size_t k = l->n < PUMP_CHUNK ? l->n : PUMP_CHUNK;
      unhold(l, batch, k);
      give_back(l->sub, batch, k);
    }
    free(l->ring);
    pthread_mutex_destroy(&l->lock);
    pthread_mutex_destroy(&l->order);
    free(l);
  }
  pthread_mutex_destroy(&lm->mu);
  free(lm);
  r->limits = NULL;
}

size_t swit__limit_held(swit_host_t *h, const swit__sub *sub)
{
  struct swit__limits *lm = h->resil ? h->resil->limits : NULL;
  sub_limit *l = lm ? atomic_load(&lm->lim[sub->id]) : NULL;

  return l && l != NONE ? atomic_load(&l->nheld) : 0;
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
      if (by == 0 ? !l->has_rate : l->cap <= 0) continue;
      swit__buf_add(b, "swit_intake_pauses_total", 24);
      swit__resil_labels(b, l->sub);
      swit__buf_printf(b, ",by=\"%s\"} %llu\n",
                       by == 0 ? "rate_limit" : "concurrency",
                       (unsigned long long)atomic_load(
                           by == 0 ? &l->rate_pauses : &l->cap_pauses));
    }
  }
  swit__buf_printf(b, "# HELP swit_intake_held Messages taken from the "
                   "broker and held by an intake limit, not yet routed to "
                   "a worker\n# TYPE swit_intake_held gauge\n");
  for (uint32_t id = 1; id <= max; id++) {
    sub_limit *l = atomic_load(&lm->lim[id]);
    if (!l || l == NONE) continue;
    swit__buf_add(b, "swit_intake_held", 16);
    swit__resil_labels(b, l->sub);
    swit__buf_printf(b, "} %zu\n", atomic_load(&l->nheld));
  }
  return b->data ? 0 : SWIT_E_NOMEM;
}
