/*
 * metrics_lua.c - swit.metrics: counters, gauges and histograms that Lua
 * handlers define, exported on /metrics beside the host's own.
 *
 * A series (name + rendered labels) is registered once per host, from any
 * worker's state (a reload registers the same names again and gets the
 * same slots). Registration takes the registry mutex; it is the slow path
 * (lua/swit caches the slot per series). Counters and histograms live in
 * per-worker slot arrays (one writer each, summed at scrape); gauges live
 * in one shared array (last write wins; add is a CAS loop), so a gauge
 * is best set from timers or rarely.
 *
 * Telemetry never fails business logic: a series past the SLOTS cap is
 * not registered (SWIT_E_FULL; lua/swit/metrics.lua then hands out a
 * series whose updates do nothing), counted in
 * swit_metric_series_dropped_total and warned about once per host.
 * HELP text is escaped at render (swit__buf_prom); label values arrive
 * rendered and escaped by lua/swit/metrics.lua, NUL refused.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obs/obs.h"

#define SLOTS 8192   /* per worker, shared by every series */

enum { T_COUNTER = SWIT_METRIC_COUNTER, T_GAUGE = SWIT_METRIC_GAUGE,
       T_HISTOGRAM = SWIT_METRIC_HISTOGRAM };

typedef struct series {
  char *name, *help, *labels;
  int type;
  uint32_t slot, nb;
  double bounds[SWIT_METRIC_MAX_BUCKETS];
} series;

struct swit__umetrics {
  pthread_mutex_t lock;
  series *v;
  size_t n, cap;
  uint32_t next_slot;
  int warned_full;              /* the one warning of a full registry */
  _Atomic double gauges[SLOTS];
};

static int valid_name(const char *s, size_t len)
{
  if (len == 0 || len > 200) return 0;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
             c == ':' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return 0;
  }
  return !(len >= 5 && memcmp(s, "swit_", 5) == 0);
}

int swit__umetrics_new(swit_host_t *h)
{
  struct swit__umetrics *u = calloc(1, sizeof *u);

  if (!u) return SWIT_E_NOMEM;
  pthread_mutex_init(&u->lock, NULL);
  h->obs->umet = u;
  return 0;
}

/* Every worker gets its slot array the first time any series exists. */
static int worker_slots(swit_host_t *h)
{
  for (size_t i = 0; i < h->nworkers; i++) {
    swit__wstats *st = swit__wstats_of(&h->workers[i]);
    double *d;
    if (!st || atomic_load(&st->umet)) continue;
    if (!(d = calloc(SLOTS, sizeof *d))) return SWIT_E_NOMEM;
    atomic_store(&st->umet, d);
  }
  return 0;
}

static series *find(struct swit__umetrics *u, const char *name, size_t nlen,
                    const char *labels, size_t llen, int *name_seen)
{
  for (size_t i = 0; i < u->n; i++) {
    series *s = &u->v[i];
    if (strlen(s->name) != nlen || memcmp(s->name, name, nlen)) continue;
    *name_seen = i + 1;
    if (strlen(s->labels) == llen && !memcmp(s->labels, labels, llen))
      return s;
  }
  return NULL;
}

int swit__umetric_register(swit_host_t *h, int type, const char *name,
                           size_t nlen, const char *help, size_t hlen,
                           const char *labels, size_t llen,
                           const double *bounds, uint32_t nb)
{
  struct swit__umetrics *u;
  int seen = 0, rc;
  uint32_t need = type == T_HISTOGRAM ? nb + 2 : 1;
  series *s;

  if (!valid_name(name, nlen) || type < T_COUNTER || type > T_HISTOGRAM ||
      nb > SWIT_METRIC_MAX_BUCKETS || memchr(help, 0, hlen) ||
      memchr(labels, 0, llen))
    return SWIT_E_INVAL;
  if (!(u = h->obs->umet)) return SWIT_E_NOMEM;
  pthread_mutex_lock(&u->lock);
  s = find(u, name, nlen, labels, llen, &seen);
  if (s || (seen && u->v[seen - 1].type != type)) {
    rc = s && s->type == type ? (int)s->slot : SWIT_E_EXISTS;
    goto out;
  }
  rc = SWIT_E_FULL;
  if (u->next_slot + need > SLOTS) {
    swit__ctr_add(&h->obs->series_dropped, 1);
    if (!u->warned_full++)
      swit__log(&h->log, SWIT_LOG_WARN, "swit.metrics: the series cap (%d "
                "slots) is reached; new series are dropped (counted in "
                "swit_metric_series_dropped_total), this is said once",
                SLOTS);
    goto out;
  }
  rc = SWIT_E_NOMEM;
  if (worker_slots(h)) goto out;
  if (u->n == u->cap) {
    size_t cap = u->cap ? u->cap * 2 : 16;
    series *v = realloc(u->v, cap * sizeof *v);
    if (!v) goto out;
    u->v = v;
    u->cap = cap;
  }
  s = &u->v[u->n];
  memset(s, 0, sizeof *s);
  s->name = strndup(name, nlen);
  s->help = strndup(help, hlen);
  s->labels = strndup(labels, llen);
  if (!s->name || !s->help || !s->labels) {
    free(s->name), free(s->help), free(s->labels);
    goto out;
  }
  s->type = type;
  s->nb = type == T_HISTOGRAM ? nb : 0;
  for (uint32_t i = 0; i < s->nb; i++) s->bounds[i] = bounds[i];
  s->slot = u->next_slot;
  u->next_slot += need;
  u->n++;
  rc = (int)s->slot;
out:
  pthread_mutex_unlock(&u->lock);
  return rc;
}

void swit__umetric_gauge(swit_host_t *h, uint32_t slot, double v, int add)
{
  struct swit__umetrics *u = h->obs->umet;
  _Atomic double *g;
  double old;

  if (!u || slot >= SLOTS) return;
  g = &u->gauges[slot];
  if (!add) {
    atomic_store_explicit(g, v, memory_order_relaxed);
    return;
  }
  old = atomic_load_explicit(g, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(g, &old, old + v,
                                                memory_order_relaxed,
                                                memory_order_relaxed)) {}
}

/* ------------------------------------------------------------------ */

static double slot_sum(swit_host_t *h, uint32_t slot)
{
  double t = 0;
  for (size_t i = 0; i < h->nworkers; i++) {
    swit__wstats *st = swit__wstats_of(&h->workers[i]);
    double *d = st ? atomic_load(&st->umet) : NULL;
    double v;
    if (!d) continue;
    __atomic_load(&d[slot], &v, __ATOMIC_RELAXED);
    t += v;
  }
  return t;
}

static void series_out(swit_host_t *h, swit__buf *b, const series *s,
                       struct swit__umetrics *u)
{
  const char *l = s->labels, *sep = l[0] ? "," : "";
  const char *o = l[0] ? "{" : "", *c = l[0] ? "}" : "";
  double cum = 0;

  if (s->type == T_GAUGE) {
    swit__buf_printf(b, "%s%s%s%s %.17g\n", s->name, o, l, c,
                     atomic_load_explicit(&u->gauges[s->slot],
                                          memory_order_relaxed));
    return;
  }
  if (s->type == T_COUNTER) {
    swit__buf_printf(b, "%s%s%s%s %.17g\n", s->name, o, l, c,
                     slot_sum(h, s->slot));
    return;
  }
  for (uint32_t i = 0; i < s->nb; i++) {
    cum += slot_sum(h, s->slot + i);
    swit__buf_printf(b, "%s_bucket{%s%sle=\"%g\"} %.17g\n", s->name, l, sep,
                     s->bounds[i], cum);
  }
  cum += slot_sum(h, s->slot + s->nb);
  swit__buf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %.17g\n", s->name, l, sep,
                   cum);
  swit__buf_printf(b, "%s_sum%s%s%s %.17g\n%s_count%s%s%s %.17g\n", s->name,
                   o, l, c, slot_sum(h, s->slot + s->nb + 1), s->name, o, l,
                   c, cum);
}

int swit__umetrics_render(swit_host_t *h, swit__buf *b)
{
  static const char *const types[] = {"counter", "gauge", "histogram"};
  struct swit__umetrics *u = h->obs->umet;

  if (!u) return 0;
  pthread_mutex_lock(&u->lock);
  for (size_t i = 0; i < u->n; i++) {
    int first = 1;
    for (size_t j = 0; j < i && first; j++)
      first = strcmp(u->v[j].name, u->v[i].name) != 0;
    if (!first) continue;
    swit__buf_printf(b, "# HELP %s ", u->v[i].name);
    if (u->v[i].help[0])
      swit__buf_prom(b, u->v[i].help, strlen(u->v[i].help), 0);
    else
      swit__buf_add(b, "(swit.metrics)", 14);
    swit__buf_printf(b, "\n# TYPE %s %s\n", u->v[i].name,
                     types[u->v[i].type]);
    for (size_t j = i; j < u->n; j++)
      if (!strcmp(u->v[j].name, u->v[i].name)) series_out(h, b, &u->v[j], u);
  }
  pthread_mutex_unlock(&u->lock);
  return 0;
}

void swit__umetrics_free(swit_host_t *h)
{
  struct swit__umetrics *u = h->obs ? h->obs->umet : NULL;

  if (!u) return;
  for (size_t i = 0; i < u->n; i++) {
    free(u->v[i].name);
    free(u->v[i].help);
    free(u->v[i].labels);
  }
  free(u->v);
  pthread_mutex_destroy(&u->lock);
  free(u);
  h->obs->umet = NULL;
}
