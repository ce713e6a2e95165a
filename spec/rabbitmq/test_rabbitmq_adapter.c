/*
 * test_rabbitmq_adapter.c - the RabbitMQ adapter's ops driven directly,
 * against the `rabbitmq_fault` server (it closes the connections of that
 * server): the broker.h contract where the Lua suites cannot see it.
 *
 *   - a batch published with confirm ids returns once every message is
 *     confirmed, with increasing ids, and arrives in order with its key,
 *     headers and properties;
 *   - settles after unsubscribe work; REQUEUE gives a message back;
 *   - pause and resume lose nothing;
 *   - deliveries made before the connection dropped are never acked on
 *     the new channel: settling them is harmless, and the broker
 *     redelivers them (amqp-redelivered), after which the channel works;
 *   - health follows the connection; flush returns once confirmed;
 *   - a subscription's own dead-letter topic has a parking queue, which a
 *     subscription of that topic (spec.parking) consumes; a mandatory
 *     publish no queue takes fails instead of being confirmed, while an
 *     ordinary one is confirmed (and dropped by the broker).
 *
 *   test_rabbitmq_adapter AMQP_URL RABBITMQ_SH RUN_DIR
 *
 * The test thread plays the host: it owns the sink's record of deliveries
 * (under a mutex, as the sink runs on the adapter's I/O thread).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "config/config.h"
#include "rabbitmq_broker.h"

#define CHECK_RC(call, want)                                            \
  do {                                                                  \
    int rc_ = (call);                                                   \
    if (rc_ != (want))                                                  \
      fprintf(stderr, "  rc %d (%s), want %d: %s\n", rc_,               \
              swit_strerror(rc_), (want), err);                         \
    CHECK(rc_ == (want));                                               \
  } while (0)

static const swit_broker_ops *ops = &swit_broker_rabbitmq;
static const char *script, *run_dir;
static char err[512];

/* ---------------------------------------------------------------------
 * A host stand-in: the sink records deliveries; states are counted. */

enum { MAXD = 4096 };

typedef struct sink_rec {
  pthread_mutex_t mu;
  swit_delivery d[MAXD];
  char payload[MAXD][16]; /* copies: a view is gone once settled */
  size_t n;
} sink_rec;

static pthread_mutex_t state_mu = PTHREAD_MUTEX_INITIALIZER;
static int last_state, connects;

static void on_state(void *ud, swit_conn_state s, const char *detail)
{
  (void)ud, (void)detail;
  pthread_mutex_lock(&state_mu);
  last_state = (int)s;
  connects += s == SWIT_CONN_CONNECTED;
  pthread_mutex_unlock(&state_mu);
}

static int64_t backoff(void *ud, uint32_t attempt)
{
  (void)ud, (void)attempt;
  return 100;
}

static void sink(void *ud, const swit_delivery *d, size_t n)
{
  sink_rec *r = ud;
  pthread_mutex_lock(&r->mu);
  for (size_t i = 0; i < n && r->n < MAXD; i++) {
    const swit_msg_view *m = d[i].msg;
    snprintf(r->payload[r->n], sizeof r->payload[0], "%.*s",
             (int)m->payload_len, m->payload);
    r->d[r->n++] = d[i];
  }
  pthread_mutex_unlock(&r->mu);
}

static size_t count(sink_rec *r)
{
  pthread_mutex_lock(&r->mu);
  size_t n = r->n;
  pthread_mutex_unlock(&r->mu);
  return n;
}

static void nap_ms(long ms)
{
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
  nanosleep(&ts, NULL);
}

/* Wait up to 20 s for the sink to have at least n deliveries. */
static int wait_count(sink_rec *r, size_t n)
{
  for (int i = 0; i < 2000 && count(r) < n; i++)
    nap_ms(10);
  return count(r) >= n;
}

static int wait_connects(int n)
{
  for (int i = 0; i < 3000; i++) {
    pthread_mutex_lock(&state_mu);
    int ok = connects >= n && last_state == SWIT_CONN_CONNECTED;
    pthread_mutex_unlock(&state_mu);
    if (ok)
      return 1;
    nap_ms(10);
  }
  return 0;
}

static void settle_all(swit_broker *b, void *h, sink_rec *r, size_t from,
                       size_t to, int action)
{
  swit_settle s[MAXD];
  for (size_t i = from; i < to; i++)
    s[i - from] = (swit_settle){ r->d[i].token, action };
  CHECK(ops->settle(b, h, s, to - from) == 0);
}

static const char *header(const swit_msg_view *m, const char *name)
{
  static char v[256];
  for (uint32_t i = 0; i < m->nheaders; i++) {
    const swit_header *h = &m->headers[i];
    if (h->name_len == strlen(name) && !memcmp(h->name, name, h->name_len)) {
      snprintf(v, sizeof v, "%.*s", (int)h->value_len, h->value);
      return v;
    }
  }
  return NULL;
}

static swit_msg_view msg(const char *topic, const char *payload,
                         const char *key, const swit_header *h, uint32_t nh)
{
  return (swit_msg_view){ .topic = topic, .topic_len = (uint32_t)strlen(topic),
                          .payload = payload, .payload_len = strlen(payload),
                          .key = key, .key_len = key ? (uint32_t)strlen(key) : 0,
                          .headers = h, .nheaders = nh, .partition = -1 };
}

static void topic_name(char *buf, size_t len, const char *what)
{
  static int seq;
  snprintf(buf, len, "adapter%ld.%d.%d.%s", (long)time(NULL), (int)getpid(),
           ++seq, what);
}

/* ---------------------------------------------------------------------
 * Cases */

static void test_batch_confirm(swit_broker *b)
{
  char topic[128];
  sink_rec r = { .mu = PTHREAD_MUTEX_INITIALIZER };
  swit_sub_spec spec = { .group = "adapter", .prefetch = 200 };
  void *h = NULL;
  swit_header hd[2] = { { "x-a", "1", 3, 1 }, { "amqp-message-id", "mid", 15, 3 } };
  swit_msg_view v[100];
  char payloads[100][16];
  uint64_t ids[100];
  swit_publish_opts o = { .timeout_ms = 1000 };

  topic_name(topic, sizeof topic, "batch");
  spec.topic = topic;
  CHECK_RC(ops->subscribe(b, &spec, sink, &r, &h, err, sizeof err), 0);
  for (int i = 0; i < 100; i++) {
    snprintf(payloads[i], sizeof payloads[i], "m%d", i);
    v[i] = msg(topic, payloads[i], "k", hd, 2);
  }
  CHECK_RC(ops->publish(b, v, 100, &o, ids, err, sizeof err), 0);
  for (int i = 0; i < 100; i++)
    CHECK(ids[i] != 0 && (i == 0 || ids[i] > ids[i - 1]));
  CHECK(wait_count(&r, 100));
  for (size_t i = 0; i < 100 && i < count(&r); i++) {
    const swit_msg_view *m = r.d[i].msg;
    CHECK(m->payload_len == strlen(payloads[i]) &&
          !memcmp(m->payload, payloads[i], m->payload_len));
    CHECK(m->key_len == 1 && m->key[0] == 'k');
    CHECK(header(m, "x-a") && !strcmp(header(m, "x-a"), "1"));
    CHECK(header(m, "amqp-message-id") && !strcmp(header(m, "amqp-message-id"), "mid"));
    CHECK(m->timestamp_ms > 0 && !r.d[i].reject);
  }
  settle_all(b, h, &r, 0, count(&r), SWIT_SETTLE_ACK);
  CHECK(ops->flush(b, 5000) == 0);
  CHECK(ops->unsubscribe(b, h) == 0);
}

/* Dead letters: the parking queue of a custom dead-letter topic, and
 * mandatory publishes (what the host uses for dead letters). */
static void test_dead_letter_topic(swit_broker *b)
{
  char topic[128], dead[128], nowhere[128];
  sink_rec r = { .mu = PTHREAD_MUTEX_INITIALIZER };
  swit_sub_spec spec = { .group = "adapter", .prefetch = 10 };
  swit_publish_opts dl = { .timeout_ms = 1000, .mandatory = 1 };
  swit_publish_opts plain = { .timeout_ms = 1000 };
  void *h = NULL, *hd = NULL;
  uint64_t ids[2];

  topic_name(topic, sizeof topic, "dl");
  topic_name(dead, sizeof dead, "my.parking");
  topic_name(nowhere, sizeof nowhere, "nowhere");
  spec.topic = topic;
  spec.dead_letter = dead;
  CHECK_RC(ops->subscribe(b, &spec, sink, &r, &h, err, sizeof err), 0);
  swit_msg_view v[2] = { msg(dead, "parked", NULL, NULL, 0),
                         msg(nowhere, "lost?", NULL, NULL, 0) };
  CHECK_RC(ops->publish(b, &v[0], 1, &dl, ids, err, sizeof err), 0);
  CHECK(ids[0] != 0);
  CHECK_RC(ops->publish(b, &v[1], 1, &dl, ids, err, sizeof err), SWIT_E_BROKER);
  CHECK(ids[0] == 0 && strstr(err, "no queue is bound"));
  CHECK_RC(ops->publish(b, v, 2, &dl, ids, err, sizeof err), SWIT_E_BROKER);
  CHECK(ids[0] != 0 && ids[1] == 0);
  CHECK_RC(ops->publish(b, &v[1], 1, &plain, ids, err, sizeof err), 0);
  CHECK(ids[0] != 0);
  /* the parking queue is the queue of a subscription to that topic */
  spec.topic = dead;
  spec.dead_letter = NULL;
  spec.parking = 1;
  CHECK_RC(ops->subscribe(b, &spec, sink, &r, &hd, err, sizeof err), 0);
  CHECK(wait_count(&r, 2));
  CHECK(count(&r) == 2);
  for (size_t i = 0; i < count(&r); i++)
    CHECK(r.d[i].msg->payload_len == 6 &&
          !memcmp(r.d[i].msg->payload, "parked", 6));
  settle_all(b, hd, &r, 0, count(&r), SWIT_SETTLE_ACK);
  CHECK(ops->unsubscribe(b, hd) == 0);
  CHECK(ops->unsubscribe(b, h) == 0);
}

/* Deliveries left unsettled at unsubscribe, requeued afterwards, come
 * back to the next subscriber of the group. */
static void test_settle_after_unsubscribe(swit_broker *b)
{
  char topic[128];
  sink_rec r = { .mu = PTHREAD_MUTEX_INITIALIZER };
  sink_rec r2 = { .mu = PTHREAD_MUTEX_INITIALIZER };
  swit_sub_spec spec = { .group = "adapter", .prefetch = 10 };
  void *h = NULL, *h2 = NULL;
  swit_msg_view v[5];
  uint64_t ids[5];

  topic_name(topic, sizeof topic, "requeue");
  spec.topic = topic;
  CHECK_RC(ops->subscribe(b, &spec, sink, &r, &h, err, sizeof err), 0);
  for (int i = 0; i < 5; i++)
    v[i] = msg(topic, "x", NULL, NULL, 0);
  CHECK_RC(ops->publish(b, v, 5, NULL, ids, err, sizeof err), 0);
  CHECK(wait_count(&r, 5));
  CHECK(ops->unsubscribe(b, h) == 0);
  settle_all(b, NULL, &r, 0, count(&r), SWIT_SETTLE_REQUEUE);
  CHECK_RC(ops->subscribe(b, &spec, sink, &r2, &h2, err, sizeof err), 0);
  CHECK(wait_count(&r2, 5));
  CHECK(count(&r2) == 5 && header(r2.d[0].msg, "amqp-redelivered"));
  settle_all(b, h2, &r2, 0, count(&r2), SWIT_SETTLE_ACK);
  CHECK(ops->unsubscribe(b, h2) == 0);
}

static void test_pause_resume(swit_broker *b)
{
  char topic[128];
  sink_rec r = { .mu = PTHREAD_MUTEX_INITIALIZER };
  swit_sub_spec spec = { .group = "adapter", .prefetch = 20 };
  void *h = NULL;
  swit_msg_view v[200];
  char payloads[200][16];

  topic_name(topic, sizeof topic, "pause");
  spec.topic = topic;
  CHECK_RC(ops->subscribe(b, &spec, sink, &r, &h, err, sizeof err), 0);
  CHECK(ops->pause(b, h) == 0);
  for (int i = 0; i < 200; i++) {
    snprintf(payloads[i], sizeof payloads[i], "%d", i);
    v[i] = msg(topic, payloads[i], NULL, NULL, 0);
  }
  CHECK_RC(ops->publish(b, v, 200, NULL, NULL, err, sizeof err), 0);
  CHECK(ops->flush(b, 5000) == 0);
  size_t settled = 0;
  for (int k = 0; k < 6; k++) { /* flip while messages flow */
    CHECK(ops->resume(b, h) == 0);
    nap_ms(20);
    size_t n = count(&r);
    settle_all(b, h, &r, settled, n, SWIT_SETTLE_ACK); /* acks coalesce */
    settled = n;
    CHECK(ops->pause(b, h) == 0);
    nap_ms(20);
  }
  CHECK(ops->resume(b, h) == 0);
  for (int i = 0; i < 100 && count(&r) < 200; i++) {
    size_t n = count(&r);
    settle_all(b, h, &r, settled, n, SWIT_SETTLE_ACK);
    settled = n;
    nap_ms(100);
  }
  nap_ms(300);
  CHECK(count(&r) == 200); /* each once */
  int seen[200] = { 0 };
  size_t n = count(&r);
  for (size_t i = 0; i < n; i++) {
    int k = atoi(r.payload[i]);
    if (k >= 0 && k < 200)
      seen[k]++;
  }
  for (int i = 0; i < 200; i++)
    CHECK(seen[i] == 1);
  settle_all(b, h, &r, settled, n, SWIT_SETTLE_ACK);
  CHECK(ops->unsubscribe(b, h) == 0);
}

/* Deliveries of a connection that is gone: settling them must not touch
 * the new channel; the broker redelivers them. */
static void test_stale_settles(swit_broker *b)
{
  char topic[128], cmd[1024];
  sink_rec r = { .mu = PTHREAD_MUTEX_INITIALIZER };
  swit_sub_spec spec = { .group = "adapter", .prefetch = 10 };
  void *h = NULL;
  swit_msg_view v[5], one;
  uint64_t ids[5], id;

  topic_name(topic, sizeof topic, "stale");
  spec.topic = topic;
  CHECK_RC(ops->subscribe(b, &spec, sink, &r, &h, err, sizeof err), 0);
  for (int i = 0; i < 5; i++)
    v[i] = msg(topic, "s", NULL, NULL, 0);
  CHECK_RC(ops->publish(b, v, 5, NULL, ids, err, sizeof err), 0);
  CHECK(wait_count(&r, 5));
  pthread_mutex_lock(&state_mu);
  int before = connects;
  pthread_mutex_unlock(&state_mu);
  snprintf(cmd, sizeof cmd, "'%s' ctl '%s' close_all_connections adapter-test "
           ">/dev/null", script, run_dir);
  CHECK(system(cmd) == 0);
  CHECK(wait_connects(before + 1));
  CHECK(ops->health(b, err, sizeof err) == 0);
  settle_all(b, h, &r, 0, 5, SWIT_SETTLE_ACK); /* old tags: dropped */
  CHECK(wait_count(&r, 10));                   /* redelivered */
  for (size_t i = 5; i < 10 && i < count(&r); i++)
    CHECK(header(r.d[i].msg, "amqp-redelivered") != NULL);
  settle_all(b, h, &r, 5, count(&r), SWIT_SETTLE_ACK);
  one = msg(topic, "after", NULL, NULL, 0);
  CHECK_RC(ops->publish(b, &one, 1, NULL, &id, err, sizeof err), 0);
  CHECK(wait_count(&r, 11)); /* the channel still works */
  nap_ms(300);
  CHECK(count(&r) == 11);
  settle_all(b, h, &r, 10, count(&r), SWIT_SETTLE_ACK);
  CHECK(ops->flush(b, 5000) == 0);
  CHECK(ops->unsubscribe(b, h) == 0);
}

/* ---------------------------------------------------------------------
 * Main */

int main(int argc, char **argv)
{
  char yaml[1024];
  swit_config *cfg = NULL;
  swit_rabbitmq_settings st;
  swit_broker *b = NULL;

  if (argc != 4) {
    fprintf(stderr, "usage: %s AMQP_URL RABBITMQ_SH RUN_DIR\n", argv[0]);
    return 2;
  }
  script = argv[2];
  run_dir = argv[3];
  snprintf(yaml, sizeof yaml,
           "messaging:\n  broker:\n    type: rabbitmq\n    endpoints: ['%s']\n"
           "    config: {heartbeat: 2s}\n", argv[1]);
  if (swit__config_load_string(&cfg, yaml, NULL, err, sizeof err) ||
      swit__config_apply(&cfg->messaging.broker.config,
                         swit__rabbitmq_config_fields, 0, &st, err, sizeof err)) {
    fprintf(stderr, "config: %s\n", err);
    return 1;
  }
  swit_broker_env env = { .settings = &st, .set_state = on_state,
                          .backoff_ms = backoff };
  swit__broker_env_config(&env, cfg);
  CHECK_RC(ops->create(&b, &env, err, sizeof err), 0);
  swit__config_free_fields(swit__rabbitmq_config_fields, &st); /* copied */
  CHECK_RC(ops->connect(b, err, sizeof err), 0);
  CHECK(wait_connects(1));
  CHECK(ops->health(b, err, sizeof err) == 0 && strstr(err, "connected to"));
  test_batch_confirm(b);
  test_settle_after_unsubscribe(b);
  test_pause_resume(b);
  test_stale_settles(b);
  test_dead_letter_topic(b);
  CHECK(ops->disconnect(b) == 0);
  CHECK(ops->health(b, err, sizeof err) == SWIT_E_BROKER);
  ops->destroy(b);
  swit__config_free(cfg);
  return check_done("rabbitmq adapter");
}
