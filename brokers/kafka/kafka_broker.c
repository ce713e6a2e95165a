/*
 * kafka_broker.c - the Kafka adapter's ops table: create and destroy,
 * connect and disconnect, and the shared helpers.
 *
 * create validates messaging.broker.config (kafka_conf.c) so a bad
 * property fails the host's start with librdkafka's own text (exit 2),
 * before anything connects. connect creates the producer (which starts
 * librdkafka's connections; an unreachable cluster is reported through
 * the state machine, not as an error) and its poll thread. Consumers are
 * created per group at subscribe (kafka_group.c). disconnect stops the
 * groups (commit, leave), then flushes and destroys the producer.
 *
 * Transactions (txn_begin, txn_end: kafka_txn.c) serve exactly_once
 * subscriptions.
 *
 * Capabilities: SWIT_CAP_CONFIRM (a publish can wait for the broker's
 * acknowledgement; its confirm id is the message's offset). No
 * SWIT_CAP_REQUEUE: Kafka cannot give one message back; a REQUEUE
 * settle keeps the commit at that message (kafka_offsets.c).
 *
 * Threads: every op may be called from any thread; settle, pause and
 * resume also from inside a sink call. connect/disconnect are serialised
 * by b->life; disconnect and destroy must not run on a poll thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kafka_int.h"

enum {
  BS_LIFE = 1, BS_TOPICS = 2, BS_CONF_MU = 4, BS_CONF_CV = 8, BS_GROUPS = 16,
  BS_STATE = 32
};

/* ---------------------------------------------------------------------
 * Lifecycle */

static void kafka_destroy(swit_broker *b)
{
  if (!b)
    return;
  swit__kafka_groups_free(b);
  swit__kafka_txns_free(b);
  swit__kafka_producer_stop(b);
  swit__kafka_conf_free(&b->conf);
  if (b->sync & BS_LIFE)
    pthread_mutex_destroy(&b->life);
  if (b->sync & BS_TOPICS)
    pthread_rwlock_destroy(&b->prod_lock);
  if (b->sync & BS_CONF_MU)
    pthread_mutex_destroy(&b->conf_mu);
  if (b->sync & BS_CONF_CV)
    pthread_cond_destroy(&b->conf_cv);
  if (b->sync & BS_GROUPS)
    pthread_mutex_destroy(&b->groups_mu);
  if (b->sync & BS_STATE)
    pthread_mutex_destroy(&b->state_mu);
  free(b);
}

static int broker_sync_init(kbroker *b)
{
  if (pthread_mutex_init(&b->life, NULL))
    return SWIT_E_SYS;
  b->sync |= BS_LIFE;
  if (pthread_rwlock_init(&b->prod_lock, NULL))
    return SWIT_E_SYS;
  b->sync |= BS_TOPICS;
  if (pthread_mutex_init(&b->conf_mu, NULL))
    return SWIT_E_SYS;
  b->sync |= BS_CONF_MU;
  if (swit__cond_init_monotonic(&b->conf_cv))
    return SWIT_E_SYS;
  b->sync |= BS_CONF_CV;
  if (pthread_mutex_init(&b->groups_mu, NULL))
    return SWIT_E_SYS;
  b->sync |= BS_GROUPS;
  if (pthread_mutex_init(&b->state_mu, NULL))
    return SWIT_E_SYS;
  b->sync |= BS_STATE;
  return 0;
}

static int kafka_create(swit_broker **out, const swit_broker_env *env,
                        char *err, size_t errlen)
{
  kbroker *b = NULL;
  int rc = SWIT_E_INVAL;

  if (!out || !env) {
    swit__fail(err, errlen, rc, "kafka: no environment");
    goto fail;
  }
  rc = SWIT_E_NOMEM;
  if (!(b = calloc(1, sizeof *b))) {
    swit__fail(err, errlen, rc, "kafka: out of memory");
    goto fail;
  }
  b->env = *env;
  b->state = SWIT_CONN_DISCONNECTED;
  b->max_message_size = env->max_message_size;
  b->confirm_timeout_ms = env->publish_timeout_ms;
  if ((rc = broker_sync_init(b))) {
    swit__fail(err, errlen, rc, "kafka: cannot create locks");
    goto fail;
  }
  if ((rc = swit__kafka_conf_build(&b->conf, env, err, errlen)))
    goto fail;
  if ((rc = swit__kafka_txns_init(b))) {
    swit__fail(err, errlen, rc, "kafka: out of memory");
    goto fail;
  }
  *out = b;
  return 0;
fail:
  kafka_destroy(b);
  return rc;
}

static int kafka_connect(swit_broker *b, char *err, size_t errlen)
{
  int rc = 0;

  if (!b)
    return swit__fail(err, errlen, SWIT_E_INVAL, "kafka: no broker");
  pthread_mutex_lock(&b->life);
  if (!b->connected) {
    swit__kafka_state(b, SWIT_CONN_CONNECTING, NULL);
    rc = swit__kafka_producer_start(b, err, errlen);
    if (rc) {
      swit__kafka_state(b, SWIT_CONN_DISCONNECTED, NULL);
    } else {
      pthread_mutex_lock(&b->groups_mu);
      b->connected = 1;
      pthread_mutex_unlock(&b->groups_mu);
      if (!b->conf.stats) /* no statistics: nothing would report it */
        swit__kafka_state(b, SWIT_CONN_CONNECTED, "statistics are off; "
                          "only failures are tracked");
    }
  }
  pthread_mutex_unlock(&b->life);
  return rc;
}

static int kafka_disconnect(swit_broker *b)
{
  if (!b)
    return SWIT_E_INVAL;
  pthread_mutex_lock(&b->life);
  if (b->connected) {
    pthread_mutex_lock(&b->groups_mu);
    b->connected = 0;
    swit__kafka_groups_close(b);
    pthread_mutex_unlock(&b->groups_mu);
    for (size_t i = 0; i < b->ntxns; i++) /* workers have stopped */
      if (b->txns[i].rk) {
        rd_kafka_destroy(b->txns[i].rk);
        b->txns[i] = (ktxn){0};
      }
    swit__kafka_producer_stop(b);
    swit__kafka_state(b, SWIT_CONN_DISCONNECTED, NULL);
  }
  pthread_mutex_unlock(&b->life);
  return 0;
}

static int kafka_health(swit_broker *b, char *detail, size_t len)
{
  if (!b)
    return swit__fail(detail, len, SWIT_E_BROKER, "kafka: no broker");
  return swit__kafka_health(b, detail, len);
}

static int kafka_flush(swit_broker *b, int timeout_ms)
{
  return swit__kafka_flush(b, timeout_ms);
}

static int kafka_pause(swit_broker *b, void *handle)
{
  return swit__kafka_pause(b, handle, 1);
}

static int kafka_resume(swit_broker *b, void *handle)
{
  return swit__kafka_pause(b, handle, 0);
}

/* ---------------------------------------------------------------------
 * The ops table */

const swit_broker_ops swit_broker_kafka = {
  .name = "kafka",
  .caps = SWIT_CAP_CONFIRM | SWIT_CAP_CONFIG_PASSTHROUGH,
  .config_fields = swit__kafka_config_fields, /* + librdkafka properties */
  .settings_size = sizeof(swit_kafka_settings),
  .create = kafka_create,
  .destroy = kafka_destroy,
  .connect = kafka_connect,
  .disconnect = kafka_disconnect,
  .health = kafka_health,
  .subscribe = swit__kafka_subscribe,
  .pause = kafka_pause,
  .resume = kafka_resume,
  .unsubscribe = swit__kafka_unsubscribe,
  .settle = swit__kafka_settle,
  .publish = swit__kafka_publish,
  .flush = kafka_flush,
  .txn_begin = swit__kafka_txn_begin,
  .txn_end = swit__kafka_txn_end,
};
