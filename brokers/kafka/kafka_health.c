/*
 * kafka_health.c - the connection state the Kafka adapter reports, its
 * health answer, and librdkafka's log, error and statistics callbacks.
 *
 * librdkafka owns the connections and reconnects by itself (with
 * reconnect.backoff.ms / .max.ms, set from messaging.broker.reconnect).
 * This file only translates what it reports into swit's state machine:
 *   connect()                          -> connecting
 *   statistics: some broker is UP      -> connected (attempts reset)
 *   a connection attempt fails (transport, resolve, all brokers down)
 *     while not connected              -> backing-off; once the host's
 *                                         backoff_ms says attempts are
 *                                         exhausted: failed (librdkafka
 *                                         keeps trying; a later success
 *                                         reports connected again)
 *   all brokers down while connected,
 *     or statistics with none UP       -> reconnecting
 *   disconnect()                       -> disconnected
 * The statistics come from the producer every statistics.interval.ms
 * (1 s by default). If the user turns them off, connect() reports
 * connected at once and only failures are tracked. The consumers'
 * statistics carry each assigned partition's consumer_lag, handed to the
 * host for /metrics (env->report_lag, when the host has it).
 *
 * Callbacks run on librdkafka's threads (log) and on the threads that
 * poll the handles (error, stats): the producer's poll thread and each
 * group's poll thread. The state is guarded by b->state_mu, held while
 * the host is told, so transitions reach it in order.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_int.h"

/* The broker behind a handle: producers carry it as opaque, consumers
 * carry their group. */
static kbroker *broker_of(rd_kafka_t *rk, void *opaque)
{
  if (!opaque)
    return NULL;
  if (rd_kafka_type(rk) == RD_KAFKA_PRODUCER)
    return opaque;
  return ((kgroup *)opaque)->b;
}

void swit__kafka_state(kbroker *b, swit_conn_state s, const char *detail)
{
  pthread_mutex_lock(&b->state_mu);
  if (b->state != s || detail) {
    size_t dl = detail ? strnlen(detail, sizeof b->state_detail - 1) : 0;
    b->state = s;
    memcpy(b->state_detail, detail ? detail : "", dl);   /* cut to fit */
    b->state_detail[dl] = '\0';
    if (s == SWIT_CONN_CONNECTED)
      b->attempt = 0;
    if (b->env.set_state)
      b->env.set_state(b->env.host_ud, s, detail);
  }
  pthread_mutex_unlock(&b->state_mu);
}

/* A connection attempt failed, or every broker went down. */
static void went_down(kbroker *b, int all_down, const char *why)
{
  char detail[320];
  swit_conn_state next;

  pthread_mutex_lock(&b->state_mu);
  if (b->state == SWIT_CONN_DISCONNECTED ||
      (b->state == SWIT_CONN_CONNECTED && !all_down)) {
    pthread_mutex_unlock(&b->state_mu);
    return; /* one connection of several: librdkafka reconnects it */
  }
  if (b->state == SWIT_CONN_CONNECTED) {
    next = SWIT_CONN_RECONNECTING;
    snprintf(detail, sizeof detail, "%s", why);
  } else {
    uint32_t n = ++b->attempt;
    int64_t wait = b->env.backoff_ms ? b->env.backoff_ms(b->env.host_ud, n)
                                     : 0;
    next = wait < 0 ? SWIT_CONN_FAILED : SWIT_CONN_BACKING_OFF;
    snprintf(detail, sizeof detail, "attempt %u failed: %s%s", n, why,
             wait < 0 ? " (reconnect.max_attempts reached; librdkafka "
                        "keeps trying in the background)" : "");
    if (next == b->state && (n & (n - 1))) {
      pthread_mutex_unlock(&b->state_mu);
      return; /* log attempts 1, 2, 4, 8, ... only */
    }
  }
  pthread_mutex_unlock(&b->state_mu);
  swit__kafka_state(b, next, detail);
}

int swit__kafka_health(kbroker *b, char *detail, size_t len)
{
  static const char *const names[] = {"disconnected", "connecting",
                                      "connected", "reconnecting",
                                      "backing-off", "failed"};
  int rc;

  pthread_mutex_lock(&b->state_mu);
  rc = b->state == SWIT_CONN_CONNECTED ? 0 : SWIT_E_BROKER;
  swit__fail(detail, len, rc, "kafka: %s%s%s", names[b->state],
             b->state_detail[0] ? ": " : "", b->state_detail);
  pthread_mutex_unlock(&b->state_mu);
  return rc;
}

/* ---------------------------------------------------------------------
 * librdkafka callbacks */

static void log_cb(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf)
{
  rd_kafka_t *h = (rd_kafka_t *)rk;
  kbroker *b = broker_of(h, rd_kafka_opaque(h));
  int lv = level <= 3 ? SWIT_LOG_ERROR
         : level == 4 ? SWIT_LOG_WARN
         : level <= 6 ? SWIT_LOG_INFO : SWIT_LOG_DEBUG;

  if (!b)
    return;
  /* Plain keys go to both roles; librdkafka warns about the other one.
   * Connection failures reach error_cb too, which reports them through
   * the state machine: their log lines are only for debugging. */
  if ((!strcmp(fac, "CONFWARN") && (strstr(buf, "is a producer property") ||
                                    strstr(buf, "is a consumer property"))) ||
      !strcmp(fac, "FAIL"))
    lv = SWIT_LOG_DEBUG;
  KAFKA_LOG(b, lv, "kafka: %s: [%s] %s", rd_kafka_name(rk), fac, buf);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason,
                     void *opaque)
{
  kbroker *b = broker_of(rk, opaque);
  char text[512];

  if (!b)
    return;
  switch (err) {
  case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    went_down(b, 1, reason);
    return;
  case RD_KAFKA_RESP_ERR__TRANSPORT:
  case RD_KAFKA_RESP_ERR__RESOLVE:
  case RD_KAFKA_RESP_ERR__AUTHENTICATION:
    KAFKA_LOG(b, SWIT_LOG_DEBUG, "kafka: %s: %s", rd_kafka_name(rk), reason);
    went_down(b, 0, reason);
    return;
  case RD_KAFKA_RESP_ERR__FATAL:
    rd_kafka_fatal_error(rk, text, sizeof text);
    KAFKA_LOG(b, SWIT_LOG_ERROR, "kafka: %s: fatal error: %s",
              rd_kafka_name(rk), text);
    swit__kafka_state(b, SWIT_CONN_FAILED, text);
    return;
  default:
    KAFKA_LOG(b, SWIT_LOG_WARN, "kafka: %s: %s: %s", rd_kafka_name(rk),
              rd_kafka_err2str(err), reason);
  }
}

/* Count the brokers whose state is UP in a statistics JSON document. */
static int brokers_up(const char *json)
{
  static const char needle[] = "\"state\":\"UP\"";
  int n = 0;
  for (const char *p = json; (p = strstr(p, needle)); p += sizeof needle - 1)
    n++;
  return n;
}

static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
  kbroker *b = broker_of(rk, opaque);
  int up;

  (void)len;
  if (!b)
    return 0;
  up = brokers_up(json);
  if (up > 0) {
    swit__kafka_state(b, SWIT_CONN_CONNECTED, NULL);
  } else {
    pthread_mutex_lock(&b->state_mu);
    int lost = b->state == SWIT_CONN_CONNECTED;
    pthread_mutex_unlock(&b->state_mu);
    if (lost)
      swit__kafka_state(b, SWIT_CONN_RECONNECTING, "no broker connection is up");
  }
  return 0; /* librdkafka frees json */
}

/* The next integer after `key` in json[..end), or INT64_MIN. */
static int64_t json_int(const char *json, const char *end, const char *key,
                        const char **after)
{
  const char *p = strstr(json, key);
  if (!p || p >= end)
    return INT64_MIN;
  p += strlen(key);
  *after = p;
  return strtoll(p, NULL, 10);
}

/* Report each partition's consumer_lag from a consumer's statistics:
 * "topics":{"<t>":{"topic":"<t>",...,"partitions":{"0":{"partition":0,
 * ...,"consumer_lag":N,...},...}},...}. Partitions not fetched have -1. */
static void report_lags(kgroup *g, const char *json)
{
  static const char tkey[] = "\"topic\":\"";
  const char *p = strstr(json, "\"topics\":{");
  char topic[256];

  while (p && (p = strstr(p, tkey))) {
    p += sizeof tkey - 1;
    size_t len = strcspn(p, "\"");
    const char *next = strstr(p, tkey), *end = next ? next : p + strlen(p);
    snprintf(topic, sizeof topic, "%.*s", (int)len, p);
    for (const char *q = p;;) {
      int64_t part = json_int(q, end, "\"partition\":", &q);
      if (part == INT64_MIN)
        break;
      const char *pnext = strstr(q, "\"partition\":");
      int64_t lag = json_int(q, pnext && pnext < end ? pnext : end,
                             "\"consumer_lag\":", &q);
      if (part >= 0 && lag >= 0)
        g->b->env.report_lag(g->b->env.host_ud, topic, g->name,
                             (int32_t)part, lag);
    }
    p = next;
  }
}

static int consumer_stats_cb(rd_kafka_t *rk, char *json, size_t len,
                             void *opaque)
{
  kgroup *g = opaque;
  (void)rk, (void)len;
  if (g && g->b->env.report_lag)
    report_lags(g, json);
  return 0; /* librdkafka frees json */
}

void swit__kafka_conf_callbacks(rd_kafka_conf_t *conf, int producer)
{
  rd_kafka_conf_set_log_cb(conf, log_cb);
  rd_kafka_conf_set_error_cb(conf, error_cb);
  rd_kafka_conf_set_stats_cb(conf, producer ? stats_cb : consumer_stats_cb);
}
