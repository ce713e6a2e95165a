/*
 * circuit.c - the circuit breaker of a subscription (resil.h), as an
 * interceptor: messages.subscribers.<name>.circuit_breaker.
 *
 *   msgs_before  closed: pass (one pointer and one state load). Open, or
 *                half-open with its trial used up: the message is given
 *                back to the broker unhandled (SWIT__RES_GIVE_BACK: no
 *                attempt counted, never dead-lettered).
 *   batch_after  the outcome of each handled message goes to its breaker,
 *                one lock per run of one subscription: ack and reject
 *                are successes (the handler decided), retry a failure,
 *                swit.fatal critical (opens at once).
 *   sync         under the breaker's lock after a change: while open, or
 *                half-open with no trial call left, the circuit holds one
 *                count of the subscription's paused_by, the count the
 *                queues' backpressure and the operator's pause use, so
 *                the adapter is paused with the membership kept.
 *   timer        one thread per host (timer.c), started at registration,
 *                half-opens circuits whose recovery_timeout has passed
 *                (which resumes them for the trial).
 *
 * Lock order: breaker lock -> sub pause_lock, and breaker lock -> the
 * timer's lock (the kick); the timer's scan runs without its own lock.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obs/obs.h"
#include "resil/resil.h"

struct swit__circuit {
  swit__breaker b;            /* first */
  swit__sub *sub;
  swit__resil *r;
  int held;                   /* under b.lock: holds one count of paused_by */
};

/* A subscription without a breaker. */
static swit__circuit no_circuit;
#define NONE (&no_circuit)

typedef struct circ_ws {
  uint8_t *trial;             /* [batch]: message i took a trial slot */
  uint8_t *out;               /* [batch]: outcomes of one run */
} circ_ws;

/* ------------------------------------------------------------------ */
/* Transitions */

static void circuit_sync(swit__breaker *b, int from, void *ud)
{
  swit__circuit *c = ud;
  swit__sub *sub = c->sub;
  int to = atomic_load_explicit(&b->state, memory_order_relaxed);
  int want = to == SWIT__CB_OPEN ||
             (to == SWIT__CB_HALF_OPEN && b->trial_left == 0);

  if (from != to)
    swit__log(&c->r->host->log, to == SWIT__CB_OPEN ? SWIT_LOG_WARN
              : SWIT_LOG_INFO, "circuit of '%s' (group %s): %s -> %s%s",
              sub->topic, sub->group, swit__breaker_state_name(from),
              swit__breaker_state_name(to), to == SWIT__CB_OPEN
              ? ": subscription paused" : to == SWIT__CB_CLOSED
              ? ": subscription resumed" : ": trial");
  if (want != c->held) {
    c->held = want;
    atomic_fetch_add(&sub->paused_by, want ? 1 : -1);
    swit__sub_reconcile_pause(sub);
  }
  if (to == SWIT__CB_OPEN && from != to) swit__rtimer_kick(&c->r->timer);
}

/* The circuit of `sub` (made on its first message), or NONE. */
static swit__circuit *circuit_slow(swit__resil *r, swit__sub *sub)
{
  swit__circuit *c;

  pthread_mutex_lock(&r->mu);
  c = atomic_load(&r->circ[sub->id]);
  if (!c) {
    const swit_cfg_subscriber *s = sub->scfg;
    c = NONE;
    if (s && s->circuit_breaker.enabled && !sub->exactly_once) {
      swit__circuit *n = calloc(1, sizeof *n);
      if (n) {
        n->sub = sub;
        n->r = r;
        swit__breaker_init(&n->b, &s->circuit_breaker, circuit_sync, n);
        c = n;
        if (sub->id > atomic_load(&r->maxsub)) atomic_store(&r->maxsub, sub->id);
      } else {
        swit__log(&r->host->log, SWIT_LOG_ERROR, "out of memory for the "
                  "circuit of '%s'; it runs without one", sub->topic);
      }
    }
    atomic_store_explicit(&r->circ[sub->id], c, memory_order_release);
  }
  pthread_mutex_unlock(&r->mu);
  return c;
}

static inline swit__circuit *circuit_of(swit__resil *r, swit__sub *sub)
{
  swit__circuit *c = atomic_load_explicit(&r->circ[sub->id],
                                          memory_order_acquire);
  return c ? c : circuit_slow(r, sub);
}

/* ------------------------------------------------------------------ */
/* The interceptor */

static int c_worker_init(void *hs, swit__worker *w, void **ws)
{
  circ_ws *s = calloc(1, sizeof *s);
  (void)hs;
  if (!s) return -1;
  s->trial = calloc(w->host->batch_size, 1);
  s->out = calloc(w->host->batch_size, 1);
  *ws = s;
  return s->trial && s->out ? 0 : -1;
}

static void c_worker_free(void *hs, swit__worker *w, void *ws)
{
  circ_ws *s = ws;
  (void)hs;
  (void)w;
  if (!s) return;
  free(s->trial);
  free(s->out);
  free(s);
}

static void c_batch_before(void *ws, swit__worker *w, size_t n)
{
  (void)w;
  memset(((circ_ws *)ws)->trial, 0, n);
}

static int c_msg_before(void *ws, swit__worker *w, uint32_t i)
{
  swit__circuit *c = circuit_of(w->host->resil, w->items[i].sub);
  swit_ffi_msg *m;

  if (c == NONE || atomic_load_explicit(&c->b.state, memory_order_relaxed) ==
                       SWIT__CB_CLOSED)
    return 0;
  if (swit__breaker_allow(&c->b, swit__now_ms())) {
    ((circ_ws *)ws)->trial[i] = 1;
    return 0;
  }
  m = &w->ffi.msgs[i];                 /* given back, unhandled */
  m->result = SWIT__RES_GIVE_BACK;
  m->reason = NULL;
  m->reason_len = 0;
  return 1;
}
SWIT__ICPT_MSGS_BEFORE(c_msgs_before, c_msg_before)

static uint8_t outcome_of(const swit_ffi_msg *m)
{
  switch (m->result) {
  case SWIT_RETRY: return SWIT__CB_FAIL;
  case SWIT_FATAL: return SWIT__CB_CRITICAL;
  default: return SWIT__CB_OK;         /* ack, reject */
  }
}

static void c_batch_after(void *ws, swit__worker *w, size_t n,
                          uint64_t now_us)
{
  circ_ws *s = ws;
  swit__resil *r = w->host->resil;
  swit__circuit *run = NULL;
  size_t k = 0;
  int64_t now_ms = (int64_t)(now_us / 1000);

  for (size_t i = 0; i < n; i++) {
    const swit_ffi_msg *m = &w->ffi.msgs[i];
    swit__circuit *c = atomic_load_explicit(&r->circ[w->items[i].sub->id],
                                            memory_order_acquire);
    if (!c || c == NONE) continue;     /* no breaker, or refused earlier */
    if (m->flags & SWIT_MSG_F_REJECTED) {
      if (s->trial[i]) swit__breaker_release(&c->b); /* a later refusal */
      continue;
    }
    if (c != run && k) {
      swit__breaker_record(&run->b, now_ms, s->out, k);
      k = 0;
    }
    run = c;
    s->out[k++] = outcome_of(m);
  }
  if (k) swit__breaker_record(&run->b, now_ms, s->out, k);
}

static const swit__icpt_ops circuit_ops = {
  .name = "circuit",
  .worker_init = c_worker_init,
  .worker_free = c_worker_free,
  .batch_before = c_batch_before,
  .msgs_before = c_msgs_before,
  .batch_after = c_batch_after,
};

/* ------------------------------------------------------------------ */
/* The timer: half-opens what is due */

/* Half-open what is due; the earliest time a circuit is due (us), or -1. */
static int64_t circuit_scan(void *ud, int64_t now_us)
{
  swit__resil *r = ud;
  uint32_t max = atomic_load(&r->maxsub);
  int64_t now = now_us / 1000, next = -1;

  for (uint32_t id = 1; id <= max; id++) {
    swit__circuit *c = atomic_load(&r->circ[id]);
    int64_t due;
    if (!c || c == NONE) continue;
    due = swit__breaker_tick(&c->b, now);
    if (due >= 0 && (next < 0 || due < next)) next = due;
  }
  return next < 0 ? -1 : next * 1000;
}

/* ------------------------------------------------------------------ */
/* Lifecycle */

int swit__resil_new(swit_host_t *h)
{
  swit__resil *r = calloc(1, sizeof *r);

  if (!r) return SWIT_E_NOMEM;
  r->host = h;
  r->circuit_k = -1;
  pthread_mutex_init(&r->mu, NULL);
  swit__rtimer_init(&r->timer);
  h->resil = r;
  return 0;
}

int swit__circuit_register(swit_host_t *h, char *err, size_t errlen)
{
  const swit_cfg_named *subs = &h->cfg->messaging.subscribers;
  swit__resil *r = h->resil;
  int any = 0, k;

  for (size_t i = 0; i < subs->n; i++) {
    const swit_cfg_subscriber *s =
        (const swit_cfg_subscriber *)subs->elems + i;
    char why[160];
    if (!s->circuit_breaker.enabled) continue;
    if (swit__breaker_check(&s->circuit_breaker, why, sizeof why)) {
      snprintf(err, errlen, "%s: messaging.subscribers.%s.circuit_breaker: "
               "%s", h->cfg->path, subs->names[i], why);
      return SWIT_E_CONFIG;
    }
    any = 1;
  }
  if (!any) return 0;
  if ((k = swit__icpt_add(h, &circuit_ops, r)) < 0) return k;
  r->circuit_k = k;
  if (swit__rtimer_start(&r->timer, circuit_scan, r) != 0) {
    snprintf(err, errlen, "cannot start the circuit breakers' timer thread");
    return SWIT_E_NOMEM;
  }
  return 0;
}

void swit__resil_free(swit_host_t *h)
{
  swit__resil *r = h->resil;

  if (!r) return;
  swit__rtimer_destroy(&r->timer);
  for (size_t id = 1; id <= SWIT__MAX_SUBS; id++) {
    swit__circuit *c = atomic_load(&r->circ[id]);
    if (!c || c == NONE) continue;
    swit__breaker_destroy(&c->b);
    free(c);
  }
  swit__named_breakers_free(r);
  swit__limit_free(r);
  swit__classify_free(r);
  swit__dedup_free(r);
  swit__pubcirc_free(r);
  pthread_mutex_destroy(&r->mu);
  free(r);
  h->resil = NULL;
}

/* ------------------------------------------------------------------ */
/* /metrics and /admin/status */

void swit__resil_labels(swit__buf *b, const swit__sub *s)
{
  swit__buf_add(b, "{topic=\"", 8);
  swit__buf_prom(b, s->topic, strlen(s->topic), 1);
  swit__buf_add(b, "\",group=\"", 9);
  swit__buf_prom(b, s->group, strlen(s->group), 1);
  swit__buf_add(b, "\"", 1);
}

int swit__resil_metrics_render(swit_host_t *h, swit__buf *b)
{
  swit__resil *r = h->resil;
  uint32_t max = r ? atomic_load(&r->maxsub) : 0;
  uint32_t nn = r ? atomic_load(&r->nnamed) : 0;

  if (swit__classify_render(h, b) || swit__dedup_render(h, b) ||
      swit__limit_render(h, b) || swit__pubcirc_render(h, b))
    return SWIT_E_NOMEM;
  if (!max && !nn) return 0;
  for (int kind = 0; kind < 3; kind++) {
    if (max) {
      swit__buf_printf(b, kind == 0
          ? "# HELP swit_circuit_state Circuit breaker of a subscription: "
            "0 closed, 1 open, 2 half-open\n# TYPE swit_circuit_state gauge\n"
          : kind == 1
          ? "# HELP swit_circuit_transitions_total Circuit breaker state "
            "changes, by the state entered\n"
            "# TYPE swit_circuit_transitions_total counter\n"
          : "# HELP swit_circuit_given_back_total Messages given back to "
            "the broker unhandled while the circuit was open\n"
            "# TYPE swit_circuit_given_back_total counter\n");
    }
    for (uint32_t id = 1; id <= max; id++) {
      swit__circuit *c = atomic_load(&r->circ[id]);
      if (!c || c == NONE) continue;
      if (kind == 0) {
        swit__buf_add(b, "swit_circuit_state", 18);
        swit__resil_labels(b, c->sub);
        swit__buf_printf(b, "} %d\n", atomic_load(&c->b.state));
      } else if (kind == 1) {
        const atomic_uint_fast64_t *v[3] = {&c->b.closed, &c->b.opened,
                                            &c->b.half_opened};
        for (int s = 0; s < 3; s++) {
          swit__buf_add(b, "swit_circuit_transitions_total", 30);
          swit__resil_labels(b, c->sub);
          swit__buf_printf(b, ",to=\"%s\"} %llu\n",
                           swit__breaker_state_name(s),
                           (unsigned long long)atomic_load(v[s]));
        }
      } else {
        swit__buf_add(b, "swit_circuit_given_back_total", 29);
        swit__resil_labels(b, c->sub);
        swit__buf_printf(b, "} %llu\n",
                         (unsigned long long)atomic_load(&c->b.refused));
      }
    }
  }
  if (nn) {
    swit__buf_printf(b, "# HELP swit_breaker_state A handler's breaker "
                     "(swit.breaker): 0 closed, 1 open, 2 half-open\n"
                     "# TYPE swit_breaker_state gauge\n");
    for (uint32_t i = 0; i < nn; i++) {
      swit__breaker *bk = swit__named_breaker_get(h, (int32_t)i);
      const char *name = swit__named_breaker_name(bk);
      swit__buf_add(b, "swit_breaker_state{name=\"", 25);
      swit__buf_prom(b, name, strlen(name), 1);
      swit__buf_printf(b, "\"} %d\n", atomic_load(&bk->state));
    }
  }
  return b->data ? 0 : SWIT_E_NOMEM;
}

int swit__resil_status_json(swit_host_t *h, swit__buf *b)
{
  swit__resil *r = h->resil;
  uint32_t max = r ? atomic_load(&r->maxsub) : 0;
  uint32_t nn = r ? atomic_load(&r->nnamed) : 0;
  int first = 1;

  swit__buf_add(b, ",\"circuits\":[", 13);
  for (uint32_t id = 1; id <= max; id++) {
    swit__circuit *c = atomic_load(&r->circ[id]);
    if (!c || c == NONE) continue;
    swit__buf_printf(b, "%s{\"topic\":", first ? "" : ",");
    first = 0;
    swit__buf_json(b, c->sub->topic, strlen(c->sub->topic));
    swit__buf_add(b, ",\"group\":", 9);
    swit__buf_json(b, c->sub->group, strlen(c->sub->group));
    swit__buf_printf(b, ",\"state\":\"%s\",\"opened\":%llu,\"given_back\":"
                     "%llu}", swit__breaker_state_name(atomic_load(&c->b.state)),
                     (unsigned long long)atomic_load(&c->b.opened),
                     (unsigned long long)atomic_load(&c->b.refused));
  }
  swit__buf_add(b, "],\"breakers\":[", 14);
  for (uint32_t i = 0; i < nn; i++) {
    swit__breaker *bk = swit__named_breaker_get(h, (int32_t)i);
    const char *name = swit__named_breaker_name(bk);
    swit__buf_printf(b, "%s{\"name\":", i ? "," : "");
    swit__buf_json(b, name, strlen(name));
    swit__buf_printf(b, ",\"state\":\"%s\",\"opened\":%llu}",
                     swit__breaker_state_name(atomic_load(&bk->state)),
                     (unsigned long long)atomic_load(&bk->opened));
  }
  swit__buf_add(b, "]", 1);
  swit__pubcirc_status_json(h, b);
  return b->data ? 0 : SWIT_E_NOMEM;
}
