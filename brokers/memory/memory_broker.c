/*
 * memory_broker.c - the embedded in-memory broker: the swit_broker_ops
 * table, its settings, and the ops themselves.
 *
 * Topics are exact names, created on first publish or subscribe and kept
 * until destroy. A subscription joins a group on its topic: every group
 * gets every message; members of one group compete (each message goes to
 * one member; the delivery thread spreads batches over the members that
 * are not paused). A topic retains at most `queue_size` messages, counted
 * from the oldest one some group still holds; a publisher that finds it
 * full waits for room (up to its timeout) and then gets SWIT_E_FULL.
 *
 * Choices the host should know:
 *  - A message published while its topic has no group is kept (within
 *    queue_size) and delivered to the first group that subscribes; a group
 *    that joins a topic which already has groups starts with the next
 *    message published.
 *  - When the last member of a group unsubscribes the group is gone: the
 *    messages it had not been delivered are released at once, those in
 *    flight when they are settled (any action then means "release").
 *    Those it never handled are counted (b->dropped) and the count is
 *    logged at disconnect; undelivered() lets the host's stop handle
 *    them first.
 *  - subscribe stores *handle before the first sink call for it can start.
 *  - unsubscribe waits for a sink call in progress for that handle to
 *    return (unless called from inside that sink call). The handle stays
 *    valid for settle while deliveries made to it are unsettled, and is
 *    freed after the last of them.
 *  - REQUEUE puts the message back for its group, redelivered in publish
 *    order ahead of messages never delivered, to any member.
 *  - prefetch, ack_deadline_ms and ordering are not used: flow control is
 *    the core's pause/resume, and nothing is redelivered on a deadline.
 *  - publish and subscribe need a connected broker (SWIT_E_STATE); the
 *    rest works in any state. Retained messages survive disconnect.
 *  - publishes arrive checked by the core (topic, pointers,
 *    max_message_size: host/core/msg_check.c). If a batch stops on SWIT_E_FULL,
 *    the messages before the failing one are published: confirm_ids[i] is
 *    nonzero exactly for the accepted ones.
 *
 * Threads: every op may be called from any thread; subscribe, pause,
 * resume, settle, publish and unsubscribe also from inside a sink call.
 * disconnect and destroy must not be called from a sink (disconnect
 * returns SWIT_E_STATE there). The delivery thread is memory_delivery.c.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memory_int.h"

enum { BS_TOPICS = 1, BS_LIFE = 2, BS_MU = 4, BS_WAKE = 8 };

#define MEM_QUEUE_SIZE_MAX 10000000

const swit_cfg_field swit__memory_config_fields[] = {
  { .name = "queue_size",
    .type = SWIT_CFG_INT,
    .offset = offsetof(swit_memory_settings, queue_size),
    .dflt = "10000",
    .min = 1,
    .max = MEM_QUEUE_SIZE_MAX,
    .desc = "messages a topic retains (published, not yet acked by every "
            "group) before publishers wait" },
  { .name = NULL }
};

/* A message's timestamp: wall-clock milliseconds (not a deadline). */
static int64_t wall_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------------
 * Lifecycle */

static void mem_destroy(swit_broker *b)
{
  if (!b)
    return;
  if (b->running) {
    atomic_store(&b->connected, 0);
    swit__mem_delivery_stop(b);
  }
  swit__mem_topics_free(b);
  if (b->sync & BS_TOPICS)
    pthread_rwlock_destroy(&b->topics_lock);
  if (b->sync & BS_LIFE)
    pthread_mutex_destroy(&b->life);
  if (b->sync & BS_MU)
    pthread_mutex_destroy(&b->mu);
  if (b->sync & BS_WAKE)
    pthread_cond_destroy(&b->wake);
  free(b);
}

/* Initialise the broker's locks, recording each in b->sync for destroy. */
static int broker_sync_init(mem_broker *b)
{
  if (pthread_rwlock_init(&b->topics_lock, NULL))
    return SWIT_E_SYS;
  b->sync |= BS_TOPICS;
  if (pthread_mutex_init(&b->life, NULL))
    return SWIT_E_SYS;
  b->sync |= BS_LIFE;
  if (pthread_mutex_init(&b->mu, NULL))
    return SWIT_E_SYS;
  b->sync |= BS_MU;
  if (swit__cond_init_monotonic(&b->wake))
    return SWIT_E_SYS;
  b->sync |= BS_WAKE;
  return 0;
}

static int mem_create(swit_broker **out, const swit_broker_env *env,
                      char *err, size_t errlen)
{
  static const swit_memory_settings dflt = { .queue_size = 10000 };
  mem_broker *b = NULL;
  int rc = SWIT_E_INVAL;
  if (!out || !env) {
    swit__fail(err, errlen, rc, "memory broker: no environment");
    goto fail;
  }
  const swit_memory_settings *st = env->settings ? env->settings : &dflt;
  rc = SWIT_E_CONFIG;
  if (st->queue_size < 1 || st->queue_size > MEM_QUEUE_SIZE_MAX) {
    swit__fail(err, errlen, rc, "messaging.broker.config.queue_size: expected "
               "1..%d, got %lld", MEM_QUEUE_SIZE_MAX, (long long)st->queue_size);
    goto fail;
  }
  rc = SWIT_E_NOMEM;
  if (!(b = calloc(1, sizeof *b))) {
    swit__fail(err, errlen, rc, "memory broker: out of memory");
    goto fail;
  }
  b->env = *env;
  b->env.settings = NULL; /* copied below; the core may free them */
  b->queue_size = st->queue_size;
  if ((rc = broker_sync_init(b))) {
    swit__fail(err, errlen, rc, "memory broker: cannot create locks");
    goto fail;
  }
  *out = b;
  return 0;
fail:
  mem_destroy(b);
  return rc;
}

static void report(swit_broker *b, swit_conn_state state)
{
  if (b->env.set_state)
    b->env.set_state(b->env.host_ud, state, NULL);
}

static int mem_connect(swit_broker *b, char *err, size_t errlen)
{
  if (!b)
    return swit__fail(err, errlen, SWIT_E_INVAL, "memory broker: no broker");
  int rc = 0;
  pthread_mutex_lock(&b->life);
  if (!b->running) {
    int e = swit__mem_delivery_start(b);
    if (e) {
      rc = swit__fail(err, errlen, SWIT_E_SYS, "memory broker: cannot start "
                      "the delivery thread (error %d)", e);
    } else {
      b->running = 1;
      atomic_store(&b->connected, 1);
      report(b, SWIT_CONN_CONNECTED);
    }
  }
  pthread_mutex_unlock(&b->life);
  return rc;
}

static int mem_disconnect(swit_broker *b)
{
  if (!b)
    return SWIT_E_INVAL;
  if (swit__mem_on_delivery_thread(b))
    return SWIT_E_STATE; /* would join itself */
  pthread_mutex_lock(&b->life);
  if (b->running) {
    uint64_t lost = atomic_exchange(&b->dropped, 0);
    atomic_store(&b->connected, 0);
    swit__mem_delivery_stop(b);
    b->running = 0;
    report(b, SWIT_CONN_DISCONNECTED);
    if (lost)
      MEM_LOG(b, SWIT_LOG_WARN, "memory broker: %" PRIu64 " accepted "
              "message(s) were never handled: their subscription ended "
              "first (the memory broker keeps nothing past them)", lost);
  }
  pthread_mutex_unlock(&b->life);
  return 0;
}

/* Deliveries the live groups have not been handed yet (see broker.h). */
static int64_t mem_undelivered(swit_broker *b)
{
  int64_t n = 0;
  mem_topic *t;

  for (size_t i = 0; b && (t = swit__mem_topic_at(b, i)) != NULL; i++) {
    pthread_mutex_lock(&t->mu);
    for (size_t k = 0; k < t->ngroups; k++)
      n += (int64_t)swit__mem_group_pending(t, t->groups[k]);
    pthread_mutex_unlock(&t->mu);
  }
  return n;
}

static int mem_health(swit_broker *b, char *detail, size_t len)
{
  if (b && atomic_load(&b->connected))
    return swit__fail(detail, len, 0, "memory broker: connected");
  return swit__fail(detail, len, SWIT_E_BROKER, "memory broker: not connected");
}

static int mem_flush(swit_broker *b, int timeout_ms)
{
  (void)timeout_ms; /* publish stores synchronously: nothing to flush */
  return b ? 0 : SWIT_E_INVAL;
}

/* ---------------------------------------------------------------------
 * Subscriptions */

static int mem_subscribe(swit_broker *b, const swit_sub_spec *spec,
                         swit_sink_fn sink, void *sink_ud, void **handle,
                         char *err, size_t errlen)
{
  mem_member *m = NULL;
  int rc = SWIT_E_INVAL;
  if (!b || !spec || !spec->topic || !*spec->topic || !sink || !handle) {
    swit__fail(err, errlen, rc, "subscribe: topic, sink and handle are required");
    goto fail;
  }
  rc = SWIT_E_CONFIG;
  if (spec->from == SWIT_FROM_BEGINNING) {
    swit__fail(err, errlen, rc, "subscribe '%s': the memory broker keeps "
               "no history for a new subscriber: it cannot start from the "
               "beginning", spec->topic);
    goto fail;
  }
  rc = SWIT_E_STATE;
  if (!atomic_load(&b->connected)) {
    swit__fail(err, errlen, rc, "subscribe '%s': memory broker not connected",
               spec->topic);
    goto fail;
  }
  const char *group = spec->group && *spec->group ? spec->group : "default";
  mem_topic *t;
  rc = swit__mem_topic_get(b, spec->topic, strlen(spec->topic), &t);
  if (!rc && !(m = calloc(1, sizeof *m)))
    rc = SWIT_E_NOMEM;
  if (rc) {
    swit__fail(err, errlen, rc, "subscribe '%s': out of memory", spec->topic);
    goto fail;
  }
  m->sink = sink;
  m->sink_ud = sink_ud;
  pthread_mutex_lock(&t->mu);
  rc = swit__mem_group_join(t, group, m);
  uint64_t pending = 0;
  if (!rc) {
    /* Set before the delivery thread can pick m (it needs t->mu), so
     * the caller's handle is in place before the first sink call. */
    *handle = m; /* owned by the topic; freed after unsubscribe */
    pending = swit__mem_group_pending(t, m->group);
  }
  pthread_mutex_unlock(&t->mu);
  if (rc) {
    swit__fail(err, errlen, rc, "subscribe '%s': out of memory", spec->topic);
    goto fail;
  }
  if (pending)
    swit__mem_delivery_wake(b);
  return 0;
fail:
  free(m);
  return rc;
}

static int set_paused(mem_broker *b, mem_member *m, int paused)
{
  if (!b || !m)
    return SWIT_E_INVAL;
  mem_topic *t = m->group->topic;
  pthread_mutex_lock(&t->mu);
  int rc = m->dead ? SWIT_E_STATE : 0;
  if (!rc)
    m->paused = paused;
  int wake = !rc && !paused && swit__mem_group_pending(t, m->group);
  pthread_mutex_unlock(&t->mu);
  if (wake)
    swit__mem_delivery_wake(b);
  return rc;
}

static int mem_pause(swit_broker *b, void *handle)
{
  return set_paused(b, handle, 1);
}

static int mem_resume(swit_broker *b, void *handle)
{
  return set_paused(b, handle, 0);
}

static int mem_unsubscribe(swit_broker *b, void *handle)
{
  mem_member *m = handle;
  if (!b || !m)
    return SWIT_E_INVAL;
  mem_topic *t = m->group->topic;
  int rc = 0;
  pthread_mutex_lock(&t->mu);
  if (m->dead) {
    rc = SWIT_E_STATE; /* already unsubscribed, deliveries unsettled */
  } else {
    swit__mem_group_leave(t, m);
    if (m->in_sink && !swit__mem_on_delivery_thread(b)) {
      m->unsub_waiting = 1;
      while (m->in_sink)
        pthread_cond_wait(&t->sink_done, &t->mu);
      m->unsub_waiting = 0;
    }
    swit__mem_member_reap(m); /* m may be gone now */
  }
  pthread_mutex_unlock(&t->mu);
  return rc;
}

static int mem_settle(swit_broker *b, void *handle, const swit_settle *s,
                      size_t n)
{
  mem_member *m = handle;
  if (!b || !m || (n && !s))
    return SWIT_E_INVAL;
  for (size_t i = 0; i < n; i++)
    if (s[i].action < SWIT_SETTLE_ACK || s[i].action > SWIT_SETTLE_DROP)
      return SWIT_E_INVAL;
  mem_group *g = m->group;
  mem_topic *t = g->topic;
  size_t unknown = 0;
  int requeued = 0;
  pthread_mutex_lock(&t->mu);
  for (size_t i = 0; i < n; i++) {
    uint64_t seq = s[i].token;
    if (!m->inflight || !swit__mem_topic_held(t, seq)) {
      unknown++;
      continue;
    }
    m->inflight--;
    g->inflight--;
    if (s[i].action == SWIT_SETTLE_REQUEUE && !g->gone &&
        swit__mem_group_requeue(g, seq) == 0) {
      requeued = 1;
    } else {
      if (s[i].action == SWIT_SETTLE_REQUEUE) /* given back, nobody left */
        atomic_fetch_add(&b->dropped, 1);
      swit__mem_topic_release(t, seq);
    }
  }
  swit__mem_topic_room_signal(t);
  swit__mem_member_reap(m); /* m and g may be gone now */
  pthread_mutex_unlock(&t->mu);
  if (requeued)
    swit__mem_delivery_wake(b);
  if (unknown)
    MEM_LOG(b, SWIT_LOG_WARN, "memory broker: settle on topic '%s': %zu "
            "unknown or already settled token(s)", t->name, unknown);
  return unknown ? SWIT_E_NOTFOUND : 0;
}

/* ---------------------------------------------------------------------
 * Publishing */

/* How long a publish call may wait for room, all runs together. */
typedef struct publish_wait {
  int64_t timeout_ms;
  int started;
  swit__deadline deadline; /* set at the first wait */
} publish_wait;

static const swit__deadline *publish_deadline(publish_wait *w)
{
  if (w->timeout_ms <= 0)
    return NULL;
  if (!w->started) {
    w->deadline = swit__deadline_in(w->timeout_ms);
    w->started = 1;
  }
  return &w->deadline;
}

/* The end of the run of messages from i on that share msgs[i]'s topic. */
static size_t run_end(const swit_msg_view *msgs, size_t i, size_t n)
{
  size_t j = i + 1;
  while (j < n && msgs[j].topic_len == msgs[i].topic_len &&
         memcmp(msgs[j].topic, msgs[i].topic, msgs[i].topic_len) == 0)
    j++;
  return j;
}

/* Store n messages for one topic under one lock hold. */
static int publish_run(mem_broker *b, const swit_msg_view *msgs, size_t n,
                       publish_wait *w, int64_t timestamp_ms, uint64_t *ids,
                       char *err, size_t errlen)
{
  mem_topic *t;
  int rc = swit__mem_topic_get(b, msgs[0].topic, msgs[0].topic_len, &t);
  if (rc)
    return swit__fail(err, errlen, rc, "publish to '%.*s': out of memory",
                      (int)msgs[0].topic_len, msgs[0].topic);
  size_t done = 0, woken = 0;
  pthread_mutex_lock(&t->mu);
  for (; done < n; done++) {
    if (t->tail - t->head >= t->limit) {
      if (done > woken && t->ngroups) {
        swit__mem_delivery_wake(b); /* what we stored may make room */
        woken = done;
      }
      if ((rc = swit__mem_topic_wait_room(t, publish_deadline(w))))
        break;
    }
    if ((rc = swit__mem_topic_append(t, &msgs[done], timestamp_ms)))
      break;
    if (ids)
      ids[done] = atomic_fetch_add(&b->confirm_seq, 1) + 1;
  }
  int wake = done > woken && t->ngroups;
  pthread_mutex_unlock(&t->mu);
  if (wake)
    swit__mem_delivery_wake(b);
  if (rc == SWIT_E_FULL)
    return swit__fail(err, errlen, rc, "topic '%s' is full (queue_size %lld)",
                      t->name, (long long)t->limit);
  if (rc)
    return swit__fail(err, errlen, rc, "publish to '%s': out of memory", t->name);
  return 0;
}

static int mem_publish(swit_broker *b, const swit_msg_view *msgs, size_t n,
                       const swit_publish_opts *o, uint64_t *confirm_ids,
                       char *err, size_t errlen)
{
  if (!b || (n && !msgs))
    return swit__fail(err, errlen, SWIT_E_INVAL, "publish: no messages");
  if (confirm_ids && n)
    memset(confirm_ids, 0, n * sizeof *confirm_ids);
  if (!atomic_load(&b->connected))
    return swit__fail(err, errlen, SWIT_E_STATE,
                      "publish: memory broker not connected");
  int rc = 0;
  publish_wait w = { .timeout_ms = o && o->timeout_ms > 0 ? o->timeout_ms
                                                          : 0 };
  int64_t ts = wall_ms();
  for (size_t i = 0, end; !rc && i < n; i = end) {
    end = run_end(msgs, i, n);
    rc = publish_run(b, msgs + i, end - i, &w, ts,
                     confirm_ids ? confirm_ids + i : NULL, err, errlen);
  }
  return rc;
}

/* ---------------------------------------------------------------------
 * The ops table */

const swit_broker_ops swit_broker_memory = {
  .name = "memory",
  .caps = SWIT_CAP_REQUEUE | SWIT_CAP_CONFIRM,
  .config_fields = swit__memory_config_fields,
  .settings_size = sizeof(swit_memory_settings),
  .create = mem_create,
  .destroy = mem_destroy,
  .connect = mem_connect,
  .disconnect = mem_disconnect,
  .health = mem_health,
  .subscribe = mem_subscribe,
  .pause = mem_pause,
  .resume = mem_resume,
  .unsubscribe = mem_unsubscribe,
  .settle = mem_settle,
  .publish = mem_publish,
  .flush = mem_flush,
  .undelivered = mem_undelivered,
};
