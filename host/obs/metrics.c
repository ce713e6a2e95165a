/*
 * metrics.c - counting for /metrics and the Prometheus text exposition.
 *
 * Workers count into their own blocks (metrics.h): per subscription
 * (consumed, errors, retries, dead-lettered, latencies) and per published
 * topic. Other threads count publishes in one shared block under a
 * mutex. A scrape (admin thread) sums every worker's blocks and renders
 * them with the gauges read from the host (connection state, queues,
 * subscriptions, reloads, consumer lag reported by adapters) and the
 * Lua-defined metrics (metrics_lua.c). Names: swit_*, labels broker,
 * topic, group where they apply (docs/operations.md lists them all).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "obs/obs.h"
#include "core/msg_int.h"

const uint64_t swit__lat_bounds_us[SWIT__HIST_N] = {
  100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
  500000, 1000000, 2500000, 5000000, 10000000,
};
const uint64_t swit__size_bounds[SWIT__HIST_N] = {
  1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536,
};

/* A Prometheus label value: \ " and newline escaped. */
void swit__prom_label(swit__buf *b, const char *s)
{
  for (; *s; s++) {
    if (*s == '\\') swit__buf_add(b, "\\\\", 2);
    else if (*s == '"') swit__buf_add(b, "\\\"", 2);
    else if (*s == '\n') swit__buf_add(b, "\\n", 2);
    else swit__buf_add(b, s, 1);
  }
}

/* ------------------------------------------------------------------ */
/* Counting: workers */

static int worker_init(void *hs, swit__worker *w, void **ws)
{
  swit__wstats *st = calloc(1, sizeof *st);

  (void)hs;
  (void)w;
  if (st) st->subs = calloc(SWIT__MAX_SUBS + 1, sizeof *st->subs);
  if (!st || !st->subs) {
    free(st);
    return SWIT_E_NOMEM;
  }
  *ws = st;
  return 0;
}

static void pub_stats_free(swit__pub_stats *p)
{
  for (size_t i = 0; i < SWIT__PUB_TOPICS; i++) {
    swit__pub_entry *e = atomic_load(&p->e[i]);
    if (!e) continue;
    free(e->topic);
    free(e);
  }
}

static void worker_free(void *hs, swit__worker *w, void *ws)
{
  swit__wstats *st = ws;

  (void)hs;
  (void)w;
  if (!st) return;
  for (size_t i = 0; i <= SWIT__MAX_SUBS; i++) free(atomic_load(&st->subs[i]));
  free(st->subs);
  pub_stats_free(&st->pub);
  free(atomic_load(&st->umet));
  free(st);
}

swit__wstats *swit__wstats_of(const swit__worker *w)
{
  return swit__icpt_ws(w, w->host->obs->metrics_k);
}

/* First count of subscription `id` on this worker: its block. NULL when
 * out of memory (the count is lost, nothing else). */
swit__sub_stats *swit__stats_sub_slow(swit__wstats *st, uint32_t id)
{
  swit__sub_stats *s;

  if (id > SWIT__MAX_SUBS) return NULL;
  s = atomic_load_explicit(&st->subs[id], memory_order_relaxed);
  if (s) return s;
  if (!(s = calloc(1, sizeof *s))) return NULL;
  atomic_store_explicit(&st->subs[id], s, memory_order_release);
  return s;
}

/* The entry for `topic` in a publish block, created on first use. */
static swit__pub_entry *pub_entry(swit__pub_stats *p, const char *topic,
                                  uint32_t len)
{
  uint32_t hash = swit__key_hash(topic, len);

  for (uint32_t k = 0; k < SWIT__PUB_TOPICS; k++) {
    uint32_t i = (hash + k) % SWIT__PUB_TOPICS;
    swit__pub_entry *e = atomic_load_explicit(&p->e[i], memory_order_acquire);
    if (e) {
      if (e->hash == hash && strlen(e->topic) == len &&
          memcmp(e->topic, topic, len) == 0)
        return e;
      continue;
    }
    if (!(e = calloc(1, sizeof *e)) || !(e->topic = strndup(topic, len))) {
      free(e);
      return &p->other;
    }
    e->hash = hash;
    atomic_store_explicit(&p->e[i], e, memory_order_release);
    return e;
  }
  return &p->other;
}

static void pub_count(swit__pub_stats *p, const char *topic, uint32_t len,
                      size_t n, int rc, uint64_t us)
{
  swit__pub_entry *e = pub_entry(p, topic, len);

  if (rc == 0) {
    swit__ctr_add(&e->published, n);
    swit__hist_add(&e->latency, swit__lat_bounds_us, us, 1);
    swit__hist_add(&e->batch, swit__size_bounds, n, 1);
  } else {
    swit__ctr_add(&e->errors, n);
  }
}

static swit__worker *current_worker_of(swit_host_t *h)
{
  swit__worker *w = swit__current_worker;
  return w && w->host == h ? w : NULL;
}

/* The publish_after hook: workers count in their own block, other
 * threads in the shared one. */
static void publish_after(void *hs, const swit_msg_view *m, size_t n, int rc,
                          uint64_t us)
{
  swit_host_t *h = hs;
  swit__worker *w = current_worker_of(h);
  const char *topic = m->topic;
  uint32_t topic_len = m->topic_len;

  if (w) {
    pub_count(&swit__wstats_of(w)->pub, topic, topic_len, n, rc, us);
    return;
  }
  pthread_mutex_lock(&h->obs->pub_lock);
  pub_count(&h->obs->pub, topic, topic_len, n, rc, us);
  pthread_mutex_unlock(&h->obs->pub_lock);
}

void swit__stats_report_lag(void *host_ud, const char *topic,
                            const char *group, int32_t partition, int64_t lag)
{
  swit_host_t *h = host_ud;
  swit__obs *o = h->obs;
  swit__lag *l = NULL;

  pthread_mutex_lock(&o->lag_lock);
  for (size_t i = 0; i < o->nlags && !l; i++) {
    swit__lag *x = &o->lags[i];
    if (x->partition == partition && !strcmp(x->topic, topic) &&
        !strcmp(x->group, group ? group : ""))
      l = x;
  }
  if (!l && o->nlags == o->caplags) {
    size_t cap = o->caplags ? o->caplags * 2 : 16;
    swit__lag *v = realloc(o->lags, cap * sizeof *v);
    if (v) o->lags = v, o->caplags = cap;
  }
  if (!l && o->nlags < o->caplags) {
    l = &o->lags[o->nlags];
    l->topic = strdup(topic);
    l->group = strdup(group ? group : "");
    l->partition = partition;
    if (l->topic && l->group) {
      o->nlags++;
    } else {
      free(l->topic);
      free(l->group);
      l = NULL;
    }
  }
  if (l) l->lag = lag;
  pthread_mutex_unlock(&o->lag_lock);
}

/* ------------------------------------------------------------------ */
/* Rendering */

typedef struct render {
  swit__buf *b;
  const char *broker;
} render;

static void head(render *r, const char *name, const char *type,
                 const char *help)
{
  swit__buf_printf(r->b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
                   type);
}

static void sub_labels(render *r, const swit__sub *s)
{
  swit__buf_printf(r->b, "broker=\"%s\",topic=\"", r->broker);
  swit__prom_label(r->b, s->topic);
  swit__buf_add(r->b, "\",group=\"", 9);
  swit__prom_label(r->b, s->group);
  swit__buf_add(r->b, "\"", 1);
}

static void hist_sum(swit__hist *acc, swit__hist *h)
{
  for (int i = 0; i < SWIT__HIST_N; i++)
    acc->b[i] += swit__ctr_get(&h->b[i]);
  acc->count += swit__ctr_get(&h->count);
  acc->sum += swit__ctr_get(&h->sum);
}

/* One histogram's series; `lbl` is the label text without braces. */
static void hist_out(render *r, const char *name, const char *lbl,
                     const swit__hist *h, const uint64_t *bounds, double scale)
{
  uint64_t cum = 0;
  const char *sep = lbl[0] ? "," : "";

  for (int i = 0; i < SWIT__HIST_N; i++) {
    cum += h->b[i];
    swit__buf_printf(r->b, "%s_bucket{%s%sle=\"%g\"} %" PRIu64 "\n", name, lbl,
                     sep, (double)bounds[i] * scale, cum);
  }
  swit__buf_printf(r->b, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, lbl,
                   sep, (uint64_t)h->count);
  if (!lbl[0]) {
    swit__buf_printf(r->b, "%s_sum %.6f\n%s_count %" PRIu64 "\n", name,
                     (double)h->sum * scale, name, (uint64_t)h->count);
    return;
  }
  swit__buf_printf(r->b, "%s_sum{%s} %.6f\n%s_count{%s} %" PRIu64 "\n", name,
                   lbl, (double)h->sum * scale, name, lbl, (uint64_t)h->count);
}

/* Sum subscription `id` over every worker. */
static void sub_total(swit_host_t *h, uint32_t id, swit__sub_stats *acc)
{
  memset(acc, 0, sizeof *acc);
  for (size_t i = 0; i < h->nworkers; i++) {
    swit__wstats *st = swit__wstats_of(&h->workers[i]);
    swit__sub_stats *s = st ? atomic_load_explicit(
        &st->subs[id], memory_order_acquire) : NULL;
    if (!s) continue;
    acc->consumed += swit__ctr_get(&s->consumed);
    acc->errors += swit__ctr_get(&s->errors);
    acc->retried += swit__ctr_get(&s->retried);
    acc->rejected += swit__ctr_get(&s->rejected);
    acc->fatal += swit__ctr_get(&s->fatal);
    acc->dead_lettered += swit__ctr_get(&s->dead_lettered);
    hist_sum(&acc->consume, &s->consume);
    hist_sum(&acc->handler, &s->handler);
  }
}

static size_t nsubs_of(swit_host_t *h)
{
  return h->subs ? __atomic_load_n(&h->nsubs, __ATOMIC_ACQUIRE) : 0;
}

typedef struct counter_def {
  const char *name, *help;
  size_t off;
} counter_def;

static const counter_def sub_counters[] = {
  {"swit_messages_consumed_total", "Handler attempts finished (any result)",
   offsetof(swit__sub_stats, consumed)},
  {"swit_consume_errors_total", "Handler attempts that did not ack",
   offsetof(swit__sub_stats, errors)},
  {"swit_retries_total", "Retries scheduled after a retryable failure",
   offsetof(swit__sub_stats, retried)},
  {"swit_rejected_total", "Messages rejected (swit.reject, or refused by "
   "the adapter)", offsetof(swit__sub_stats, rejected)},
  {"swit_fatal_total", "Handler results swit.fatal",
   offsetof(swit__sub_stats, fatal)},
  {"swit_dead_lettered_total", "Messages whose dead-letter publish was "
   "confirmed", offsetof(swit__sub_stats, dead_lettered)},
};

static void render_subs(swit_host_t *h, render *r)
{
  size_t n = nsubs_of(h), nc = sizeof sub_counters / sizeof *sub_counters;
  swit__sub_stats *tot = calloc(n ? n : 1, sizeof *tot);
  swit__buf lbl = {0};

  if (!tot) return;
  for (size_t i = 0; i < n; i++) sub_total(h, h->subs[i]->id, &tot[i]);
  for (size_t c = 0; c < nc; c++) {
    head(r, sub_counters[c].name, "counter", sub_counters[c].help);
    for (size_t i = 0; i < n; i++) {
      swit__buf_printf(r->b, "%s{", sub_counters[c].name);
      sub_labels(r, h->subs[i]);
      swit__buf_printf(r->b, "} %" PRIu64 "\n", swit__ctr_get((swit__ctr *)(
                       (char *)&tot[i] + sub_counters[c].off)));
    }
  }
  head(r, "swit_consume_latency_seconds", "histogram",
       "From receipt by the host to settle, per message");
  for (size_t i = 0; i < n; i++) {
    render lr = {&lbl, r->broker};
    lbl.len = 0;
    sub_labels(&lr, h->subs[i]);
    hist_out(r, "swit_consume_latency_seconds", lbl.data, &tot[i].consume,
             swit__lat_bounds_us, 1e-6);
  }
  head(r, "swit_handler_duration_seconds", "histogram",
       "Handler time per message: each batch's handler time divided "
       "evenly among its messages whose handler ran");
  for (size_t i = 0; i < n; i++) {
    render lr = {&lbl, r->broker};
    lbl.len = 0;
    sub_labels(&lr, h->subs[i]);
    hist_out(r, "swit_handler_duration_seconds", lbl.data, &tot[i].handler,
             swit__lat_bounds_us, 1e-6);
  }
  free(lbl.data);
  free(tot);
}

/* ---- publishes: every worker's blocks and the shared one, by topic */

typedef struct pub_total {
  const char *topic;
  uint64_t published, errors;
  swit__hist latency, batch;
} pub_total;

typedef struct pub_acc {
  pub_total *v;
  size_t n, cap;
} pub_acc;

static void pub_merge(pub_acc *a, swit__pub_entry *e, const char *topic)
{
  pub_total *t = NULL;

  for (size_t i = 0; i < a->n && !t; i++)
    if (!strcmp(a->v[i].topic, topic)) t = &a->v[i];
  if (!t) {
    if (a->n == a->cap) {
      size_t cap = a->cap ? a->cap * 2 : 32;
      pub_total *v = realloc(a->v, cap * sizeof *v);
      if (!v) return;
      a->v = v;
      a->cap = cap;
    }
    t = &a->v[a->n++];
    memset(t, 0, sizeof *t);
    t->topic = topic;
  }
  t->published += swit__ctr_get(&e->published);
  t->errors += swit__ctr_get(&e->errors);
  hist_sum(&t->latency, &e->latency);
  hist_sum(&t->batch, &e->batch);
}

static void pub_collect(pub_acc *a, swit__pub_stats *p)
{
  for (size_t i = 0; i < SWIT__PUB_TOPICS; i++) {
    swit__pub_entry *e = atomic_load_explicit(&p->e[i], memory_order_acquire);
    if (e) pub_merge(a, e, e->topic);
  }
  if (swit__ctr_get(&p->other.published) || swit__ctr_get(&p->other.errors))
    pub_merge(a, &p->other, "_other");
}

static void render_pubs(swit_host_t *h, render *r)
{
  pub_acc a = {0};
  swit__buf lbl = {0};

  for (size_t i = 0; i < h->nworkers; i++) {
    swit__wstats *st = swit__wstats_of(&h->workers[i]);
    if (st) pub_collect(&a, &st->pub);
  }
  pthread_mutex_lock(&h->obs->pub_lock);
  pub_collect(&a, &h->obs->pub);
  head(r, "swit_messages_published_total", "counter",
       "Messages the broker accepted");
  for (size_t i = 0; i < a.n; i++) {
    swit__buf_printf(r->b, "swit_messages_published_total{broker=\"%s\","
                     "topic=\"", r->broker);
    swit__prom_label(r->b, a.v[i].topic);
    swit__buf_printf(r->b, "\"} %" PRIu64 "\n", a.v[i].published);
  }
  head(r, "swit_publish_errors_total", "counter",
       "Messages a publish failed for");
  for (size_t i = 0; i < a.n; i++) {
    swit__buf_printf(r->b, "swit_publish_errors_total{broker=\"%s\","
                     "topic=\"", r->broker);
    swit__prom_label(r->b, a.v[i].topic);
    swit__buf_printf(r->b, "\"} %" PRIu64 "\n", a.v[i].errors);
  }
  head(r, "swit_publish_latency_seconds", "histogram",
       "Time of one publish call to the adapter");
  for (size_t i = 0; i < a.n; i++) {
    lbl.len = 0;
    swit__buf_printf(&lbl, "broker=\"%s\",topic=\"", r->broker);
    swit__prom_label(&lbl, a.v[i].topic);
    swit__buf_add(&lbl, "\"", 1);
    hist_out(r, "swit_publish_latency_seconds", lbl.data, &a.v[i].latency,
             swit__lat_bounds_us, 1e-6);
  }
  head(r, "swit_publish_batch_size", "histogram",
       "Messages per publish call");
  for (size_t i = 0; i < a.n; i++) {
    lbl.len = 0;
    swit__buf_printf(&lbl, "broker=\"%s\",topic=\"", r->broker);
    swit__prom_label(&lbl, a.v[i].topic);
    swit__buf_add(&lbl, "\"", 1);
    hist_out(r, "swit_publish_batch_size", lbl.data, &a.v[i].batch,
             swit__size_bounds, 1);
  }
  head(r, "swit_active_publishers", "gauge",
       "Distinct topics this host has published to");
  swit__buf_printf(r->b, "swit_active_publishers{broker=\"%s\"} %zu\n",
                   r->broker, a.n);
  pthread_mutex_unlock(&h->obs->pub_lock);
  free(a.v);
  free(lbl.data);
}

/* ---- gauges read from the host */

static void render_workers(swit_host_t *h, render *r)
{
  swit__hist batch;

  memset(&batch, 0, sizeof batch);
  head(r, "swit_queue_depth", "gauge", "Messages waiting in a worker queue");
  for (size_t i = 0; i < h->nworkers; i++) {
    swit__worker *w = &h->workers[i];
    swit__buf_printf(r->b, "swit_queue_depth{worker=\"%zu\"} %u\n", i,
                     w->q.ring ? swit__queue_depth(&w->q) : 0);
    swit__wstats *st = swit__wstats_of(w);
    if (st) hist_sum(&batch, &st->batch);
  }
  head(r, "swit_worker_batch_size", "histogram",
       "Messages per worker batch (one lua_pcall each)");
  hist_out(r, "swit_worker_batch_size", "", &batch, swit__size_bounds, 1);
  head(r, "swit_workers", "gauge", "Worker threads");
  swit__buf_printf(r->b, "swit_workers %zu\n", h->nworkers);
}

static void render_sub_gauges(swit_host_t *h, render *r)
{
  size_t n = nsubs_of(h), active = 0;

  head(r, "swit_subscription_in_flight", "gauge",
       "Messages delivered and not yet settled");
  for (size_t i = 0; i < n; i++) {
    swit__buf_printf(r->b, "swit_subscription_in_flight{");
    sub_labels(r, h->subs[i]);
    swit__buf_printf(r->b, "} %ld\n", (long)atomic_load(&h->subs[i]->inflight));
    active += atomic_load(&h->subs[i]->subscribed) != 0;
  }
  head(r, "swit_subscription_paused", "gauge",
       "1 while the subscription is paused at the broker");
  for (size_t i = 0; i < n; i++) {
    swit__sub *s = h->subs[i];
    int paused = atomic_load(&s->paused_by) > 0;
    swit__buf_printf(r->b, "swit_subscription_paused{");
    sub_labels(r, s);
    swit__buf_printf(r->b, "} %d\n", paused);
  }
  head(r, "swit_backpressure_pauses_total", "counter",
       "Times a full worker queue paused the subscription at the broker");
  for (size_t i = 0; i < n; i++) {
    swit__buf_printf(r->b, "swit_backpressure_pauses_total{");
    sub_labels(r, h->subs[i]);
    swit__buf_printf(r->b, "} %u\n", atomic_load(&h->subs[i]->pauses));
  }
  head(r, "swit_active_subscribers", "gauge",
       "Subscriptions open at the broker");
  swit__buf_printf(r->b, "swit_active_subscribers{broker=\"%s\"} %zu\n",
                   r->broker, active);
}

static void render_host(swit_host_t *h, render *r)
{
  int cs = atomic_load(&h->conn_state);

  head(r, "swit_connection_state", "gauge",
       "1 for the broker connection's current state");
  for (int s = SWIT_CONN_DISCONNECTED; s <= SWIT_CONN_FAILED; s++)
    swit__buf_printf(r->b, "swit_connection_state{broker=\"%s\",state=\"%s\"}"
                     " %d\n", r->broker, swit__conn_state_name(s), s == cs);
  head(r, "swit_reconnect_attempts_total", "counter",
       "Reconnect attempts to the broker");
  swit__buf_printf(r->b, "swit_reconnect_attempts_total{broker=\"%s\"} %u\n",
                   r->broker, atomic_load(&h->reconnects));
  head(r, "swit_reloads_total", "counter", "Hot reloads by result");
  swit__buf_printf(r->b, "swit_reloads_total{result=\"ok\"} %u\n"
                   "swit_reloads_total{result=\"failed\"} %u\n",
                   atomic_load(&h->reloads_ok), atomic_load(&h->reloads_failed));
  head(r, "swit_code_generation", "gauge", "Lua code generation running");
  swit__buf_printf(r->b, "swit_code_generation %u\n",
                   atomic_load(&h->generation));
  head(r, "swit_messages_in_flight", "gauge",
       "Messages delivered to the host and not yet settled");
  swit__buf_printf(r->b, "swit_messages_in_flight %ld\n",
                   (long)atomic_load(&h->inflight));
  head(r, "swit_transactions_total", "counter",
       "Broker transactions of exactly_once subscriptions, by result");
  swit__buf_printf(r->b, "swit_transactions_total{broker=\"%s\",result="
                   "\"commit\"} %" PRIu64 "\nswit_transactions_total{broker="
                   "\"%s\",result=\"abort\"} %" PRIu64 "\n", r->broker,
                   (uint64_t)atomic_load(&h->txn_commits), r->broker,
                   (uint64_t)atomic_load(&h->txn_aborts));
  head(r, "swit_admin_unauthorized_total", "counter",
       "Admin requests refused for a missing or wrong token");
  swit__buf_printf(r->b, "swit_admin_unauthorized_total %" PRIu64 "\n",
                   swit__ctr_get(&h->obs->admin_denied));
  head(r, "swit_build_info", "gauge", "Version of swit (value is 1)");
  swit__buf_printf(r->b, "swit_build_info{version=\"%s\",broker=\"%s\"} 1\n",
                   SWIT_VERSION_STRING, r->broker);
}

static void render_lag(swit_host_t *h, render *r)
{
  swit__obs *o = h->obs;

  head(r, "swit_consumer_lag", "gauge",
       "Messages behind the end of the partition, as the adapter reports");
  pthread_mutex_lock(&o->lag_lock);
  for (size_t i = 0; i < o->nlags; i++) {
    swit__buf_printf(r->b, "swit_consumer_lag{broker=\"%s\",topic=\"",
                     r->broker);
    swit__prom_label(r->b, o->lags[i].topic);
    swit__buf_add(r->b, "\",group=\"", 9);
    swit__prom_label(r->b, o->lags[i].group);
    swit__buf_printf(r->b, "\",partition=\"%d\"} %" PRId64 "\n",
                     (int)o->lags[i].partition, o->lags[i].lag);
  }
  pthread_mutex_unlock(&o->lag_lock);
}

/* Tracing (trace.h): zeros when tracing is off. */
static void render_trace(swit_host_t *h, render *r)
{
  uint64_t exported, full, failed;

  swit__trace_counts(h, &exported, &full, &failed);
  head(r, "swit_trace_spans_exported_total", "counter",
       "Spans the OTLP endpoint accepted");
  swit__buf_printf(r->b, "swit_trace_spans_exported_total %" PRIu64 "\n",
                   exported);
  head(r, "swit_trace_spans_dropped_total", "counter",
       "Spans dropped: a full buffer, or an export that failed");
  swit__buf_printf(r->b, "swit_trace_spans_dropped_total{reason=\"buffer_full\"}"
                   " %" PRIu64 "\nswit_trace_spans_dropped_total{reason="
                   "\"export_failed\"} %" PRIu64 "\n", full, failed);
}

int swit__metrics_render(swit_host_t *h, swit__buf *out)
{
  render r = {out, h->ops ? h->ops->name : "none"};

  render_subs(h, &r);
  render_pubs(h, &r);
  render_workers(h, &r);
  render_sub_gauges(h, &r);
  render_host(h, &r);
  render_lag(h, &r);
  render_trace(h, &r);                                         /* tracing */
  swit__umetrics_render(h, out);
  return out->data ? 0 : SWIT_E_NOMEM;
}

/* ------------------------------------------------------------------ */
/* Counting a finished batch (worker thread; called before settle) */

static int lat_bucket(uint64_t us)
{
  int i = 0;
  while (i < SWIT__HIST_N && us > swit__lat_bounds_us[i]) i++;
  return i;
}

typedef struct run_count {
  swit__sub_stats *st;
  uint64_t consumed, errors, rejected, fatal, lat_sum;
} run_count;

static void run_count_flush(swit__worker *w, run_count *r)
{
  swit__sub_stats *st = r->st;
  int hb = lat_bucket(w->handler_us);

  if (!st) return;
  swit__ctr_add(&st->consumed, r->consumed);
  swit__ctr_add(&st->errors, r->errors);
  swit__ctr_add(&st->rejected, r->rejected);
  swit__ctr_add(&st->fatal, r->fatal);
  swit__ctr_add(&st->consume.count, r->consumed);
  swit__ctr_add(&st->consume.sum, r->lat_sum);
  if (hb < SWIT__HIST_N) swit__ctr_add(&st->handler.b[hb], r->consumed);
  swit__ctr_add(&st->handler.count, r->consumed);
  swit__ctr_add(&st->handler.sum, r->consumed * w->handler_us);
  memset(r, 0, sizeof *r);
}

/* The batch_after hook: count a batch whose handlers ran (results set),
 * before it is settled. */
static void batch_after(void *ws, swit__worker *w, size_t n, uint64_t now_us)
{
  swit__wstats *st = ws;
  uint32_t now32 = (uint32_t)now_us, prev_recv = 0;
  swit__sub *cur = NULL;
  run_count r = {0};
  uint64_t same = 0;   /* messages since the last change of recv_us */
  int b = SWIT__HIST_N;

  swit__hist_add(&st->batch, swit__size_bounds, n, 1);
  for (size_t i = 0; i < n; i++) {
    const swit__item *it = &w->items[i];
    const swit_ffi_msg *m = &w->ffi.msgs[i];

    /* messages of one dispatcher chunk share recv_us: one bucket lookup
     * and one store per run of them */
    if (it->sub != cur || it->recv_us != prev_recv) {
      if (same && r.st && b < SWIT__HIST_N)
        swit__ctr_add(&r.st->consume.b[b], same);
      same = 0;
      prev_recv = it->recv_us;
      b = lat_bucket(now32 - prev_recv);
    }
    if (it->sub != cur) {
      run_count_flush(w, &r);
      cur = it->sub;
      r.st = swit__stats_sub(st, cur->id);
    }
    if (m->result == SWIT__RES_GIVE_BACK) continue;
    if (m->flags & SWIT_MSG_F_REJECTED) {       /* refused by the adapter */
      r.rejected++;
      continue;
    }
    same++;
    r.lat_sum += now32 - prev_recv;
    r.consumed++;
    if (m->result == SWIT_RES_ACK) continue;
    r.errors++;
    r.rejected += m->result == SWIT_RES_REJECT;
    r.fatal += m->result == SWIT_RES_FATAL;
  }
  if (same && r.st && b < SWIT__HIST_N)
    swit__ctr_add(&r.st->consume.b[b], same);
  run_count_flush(w, &r);
}

/* ------------------------------------------------------------------ */
/* The interceptor */

/* The settled hook: retries and dead letters (acks are counted per
 * batch by batch_after). */
static void settled(void *ws, swit__worker *w, const swit__item *it,
                    int outcome)
{
  swit__sub_stats *s = swit__stats_sub((swit__wstats *)ws, it->sub->id);

  (void)w;
  if (!s) return;
  if (outcome == SWIT__OUT_RETRY) swit__ctr_add(&s->retried, 1);
  else if (outcome == SWIT__OUT_DEAD) swit__ctr_add(&s->dead_lettered, 1);
}

static const swit__icpt_ops metrics_on = {
  .name = "metrics",
  .flags = SWIT__ICPT_F_TIME_PUBLISH | SWIT__ICPT_F_RECV_TIME,
  .worker_init = worker_init,
  .worker_free = worker_free,
  .batch_after = batch_after,
  .settled = settled,
  .publish_after = publish_after,
};

/* server.metrics.enabled false: the per-worker blocks stay (swit.metrics
 * values live there) but nothing is counted on the message path. */
static const swit__icpt_ops metrics_off = {
  .name = "metrics",
  .worker_init = worker_init,
  .worker_free = worker_free,
};

int swit__metrics_register(swit_host_t *h)
{
  int k = swit__icpt_add(h, h->obs->metrics_on ? &metrics_on : &metrics_off,
                         h);
  if (k < 0) return k;
  h->obs->metrics_k = k;
  return 0;
}
