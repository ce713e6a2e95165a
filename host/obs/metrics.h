/*
 * metrics.h - the host's counters for /metrics: per-worker blocks written
 * by one thread each and summed at scrape time (metrics.c), plus the
 * shared registry of Lua-defined metrics (swit.metrics, metrics_lua.c).
 *
 * Hot-path rule: a worker only ever writes its own blocks, with relaxed
 * load + store (no read-modify-write, no lock, no shared cache line);
 * the scraper (the admin thread) reads them with relaxed loads. A block
 * is allocated the first time a worker counts for a subscription or a
 * topic, never per message. Non-worker threads (embedders, the ingress)
 * count publishes in one shared block under a mutex.
 */
#ifndef SWIT_METRICS_H
#define SWIT_METRICS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

typedef _Atomic uint64_t swit__ctr;

/* Add on a counter only one thread writes. */
static inline void swit__ctr_add(swit__ctr *c, uint64_t n)
{
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                        memory_order_relaxed);
}

static inline uint64_t swit__ctr_get(swit__ctr *c)
{
  return atomic_load_explicit(c, memory_order_relaxed);
}

/* A histogram with fixed bounds: b[i] counts values <= bounds[i] (and
 * above bounds[i-1]); count - sum(b) is the +Inf bucket. */
#define SWIT__HIST_N 16
typedef struct swit__hist {
  swit__ctr b[SWIT__HIST_N];
  swit__ctr count;
  swit__ctr sum;        /* microseconds, or items for size histograms */
} swit__hist;

extern const uint64_t swit__lat_bounds_us[SWIT__HIST_N];
extern const uint64_t swit__size_bounds[SWIT__HIST_N];

static inline void swit__hist_add(swit__hist *h, const uint64_t *bounds,
                                  uint64_t v, uint64_t n)
{
  for (int i = 0; i < SWIT__HIST_N; i++) {
    if (v <= bounds[i]) {
      swit__ctr_add(&h->b[i], n);
      break;
    }
  }
  swit__ctr_add(&h->count, n);
  swit__ctr_add(&h->sum, v * n);
}

/* One worker's counts for one subscription. */
typedef struct swit__sub_stats {
  swit__ctr consumed;       /* handler attempts finished, any result */
  swit__ctr errors;         /* of which not acked */
  swit__ctr retried;        /* retries scheduled */
  swit__ctr rejected;       /* swit.reject / SWIT_REJECT (and adapter refusals) */
  swit__ctr fatal;
  swit__ctr dead_lettered;  /* dead-letter publishes confirmed */
  swit__hist consume;       /* receipt by the host -> settled, us */
  swit__hist handler;       /* handler time per message, us */
} swit__sub_stats;

/* Publishes to one topic, from one thread. */
typedef struct swit__pub_entry {
  char *topic;
  uint32_t hash;
  swit__ctr published;
  swit__ctr errors;
  swit__hist latency;       /* the adapter's publish call, us */
  swit__hist batch;         /* messages per publish call */
} swit__pub_entry;

/* A thread's publish counts: up to SWIT__PUB_TOPICS topics by name, the
 * rest under topic "_other". */
#define SWIT__PUB_TOPICS 64
typedef struct swit__pub_stats {
  _Atomic(swit__pub_entry *) e[SWIT__PUB_TOPICS];
  swit__pub_entry other;
} swit__pub_stats;

/* Per worker: the metrics interceptor's worker state. */
typedef struct swit__wstats {
  _Atomic(swit__sub_stats *) *subs; /* [SWIT__MAX_SUBS + 1], by sub id */
  swit__pub_stats pub;
  swit__hist batch;                 /* messages per worker batch */
  _Atomic(double *) umet;           /* Lua metrics slots, or NULL */
} swit__wstats;


#endif /* SWIT_METRICS_H */
