/*
 * test_queue.c - unit tests of the worker queue, the retry heap and
 * backoff, and the dispatcher's routing and backpressure, driven without
 * a broker: a fake adapter counts pause/resume calls.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/host_int.h"

/* ------------------------------------------------------------------ */
/* A fake adapter: only pause/resume are called by the dispatcher. */

static atomic_int pauses, resumes;

static int fake_pause(swit_broker *b, void *handle)
{
  (void)b, (void)handle;
  atomic_fetch_add(&pauses, 1);
  return 0;
}

static int fake_resume(swit_broker *b, void *handle)
{
  (void)b, (void)handle;
  atomic_fetch_add(&resumes, 1);
  return 0;
}

static const swit_broker_ops fake_ops = {
  .name = "fake", .pause = fake_pause, .resume = fake_resume,
};

static swit_msg_view view(const char *key)
{
  return (swit_msg_view){.topic = "t", .topic_len = 1, .key = key,
                         .key_len = key ? (uint32_t)strlen(key) : 0,
                         .partition = -1};
}

/* ------------------------------------------------------------------ */

static void test_queue_fifo_and_wrap(void)
{
  swit__queue q;
  swit__sub sub = {.id = 1};
  swit__item in[10], out[10];
  uint32_t resumed[SWIT__MAX_SUBS + 1];
  size_t nres, n;

  CHECK(swit__queue_init(&q, 8, 100, 1) == 0);
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 6; i++) in[i] = (swit__item){.token = (uint64_t)(round * 10 + i)};
    swit__queue_push(&q, &sub, in, 6);
    n = swit__queue_pop(&q, out, 4, 0, resumed, &nres);
    CHECK(n == 4);
    n += swit__queue_pop(&q, out + 4, 10, 0, resumed, &nres);
    CHECK(n == 6);
    for (int i = 0; i < 6; i++) CHECK(out[i].token == (uint64_t)(round * 10 + i));
  }
  CHECK(swit__queue_pop(&q, out, 10, 0, resumed, &nres) == 0);
  swit__queue_destroy(&q);
}

static void test_queue_high_and_low_water(void)
{
  swit__queue q;
  swit__sub a = {.id = 1}, b = {.id = 2};
  swit__item in[8] = {{0}}, out[8];
  uint32_t resumed[SWIT__MAX_SUBS + 1];
  size_t nres;

  CHECK(swit__queue_init(&q, 16, 4, 1) == 0);
  CHECK(swit__queue_push(&q, &a, in, 3) == 0);
  CHECK(swit__queue_push(&q, &a, in, 1) == 1);  /* reaches high: pause a */
  CHECK(swit__queue_push(&q, &a, in, 1) == 0);  /* already paused by us */
  CHECK(swit__queue_push(&q, &b, in, 1) == 1);  /* b too */
  swit__queue_pop(&q, out, 3, 0, resumed, &nres);
  CHECK(nres == 0);                              /* 3 left, low is 1 */
  swit__queue_pop(&q, out, 2, 0, resumed, &nres);
  CHECK(nres == 2 && resumed[0] == 1 && resumed[1] == 2);
  swit__queue_destroy(&q);
}

static swit__queue blocking_q;

static void *slow_consumer(void *arg)
{
  swit__item out[4];
  uint32_t resumed[SWIT__MAX_SUBS + 1];
  size_t nres, got = 0;

  (void)arg;
  while (got < 100)
    got += swit__queue_pop(&blocking_q, out, 4, -1, resumed, &nres);
  return NULL;
}

static void test_queue_producer_waits_when_full(void)
{
  swit__sub sub = {.id = 1};
  swit__item in[100];
  pthread_t t;

  for (int i = 0; i < 100; i++) in[i] = (swit__item){.token = (uint64_t)i};
  CHECK(swit__queue_init(&blocking_q, 8, 6, 1) == 0);
  pthread_create(&t, NULL, slow_consumer, NULL);
  swit__queue_push(&blocking_q, &sub, in, 100); /* returns once all fit */
  pthread_join(t, NULL);
  CHECK(swit__queue_depth(&blocking_q) == 0);
  swit__queue_destroy(&blocking_q);
}

static void test_retry_heap_order(void)
{
  swit__retry_heap h = {0};
  swit__retry r;
  int64_t due[] = {50, 10, 40, 20, 30};

  for (int i = 0; i < 5; i++) {
    r = (swit__retry){.due_ms = due[i]};
    r.item.token = (uint64_t)due[i];
    CHECK(swit__retry_push(&h, &r) == 0);
  }
  CHECK(swit__retry_next_due(&h) == 10);
  CHECK(swit__retry_pop_due(&h, 5, &r) == 0);
  for (int64_t want = 10; want <= 50; want += 10) {
    CHECK(swit__retry_pop_due(&h, 100, &r) == 1);
    CHECK(r.due_ms == want);
  }
  CHECK(swit__retry_next_due(&h) == -1);
  swit__retry_free(&h);
}

static void test_backoff_grows_and_caps(void)
{
  swit_cfg_subscriber s = {.retry_delay_ms = 100, .retry_max_delay_ms = 1000,
                           .retry_multiplier = 2.0, .retry_jitter = 0.0};
  uint64_t rng = 42;

  CHECK(swit__retry_backoff_ms(&s, 1, &rng) == 100);
  CHECK(swit__retry_backoff_ms(&s, 2, &rng) == 200);
  CHECK(swit__retry_backoff_ms(&s, 3, &rng) == 400);
  CHECK(swit__retry_backoff_ms(&s, 10, &rng) == 1000);
  s.retry_jitter = 0.2;
  for (int i = 0; i < 1000; i++) {
    int64_t d = swit__retry_backoff_ms(&s, 1, &rng);
    CHECK(d >= 80 && d <= 120);
  }
}

/* ------------------------------------------------------------------ */
/* Dispatcher: a host with 4 workers, queues only (no threads). */

static void make_host(swit_host_t *h, swit__sub *sub, int ordering)
{
  memset(h, 0, sizeof *h);       /* no interceptor: nothing is counted */
  h->log.level = SWIT_LOG_WARN;
  h->ops = &fake_ops;
  h->nworkers = 4;
  h->nsubs = 1;
  h->workers = calloc(4, sizeof *h->workers);
  for (int i = 0; i < 4; i++)
    swit__queue_init(&h->workers[i].q, 4096, 2048, 512);
  memset(sub, 0, sizeof *sub);
  sub->id = 1;
  sub->topic = "t";
  sub->group = "g";
  sub->host = h;
  sub->ordering = ordering;
  sub->handle = sub;
  atomic_store(&sub->subscribed, 1);
  pthread_mutex_init(&sub->pause_lock, NULL);
}

static void free_host(swit_host_t *h, swit__sub *sub)
{
  for (int i = 0; i < 4; i++) swit__queue_destroy(&h->workers[i].q);
  free(h->workers);
  pthread_mutex_destroy(&sub->pause_lock);
}

static void test_dispatch_same_key_same_worker_in_order(void)
{
  static const char *keys[] = {"a", "b", "c", "d", "e", "f", "g", "h"};
  swit_msg_view views[800];
  swit_delivery d[800];
  swit_host_t h;
  swit__sub sub;
  swit__item out[800];
  uint32_t resumed[SWIT__MAX_SUBS + 1];
  size_t nres, used = 0;

  make_host(&h, &sub, SWIT_ORDER_KEY);
  for (int i = 0; i < 800; i++) {
    views[i] = view(keys[i % 8]);
    d[i] = (swit_delivery){&views[i], (uint64_t)i, NULL};
  }
  swit__dispatch_sink(&sub, d, 800);
  CHECK(atomic_load(&h.inflight) == 800);
  for (uint32_t w = 0; w < 4; w++) {
    size_t n = swit__queue_pop(&h.workers[w].q, out, 800, 0, resumed, &nres);
    int64_t last[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
    used += n > 0;
    for (size_t i = 0; i < n; i++) {
      int k = (int)(out[i].token % 8);
      /* a key lives on the worker its hash names, in arrival order */
      CHECK(swit__key_hash(keys[k], 1) % 4 == w);
      CHECK((int64_t)out[i].token > last[k]);
      last[k] = (int64_t)out[i].token;
    }
  }
  CHECK(used >= 2);  /* 8 keys spread over more than one worker */
  free_host(&h, &sub);
}

static void test_dispatch_none_round_robin(void)
{
  swit_msg_view v = view("same");
  swit_delivery d[400];
  swit_host_t h;
  swit__sub sub;

  swit__item out[100];
  uint32_t resumed[SWIT__MAX_SUBS + 1];
  size_t nres;

  make_host(&h, &sub, SWIT_ORDER_NONE);
  for (int i = 0; i < 400; i++) d[i] = (swit_delivery){&v, (uint64_t)i, i % 2 ? "too big" : NULL};
  swit__dispatch_sink(&sub, d, 400);
  for (int w = 0; w < 4; w++) CHECK(swit__queue_depth(&h.workers[w].q) == 100);
  /* an adapter's refusal travels with the message */
  CHECK(swit__queue_pop(&h.workers[0].q, out, 100, 0, resumed, &nres) == 100);
  for (int i = 0; i < 100; i++)
    CHECK((out[i].token % 2 == 1) == (out[i].reject != NULL));
  free_host(&h, &sub);
}

static void test_dispatch_pauses_at_high_water_and_resumes(void)
{
  swit_msg_view v = view("k");
  swit_delivery d[256];
  swit__item out[4096];
  uint32_t resumed[SWIT__MAX_SUBS + 1];
  swit_host_t h;
  swit__sub sub;
  size_t nres;
  uint32_t w;

  make_host(&h, &sub, SWIT_ORDER_KEY);
  w = swit__key_hash("k", 1) % 4;
  for (int i = 0; i < 256; i++) d[i] = (swit_delivery){&v, (uint64_t)i, NULL};
  atomic_store(&pauses, 0);
  atomic_store(&resumes, 0);
  for (int i = 0; i < 8; i++) swit__dispatch_sink(&sub, d, 256);  /* 2048 */
  CHECK(atomic_load(&pauses) == 1);
  CHECK(sub.adapter_paused == 1);
  swit__queue_pop(&h.workers[w].q, out, 1000, 0, resumed, &nres);
  CHECK(nres == 0);                         /* 1048 left > low (512) */
  swit__queue_pop(&h.workers[w].q, out, 600, 0, resumed, &nres);
  CHECK(nres == 1 && resumed[0] == 1);      /* 448 left: resume */
  atomic_fetch_sub(&sub.paused_by, 1);
  swit__sub_reconcile_pause(&sub);
  CHECK(atomic_load(&resumes) == 1);
  CHECK(sub.adapter_paused == 0);
  free_host(&h, &sub);
}

int main(void)
{
  test_queue_fifo_and_wrap();
  test_queue_high_and_low_water();
  test_queue_producer_waits_when_full();
  test_retry_heap_order();
  test_backoff_grows_and_caps();
  test_dispatch_same_key_same_worker_in_order();
  test_dispatch_none_round_robin();
  test_dispatch_pauses_at_high_water_and_resumes();
  return check_done("queue");
}
