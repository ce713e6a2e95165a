/*
 * test_limit.c - the intake limits (host/resil/limit.c): the token bucket
 * on a simulated clock (rate, burst, refill, a clock going back, hostile
 * values, the long-run bound burst + rate * t), the room a delivery gets
 * (tokens and the concurrency cap), and on the memory broker with four
 * workers: a concurrency cap is never exceeded by the handlers running at
 * once, a rate limit holds the messages back (the run lasts at least
 * (N - burst) / rate: it can only fail if the limit lets too much in, not
 * on a slow machine), every message is handled exactly once, nothing is
 * dead-lettered, and the pauses are in /metrics.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "api/api.h"

/* ------------------------------------------------------------------ */
/* The bucket */

static void test_bucket(void)
{
  swit__bucket b;
  int64_t t = 1000000;

  /* hostile values */
  CHECK(swit__bucket_init(&b, 0, 10, t) == SWIT_E_INVAL);
  CHECK(swit__bucket_init(&b, -5, 10, t) == SWIT_E_INVAL);
  CHECK(swit__bucket_init(&b, NAN, 10, t) == SWIT_E_INVAL);
  CHECK(swit__bucket_init(&b, INFINITY, 10, t) == SWIT_E_INVAL);
  CHECK(swit__bucket_init(&b, 1e7, 10, t) == SWIT_E_INVAL);
  CHECK(swit__bucket_init(&b, 0.0001, 10, t) == SWIT_E_INVAL);
  CHECK(swit__bucket_init(&b, 100, 0, t) == SWIT_E_INVAL);
  CHECK(swit__bucket_init(&b, 100, 0.5, t) == SWIT_E_INVAL);
  CHECK(swit__bucket_init(&b, 100, NAN, t) == SWIT_E_INVAL);
  CHECK(swit__bucket_init(&b, 100, 1e7, t) == SWIT_E_INVAL);

  /* a full bucket: burst at once, then nothing */
  CHECK(swit__bucket_init(&b, 100, 10, t) == 0);
  CHECK(swit__bucket_take(&b, t, 0) == 0);
  CHECK(swit__bucket_take(&b, t, 4) == 4);
  CHECK(swit__bucket_take(&b, t, SIZE_MAX) == 6);
  CHECK(swit__bucket_take(&b, t, 1) == 0);
  CHECK(swit__bucket_due(&b, t) == t + 10000);    /* 1 / 100 s */
  /* refill: 100/s is one per 10 ms, fractions kept */
  CHECK(swit__bucket_take(&b, t + 5000, 10) == 0);
  CHECK(swit__bucket_take(&b, t + 10000, 10) == 1);
  CHECK(swit__bucket_take(&b, t + 55000, 10) == 4);
  CHECK(swit__bucket_due(&b, t + 55000) == t + 60000);
  /* a clock going back refills nothing and takes nothing away */
  CHECK(swit__bucket_take(&b, t, 10) == 0);
  CHECK(swit__bucket_take(&b, t + 60000, 10) == 1);
  /* a long idle time fills it to burst, not beyond */
  CHECK(swit__bucket_take(&b, t + 3600000000LL, SIZE_MAX) == 10);
  CHECK(swit__bucket_take(&b, INT64_MAX, SIZE_MAX) == 10);
  CHECK(swit__bucket_due(&b, INT64_MAX - 1) == INT64_MAX);   /* saturates */
  /* the smallest rate: due within 1000 s */
  CHECK(swit__bucket_init(&b, 0.001, 1, t) == 0);
  CHECK(swit__bucket_take(&b, t, 5) == 1);
  CHECK(swit__bucket_due(&b, t) >= t + 999999999LL &&
        swit__bucket_due(&b, t) <= t + 1000000001LL);
  /* burst 1e6 at 1e6/s */
  CHECK(swit__bucket_init(&b, 1e6, 1e6, t) == 0);
  CHECK(swit__bucket_take(&b, t, SIZE_MAX) == 1000000);
  CHECK(swit__bucket_take(&b, t + 1, SIZE_MAX) == 1);
}

/* Over 10 simulated seconds of a flood (a take every 1 ms, or at odd
 * intervals), the total is within burst + rate * t; taken every 1 ms
 * (the bucket never full, so nothing of the refill is lost) not below
 * burst + rate * t - 1. */
static void test_bucket_long_run(void)
{
  static const double rates[] = {1, 7.5, 100, 333.3, 5000};
  for (size_t r = 0; r < sizeof rates / sizeof *rates; r++) {
    for (int odd = 0; odd < 2; odd++) {
      swit__bucket b;
      int64_t t0 = 5000, t = t0, last = t0, span = 10000000;
      uint64_t total = 0;
      unsigned seed = 7;
      CHECK(swit__bucket_init(&b, rates[r], 20, t0) == 0);
      while (t - t0 <= span) {
        total += swit__bucket_take(&b, t, 1000);
        last = t;
        CHECK((double)total <= 20 + rates[r] * (double)(t - t0) / 1e6 + 1e-6);
        seed = seed * 1103515245u + 12345u;
        t += odd ? 1 + (int64_t)(seed >> 16) % 20000 : 1000;
      }
      if (!odd)       /* takes 1 ms apart never find the bucket full */
        CHECK((double)total >= 20 + rates[r] * (double)(last - t0) / 1e6 - 1);
    }
  }
}

static void test_room(void)
{
  CHECK(swit__limit_room(10, SIZE_MAX, 0, 0) == 10);
  CHECK(swit__limit_room(10, 3, 0, 0) == 3);
  CHECK(swit__limit_room(10, SIZE_MAX, 4, 1) == 3);
  CHECK(swit__limit_room(10, 2, 4, 1) == 2);
  CHECK(swit__limit_room(10, SIZE_MAX, 4, 4) == 0);
  CHECK(swit__limit_room(10, SIZE_MAX, 4, 9) == 0);     /* over: none */
  CHECK(swit__limit_room(0, SIZE_MAX, 4, 0) == 0);
  CHECK(swit__limit_room(SIZE_MAX, SIZE_MAX, 1000000, 0) == 1000000);
  CHECK(swit__limit_room(5, 0, 0, 0) == 0);
}

/* ------------------------------------------------------------------ */
/* On the memory broker */

#define NMSG 300

typedef struct seen {
  atomic_int running, max_running;
  atomic_int done[NMSG];
  atomic_int ndone, twice, dlq;
  atomic_int_fast64_t last_us;
  int sleep_us;
} seen;

static int handler(swit_msg_t *m, void *ud)
{
  seen *s = ud;
  size_t len;
  const char *p = swit_msg_payload(m, &len);
  int i = 0, now = atomic_fetch_add(&s->running, 1) + 1;
  int max = atomic_load(&s->max_running);

  while (now > max && !atomic_compare_exchange_weak(&s->max_running, &max,
                                                    now)) {}
  for (size_t k = 0; k < len && p[k] >= '0' && p[k] <= '9'; k++)
    i = i * 10 + (p[k] - '0');
  atomic_store(&s->last_us, (int_fast64_t)swit__now_us());
  if (s->sleep_us) usleep((useconds_t)s->sleep_us);
  if (i >= 0 && i < NMSG) {
    if (atomic_exchange(&s->done[i], 1) == 0) atomic_fetch_add(&s->ndone, 1);
    else atomic_fetch_add(&s->twice, 1);
  }
  atomic_fetch_sub(&s->running, 1);
  return SWIT_ACK;
}

static int dlq_handler(swit_msg_t *m, void *ud)
{
  (void)m;
  atomic_fetch_add(&((seen *)ud)->dlq, 1);
  return SWIT_ACK;
}

static swit_host_t *start(const char *limits, seen *s)
{
  char yaml[1024], err[256];
  swit_host_t *h = NULL;

  snprintf(yaml, sizeof yaml,
           "server: {admin: {listen: \"off\"}}\n"
           "messaging:\n"
           "  subscribers:\n"
           "    orders: %s\n"
           "  resources:\n"
           "    subscribers: {worker_pool_size: 4}\n", limits);
  CHECK(swit_host_new_from_string(&h, yaml, NULL, err, sizeof err) == 0);
  if (!h) {
    fprintf(stderr, "%s\n", err);
    return NULL;
  }
  CHECK(h->resil->limits != NULL);
  CHECK(swit_host_handle(h, "orders", "orders", SWIT_ORDER_NONE, handler, s,
                         err, sizeof err) == 0);
  CHECK(swit_host_handle(h, "orders.dlq", NULL, SWIT_ORDER_NONE, dlq_handler,
                         s, err, sizeof err) == 0);
  CHECK(swit_host_start(h, err, sizeof err) == 0);
  return h;
}

static void publish_all(swit_host_t *h)
{
  char err[256];
  for (int i = 0; i < NMSG; i++) {
    char p[16];
    snprintf(p, sizeof p, "%d", i);
    CHECK(swit_host_publish(h, "orders", NULL, 0, p, strlen(p), NULL, NULL,
                            err, sizeof err) == 0);
  }
}

/* Every message handled exactly once, none dead-lettered, none held. */
static void all_handled_once(swit_host_t *h, seen *s)
{
  for (int i = 0; i < 30000 && atomic_load(&s->ndone) < NMSG; i++)
    usleep(1000);
  CHECK(swit_host_wait_idle(h, 50, 10000) == 0);
  CHECK(atomic_load(&s->ndone) == NMSG);
  CHECK(atomic_load(&s->twice) == 0);
  CHECK(atomic_load(&s->dlq) == 0);
  CHECK(swit__limit_held(h, h->subs[0]) == 0);
  CHECK(atomic_load(&h->subs[0]->inflight) == 0);
}

static void check_metrics(swit_host_t *h, const char *by)
{
  swit__buf m = {0};
  char want[160];
  const char *at;

  CHECK(swit__resil_metrics_render(h, &m) == 0);
  snprintf(want, sizeof want, "swit_intake_pauses_total{topic=\"orders\","
           "group=\"orders\",by=\"%s\"} ", by);
  at = m.data ? strstr(m.data, want) : NULL;
  CHECK(at != NULL && strtoull(at + strlen(want), NULL, 10) >= 1);
  CHECK(m.data && strstr(m.data, "swit_intake_held{topic=\"orders\","
                         "group=\"orders\"} 0\n") != NULL);
  free(m.data);
}

static void test_concurrency(void)
{
  seen *s = calloc(1, sizeof *s);
  swit_host_t *h;

  s->sleep_us = 500;
  if (!(h = start("{concurrency: 2}", s))) return;
  publish_all(h);
  all_handled_once(h, s);
  CHECK(atomic_load(&s->max_running) >= 1);
  CHECK(atomic_load(&s->max_running) <= 2);       /* the cap, strictly */
  check_metrics(h, "concurrency");
  CHECK(swit_host_stop(h, 5000) == 0);
  swit_host_free(h);
  free(s);
}

static void test_rate(void)
{
  seen *s = calloc(1, sizeof *s);
  swit_host_t *h;
  int64_t t0 = (int64_t)swit__now_us();

  if (!(h = start("{rate_limit: {rate: 1000, burst: 20}}", s))) return;
  publish_all(h);
  all_handled_once(h, s);
  /* the bucket started full at or after t0: the last of NMSG messages
   * cannot have been let in before (NMSG - burst) / rate */
  CHECK(atomic_load(&s->last_us) - t0 >= (int64_t)(NMSG - 20) * 1000);
  check_metrics(h, "rate_limit");
  CHECK(swit_host_stop(h, 5000) == 0);
  swit_host_free(h);
  free(s);
}

/* Both limits; the stop comes while messages are held: they are handled
 * within the limits while the host drains, none lost. */
static void test_stop_while_held(void)
{
  seen *s = calloc(1, sizeof *s);
  swit_host_t *h;

  s->sleep_us = 200;
  if (!(h = start("{concurrency: 3, rate_limit: {rate: 2000, burst: 5}}",
                  s)))
    return;
  publish_all(h);
  CHECK(swit_host_stop(h, 20000) == 0);
  CHECK(atomic_load(&s->ndone) == NMSG);
  CHECK(atomic_load(&s->twice) == 0);
  CHECK(atomic_load(&s->max_running) <= 3);
  swit_host_free(h);
  free(s);
}

/* No limit configured: no interceptor, nothing held. */
static void test_none(void)
{
  swit_host_t *h = NULL;
  char err[256];

  CHECK(swit_host_new_from_string(&h, "messaging:\n  subscribers:\n"
        "    orders: {max_attempts: 2}\n", NULL, err, sizeof err) == 0);
  CHECK(h && h->resil->limits == NULL && !h->icpt.any_intake);
  swit_host_free(h);
  h = NULL;
  CHECK(swit_host_new_from_string(&h, "messaging:\n  subscribers:\n"
        "    orders: {concurrency: 0}\n", NULL, err, sizeof err) ==
        SWIT_E_CONFIG);
  CHECK(strstr(err, "messaging.subscribers.orders.concurrency") != NULL);
  CHECK(swit_host_new_from_string(&h, "messaging:\n  subscribers:\n"
        "    default: {rate_limit: {rate: 0.0}}\n", NULL, err, sizeof err) ==
        SWIT_E_CONFIG);
  CHECK(strstr(err, "messaging.subscribers.default.rate_limit.rate") != NULL);
}

int main(void)
{
  test_bucket();
  test_bucket_long_run();
  test_room();
  test_none();
  test_concurrency();
  test_rate();
  test_stop_while_held();
  return check_done("test_limit");
}
