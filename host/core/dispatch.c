/*
 * dispatch.c - the dispatcher: the sink adapters deliver into. Runs on
 * the adapter's thread(s). Picks a worker for each message, pushes the
 * messages to worker queues in runs (one lock per run), and pauses a
 * subscription at the adapter when a queue reaches high-water.
 *
 * Worker choice by the subscription's ordering:
 *   key  - hash of the message key, else the broker's partition hint,
 *          else round-robin: the same key always lands on the same worker,
 *          in arrival order, while different keys run in parallel;
 *   partition - the broker's partition hint only (strict partition order);
 *   none - round-robin.
 *
 * Pause/resume: a counter per subscription of queues above high-water,
 * reconciled with the adapter's state under a per-subscription mutex.
 * Whatever order the increments and decrements from different threads
 * arrive in, the adapter ends paused exactly when some queue still holds
 * it paused.
 */
#include <string.h>

#include "core/host_int.h"

#define SINK_CHUNK 256

uint32_t swit__key_hash(const char *key, size_t len)
{
  uint32_t h = 2166136261u; /* FNV-1a */
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)key[i];
    h *= 16777619u;
  }
  return h;
}

void swit__sub_reconcile_pause(swit__sub *sub)
{
  swit_host_t *h = sub->host;
  int want;

  pthread_mutex_lock(&sub->pause_lock);
  want = atomic_load(&sub->paused_by) > 0;
  if (want != sub->adapter_paused && atomic_load(&sub->subscribed)) {
    if (want)
      h->ops->pause(h->broker, sub->handle);
    else
      h->ops->resume(h->broker, sub->handle);
    sub->adapter_paused = want;
    if (want) atomic_fetch_add(&sub->pauses, 1);  /* read by /metrics */
    swit__log(&h->log, SWIT_LOG_DEBUG, "%s '%s' (group %s): worker queues %s",
              want ? "paused" : "resumed", sub->topic, sub->group,
              want ? "full" : "drained");
  }
  pthread_mutex_unlock(&sub->pause_lock);
}

/* Keyed and partitioned messages go to their worker whatever it does
 * (order); the others round-robin over the workers that are not stuck
 * past lua.limits.handler_timeout (watchdog.c), or over all if all are. */
static uint32_t pick_worker(swit_host_t *h, swit__sub *sub,
                            const swit_msg_view *m, uint32_t nworkers,
                            uint32_t *rr)
{
  uint32_t w;

  if (sub->ordering == SWIT_ORDER_KEY && m->key_len)
    return swit__key_hash(m->key, m->key_len) % nworkers;
  if (sub->ordering != SWIT_ORDER_NONE && m->partition >= 0)
    return (uint32_t)m->partition % nworkers;
  w = (*rr)++ % nworkers;
  for (uint32_t k = 1; k < nworkers &&
       atomic_load_explicit(&h->workers[w].stuck, memory_order_relaxed); k++)
    w = (*rr)++ % nworkers;
  return w;
}

static void push_run(swit_host_t *h, swit__sub *sub, uint32_t w,
                     const swit__item *items, size_t n)
{
  if (swit__queue_push(&h->workers[w].q, sub, items, n)) {
    atomic_fetch_add(&sub->paused_by, 1);
    swit__sub_reconcile_pause(sub);
  }
}

/* Route one chunk: compute each message's worker, then push each
 * worker's messages (in their original order) with one lock. */
static void route_chunk(swit_host_t *h, swit__sub *sub,
                        const swit_delivery *d, size_t n)
{
  swit__item items[SINK_CHUNK], run[SINK_CHUNK];
  uint32_t target[SINK_CHUNK];
  uint8_t done[SINK_CHUNK];
  uint32_t nw = (uint32_t)h->nworkers;
  uint32_t rr = atomic_fetch_add(&sub->rr, (unsigned)n);
  uint32_t now32 = h->icpt.recv_time ? (uint32_t)swit__now_us() : 0;

  for (size_t i = 0; i < n; i++) {
    items[i] = (swit__item){.msg = d[i].msg, .token = d[i].token,
                            .sub = sub, .reject = d[i].reject,
                            .attempt = 1, .recv_us = now32};
    target[i] = nw == 1 ? 0 : pick_worker(h, sub, d[i].msg, nw, &rr);
  }
  if (nw == 1) {
    push_run(h, sub, 0, items, n);
    return;
  }
  memset(done, 0, n);
  for (size_t i = 0; i < n; i++) {
    size_t k = 0;
    if (done[i]) continue;
    for (size_t j = i; j < n; j++) {
      if (done[j] || target[j] != target[i]) continue;
      run[k++] = items[j];
      done[j] = 1;
    }
    push_run(h, sub, target[i], run, k);
  }
}

void swit__dispatch_sink(void *ud, const swit_delivery *d, size_t n)
{
  swit__sub *sub = ud;
  swit_host_t *h = sub->host;

  atomic_fetch_add(&sub->inflight, (int_fast64_t)n);
  atomic_fetch_add(&h->inflight, (int_fast64_t)n);
  atomic_store(&h->last_activity_ms, swit__now_ms());
  if (h->icpt.any_intake && swit__icpt_intake(h, sub, d, n))
    return;                   /* an intake limit routes them (resil/limit.c) */
  swit__dispatch_route(sub, d, n);
}

void swit__dispatch_route(swit__sub *sub, const swit_delivery *d, size_t n)
{
  swit_host_t *h = sub->host;

  while (n > 0) {
    size_t k = n < SINK_CHUNK ? n : SINK_CHUNK;
    route_chunk(h, sub, d, k);
    d += k;
    n -= k;
  }
}
