/*
 * health.c - the bodies of GET /healthz, GET /readyz and GET
 * /admin/status, built from the host's live state on the admin thread.
 *
 * Liveness: the admin event loop answers (it is what runs this) and no
 * worker has been in one batch of handlers longer than
 * lua.limits.handler_timeout. Readiness: the seed design's
 * MessagingHealthCheck (broker connectivity, publisher health,
 * subscriber health, queue depth, latency) plus "not draining". Each
 * check is {"name", "status": "ok"|"fail", "detail"}.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obs/obs.h"

typedef struct checks {
  swit__buf *b;
  int n, ok;
} checks;

static void check(checks *c, const char *name, int ok, const char *detail)
{
  swit__buf_printf(c->b, "%s{\"name\":\"%s\",\"status\":\"%s\",\"detail\":",
                   c->n++ ? "," : "", name, ok ? "ok" : "fail");
  swit__buf_json(c->b, detail, strlen(detail));
  swit__buf_add(c->b, "}", 1);
  if (!ok) c->ok = 0;
}

static void begin(checks *c, swit__buf *b)
{
  c->b = b;
  c->n = 0;
  c->ok = 1;
  swit__buf_add(b, "{\"checks\":[", 11);
}

static int end(checks *c)
{
  swit__buf_printf(c->b, "],\"status\":\"%s\"}\n", c->ok ? "ok" : "fail");
  return c->ok;
}

/* Workers stuck past the handler timeout, each named with the topic of
 * its batch's first message and the script whose handler serves it (the
 * worker publishes both per batch, before busy_since_us). */
static int stuck_workers(swit_host_t *h, char *out, size_t len)
{
  uint64_t now = swit__now_us();
  int64_t limit = h->cfg->lua.limits.handler_timeout_ms * 1000;
  size_t o = 0;
  int n = 0;

  out[0] = '\0';
  for (size_t i = 0; i < h->nworkers; i++) {
    swit__worker *st = &h->workers[i];
    int64_t since = atomic_load_explicit(&st->busy_since_us,
                                         memory_order_acquire);
    uint32_t sid = atomic_load_explicit(&st->busy_sub, memory_order_relaxed);
    const char *script = atomic_load_explicit(&st->busy_script,
                                              memory_order_relaxed);
    swit__sub *sub = sid && sid <= SWIT__MAX_SUBS && h->subs
                     ? h->subs[sid - 1] : NULL;
    int c = sub && sub->ccb;

    if (!since || (int64_t)now - since <= limit ||
        since != atomic_load(&st->busy_since_us))  /* a new batch began */
      continue;
    n++;
    if (o < len && atomic_load(&st->busy_kind) != SWIT__BUSY_BATCH)
      o += (size_t)snprintf(out + o, len - o, "%sworker %zu has been in %s "
                            "for %.1f s", n > 1 ? "; " : "", i,
                            atomic_load(&st->busy_kind) == SWIT__BUSY_ON_START
                            ? "on_start" : "a swit.every timer",
                            (double)((int64_t)now - since) / 1e6);
    else if (o < len)
      o += (size_t)snprintf(out + o, len - o, "%sworker %zu has been in a "
                            "handler for %.1f s (topic '%s', %s%s)", n > 1 ?
                            "; " : "", i, (double)((int64_t)now - since) / 1e6,
                            sub ? sub->topic : "?", c ? "C handler" : "script ",
                            c ? "" : script ? script : "unknown");
  }
  return n;
}

int swit__health_live(swit_host_t *h, swit__buf *out)
{
  char detail[1024];
  checks c;

  begin(&c, out);
  check(&c, "event_loop", 1, "the admin event loop answers");
  if (stuck_workers(h, detail, sizeof detail))
    check(&c, "workers", 0, detail);
  else
    check(&c, "workers", 1, "no worker is past lua.limits.handler_timeout");
  return end(&c);
}

/* ------------------------------------------------------------------ */

static void broker_check(swit_host_t *h, checks *c)
{
  int cs = atomic_load(&h->conn_state);
  char detail[512], hd[256] = "";
  int ok = cs == SWIT_CONN_CONNECTED && atomic_load(&h->connected);

  if (ok && h->broker && h->ops->health &&
      h->ops->health(h->broker, hd, sizeof hd) != 0)
    ok = 0;
  snprintf(detail, sizeof detail, "%s: %s%s%s", h->ops ? h->ops->name : "?",
           swit__conn_state_name(cs), hd[0] ? ": " : "", hd);
  check(c, "broker_connectivity", ok, detail);
  check(c, "publisher_health", atomic_load(&h->connected) &&
        cs == SWIT_CONN_CONNECTED, atomic_load(&h->connected) &&
        cs == SWIT_CONN_CONNECTED ? "publishes can reach the broker"
        : "the broker is not connected");
}

static void subscriber_check(swit_host_t *h, checks *c)
{
  size_t n = h->subs ? __atomic_load_n(&h->nsubs, __ATOMIC_ACQUIRE) : 0;
  char detail[512] = "";
  size_t o = 0, bad = 0, active = 0, paused = 0;

  for (size_t i = 0; i < n; i++) {
    swit__sub *s = h->subs[i];
    if (!atomic_load(&s->active)) continue;
    active++;
    paused += atomic_load(&s->admin_paused) != 0;
    if (atomic_load(&s->subscribed)) continue;
    bad++;
    if (o < sizeof detail)
      o += (size_t)snprintf(detail + o, sizeof detail - o, "%s'%s' (group "
                            "%s) is not subscribed", bad > 1 ? "; " : "",
                            s->topic, s->group);
  }
  if (!bad)
    snprintf(detail, sizeof detail, "%zu subscription(s) active, %zu paused "
             "by an operator", active, paused);
  check(c, "subscriber_health", bad == 0, detail);
}

static void queue_check(swit_host_t *h, checks *c)
{
  char detail[256];
  size_t full = 0;
  uint32_t max = 0;

  for (size_t i = 0; i < h->nworkers; i++) {
    swit__queue *q = &h->workers[i].q;
    uint32_t d;
    if (!q->ring) continue;
    d = swit__queue_depth(q);
    if (d > max) max = d;
    if (d >= q->cap) full++;
  }
  snprintf(detail, sizeof detail, "deepest worker queue: %u message(s); "
           "%zu queue(s) full", max, full);
  check(c, "queue_depth", full == 0, detail);
}

int swit__health_ready(swit_host_t *h, swit__buf *out)
{
  int state = atomic_load(&h->state);
  char detail[1024];
  checks c;

  begin(&c, out);
  broker_check(h, &c);
  subscriber_check(h, &c);
  queue_check(h, &c);
  if (stuck_workers(h, detail, sizeof detail))
    check(&c, "latency", 0, detail);
  else
    check(&c, "latency", 1, "every batch of handlers finishes within "
          "lua.limits.handler_timeout");
  check(&c, "running", state == SWIT__RUNNING,
        state == SWIT__RUNNING ? "running" : state == SWIT__DRAINING
        ? "draining: shutting down" : state == SWIT__NEW ? "starting"
        : "stopped");
  return end(&c);
}

/* ------------------------------------------------------------------ */

static const char *sub_state(swit__sub *s)
{
  if (!atomic_load(&s->active)) return "removed";
  if (!atomic_load(&s->subscribed)) return "unsubscribed";
  if (atomic_load(&s->paused_by) > 0) return "paused";
  return "active";
}

int swit__status_json(swit_host_t *h, swit__buf *b)
{
  static const char *const states[] = {"starting", "running", "draining",
                                       "stopped"};
  size_t n = h->subs ? __atomic_load_n(&h->nsubs, __ATOMIC_ACQUIRE) : 0;
  uint64_t now = swit__now_us();

  swit__buf_printf(b, "{\"version\":\"%s\",\"service\":", SWIT_VERSION_STRING);
  swit__buf_json(b, h->cfg->server.name, strlen(h->cfg->server.name));
  swit__buf_printf(b, ",\"service_version\":");
  swit__buf_json(b, h->cfg->server.version, strlen(h->cfg->server.version));
  swit__buf_printf(b, ",\"state\":\"%s\",\"generation\":%u,\"reloads\":"
                   "{\"ok\":%u,\"failed\":%u},\"broker\":{\"type\":\"%s\","
                   "\"state\":\"%s\",\"reconnect_attempts\":%u},"
                   "\"in_flight\":%ld,\"workers\":[",
                   states[atomic_load(&h->state) & 3],
                   atomic_load(&h->generation), atomic_load(&h->reloads_ok),
                   atomic_load(&h->reloads_failed),
                   h->ops ? h->ops->name : "?",
                   swit__conn_state_name(atomic_load(&h->conn_state)),
                   atomic_load(&h->reconnects), (long)atomic_load(&h->inflight));
  for (size_t i = 0; i < h->nworkers; i++) {
    swit__worker *w = &h->workers[i];
    int64_t since = atomic_load(&w->busy_since_us);
    swit__buf_printf(b, "%s{\"id\":%zu,\"queue_depth\":%u,\"busy_ms\":%.1f}",
                     i ? "," : "", i, w->q.ring ? swit__queue_depth(&w->q) : 0,
                     since ? (double)((int64_t)now - since) / 1000.0 : 0.0);
  }
  swit__buf_add(b, "],\"subscriptions\":[", 19);
  for (size_t i = 0; i < n; i++) {
    swit__sub *s = h->subs[i];
    swit__buf_printf(b, "%s{\"id\":%u,\"topic\":", i ? "," : "", s->id);
    swit__buf_json(b, s->topic, strlen(s->topic));
    swit__buf_add(b, ",\"group\":", 9);
    swit__buf_json(b, s->group, strlen(s->group));
    swit__buf_printf(b, ",\"handler\":\"%s\",\"state\":\"%s\","
                     "\"paused_by_operator\":%s,\"in_flight\":%ld,"
                     "\"backpressure_pauses\":%u}", s->ccb ? "c" : "lua",
                     sub_state(s), atomic_load(&s->admin_paused) ? "true"
                     : "false", (long)atomic_load(&s->inflight),
                     atomic_load(&s->pauses));
  }
  swit__buf_add(b, "]}\n", 3);
  return b->data ? 0 : SWIT_E_NOMEM;
}
