/*
 * queue.c - a worker's bounded input queue: a ring of swit__item with one
 * mutex, filled by adapter threads (through dispatch.c) and drained in
 * batches by its one worker thread.
 *
 * Backpressure: when a push leaves the queue at or above `high`, the
 * pushed subscription is marked paused *by this queue* and the caller
 * pauses it at the adapter; when a pop leaves it at or below `low`, every
 * subscription this queue paused is handed back to the worker to resume.
 * Adapters stop soon after a pause but may deliver a little more, so the
 * ring has slack above `high`; if even that fills, the producer waits
 * (never drops). Locks are taken once per batch, never per message, and
 * condition variables are signalled only when somebody waits.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/host_int.h"

/* Critical sections here are a few memcpy's long: an adaptive mutex spins
 * briefly before sleeping, which avoids a futex round trip per batch when
 * a producer and the worker meet. */
void swit__mutex_init_fast(pthread_mutex_t *m)
{
  pthread_mutexattr_t ma;
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
  pthread_mutex_init(m, &ma);
  pthread_mutexattr_destroy(&ma);
}

int swit__queue_init(swit__queue *q, uint32_t cap, uint32_t high,
                     uint32_t low)
{
  memset(q, 0, sizeof *q);
  q->ring = calloc(cap, sizeof *q->ring);
  q->paused = calloc(SWIT__MAX_SUBS + 1, 1);
  if (!q->ring || !q->paused) goto fail;
  q->cap = cap;
  q->high = high;
  q->low = low;
  swit__mutex_init_fast(&q->lock);
  swit__cond_init_monotonic(&q->not_empty);
  pthread_cond_init(&q->not_full, NULL);
  return 0;
fail:
  free(q->ring);
  free(q->paused);
  q->ring = NULL;
  q->paused = NULL;
  return SWIT_E_NOMEM;
}

void swit__queue_destroy(swit__queue *q)
{
  if (!q->ring) return;
  pthread_mutex_destroy(&q->lock);
  pthread_cond_destroy(&q->not_empty);
  pthread_cond_destroy(&q->not_full);
  free(q->ring);
  free(q->paused);
  q->ring = NULL;
  q->paused = NULL;
}

/* Copy n items into the ring at its tail; caller holds the lock and has
 * checked there is room. */
static void ring_put(swit__queue *q, const swit__item *items, uint32_t n)
{
  uint32_t tail = (q->head + q->count) % q->cap;
  uint32_t first = q->cap - tail < n ? q->cap - tail : n;

  memcpy(q->ring + tail, items, first * sizeof *items);
  memcpy(q->ring, items + first, (n - first) * sizeof *items);
  q->count += n;
}

static void ring_take(swit__queue *q, swit__item *out, uint32_t n)
{
  uint32_t first = q->cap - q->head < n ? q->cap - q->head : n;

  memcpy(out, q->ring + q->head, first * sizeof *out);
  memcpy(out + first, q->ring, (n - first) * sizeof *out);
  q->head = (q->head + n) % q->cap;
  q->count -= n;
}

int swit__queue_push(swit__queue *q, const swit__sub *sub,
                     const swit__item *items, size_t n)
{
  int newly_paused = 0;

  pthread_mutex_lock(&q->lock);
  while (n > 0) {
    uint32_t room, k;

    while (q->count == q->cap) {
      q->producers_waiting++;
      pthread_cond_wait(&q->not_full, &q->lock);
      q->producers_waiting--;
    }
    room = q->cap - q->count;
    k = n < room ? (uint32_t)n : room;
    ring_put(q, items, k);
    items += k;
    n -= k;
    if (q->consumer_waiting) pthread_cond_signal(&q->not_empty);
  }
  if (q->count >= q->high && !q->paused[sub->id]) {
    q->paused[sub->id] = 1;
    q->npaused++;
    newly_paused = 1;
  }
  pthread_mutex_unlock(&q->lock);
  return newly_paused;
}

static int wait_until(swit__queue *q, int64_t deadline_ms)
{
  swit__deadline d = {deadline_ms < 0 ? INT64_MAX : deadline_ms};
  return swit__cond_wait_until(&q->not_empty, &q->lock, d);
}

size_t swit__queue_pop(swit__queue *q, swit__item *out, size_t max,
                       int64_t deadline_ms, uint32_t *resumed,
                       size_t *nresumed)
{
  uint32_t k;

  *nresumed = 0;
  pthread_mutex_lock(&q->lock);
  while (q->count == 0 && !q->closed && !q->kicked && deadline_ms != 0) {
    int rc;
    q->consumer_waiting = 1;
    rc = wait_until(q, deadline_ms);
    q->consumer_waiting = 0;
    if (rc == ETIMEDOUT) break;
  }
  q->kicked = 0;
  k = q->count < max ? q->count : (uint32_t)max;
  ring_take(q, out, k);
  if (k && q->producers_waiting) pthread_cond_broadcast(&q->not_full);
  if (q->npaused && q->count <= q->low) {
    for (uint32_t i = 1; i <= SWIT__MAX_SUBS && *nresumed < q->npaused; i++) {
      if (!q->paused[i]) continue;
      q->paused[i] = 0;
      resumed[(*nresumed)++] = i;
    }
    q->npaused = 0;
  }
  pthread_mutex_unlock(&q->lock);
  return k;
}

void swit__queue_kick(swit__queue *q)
{
  pthread_mutex_lock(&q->lock);
  q->kicked = 1;
  pthread_cond_signal(&q->not_empty);
  pthread_mutex_unlock(&q->lock);
}

void swit__queue_close(swit__queue *q)
{
  pthread_mutex_lock(&q->lock);
  q->closed = 1;
  pthread_cond_broadcast(&q->not_empty);
  pthread_mutex_unlock(&q->lock);
}

int swit__queue_closed(swit__queue *q)
{
  int c;
  pthread_mutex_lock(&q->lock);
  c = q->closed;
  pthread_mutex_unlock(&q->lock);
  return c;
}

/* Take everything left, for requeueing at shutdown. */
size_t swit__queue_take_all(swit__queue *q, swit__item *out, size_t max)
{
  uint32_t k;
  pthread_mutex_lock(&q->lock);
  k = q->count < max ? q->count : (uint32_t)max;
  ring_take(q, out, k);
  if (k && q->producers_waiting) pthread_cond_broadcast(&q->not_full);
  pthread_mutex_unlock(&q->lock);
  return k;
}

uint32_t swit__queue_depth(swit__queue *q)
{
  uint32_t n;
  pthread_mutex_lock(&q->lock);
  n = q->count;
  pthread_mutex_unlock(&q->lock);
  return n;
}
