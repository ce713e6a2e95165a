/*
 * nats_core.c - core NATS subscriptions: at-most-once, `group` is a queue
 * group, subjects may hold `*` and `>` wildcards.
 *
 * Each subscription is a synchronous cnats subscription read by one
 * thread of ours: it waits for a message (natsSubscription_NextMsg), takes
 * whatever else cnats has buffered by then (up to NATS_CORE_BATCH) and
 * hands the batch to the sink in arrival order, so the dispatcher locks
 * each worker queue once per batch instead of once per message.
 *
 * Backpressure: the sink blocks when the worker queues are full beyond
 * their slack, and while the subscription is paused (queues at
 * high-water) the reader stops reading. Meanwhile cnats keeps buffering
 * what the server sends, up to pending_msgs / pending_bytes, and drops
 * beyond: NextMsg and the error handler report NATS_SLOW_CONSUMER, and
 * the adapter logs the drop count from natsSubscription_GetDropped (at
 * most once a second while it grows, and in total at unsubscribe).
 * Nothing is dropped silently.
 *
 * Settle only frees the message: the server forgets a core message once it
 * sent it. A REQUEUE (the host giving back what it did not finish at
 * shutdown) cannot redeliver, so it is counted and logged as dropped.
 *
 * unsubscribe stops the reader (joining it unless called from inside its
 * sink call), counts what cnats still buffers, and unsubscribes: the
 * server stops sending and those messages are dropped, counted in the log.
 */
#include <stdlib.h>

#include "nats_int.h"

enum { NATS_CORE_BATCH = 256, NATS_CORE_WAIT_MS = 100 };

/* Wait while paused; 0 to go on reading, -1 to stop. */
static int wait_resumed(nats_sub *s)
{
  pthread_mutex_lock(&s->mu);
  while (s->paused && !s->stop)
    pthread_cond_wait(&s->cv, &s->mu);
  int stop = s->stop;
  pthread_mutex_unlock(&s->mu);
  return stop ? -1 : 0;
}

/* Turn k messages into deliveries and hand them to the sink. */
static void deliver(nats_sub *s, natsMsg **msgs, size_t k)
{
  nats_broker *b = s->b;
  size_t n = 0;
  for (size_t i = 0; i < k; i++) {
    nats_dlv *d = swit__nats_dlv_get(s);
    const char *reject = NULL;
    if (!d || swit__nats_dlv_fill(b, d, msgs[i], &reject)) {
      NATS_LOG(b, SWIT_LOG_ERROR, "nats: out of memory receiving a message "
               "of '%s'; dropped", s->topic);
      atomic_fetch_add(&s->requeue_dropped, 1);
      if (d)
        swit__nats_dlv_put(s, d); /* destroys the message */
      else
        natsMsg_Destroy(msgs[i]);
      continue;
    }
    atomic_store(&d->out, 1);
    s->batch[n++] = (swit_delivery){ .msg = &d->view,
                                     .token = (uint64_t)(uintptr_t)d,
                                     .reject = reject };
  }
  if (!n)
    return;
  atomic_fetch_add(&s->inflight, (long long)n);
  s->sink(s->sink_ud, s->batch, n);
}

/* One message (waiting up to NATS_CORE_WAIT_MS), then what is buffered. */
static size_t read_batch(nats_sub *s, natsMsg **msgs)
{
  size_t k = 0;
  natsStatus st = natsSubscription_NextMsg(&msgs[0], s->ns, NATS_CORE_WAIT_MS);
  if (st == NATS_SLOW_CONSUMER) {
    swit__nats_slow_consumer(s->b, s->ns);
    st = natsSubscription_NextMsg(&msgs[0], s->ns, 0);
  }
  if (st != NATS_OK)
    return 0;
  for (k = 1; k < NATS_CORE_BATCH; k++)
    if (natsSubscription_NextMsg(&msgs[k], s->ns, 0) != NATS_OK)
      break;
  return k;
}

static void *reader_main(void *arg)
{
  nats_sub *s = arg;
  natsMsg *msgs[NATS_CORE_BATCH];
  while (wait_resumed(s) == 0) {
    size_t k = read_batch(s, msgs);
    if (k)
      deliver(s, msgs, k);
  }
  return NULL;
}

int swit__nats_core_subscribe(nats_broker *b, nats_sub *s, char *err,
                              size_t errlen)
{
  natsStatus st = natsConnection_QueueSubscribeSync(&s->ns, b->nc, s->topic,
                                                    s->group);
  if (st != NATS_OK)
    return swit__fail(err, errlen, SWIT_E_CONFIG, "subscribe '%s' "
                      "(queue group '%s'): %s", s->topic, s->group,
                      swit__nats_errtext(st));
  st = natsSubscription_SetPendingLimits(s->ns, (int)b->st.pending_msgs,
                                         (int)b->st.pending_bytes);
  if (st != NATS_OK)
    return swit__fail(err, errlen, SWIT_E_CONFIG, "messaging.broker."
                      "config.pending_msgs: %s", swit__nats_errtext(st));
  s->batch = calloc(NATS_CORE_BATCH, sizeof *s->batch);
  if (!s->batch)
    return swit__fail(err, errlen, SWIT_E_NOMEM, "out of memory");
  /* The server has the interest once it answered our PING. */
  if (swit__nats_is_connected(b) &&
      natsConnection_FlushTimeout(b->nc, b->confirm_timeout_ms) != NATS_OK)
    NATS_LOG(b, SWIT_LOG_WARN, "nats: subscription to '%s' not confirmed by "
             "the server yet", s->topic);
  if (pthread_create(&s->thread, NULL, reader_main, s))
    return swit__fail(err, errlen, SWIT_E_SYS, "subscribe '%s': cannot "
                      "start the reader thread", s->topic);
  s->thread_started = 1;
  return 0;
}

void swit__nats_core_set_paused(nats_sub *s, int paused)
{
  pthread_mutex_lock(&s->mu);
  s->paused = paused;
  if (!paused)
    pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

/* Stop the reader; 1 if it was joined (not our own thread). */
static int stop_reader(nats_sub *s);

void swit__nats_core_stop(nats_sub *s)
{
  stop_reader(s);
}

static int stop_reader(nats_sub *s)
{
  if (!s->thread_started)
    return 1;
  pthread_mutex_lock(&s->mu);
  s->stop = 1;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  if (pthread_equal(pthread_self(), s->thread))
    return 0; /* from inside our own sink call: joined later */
  pthread_join(s->thread, NULL);
  s->thread_started = 0;
  return 1;
}

void swit__nats_core_unsubscribe(nats_sub *s)
{
  nats_broker *b = s->b;
  int64_t dropped = 0;
  int buffered = 0;
  int joined = stop_reader(s);
  natsSubscription_GetDropped(s->ns, &dropped);
  if (joined)
    natsSubscription_GetPending(s->ns, &buffered, NULL);
  natsSubscription_Unsubscribe(s->ns);
  long long given_back = atomic_load(&s->requeue_dropped) + buffered;
  if (dropped || given_back)
    NATS_LOG(b, SWIT_LOG_WARN, "nats: core subscription '%s' (queue group "
             "'%s') closed: %lld message(s) dropped by the client as a slow "
             "consumer, %lld given back or arriving at shutdown are dropped "
             "(core NATS is at-most-once)", s->topic, s->group,
             (long long)dropped, given_back);
}

void swit__nats_core_settle(nats_sub *s, const swit_settle *st, size_t n)
{
  long long requeued = 0;
  for (size_t i = 0; i < n; i++)
    requeued += st[i].action == SWIT_SETTLE_REQUEUE;
  if (requeued && atomic_load(&s->dead)) { /* after its closing count */
    /* a stop gives back a worker's queue message by message: one line,
     * not one per message; sub_free logs the total */
    if (atomic_fetch_add(&s->late_dropped, requeued) == 0)
      NATS_LOG(s->b, SWIT_LOG_WARN, "nats: core subscription '%s' (queue "
               "group '%s'), closed: messages given back after it closed "
               "are dropped (core NATS is at-most-once); the total is "
               "logged when it is freed", s->topic, s->group);
  } else if (requeued)
    atomic_fetch_add(&s->requeue_dropped, requeued);
  swit__nats_dlv_put_settled(s, st, n);
  atomic_fetch_sub(&s->inflight, (long long)n);
}

void swit__nats_slow_consumer(nats_broker *b, natsSubscription *ns)
{
  nats_sub *s;
  pthread_mutex_lock(&b->mu);
  for (s = b->subs; s && s->ns != ns; s = s->next)
    ;
  pthread_mutex_unlock(&b->mu);
  int64_t now = swit__now_ms(), dropped = 0;
  if (!s) {
    NATS_LOG(b, SWIT_LOG_WARN, "nats: slow consumer on '%s': the client "
             "drops messages", natsSubscription_GetSubject(ns));
    return;
  }
  long long last = atomic_load(&s->last_warn_ms);
  if (last && now - last < 1000)
    return;
  atomic_store(&s->last_warn_ms, now);
  natsSubscription_GetDropped(ns, &dropped);
  NATS_LOG(b, SWIT_LOG_WARN, "nats: core subscription '%s' (queue group "
           "'%s') is a slow consumer: the client dropped %lld message(s) so "
           "far (pending_msgs %lld, pending_bytes %lld)", s->topic, s->group,
           (long long)dropped, (long long)b->st.pending_msgs,
           (long long)b->st.pending_bytes);
}
