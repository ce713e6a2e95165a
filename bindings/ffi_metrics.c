/*
 * ffi_metrics.c - the swit.metrics exports (metric_* of swit__ffi_api): thin
 * wrappers over host/obs/metrics_lua.c. Counters and histograms count on the
 * calling worker's own slot array (single writer, relaxed atomics);
 * gauges go to the host's shared array. Called on the worker thread that
 * owns the Lua state; never touch a lua_State.
 */
#include "ffi_int.h"
#include "obs/obs.h"

static double *slots(swit_ffi_worker *fw)
{
  swit__worker *w = (swit__worker *)fw;
  swit__wstats *st = w->host ? swit__wstats_of(w) : NULL;
  return st ? atomic_load_explicit(&st->umet, memory_order_acquire) : NULL;
}

static void add(double *d, double v)
{
  double x;
  __atomic_load(d, &x, __ATOMIC_RELAXED);
  x += v;
  __atomic_store(d, &x, __ATOMIC_RELAXED);
}

int swit__ffi_metric_register(swit_ffi_worker *fw, int type, const char *name,
                              size_t name_len, const char *help,
                              size_t help_len, const char *labels,
                              size_t labels_len, const double *bounds,
                              uint32_t nb)
{
  swit__worker *w = (swit__worker *)fw;
  if (!w->host) return 0;
  return swit__umetric_register(w->host, type, name, name_len, help, help_len,
                                labels, labels_len, bounds, nb);
}

void swit__ffi_metric_add(swit_ffi_worker *fw, int32_t slot, double v)
{
  double *d = slots(fw);
  if (d && slot >= 0) add(&d[slot], v);
}

void swit__ffi_metric_gauge(swit_ffi_worker *fw, int32_t slot, double v,
                            int is_add)
{
  swit__worker *w = (swit__worker *)fw;
  if (w->host && slot >= 0)
    swit__umetric_gauge(w->host, (uint32_t)slot, v, is_add);
}

void swit__ffi_metric_observe(swit_ffi_worker *fw, int32_t slot,
                              uint32_t nb, const double *bounds, double v)
{
  double *d = slots(fw);
  uint32_t i = 0;

  if (!d || slot < 0) return;
  while (i < nb && v > bounds[i]) i++;
  add(&d[slot + (int32_t)i], 1);         /* bucket i, or +Inf (i == nb) */
  add(&d[slot + (int32_t)nb + 1], v);    /* sum */
}
