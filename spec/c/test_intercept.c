/*
 * test_intercept.c - the interception layer (host/core/intercept.h) on the
 * memory broker: hook order around a batch (registration order before the
 * handlers, the reverse after), a msgs_before hook that refuses messages
 * (their handler never runs; they are dead-lettered with its reason), a
 * hook that rewrites headers the handler then sees, settle outcomes, and
 * publish hooks that see, rewrite and refuse publishes.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/host_int.h"
#include "core/msg_int.h"

/* ------------------------------------------------------------------ */
/* Two interceptors, A (outer) and B (inner) */

#define LOG_CAP 16
static char order[LOG_CAP][8];  /* the first batch's batch hooks, in order */
static atomic_int norder;

typedef struct rec {
  atomic_int batches, settled_dead, settled_ack, workers;
  atomic_int published, refused;
} rec;


static rec A, B;

/* A's batch_after runs last: it closes the first batch */
static void note(const char *what)
{
  int i;
  if (atomic_load(&A.batches) != 0) return;
  i = atomic_fetch_add(&norder, 1);
  if (i < LOG_CAP) snprintf(order[i], sizeof order[i], "%s", what);
}

static int worker_init(void *hs, swit__worker *w, void **ws)
{
  (void)w;
  *ws = hs;
  atomic_fetch_add(&((rec *)hs)->workers, 1);
  return 0;
}

static void batch_before(void *ws, swit__worker *w, size_t n)
{
  rec *r = ws;
  (void)w;
  (void)n;
  note(r == &A ? "Abb" : "Bbb");
}

static void batch_after(void *ws, swit__worker *w, size_t n, uint64_t now)
{
  rec *r = ws;
  (void)w;
  (void)n;
  (void)now;
  note(r == &A ? "Aba" : "Bba");
  atomic_fetch_add(&r->batches, 1);
}

/* A: adds the header x-seen-by: A to every message */
static int a_before(void *ws, swit__worker *w, uint32_t i)
{
  swit_ffi_msg *m = &w->ffi.msgs[i];
  (void)ws;
  return swit__msg_set_header(w, m, "x-seen-by", 9, "A", 1) == 0 ? 0 : 1;
}
SWIT__ICPT_MSGS_BEFORE(a_before_all, a_before)

/* B: refuses payloads starting with "bad" on topic "orders" */
static int b_before(void *ws, swit__worker *w, uint32_t i)
{
  swit_ffi_msg *m = &w->ffi.msgs[i];
  (void)ws;
  if (m->v.topic_len == 6 && memcmp(m->v.topic, "orders", 6) == 0 &&
      m->v.payload_len >= 3 && memcmp(m->v.payload, "bad", 3) == 0) {
    swit__msg_set_result(w, m, SWIT_REJECT, "refused by B", 12);
    return 1;
  }
  return 0;
}
SWIT__ICPT_MSGS_BEFORE(b_before_all, b_before)

static void settled(void *ws, swit__worker *w, const swit__item *it, int out)
{
  rec *r = ws;
  (void)w;
  (void)it;
  if (out == SWIT__OUT_DEAD) atomic_fetch_add(&r->settled_dead, 1);
  if (out == SWIT__OUT_ACK) atomic_fetch_add(&r->settled_ack, 1);
}

/* B refuses publishes to "forbidden" */
static const swit_msg_view *b_publish(void *hs, const swit_msg_view *m,
                                      size_t n, const swit__pub_info *pi,
                                      int *rc, char *err, size_t errlen)
{
  (void)hs;
  (void)n;
  (void)pi;
  if (m->topic_len == 9 && memcmp(m->topic, "forbidden", 9) == 0) {
    *rc = SWIT_E_INVAL;
    snprintf(err, errlen, "B refuses topic 'forbidden'");
    return NULL;
  }
  return m;
}

static void a_publish_after(void *hs, const swit_msg_view *m, size_t n,
                            int rc, uint64_t us)
{
  rec *r = hs;
  (void)m;
  (void)us;
  atomic_fetch_add(rc == 0 ? &r->published : &r->refused, (int)n);
}

static const swit__icpt_ops ops_a = {
  .name = "A",
  .flags = SWIT__ICPT_F_SETTLED_ACKS,
  .worker_init = worker_init,
  .batch_before = batch_before,
  .msgs_before = a_before_all,
  .batch_after = batch_after,
  .settled = settled,
  .publish_after = a_publish_after,
};

static const swit__icpt_ops ops_b = {
  .name = "B",
  .worker_init = worker_init,
  .batch_before = batch_before,
  .msgs_before = b_before_all,
  .batch_after = batch_after,
  .settled = settled,
  .publish_before = b_publish,
};

/* ------------------------------------------------------------------ */
/* Handlers */

typedef struct seen {
  atomic_int calls, bad_calls, with_header;
  atomic_int dlq, dlq_reason_ok;
} seen;

static int handler(swit_msg_t *m, void *ud)
{
  seen *s = ud;
  size_t len;
  const char *p = swit_msg_payload(m, &len);
  const char *hv = swit_msg_header(m, "x-seen-by", &len);

  atomic_fetch_add(&s->calls, 1);
  if (p && len >= 3 && memcmp(p, "bad", 3) == 0) atomic_fetch_add(&s->bad_calls, 1);
  if (hv && len == 1 && hv[0] == 'A') atomic_fetch_add(&s->with_header, 1);
  return SWIT_ACK;
}

static int dlq_handler(swit_msg_t *m, void *ud)
{
  seen *s = ud;
  size_t len;
  const char *e = swit_msg_header(m, "x-swit-error", &len);

  atomic_fetch_add(&s->dlq, 1);
  if (e && len == 12 && memcmp(e, "refused by B", 12) == 0)
    atomic_fetch_add(&s->dlq_reason_ok, 1);
  return SWIT_ACK;
}

static void wait_for(atomic_int *v, int want)
{
  for (int i = 0; i < 5000 && atomic_load(v) < want; i++) usleep(1000);
}

static void test_chain(void)
{
  static const char yaml[] =
    "server: {admin: {listen: \"off\"}}\n"
    "messaging:\n"
    "  subscribers:\n"
    "    default: {max_attempts: 1, retry_delay: 0ms}\n"
    "  resources:\n"
    "    subscribers: {worker_pool_size: 1}\n";
  swit_host_t *h = NULL;
  seen s = {0};
  char err[256];
  int good = 0, bad = 0;

  CHECK(swit_host_new_from_string(&h, yaml, NULL, err, sizeof err) == 0);
  CHECK(swit__icpt_add(h, &ops_a, &A) >= 0);
  CHECK(swit__icpt_add(h, &ops_b, &B) >= 0);
  CHECK(swit_host_handle(h, "orders", NULL, SWIT_ORDER_NONE, handler, &s,
                         err, sizeof err) == 0);
  CHECK(swit_host_handle(h, "orders.dlq", NULL, SWIT_ORDER_NONE, dlq_handler,
                         &s, err, sizeof err) == 0);
  CHECK(swit_host_start(h, err, sizeof err) == 0);
  for (int i = 0; i < 100; i++) {
    const char *p = i % 4 == 0 ? "bad order" : "good order";
    CHECK(swit_host_publish(h, "orders", NULL, 0, p, strlen(p), NULL, NULL,
                            err, sizeof err) == 0);
    if (i % 4 == 0) bad++;
    else good++;
  }
  /* B refuses this one before the adapter sees it */
  CHECK(swit_host_publish(h, "forbidden", NULL, 0, "x", 1, NULL, NULL, err,
                          sizeof err) == SWIT_E_INVAL);
  CHECK(strstr(err, "B refuses") != NULL);
  wait_for(&s.dlq, bad);
  wait_for(&s.calls, good);
  CHECK(swit_host_stop(h, 5000) == 0);

  /* refused messages never reached the handler; the rest all did, with
   * A's header; the refused went to the dead-letter topic with B's reason */
  CHECK(atomic_load(&s.bad_calls) == 0);
  CHECK(atomic_load(&s.calls) == good);
  CHECK(atomic_load(&s.with_header) == good);
  CHECK(atomic_load(&s.dlq) == bad);
  CHECK(atomic_load(&s.dlq_reason_ok) == bad);
  CHECK(atomic_load(&A.settled_dead) == bad && atomic_load(&B.settled_dead) == bad);
  /* only A asked for acks: the goods and the dead letters' own
   * deliveries (their originals settled as dead, not as acks) */
  CHECK(atomic_load(&A.settled_ack) == good + bad);
  CHECK(atomic_load(&B.settled_ack) == 0);
  /* every publish passed A's after-hook: 100 + the dead letters, and the
   * refused one */
  CHECK(atomic_load(&A.published) == 100 + bad);
  CHECK(atomic_load(&A.refused) == 1);
  CHECK(atomic_load(&A.workers) == 1 && atomic_load(&B.workers) == 1);
  /* one batch's order: A before B, then B after, A after */
  CHECK(atomic_load(&norder) == 4);
  CHECK(!strcmp(order[0], "Abb") && !strcmp(order[1], "Bbb"));
  CHECK(!strcmp(order[2], "Bba") && !strcmp(order[3], "Aba"));
  swit_host_free(h);
}

/* A full chain is refused with SWIT_E_FULL, not overrun. */
static void test_limits(void)
{
  swit_host_t *h = NULL;
  char err[256];
  static const swit__icpt_ops big = {.name = "big", .carry_size = 40};
  int rc = 0;

  CHECK(swit_host_new_from_string(&h, "messaging: {}\n", NULL, err,
                                  sizeof err) == 0);
  CHECK(swit__icpt_add(h, NULL, NULL) == SWIT_E_INVAL);
  for (int i = 0; i < SWIT__ICPT_MAX && rc >= 0; i++)
    rc = swit__icpt_add(h, &big, NULL);
  CHECK(rc == SWIT_E_FULL);         /* the carry ran out first */
  swit_host_free(h);
}

int main(void)
{
  test_chain();
  test_limits();
  return check_done("test_intercept");
}
