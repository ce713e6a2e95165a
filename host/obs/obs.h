/*
 * obs.h - observability inside the core: metrics (metrics.c, metrics_lua.c),
 * health (health.c), the admin HTTP server (admin.c), the HTTP ingress
 * (ingress.c) and the small HTTP server shell both run on (http.c).
 * Included by host_int.h; not API.
 *
 * Threads: counting hooks run on workers (their own blocks) or on any
 * publishing thread; the admin and ingress servers each run one thread
 * with their own libevent event_base, never a worker. The swit__obs of a
 * host is created with the host and freed (servers stopped first) by
 * swit_host_free, so the servers may read the host until then.
 */
#ifndef SWIT_OBS_H
#define SWIT_OBS_H

#include <pthread.h>
#include <stdarg.h>

#include "base/buf.h"
#include "core/host_int.h"
#include "obs/metrics.h"
#include "obs/trace.h"

struct swit_host_s;
struct swit__worker;
struct swit__http;
struct swit__umetrics;
typedef struct swit__admin_reload swit__admin_reload;

typedef struct swit__lag {
  char *topic, *group;
  int32_t partition;
  int64_t lag;
} swit__lag;

typedef struct swit__obs {
  int metrics_on;               /* server.metrics.enabled */
  int metrics_k;                /* the metrics interceptor's index */
  pthread_mutex_t pub_lock;     /* publishes from non-worker threads */
  swit__pub_stats pub;
  pthread_mutex_t lag_lock;     /* consumer lag reported by adapters */
  swit__lag *lags;
  size_t nlags, caplags;
  struct swit__umetrics *umet;  /* swit.metrics registry */
  struct swit__http *admin;
  swit__admin_reload *reload;   /* POST /admin/reload (admin.c) */
  struct swit__http *ingress;
  swit__ctr admin_denied;       /* requests refused for a bad token */
  swit__ctr http_requests;      /* served by the admin server */
  swit__ctr ingress_ok, ingress_err; /* under the ingress thread only */
} swit__obs;

/* Lifecycle (host.c). new: with the host; start: after swit_host_start
 * succeeded (binds the servers; a failed bind is logged, not fatal);
 * free: stops the servers, frees everything. */
int swit__obs_new(struct swit_host_s *h, char *err, size_t errlen);
void swit__obs_start(struct swit_host_s *h);
void swit__obs_free(struct swit_host_s *h);

/* ---------------------------------------------------------------------
 * Counting hooks (metrics.c) */

/* Register the metrics interceptor (api/host.c, before the workers):
 * counting on the message path when server.metrics.enabled, the
 * per-worker blocks (swit.metrics values) always. 0 or SWIT_E_*. */
int swit__metrics_register(struct swit_host_s *h);
/* A worker's metrics block (its interceptor state). */
swit__wstats *swit__wstats_of(const struct swit__worker *w);
swit__sub_stats *swit__stats_sub_slow(swit__wstats *st, uint32_t id);
/* The block for subscription `id` (NULL if out of memory). */
#define swit__stats_sub(st, id)                                             \
  (atomic_load_explicit(&(st)->subs[(id)], memory_order_relaxed)            \
       ? atomic_load_explicit(&(st)->subs[(id)], memory_order_relaxed)      \
       : swit__stats_sub_slow((st), (id)))
/* The hook adapters call through swit_broker_env.report_lag. */
void swit__stats_report_lag(void *host_ud, const char *topic,
                            const char *group, int32_t partition,
                            int64_t lag);

/* A Prometheus label value, \ " and newline escaped, appended to out. */
void swit__prom_label(swit__buf *out, const char *s);
/* The Prometheus text exposition of everything (GET /metrics). */
int swit__metrics_render(struct swit_host_s *h, swit__buf *out);

/* swit.metrics (metrics_lua.c). register: the series' first slot, or
 * SWIT_E_INVAL (bad name or type), SWIT_E_EXISTS (the name has another
 * type), SWIT_E_FULL (out of slots), SWIT_E_NOMEM. */
int swit__umetric_register(struct swit_host_s *h, int type, const char *name,
                           size_t nlen, const char *help, size_t hlen,
                           const char *labels, size_t llen,
                           const double *bounds, uint32_t nb);
void swit__umetric_gauge(struct swit_host_s *h, uint32_t slot, double v,
                         int add);
int swit__umetrics_new(struct swit_host_s *h);
int swit__umetrics_render(struct swit_host_s *h, swit__buf *out);
void swit__umetrics_free(struct swit_host_s *h);

/* ---------------------------------------------------------------------
 * Health (health.c): JSON bodies; return 1 when every check passes. */

int swit__health_live(struct swit_host_s *h, swit__buf *out);
int swit__health_ready(struct swit_host_s *h, swit__buf *out);
int swit__status_json(struct swit_host_s *h, swit__buf *out);

/* ---------------------------------------------------------------------
 * Admin and ingress servers (admin.c, ingress.c) */

int swit__admin_start(struct swit_host_s *h, char *err, size_t errlen);
/* Stop the admin server, after a reload it runs (obs.c). */
void swit__admin_stop(struct swit_host_s *h);
int swit__ingress_start(struct swit_host_s *h, char *err, size_t errlen);

#endif /* SWIT_OBS_H */
