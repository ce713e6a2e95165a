/*
 * kafka_producer.c - publishing to Kafka: one idempotent producer, its
 * poll thread, the confirms and flush.
 *
 * publish() hands each message to rd_kafka_producev (copied: views are
 * only read during the call) with its key and headers; the partition is
 * left to librdkafka's partitioner (by key), never taken from the view
 * (a dead-lettered copy carries its origin's partition). When the
 * client's queue is full, publish retries for up to o->timeout_ms, then
 * returns SWIT_E_FULL. With confirm_ids, publish waits (up to
 * messaging.publishers.default.timeout) for each message's delivery
 * report and stores its offset as the confirm id.
 *
 * Threads: publish and flush run on any thread. The poll thread serves
 * delivery reports, errors and statistics (rd_kafka_poll). A confirm
 * waiter is shared by the publishing thread and the delivery reports of
 * its messages; the last of them frees it (refs, under b->conf_mu).
 * Failed deliveries of unconfirmed messages are counted and logged by
 * the poll thread at most once a second.
 *
 * Topic handles are created on first use and kept until the producer is
 * destroyed, in a table under b->prod_lock. A publish read-locks it for
 * the whole call, so disconnect (which write-locks it to close the
 * producer) never destroys the producer under a publisher.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kafka_int.h"

/* One publish call waiting for its confirms. */
typedef struct kwaiter kwaiter;
typedef struct kslot {
  kwaiter *w;
  size_t i;
} kslot;

struct kwaiter {
  size_t left;               /* reports still expected */
  size_t refs;               /* left + the publishing thread */
  uint64_t *ids;             /* the caller's confirm_ids */
  rd_kafka_resp_err_t err;   /* first failure */
  int gone;                  /* the publisher stopped waiting */
  kslot slots[];
};

/* ---------------------------------------------------------------------
 * Topic handles */

static uint32_t name_hash(const char *s, size_t len)
{
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)s[i];
    h *= 16777619u;
  }
  return h;
}

static rd_kafka_topic_t *topic_find(kbroker *b, const char *name, size_t len)
{
  if (!b->topic_index_cap)
    return NULL;
  size_t mask = b->topic_index_cap - 1;
  for (size_t i = name_hash(name, len) & mask;; i = (i + 1) & mask) {
    uint32_t at = b->topic_index[i];
    if (!at)
      return NULL;
    ktopic *t = &b->topics[at - 1];
    if (t->len == len && !memcmp(t->name, name, len))
      return t->rkt;
  }
}

/* Rebuild the index at twice the number of topics, rounded up. */
static int topic_index_grow(kbroker *b)
{
  size_t cap = b->topic_index_cap ? b->topic_index_cap * 2 : 16;
  uint32_t *idx = calloc(cap, sizeof *idx);
  if (!idx)
    return SWIT_E_NOMEM;
  for (size_t i = 0; i < b->ntopics; i++) {
    size_t j = name_hash(b->topics[i].name, b->topics[i].len) & (cap - 1);
    while (idx[j])
      j = (j + 1) & (cap - 1);
    idx[j] = (uint32_t)i + 1;
  }
  free(b->topic_index);
  b->topic_index = idx;
  b->topic_index_cap = cap;
  return 0;
}

/* Create the handle of a topic not yet in the table (write lock held). */
static rd_kafka_topic_t *topic_add(kbroker *b, const char *name, size_t len)
{
  ktopic t = {.len = (uint32_t)len};
  if (b->ntopics == b->topics_cap) {
    size_t cap = b->topics_cap ? b->topics_cap * 2 : 8;
    ktopic *v = realloc(b->topics, cap * sizeof *v);
    if (!v)
      return NULL;
    b->topics = v;
    b->topics_cap = cap;
  }
  if ((b->ntopics + 1) * 2 > b->topic_index_cap && topic_index_grow(b))
    return NULL;
  if (!(t.name = strndup(name, len)))
    return NULL;
  if (!(t.rkt = rd_kafka_topic_new(b->producer, t.name, NULL))) {
    free(t.name);
    return NULL;
  }
  b->topics[b->ntopics++] = t;
  size_t mask = b->topic_index_cap - 1;
  size_t j = name_hash(name, len) & mask;
  while (b->topic_index[j])
    j = (j + 1) & mask;
  b->topic_index[j] = (uint32_t)b->ntopics;
  return t.rkt;
}

/* The topic handle; b->prod_lock read-locked by the caller, and again on
 * return (the lock is dropped to add a new topic). NULL: out of memory,
 * or the producer closed meanwhile (b->prod_open). */
static rd_kafka_topic_t *topic_get(kbroker *b, const char *name, size_t len)
{
  rd_kafka_topic_t *rkt = topic_find(b, name, len);
  if (rkt)
    return rkt;
  pthread_rwlock_unlock(&b->prod_lock);
  pthread_rwlock_wrlock(&b->prod_lock);
  if (b->prod_open && !(rkt = topic_find(b, name, len)))
    rkt = topic_add(b, name, len);
  pthread_rwlock_unlock(&b->prod_lock);
  pthread_rwlock_rdlock(&b->prod_lock);
  return b->prod_open ? rkt : NULL;
}

void swit__kafka_topics_free(kbroker *b)
{
  for (size_t i = 0; i < b->ntopics; i++) {
    rd_kafka_topic_destroy(b->topics[i].rkt);
    free(b->topics[i].name);
  }
  free(b->topics);
  free(b->topic_index);
  b->topics = NULL;
  b->topic_index = NULL;
  b->ntopics = b->topics_cap = b->topic_index_cap = 0;
}

/* ---------------------------------------------------------------------
 * Delivery reports and the poll thread */

static void waiter_release(kwaiter *w)
{
  if (--w->refs == 0)
    free(w);
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm,
                      void *opaque)
{
  kbroker *b = opaque;
  kslot *slot = rkm->_private;

  (void)rk;
  pthread_mutex_lock(&b->conf_mu);
  if (slot) {
    kwaiter *w = slot->w;
    if (rkm->err && !w->err)
      w->err = rkm->err;
    if (!rkm->err && !w->gone)
      w->ids[slot->i] = (uint64_t)rkm->offset;
    if (--w->left == 0)
      pthread_cond_broadcast(&b->conf_cv);
    waiter_release(w);
  } else if (rkm->err) {
    b->dr_failed++;
    snprintf(b->dr_last, sizeof b->dr_last, "topic '%s': %s",
             rd_kafka_topic_name(rkm->rkt), rd_kafka_err2str(rkm->err));
  }
  pthread_mutex_unlock(&b->conf_mu);
}

/* At most once a second: how many unconfirmed messages failed. */
static void log_failures(kbroker *b)
{
  int64_t now = swit__now_ms();
  uint64_t n = 0;
  char last[256];

  pthread_mutex_lock(&b->conf_mu);
  if (b->dr_failed != b->dr_logged && now - b->dr_log_ms >= 1000) {
    n = b->dr_failed - b->dr_logged;
    b->dr_logged = b->dr_failed;
    b->dr_log_ms = now;
    snprintf(last, sizeof last, "%s", b->dr_last);
  }
  pthread_mutex_unlock(&b->conf_mu);
  if (n)
    KAFKA_LOG(b, SWIT_LOG_ERROR, "kafka: %llu published message(s) could "
              "not be delivered (last: %s)", (unsigned long long)n, last);
}

static void *producer_main(void *arg)
{
  kbroker *b = arg;
  while (!atomic_load(&b->prod_stop)) {
    rd_kafka_poll(b->producer, KAFKA_POLL_MS);
    log_failures(b);
  }
  return NULL;
}

int swit__kafka_producer_start(kbroker *b, char *err, size_t errlen)
{
  char text[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_dup(b->conf.producer);
  int e;

  if (!conf)
    return swit__fail(err, errlen, SWIT_E_NOMEM, "kafka: out of memory");
  rd_kafka_conf_set_opaque(conf, b);
  rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
  swit__kafka_conf_callbacks(conf, 1);
  if (!(b->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, text,
                                   sizeof text))) {
    rd_kafka_conf_destroy(conf);
    return swit__kafka_new_fail(text, err, errlen);
  }
  conf = NULL; /* owned by the producer now */
  atomic_store(&b->prod_stop, 0);
  pthread_rwlock_wrlock(&b->prod_lock);
  b->prod_open = 1;
  pthread_rwlock_unlock(&b->prod_lock);
  if ((e = pthread_create(&b->prod_thread, NULL, producer_main, b))) {
    rd_kafka_destroy(b->producer);
    b->producer = NULL;
    return swit__fail(err, errlen, SWIT_E_SYS, "kafka: cannot start "
                      "the producer thread: %s", strerror(e));
  }
  b->prod_started = 1;
  return 0;
}

/* Close publishing, stop the poll thread, deliver what is queued
 * (bounded), destroy. */
void swit__kafka_producer_stop(kbroker *b)
{
  if (!b->producer)
    return;
  pthread_rwlock_wrlock(&b->prod_lock); /* waits for publishers */
  b->prod_open = 0;
  pthread_rwlock_unlock(&b->prod_lock);
  if (b->prod_started) {
    atomic_store(&b->prod_stop, 1);
    pthread_join(b->prod_thread, NULL);
    b->prod_started = 0;
  }
  rd_kafka_flush(b->producer, (int)b->confirm_timeout_ms);
  int left = rd_kafka_outq_len(b->producer);
  if (left > 0) {
    KAFKA_LOG(b, SWIT_LOG_ERROR, "kafka: %d message(s) still undelivered at "
              "disconnect are dropped", left);
    rd_kafka_purge(b->producer, RD_KAFKA_PURGE_F_QUEUE |
                   RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(b->producer, 0); /* their delivery reports */
  }
  log_failures(b);
  swit__kafka_topics_free(b);
  rd_kafka_destroy(b->producer);
  b->producer = NULL;
}

int swit__kafka_flush(kbroker *b, int timeout_ms)
{
  int rc = 0;
  if (!b)
    return SWIT_E_INVAL;
  pthread_rwlock_rdlock(&b->prod_lock);
  if (b->prod_open && rd_kafka_flush(b->producer, timeout_ms))
    rc = SWIT_E_TIMEDOUT;
  pthread_rwlock_unlock(&b->prod_lock);
  return rc;
}

/* ---------------------------------------------------------------------
 * Publishing */

rd_kafka_headers_t *swit__kafka_headers(const swit_msg_view *m)
{
  rd_kafka_headers_t *h;
  if (!m->nheaders)
    return NULL;
  h = rd_kafka_headers_new(m->nheaders);
  for (uint32_t i = 0; i < m->nheaders; i++)
    rd_kafka_header_add(h, m->headers[i].name, m->headers[i].name_len,
                        m->headers[i].value, m->headers[i].value_len);
  return h;
}

int swit__kafka_produce_error(rd_kafka_resp_err_t e, const swit_msg_view *m,
                              char *err, size_t errlen)
{
  if (e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
    return swit__fail(err, errlen, SWIT_E_TOOBIG, "publish to '%.*s': "
                      "%zu bytes of payload is over librdkafka's "
                      "message.max.bytes (%s)", (int)m->topic_len,
                      m->topic, m->payload_len, rd_kafka_err2str(e));
  return swit__fail(err, errlen, e == RD_KAFKA_RESP_ERR__QUEUE_FULL
                                           ? SWIT_E_FULL : SWIT_E_BROKER,
                    "publish to '%.*s': %s", (int)m->topic_len,
                    m->topic, rd_kafka_err2str(e));
}

/* Produce one message, waiting for room until `deadline` (NULL:
 * no wait). `slot` is its confirm slot or NULL. */
static int produce_one(kbroker *b, const swit_msg_view *m, kslot *slot,
                       const swit__deadline *deadline, char *err, size_t errlen)
{
  rd_kafka_topic_t *rkt = topic_get(b, m->topic, m->topic_len);
  rd_kafka_headers_t *hdrs;
  rd_kafka_resp_err_t e;

  if (!rkt && !b->prod_open)
    return swit__fail(err, errlen, SWIT_E_STATE, "publish to '%.*s': "
                      "kafka is not connected", (int)m->topic_len,
                      m->topic);
  if (!rkt)
    return swit__fail(err, errlen, SWIT_E_NOMEM, "publish to '%.*s': "
                      "cannot create the topic handle",
                      (int)m->topic_len, m->topic);
  hdrs = swit__kafka_headers(m);
  for (;;) {
    e = rd_kafka_producev(b->producer, RD_KAFKA_V_RKT(rkt),
                          RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                          RD_KAFKA_V_VALUE((void *)m->payload, m->payload_len),
                          RD_KAFKA_V_KEY(m->key, m->key ? m->key_len : 0),
                          RD_KAFKA_V_HEADERS(hdrs),
                          RD_KAFKA_V_OPAQUE(slot), RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || !deadline ||
        swit__deadline_passed(*deadline))
      break;
    swit__sleep_ms(1); /* the poll thread serves delivery reports meanwhile */
  }
  if (!e)
    return 0; /* hdrs owned by librdkafka now */
  if (hdrs)
    rd_kafka_headers_destroy(hdrs);
  return swit__kafka_produce_error(e, m, err, errlen);
}

static kwaiter *waiter_new(size_t n, uint64_t *ids)
{
  kwaiter *w = calloc(1, sizeof *w + n * sizeof w->slots[0]);
  if (!w)
    return NULL;
  w->ids = ids;
  w->refs = 1;
  for (size_t i = 0; i < n; i++)
    w->slots[i] = (kslot){w, i};
  return w;
}

/* Wait for the confirms of the `produced` messages of w (their reports
 * were counted in w->left), then give up the publisher's reference. */
static int wait_confirms(kbroker *b, kwaiter *w, size_t produced,
                         const swit_msg_view *msgs, char *err, size_t errlen)
{
  swit__deadline at = swit__deadline_in(b->confirm_timeout_ms);
  int rc = 0;

  pthread_mutex_lock(&b->conf_mu);
  while (w->left && !swit__cond_wait_until(&b->conf_cv, &b->conf_mu, at))
    ;
  if (w->left)
    rc = swit__fail(err, errlen, SWIT_E_TIMEDOUT, "publish to '%.*s': "
                    "%zu of %zu message(s) not confirmed within %lld ms",
                    (int)msgs[0].topic_len, msgs[0].topic, w->left,
                    produced, (long long)b->confirm_timeout_ms);
  else if (w->err)
    rc = swit__fail(err, errlen, SWIT_E_BROKER, "publish to '%.*s': "
                    "not confirmed: %s", (int)msgs[0].topic_len,
                    msgs[0].topic, rd_kafka_err2str(w->err));
  w->gone = 1; /* reports arriving later must not write to the ids */
  waiter_release(w);
  pthread_mutex_unlock(&b->conf_mu);
  return rc;
}

/* Count (add = 1) or uncount (add = 0) one expected report. */
static void waiter_expect(kbroker *b, kwaiter *w, int add)
{
  pthread_mutex_lock(&b->conf_mu);
  w->left = add ? w->left + 1 : w->left - 1;
  w->refs = add ? w->refs + 1 : w->refs - 1;
  pthread_mutex_unlock(&b->conf_mu);
}

int swit__kafka_publish(kbroker *b, const swit_msg_view *msgs, size_t n,
                        const swit_publish_opts *o, uint64_t *confirm_ids,
                        char *err, size_t errlen)
{
  kwaiter *w = NULL;
  size_t done = 0;
  int rc = 0;

  if (!b || (n && !msgs))
    return swit__fail(err, errlen, SWIT_E_INVAL, "publish: no messages");
  if (confirm_ids && n)
    memset(confirm_ids, 0, n * sizeof *confirm_ids);
  if (n == 0) /* the core checked the messages (core/msg_check.c) */
    return 0;
  rd_kafka_t *txp = swit__kafka_txn_current(b); /* inside a transaction */
  if (txp)
    return swit__kafka_txn_publish(b, txp, msgs, n, err, errlen);
  if (confirm_ids && !(w = waiter_new(n, confirm_ids)))
    return swit__fail(err, errlen, SWIT_E_NOMEM, "publish: out of "
                      "memory");
  swit__deadline until = swit__deadline_in(o ? o->timeout_ms : 0);
  const swit__deadline *deadline = o && o->timeout_ms > 0 ? &until : NULL;
  pthread_rwlock_rdlock(&b->prod_lock);
  if (!b->prod_open)
    rc = swit__fail(err, errlen, SWIT_E_STATE,
                    "publish: kafka is not connected");
  while (!rc && done < n) {
    if (w)
      waiter_expect(b, w, 1); /* before its report can arrive */
    rc = produce_one(b, &msgs[done], w ? &w->slots[done] : NULL, deadline,
                     err, errlen);
    if (!rc)
      done++;
    else if (w)
      waiter_expect(b, w, 0);
  }
  pthread_rwlock_unlock(&b->prod_lock);
  if (w) {
    char werr[256];
    int wrc = wait_confirms(b, w, done, msgs, werr, sizeof werr);
    if (!rc && wrc)
      rc = swit__fail(err, errlen, wrc, "%s", werr);
  }
  return rc;
}
