/*
 * test_memory_broker.c - behaviour tests for the in-memory broker adapter,
 * driving swit_broker_memory's vtable directly (no host, no config file).
 *
 * Threads: the main thread creates brokers, publishes and settles; sinks
 * run on the adapter's delivery thread and only record what they receive
 * in a collector (its own mutex and condvar), except where a test makes
 * the sink pause itself or block. The pipeline tests add publisher
 * threads and a consumer thread that settles. Each test owns its broker
 * and collectors and frees them, so ASan's leak check covers the adapter.
 *
 * A failed check prints file:line and exits with status 1. The pipeline
 * tests print their rate; SWIT_TEST_MEMORY_BENCH_MESSAGES sets the
 * message count of the single-publisher throughput run (default 400000).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "memory_broker.h"

static const swit_broker_ops *ops = &swit_broker_memory;

#define CHECK(cond)                                                      \
  do {                                                                   \
    if (!(cond)) {                                                       \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,   \
              #cond);                                                    \
      fflush(NULL);                                                      \
      _Exit(1);                                                          \
    }                                                                    \
  } while (0)

#define CHECK_RC(expr, want, err)                                        \
  do {                                                                   \
    int rc_ = (expr);                                                    \
    if (rc_ != (want)) {                                                 \
      fprintf(stderr, "%s:%d: %s returned %d, expected %d (%s)\n",        \
              __FILE__, __LINE__, #expr, rc_, (want), (err));            \
      fflush(NULL);                                                      \
      _Exit(1);                                                          \
    }                                                                    \
  } while (0)

static void it(const char *behaviour)
{
  printf("ok - memory broker: %s\n", behaviour);
  fflush(stdout);
}

static int64_t now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
  struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
  nanosleep(&ts, NULL);
}

/* An absolute CLOCK_REALTIME time `ms` from now, for condvar waits. */
static struct timespec deadline_in(int ms)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  return ts;
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void test_log(void *ud, int level, const char *fmt, ...)
{
  (void)ud;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "  [adapter log %d] ", level);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

/* ---------------------------------------------------------------------
 * Brokers and messages */

static swit_broker *broker_new(int64_t queue_size, int64_t max_message_size)
{
  swit_memory_settings st = { .queue_size = queue_size };
  swit_broker_env env = { .max_message_size = max_message_size,
                          .settings = &st, .log = test_log };
  swit_broker *b = NULL;
  char err[256] = "";
  CHECK_RC(ops->create(&b, &env, err, sizeof err), 0, err);
  CHECK_RC(ops->connect(b, err, sizeof err), 0, err);
  return b;
}

static swit_msg_view text_msg(const char *topic, const char *text)
{
  return (swit_msg_view){ .topic = topic,
                          .topic_len = (uint32_t)strlen(topic),
                          .payload = text,
                          .payload_len = strlen(text) };
}

/* Publish one text message; returns the publish code, err filled. */
static int publish_text(swit_broker *b, const char *topic, const char *text,
                        int timeout_ms, uint64_t *id, char *err, size_t errlen)
{
  swit_msg_view m = text_msg(topic, text);
  swit_publish_opts o = { .timeout_ms = timeout_ms };
  return ops->publish(b, &m, 1, &o, id, err, errlen);
}

static void publish_numbered(swit_broker *b, const char *topic, int from,
                             int to)
{
  char text[32], err[256] = "";
  for (int i = from; i < to; i++) {
    snprintf(text, sizeof text, "m%d", i);
    CHECK_RC(publish_text(b, topic, text, 1000, NULL, err, sizeof err), 0, err);
  }
}

/* ---------------------------------------------------------------------
 * Collector: a sink that records deliveries */

typedef struct got {
  uint64_t token;
  const swit_msg_view *msg;
  char text[64]; /* payload copy, NUL-terminated */
} got;

typedef struct collector {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  got *items;
  size_t n, cap;
  size_t calls, max_batch;
  int in_sink;
  int hold;          /* the sink blocks while set */
  int pause_in_sink; /* the sink pauses its own subscription once */
  swit_broker *b;
  void *handle;
} collector;

static void collector_init(collector *c)
{
  memset(c, 0, sizeof *c);
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->cv, NULL);
}

static void collector_free(collector *c)
{
  free(c->items);
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->cv);
}

static void collect(void *ud, const swit_delivery *d, size_t n)
{
  collector *c = ud;
  pthread_mutex_lock(&c->mu);
  c->in_sink = 1;
  c->calls++;
  if (n > c->max_batch)
    c->max_batch = n;
  pthread_cond_broadcast(&c->cv);
  while (c->hold)
    pthread_cond_wait(&c->cv, &c->mu);
  if (c->n + n > c->cap) {
    c->cap = (c->n + n) * 2;
    c->items = realloc(c->items, c->cap * sizeof *c->items);
    CHECK(c->items);
  }
  for (size_t i = 0; i < n; i++) {
    got *g = &c->items[c->n++];
    g->token = d[i].token;
    g->msg = d[i].msg;
    size_t len = d[i].msg->payload_len;
    if (len >= sizeof g->text)
      len = sizeof g->text - 1;
    memcpy(g->text, d[i].msg->payload, len);
    g->text[len] = '\0';
  }
  int pause_now = c->pause_in_sink;
  c->pause_in_sink = 0;
  swit_broker *b = c->b;
  void *h = c->handle;
  c->in_sink = 0;
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
  if (pause_now)
    CHECK_RC(ops->pause(b, h), 0, "pause from inside the sink");
}

static void *subscribe(collector *c, swit_broker *b, const char *topic,
                       const char *group)
{
  swit_sub_spec spec = { .topic = topic, .group = group,
                         .ordering = SWIT_ORDER_KEY, .prefetch = 100 };
  void *h = NULL;
  char err[256] = "";
  CHECK_RC(ops->subscribe(b, &spec, collect, c, &h, err, sizeof err), 0, err);
  pthread_mutex_lock(&c->mu);
  c->b = b;
  c->handle = h;
  pthread_mutex_unlock(&c->mu);
  return h;
}

/* Wait until the collector holds at least n deliveries; 0 on timeout. */
static int wait_count(collector *c, size_t n, int timeout_ms)
{
  struct timespec until = deadline_in(timeout_ms);
  int rc = 0;
  pthread_mutex_lock(&c->mu);
  while (c->n < n && rc == 0)
    rc = pthread_cond_timedwait(&c->cv, &c->mu, &until);
  int ok = c->n >= n;
  pthread_mutex_unlock(&c->mu);
  return ok;
}

static size_t count_of(collector *c)
{
  pthread_mutex_lock(&c->mu);
  size_t n = c->n;
  pthread_mutex_unlock(&c->mu);
  return n;
}

static size_t calls_of(collector *c)
{
  pthread_mutex_lock(&c->mu);
  size_t n = c->calls;
  pthread_mutex_unlock(&c->mu);
  return n;
}

static got item_at(collector *c, size_t i)
{
  pthread_mutex_lock(&c->mu);
  CHECK(i < c->n);
  got g = c->items[i];
  pthread_mutex_unlock(&c->mu);
  return g;
}

/* Settle the collector's items [from, to) with one call. */
static int settle_range(swit_broker *b, void *h, collector *c, size_t from,
                        size_t to, int action)
{
  swit_settle s[1024];
  CHECK(to - from <= 1024);
  for (size_t i = from; i < to; i++)
    s[i - from] = (swit_settle){ .token = item_at(c, i).token,
                                 .action = action };
  return ops->settle(b, h, s, to - from);
}

static void check_numbered(collector *c, size_t from, int first, int n)
{
  char want[32];
  for (int i = 0; i < n; i++) {
    snprintf(want, sizeof want, "m%d", first + i);
    got g = item_at(c, from + (size_t)i);
    if (strcmp(g.text, want) != 0)
      fprintf(stderr, "item %zu: got '%s', want '%s'\n", from + (size_t)i,
              g.text, want);
    CHECK(strcmp(g.text, want) == 0);
  }
}

/* ---------------------------------------------------------------------
 * Delivery */

static void test_delivers_in_publish_order(void)
{
  swit_broker *b = broker_new(10000, 1 << 20);
  collector c;
  collector_init(&c);
  void *h = subscribe(&c, b, "orders.created", "billing");
  publish_numbered(b, "orders.created", 0, 100);
  CHECK(wait_count(&c, 100, 5000));
  check_numbered(&c, 0, 0, 100);
  got g = item_at(&c, 0);
  CHECK(g.msg->topic_len == strlen("orders.created"));
  CHECK(memcmp(g.msg->topic, "orders.created", g.msg->topic_len) == 0);
  CHECK(g.msg->partition == -1);
  CHECK(g.msg->timestamp_ms > 0);
  CHECK(g.msg->key == NULL && g.msg->nheaders == 0);
  CHECK_RC(settle_range(b, h, &c, 0, 100, SWIT_SETTLE_ACK), 0, "settle");
  CHECK_RC(ops->unsubscribe(b, h), 0, "unsubscribe");
  ops->destroy(b);
  collector_free(&c);
  it("delivers one group's messages in publish order, with topic, "
     "timestamp and partition -1");
}

static void test_copies_key_and_headers(void)
{
  swit_broker *b = broker_new(10000, 1 << 20);
  collector c;
  collector_init(&c);
  void *h = subscribe(&c, b, "t", "g");
  char key[] = "k-1", payload[] = "body";
  char n0[] = "trace", v0[] = "abc", n1[] = "empty";
  swit_header hdr[2] = {
    { .name = n0, .value = v0, .name_len = 5, .value_len = 3 },
    { .name = n1, .value = NULL, .name_len = 5, .value_len = 0 },
  };
  swit_msg_view m = { .topic = "t", .topic_len = 1, .key = key, .key_len = 3,
                      .payload = payload, .payload_len = 4, .headers = hdr,
                      .nheaders = 2 };
  char err[256] = "";
  CHECK_RC(ops->publish(b, &m, 1, NULL, NULL, err, sizeof err), 0, err);
  memset(key, 'x', 3); /* the adapter copied them during the call */
  memset(payload, 'x', 4);
  memset(v0, 'x', 3);
  CHECK(wait_count(&c, 1, 5000));
  const swit_msg_view *v = item_at(&c, 0).msg;
  CHECK(v->key_len == 3 && memcmp(v->key, "k-1", 3) == 0);
  CHECK(v->payload_len == 4 && memcmp(v->payload, "body", 4) == 0);
  CHECK(v->nheaders == 2);
  CHECK(v->headers[0].name_len == 5 && memcmp(v->headers[0].name, "trace", 5) == 0);
  CHECK(v->headers[0].value_len == 3 && memcmp(v->headers[0].value, "abc", 3) == 0);
  CHECK(v->headers[1].name_len == 5 && v->headers[1].value_len == 0);
  CHECK_RC(settle_range(b, h, &c, 0, 1, SWIT_SETTLE_ACK), 0, "settle");
  ops->destroy(b);
  collector_free(&c);
  it("copies key, payload and headers during publish");
}

/* No key, no payload, no headers into a slot never used: nothing to
 * copy and no buffer (UBSan under clang saw NULL + 0 here). */
static void test_empty_message(void)
{
  swit_broker *b = broker_new(10000, 1 << 20);
  collector c;
  collector_init(&c);
  void *h = subscribe(&c, b, "t", "g");
  swit_msg_view m = { .topic = "t", .topic_len = 1, .payload = "" };
  char err[256] = "";
  CHECK_RC(ops->publish(b, &m, 1, NULL, NULL, err, sizeof err), 0, err);
  CHECK(wait_count(&c, 1, 5000));
  const swit_msg_view *v = item_at(&c, 0).msg;
  CHECK(v->payload_len == 0 && v->payload && v->key_len == 0 &&
        v->nheaders == 0);
  CHECK_RC(settle_range(b, h, &c, 0, 1, SWIT_SETTLE_ACK), 0, "settle");
  ops->destroy(b);
  collector_free(&c);
  it("keeps an empty message (no key, payload or headers)");
}

static void test_every_group_gets_every_message(void)
{
  swit_broker *b = broker_new(10000, 1 << 20);
  collector c1, c2;
  collector_init(&c1);
  collector_init(&c2);
  void *h1 = subscribe(&c1, b, "orders", "billing");
  void *h2 = subscribe(&c2, b, "orders", "audit");
  publish_numbered(b, "orders", 0, 50);
  CHECK(wait_count(&c1, 50, 5000));
  CHECK(wait_count(&c2, 50, 5000));
  check_numbered(&c1, 0, 0, 50);
  check_numbered(&c2, 0, 0, 50);
  /* Acked by one group only: the other still reads valid views. */
  CHECK_RC(settle_range(b, h1, &c1, 0, 50, SWIT_SETTLE_ACK), 0, "settle");
  check_numbered(&c2, 0, 0, 50);
  CHECK_RC(settle_range(b, h2, &c2, 0, 50, SWIT_SETTLE_ACK), 0, "settle");
  sleep_ms(50);
  CHECK(count_of(&c1) == 50 && count_of(&c2) == 50);
  ops->destroy(b);
  collector_free(&c1);
  collector_free(&c2);
  it("gives every group every message");
}

static int cmp_u64(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void test_members_split_messages(void)
{
  swit_broker *b = broker_new(10000, 1 << 20);
  collector c1, c2;
  collector_init(&c1);
  collector_init(&c2);
  void *h1 = subscribe(&c1, b, "jobs", "workers");
  void *h2 = subscribe(&c2, b, "jobs", "workers");
  enum { N = 1000, BATCH = 10 };
  char text[N][16], err[256] = "";
  swit_msg_view m[BATCH];
  for (int i = 0; i < N; i += BATCH) {
    for (int k = 0; k < BATCH; k++) {
      snprintf(text[i + k], sizeof text[0], "m%d", i + k);
      m[k] = text_msg("jobs", text[i + k]);
    }
    CHECK_RC(ops->publish(b, m, BATCH, NULL, NULL, err, sizeof err), 0, err);
  }
  int64_t until = now_ms() + 5000;
  while (count_of(&c1) + count_of(&c2) < N && now_ms() < until)
    sleep_ms(1);
  sleep_ms(50); /* anything delivered twice would show up now */
  size_t n1 = count_of(&c1), n2 = count_of(&c2);
  CHECK(n1 + n2 == N);
  CHECK(n1 > 0 && n2 > 0);
  uint64_t tokens[N];
  int seen[N] = { 0 };
  for (size_t i = 0; i < n1 + n2; i++) {
    got g = i < n1 ? item_at(&c1, i) : item_at(&c2, i - n1);
    tokens[i] = g.token;
    int k = atoi(g.text + 1);
    CHECK(k >= 0 && k < N && !seen[k]);
    seen[k] = 1;
  }
  qsort(tokens, N, sizeof tokens[0], cmp_u64);
  for (size_t i = 1; i < N; i++)
    CHECK(tokens[i] != tokens[i - 1]);
  for (size_t i = 1; i < n1; i++) /* each member sees publish order */
    CHECK(atoi(item_at(&c1, i).text + 1) > atoi(item_at(&c1, i - 1).text + 1));
  for (size_t i = 0; i < n1; i += 500)
    CHECK_RC(settle_range(b, h1, &c1, i, i + 500 < n1 ? i + 500 : n1,
                          SWIT_SETTLE_ACK), 0, "settle");
  for (size_t i = 0; i < n2; i += 500)
    CHECK_RC(settle_range(b, h2, &c2, i, i + 500 < n2 ? i + 500 : n2,
                          SWIT_SETTLE_ACK), 0, "settle");
  ops->destroy(b);
  collector_free(&c1);
  collector_free(&c2);
  it("splits a group's messages between its members, none twice");
}

static void test_paused_member_share_goes_to_others(void)
{
  swit_broker *b = broker_new(10000, 1 << 20);
  collector c1, c2;
  collector_init(&c1);
  collector_init(&c2);
  void *h1 = subscribe(&c1, b, "jobs", "workers");
  void *h2 = subscribe(&c2, b, "jobs", "workers");
  CHECK_RC(ops->pause(b, h1), 0, "pause");
  publish_numbered(b, "jobs", 0, 100);
  CHECK(wait_count(&c2, 100, 5000));
  check_numbered(&c2, 0, 0, 100);
  CHECK(count_of(&c1) == 0);
  CHECK_RC(settle_range(b, h2, &c2, 0, 100, SWIT_SETTLE_ACK), 0, "settle");
  ops->destroy(b);
  collector_free(&c1);
  collector_free(&c2);
  it("gives a paused member's share to the other members of its group");
}

static void test_requeue_redelivers_first(void)
{
  swit_broker *b = broker_new(10000, 1 << 20);
  collector c;
  collector_init(&c);
  void *h = subscribe(&c, b, "t", "g");
  char err[256] = "";
  CHECK_RC(publish_text(b, "t", "a", 0, NULL, err, sizeof err), 0, err);
  CHECK(wait_count(&c, 1, 5000));
  CHECK_RC(ops->pause(b, h), 0, "pause");
  CHECK_RC(publish_text(b, "t", "b", 0, NULL, err, sizeof err), 0, err);
  CHECK_RC(publish_text(b, "t", "c", 0, NULL, err, sizeof err), 0, err);
  CHECK_RC(settle_range(b, h, &c, 0, 1, SWIT_SETTLE_REQUEUE), 0, "requeue");
  sleep_ms(50);
  CHECK(count_of(&c) == 1); /* paused */
  CHECK_RC(ops->resume(b, h), 0, "resume");
  CHECK(wait_count(&c, 4, 5000));
  CHECK(strcmp(item_at(&c, 1).text, "a") == 0);
  CHECK(strcmp(item_at(&c, 2).text, "b") == 0);
  CHECK(strcmp(item_at(&c, 3).text, "c") == 0);
  CHECK(item_at(&c, 1).token == item_at(&c, 0).token);
  CHECK_RC(settle_range(b, h, &c, 1, 4, SWIT_SETTLE_ACK), 0, "settle");
  ops->destroy(b);
  collector_free(&c);
  it("redelivers a requeued message ahead of newer messages");
}

static void test_pause_and_resume(void)
{
  swit_broker *b = broker_new(10000, 1 << 20);
  collector c;
  collector_init(&c);
  void *h = subscribe(&c, b, "t", "g");
  CHECK_RC(ops->pause(b, h), 0, "pause");
  publish_numbered(b, "t", 0, 100);
  sleep_ms(100);
  CHECK(count_of(&c) == 0);
  CHECK_RC(ops->resume(b, h), 0, "resume");
  CHECK(wait_count(&c, 100, 5000));
  check_numbered(&c, 0, 0, 100);

  /* Paused from inside the sink, as the core does at its high-water mark. */
  pthread_mutex_lock(&c.mu);
  c.pause_in_sink = 1;
  pthread_mutex_unlock(&c.mu);
  size_t calls = calls_of(&c);
  publish_numbered(b, "t", 100, 101);
  CHECK(wait_count(&c, 101, 5000));
  publish_numbered(b, "t", 101, 200);
  sleep_ms(100);
  CHECK(count_of(&c) == 101 && calls_of(&c) == calls + 1);
  CHECK_RC(ops->resume(b, h), 0, "resume");
  CHECK(wait_count(&c, 200, 5000));
  check_numbered(&c, 0, 0, 200);
  CHECK_RC(settle_range(b, h, &c, 0, 200, SWIT_SETTLE_ACK), 0, "settle");
  ops->destroy(b);
  collector_free(&c);
  it("stops delivery on pause (also from inside a sink) and resumes "
     "without loss");
}

/* ---------------------------------------------------------------------
 * Publishing */

typedef struct blocked_publish {
  swit_broker *b;
  atomic_int done;
  int rc;
  int64_t waited_ms;
  char err[256];
} blocked_publish;

static void *publish_blocking(void *arg)
{
  blocked_publish *p = arg;
  int64_t t0 = now_ms();
  p->rc = publish_text(p->b, "small", "fifth", 5000, NULL, p->err,
                       sizeof p->err);
  p->waited_ms = now_ms() - t0;
  atomic_store(&p->done, 1);
  return NULL;
}

static void test_ack_unblocks_publisher(void)
{
  swit_broker *b = broker_new(4, 1 << 20);
  collector c;
  collector_init(&c);
  void *h = subscribe(&c, b, "small", "g");
  publish_numbered(b, "small", 0, 4);
  CHECK(wait_count(&c, 4, 5000));
  blocked_publish p = { .b = b };
  pthread_t th;
  CHECK(pthread_create(&th, NULL, publish_blocking, &p) == 0);
  sleep_ms(100);
  CHECK(!atomic_load(&p.done));
  CHECK_RC(settle_range(b, h, &c, 0, 1, SWIT_SETTLE_ACK), 0, "settle");
  pthread_join(th, NULL);
  CHECK_RC(p.rc, 0, p.err);
  CHECK(p.waited_ms < 4000);
  CHECK(wait_count(&c, 5, 5000));
  CHECK(strcmp(item_at(&c, 4).text, "fifth") == 0);
  CHECK_RC(settle_range(b, h, &c, 1, 5, SWIT_SETTLE_ACK), 0, "settle");
  ops->destroy(b);
  collector_free(&c);
  it("lets a publisher waiting on a full topic through when an ack makes "
     "room");
}

static void test_full_at_once_without_timeout(void)
{
  swit_broker *b = broker_new(4, 1 << 20);
  collector c;
  collector_init(&c);
  void *h = subscribe(&c, b, "small", "g");
  publish_numbered(b, "small", 0, 3);
  char err[256] = "";
  swit_msg_view m[3] = { text_msg("small", "x"), text_msg("small", "y"),
                         text_msg("small", "z") };
  uint64_t ids[3];
  swit_publish_opts now = { .timeout_ms = 0 };
  int64_t t0 = now_ms();
  CHECK_RC(ops->publish(b, m, 3, &now, ids, err, sizeof err), SWIT_E_FULL, err);
  CHECK(now_ms() - t0 < 500);
  CHECK(strstr(err, "topic 'small' is full (queue_size 4)"));
  CHECK(ids[0] != 0 && ids[1] == 0 && ids[2] == 0); /* "x" got in */
  t0 = now_ms();
  CHECK_RC(publish_text(b, "small", "w", 0, &ids[0], err, sizeof err),
           SWIT_E_FULL, err);
  CHECK(ids[0] == 0 && now_ms() - t0 < 500);
  CHECK(wait_count(&c, 4, 5000));
  CHECK_RC(settle_range(b, h, &c, 0, 4, SWIT_SETTLE_ACK), 0, "settle");
  ops->destroy(b);
  collector_free(&c);
  it("returns SWIT_E_FULL at once with timeout 0 when the topic is full, "
     "keeping the batch's accepted prefix");
}

static void test_full_after_timeout(void)
{
  swit_broker *b = broker_new(2, 1 << 20);
  char err[256] = "";
  CHECK_RC(publish_text(b, "q", "1", 0, NULL, err, sizeof err), 0, err);
  CHECK_RC(publish_text(b, "q", "2", 0, NULL, err, sizeof err), 0, err);
  int64_t t0 = now_ms();
  CHECK_RC(publish_text(b, "q", "3", 150, NULL, err, sizeof err),
           SWIT_E_FULL, err);
  int64_t waited = now_ms() - t0;
  CHECK(waited >= 140 && waited < 2000);
  ops->destroy(b);
  it("waits up to the publish timeout for room, then returns SWIT_E_FULL");
}

static void test_confirm_ids_increase(void)
{
  swit_broker *b = broker_new(100, 1 << 20);
  char err[256] = "";
  uint64_t first = 0, last = 0;
  CHECK_RC(publish_text(b, "a", "1", 0, &first, err, sizeof err), 0, err);
  CHECK(first == 1);
  swit_msg_view m[5] = { text_msg("a", "2"), text_msg("a", "3"),
                         text_msg("b", "4"), text_msg("b", "5"),
                         text_msg("a", "6") };
  uint64_t ids[5];
  CHECK_RC(ops->publish(b, m, 5, NULL, ids, err, sizeof err), 0, err);
  for (int i = 0; i < 5; i++)
    CHECK(ids[i] == first + 1 + (uint64_t)i);
  CHECK_RC(publish_text(b, "c", "7", 0, &last, err, sizeof err), 0, err);
  CHECK(last == first + 6);
  ops->destroy(b);
  it("gives every accepted message the next confirm id, across topics");
}

static void test_batch_publish(void)
{
  swit_broker *b = broker_new(10000, 1 << 20);
  collector ca, cb;
  collector_init(&ca);
  collector_init(&cb);
  void *ha = subscribe(&ca, b, "a", "g");
  void *hb = subscribe(&cb, b, "b", "g");
  pthread_mutex_lock(&ca.mu);
  ca.hold = 1; /* let the whole batch pile up behind one sink call */
  pthread_mutex_unlock(&ca.mu);
  char err[256] = "";
  CHECK_RC(publish_text(b, "a", "m0", 0, NULL, err, sizeof err), 0, err);
  enum { N = 1000 };
  static char text[N][16];
  static swit_msg_view m[N + 2];
  for (int i = 0; i < N; i++) {
    snprintf(text[i], sizeof text[0], "m%d", i + 1);
    m[i] = text_msg("a", text[i]);
  }
  m[N] = text_msg("b", "m0"); /* a second run, on another topic */
  m[N + 1] = text_msg("b", "m1");
  CHECK_RC(ops->publish(b, m, N + 2, NULL, NULL, err, sizeof err), 0, err);
  pthread_mutex_lock(&ca.mu);
  ca.hold = 0;
  pthread_cond_broadcast(&ca.cv);
  pthread_mutex_unlock(&ca.mu);
  CHECK(wait_count(&ca, N + 1, 5000));
  CHECK(wait_count(&cb, 2, 5000));
  check_numbered(&ca, 0, 0, N + 1);
  check_numbered(&cb, 0, 0, 2);
  CHECK(ca.max_batch == 256);
  CHECK(calls_of(&ca) >= 1 + N / 256);
  for (size_t i = 0; i < N + 1; i += 1000)
    CHECK_RC(settle_range(b, ha, &ca, i, i + 1000 < N + 1 ? i + 1000 : N + 1,
                          SWIT_SETTLE_ACK), 0, "settle");
  CHECK_RC(settle_range(b, hb, &cb, 0, 2, SWIT_SETTLE_ACK), 0, "settle");
  ops->destroy(b);
  collector_free(&ca);
  collector_free(&cb);
  it("stores a batch in order, per topic run, and delivers it in sink "
     "calls of at most 256");
}

/* ---------------------------------------------------------------------
 * Subscriptions ending */

static void test_unsubscribe_stops_sink_calls(void)
{
  swit_broker *b = broker_new(10000, 1 << 20);
  collector c;
  collector_init(&c);
  void *h = subscribe(&c, b, "t", "g");
  publish_numbered(b, "t", 0, 10);
  CHECK(wait_count(&c, 10, 5000));
  size_t calls = calls_of(&c);
  CHECK_RC(ops->unsubscribe(b, h), 0, "unsubscribe");
  publish_numbered(b, "t", 10, 20);
  sleep_ms(100);
  CHECK(count_of(&c) == 10 && calls_of(&c) == calls);
  /* In-flight deliveries may still be settled after unsubscribe. */
  check_numbered(&c, 0, 0, 10);
  CHECK_RC(settle_range(b, h, &c, 0, 5, SWIT_SETTLE_ACK), 0, "settle");
  CHECK_RC(settle_range(b, h, &c, 5, 10, SWIT_SETTLE_REQUEUE), 0, "settle");
  ops->destroy(b);
  collector_free(&c);
  it("makes no sink call for a handle after unsubscribe, and still takes "
     "its settles");
}

typedef struct unsub_call {
  swit_broker *b;
  void *h;
  atomic_int done;
} unsub_call;

static void *unsubscribe_thread(void *arg)
{
  unsub_call *u = arg;
  CHECK_RC(ops->unsubscribe(u->b, u->h), 0, "unsubscribe");
  atomic_store(&u->done, 1);
  return NULL;
}

static void test_unsubscribe_waits_for_sink(void)
{
  swit_broker *b = broker_new(10000, 1 << 20);
  collector c;
  collector_init(&c);
  c.hold = 1;
  void *h = subscribe(&c, b, "t", "g");
  publish_numbered(b, "t", 0, 1);
  pthread_mutex_lock(&c.mu);
  while (!c.in_sink)
    pthread_cond_wait(&c.cv, &c.mu);
  pthread_mutex_unlock(&c.mu);
  unsub_call u = { .b = b, .h = h };
  pthread_t th;
  CHECK(pthread_create(&th, NULL, unsubscribe_thread, &u) == 0);
  sleep_ms(100);
  CHECK(!atomic_load(&u.done));
  pthread_mutex_lock(&c.mu);
  c.hold = 0;
  pthread_cond_broadcast(&c.cv);
  pthread_mutex_unlock(&c.mu);
  pthread_join(th, NULL);
  CHECK(count_of(&c) == 1);
  CHECK_RC(settle_range(b, h, &c, 0, 1, SWIT_SETTLE_ACK), 0, "settle");
  ops->destroy(b);
  collector_free(&c);
  it("returns from unsubscribe only after a sink call in progress ends");
}

static void test_last_member_releases_group(void)
{
  swit_broker *b = broker_new(4, 1 << 20);
  char err[256] = "";
  collector c;
  collector_init(&c);
  void *h = subscribe(&c, b, "never", "g");
  CHECK_RC(ops->pause(b, h), 0, "pause");
  publish_numbered(b, "never", 0, 4);
  CHECK_RC(publish_text(b, "never", "x", 0, NULL, err, sizeof err),
           SWIT_E_FULL, err);
  CHECK_RC(ops->unsubscribe(b, h), 0, "unsubscribe");
  CHECK_RC(publish_text(b, "never", "x", 0, NULL, err, sizeof err), 0, err);

  collector c2;
  collector_init(&c2);
  void *h2 = subscribe(&c2, b, "inflight", "g");
  publish_numbered(b, "inflight", 0, 4);
  CHECK(wait_count(&c2, 4, 5000));
  CHECK_RC(ops->unsubscribe(b, h2), 0, "unsubscribe");
  CHECK_RC(publish_text(b, "inflight", "x", 0, NULL, err, sizeof err),
           SWIT_E_FULL, err); /* in flight: still held */
  CHECK_RC(settle_range(b, h2, &c2, 0, 2, SWIT_SETTLE_ACK), 0, "settle");
  CHECK_RC(settle_range(b, h2, &c2, 2, 4, SWIT_SETTLE_REQUEUE), 0, "settle");
  for (int i = 0; i < 4; i++) /* group gone: requeue released them too */
    CHECK_RC(publish_text(b, "inflight", "y", 0, NULL, err, sizeof err), 0, err);
  ops->destroy(b);
  collector_free(&c);
  collector_free(&c2);
  it("releases a group's messages when its last member leaves (in-flight "
     "ones when settled)");
}

static void test_kept_for_first_group(void)
{
  swit_broker *b = broker_new(100, 1 << 20);
  publish_numbered(b, "early", 0, 3);
  collector c1, c2;
  collector_init(&c1);
  collector_init(&c2);
  void *h1 = subscribe(&c1, b, "early", "first");
  CHECK(wait_count(&c1, 3, 5000));
  check_numbered(&c1, 0, 0, 3);
  void *h2 = subscribe(&c2, b, "early", "second");
  sleep_ms(50);
  CHECK(count_of(&c2) == 0);
  publish_numbered(b, "early", 3, 4);
  CHECK(wait_count(&c1, 4, 5000));
  CHECK(wait_count(&c2, 1, 5000));
  check_numbered(&c2, 0, 3, 1);
  CHECK_RC(settle_range(b, h1, &c1, 0, 4, SWIT_SETTLE_ACK), 0, "settle");
  CHECK_RC(settle_range(b, h2, &c2, 0, 1, SWIT_SETTLE_ACK), 0, "settle");
  ops->destroy(b);
  collector_free(&c1);
  collector_free(&c2);
  it("keeps messages published before any subscription for the first "
     "group; later groups start at the next message");
}

static void test_destroy_with_unsettled(void)
{
  swit_broker *b = broker_new(1000, 1 << 24);
  collector c1, c2, c3;
  collector_init(&c1);
  collector_init(&c2);
  collector_init(&c3);
  void *h1 = subscribe(&c1, b, "t", "g1");
  subscribe(&c2, b, "t", "g2");
  void *h3 = subscribe(&c3, b, "t", "g1");
  static char big[200000]; /* larger than a slot keeps */
  swit_msg_view m = { .topic = "t", .topic_len = 1, .payload = big,
                      .payload_len = sizeof big };
  char err[256] = "";
  CHECK_RC(ops->publish(b, &m, 1, NULL, NULL, err, sizeof err), 0, err);
  publish_numbered(b, "t", 0, 100);
  CHECK(wait_count(&c2, 101, 5000));
  while (count_of(&c1) + count_of(&c3) < 101)
    sleep_ms(1);
  CHECK_RC(ops->pause(b, h1), 0, "pause");
  if (count_of(&c1) > 0)
    CHECK_RC(settle_range(b, h1, &c1, 0, 1, SWIT_SETTLE_REQUEUE), 0, "requeue");
  CHECK_RC(ops->unsubscribe(b, h3), 0, "unsubscribe"); /* lingering */
  publish_numbered(b, "orphans", 0, 10);
  ops->destroy(b); /* still connected, nothing settled */
  ops->destroy(NULL);
  collector_free(&c1);
  collector_free(&c2);
  collector_free(&c3);
  it("frees everything on destroy, with unsettled, requeued, lingering "
     "and orphaned messages");
}

/* ---------------------------------------------------------------------
 * Lifecycle and errors */

static void test_lifecycle(void)
{
  swit_broker *b = NULL;
  char err[256] = "";
  swit_broker_env env = { .settings = NULL };
  CHECK_RC(ops->create(&b, &env, err, sizeof err), 0, err); /* defaults */
  CHECK_RC(ops->health(b, err, sizeof err), SWIT_E_BROKER, err);
  CHECK_RC(publish_text(b, "t", "x", 0, NULL, err, sizeof err), SWIT_E_STATE,
           err);
  CHECK_RC(ops->connect(b, err, sizeof err), 0, err);
  CHECK_RC(ops->connect(b, err, sizeof err), 0, err);
  CHECK_RC(ops->health(b, err, sizeof err), 0, err);
  CHECK_RC(ops->flush(b, 1000), 0, "flush");
  collector c;
  collector_init(&c);
  void *h = subscribe(&c, b, "t", "g");
  CHECK_RC(ops->pause(b, h), 0, "pause");
  publish_numbered(b, "t", 0, 3);
  CHECK_RC(ops->disconnect(b), 0, "disconnect");
  CHECK_RC(ops->disconnect(b), 0, "disconnect");
  CHECK_RC(ops->health(b, err, sizeof err), SWIT_E_BROKER, err);
  CHECK_RC(ops->resume(b, h), 0, "resume");
  sleep_ms(50);
  CHECK(count_of(&c) == 0);
  CHECK_RC(ops->connect(b, err, sizeof err), 0, err);
  CHECK(wait_count(&c, 3, 5000)); /* retained across disconnect */
  check_numbered(&c, 0, 0, 3);
  CHECK_RC(settle_range(b, h, &c, 0, 3, SWIT_SETTLE_ACK), 0, "settle");
  ops->destroy(b);
  collector_free(&c);

  swit_memory_settings bad = { .queue_size = 0 };
  env.settings = &bad;
  b = NULL;
  CHECK_RC(ops->create(&b, &env, err, sizeof err), SWIT_E_CONFIG, err);
  CHECK(b == NULL && strstr(err, "queue_size"));
  CHECK(ops->caps == (SWIT_CAP_REQUEUE | SWIT_CAP_CONFIRM));
  CHECK(strcmp(ops->name, "memory") == 0);
  CHECK(ops->settings_size == sizeof(swit_memory_settings));
  CHECK(strcmp(ops->config_fields[0].name, "queue_size") == 0);
  CHECK(ops->config_fields[1].name == NULL);
  it("connects, reports health, disconnects keeping messages, and "
     "rejects bad settings");
}

static void test_settle_errors(void)
{
  swit_broker *b = broker_new(100, 1 << 20);
  collector c;
  collector_init(&c);
  void *h = subscribe(&c, b, "t", "g");
  publish_numbered(b, "t", 0, 2);
  CHECK(wait_count(&c, 2, 5000));
  CHECK_RC(settle_range(b, h, &c, 0, 1, 7), SWIT_E_INVAL, "bad action");
  CHECK_RC(settle_range(b, h, &c, 0, 1, SWIT_SETTLE_DROP), 0, "drop");
  CHECK_RC(settle_range(b, h, &c, 0, 1, SWIT_SETTLE_ACK), SWIT_E_NOTFOUND,
           "settled twice");
  CHECK_RC(settle_range(b, h, &c, 1, 2, SWIT_SETTLE_ACK), 0, "settle");
  ops->destroy(b);
  collector_free(&c);
  it("rejects an unknown settle action and a token settled twice");
}

/* ---------------------------------------------------------------------
 * Pipelines: publishers -> adapter -> sink -> consumer thread -> settle */

typedef struct pipeline {
  swit_broker *b;
  void *handle;
  size_t npub, batch, payload_len;
  uint64_t per_pub;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  swit_delivery *q; /* filled by the sink, drained by the consumer */
  size_t n, cap;
  atomic_int failed;
} pipeline;

typedef struct publisher {
  pipeline *p;
  uint32_t id;
} publisher;

static void pipeline_sink(void *ud, const swit_delivery *d, size_t n)
{
  pipeline *p = ud;
  pthread_mutex_lock(&p->mu);
  if (p->n + n > p->cap) {
    p->cap = (p->n + n) * 2;
    p->q = realloc(p->q, p->cap * sizeof *p->q);
    CHECK(p->q);
  }
  memcpy(p->q + p->n, d, n * sizeof *d);
  p->n += n;
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

static void *pipeline_publish(void *arg)
{
  publisher *pub = arg;
  pipeline *p = pub->p;
  char *buf = calloc(p->batch, p->payload_len);
  swit_msg_view *m = calloc(p->batch, sizeof *m);
  CHECK(buf && m);
  swit_publish_opts o = { .timeout_ms = 10000 };
  char err[256] = "";
  for (uint64_t i = 0; i < p->per_pub && !atomic_load(&p->failed);) {
    size_t k = 0;
    for (; k < p->batch && i < p->per_pub; k++, i++) {
      char *pl = buf + k * p->payload_len;
      memcpy(pl, &pub->id, sizeof pub->id);
      memcpy(pl + sizeof pub->id, &i, sizeof i);
      m[k] = (swit_msg_view){ .topic = "load", .topic_len = 4,
                              .payload = pl, .payload_len = p->payload_len };
    }
    if (ops->publish(p->b, m, k, &o, NULL, err, sizeof err) != 0) {
      fprintf(stderr, "publisher %u: %s\n", pub->id, err);
      atomic_store(&p->failed, 1);
    }
  }
  free(buf);
  free(m);
  return NULL;
}

/* The consumer: checks order per publisher, settles in batches. Returns
 * 1 when every message arrived once and in order before the deadline. */
static int pipeline_consume(pipeline *p, int64_t deadline_ms)
{
  uint64_t *next = calloc(p->npub, sizeof *next);
  swit_delivery *mine = NULL;
  size_t mine_cap = 0, received = 0, total = p->npub * p->per_pub;
  swit_settle s[256];
  int ok = 1;
  CHECK(next);
  while (ok && received < total && !atomic_load(&p->failed)) {
    int64_t left = deadline_ms - now_ms();
    struct timespec until = deadline_in(left > 0 ? (int)left : 0);
    pthread_mutex_lock(&p->mu);
    int rc = 0;
    while (p->n == 0 && rc == 0)
      rc = pthread_cond_timedwait(&p->cv, &p->mu, &until);
    swit_delivery *q = p->q; /* swap buffers */
    size_t n = p->n, cap = p->cap;
    p->q = mine;
    p->cap = mine_cap;
    p->n = 0;
    mine = q;
    mine_cap = cap;
    pthread_mutex_unlock(&p->mu);
    if (n == 0) {
      fprintf(stderr, "pipeline: timed out after %zu of %zu\n", received, total);
      ok = 0;
    }
    for (size_t i = 0, k = 0; ok && i < n; i += k) {
      for (k = 0; k < 256 && i + k < n; k++) {
        const swit_msg_view *v = mine[i + k].msg;
        uint32_t id;
        uint64_t seq;
        memcpy(&id, v->payload, sizeof id);
        memcpy(&seq, v->payload + sizeof id, sizeof seq);
        if (id >= p->npub || seq != next[id]) {
          fprintf(stderr, "pipeline: publisher %u message %llu out of order\n",
                  id, (unsigned long long)seq);
          ok = 0;
          break;
        }
        next[id]++;
        s[k] = (swit_settle){ .token = mine[i + k].token,
                              .action = SWIT_SETTLE_ACK };
      }
      CHECK_RC(ops->settle(p->b, p->handle, s, k), 0, "settle");
      received += k;
    }
  }
  for (size_t i = 0; ok && i < p->npub; i++)
    ok = next[i] == p->per_pub;
  free(next);
  free(mine);
  return ok && received == total;
}

/* Run npub publishers of per_pub messages each; returns messages/s. */
static double run_pipeline(size_t npub, uint64_t per_pub, size_t batch,
                           size_t payload_len, int64_t limit_ms)
{
  pipeline p = { .npub = npub, .per_pub = per_pub, .batch = batch,
                 .payload_len = payload_len };
  pthread_mutex_init(&p.mu, NULL);
  pthread_cond_init(&p.cv, NULL);
  p.b = broker_new(10000, 1 << 20);
  swit_sub_spec spec = { .topic = "load", .group = "g" };
  char err[256] = "";
  CHECK_RC(ops->subscribe(p.b, &spec, pipeline_sink, &p, &p.handle, err,
                          sizeof err), 0, err);
  publisher pubs[8];
  pthread_t th[8];
  CHECK(npub <= 8);
  int64_t t0 = now_ms();
  for (size_t i = 0; i < npub; i++) {
    pubs[i] = (publisher){ .p = &p, .id = (uint32_t)i };
    CHECK(pthread_create(&th[i], NULL, pipeline_publish, &pubs[i]) == 0);
  }
  int ok = pipeline_consume(&p, t0 + limit_ms);
  if (!ok)
    atomic_store(&p.failed, 1); /* let the publishers stop */
  for (size_t i = 0; i < npub; i++)
    pthread_join(th[i], NULL);
  int64_t elapsed = now_ms() - t0;
  CHECK(ok && !atomic_load(&p.failed));
  CHECK(elapsed < limit_ms);
  CHECK_RC(ops->unsubscribe(p.b, p.handle), 0, "unsubscribe");
  ops->destroy(p.b);
  free(p.q);
  pthread_mutex_destroy(&p.mu);
  pthread_cond_destroy(&p.cv);
  return (double)(npub * per_pub) * 1000.0 / (double)(elapsed ? elapsed : 1);
}

static void test_concurrent_publishers(void)
{
  double rate = run_pipeline(2, 200000, 1, 16, 30000);
  printf("# 2 publishers x 200000 single publishes: %.0f msg/s\n", rate);
  it("delivers 2 x 200000 concurrently published messages exactly once, "
     "in per-publisher order, within 30 s");
}

static void test_batch_throughput(void)
{
  const char *env = getenv("SWIT_TEST_MEMORY_BENCH_MESSAGES");
  uint64_t n = env ? strtoull(env, NULL, 10) : 400000;
  CHECK(n > 0);
  double rate = run_pipeline(1, n, 64, 64, 60000);
  printf("# 1 publisher, batches of 64, 64-byte payloads, %llu messages: "
         "%.0f msg/s (publish+deliver+ack)\n", (unsigned long long)n, rate);
  it("sustains a batch-publishing pipeline without loss");
}

int main(void)
{
  test_delivers_in_publish_order();
  test_copies_key_and_headers();
  test_empty_message();
  test_every_group_gets_every_message();
  test_members_split_messages();
  test_paused_member_share_goes_to_others();
  test_requeue_redelivers_first();
  test_pause_and_resume();
  test_ack_unblocks_publisher();
  test_full_at_once_without_timeout();
  test_full_after_timeout();
  test_confirm_ids_increase();
  test_batch_publish();
  test_unsubscribe_stops_sink_calls();
  test_unsubscribe_waits_for_sink();
  test_last_member_releases_group();
  test_kept_for_first_group();
  test_destroy_with_unsettled();
  test_lifecycle();
  test_settle_errors();
  test_concurrent_publishers();
  test_batch_throughput();
  printf("all memory broker tests passed\n");
  return 0;
}
