/*
 * kafka_txn.c - Kafka transactions for exactly_once subscriptions: one
 * transactional producer per worker, begin, commit with the consumed
 * offsets (send_offsets_to_transaction), abort.
 *
 * librdkafka allows one open transaction per producer, and the host runs
 * at most one transaction per worker, so each worker gets its own
 * producer, created at its first transaction with transactional.id
 * "<transactional_id>-<worker>" (stable across restarts, so a restarted
 * process fences its previous incarnation's unfinished transactions).
 * Its settings are the producer's (messaging.broker.config); idempotence
 * is implied by librdkafka.
 *
 * Between txn_begin and txn_end, a publish on the worker's thread goes to
 * its transactional producer (tl_txn, a thread-local): Lua handlers and
 * dead-lettering reach it through the ordinary publish op. Delivery
 * reports of these messages are not waited for: commit_transaction
 * flushes them and fails if one failed.
 *
 * txn_end marks the covered messages in their partitions' settle windows
 * (KW_TXN), computes the offset each partition commits if they are done
 * (never past an unfinished message), sends those offsets with each
 * group's metadata, and commits. On an abort or a failed commit, the
 * marks are taken back. A fatal error (e.g. the producer was fenced)
 * destroys the producer; the next transaction creates it again.
 *
 * Threads: a worker's slot is touched only by that worker's thread
 * (begin, publish, end), and freed at disconnect, after the workers
 * stopped. Window marks are made under the group's g->mu.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_int.h"

#define TXN_TIMEOUT_MS 30000 /* init, send_offsets, commit and abort */
#define TXN_GROUPS 8         /* distinct groups in one transaction */

static _Thread_local ktxn *tl_txn;
static _Thread_local kbroker *tl_broker;

int swit__kafka_txns_init(kbroker *b)
{
  uint32_t n = b->env.workers;
  b->txns = calloc(n > 0 ? n : 1, sizeof *b->txns);
  if (!b->txns)
    return SWIT_E_NOMEM;
  b->ntxns = (size_t)(n > 0 ? n : 1);
  return 0;
}

void swit__kafka_txns_free(kbroker *b)
{
  for (size_t i = 0; b->txns && i < b->ntxns; i++) {
    ktxn *t = &b->txns[i];
    if (t->rk && t->open) {
      rd_kafka_error_t *e = rd_kafka_abort_transaction(t->rk, 5000);
      if (e)
        rd_kafka_error_destroy(e);
    }
    if (t->rk)
      rd_kafka_destroy(t->rk);
    t->rk = NULL;
  }
  free(b->txns);
  b->txns = NULL;
  b->ntxns = 0;
}

rd_kafka_t *swit__kafka_txn_current(kbroker *b)
{
  return tl_txn && tl_broker == b && tl_txn->open ? tl_txn->rk : NULL;
}

/* ---------------------------------------------------------------------
 * The producers */

static void txn_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm,
                      void *opaque)
{
  (void)rk, (void)rkm, (void)opaque; /* commit_transaction reports failures */
}

static int fail_error(rd_kafka_error_t *e, const char *what, char *err,
                      size_t errlen)
{
  int rc = swit__fail(err, errlen, SWIT_E_BROKER, "kafka: %s: %s", what,
                      rd_kafka_error_string(e));
  rd_kafka_error_destroy(e);
  return rc;
}

static void producer_drop(ktxn *t)
{
  if (t->rk)
    rd_kafka_destroy(t->rk);
  t->rk = NULL;
  t->ready = 0;
  t->open = 0;
}

static int producer_new(kbroker *b, ktxn *t, uint32_t worker, char *err,
                        size_t errlen)
{
  char id[300], text[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_dup(b->conf.producer);

  if (!conf)
    return swit__fail(err, errlen, SWIT_E_NOMEM, "kafka: out of memory");
  snprintf(id, sizeof id, "%s-%u", b->conf.txn_prefix, worker);
  if (rd_kafka_conf_set(conf, "transactional.id", id, text, sizeof text) ||
      rd_kafka_conf_set(conf, "statistics.interval.ms", "0", text,
                        sizeof text)) {
    rd_kafka_conf_destroy(conf);
    return swit__fail(err, errlen, SWIT_E_CONFIG, "kafka: %s", text);
  }
  rd_kafka_conf_set_opaque(conf, b);
  rd_kafka_conf_set_dr_msg_cb(conf, txn_dr_cb);
  swit__kafka_conf_callbacks(conf, 1);
  rd_kafka_conf_set_stats_cb(conf, NULL);
  if (!(t->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, text, sizeof text))) {
    rd_kafka_conf_destroy(conf);
    return swit__kafka_new_fail(text, err, errlen);
  }
  return 0; /* conf owned by t->rk now */
}

/* The worker's producer, created and initialised on first use. */
static int producer_ready(kbroker *b, ktxn *t, uint32_t worker, char *err,
                          size_t errlen)
{
  rd_kafka_error_t *e;
  int rc;

  if (t->ready)
    return 0;
  if (!t->rk && (rc = producer_new(b, t, worker, err, errlen)))
    return rc;
  if ((e = rd_kafka_init_transactions(t->rk, TXN_TIMEOUT_MS))) {
    if (rd_kafka_error_is_fatal(e))
      producer_drop(t);
    return fail_error(e, "init_transactions", err, errlen);
  }
  t->ready = 1;
  KAFKA_LOG(b, SWIT_LOG_INFO, "kafka: transactional producer %s-%u ready",
            b->conf.txn_prefix, worker);
  return 0;
}

/* ---------------------------------------------------------------------
 * Begin, publish */

int swit__kafka_txn_begin(kbroker *b, uint32_t worker, char *err,
                          size_t errlen)
{
  rd_kafka_error_t *e;
  ktxn *t;
  int rc;

  if (!b || worker >= b->ntxns)
    return swit__fail(err, errlen, SWIT_E_INVAL, "kafka: no "
                      "transactional producer for worker %u", worker);
  t = &b->txns[worker];
  if (t->open)
    return swit__fail(err, errlen, SWIT_E_STATE, "kafka: worker %u "
                      "already has an open transaction", worker);
  if ((rc = producer_ready(b, t, worker, err, errlen)))
    return rc;
  rd_kafka_poll(t->rk, 0);
  if ((e = rd_kafka_begin_transaction(t->rk))) {
    if (rd_kafka_error_is_fatal(e))
      producer_drop(t);
    return fail_error(e, "begin_transaction", err, errlen);
  }
  t->open = 1;
  tl_txn = t;
  tl_broker = b;
  return 0;
}

int swit__kafka_txn_publish(kbroker *b, rd_kafka_t *rk,
                            const swit_msg_view *msgs, size_t n, char *err,
                            size_t errlen)
{
  char topic[256];
  (void)b;

  for (size_t i = 0; i < n; i++) {
    const swit_msg_view *m = &msgs[i];
    rd_kafka_headers_t *hdrs;
    rd_kafka_resp_err_t e;
    if (m->topic_len >= sizeof topic)
      return swit__fail(err, errlen, SWIT_E_INVAL, "publish: topic "
                        "name of %u bytes is too long", m->topic_len);
    memcpy(topic, m->topic, m->topic_len);
    topic[m->topic_len] = '\0';
    hdrs = swit__kafka_headers(m);
    e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                          RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                          RD_KAFKA_V_VALUE((void *)m->payload, m->payload_len),
                          RD_KAFKA_V_KEY(m->key, m->key ? m->key_len : 0),
                          RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
    if (e) {
      if (hdrs)
        rd_kafka_headers_destroy(hdrs);
      return swit__kafka_produce_error(e, m, err, errlen);
    } /* else hdrs owned by librdkafka */
  }
  return 0;
}

/* ---------------------------------------------------------------------
 * End: offsets, commit, abort */

typedef struct txn_group {
  kgroup *g;
  rd_kafka_topic_partition_list_t *offsets;
} txn_group;

/* Mark (on) or unmark the messages of group g. */
static void mark_group(kgroup *g, const swit_txn_msg *msgs, size_t n, int on)
{
  pthread_mutex_lock(&g->mu);
  for (size_t i = 0; i < n; i++) {
    kmsg *r = (kmsg *)(uintptr_t)msgs[i].token;
    if (r->part->sub->g == g)
      swit__kafka_txn_mark(r, on);
  }
  pthread_mutex_unlock(&g->mu);
}

/* The groups of the messages, with the offsets their partitions commit
 * once the marked messages are done. 0, or SWIT_E_FULL (too many groups). */
static int collect(const swit_txn_msg *msgs, size_t n, txn_group *tg,
                   size_t *ntg)
{
  *ntg = 0;
  for (size_t i = 0; i < n; i++) {
    kgroup *g = ((kmsg *)(uintptr_t)msgs[i].token)->part->sub->g;
    size_t k = 0;
    while (k < *ntg && tg[k].g != g)
      k++;
    if (k == *ntg) {
      if (*ntg == TXN_GROUPS)
        return SWIT_E_FULL;
      tg[(*ntg)++] = (txn_group){g, NULL};
      mark_group(g, msgs, n, 1);
    }
  }
  for (size_t k = 0; k < *ntg; k++) {
    kgroup *g = tg[k].g;
    tg[k].offsets = rd_kafka_topic_partition_list_new(8);
    pthread_mutex_lock(&g->mu);
    for (size_t i = 0; i < n; i++) {
      kpart *p = ((kmsg *)(uintptr_t)msgs[i].token)->part;
      int64_t at;
      if (p->sub->g != g || !p->owned ||
          rd_kafka_topic_partition_list_find(tg[k].offsets, p->sub->topic,
                                             p->partition) ||
          (at = swit__kafka_txn_point(p)) < 0)
        continue;
      rd_kafka_topic_partition_list_add(tg[k].offsets, p->sub->topic,
                                        p->partition)->offset = at;
    }
    pthread_mutex_unlock(&g->mu);
  }
  return 0;
}

/* After the commit: remember what each partition committed. */
static void committed(txn_group *tg, size_t ntg)
{
  for (size_t k = 0; k < ntg; k++) {
    kgroup *g = tg[k].g;
    rd_kafka_topic_partition_list_t *l = tg[k].offsets;
    pthread_mutex_lock(&g->mu);
    for (int i = 0; i < l->cnt; i++)
      for (ksub *s = g->subs; s; s = s->next)
        if (!strcmp(s->topic, l->elems[i].topic) &&
            l->elems[i].partition < s->nparts &&
            s->parts[l->elems[i].partition])
          s->parts[l->elems[i].partition]->committed = l->elems[i].offset;
    pthread_mutex_unlock(&g->mu);
  }
}

static int send_offsets(ktxn *t, txn_group *tg, size_t ntg, char *err,
                        size_t errlen)
{
  for (size_t k = 0; k < ntg; k++) {
    rd_kafka_consumer_group_metadata_t *md;
    rd_kafka_error_t *e;
    if (!tg[k].offsets->cnt)
      continue;
    if (!(md = rd_kafka_consumer_group_metadata(tg[k].g->rk)))
      return swit__fail(err, errlen, SWIT_E_STATE, "kafka: group '%s' "
                        "has no metadata", tg[k].g->name);
    for (int i = 0; i < tg[k].offsets->cnt; i++)
      KAFKA_LOG(tg[k].g->b, SWIT_LOG_DEBUG, "kafka: group '%s': %s [%d] "
                "commits offset %lld in a transaction", tg[k].g->name,
                tg[k].offsets->elems[i].topic,
                (int)tg[k].offsets->elems[i].partition,
                (long long)tg[k].offsets->elems[i].offset);
    e = rd_kafka_send_offsets_to_transaction(t->rk, tg[k].offsets, md,
                                             TXN_TIMEOUT_MS);
    rd_kafka_consumer_group_metadata_destroy(md);
    if (e)
      return fail_error(e, "send_offsets_to_transaction", err, errlen);
  }
  return 0;
}

/* Commit, retrying what librdkafka calls retriable (a few times). */
static int commit_txn(ktxn *t, char *err, size_t errlen)
{
  for (int tries = 0;; tries++) {
    rd_kafka_error_t *e = rd_kafka_commit_transaction(t->rk, TXN_TIMEOUT_MS);
    if (!e)
      return 0;
    if (!rd_kafka_error_is_retriable(e) || tries == 3) {
      if (rd_kafka_error_is_fatal(e))
        t->ready = -1; /* dropped by abort_txn */
      return fail_error(e, "commit_transaction", err, errlen);
    }
    rd_kafka_error_destroy(e);
  }
}

static void abort_txn(kbroker *b, ktxn *t)
{
  rd_kafka_error_t *e = NULL;

  if (t->ready > 0)
    e = rd_kafka_abort_transaction(t->rk, TXN_TIMEOUT_MS);
  if (t->ready < 0 || (e && rd_kafka_error_is_fatal(e))) {
    KAFKA_LOG(b, SWIT_LOG_ERROR, "kafka: transactional producer %s: fatal "
              "error%s%s; it is created again for the next transaction",
              rd_kafka_name(t->rk), e ? ": " : "",
              e ? rd_kafka_error_string(e) : "");
    producer_drop(t);
  } else if (e) {
    KAFKA_LOG(b, SWIT_LOG_ERROR, "kafka: abort_transaction: %s",
              rd_kafka_error_string(e));
  }
  if (e)
    rd_kafka_error_destroy(e);
  if (t->rk)
    rd_kafka_poll(t->rk, 0); /* delivery reports of purged messages */
}

int swit__kafka_txn_end(kbroker *b, uint32_t worker, const swit_txn_msg *msgs,
                        size_t n, int commit, char *err, size_t errlen)
{
  txn_group tg[TXN_GROUPS];
  size_t ntg = 0;
  ktxn *t;
  int rc = 0;

  if (!b || worker >= b->ntxns || !b->txns[worker].open)
    return swit__fail(err, errlen, SWIT_E_STATE, "kafka: worker %u has "
                      "no open transaction", worker);
  t = &b->txns[worker];
  tl_txn = NULL;
  if (commit) {
    rc = collect(msgs, n, tg, &ntg);
    if (rc)
      swit__fail(err, errlen, rc, "kafka: a transaction covers more "
                 "than %d consumer groups", TXN_GROUPS);
    if (!rc)
      rc = send_offsets(t, tg, ntg, err, errlen);
    if (!rc)
      rc = commit_txn(t, err, errlen);
    if (!rc)
      committed(tg, ntg);
  }
  if (!commit || rc) {
    for (size_t k = 0; k < ntg; k++)
      mark_group(tg[k].g, msgs, n, 0);
    abort_txn(b, t);
  }
  for (size_t k = 0; k < ntg; k++)
    if (tg[k].offsets)
      rd_kafka_topic_partition_list_destroy(tg[k].offsets);
  t->open = 0;
  t->commits += commit && !rc;
  t->aborts += !commit || rc;
  return rc;
}
