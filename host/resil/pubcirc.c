/*
 * pubcirc.c - a circuit breaker per publish target (topic), as an
 * interceptor on the publish path: messaging.publishers.default.
 * circuit_breaker (the fields of the subscriptions' breakers).
 *
 * Every publish (handlers, timers, the C API, the HTTP ingress; not the
 * host's own dead-letter copies, which the core parks and retries
 * itself) asks its topic's breaker first: while it is open the publish
 * fails at once with SWIT_E_BROKER ("its circuit is open"), without
 * reaching the broker, so a handler's swit.publish returns nil, err and
 * the handler decides (retry it, dead-letter it). After the publish, the
 * outcome is recorded: success, or a failure the broker can heal
 * (SWIT_E_BROKER, _TIMEDOUT, _FULL, _STATE); a refusal that is the
 * caller's (a bad topic, too big) is no outcome. An open breaker
 * half-opens on the first publish after recovery_timeout and lets
 * success_threshold publishes through as its trial.
 *
 * Targets are made on their first publish, up to PC_MAX (then further
 * topics go without a breaker, logged once), in an insert-only open-
 * addressing table read without a lock. The breaker outcomes of a
 * publish are remembered in thread-local state between publish_before
 * and publish_after (publishes are synchronous per thread). Transitions
 * are logged; states and refusals are in /metrics. The host owns the
 * table (h->resil->pubcirc), freed with the resilience state.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obs/obs.h"
#include "resil/resil.h"

#define PC_MAX 1024           /* targets with a breaker */
#define PC_SLOTS 2048         /* table slots: a power of two > PC_MAX */
#define PC_CALL_MAX 16        /* distinct topics of one publish call */

typedef struct pc_target {
  swit__breaker b;
  struct swit__pubcirc *pc;
  size_t len;
  char topic[];
} pc_target;

struct swit__pubcirc {
  swit_host_t *h;
  pthread_mutex_t mu;         /* inserts */
  atomic_uint n;
  atomic_int full_warned;
  pc_target *_Atomic slot[PC_SLOTS];
};

/* This thread's publish in flight: the breakers that allowed it. */
static _Thread_local struct {
  struct swit__pubcirc *pc;
  size_t n;
  pc_target *t[PC_CALL_MAX];
} call;

static void pc_sync(swit__breaker *b, int from, void *ud)
{
  pc_target *t = ud;
  int to = atomic_load_explicit(&b->state, memory_order_relaxed);

  if (from != to)
    swit__log(&t->pc->h->log, to == SWIT__CB_OPEN ? SWIT_LOG_WARN
              : SWIT_LOG_INFO, "publish circuit of '%.*s': %s -> %s%s",
              (int)t->len, t->topic, swit__breaker_state_name(from),
              swit__breaker_state_name(to), to == SWIT__CB_OPEN
              ? ": its publishes fail at once" : to == SWIT__CB_CLOSED
              ? ": publishing again" : ": trial");
}

static uint32_t topic_hash(const char *s, size_t n)
{
  return (uint32_t)swit__dedup_hash(s, n);
}

/* The breaker of a topic, made on first use; NULL past PC_MAX. */
static pc_target *target_of(struct swit__pubcirc *pc, const char *topic,
                            size_t len)
{
  uint32_t i = topic_hash(topic, len) & (PC_SLOTS - 1);
  pc_target *t;

  for (uint32_t k = i;; k = (k + 1) & (PC_SLOTS - 1)) {
    t = atomic_load_explicit(&pc->slot[k], memory_order_acquire);
    if (!t) break;
    if (t->len == len && memcmp(t->topic, topic, len) == 0) return t;
  }
  pthread_mutex_lock(&pc->mu);
  for (;; i = (i + 1) & (PC_SLOTS - 1)) {
    t = atomic_load_explicit(&pc->slot[i], memory_order_relaxed);
    if (!t) break;
    if (t->len == len && memcmp(t->topic, topic, len) == 0) goto out;
  }
  if (atomic_load(&pc->n) >= PC_MAX) {
    if (!atomic_exchange(&pc->full_warned, 1))
      swit__log(&pc->h->log, SWIT_LOG_WARN, "publish circuits: %d topics "
                "have one; '%.*s' and later topics publish without one",
                PC_MAX, (int)len, topic);
    goto out;
  }
  if ((t = calloc(1, sizeof *t + len + 1)) != NULL) {
    t->pc = pc;
    t->len = len;
    memcpy(t->topic, topic, len);
    swit__breaker_init(&t->b, &swit__config_publisher(pc->h->cfg, "default")
                                   ->circuit_breaker, pc_sync, t);
    atomic_fetch_add(&pc->n, 1);
    atomic_store_explicit(&pc->slot[i], t, memory_order_release);
  }
out:
  pthread_mutex_unlock(&pc->mu);
  return t;
}

static void call_release(void)
{
  for (size_t k = 0; k < call.n; k++) swit__breaker_release(&call.t[k]->b);
  call.n = 0;
}

static const swit_msg_view *pc_before(void *hs, const swit_msg_view *m,
                                      size_t n, const swit__pub_info *pi,
                                      int *rc, char *err, size_t errlen)
{
  struct swit__pubcirc *pc = hs;
  int64_t now = 0;

  call.pc = pc;
  call.n = 0;
  if (pi->dead_letter) return m;
  for (size_t i = 0; i < n && call.n < PC_CALL_MAX; i++) {
    pc_target *t = target_of(pc, m[i].topic, m[i].topic_len);
    size_t k;
    if (!t) continue;
    for (k = 0; k < call.n && call.t[k] != t; k++) {}
    if (k < call.n) continue;              /* this call has asked it */
    if (!now) now = swit__now_ms();
    if (!swit__breaker_allow(&t->b, now)) {
      call_release();
      call.pc = NULL;
      snprintf(err, errlen, "publish to '%.*s': its circuit is open (the "
               "broker kept failing; messaging.publishers.default."
               "circuit_breaker)", (int)t->len, t->topic);
      *rc = SWIT_E_BROKER;
      return NULL;
    }
    call.t[call.n++] = t;
  }
  return m;
}

static void pc_after(void *hs, const swit_msg_view *m, size_t n, int rc,
                     uint64_t us)
{
  uint8_t outcome = rc == 0 ? SWIT__CB_OK : SWIT__CB_FAIL;
  int64_t now = swit__now_ms();

  (void)m;
  (void)n;
  (void)us;
  if (call.pc != hs) return;
  call.pc = NULL;
  if (rc != 0 && rc != SWIT_E_BROKER && rc != SWIT_E_TIMEDOUT &&
      rc != SWIT_E_FULL && rc != SWIT_E_STATE) {
    call_release();                        /* the caller's fault: no outcome */
    return;
  }
  for (size_t k = 0; k < call.n; k++)
    swit__breaker_record(&call.t[k]->b, now, &outcome, 1);
  call.n = 0;
}

static const swit__icpt_ops pubcirc_ops = {
  .name = "publish-circuit",
  .publish_before = pc_before,
  .publish_after = pc_after,
};

int swit__pubcirc_register(swit_host_t *h, char *err, size_t errlen)
{
  const swit_cfg_breaker *cb =
      &swit__config_publisher(h->cfg, "default")->circuit_breaker;
  struct swit__pubcirc *pc;
  char why[160];
  int rc;

  if (!cb->enabled) return 0;
  if (swit__breaker_check(cb, why, sizeof why)) {
    snprintf(err, errlen, "%s: messaging.publishers.default.circuit_breaker: "
             "%s", h->cfg->path, why);
    return SWIT_E_CONFIG;
  }
  if (!(pc = calloc(1, sizeof *pc))) return SWIT_E_NOMEM;
  pc->h = h;
  pthread_mutex_init(&pc->mu, NULL);
  if ((rc = swit__icpt_add(h, &pubcirc_ops, pc)) < 0) {
    pthread_mutex_destroy(&pc->mu);
    free(pc);
    return rc;
  }
  h->resil->pubcirc = pc;
  return 0;
}

void swit__pubcirc_free(swit__resil *r)
{
  struct swit__pubcirc *pc = r->pubcirc;

  if (!pc) return;
  for (size_t i = 0; i < PC_SLOTS; i++) {
    pc_target *t = atomic_load(&pc->slot[i]);
    if (!t) continue;
    swit__breaker_destroy(&t->b);
    free(t);
  }
  pthread_mutex_destroy(&pc->mu);
  free(pc);
  r->pubcirc = NULL;
}

int swit__pubcirc_state(swit_host_t *h, const char *topic)
{
  struct swit__pubcirc *pc = h->resil ? h->resil->pubcirc : NULL;
  size_t len = strlen(topic);

  if (!pc) return -1;
  for (uint32_t k = topic_hash(topic, len) & (PC_SLOTS - 1);;
       k = (k + 1) & (PC_SLOTS - 1)) {
    pc_target *t = atomic_load(&pc->slot[k]);
    if (!t) return -1;
    if (t->len == len && memcmp(t->topic, topic, len) == 0)
      return atomic_load(&t->b.state);
  }
}

int swit__pubcirc_render(swit_host_t *h, swit__buf *b)
{
  struct swit__pubcirc *pc = h->resil ? h->resil->pubcirc : NULL;

  if (!pc || !atomic_load(&pc->n)) return 0;
  for (int kind = 0; kind < 3; kind++) {
    swit__buf_printf(b, kind == 0
        ? "# HELP swit_publish_circuit_state Circuit breaker of a publish "
          "target: 0 closed, 1 open, 2 half-open\n"
          "# TYPE swit_publish_circuit_state gauge\n"
        : kind == 1
        ? "# HELP swit_publish_circuit_transitions_total Publish circuit "
          "state changes, by the state entered\n"
          "# TYPE swit_publish_circuit_transitions_total counter\n"
        : "# HELP swit_publish_circuit_refused_total Publishes failed at "
          "once because their topic's circuit was open\n"
          "# TYPE swit_publish_circuit_refused_total counter\n");
    for (size_t i = 0; i < PC_SLOTS; i++) {
      pc_target *t = atomic_load(&pc->slot[i]);
      const char *name = kind == 0 ? "swit_publish_circuit_state"
                         : kind == 1 ? "swit_publish_circuit_transitions_total"
                                     : "swit_publish_circuit_refused_total";
      if (!t) continue;
      if (kind == 1) {
        const atomic_uint_fast64_t *v[3] = {&t->b.closed, &t->b.opened,
                                            &t->b.half_opened};
        for (int s = 0; s < 3; s++) {
          swit__buf_printf(b, "%s{topic=\"", name);
          swit__buf_prom(b, t->topic, t->len, 1);
          swit__buf_printf(b, "\",to=\"%s\"} %llu\n",
                           swit__breaker_state_name(s),
                           (unsigned long long)atomic_load(v[s]));
        }
        continue;
      }
      swit__buf_printf(b, "%s{topic=\"", name);
      swit__buf_prom(b, t->topic, t->len, 1);
      swit__buf_printf(b, "\"} %llu\n", kind == 0
                       ? (unsigned long long)atomic_load(&t->b.state)
                       : (unsigned long long)atomic_load(&t->b.refused));
    }
  }
  return b->data ? 0 : SWIT_E_NOMEM;
}

void swit__pubcirc_status_json(swit_host_t *h, swit__buf *b)
{
  struct swit__pubcirc *pc = h->resil ? h->resil->pubcirc : NULL;
  int first = 1;

  swit__buf_add(b, ",\"publish_circuits\":[", 21);
  for (size_t i = 0; pc && i < PC_SLOTS; i++) {
    pc_target *t = atomic_load(&pc->slot[i]);
    if (!t) continue;
    swit__buf_printf(b, "%s{\"topic\":", first ? "" : ",");
    first = 0;
    swit__buf_json(b, t->topic, t->len);
    swit__buf_printf(b, ",\"state\":\"%s\",\"opened\":%llu,\"refused\":%llu}",
                     swit__breaker_state_name(atomic_load(&t->b.state)),
                     (unsigned long long)atomic_load(&t->b.opened),
                     (unsigned long long)atomic_load(&t->b.refused));
  }
  swit__buf_add(b, "]", 1);
}
