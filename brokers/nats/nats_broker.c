/*
 * nats_broker.c - the NATS adapter's ops table: its settings, create and
 * destroy, connect and disconnect, health, and the subscription ops that
 * hand over to core NATS (nats_core.c) or JetStream (nats_js.c).
 *
 * Choices the host should know (docs/brokers/nats.md has the details):
 *  - Two modes. Core NATS (default): at-most-once, `group` is a queue
 *    group, settle only frees the message. JetStream (config `jetstream:
 *    true`, or swit.on{jetstream = true} per subscription): a durable pull
 *    consumer per (group, topic), explicit ack after settle, Nak on
 *    REQUEUE, Term on DROP; streams are created when none captures a
 *    subject (create_streams).
 *  - connect never fails on an unreachable server: cnats retries in the
 *    background with the host's backoff (states backing-off/connected).
 *  - unsubscribe returns once no sink call for the handle runs or starts;
 *    the natsSubscription lives on until destroy, so late settles can
 *    still ack.
 *  - pause: the subscription's thread stops fetching (JetStream) or
 *    reading (core NATS: cnats then buffers up to pending_msgs /
 *    pending_bytes and drops beyond, counting and logging the drops).
 *
 * Threads: every op may be called from any thread; pause, resume, settle
 * and publish also from inside a sink call. disconnect and destroy must
 * not be called from a sink.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nats_int.h"

enum { BS_MU = 1, BS_CLOSED = 2, BS_SUBJ = 4, BS_JS = 8 };  /* b->sync */
enum { SS_MU = 1, SS_CV = 2, SS_POOL = 4, SS_ALL = 7 };       /* s->sync */

static const char *const storage_names[] = { "file", "memory", NULL };
static const char *const retention_names[] = { "limits", "interest",
                                               "workqueue", NULL };

#define F(n, t, m, d) .name = n, .type = t, \
  .offset = offsetof(swit_nats_settings, m), .dflt = d
#define DAY_MS 86400000

const swit_cfg_field swit__nats_config_fields[] = {
  { F("jetstream", SWIT_CFG_BOOL, jetstream, "false"),
    .desc = "JetStream (at-least-once) for every subscription and publish; "
            "swit.on{jetstream = ...} overrides per subscription" },
  { F("name", SWIT_CFG_STR, name, ""),
    .desc = "connection name shown by the server (default: server.name)" },
  { F("user", SWIT_CFG_STR, user, ""), .desc = "user name" },
  { F("password", SWIT_CFG_STR, password, ""), .desc = "password" },
  { F("token", SWIT_CFG_STR, token, ""), .desc = "authentication token" },
  { F("nkey", SWIT_CFG_STR, nkey, ""),
    .desc = "NKEY public key (U...) of the user; needs nkey_seed_file" },
  { F("nkey_seed_file", SWIT_CFG_STR, nkey_seed_file, ""),
    .desc = "file holding the NKEY seed (SU...) that signs the server's "
            "nonce; needs nkey" },
  { F("creds_file", SWIT_CFG_STR, creds_file, ""),
    .desc = "decentralized auth: a .creds file (user JWT and NKEY seed)" },
  { F("tls_hostname", SWIT_CFG_STR, tls_hostname, ""),
    .desc = "name the server's certificate must carry (default: the host "
            "of the endpoints; TLS with verify_server only)" },
  { F("stream", SWIT_CFG_STR, stream, ""),
    .desc = "JetStream stream to bind every subscription to; empty: the "
            "stream that captures the subject, created if none does" },
  { F("stream_subjects", SWIT_CFG_LIST, stream_subjects, NULL),
    .desc = "subjects of `stream` when swit creates it (default: the "
            "subscribed subject)" },
  { F("create_streams", SWIT_CFG_BOOL, create_streams, "true"),
    .desc = "create a stream for a subject no stream captures" },
  { F("stream_prefix", SWIT_CFG_STR, stream_prefix, "SWIT_"),
    .desc = "name prefix of the streams swit creates" },
  { F("storage", SWIT_CFG_ENUM, storage, "file"), .choices = storage_names,
    .desc = "storage of the streams swit creates" },
  { F("retention", SWIT_CFG_ENUM, retention, "limits"),
    .choices = retention_names,
    .desc = "retention policy of the streams swit creates" },
  { F("max_age", SWIT_CFG_DURATION, max_age_ms, "0"), .min = 0,
    .max = INT64_MAX / 1000000,
    .desc = "oldest message the streams swit creates keep (0: no limit)" },
  { F("duplicate_window", SWIT_CFG_DURATION, duplicate_window_ms, "2m"),
    .min = 0, .max = DAY_MS,
    .desc = "Nats-Msg-Id de-duplication window of the streams swit creates" },
  { F("fetch_batch", SWIT_CFG_INT, fetch_batch, "256"), .min = 1,
    .max = 10000, .desc = "most messages one JetStream fetch asks for" },
  { F("fetch_wait", SWIT_CFG_DURATION, fetch_wait_ms, "250ms"), .min = 10,
    .max = 60000, .desc = "how long a JetStream fetch waits for messages" },
  { F("nak_delay", SWIT_CFG_DURATION, nak_delay_ms, "0"), .min = 0,
    .max = DAY_MS,
    .desc = "redelivery delay of a message given back (0: at once)" },
  { F("max_deliver", SWIT_CFG_INT, max_deliver, "0"), .min = 0,
    .max = INT32_MAX,
    .desc = "JetStream deliveries of one message before the server gives "
            "up (0: unlimited)" },
  /* cnats derives a bytes limit of 1024 * pending_msgs for its own
   * subscriptions (an int): keep that product in range. */
  { F("pending_msgs", SWIT_CFG_INT, pending_msgs, "65536"), .min = 1,
    .max = INT32_MAX / 1024,
    .desc = "messages cnats buffers per core subscription before it "
            "drops (slow consumer)" },
  { F("pending_bytes", SWIT_CFG_SIZE, pending_bytes, "64MB"), .min = 1024,
    .max = INT32_MAX,
    .desc = "bytes cnats buffers per core subscription before it drops" },
  { F("reconnect_buffer", SWIT_CFG_SIZE, reconnect_buffer, "8MB"),
    .min = 1024, .max = INT32_MAX,
    .desc = "publishes buffered while reconnecting; past it they fail" },
  { F("connect_timeout", SWIT_CFG_DURATION, connect_timeout_ms, "2s"),
    .min = 1, .max = 600000, .desc = "timeout of one connection attempt" },
  { F("ping_interval", SWIT_CFG_DURATION, ping_interval_ms, "2m"),
    .min = 100, .max = DAY_MS,
    .desc = "how often the client pings the server" },
  { F("max_pings_out", SWIT_CFG_INT, max_pings_out, "2"), .min = 1,
    .max = 1000,
    .desc = "unanswered pings before the connection counts as lost" },
  { .name = NULL }
};

#undef F

/* ---------------------------------------------------------------------
 * Helpers shared by the adapter's files */

const char *swit__nats_errtext(natsStatus s)
{
  natsStatus last = NATS_OK;
  const char *t = nats_GetLastError(&last);
  return t && *t && last == s ? t : natsStatus_GetText(s);
}

void swit__nats_report(nats_broker *b, swit_conn_state st, const char *detail)
{
  if (b->env.set_state)
    b->env.set_state(b->env.host_ud, st, detail);
}

/* ---------------------------------------------------------------------
 * Lifecycle */

static int nats_disconnect(swit_broker *b);

static void sub_free(nats_sub *s)
{
  if (!s)
    return;
  if (atomic_load(&s->late_dropped))
    NATS_LOG(s->b, SWIT_LOG_WARN, "nats: core subscription '%s' (queue "
             "group '%s'): %lld message(s) given back after it closed were "
             "dropped (core NATS is at-most-once)", s->topic, s->group,
             (long long)atomic_load(&s->late_dropped));
  natsSubscription_Destroy(s->ns);
  for (size_t i = 0; i < s->nretired; i++)
    natsSubscription_Destroy(s->retired[i]);
  free(s->retired);
  swit__nats_pool_free(s);
  if (s->sync & SS_MU)
    pthread_mutex_destroy(&s->mu);
  if (s->sync & SS_CV)
    pthread_cond_destroy(&s->cv);
  if (s->sync & SS_POOL)
    pthread_mutex_destroy(&s->pool_mu);
  free(s->topic);
  free(s->group);
  free(s->stream);
  free(s->durable);
  free(s->batch);
  free(s);
}

static void nats_destroy(swit_broker *b)
{
  if (!b)
    return;
  nats_disconnect(b);
  while (b->subs) {
    nats_sub *s = b->subs;
    b->subs = s->next;
    sub_free(s);
  }
  jsCtx_Destroy(b->js);
  natsConnection_Destroy(b->nc);
  natsOptions_Destroy(b->opts);
  swit__nats_subjects_free(b);
  if (b->own_settings)
    swit__config_free_fields(swit__nats_config_fields, &b->st);
  if (b->sync & BS_MU)
    pthread_mutex_destroy(&b->mu);
  if (b->sync & BS_CLOSED) {
    pthread_mutex_destroy(&b->closed_mu);
    pthread_cond_destroy(&b->closed_cv);
  }
  if (b->sync & BS_SUBJ)
    pthread_rwlock_destroy(&b->subj_mu);
  if (b->sync & BS_JS)
    pthread_mutex_destroy(&b->js_mu);
  free(b);
}

static int broker_sync_init(nats_broker *b)
{
  if (pthread_mutex_init(&b->mu, NULL))
    return SWIT_E_SYS;
  b->sync |= BS_MU;
  if (pthread_mutex_init(&b->closed_mu, NULL))
    return SWIT_E_SYS;
  if (swit__cond_init_monotonic(&b->closed_cv)) {
    pthread_mutex_destroy(&b->closed_mu);
    return SWIT_E_SYS;
  }
  b->sync |= BS_CLOSED;
  if (pthread_rwlock_init(&b->subj_mu, NULL))
    return SWIT_E_SYS;
  b->sync |= BS_SUBJ;
  if (pthread_mutex_init(&b->js_mu, NULL))
    return SWIT_E_SYS;
  b->sync |= BS_JS;
  b->js_ok = 1;
  return 0;
}

static int settings_init(nats_broker *b, const swit_broker_env *env,
                         char *err, size_t errlen)
{
  static const swit_cfg_kvlist none = { NULL, 0, { NULL, 0, 0 } };
  if (env->settings) {
    b->st = *(const swit_nats_settings *)env->settings;
    return 0;
  }
  b->own_settings = 1;
  return swit__config_apply(&none, swit__nats_config_fields, 0, &b->st, err,
                            errlen);
}

static int nats_create(swit_broker **out, const swit_broker_env *env,
                       char *err, size_t errlen)
{
  nats_broker *b = NULL;
  int rc = SWIT_E_INVAL;
  if (!out || !env) {
    swit__fail(err, errlen, rc, "nats broker: no environment");
    goto fail;
  }
  rc = SWIT_E_NOMEM;
  if (!(b = calloc(1, sizeof *b))) {
    swit__fail(err, errlen, rc, "nats broker: out of memory");
    goto fail;
  }
  b->env = *env;
  b->env.settings = NULL;
  if ((rc = broker_sync_init(b))) {
    swit__fail(err, errlen, rc, "nats broker: cannot create locks");
    goto fail;
  }
  if ((rc = settings_init(b, env, err, errlen)))
    goto fail;
  b->max_message_size = env->max_message_size;
  b->confirm_timeout_ms = env->publish_timeout_ms;
  b->shutdown_ms = env->shutdown_timeout_ms;
  atomic_store(&b->js_used, b->st.jetstream);
  if ((rc = swit__nats_options(b, err, errlen)))
    goto fail;
  *out = b;
  return 0;
fail:
  nats_destroy(b);
  return rc;
}

static int nats_connect(swit_broker *b, char *err, size_t errlen)
{
  if (!b)
    return swit__fail(err, errlen, SWIT_E_INVAL, "nats broker: none");
  pthread_mutex_lock(&b->mu);
  int rc = b->nc ? 0 : swit__nats_open(b, err, errlen);
  pthread_mutex_unlock(&b->mu);
  return rc;
}

static int nats_disconnect(swit_broker *b)
{
  if (!b)
    return SWIT_E_INVAL;
  pthread_mutex_lock(&b->mu);
  nats_sub *list = b->subs;
  pthread_mutex_unlock(&b->mu);
  for (nats_sub *s = list; s; s = s->next) {
    if (!s->thread_started)
      continue;
    if (s->js)
      swit__nats_js_unsubscribe(s);
    else
      swit__nats_core_stop(s);
  }
  if (b->nc && !atomic_load(&b->closed))
    swit__nats_close(b);
  return 0;
}

void swit__nats_js_status(nats_broker *b, const char *detail)
{
  pthread_mutex_lock(&b->js_mu);
  b->js_ok = detail == NULL;
  snprintf(b->js_detail, sizeof b->js_detail, "%s", detail ? detail : "");
  pthread_mutex_unlock(&b->js_mu);
}

/* Reads what connect, subscriptions and fetches recorded: never waits on
 * the network (the host asks from its admin event loop). */
static int nats_health(swit_broker *b, char *detail, size_t len)
{
  if (!b || !b->nc)
    return swit__fail(detail, len, SWIT_E_BROKER, "not connected");
  if (!swit__nats_is_connected(b))
    return swit__fail(detail, len, SWIT_E_BROKER,
                      "not connected to %s (reconnecting)",
                      b->servers_text);
  if (!atomic_load(&b->js_used))
    return swit__fail(detail, len, 0, "connected");
  pthread_mutex_lock(&b->js_mu);
  int rc = b->js_ok ? swit__fail(detail, len, 0, "connected, JetStream "
                                 "available")
                    : swit__fail(detail, len, SWIT_E_BROKER,
                                 "%s", b->js_detail);
  pthread_mutex_unlock(&b->js_mu);
  return rc;
}

static int nats_flush(swit_broker *b, int timeout_ms)
{
  if (!b || !b->nc)
    return SWIT_E_INVAL;
  int64_t t = timeout_ms > 0 ? timeout_ms : 1;
  if (b->js) {
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = t;
    natsStatus s = js_PublishAsyncComplete(b->js, &po);
    if (s != NATS_OK && s != NATS_INVALID_ARG)
      NATS_LOG(b, SWIT_LOG_WARN, "nats: JetStream publishes still unconfirmed "
               "after %lld ms: %s", (long long)t, swit__nats_errtext(s));
  }
  if (!swit__nats_is_connected(b))
    return SWIT_E_STATE;
  return natsConnection_FlushTimeout(b->nc, t) == NATS_OK ? 0 : SWIT_E_TIMEDOUT;
}

/* ---------------------------------------------------------------------
 * Subscriptions */

static int sub_new(nats_broker *b, const swit_sub_spec *spec, nats_sub **out)
{
  nats_sub *s = calloc(1, sizeof *s);
  if (!s)
    return SWIT_E_NOMEM;
  s->b = b;
  s->topic = strdup(spec->topic);
  s->group = strdup(spec->group && *spec->group ? spec->group : "swit");
  if (!pthread_mutex_init(&s->mu, NULL))
    s->sync |= SS_MU;
  if (!swit__cond_init_monotonic(&s->cv))
    s->sync |= SS_CV;
  if (!pthread_mutex_init(&s->pool_mu, NULL))
    s->sync |= SS_POOL;
  if (!s->topic || !s->group || s->sync != SS_ALL) {
    sub_free(s);
    return SWIT_E_NOMEM;
  }
  *out = s;
  return 0;
}

static int nats_subscribe(swit_broker *b, const swit_sub_spec *spec,
                          swit_sink_fn sink, void *sink_ud, void **handle,
                          char *err, size_t errlen)
{
  nats_sub *s = NULL;
  if (!b || !spec || !spec->topic || !*spec->topic || !sink || !handle)
    return swit__fail(err, errlen, SWIT_E_INVAL,
                      "subscribe: topic, sink and handle are required");
  if (!b->nc)
    return swit__fail(err, errlen, SWIT_E_STATE, "subscribe '%s': "
                      "nats broker not connected", spec->topic);
  if (sub_new(b, spec, &s))
    return swit__fail(err, errlen, SWIT_E_NOMEM, "subscribe '%s': out "
                      "of memory", spec->topic);
  s->sink = sink;
  s->sink_ud = sink_ud;
  s->js = spec->jetstream < 0 ? b->st.jetstream : spec->jetstream;
  s->from = spec->from;
  if (!s->js && s->from == SWIT_FROM_BEGINNING) {
    sub_free(s);
    return swit__fail(err, errlen, SWIT_E_CONFIG, "subscribe '%s': core NATS "
                      "keeps no history: starting from the beginning needs "
                      "JetStream (messaging.broker.config.jetstream)",
                      spec->topic);
  }
  *handle = s; /* before the first sink call can run */
  int rc = s->js ? swit__nats_js_subscribe(b, s, spec, err, errlen)
                 : swit__nats_core_subscribe(b, s, err, errlen);
  if (rc) {
    *handle = NULL;
    sub_free(s);
    return rc;
  }
  pthread_mutex_lock(&b->mu);
  s->next = b->subs;
  b->subs = s;
  pthread_mutex_unlock(&b->mu);
  return 0;
}

/* Only JetStream redelivers what is given back (naks); core NATS drops
 * it (at most once). */
static int nats_redelivers(swit_broker *b, void *handle)
{
  const nats_sub *s = handle;
  (void)b;
  return s && s->js;
}

static int set_paused(nats_sub *s, int paused)
{
  if (!s)
    return SWIT_E_INVAL;
  if (atomic_load(&s->dead))
    return SWIT_E_STATE;
  if (s->js)
    swit__nats_js_set_paused(s, paused);
  else
    swit__nats_core_set_paused(s, paused);
  return 0;
}

static int nats_pause(swit_broker *b, void *handle)
{
  (void)b;
  return set_paused(handle, 1);
}

static int nats_resume(swit_broker *b, void *handle)
{
  (void)b;
  return set_paused(handle, 0);
}

static int nats_unsubscribe(swit_broker *b, void *handle)
{
  nats_sub *s = handle;
  if (!b || !s)
    return SWIT_E_INVAL;
  if (atomic_exchange(&s->dead, 1))
    return SWIT_E_STATE;
  if (s->js)
    swit__nats_js_unsubscribe(s);
  else
    swit__nats_core_unsubscribe(s);
  return 0;
}

static int nats_settle(swit_broker *b, void *handle, const swit_settle *st,
                       size_t n)
{
  nats_sub *s = handle;
  if (!b || !s || (n && !st))
    return SWIT_E_INVAL;
  for (size_t i = 0; i < n; i++)
    if (!st[i].token || st[i].action < SWIT_SETTLE_ACK ||
        st[i].action > SWIT_SETTLE_DROP)
      return SWIT_E_INVAL;
  /* Each delivery is settled once: a second settle of a token would put
   * its delivery in the pool twice (two messages in one struct). Such a
   * token is refused and logged; the rest go through. Nothing is
   * allocated unless that happens. */
  swit_settle *ok = NULL;
  size_t k = 0, twice = 0;
  for (size_t i = 0; i < n; i++) {
    int claimed =
        atomic_exchange(&((nats_dlv *)(uintptr_t)st[i].token)->out, 0) != 0;
    if (!claimed && !ok) {
      if (!(ok = malloc(n * sizeof *ok)))
        return SWIT_E_NOMEM;
      memcpy(ok, st, i * sizeof *ok);
      k = i;
    }
    if (!claimed)
      twice++;
    else if (ok)
      ok[k++] = st[i];
  }
  if (ok) {
    NATS_LOG(b, SWIT_LOG_ERROR, "nats: %zu settle(s) on '%s' of a message "
             "already settled: ignored", twice, s->topic);
    st = ok;
    n = k;
  }
  if (n && s->js)
    swit__nats_js_settle(s, st, n);
  else if (n)
    swit__nats_core_settle(s, st, n);
  free(ok);
  return twice ? SWIT_E_NOTFOUND : 0;
}

static int nats_publish(swit_broker *b, const swit_msg_view *msgs, size_t n,
                        const swit_publish_opts *o, uint64_t *confirm_ids,
                        char *err, size_t errlen)
{
  if (!b || (n && !msgs))
    return swit__fail(err, errlen, SWIT_E_INVAL, "publish: no messages");
  if (confirm_ids && n)
    memset(confirm_ids, 0, n * sizeof *confirm_ids);
  if (!b->nc || atomic_load(&b->closed))
    return swit__fail(err, errlen, SWIT_E_STATE,
                      "publish: nats broker not connected");
  return swit__nats_publish(b, msgs, n, o, confirm_ids, err, errlen);
}

/* ---------------------------------------------------------------------
 * The ops table */

const swit_broker_ops swit_broker_nats = {
  .name = "nats",
  .caps = SWIT_CAP_REQUEUE | SWIT_CAP_CONFIRM,
  .config_fields = swit__nats_config_fields,
  .settings_size = sizeof(swit_nats_settings),
  .create = nats_create,
  .destroy = nats_destroy,
  .connect = nats_connect,
  .disconnect = nats_disconnect,
  .health = nats_health,
  .subscribe = nats_subscribe,
  .pause = nats_pause,
  .resume = nats_resume,
  .unsubscribe = nats_unsubscribe,
  .settle = nats_settle,
  .redelivers = nats_redelivers,
  .publish = nats_publish,
  .flush = nats_flush,
};
