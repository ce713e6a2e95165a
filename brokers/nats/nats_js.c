/*
 * nats_js.c - JetStream subscriptions: at-least-once through a durable
 * pull consumer per (group, topic), fetched by one thread of ours.
 *
 * Streams: with messaging.broker.config.stream set, every subscription
 * binds to that stream (created with stream_subjects, or the topic, if it
 * does not exist and create_streams allows). Otherwise the stream that
 * captures the topic is looked up ($JS.API.STREAM.NAMES with a subject
 * filter) and, if none does, created as <stream_prefix><topic>_<hash>
 * with the topic as its only subject, so a script written for core NATS
 * runs on JetStream with one config switch.
 *
 * Consumers: durable "<group>_<topic>" (characters NATS forbids in names
 * become '_'), explicit acks, ack_wait = ack_deadline, max_ack_pending =
 * the subscriber prefetch, filter subject = topic, deliver all. It is
 * created if missing and updated if its settings differ; swit binds to it
 * and never deletes it, so unacked messages survive a restart of swit or
 * of the server (file storage).
 *
 * The fetch thread asks for at most min(fetch_batch, max_ack_pending -
 * in flight) messages per fetch (the free room is the backpressure), and
 * waits while paused or while that room is zero; settle wakes it. It
 * hands each batch to the sink in arrival order. Between fetches (and
 * while it waits) it sends an in-progress ack for every message the host
 * has held for half its ack_wait, so slow handlers, retry backoffs and
 * full worker queues do not cause redeliveries; a swit that dies stops
 * doing so, and the server redelivers after ack_wait. Settle: ACK -> Ack,
 * REQUEUE -> Nak (NakWithDelay with nak_delay), DROP -> Term. A fetch
 * that fails (connection down, server restarting) is retried after a
 * pause; a consumer or stream that disappeared is set up again.
 *
 * Acks: while the fetch thread waits in a fetch (s->acker, under
 * pool_mu), settle only queues the settled messages (s->acks), and the
 * fetch thread sends their acks as soon as the fetch returns, before it
 * hands the batch on, the way a plain cnats pull loop acks between
 * fetches: the workers do not contend with the fetch thread for the
 * connection, and the acks leave in bursts (bench_nats: JetStream consume
 * from ~0.85 to ~0.95 of raw cnats). An ack so waits at most one
 * fetch_wait. At any other time settle sends the acks itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nats_int.h"

/* ---------------------------------------------------------------------
 * Names */

static void sanitize(const char *in, char *out, size_t len)
{
  size_t i = 0;
  for (; in[i] && i + 1 < len; i++) {
    char c = in[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
             (c >= '0' && c <= '9') || c == '-' || c == '_';
    out[i] = ok ? c : '_';
  }
  out[i] = '\0';
}

static uint32_t fnv1a(const char *s)
{
  uint32_t h = 2166136261u;
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 16777619u;
  }
  return h;
}

static int64_t js_wait_ms(const nats_broker *b)
{
  return b->confirm_timeout_ms > 0 ? b->confirm_timeout_ms : 5000;
}

/* ---------------------------------------------------------------------
 * Streams */

/* The first name in a $JS.API.STREAM.NAMES answer: 1 found, 0 none. */
static int parse_names(const char *json, char *name, size_t len)
{
  const char *p = strstr(json, "\"streams\":[\"");
  if (!p)
    return 0;
  p += strlen("\"streams\":[\"");
  const char *q = strchr(p, '"');
  if (!q || (size_t)(q - p) >= len)
    return 0;
  memcpy(name, p, (size_t)(q - p));
  name[q - p] = '\0';
  return 1;
}

static int lookup_stream(nats_broker *b, const char *subject, char *name,
                         size_t len, char *err, size_t errlen)
{
  char req[NATS_SUBJECT_MAX + 32];
  natsMsg *reply = NULL;
  if (strchr(subject, '"') || strchr(subject, '\\'))
    return swit__fail(err, errlen, SWIT_E_CONFIG, "'%s' is not a valid "
                      "subject", subject);
  snprintf(req, sizeof req, "{\"subject\":\"%s\"}", subject);
  natsStatus s = natsConnection_RequestString(&reply, b->nc,
                                              "$JS.API.STREAM.NAMES", req,
                                              js_wait_ms(b));
  if (s == NATS_NO_RESPONDERS)
    return swit__fail(err, errlen, SWIT_E_CONFIG, "JetStream is not "
                      "enabled on the NATS server at %s (no responders "
                      "for the JetStream API); start nats-server with "
                      "-js, or use core NATS (jetstream: false)",
                      b->servers_text);
  if (s != NATS_OK)
    return swit__fail(err, errlen, SWIT_E_BROKER, "JetStream stream "
                      "lookup for '%s': %s", subject,
                      swit__nats_errtext(s));
  const char *data = natsMsg_GetData(reply);
  int rc = data && strstr(data, "\"error\"") ? -1
           : parse_names(data ? data : "", name, len);
  if (rc < 0)
    rc = swit__fail(err, errlen, SWIT_E_BROKER, "JetStream stream "
                    "lookup for '%s': %s", subject, data);
  natsMsg_Destroy(reply);
  return rc;
}

static int create_stream(nats_broker *b, const char *name,
                         const char **subjects, int nsubjects, char *err,
                         size_t errlen)
{
  static const jsRetentionPolicy ret[] = { js_LimitsPolicy, js_InterestPolicy,
                                           js_WorkQueuePolicy };
  jsStreamConfig cfg;
  jsStreamInfo *si = NULL;
  jsErrCode jerr = 0;
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = js_wait_ms(b);
  jsStreamConfig_Init(&cfg);
  cfg.Name = name;
  cfg.Subjects = subjects;
  cfg.SubjectsLen = nsubjects;
  cfg.Storage = b->st.storage == SWIT_NATS_STORAGE_MEMORY ? js_MemoryStorage
                                                          : js_FileStorage;
  cfg.Retention = ret[b->st.retention];
  cfg.MaxAge = b->st.max_age_ms * 1000000;
  cfg.Duplicates = b->st.duplicate_window_ms * 1000000;
  natsStatus s = js_AddStream(&si, b->js, &cfg, &jo, &jerr);
  jsStreamInfo_Destroy(si);
  if (s == NATS_OK || jerr == JSStreamNameExistErr) {
    if (s == NATS_OK)
      NATS_LOG(b, SWIT_LOG_INFO, "nats: created JetStream stream '%s' for "
               "'%s'%s (%s storage)", name, subjects[0],
               nsubjects > 1 ? " and more" : "",
               b->st.storage == SWIT_NATS_STORAGE_MEMORY ? "memory" : "file");
    return 0;
  }
  return swit__fail(err, errlen, SWIT_E_CONFIG, "cannot create JetStream "
                    "stream '%s' for '%s': %s", name, subjects[0],
                    swit__nats_errtext(s));
}

/* The configured stream: bound if it exists, else created if allowed. */
static int configured_stream(nats_broker *b, const char *subject, int create,
                             char *err, size_t errlen)
{
  jsStreamInfo *si = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_GetStreamInfo(&si, b->js, b->st.stream, NULL, &jerr);
  jsStreamInfo_Destroy(si);
  if (s == NATS_OK)
    return 0;
  if (jerr != JSStreamNotFoundErr && s != NATS_NOT_FOUND)
    return swit__fail(err, errlen, s == NATS_NO_RESPONDERS
                                            ? SWIT_E_CONFIG : SWIT_E_BROKER,
                      "JetStream stream '%s': %s%s", b->st.stream,
                      swit__nats_errtext(s), s == NATS_NO_RESPONDERS
                      ? " (is JetStream enabled on the server?)" : "");
  if (!create || !b->st.create_streams)
    return swit__fail(err, errlen, SWIT_E_CONFIG, "messaging.broker."
                      "config.stream: no stream '%s' on the server "
                      "(create_streams is false)", b->st.stream);
  const swit_cfg_list *l = &b->st.stream_subjects;
  const char *one[] = { subject };
  return l->n ? create_stream(b, b->st.stream, (const char **)l->items,
                              (int)l->n, err, errlen)
              : create_stream(b, b->st.stream, one, 1, err, errlen);
}

int swit__nats_stream_for(nats_broker *b, const char *subject, char *name,
                          size_t namelen, int create, char *err,
                          size_t errlen)
{
  if (*b->st.stream) {
    snprintf(name, namelen, "%s", b->st.stream);
    return configured_stream(b, subject, create, err, errlen);
  }
  int rc = lookup_stream(b, subject, name, namelen, err, errlen);
  if (rc != 0)
    return rc < 0 ? rc : 0;
  if (!create || !b->st.create_streams)
    return swit__fail(err, errlen, SWIT_E_CONFIG, "no JetStream stream "
                      "captures '%s' (create_streams is false: create "
                      "one, or set messaging.broker.config.stream)",
                      subject);
  char clean[200];
  sanitize(subject, clean, sizeof clean);
  snprintf(name, namelen, "%s%s_%08x", b->st.stream_prefix, clean,
           fnv1a(subject));
  const char *one[] = { subject };
  return create_stream(b, name, one, 1, err, errlen);
}

/* ---------------------------------------------------------------------
 * Consumers */

static void consumer_config(const nats_sub *s, jsConsumerConfig *cc)
{
  const nats_broker *b = s->b;
  jsConsumerConfig_Init(cc);
  cc->Durable = s->durable;
  cc->AckPolicy = js_AckExplicit;
  cc->AckWait = s->ack_wait_ms * 1000000;
  cc->MaxAckPending = s->max_ack_pending;
  cc->MaxDeliver = b->st.max_deliver > 0 ? b->st.max_deliver : -1;
  cc->FilterSubject = s->topic;
  cc->DeliverPolicy =
      s->from == SWIT_FROM_LATEST ? js_DeliverNew : js_DeliverAll;
}

static int ensure_consumer(nats_sub *s, char *err, size_t errlen)
{
  nats_broker *b = s->b;
  jsConsumerConfig cc;
  jsConsumerInfo *ci = NULL;
  jsErrCode jerr = 0;
  consumer_config(s, &cc);
  natsStatus st = js_AddConsumer(&ci, b->js, s->stream, &cc, NULL, &jerr);
  jsConsumerInfo_Destroy(ci);
  if (st == NATS_OK)
    return 0;
  char why[256];
  snprintf(why, sizeof why, "%s", swit__nats_errtext(st));
  ci = NULL;
  if (js_GetConsumerInfo(&ci, b->js, s->stream, s->durable, NULL, NULL)) {
    return swit__fail(err, errlen, SWIT_E_CONFIG, "subscribe '%s': "
                      "JetStream consumer '%s' on stream '%s': %s",
                      s->topic, s->durable, s->stream, why);
  }
  jsConsumerInfo_Destroy(ci);
  ci = NULL;
  st = js_UpdateConsumer(&ci, b->js, s->stream, &cc, NULL, NULL);
  jsConsumerInfo_Destroy(ci);
  if (st != NATS_OK)
    NATS_LOG(b, SWIT_LOG_WARN, "nats: JetStream consumer '%s' on stream "
             "'%s' exists with other settings and cannot be updated (%s); "
             "using it as it is", s->durable, s->stream,
             swit__nats_errtext(st));
  return 0;
}

/* Stream, consumer, pull subscription. Fetch thread or subscribe only. */
static int js_setup(nats_sub *s, char *err, size_t errlen)
{
  nats_broker *b = s->b;
  char stream[256];
  natsSubscription *ns = NULL;
  jsSubOptions so;
  jsErrCode jerr = 0;
  int rc = swit__nats_stream_for(b, s->topic, stream, sizeof stream, 1, err,
                                 errlen);
  if (rc)
    return rc;
  free(s->stream);
  if (!(s->stream = strdup(stream)))
    return swit__fail(err, errlen, SWIT_E_NOMEM, "out of memory");
  if ((rc = ensure_consumer(s, err, errlen)))
    return rc;
  jsSubOptions_Init(&so);
  so.Stream = s->stream;
  so.Consumer = s->durable;
  so.ManualAck = true;
  natsStatus st = js_PullSubscribe(&ns, b->js, s->topic, s->durable, NULL,
                                   &so, &jerr);
  if (st != NATS_OK)
    return swit__fail(err, errlen, SWIT_E_CONFIG, "subscribe '%s': "
                      "JetStream pull subscription on consumer '%s': %s",
                      s->topic, s->durable, swit__nats_errtext(st));
  if (s->ns) {
    natsSubscription **r = realloc(s->retired, (s->nretired + 1) * sizeof *r);
    if (!r) {
      natsSubscription_Destroy(ns);
      return swit__fail(err, errlen, SWIT_E_NOMEM, "out of memory");
    }
    s->retired = r;
    s->retired[s->nretired++] = s->ns;
  }
  s->ns = ns;
  s->ready = 1;
  swit__nats_js_status(b, NULL);
  return 0;
}

/* ---------------------------------------------------------------------
 * The fetch thread */

/* ---------------------------------------------------------------------
 * Held messages: kept alive while the host works on them */

static void hold(nats_sub *s, const swit_delivery *batch, size_t k)
{
  int64_t now = swit__now_ms();
  pthread_mutex_lock(&s->pool_mu);
  for (size_t i = 0; i < k; i++) {
    nats_dlv *d = (nats_dlv *)(uintptr_t)batch[i].token;
    d->since_ms = now;
    d->hprev = NULL;
    d->hnext = s->held;
    if (s->held)
      s->held->hprev = d;
    s->held = d;
  }
  pthread_mutex_unlock(&s->pool_mu);
}

static void unhold(nats_sub *s, const swit_settle *st, size_t n)
{
  pthread_mutex_lock(&s->pool_mu);
  for (size_t i = 0; i < n; i++) {
    nats_dlv *d = (nats_dlv *)(uintptr_t)st[i].token;
    if (d->hprev)
      d->hprev->hnext = d->hnext;
    else
      s->held = d->hnext;
    if (d->hnext)
      d->hnext->hprev = d->hprev;
    d->hprev = d->hnext = NULL;
  }
  pthread_mutex_unlock(&s->pool_mu);
}

/* Messages held for half their ack_wait (a slow handler, a retry backoff,
 * full worker queues) get an in-progress ack, so the server does not
 * redeliver what swit is still working on. Fetch thread only. */
static void keep_alive(nats_sub *s, int64_t now)
{
  int64_t age = s->ack_wait_ms / 2;
  size_t n = 0;
  s->next_touch_ms = now + (s->ack_wait_ms / 4 > 50 ? s->ack_wait_ms / 4 : 50);
  pthread_mutex_lock(&s->pool_mu);
  for (nats_dlv *d = s->held; d; d = d->hnext)
    if (now - d->since_ms >= age) {
      natsMsg_InProgress(d->msg, NULL);
      d->since_ms = now;
      n++;
    }
  pthread_mutex_unlock(&s->pool_mu);
  if (n)
    NATS_LOG(s->b, SWIT_LOG_DEBUG, "nats: '%s': %zu message(s) still in "
             "progress; ack_wait extended", s->topic, n);
}

/* ---------------------------------------------------------------------
 * Acks */

/* Ack, term or nak each delivery of the list (linked by next, in settle
 * order), destroy its message and return the list's first and last. */
static void send_acks(nats_sub *s, nats_dlv *list, nats_dlv **first,
                      nats_dlv **last)
{
  nats_broker *b = s->b;
  size_t failed = 0;
  natsStatus why = NATS_OK;
  *first = list;
  *last = NULL;
  for (nats_dlv *d = list; d; d = d->next) {
    natsStatus r;
    if (d->action == SWIT_SETTLE_ACK)
      r = natsMsg_Ack(d->msg, NULL);
    else if (d->action == SWIT_SETTLE_DROP)
      r = natsMsg_Term(d->msg, NULL);
    else if (b->st.nak_delay_ms > 0)
      r = natsMsg_NakWithDelay(d->msg, b->st.nak_delay_ms, NULL);
    else
      r = natsMsg_Nak(d->msg, NULL);
    if (r != NATS_OK) {
      failed++;
      why = r;
    }
    natsMsg_Destroy(d->msg);
    d->msg = NULL;
    *last = d;
  }
  if (failed)
    NATS_LOG(b, SWIT_LOG_WARN, "nats: cannot settle %zu message(s) of '%s' "
             "(%s); the server redelivers them after ack_wait (%lld ms)",
             failed, s->topic, swit__nats_errtext(why),
             (long long)s->ack_wait_ms);
}

/* Fetch thread: a fetch begins (1) or ended (0); at the end, send what
 * settle queued meanwhile. */
static void fetching(nats_sub *s, int on)
{
  pthread_mutex_lock(&s->pool_mu);
  s->acker = on;
  nats_dlv *newest = on ? NULL : s->acks, *order = NULL, *first, *last;
  s->acks = NULL;
  pthread_mutex_unlock(&s->pool_mu);
  while (newest) { /* queued newest first */
    nats_dlv *next = newest->next;
    newest->next = order;
    order = newest;
    newest = next;
  }
  send_acks(s, order, &first, &last);
  if (last) { /* this thread's own spare list: no lock */
    last->next = s->spare;
    s->spare = first;
  }
}

/* ---------------------------------------------------------------------
 * The fetch thread */

/* Room for the next fetch (s->mu held), or 0. */
static int room_now(const nats_sub *s)
{
  long long in = atomic_load(&s->inflight);
  if (s->paused || in >= s->max_ack_pending)
    return 0;
  long long free_room = s->max_ack_pending - in;
  return free_room < s->b->st.fetch_batch ? (int)free_room
                                           : (int)s->b->st.fetch_batch;
}

/* Room for the next fetch, or -1 to stop. `idle_ms` > 0 waits that long
 * first (after an error). Keeps held messages alive meanwhile. */
static int wait_for_room(nats_sub *s, int64_t idle_ms)
{
  int64_t idle_until = swit__now_ms() + (idle_ms > 0 ? idle_ms : 0);
  int room = 0;
  pthread_mutex_lock(&s->mu);
  while (!s->stop) {
    int64_t now = swit__now_ms();
    if (now >= s->next_touch_ms) {
      pthread_mutex_unlock(&s->mu);
      keep_alive(s, now);
      pthread_mutex_lock(&s->mu);
      continue;
    }
    atomic_store(&s->waiting_room, 1);
    if (now >= idle_until && (room = room_now(s)) > 0)
      break;
    int64_t until = now < idle_until && idle_until < s->next_touch_ms
                        ? idle_until : s->next_touch_ms;
    swit__cond_wait_until(&s->cv, &s->mu, (swit__deadline){until});
  }
  atomic_store(&s->waiting_room, 0);
  int stop = s->stop;
  pthread_mutex_unlock(&s->mu);
  return stop ? -1 : room;
}

/* Hand a fetched batch to the sink; takes the messages out of `list`. */
static void deliver_batch(nats_sub *s, natsMsgList *list)
{
  nats_broker *b = s->b;
  size_t k = 0;
  for (int i = 0; i < list->Count; i++) {
    natsMsg *m = list->Msgs[i];
    nats_dlv *d = atomic_load(&s->dead) ? NULL : swit__nats_dlv_get(s);
    const char *reject = NULL;
    list->Msgs[i] = NULL;
    if (!d || swit__nats_dlv_fill(b, d, m, &reject)) {
      natsMsg_Nak(m, NULL); /* redelivered later */
      if (d)
        swit__nats_dlv_put(s, d);
      else
        natsMsg_Destroy(m);
      continue;
    }
    atomic_store(&d->out, 1);
    s->batch[k++] = (swit_delivery){ .msg = &d->view,
                                     .token = (uint64_t)(uintptr_t)d,
                                     .reject = reject };
  }
  if (!k)
    return;
  atomic_fetch_add(&s->inflight, (long long)k);
  hold(s, s->batch, k);
  s->sink(s->sink_ud, s->batch, k);
}

/* A failed fetch: log once per kind of failure; set up again when the
 * consumer or stream is gone. Returns how long to wait before retrying. */
static int64_t fetch_failed(nats_sub *s, natsStatus st, jsErrCode jerr,
                            natsStatus *last)
{
  nats_broker *b = s->b;
  char why[300];
  snprintf(why, sizeof why, "fetching '%s' (consumer '%s'): %s", s->topic,
           s->durable, swit__nats_errtext(st));
  if (st != *last && !atomic_load(&b->closing)) {
    NATS_LOG(b, SWIT_LOG_WARN, "nats: %s; retrying", why);
    if (swit__nats_is_connected(b))
      swit__nats_js_status(b, why);
  }
  *last = st;
  if (jerr == JSConsumerNotFoundErr || jerr == JSStreamNotFoundErr ||
      st == NATS_NOT_FOUND)
    s->ready = 0;
  return 200;
}

static void *fetch_main(void *arg)
{
  nats_sub *s = arg;
  nats_broker *b = s->b;
  natsStatus last = NATS_OK;
  int64_t idle = 0;
  char err[512];
  int room;
  while ((room = wait_for_room(s, idle)) >= 0) {
    idle = 0;
    if (!s->ready) {
      if (!swit__nats_is_connected(b) || js_setup(s, err, sizeof err)) {
        if (swit__nats_is_connected(b) && last != NATS_ERR) {
          NATS_LOG(b, SWIT_LOG_ERROR, "nats: %s; retrying", err);
          swit__nats_js_status(b, err);
        }
        last = swit__nats_is_connected(b) ? NATS_ERR : last;
        idle = 500;
      }
      continue;
    }
    natsMsgList list = { NULL, 0 };
    jsErrCode jerr = 0;
    fetching(s, 1);
    natsStatus st = natsSubscription_Fetch(&list, s->ns, room,
                                           b->st.fetch_wait_ms, &jerr);
    fetching(s, 0);
    if (list.Count > 0)
      deliver_batch(s, &list);
    natsMsgList_Destroy(&list);
    if (st == NATS_OK || st == NATS_TIMEOUT) {
      if (last != NATS_OK) {
        NATS_LOG(b, SWIT_LOG_INFO, "nats: fetching '%s' again", s->topic);
        swit__nats_js_status(b, NULL);
      }
      last = NATS_OK;
    } else {
      idle = fetch_failed(s, st, jerr, &last);
    }
  }
  return NULL;
}

/* ---------------------------------------------------------------------
 * Subscription ops */

int swit__nats_js_subscribe(nats_broker *b, nats_sub *s,
                            const swit_sub_spec *spec, char *err,
                            size_t errlen)
{
  char g[200], t[200], durable[420];
  sanitize(s->group, g, sizeof g);
  sanitize(s->topic, t, sizeof t);
  snprintf(durable, sizeof durable, "%s_%s", g, t);
  s->durable = strdup(durable);
  s->batch = calloc((size_t)b->st.fetch_batch, sizeof *s->batch);
  if (!s->durable || !s->batch)
    return swit__fail(err, errlen, SWIT_E_NOMEM, "out of memory");
  s->max_ack_pending = spec->prefetch ? spec->prefetch : 1000;
  s->ack_wait_ms = spec->ack_deadline_ms > 0 ? spec->ack_deadline_ms : 30000;
  s->next_touch_ms = swit__now_ms() + s->ack_wait_ms / 4;
  atomic_store(&b->js_used, 1);
  int rc = 0;
  if (swit__nats_is_connected(b))
    rc = js_setup(s, err, errlen);
  else
    NATS_LOG(b, SWIT_LOG_INFO, "nats: JetStream subscription '%s' is set up "
             "once the server is reachable", s->topic);
  if (!rc && pthread_create(&s->thread, NULL, fetch_main, s))
    rc = swit__fail(err, errlen, SWIT_E_SYS, "subscribe '%s': cannot "
                    "start the fetch thread", s->topic);
  if (!rc)
    s->thread_started = 1;
  return rc;
}

void swit__nats_js_set_paused(nats_sub *s, int paused)
{
  pthread_mutex_lock(&s->mu);
  s->paused = paused;
  if (!paused)
    pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

void swit__nats_js_unsubscribe(nats_sub *s)
{
  if (!s->thread_started)
    return;
  pthread_mutex_lock(&s->mu);
  s->stop = 1;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  if (pthread_equal(pthread_self(), s->thread))
    return; /* from inside our own sink call: joined later */
  pthread_join(s->thread, NULL);
  s->thread_started = 0;
  if (s->ns)
    natsSubscription_Unsubscribe(s->ns); /* bound: the consumer stays */
}

void swit__nats_js_settle(nats_sub *s, const swit_settle *st, size_t n)
{
  nats_dlv *newest = NULL, *last_queued = NULL, *order = NULL, *first, *last;
  unhold(s, st, n);
  for (size_t i = 0; i < n; i++) {
    nats_dlv *d = (nats_dlv *)(uintptr_t)st[i].token;
    d->action = st[i].action;
    d->next = newest;
    newest = d;
    if (!last_queued)
      last_queued = d;
  }
  pthread_mutex_lock(&s->pool_mu);
  if (s->acker && newest) { /* the fetch thread acks when its fetch returns */
    last_queued->next = s->acks;
    s->acks = newest;
    newest = NULL;
  }
  pthread_mutex_unlock(&s->pool_mu);
  while (newest) {
    nats_dlv *next = newest->next;
    newest->next = order;
    order = newest;
    newest = next;
  }
  send_acks(s, order, &first, &last);
  if (last) {
    pthread_mutex_lock(&s->pool_mu);
    last->next = s->pool;
    s->pool = first;
    pthread_mutex_unlock(&s->pool_mu);
  }
  atomic_fetch_sub(&s->inflight, (long long)n);
  if (atomic_load(&s->waiting_room)) {
    pthread_mutex_lock(&s->mu);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
  }
}
