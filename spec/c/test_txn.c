/*
 * test_txn.c - the host's side of exactly_once subscriptions (host/core/txn.c),
 * without Kafka: the memory broker wrapped in a fake adapter whose
 * txn_begin/txn_end record what a transaction covers. Checks that a
 * failed handler aborts, that the messages of a partition commit in
 * order and each once (a failing one holds back the later ones), that a
 * rejected message is dead-lettered inside a transaction, that publishes
 * are made inside the transaction, that plain subscriptions run outside
 * any, that exactly_once forces ordering partition, and that a broker
 * without transactions refuses exactly_once at start.
 *
 * One worker; the fake's records are touched by the worker thread only
 * (and read after the host stopped).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/host_int.h"
#include "core/msg_int.h"

#define N 30

static swit_broker_ops fake;
static const swit_broker_ops *real;
static _Thread_local int in_txn;
static int begins, commits, aborts, nested, unbalanced;
static int committed[4 * N], ncommitted;
static int outs_in_txn, outs_outside, plain_in_txn, plain_calls;
static int calls[N], attempts_of_3, dead[N], ndead;

static int payload_int(const swit_msg_view *v)
{
  char text[16];
  size_t len = v->payload_len < sizeof text - 1 ? v->payload_len
                                                : sizeof text - 1;
  memcpy(text, v->payload, len);
  text[len] = '\0';
  return atoi(text);
}

/* ------------------------------------------------------------------ */
/* The fake adapter: memory, plus transactions that only record */

static int fake_begin(swit_broker *b, uint32_t worker, char *err,
                      size_t errlen)
{
  (void)b, (void)worker, (void)err, (void)errlen;
  nested += in_txn;
  in_txn = 1;
  begins++;
  return 0;
}

static int fake_end(swit_broker *b, uint32_t worker, const swit_txn_msg *msgs,
                    size_t n, int commit, char *err, size_t errlen)
{
  swit__worker *w = swit__current_worker;
  (void)b, (void)worker, (void)err, (void)errlen;

  unbalanced += !in_txn;
  in_txn = 0;
  if (!commit) {
    aborts++;
    return 0;
  }
  commits++;
  for (size_t i = 0; i < n; i++)         /* the batch holds the message */
    for (size_t j = 0; j < w->ffi.n; j++)
      if (w->items[j].token == msgs[i].token &&
          !strncmp(w->items[j].msg->topic, "in", w->items[j].msg->topic_len) &&
          ncommitted < 4 * N)
        committed[ncommitted++] = payload_int(w->items[j].msg);
  return 0;
}

static int fake_publish(swit_broker *b, const swit_msg_view *m, size_t n,
                        const swit_publish_opts *o, uint64_t *confirm,
                        char *err, size_t errlen)
{
  if (m->topic_len == 3 && !memcmp(m->topic, "out", 3)) {
    outs_in_txn += in_txn;
    outs_outside += !in_txn;
  }
  return real->publish(b, m, n, o, confirm, err, errlen);
}

/* ------------------------------------------------------------------ */
/* Handlers */

static int in_handler(swit_msg_t *m, void *ud)
{
  size_t len;
  const char *p = swit_msg_payload(m, &len);
  swit_msg_view v = {.payload = p, .payload_len = len};
  int i = payload_int(&v);
  char err[128];
  (void)ud;

  if (i < 0 || i >= N) return SWIT_ACK;
  calls[i]++;
  swit_host_publish(ud, "out", NULL, 0, p, len, NULL, NULL, err, sizeof err);
  if (i == 3) {
    attempts_of_3 = (int)swit_msg_attempt(m);
    return swit_msg_attempt(m) == 1 ? SWIT_RETRY : SWIT_ACK;
  }
  if (i == 7) return SWIT_REJECT;
  return SWIT_ACK;
}

static int plain_handler(swit_msg_t *m, void *ud)
{
  (void)m, (void)ud;
  plain_calls++;
  plain_in_txn += in_txn;
  return SWIT_ACK;
}

static int dlq_handler(swit_msg_t *m, void *ud)
{
  size_t len;
  const char *p = swit_msg_payload(m, &len);
  swit_msg_view v = {.payload = p, .payload_len = len};
  (void)ud;
  if (ndead < N) dead[ndead++] = payload_int(&v);
  return SWIT_ACK;
}

/* ------------------------------------------------------------------ */

static const char yaml[] =
  "server: {name: t, admin: {listen: \"off\"}, log: {level: error}}\n"
  "messaging:\n"
  "  broker: {type: memory}\n"
  "  publishers:\n"
  "    eos: {transactional: true}\n"
  "  subscribers:\n"
  "    default: {max_attempts: 3, retry_delay: 5ms, retry_max_delay: 10ms}\n"
  "  resources:\n"
  "    subscribers: {worker_pool_size: 1}\n";

static void test_transactions_commit_in_order_and_abort_failures(void)
{
  swit_host_t *h = NULL;
  char err[256], text[16];

  CHECK(swit_host_new_from_string(&h, yaml, ".", err, sizeof err) == 0);
  if (!h) return;
  real = h->ops;
  fake = *real;
  fake.txn_begin = fake_begin;
  fake.txn_end = fake_end;
  fake.publish = fake_publish;
  h->ops = &fake;
  CHECK(swit_host_handle(h, "in", "eos", SWIT_ORDER_KEY, in_handler, h, err,
                         sizeof err) == 0);
  CHECK(swit_host_handle(h, "plain", NULL, SWIT_ORDER_KEY, plain_handler,
                         NULL, err, sizeof err) == 0);
  CHECK(swit_host_handle(h, "in.dlq", NULL, SWIT_ORDER_KEY, dlq_handler, NULL,
                         err, sizeof err) == 0);
  CHECK(swit_host_start(h, err, sizeof err) == 0);
  CHECK(h->subs[0]->exactly_once && h->subs[0]->ordering == SWIT_ORDER_PARTITION);
  CHECK(!h->subs[1]->exactly_once && h->subs[1]->ordering == SWIT_ORDER_KEY);
  for (int i = 0; i < N; i++) {
    snprintf(text, sizeof text, "%d", i);
    CHECK(swit_host_publish(h, "in", "k", 1, text, strlen(text), NULL, NULL,
                            err, sizeof err) == 0);
    CHECK(swit_host_publish(h, "plain", "k", 1, text, strlen(text), NULL,
                            NULL, err, sizeof err) == 0);
  }
  CHECK(swit_host_wait_idle(h, 200, 30000) == 0);
  CHECK(swit_host_stop(h, 5000) == 0);
  swit_host_free(h);

  /* each message committed once, in order (3 held back 4..N-1) */
  CHECK(ncommitted == N);
  for (int i = 0; i < ncommitted && i < N; i++) CHECK(committed[i] == i);
  CHECK(aborts >= 2);                  /* 3 failed once, 7 was rejected */
  CHECK(commits + aborts == begins);
  CHECK(nested == 0 && unbalanced == 0);
  CHECK(attempts_of_3 == 2);
  CHECK(calls[7] >= 1);
  CHECK(ndead == 1 && dead[0] == 7);   /* dead-lettered once, in a txn */
  CHECK(outs_outside == 0 && outs_in_txn >= N);
  CHECK(plain_calls == N && plain_in_txn == 0);
}

static void test_a_broker_without_transactions_refuses(void)
{
  swit_host_t *h = NULL;
  char err[256];

  CHECK(swit_host_new_from_string(&h, yaml, ".", err, sizeof err) == 0);
  if (!h) return;
  CHECK(swit_host_handle(h, "in", "eos", SWIT_ORDER_KEY, plain_handler, NULL,
                         err, sizeof err) == 0);
  CHECK(swit_host_start(h, err, sizeof err) == SWIT_E_CONFIG);
  CHECK(strstr(err, "exactly_once needs transactions, and broker 'memory' "
                    "has none") != NULL);
  swit_host_free(h);
}

int main(void)
{
  test_transactions_commit_in_order_and_abort_failures();
  test_a_broker_without_transactions_refuses();
  return check_done("txn");
}
