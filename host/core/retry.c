/*
 * retry.c - a worker's retry heap and the backoff policy.
 *
 * A message whose handler asked for a retry stays unsettled (the adapter
 * keeps its memory) and waits here, on the worker that ran it, until its
 * backoff has passed; the worker then runs it again in a later batch.
 * Only that worker touches its heap. Retries do not hold back later
 * messages of the same key (see docs/architecture.md, "Retries").
 */
#include <math.h>
#include <stdlib.h>

#include "core/host_int.h"

static void swap(swit__retry *a, swit__retry *b)
{
  swit__retry t = *a;
  *a = *b;
  *b = t;
}

int swit__retry_push(swit__retry_heap *h, const swit__retry *r)
{
  size_t i;

  if (h->n == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 64;
    swit__retry *v = realloc(h->v, cap * sizeof *v);
    if (!v) return SWIT_E_NOMEM;
    h->v = v;
    h->cap = cap;
  }
  i = h->n++;
  h->v[i] = *r;
  while (i > 0 && h->v[(i - 1) / 2].due_ms > h->v[i].due_ms) {
    swap(&h->v[(i - 1) / 2], &h->v[i]);
    i = (i - 1) / 2;
  }
  return 0;
}

int swit__retry_pop_due(swit__retry_heap *h, int64_t now_ms, swit__retry *out)
{
  size_t i = 0;

  if (h->n == 0 || h->v[0].due_ms > now_ms) return 0;
  *out = h->v[0];
  h->v[0] = h->v[--h->n];
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < h->n && h->v[l].due_ms < h->v[m].due_ms) m = l;
    if (r < h->n && h->v[r].due_ms < h->v[m].due_ms) m = r;
    if (m == i) break;
    swap(&h->v[i], &h->v[m]);
    i = m;
  }
  return 1;
}

int64_t swit__retry_next_due(const swit__retry_heap *h)
{
  return h->n ? h->v[0].due_ms : -1;
}

void swit__retry_free(swit__retry_heap *h)
{
  for (size_t i = 0; i < h->n; i++) free(h->v[i].dlq_reason);
  free(h->v);
  h->v = NULL;
  h->n = h->cap = 0;
}

static double next_unit(uint64_t *s) /* xorshift64*, in [0, 1) */
{
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return (double)((x * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

/* Delay before attempt `attempt + 1`: retry_delay * multiplier^(attempt-1),
 * capped at retry_max_delay, then spread by +/- retry_jitter. */
int64_t swit__retry_backoff_ms(const swit_cfg_subscriber *s, uint32_t attempt,
                               uint64_t *rng)
{
  double d = (double)s->retry_delay_ms;
  double cap = (double)s->retry_max_delay_ms;

  for (uint32_t i = 1; i < attempt && d < cap; i++) d *= s->retry_multiplier;
  if (d > cap) d = cap;
  d *= 1.0 + s->retry_jitter * (2.0 * next_unit(rng) - 1.0);
  return d < 0 ? 0 : (int64_t)llround(d);
}
