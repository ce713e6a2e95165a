/*
 * rabbitmq_broker.c - the RabbitMQ adapter (rabbitmq-c): its settings and
 * the swit_broker_ops table.
 *
 * rabbitmq-c connections are not thread-safe, so one I/O thread owns the
 * connection (rabbitmq_io.c) and every op here only hands work to it:
 * subscribe and unsubscribe wait for the I/O thread to run them; settles,
 * publishes, pause and resume are queued and the op returns (a publish
 * that asks for confirm ids then waits for the broker's confirms).
 *
 * Choices the host should know (docs/brokers/rabbitmq.md has the rest):
 *  - connect starts the I/O thread and returns after the first connection
 *    attempt, connected or not: an unreachable broker or refused login is
 *    reported as BackingOff and retried with the host's backoff.
 *  - subscribe declares the group's durable queue and binding before it
 *    returns when connected; when not, it is declared on connecting,
 *    before any queued publish is sent. A declaration the server refuses
 *    (e.g. a queue that exists with other arguments) is SWIT_E_CONFIG with
 *    the server's reply text.
 *  - Each subscription consumes with basic.qos prefetch = spec->prefetch
 *    and manual acks. ACK and DROP ack (DROP: the core dead-lettered the
 *    message already); REQUEUE is basic.nack with requeue.
 *  - pause is basic.cancel, resume basic.consume: deliveries already sent
 *    by the broker still reach the sink and are settled normally.
 *  - After a reconnect, settles of deliveries made on the old connection
 *    are dropped (the broker redelivers those messages), never sent on
 *    the new channel.
 *  - The token is the slot's address; the handle passed to settle is not
 *    needed, so settles after unsubscribe work.
 *
 * Threads: every op may be called from any thread; settle, publish
 * (without confirm ids), pause and resume also from inside a sink call.
 * disconnect and destroy must not be called from a sink.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "rabbitmq_int.h"

enum { BS_MU = 1, BS_CV = 2, BS_LIFE = 4, BS_EFD = 8, BS_WDCV = 16 };

static const char *const queue_types[] = { "classic", "quorum", NULL };
static const char *const overflows[] = { "drop-head", "reject-publish",
                                         "reject-publish-dlx", NULL };

#define FIELD(n, t, m) .name = n, .type = t, \
  .offset = offsetof(swit_rabbitmq_settings, m)
#define DAY_MS 86400000

const swit_cfg_field swit__rabbitmq_config_fields[] = {
  { FIELD("exchange", SWIT_CFG_STR, exchange), .dflt = "swit",
    .desc = "durable topic exchange that topics map to (routing key = topic)" },
  { FIELD("alternate_exchange", SWIT_CFG_STR, alternate_exchange), .dflt = "",
    .desc = "exchange for publishes no queue is bound for (empty: dropped)" },
  { FIELD("vhost", SWIT_CFG_STR, vhost), .dflt = "/",
    .desc = "virtual host, unless the endpoint URL names one" },
  { FIELD("heartbeat", SWIT_CFG_DURATION, heartbeat_ms), .dflt = "10s",
    .min = 0, .max = 600000,
    .desc = "AMQP heartbeat (whole seconds); 0 disables heartbeats" },
  { FIELD("connect_timeout", SWIT_CFG_DURATION, connect_timeout_ms),
    .dflt = "5s", .min = 100, .max = 600000,
    .desc = "bound on a TCP connect, the login and each declaration" },
  { FIELD("queue_type", SWIT_CFG_ENUM, queue_type), .dflt = "classic",
    .choices = queue_types, .desc = "x-queue-type of the group queues" },
  { FIELD("message_ttl", SWIT_CFG_DURATION, message_ttl_ms), .dflt = "0",
    .min = 0, .max = (int64_t)DAY_MS * 365,
    .desc = "x-message-ttl of group queues; expired messages are "
            "dead-lettered; 0: none" },
  { FIELD("max_length", SWIT_CFG_INT, max_length), .dflt = "0", .min = 0,
    .max = INT32_MAX, .desc = "x-max-length of group queues; 0: none" },
  { FIELD("max_length_bytes", SWIT_CFG_SIZE, max_length_bytes), .dflt = "0",
    .min = 0, .max = INT64_MAX,
    .desc = "x-max-length-bytes of group queues; 0: none" },
  { FIELD("overflow", SWIT_CFG_ENUM, overflow), .dflt = "drop-head",
    .choices = overflows,
    .desc = "x-overflow when a length limit is reached" },
  { FIELD("dead_letter_queues", SWIT_CFG_BOOL, dead_letter_queues),
    .dflt = "true",
    .desc = "declare a parking queue <group>.<dead-letter topic> per "
            "subscription and dead-letter group queues into it" },
  { FIELD("persistent", SWIT_CFG_BOOL, persistent), .dflt = "true",
    .desc = "publish with delivery mode 2 (persistent)" },
  { FIELD("publish_buffer", SWIT_CFG_INT, publish_buffer), .dflt = "100000",
    .min = 1, .max = 100000000,
    .desc = "messages published but not yet confirmed before publishers "
            "wait (and then get 'full')" },
  { FIELD("max_publish_size", SWIT_CFG_SIZE, max_publish_size),
    .dflt = "128MB", .min = 1, .max = (int64_t)512 * 1024 * 1024,
    .desc = "largest payload published; keep it at or under the server's "
            "max_message_size" },
  { .name = NULL }
};

/* ---------------------------------------------------------------------
 * Helpers shared by the adapter's files */

void swit__rmq_set_state(rmq_broker *b, swit_conn_state s, const char *detail)
{
  if (b->env.set_state)
    b->env.set_state(b->env.host_ud, s, detail);
}

void swit__rmq_reply_text(amqp_rpc_reply_t r, char *buf, size_t len)
{
  const amqp_connection_close_t *cc;
  const amqp_channel_close_t *ch;
  switch (r.reply_type) {
  case AMQP_RESPONSE_NORMAL:
    snprintf(buf, len, "ok");
    return;
  case AMQP_RESPONSE_LIBRARY_EXCEPTION:
    snprintf(buf, len, "%s", amqp_error_string2(r.library_error));
    return;
  case AMQP_RESPONSE_SERVER_EXCEPTION:
    if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
      cc = r.reply.decoded;
      snprintf(buf, len, "%u %.*s", cc->reply_code, (int)cc->reply_text.len,
               (const char *)cc->reply_text.bytes);
    } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
      ch = r.reply.decoded;
      snprintf(buf, len, "%u %.*s", ch->reply_code, (int)ch->reply_text.len,
               (const char *)ch->reply_text.bytes);
    } else {
      snprintf(buf, len, "unexpected method 0x%08x", r.reply.id);
    }
    return;
  default:
    snprintf(buf, len, "no reply");
  }
}

/* ---------------------------------------------------------------------
 * Creation */

static void settings_free(swit_rabbitmq_settings *st)
{
  free(st->exchange);
  free(st->alternate_exchange);
  free(st->vhost);
}

static void rmq_destroy(swit_broker *b);

static int copy_settings(rmq_broker *b, const swit_rabbitmq_settings *st,
                         char *err, size_t errlen)
{
  b->st = *st;
  b->st.exchange = strdup(st->exchange ? st->exchange : "swit");
  b->st.alternate_exchange = strdup(st->alternate_exchange ? st->alternate_exchange : "");
  b->st.vhost = strdup(st->vhost && *st->vhost ? st->vhost : "/");
  if (!b->st.exchange || !b->st.alternate_exchange || !b->st.vhost)
    return swit__fail(err, errlen, SWIT_E_NOMEM, "rabbitmq: out of memory");
  if (!*b->st.exchange || strlen(b->st.exchange) > 255)
    return swit__fail(err, errlen, SWIT_E_CONFIG, "messaging.broker.config."
                      "exchange: expected a name of 1..255 bytes");
  return 0;
}

/* Parse one endpoint: an AMQP URL, or host[:port] (amqp:// assumed).
 * Credentials in security.authentication override the URL's. */
static int parse_endpoint(rmq_broker *b, rmq_endpoint *ep, const char *text,
                          size_t i, char *err, size_t errlen)
{
  int has_scheme = strstr(text, "://") != NULL;
  size_t len = strlen(text) + 8;
  if (!(ep->buf = malloc(len)))
    return swit__fail(err, errlen, SWIT_E_NOMEM, "rabbitmq: out of memory");
  snprintf(ep->buf, len, "%s%s", has_scheme ? "" : "amqp://", text);
  amqp_default_connection_info(&ep->info);
  int rc = amqp_parse_url(ep->buf, &ep->info);
  if (rc != AMQP_STATUS_OK)
    return swit__fail(err, errlen, SWIT_E_CONFIG, "messaging.broker."
                      "endpoints[%zu] '%s': %s", i, text,
                      amqp_error_string2(rc));
  if (ep->info.ssl)
    return swit__fail(err, errlen, SWIT_E_CONFIG, "messaging.broker."
                      "endpoints[%zu] '%s': amqps:// (TLS) is not "
                      "supported by this adapter yet", i, text);
  const char *user = b->env.username;
  const char *pass = b->env.password;
  if (user && *user)
    ep->info.user = (char *)user;
  if (pass && *pass)
    ep->info.password = (char *)pass;
  return 0;
}

static int parse_endpoints(rmq_broker *b, char *err, size_t errlen)
{
  static const char *const dflt[] = { "amqp://guest:guest@127.0.0.1:5672" };
  const char *const *items = b->env.n_endpoints ? b->env.endpoints : dflt;
  size_t n = b->env.n_endpoints ? b->env.n_endpoints : 1;

  if (!(b->eps = calloc(n, sizeof *b->eps)))
    return swit__fail(err, errlen, SWIT_E_NOMEM, "rabbitmq: out of memory");
  b->neps = n;
  for (size_t i = 0; i < n; i++) {
    int rc = parse_endpoint(b, &b->eps[i], items[i], i, err, errlen);
    if (rc)
      return rc;
  }
  return 0;
}

static int sync_init(rmq_broker *b)
{
  if (pthread_mutex_init(&b->mu, NULL))
    return SWIT_E_SYS;
  b->sync |= BS_MU;
  int rc = swit__cond_init_monotonic(&b->cv);
  if (!rc) {
    b->sync |= BS_CV;
    if (!(rc = swit__cond_init_monotonic(&b->wd_cv)))
      b->sync |= BS_WDCV;
  }
  if (rc)
    return SWIT_E_SYS;
  if (pthread_mutex_init(&b->life, NULL))
    return SWIT_E_SYS;
  b->sync |= BS_LIFE;
  if ((b->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
    return SWIT_E_SYS;
  b->sync |= BS_EFD;
  return 0;
}

static int rmq_create(swit_broker **out, const swit_broker_env *env,
                      char *err, size_t errlen)
{
  static const swit_rabbitmq_settings dflt = {
    .heartbeat_ms = 10000, .connect_timeout_ms = 5000,
    .dead_letter_queues = 1, .persistent = 1, .publish_buffer = 100000,
    .max_publish_size = (int64_t)128 * 1024 * 1024 };
  rmq_broker *b = NULL;
  int rc = SWIT_E_INVAL;
  if (!out || !env) {
    swit__fail(err, errlen, rc, "rabbitmq: no environment");
    goto fail;
  }
  rc = SWIT_E_NOMEM;
  if (!(b = calloc(1, sizeof *b))) {
    swit__fail(err, errlen, rc, "rabbitmq: out of memory");
    goto fail;
  }
  b->env = *env;
  b->env.settings = NULL; /* copied below; the core may free them */
  b->gen = 1;
  b->wd_fd = -1;
  if ((rc = copy_settings(b, env->settings ? env->settings : &dflt, err, errlen)) ||
      (rc = parse_endpoints(b, err, errlen)))
    goto fail;
  if ((rc = sync_init(b))) {
    swit__fail(err, errlen, rc, "rabbitmq: cannot create locks");
    goto fail;
  }
  b->confirm_timeout_ms = env->publish_timeout_ms;
  b->publish_retries = env->publish_retry_attempts;
  b->max_message_size = env->max_message_size;
  *out = b;
  return 0;
fail:
  rmq_destroy(b);
  return rc;
}

static int rmq_disconnect(swit_broker *b);

static void sub_free(rmq_sub *s)
{
  if (!s)
    return;
  free(s->topic);
  free(s->queue);
  free(s->dlq_key);
  free(s->dlq_queue);
  free(s);
}

static void subs_free(rmq_broker *b)
{
  while (b->subs) {
    rmq_sub *s = b->subs;
    b->subs = s->next;
    sub_free(s);
  }
}

static void rmq_destroy(swit_broker *b)
{
  if (!b)
    return;
  if (b->running)
    rmq_disconnect(b);
  subs_free(b);
  swit__rmq_slots_free(b);
  swit__rmq_pubs_free(b);
  free(b->settles);
  free(b->io_settles);
  free(b->acked);
  for (size_t i = 0; i < b->neps; i++)
    free(b->eps[i].buf);
  free(b->eps);
  settings_free(&b->st);
  if (b->sync & BS_EFD)
    close(b->efd);
  if (b->sync & BS_LIFE)
    pthread_mutex_destroy(&b->life);
  if (b->sync & BS_CV)
    pthread_cond_destroy(&b->cv);
  if (b->sync & BS_WDCV)
    pthread_cond_destroy(&b->wd_cv);
  if (b->sync & BS_MU)
    pthread_mutex_destroy(&b->mu);
  free(b);
}

/* ---------------------------------------------------------------------
 * Connection */

static int rmq_connect(swit_broker *b, char *err, size_t errlen)
{
  if (!b)
    return swit__fail(err, errlen, SWIT_E_INVAL, "rabbitmq: no broker");
  int rc = 0;
  pthread_mutex_lock(&b->life);
  if (!b->running) {
    pthread_mutex_lock(&b->mu);
    b->running = 1;
    b->first_try_done = 0;
    b->gave_up = 0;
    pthread_mutex_unlock(&b->mu);
    int e = swit__rmq_io_start(b);
    pthread_mutex_lock(&b->mu);
    if (e) {
      b->running = 0;
      rc = swit__fail(err, errlen, SWIT_E_SYS, "rabbitmq: cannot start "
                      "the I/O thread (error %d)", e);
    }
    while (!e && !b->first_try_done)
      pthread_cond_wait(&b->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
  }
  pthread_mutex_unlock(&b->life);
  return rc;
}

static int rmq_disconnect(swit_broker *b)
{
  if (!b)
    return SWIT_E_INVAL;
  if (swit__rmq_on_io_thread(b))
    return SWIT_E_STATE; /* would join itself */
  pthread_mutex_lock(&b->life);
  if (b->running) {
    pthread_mutex_lock(&b->mu);
    b->running = 0;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    swit__rmq_io_stop(b);
  }
  pthread_mutex_unlock(&b->life);
  return 0;
}

static int rmq_health(swit_broker *b, char *detail, size_t len)
{
  if (!b)
    return swit__fail(detail, len, SWIT_E_INVAL, "rabbitmq: no broker");
  pthread_mutex_lock(&b->mu);
  int rc = atomic_load(&b->connected)
               ? swit__fail(detail, len, 0, "rabbitmq: connected to %s",
                            b->where)
               : swit__fail(detail, len, SWIT_E_BROKER, "rabbitmq: %s%s%s",
                            b->gave_up ? "gave up reconnecting"
                                           : b->running ? "not connected"
                                                        : "disconnected",
                            *b->last_error ? ": " : "", b->last_error);
  pthread_mutex_unlock(&b->mu);
  return rc;
}

/* ---------------------------------------------------------------------
 * Subscriptions */

static char *join3(const char *a, const char *sep, const char *c)
{
  size_t len = strlen(a) + strlen(sep) + strlen(c) + 1;
  char *s = malloc(len);
  if (s)
    snprintf(s, len, "%s%s%s", a, sep, c);
  return s;
}

/* A subscription with its queue names, or NULL when out of memory. The
 * parking queue "<group>.<dead letter topic>" is declared for whatever
 * dead-letter topic the subscription has (none when it dead-letters into
 * its own topic, whose queue is then the one that keeps them). */
static rmq_sub *sub_new(rmq_broker *b, const swit_sub_spec *spec,
                        swit_sink_fn sink, void *sink_ud)
{
  const char *group = spec->group && *spec->group ? spec->group : "default";
  rmq_sub *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->topic = strdup(spec->topic);
  s->queue = join3(group, ".", spec->topic);
  s->dlq_key = spec->dead_letter && *spec->dead_letter
                   ? strdup(spec->dead_letter)
                   : join3(spec->topic, "", ".dlq");
  int parking = b->st.dead_letter_queues && s->dlq_key &&
                strcmp(s->dlq_key, spec->topic) != 0;
  if (parking)
    s->dlq_queue = join3(group, ".", s->dlq_key);
  if (!s->topic || !s->queue || !s->dlq_key || (parking && !s->dlq_queue)) {
    sub_free(s);
    return NULL;
  }
  s->parking = spec->parking;
  s->sink = sink;
  s->sink_ud = sink_ud;
  s->prefetch = spec->prefetch;
  pthread_mutex_lock(&b->mu);
  s->id = ++b->next_sub_id;
  pthread_mutex_unlock(&b->mu);
  snprintf(s->tag, sizeof s->tag, "swit-%u", s->id);
  return s;
}

static int rmq_subscribe(swit_broker *b, const swit_sub_spec *spec,
                         swit_sink_fn sink, void *sink_ud, void **handle,
                         char *err, size_t errlen)
{
  rmq_cmd cmd = { .type = RMQ_CMD_SUBSCRIBE };
  rmq_sub *s = NULL;
  int rc = SWIT_E_INVAL;
  if (!b || !spec || !spec->topic || !*spec->topic || !sink || !handle) {
    swit__fail(err, errlen, rc, "subscribe: topic, sink and handle are "
               "required");
    goto fail;
  }
  rc = SWIT_E_CONFIG;
  if (spec->from == SWIT_FROM_BEGINNING) {
    swit__fail(err, errlen, rc, "subscribe '%s': RabbitMQ keeps no history "
               "for a new group (its queue holds what is published after it "
               "is declared): it cannot start from the beginning",
               spec->topic);
    goto fail;
  }
  rc = SWIT_E_NOMEM;
  if (!(s = sub_new(b, spec, sink, sink_ud))) {
    swit__fail(err, errlen, rc, "subscribe '%s': out of memory", spec->topic);
    goto fail;
  }
  rc = SWIT_E_CONFIG;
  const char *name = strlen(s->queue) > 255 ? s->queue
                     : s->dlq_queue && strlen(s->dlq_queue) > 255 ? s->dlq_queue
                     : strlen(s->dlq_key) > 255 ? s->dlq_key : NULL;
  if (name) {
    swit__fail(err, errlen, rc, "subscribe '%s': queue name or dead-letter "
               "routing key '%s' is over 255 bytes", spec->topic, name);
    goto fail;
  }
  *handle = s;
  cmd.sub = s;
  if ((rc = swit__rmq_command(b, &cmd))) {
    *handle = NULL;
    swit__fail(err, errlen, rc, "subscribe '%s': %s", spec->topic,
               rc == SWIT_E_STATE ? "the adapter is not connected" : cmd.err);
    goto fail;
  }
  return 0;
fail:
  sub_free(s);
  return rc;
}

static int set_paused(rmq_broker *b, rmq_sub *s, int paused)
{
  if (!b || !s)
    return SWIT_E_INVAL;
  atomic_store(&s->paused, paused);
  atomic_store(&b->reconcile, 1);
  atomic_store(&b->work, 1);
  if (atomic_load(&b->sleeping))
    swit__rmq_wake(b);
  return 0;
}

static int rmq_pause(swit_broker *b, void *handle)
{
  return set_paused(b, handle, 1);
}

static int rmq_resume(swit_broker *b, void *handle)
{
  return set_paused(b, handle, 0);
}

static int rmq_unsubscribe(swit_broker *b, void *handle)
{
  rmq_cmd cmd = { .type = RMQ_CMD_UNSUBSCRIBE, .sub = handle };
  if (!b || !handle)
    return SWIT_E_INVAL;
  if (swit__rmq_on_io_thread(b)) { /* from a sink: run it right here */
    swit__rmq_command(b, &cmd);
    sub_free(handle);
    return 0;
  }
  pthread_mutex_lock(&b->life); /* no disconnect meanwhile */
  int rc = b->running ? swit__rmq_command(b, &cmd) : SWIT_E_STATE;
  if (rc == SWIT_E_STATE) { /* no I/O thread: the list is ours */
    rmq_sub **pp = &b->subs;
    while (*pp && *pp != handle)
      pp = &(*pp)->next;
    if (*pp)
      *pp = cmd.sub->next;
    rc = 0;
  }
  pthread_mutex_unlock(&b->life);
  sub_free(handle);
  return rc;
}

static int rmq_settle(swit_broker *b, void *handle, const swit_settle *s,
                      size_t n)
{
  (void)handle; /* the token is the slot */
  if (!b || (n && !s))
    return SWIT_E_INVAL;
  pthread_mutex_lock(&b->mu);
  if (b->nsettles + n > b->settles_cap) {
    size_t cap = b->settles_cap ? b->settles_cap : 1024;
    while (cap < b->nsettles + n)
      cap *= 2;
    rmq_settle_req *v = realloc(b->settles, cap * sizeof *v);
    if (!v) {
      pthread_mutex_unlock(&b->mu);
      return SWIT_E_NOMEM;
    }
    b->settles = v;
    b->settles_cap = cap;
  }
  for (size_t i = 0; i < n; i++)
    b->settles[b->nsettles++] = (rmq_settle_req){
      .slot = (rmq_slot *)(uintptr_t)s[i].token, .action = s[i].action };
  atomic_store(&b->work, 1);
  pthread_mutex_unlock(&b->mu);
  if (atomic_load(&b->sleeping))
    swit__rmq_wake(b);
  return 0;
}

static int rmq_publish(swit_broker *b, const swit_msg_view *msgs, size_t n,
                       const swit_publish_opts *o, uint64_t *confirm_ids,
                       char *err, size_t errlen)
{
  if (!b || (n && !msgs))
    return swit__fail(err, errlen, SWIT_E_INVAL, "publish: no messages");
  return swit__rmq_publish(b, msgs, n, o, confirm_ids, err, errlen);
}

static int rmq_flush(swit_broker *b, int timeout_ms)
{
  return b ? swit__rmq_flush(b, timeout_ms) : SWIT_E_INVAL;
}

/* ---------------------------------------------------------------------
 * The ops table */

const swit_broker_ops swit_broker_rabbitmq = {
  .name = "rabbitmq",
  .caps = SWIT_CAP_REQUEUE | SWIT_CAP_CONFIRM | SWIT_CAP_TTL,
  .config_fields = swit__rabbitmq_config_fields,
  .settings_size = sizeof(swit_rabbitmq_settings),
  .create = rmq_create,
  .destroy = rmq_destroy,
  .connect = rmq_connect,
  .disconnect = rmq_disconnect,
  .health = rmq_health,
  .subscribe = rmq_subscribe,
  .pause = rmq_pause,
  .resume = rmq_resume,
  .unsubscribe = rmq_unsubscribe,
  .settle = rmq_settle,
  .publish = rmq_publish,
  .flush = rmq_flush,
};
