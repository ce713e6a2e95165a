/*
 * test_resil.c - the resilience layer (host/resil/): the breaker's state
 * machine on its own (thresholds, failure-rate window, half-open trial,
 * critical trips, named breakers), and the circuit of a subscription on
 * the memory broker: it opens after failures and pauses the subscription
 * at the broker, gives back what was queued (nothing dead-lettered), a
 * SWIT_FATAL result trips it at once, it half-opens after
 * recovery_timeout and closes on successes with nothing lost; its state
 * in /metrics and /admin/status; the config's bounds. Error
 * classification: rules by error text and by result rewrite a failure
 * to retry, dead-letter at once, or critical (fatal, counted, opening
 * the circuit); bad rules are refused with their key. Deduplication:
 * the id set against a reference (count and time windows, deletions),
 * and on the memory broker a message published twice is handled once,
 * a retry is not a duplicate, a message without an id is handled.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "api/api.h"

static const swit_cfg_breaker base_cfg = {
  .enabled = 1, .failure_threshold = 3, .success_threshold = 2,
  .recovery_ms = 100, .failure_rate = 0, .min_calls = 4, .window_ms = 1000,
};

static void rec(swit__breaker *b, int64_t now, int outcome)
{
  uint8_t o = (uint8_t)outcome;
  swit__breaker_record(b, now, &o, 1);
}

/* ------------------------------------------------------------------ */
/* The state machine */

static void test_states(void)
{
  swit__breaker b;
  int64_t t = 1000;

  swit__breaker_init(&b, &base_cfg, NULL, NULL);
  CHECK(swit__breaker_allow(&b, t) == 1);
  rec(&b, t, SWIT__CB_FAIL);
  rec(&b, t, SWIT__CB_FAIL);
  rec(&b, t, SWIT__CB_OK);            /* a success resets the run */
  rec(&b, t, SWIT__CB_FAIL);
  rec(&b, t, SWIT__CB_FAIL);
  CHECK(atomic_load(&b.state) == SWIT__CB_CLOSED);
  rec(&b, t, SWIT__CB_FAIL);          /* three in a row */
  CHECK(atomic_load(&b.state) == SWIT__CB_OPEN);
  rec(&b, t, SWIT__CB_OK);            /* late: ignored while open */
  CHECK(atomic_load(&b.state) == SWIT__CB_OPEN);
  CHECK(swit__breaker_allow(&b, t + 50) == 0);
  CHECK(swit__breaker_tick(&b, t + 50) == t + 100);
  /* half-open after recovery_timeout: a trial of success_threshold calls */
  CHECK(swit__breaker_tick(&b, t + 100) == -1);
  CHECK(atomic_load(&b.state) == SWIT__CB_HALF_OPEN);
  CHECK(swit__breaker_allow(&b, t + 101) == 1);
  CHECK(swit__breaker_allow(&b, t + 101) == 1);
  CHECK(swit__breaker_allow(&b, t + 101) == 0);   /* trial used up */
  swit__breaker_release(&b);                      /* one gave no outcome */
  CHECK(swit__breaker_allow(&b, t + 101) == 1);
  rec(&b, t + 102, SWIT__CB_OK);
  CHECK(atomic_load(&b.state) == SWIT__CB_HALF_OPEN);
  rec(&b, t + 102, SWIT__CB_FAIL);                /* a failed trial */
  CHECK(atomic_load(&b.state) == SWIT__CB_OPEN);
  /* open -> half-open by a call after the timeout too */
  CHECK(swit__breaker_allow(&b, t + 202) == 1);
  CHECK(atomic_load(&b.state) == SWIT__CB_HALF_OPEN);
  CHECK(swit__breaker_allow(&b, t + 202) == 1);
  rec(&b, t + 203, SWIT__CB_OK);
  rec(&b, t + 203, SWIT__CB_OK);
  CHECK(atomic_load(&b.state) == SWIT__CB_CLOSED);
  CHECK(atomic_load(&b.opened) == 2 && atomic_load(&b.half_opened) == 2 &&
        atomic_load(&b.closed) == 1);
  CHECK(atomic_load(&b.refused) == 2);
  /* a critical outcome opens it at once */
  rec(&b, t + 300, SWIT__CB_CRITICAL);
  CHECK(atomic_load(&b.state) == SWIT__CB_OPEN);
  swit__breaker_destroy(&b);
}

static void test_rate(void)
{
  swit_cfg_breaker cfg = base_cfg;
  swit__breaker b;
  int64_t t = 5000;

  cfg.failure_threshold = 0;          /* the rate alone */
  cfg.failure_rate = 0.5;
  swit__breaker_init(&b, &cfg, NULL, NULL);
  rec(&b, t, SWIT__CB_FAIL);
  rec(&b, t, SWIT__CB_OK);
  rec(&b, t, SWIT__CB_FAIL);          /* 2 of 3: under min_calls */
  CHECK(atomic_load(&b.state) == SWIT__CB_CLOSED);
  rec(&b, t + 100, SWIT__CB_OK);
  rec(&b, t + 100, SWIT__CB_OK);
  rec(&b, t + 100, SWIT__CB_OK);
  rec(&b, t + 100, SWIT__CB_FAIL);    /* 3 of 7 */
  CHECK(atomic_load(&b.state) == SWIT__CB_CLOSED);
  /* a window later the old outcomes no longer count */
  rec(&b, t + 1500, SWIT__CB_OK);
  rec(&b, t + 1500, SWIT__CB_OK);
  rec(&b, t + 1500, SWIT__CB_FAIL);
  CHECK(atomic_load(&b.state) == SWIT__CB_CLOSED);   /* 1 of 3 */
  rec(&b, t + 1600, SWIT__CB_FAIL);                  /* 2 of 4 */
  CHECK(atomic_load(&b.state) == SWIT__CB_OPEN);
  swit__breaker_destroy(&b);
}

static void test_check(void)
{
  swit_cfg_breaker cfg = base_cfg;
  char err[200];

  CHECK(swit__breaker_check(&cfg, err, sizeof err) == 0);
  cfg.failure_threshold = 0;
  CHECK(swit__breaker_check(&cfg, err, sizeof err) == SWIT_E_CONFIG);
  CHECK(strstr(err, "never open") != NULL);
  cfg.failure_rate = 0.2;
  CHECK(swit__breaker_check(&cfg, err, sizeof err) == 0);
  cfg.window_ms = 5;
  CHECK(swit__breaker_check(&cfg, err, sizeof err) == SWIT_E_CONFIG);
}

static void test_named(void)
{
  swit_host_t *h = NULL;
  char err[256], big[200];
  swit_cfg_breaker other = base_cfg;
  int a, b;

  CHECK(swit_host_new_from_string(&h, "server: {admin: {listen: \"off\"}}\n"
                                  "messaging: {}\n", NULL, err,
                                  sizeof err) == 0);
  a = swit__breaker_named(h, "payments", 8, &base_cfg);
  b = swit__breaker_named(h, "stock", 5, &base_cfg);
  CHECK(a >= 0 && b >= 0 && a != b);
  CHECK(swit__breaker_named(h, "payments", 8, &base_cfg) == a);
  other.failure_threshold = 9;
  CHECK(swit__breaker_named(h, "payments", 8, &other) == SWIT_E_EXISTS);
  CHECK(swit__breaker_named(h, "", 0, &base_cfg) == SWIT_E_INVAL);
  CHECK(swit__breaker_named(h, "a\nb", 3, &base_cfg) == SWIT_E_INVAL);
  CHECK(swit__breaker_named(h, "a\0b", 3, &base_cfg) == SWIT_E_INVAL);
  memset(big, 'x', sizeof big);
  CHECK(swit__breaker_named(h, big, sizeof big, &base_cfg) == SWIT_E_INVAL);
  other.failure_threshold = 0;
  CHECK(swit__breaker_named(h, "never", 5, &other) == SWIT_E_INVAL);
  CHECK(swit__named_breaker_get(h, a) != NULL);
  CHECK(swit__named_breaker_get(h, 999) == NULL);
  CHECK(swit__named_breaker_get(h, -1) == NULL);
  swit__breaker_trip(swit__named_breaker_get(h, a), swit__now_ms());
  {
    swit__buf m = {0}, s = {0};
    CHECK(swit__resil_metrics_render(h, &m) == 0);
    CHECK(strstr(m.data, "swit_breaker_state{name=\"payments\"} 1\n") != NULL);
    CHECK(strstr(m.data, "swit_breaker_state{name=\"stock\"} 0\n") != NULL);
    CHECK(swit__resil_status_json(h, &s) == 0);
    CHECK(strstr(s.data, "{\"name\":\"payments\",\"state\":\"open\"") != NULL);
    free(m.data);
    free(s.data);
  }
  swit_host_free(h);
}

/* ------------------------------------------------------------------ */
/* The circuit of a subscription, on the memory broker */

#define NMSG 10

typedef struct seen {
  atomic_int calls, dlq, failing;
  atomic_int done[NMSG];      /* acked once */
  atomic_int ndone;
} seen;

static int handler(swit_msg_t *m, void *ud)
{
  seen *s = ud;
  size_t len;
  const char *p = swit_msg_payload(m, &len);
  int i = 0;

  for (size_t k = 1; k < len && p[k] >= '0' && p[k] <= '9'; k++)  /* "m<i>" */
    i = i * 10 + (p[k] - '0');

  atomic_fetch_add(&s->calls, 1);
  if (len == 4 && !memcmp(p, "boom", 4)) return SWIT_FATAL;
  if (atomic_load(&s->failing)) return SWIT_RETRY;
  if (i >= 0 && i < NMSG && atomic_exchange(&s->done[i], 1) == 0)
    atomic_fetch_add(&s->ndone, 1);
  return SWIT_ACK;
}

static int dlq_handler(swit_msg_t *m, void *ud)
{
  (void)m;
  atomic_fetch_add(&((seen *)ud)->dlq, 1);
  return SWIT_ACK;
}

static void wait_for(atomic_int *v, int want)
{
  for (int i = 0; i < 10000 && atomic_load(v) < want; i++) usleep(1000);
}

static swit__breaker *circuit(swit_host_t *h, uint32_t sub_id)
{
  /* made on the subscription's first message; swit__circuit starts with
   * its breaker (circuit.c) */
  for (int i = 0; i < 10000 && !atomic_load(&h->resil->circ[sub_id]); i++)
    usleep(1000);
  return (swit__breaker *)(void *)atomic_load(&h->resil->circ[sub_id]);
}

static void wait_state(swit__breaker *b, int state, atomic_uint_fast64_t *n,
                       uint64_t want)
{
  for (int i = 0; i < 10000 && b && (atomic_load(&b->state) != state ||
                                     atomic_load(n) < want); i++)
    usleep(1000);
}

static swit_host_t *start(const char *recovery, int threshold, seen *s)
{
  char yaml[1024], err[256];
  swit_host_t *h = NULL;

  snprintf(yaml, sizeof yaml,
           "server: {admin: {listen: \"off\"}}\n"
           "lua: {batch_size: 1}\n"
           "messaging:\n"
           "  subscribers:\n"
           "    default: {max_attempts: 1}\n"
           "    orders:\n"
           "      max_attempts: 1000\n"
           "      retry_delay: 1ms\n"
           "      retry_max_delay: 5ms\n"
           "      circuit_breaker: {enabled: true, failure_threshold: %d,\n"
           "                        success_threshold: 2,\n"
           "                        recovery_timeout: %s}\n"
           "  resources:\n"
           "    subscribers: {worker_pool_size: 1}\n", threshold, recovery);
  CHECK(swit_host_new_from_string(&h, yaml, NULL, err, sizeof err) == 0);
  if (!h) return NULL;
  CHECK(h->resil->circuit_k >= 0);
  CHECK(swit_host_handle(h, "orders", "orders", SWIT_ORDER_NONE, handler, s,
                         err, sizeof err) == 0);
  CHECK(swit_host_handle(h, "orders.dlq", NULL, SWIT_ORDER_NONE, dlq_handler,
                         s, err, sizeof err) == 0);
  CHECK(swit_host_start(h, err, sizeof err) == 0);
  return h;
}

static void publish(swit_host_t *h, const char *p)
{
  char err[256];
  CHECK(swit_host_publish(h, "orders", NULL, 0, p, strlen(p), NULL, NULL,
                          err, sizeof err) == 0);
}

static void publish_all(swit_host_t *h)
{
  for (int i = 0; i < NMSG; i++) {
    char p[16];
    snprintf(p, sizeof p, "m%d", i);
    publish(h, p);
  }
}

/* Open: paused at the broker, the queued messages given back, nothing
 * dead-lettered; the recovery timeout is long so it stays open. */
static void test_open_pauses(void)
{
  seen s = {0};
  swit_host_t *h;
  swit__breaker *b;
  swit__sub *sub;
  int paused;

  atomic_store(&s.failing, 1);
  if (!(h = start("1h", 3, &s))) return;
  publish_all(h);
  b = circuit(h, 1);
  CHECK(b != NULL);
  wait_state(b, SWIT__CB_OPEN, &b->opened, 1);
  CHECK(swit_host_wait_idle(h, 50, 10000) == 0);   /* all given back */
  CHECK(atomic_load(&b->state) == SWIT__CB_OPEN);
  CHECK(atomic_load(&b->opened) == 1);
  CHECK(atomic_load(&s.calls) == 3);               /* the three failures */
  CHECK(atomic_load(&s.dlq) == 0);
  sub = h->subs[0];
  pthread_mutex_lock(&sub->pause_lock);
  paused = sub->adapter_paused;
  pthread_mutex_unlock(&sub->pause_lock);
  CHECK(paused == 1);
  CHECK(atomic_load(&sub->subscribed) == 1);       /* membership kept */
  {
    swit__buf m = {0}, st = {0};
    CHECK(swit__resil_metrics_render(h, &m) == 0);
    CHECK(strstr(m.data, "swit_circuit_state{topic=\"orders\",group=\"orders\"}"
                 " 1\n") != NULL);
    CHECK(strstr(m.data, "swit_circuit_transitions_total{topic=\"orders\","
                 "group=\"orders\",to=\"open\"} 1\n") != NULL);
    CHECK(swit__resil_status_json(h, &st) == 0);
    CHECK(strstr(st.data, "\"circuits\":[{\"topic\":\"orders\",\"group\":"
                 "\"orders\",\"state\":\"open\"") != NULL);
    free(m.data);
    free(st.data);
  }
  CHECK(swit_host_stop(h, 5000) == 0);
  swit_host_free(h);
}

/* Half-open after the timeout, closed after two successes: every message
 * is handled once it recovers, none dead-lettered. */
static void test_recovers(void)
{
  seen s = {0};
  swit_host_t *h;
  swit__breaker *b;

  atomic_store(&s.failing, 1);
  if (!(h = start("100ms", 3, &s))) return;
  publish_all(h);
  b = circuit(h, 1);
  wait_state(b, SWIT__CB_OPEN, &b->opened, 1);
  CHECK(atomic_load(&b->opened) >= 1);
  atomic_store(&s.failing, 0);
  wait_for(&s.ndone, NMSG);
  CHECK(atomic_load(&s.ndone) == NMSG);
  wait_state(b, SWIT__CB_CLOSED, &b->closed, 1);
  CHECK(atomic_load(&b->state) == SWIT__CB_CLOSED);
  CHECK(atomic_load(&b->half_opened) >= 1);
  CHECK(atomic_load(&s.dlq) == 0);
  CHECK(swit_host_wait_idle(h, 20, 10000) == 0);
  CHECK(atomic_load(&h->subs[0]->paused_by) == 0);
  CHECK(swit_host_stop(h, 5000) == 0);
  swit_host_free(h);
}

/* SWIT_FATAL opens it at once, whatever the threshold. */
static void test_fatal_trips(void)
{
  seen s = {0};
  swit_host_t *h;
  swit__breaker *b;

  if (!(h = start("1h", 100, &s))) return;
  publish(h, "m0");
  publish(h, "boom");
  publish(h, "m1");
  wait_for(&s.dlq, 1);                 /* the fatal message itself */
  b = circuit(h, 1);
  wait_state(b, SWIT__CB_OPEN, &b->opened, 1);
  CHECK(atomic_load(&b->state) == SWIT__CB_OPEN);
  CHECK(swit_host_wait_idle(h, 50, 10000) == 0);
  CHECK(atomic_load(&s.dlq) == 1);
  CHECK(atomic_load(&s.ndone) == 1);   /* m1 waits at the broker */
  CHECK(swit_host_stop(h, 5000) == 0);
  swit_host_free(h);
}

/* No breaker configured: nothing registered. Bad configs: clear errors. */
static void test_config(void)
{
  swit_host_t *h = NULL;
  char err[256];

  CHECK(swit_host_new_from_string(&h, "messaging: {}\n", NULL, err,
                                  sizeof err) == 0);
  CHECK(h && h->resil->circuit_k == -1 && h->icpt.n == 1); /* metrics only */
  swit_host_free(h);
  h = NULL;
  CHECK(swit_host_new_from_string(&h, "messaging:\n  subscribers:\n"
        "    orders: {circuit_breaker: {enabled: true, failure_threshold: 0}}\n",
        NULL, err, sizeof err) == SWIT_E_CONFIG);
  CHECK(strstr(err, "messaging.subscribers.orders.circuit_breaker: "
               "failure_threshold and failure_rate are both 0") != NULL);
  CHECK(swit_host_new_from_string(&h, "messaging:\n  subscribers:\n"
        "    orders: {circuit_breaker: {failure_rate: 1.5}}\n",
        NULL, err, sizeof err) == SWIT_E_CONFIG);
  CHECK(strstr(err, "failure_rate") != NULL);
  CHECK(swit_host_new_from_string(&h, "messaging:\n  subscribers:\n"
        "    orders: {circuit_breaker: {window: 5ms}}\n",
        NULL, err, sizeof err) == SWIT_E_CONFIG);
  CHECK(swit_host_new_from_string(&h, "messaging:\n  subscribers:\n"
        "    orders: {circuit_breaker: {success_threshold: 0}}\n",
        NULL, err, sizeof err) == SWIT_E_CONFIG);
  CHECK(swit_host_new_from_string(&h, "messaging:\n  subscribers:\n"
        "    orders: {circuit_breaker: {bogus: 1}}\n",
        NULL, err, sizeof err) == SWIT_E_CONFIG);
}

/* ------------------------------------------------------------------ */
/* Error classification */

typedef struct kseen {
  atomic_int calls[6], dlq;
  char dlq_reason[6][80];
} kseen;

/* payload "<i>": message i fails as case i says, once (then acks) */
static int k_handler(swit_msg_t *m, void *ud)
{
  static const char *const why[] = {
    "bad input: field x",                       /* non_retryable */
    "the disk is on fire",                      /* critical */
    "transient glitch",                         /* retryable (a reject) */
    "something else",                           /* no rule: retried */
    "s.lua:3: msg:json(): invalid JSON payload: unexpected end", /* default */
    "bad input but result:fatal",               /* critical by result */
  };
  kseen *s = ud;
  size_t len;
  const char *p = swit_msg_payload(m, &len);
  int i = len == 1 ? p[0] - '0' : -1;

  if (i < 0 || i > 5) return SWIT_ACK;
  if (atomic_fetch_add(&s->calls[i], 1) > 0) return SWIT_ACK;
  swit_msg_set_error(m, why[i]);
  return i == 2 ? SWIT_REJECT : i == 5 ? SWIT_FATAL : SWIT_RETRY;
}

static int k_dlq(swit_msg_t *m, void *ud)
{
  kseen *s = ud;
  size_t len;
  const char *p = swit_msg_payload(m, &len);
  int i = len == 1 ? p[0] - '0' : -1;
  const char *e = swit_msg_header(m, "x-swit-error", &len);

  if (i >= 0 && i <= 5 && e)
    snprintf(s->dlq_reason[i], sizeof s->dlq_reason[i], "%.*s", (int)len, e);
  atomic_fetch_add(&s->dlq, 1);
  return SWIT_ACK;
}

static void test_classify(void)
{
  static const char yaml[] =
    "server: {admin: {listen: \"off\"}}\n"
    "messaging:\n"
    "  subscribers:\n"
    "    default: {max_attempts: 1}\n"
    "    orders:\n"
    "      max_attempts: 5\n"
    "      retry_delay: 1ms\n"
    "      circuit_breaker: {enabled: true, failure_threshold: 100,\n"
    "                        recovery_timeout: 1ms}\n"
    "      errors:\n"
    "        enabled: true\n"
    "        non_retryable: [\"bad input\"]\n"
    "        critical: [\"on fire\", \"result:fatal\"]\n"
    "        retryable: [glitch]\n"
    "  resources:\n"
    "    subscribers: {worker_pool_size: 1}\n";
  swit_host_t *h = NULL;
  kseen s = {0};
  char err[256];
  swit__breaker *b;

  CHECK(swit_host_new_from_string(&h, yaml, NULL, err, sizeof err) == 0);
  if (!h) return;
  CHECK(h->resil->classify != NULL);
  CHECK(swit_host_handle(h, "orders", "orders", SWIT_ORDER_NONE, k_handler,
                         &s, err, sizeof err) == 0);
  CHECK(swit_host_handle(h, "orders.dlq", NULL, SWIT_ORDER_NONE, k_dlq, &s,
                         err, sizeof err) == 0);
  CHECK(swit_host_start(h, err, sizeof err) == 0);
  for (int i = 0; i < 6; i++) {
    char p[2] = {(char)('0' + i), 0};
    publish(h, p);
  }
  wait_for(&s.dlq, 4);
  CHECK(swit_host_wait_idle(h, 50, 10000) == 0);
  /* 0, 1, 4, 5 dead-lettered after their one call; 2 and 3 retried */
  CHECK(atomic_load(&s.dlq) == 4);
  CHECK(!strcmp(s.dlq_reason[0], "bad input: field x"));
  CHECK(!strcmp(s.dlq_reason[1], "the disk is on fire"));
  CHECK(strstr(s.dlq_reason[4], "invalid JSON payload") != NULL);
  CHECK(!strcmp(s.dlq_reason[5], "bad input but result:fatal"));
  CHECK(s.dlq_reason[2][0] == 0 && s.dlq_reason[3][0] == 0);
  CHECK(atomic_load(&s.calls[0]) == 1 && atomic_load(&s.calls[1]) == 1);
  CHECK(atomic_load(&s.calls[2]) == 2 && atomic_load(&s.calls[3]) == 2);
  /* two criticals: the circuit opened (then recovered on its own) */
  b = circuit(h, 1);
  CHECK(b && atomic_load(&b->opened) >= 1);
  {
    swit__buf m = {0};
    CHECK(swit__resil_metrics_render(h, &m) == 0);
    CHECK(strstr(m.data, "swit_errors_critical_total{topic=\"orders\","
                 "group=\"orders\"} 2\n") != NULL);
    CHECK(strstr(m.data, "swit_errors_classified_total{topic=\"orders\","
                 "group=\"orders\",class=\"non_retryable\"} 2\n") != NULL);
    CHECK(strstr(m.data, "swit_errors_classified_total{topic=\"orders\","
                 "group=\"orders\",class=\"retryable\"} 1\n") != NULL);
    free(m.data);
  }
  CHECK(swit_host_stop(h, 5000) == 0);
  swit_host_free(h);
}

static void test_classify_config(void)
{
  swit_host_t *h = NULL;
  char err[256];

  CHECK(swit_host_new_from_string(&h, "messaging:\n  subscribers:\n"
        "    orders: {errors: {enabled: true, critical: [x, \"result:boom\"]}}\n",
        NULL, err, sizeof err) == SWIT_E_CONFIG);
  CHECK(strstr(err, "messaging.subscribers.orders.errors.critical[1]: "
               "'result:boom': expected result:retry") != NULL);
  CHECK(swit_host_new_from_string(&h, "messaging:\n  subscribers:\n"
        "    orders: {errors: {enabled: true, retryable: [\"\"]}}\n",
        NULL, err, sizeof err) == SWIT_E_CONFIG);
  CHECK(strstr(err, "errors.retryable[0]: a rule must be 1..256 bytes") != NULL);
  /* rules of a disabled section are not looked at, nothing registered */
  CHECK(swit_host_new_from_string(&h, "messaging:\n  subscribers:\n"
        "    orders: {errors: {critical: [x]}}\n",
        NULL, err, sizeof err) == 0);
  CHECK(h && h->resil->classify == NULL);
  swit_host_free(h);
}

/* ------------------------------------------------------------------ */
/* Deduplication */

static void test_dedup_set(void)
{
  swit__dedup_set d;
  enum { CAP = 64, N = 20000 };
  static uint64_t ref[CAP];        /* the last CAP inserted, the reference */
  uint64_t seed = 88172645463325252ULL;
  int bad = 0;

  CHECK(swit__dedup_set_init(&d, 0, 1000) == SWIT_E_INVAL);
  CHECK(swit__dedup_set_init(&d, CAP, 1000000) == 0);
  /* random ids, few distinct bits so homes collide; every step checks
   * that exactly the last CAP distinct ids are kept */
  for (int i = 0; i < N; i++) {
    uint64_t h;
    seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
    h = (seed & 0x3ff) | ((uint64_t)i << 40);    /* distinct */
    swit__dedup_add(&d, h, 1);
    ref[i % CAP] = h;
    if (i % 97 == 0)
      for (int k = 0; k < CAP && k <= i; k++)
        bad += !swit__dedup_seen(&d, ref[k], 1);
  }
  CHECK(bad == 0);
  CHECK(d.n == CAP);
  CHECK(!swit__dedup_seen(&d, 12345, 1));
  /* the time window */
  swit__dedup_set_free(&d);
  CHECK(swit__dedup_set_init(&d, 8, 100) == 0);
  swit__dedup_add(&d, 1, 1000);
  swit__dedup_add(&d, 2, 1050);
  swit__dedup_add(&d, 2, 1060);              /* kept once */
  CHECK(d.n == 2);
  CHECK(swit__dedup_seen(&d, 1, 1099) && swit__dedup_seen(&d, 2, 1099));
  CHECK(!swit__dedup_seen(&d, 1, 1100) && swit__dedup_seen(&d, 2, 1100));
  CHECK(!swit__dedup_seen(&d, 2, 1150));
  CHECK(d.n == 0);
  swit__dedup_set_free(&d);
  CHECK(swit__dedup_hash("a", 1) != swit__dedup_hash("b", 1));
}

typedef struct dseen {
  atomic_int calls, a_calls, retried;
} dseen;

static int d_handler(swit_msg_t *m, void *ud)
{
  dseen *s = ud;
  size_t len;
  const char *p = swit_msg_payload(m, &len);

  atomic_fetch_add(&s->calls, 1);
  if (len == 1 && p[0] == 'a') atomic_fetch_add(&s->a_calls, 1);
  if (len == 1 && p[0] == 'r' && swit_msg_attempt(m) == 1) {
    atomic_fetch_add(&s->retried, 1);
    return SWIT_RETRY;                         /* once: its retry handles */
  }
  return SWIT_ACK;
}

static void publish_id(swit_host_t *h, const char *p, const char *id)
{
  const char *hdr[] = {"Msg-Id", id, NULL};
  char err[256];
  CHECK(swit_host_publish(h, "orders", NULL, 0, p, strlen(p),
                          id ? hdr : NULL, NULL, err, sizeof err) == 0);
}

static void test_dedup(void)
{
  static const char yaml[] =
    "server: {admin: {listen: \"off\"}}\n"
    "messaging:\n"
    "  subscribers:\n"
    "    default:\n"
    "      retry_delay: 1ms\n"
    "      dedup: {enabled: true, header: msg-id, window_size: 3}\n"
    "  resources:\n"
    "    subscribers: {worker_pool_size: 2}\n";
  swit_host_t *h = NULL;
  dseen s = {0};
  char err[256];

  CHECK(swit_host_new_from_string(&h, yaml, NULL, err, sizeof err) == 0);
  if (!h) return;
  CHECK(h->resil->dedup != NULL);
  CHECK(swit_host_handle(h, "orders", NULL, SWIT_ORDER_NONE, d_handler, &s,
                         err, sizeof err) == 0);
  CHECK(swit_host_start(h, err, sizeof err) == 0);
  publish_id(h, "a", "id-1");
  CHECK(swit_host_wait_idle(h, 20, 10000) == 0);
  publish_id(h, "a", "id-1");                  /* a duplicate */
  publish_id(h, "r", "id-2");                  /* fails once, retried */
  publish_id(h, "n", NULL);                    /* no id: handled */
  publish_id(h, "n", NULL);
  CHECK(swit_host_wait_idle(h, 20, 10000) == 0);
  CHECK(atomic_load(&s.a_calls) == 1);
  CHECK(atomic_load(&s.retried) == 1);
  CHECK(atomic_load(&s.calls) == 5);           /* a, r twice, n, n */
  publish_id(h, "r", "id-2");                  /* finished: a duplicate */
  CHECK(swit_host_wait_idle(h, 20, 10000) == 0);
  CHECK(atomic_load(&s.calls) == 5);
  /* three more ids push id-1 out of the window of 3 */
  publish_id(h, "x", "id-3");
  publish_id(h, "x", "id-4");
  CHECK(swit_host_wait_idle(h, 20, 10000) == 0);
  publish_id(h, "a", "id-1");
  CHECK(swit_host_wait_idle(h, 20, 10000) == 0);
  CHECK(atomic_load(&s.a_calls) == 2);
  {
    swit__buf m = {0};
    CHECK(swit__resil_metrics_render(h, &m) == 0);
    CHECK(strstr(m.data, "swit_dedup_duplicates_total{topic=\"orders\","
                 "group=\"swit\"} 2\n") != NULL);
    CHECK(strstr(m.data, "swit_dedup_no_id_total{topic=\"orders\","
                 "group=\"swit\"} 2\n") != NULL);
    free(m.data);
  }
  CHECK(swit_host_stop(h, 5000) == 0);
  swit_host_free(h);
  CHECK(swit_host_new_from_string(&h, "messaging:\n  subscribers:\n"
        "    orders: {dedup: {enabled: true, header: \"\"}}\n",
        NULL, err, sizeof err) == SWIT_E_CONFIG);
  CHECK(strstr(err, "messaging.subscribers.orders.dedup.header") != NULL);
}

int main(void)
{
  test_states();
  test_rate();
  test_check();
  test_named();
  test_config();
  test_open_pauses();
  test_recovers();
  test_fatal_trips();
  test_classify();
  test_classify_config();
  test_dedup_set();
  test_dedup();
  return check_done("test_resil");
}
