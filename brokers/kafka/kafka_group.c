/*
 * kafka_group.c - consumer groups: their lifecycle, and the subscribe,
 * unsubscribe, pause and resume ops.
 *
 * One rd_kafka_t consumer per group: the subscriptions of one group share
 * it (rd_kafka_subscribe with their topic list), and one poll thread
 * serves it (kafka_poll.c). A subscription's group is the handler's
 * (spec->group); when messaging.broker.config.consumer_group is set, a
 * spec->group equal to server.name (what the core passes when the handler
 * names no group) is replaced by it. subscribe returns once the group's
 * assignment includes the topic (or after subscribe_timeout, with a
 * warning: the subscription stays and is served when the group is
 * assigned). unsubscribe stops deliveries to the subscription at once;
 * the last one of a group closes it (commit, leave), an earlier one has
 * the poll thread resubscribe without the topic KAFKA_RESUBSCRIBE_DELAY_MS
 * later, so a stop that removes every subscription costs no rebalance.
 * pause and resume record what the core wants; the poll thread applies
 * it.
 *
 * Threads: the ops run on the host's threads (pause and resume also on
 * the poll thread, from inside a sink); b->groups_mu serialises subscribe
 * and unsubscribe, g->mu guards what the poll thread shares.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kafka_int.h"

enum { GS_MU = 1, GS_CV = 2 };

/* ---------------------------------------------------------------------
 * Groups */

static void group_free(kgroup *g)
{
  if (!g)
    return;
  swit__kafka_recs_free(g);
  if (g->queue)
    rd_kafka_queue_destroy(g->queue);
  if (g->rk)
    rd_kafka_destroy(g->rk);
  while (g->subs) {
    ksub *s = g->subs;
    g->subs = s->next;
    for (int32_t i = 0; i < s->nparts; i++)
      swit__kafka_part_free(s->parts[i]);
    free(s->parts);
    free(s->topic);
    free(s);
  }
  if (g->sync & GS_MU)
    pthread_mutex_destroy(&g->mu);
  if (g->sync & GS_CV)
    pthread_cond_destroy(&g->cv);
  free(g->name);
  free(g);
}

static int group_consumer(kgroup *g, char *err, size_t errlen)
{
  char text[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_dup(g->b->conf.consumer);

  if (!conf)
    return swit__fail(err, errlen, SWIT_E_NOMEM, "out of memory");
  if (rd_kafka_conf_set(conf, "group.id", g->name, text, sizeof text) ||
      (g->from != SWIT_FROM_DEFAULT &&
       rd_kafka_conf_set(conf, "auto.offset.reset",
                         g->from == SWIT_FROM_LATEST ? "latest" : "earliest",
                         text, sizeof text))) {
    rd_kafka_conf_destroy(conf);
    return swit__fail(err, errlen, SWIT_E_CONFIG, "group '%s': %s",
                      g->name, text);
  }
  rd_kafka_conf_set_opaque(conf, g);
  rd_kafka_conf_set_rebalance_cb(conf, swit__kafka_rebalance_cb);
  rd_kafka_conf_set_offset_commit_cb(conf, swit__kafka_commit_cb);
  swit__kafka_conf_callbacks(conf, 0);
  if (!(g->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, text, sizeof text))) {
    rd_kafka_conf_destroy(conf);
    return swit__kafka_new_fail(text, err, errlen);
  }
  conf = NULL; /* owned by the consumer now */
  rd_kafka_poll_set_consumer(g->rk);
  g->queue = rd_kafka_queue_get_consumer(g->rk);
  return 0;
}

static int group_new(kbroker *b, const char *name, int from, kgroup **out,
                     char *err, size_t errlen)
{
  kgroup *g = calloc(1, sizeof *g);
  int rc = SWIT_E_NOMEM, e;

  if (!g || !(g->name = strdup(name))) {
    swit__fail(err, errlen, rc, "out of memory");
    goto fail;
  }
  g->b = b;
  g->from = from;
  rc = SWIT_E_SYS;
  if (pthread_mutex_init(&g->mu, NULL)) {
    swit__fail(err, errlen, rc, "cannot create a lock");
    goto fail;
  }
  g->sync |= GS_MU;
  if (swit__cond_init_monotonic(&g->cv)) {
    swit__fail(err, errlen, rc, "cannot create a condition");
    goto fail;
  }
  g->sync |= GS_CV;
  if ((rc = group_consumer(g, err, errlen)))
    goto fail;
  if ((e = pthread_create(&g->thread, NULL, swit__kafka_poll_main, g))) {
    rc = swit__fail(err, errlen, SWIT_E_SYS, "cannot start the poll "
                    "thread of group '%s': %s", name, strerror(e));
    goto fail;
  }
  g->thread_started = 1;
  *out = g;
  return 0;
fail:
  group_free(g);
  return rc;
}

/* Stop the poll thread: it commits, closes the consumer and exits. No
 * sink call starts after this returns. */
static void group_stop(kgroup *g)
{
  pthread_mutex_lock(&g->mu);
  g->closed = 1;
  for (ksub *s = g->subs; s; s = s->next)
    s->dead = 1;
  pthread_mutex_unlock(&g->mu);
  if (!g->thread_started)
    return;
  atomic_store(&g->stop, 1);
  rd_kafka_queue_yield(g->queue);
  pthread_join(g->thread, NULL);
  g->thread_started = 0;
  pthread_mutex_lock(&g->mu);
  uint64_t pauses = g->pauses;
  pthread_mutex_unlock(&g->mu);
  KAFKA_LOG(g->b, SWIT_LOG_INFO, "kafka: group '%s': left the group (paused "
            "%llu time(s) for backpressure)", g->name,
            (unsigned long long)pauses);
}

/* The open group of that name (a closed one is never reused). */
static kgroup *group_find(kbroker *b, const char *name)
{
  for (kgroup *g = b->groups; g; g = g->next)
    if (!strcmp(g->name, name) && !g->closed)
      return g;
  return NULL;
}

/* Subscribe the group's consumer to the topics of its live subs. Under
 * g->mu, so that the poll thread's deferred resubscribe and a subscribe
 * op cannot overtake each other (rd_kafka_subscribe never waits for our
 * callbacks). */
int swit__kafka_group_resubscribe(kgroup *g, char *err, size_t errlen)
{
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
  rd_kafka_resp_err_t e;

  pthread_mutex_lock(&g->mu);
  for (ksub *s = g->subs; s; s = s->next)
    if (!s->dead)
      rd_kafka_topic_partition_list_add(l, s->topic, RD_KAFKA_PARTITION_UA);
  g->resub_at = 0;
  e = rd_kafka_subscribe(g->rk, l);
  pthread_mutex_unlock(&g->mu);
  rd_kafka_topic_partition_list_destroy(l);
  if (e)
    return swit__fail(err, errlen, SWIT_E_CONFIG, "group '%s': "
                      "subscribe: %s", g->name, rd_kafka_err2str(e));
  return 0;
}

void swit__kafka_groups_close(kbroker *b)
{
  for (kgroup *g = b->groups; g; g = g->next) {
    group_stop(g);
    if (g->inflight)
      KAFKA_LOG(b, SWIT_LOG_WARN, "kafka: group '%s': %llu message(s) were "
                "never settled", g->name, (unsigned long long)g->inflight);
  }
}

void swit__kafka_groups_free(kbroker *b)
{
  while (b->groups) {
    kgroup *g = b->groups;
    b->groups = g->next;
    group_stop(g);
    group_free(g);
  }
}

/* ---------------------------------------------------------------------
 * The subscription ops */

static const char *group_for(kbroker *b, const swit_sub_spec *spec)
{
  const char *server = b->env.server_name;
  if (b->conf.default_group &&
      (!spec->group || !*spec->group || !strcmp(spec->group, server)))
    return b->conf.default_group;
  return spec->group && *spec->group ? spec->group : server;
}

static void sleep_until_cv(kgroup *g, int64_t wait_ms)
{
  g->waiters++;
  swit__cond_wait_until(&g->cv, &g->mu, swit__deadline_in(wait_ms));
  g->waiters--;
}

/* Wait until the group's assignment covers s (bounded; logs meanwhile). */
static void wait_active(kgroup *g, ksub *s)
{
  int64_t start = swit__now_ms(), next_log = start + 5000;
  swit__deadline end = swit__deadline_in(g->b->conf.subscribe_timeout_ms);

  if (swit__kafka_on_poll_thread(g))
    return; /* the poll thread would wait for itself */
  pthread_mutex_lock(&g->mu);
  while (!s->active) {
    int64_t now = swit__now_ms(), left = swit__deadline_remaining_ms(end);
    if (left == 0)
      break;
    if (now >= next_log) {
      KAFKA_LOG(g->b, SWIT_LOG_INFO, "kafka: group '%s': still waiting for "
                "the assignment of '%s' (%lld s)", g->name, s->topic,
                (long long)((now - start) / 1000));
      next_log = now + 5000;
    }
    sleep_until_cv(g, left < next_log - now ? left : next_log - now);
  }
  int active = s->active;
  pthread_mutex_unlock(&g->mu);
  if (!active)
    KAFKA_LOG(g->b, SWIT_LOG_WARN, "kafka: group '%s': no assignment for "
              "'%s' after subscribe_timeout (%lld ms); going on, its messages "
              "are delivered once the group is assigned", g->name, s->topic,
              (long long)g->b->conf.subscribe_timeout_ms);
}

static ksub *sub_new(kgroup *g, const swit_sub_spec *spec, swit_sink_fn sink,
                     void *sink_ud)
{
  ksub *s = calloc(1, sizeof *s);
  if (!s || !(s->topic = strdup(spec->topic))) {
    free(s);
    return NULL;
  }
  s->g = g;
  s->topic_len = (uint32_t)strlen(s->topic);
  s->sink = sink;
  s->sink_ud = sink_ud;
  s->eos = spec->exactly_once; /* offsets commit in transactions */
  return s;
}

int swit__kafka_subscribe(kbroker *b, const swit_sub_spec *spec,
                          swit_sink_fn sink, void *sink_ud, void **handle,
                          char *err, size_t errlen)
{
  kgroup *g = NULL;
  ksub *s;
  int rc = 0;

  if (!b || !spec || !spec->topic || !*spec->topic || !sink || !handle)
    return swit__fail(err, errlen, SWIT_E_INVAL, "subscribe: topic, "
                      "sink and handle are required");
  pthread_mutex_lock(&b->groups_mu);
  if (!b->connected) {
    rc = swit__fail(err, errlen, SWIT_E_STATE, "subscribe '%s': "
                    "kafka is not connected", spec->topic);
    goto done;
  }
  const char *name = group_for(b, spec);
  if (!(g = group_find(b, name))) {
    if ((rc = group_new(b, name, spec->from, &g, err, errlen)))
      goto done;
    g->next = b->groups;
    b->groups = g;
  } else if (spec->from != SWIT_FROM_DEFAULT && spec->from != g->from) {
    /* one consumer per group: one auto.offset.reset */
    rc = swit__fail(err, errlen, SWIT_E_CONFIG, "subscribe '%s': group "
                    "'%s' already starts %s: its subscriptions share one "
                    "start", spec->topic, g->name,
                    g->from == SWIT_FROM_LATEST ? "at the latest message"
                    : g->from == SWIT_FROM_BEGINNING ? "at the beginning"
                    : "where messaging.broker.config says");
    goto done;
  }
  if (!(s = sub_new(g, spec, sink, sink_ud))) {
    rc = swit__fail(err, errlen, SWIT_E_NOMEM, "out of memory");
    goto done;
  }
  pthread_mutex_lock(&g->mu);
  s->next = g->subs;
  g->subs = s;
  pthread_mutex_unlock(&g->mu);
  *handle = s; /* before any delivery to it can start */
  if ((rc = swit__kafka_group_resubscribe(g, err, errlen))) {
    pthread_mutex_lock(&g->mu);
    s->dead = 1;
    pthread_mutex_unlock(&g->mu);
    *handle = NULL;
    goto done;
  }
  KAFKA_LOG(b, SWIT_LOG_INFO, "kafka: group '%s': subscribed to '%s', "
            "waiting for the assignment", g->name, s->topic);
  wait_active(g, s);
done:
  pthread_mutex_unlock(&b->groups_mu);
  return rc;
}

int swit__kafka_unsubscribe(kbroker *b, void *handle)
{
  ksub *s = handle;
  int live = 0, rc = 0;

  if (!b || !s)
    return SWIT_E_INVAL;
  kgroup *g = s->g;
  if (swit__kafka_on_poll_thread(g))
    return SWIT_E_STATE; /* would wait for itself */
  pthread_mutex_lock(&b->groups_mu);
  pthread_mutex_lock(&g->mu);
  if (s->dead) {
    pthread_mutex_unlock(&g->mu);
    pthread_mutex_unlock(&b->groups_mu);
    return SWIT_E_STATE;
  }
  s->dead = 1; /* the poll thread delivers nothing more to it */
  while (g->sinking) {
    g->waiters++;
    pthread_cond_wait(&g->cv, &g->mu);
    g->waiters--;
  }
  for (ksub *o = g->subs; o; o = o->next)
    live += !o->dead;
  pthread_mutex_unlock(&g->mu);
  if (live) {
    /* The poll thread resubscribes without s a little later: when every
     * subscription goes (a stop), the group just closes, without one
     * rebalance per topic. Until then s's messages are dropped
     * uncommitted. */
    pthread_mutex_lock(&g->mu);
    g->resub_at = swit__now_ms() + KAFKA_RESUBSCRIBE_DELAY_MS;
    pthread_mutex_unlock(&g->mu);
  } else {
    group_stop(g); /* commits, closes the consumer */
  }
  pthread_mutex_unlock(&b->groups_mu);
  return rc;
}

int swit__kafka_pause(kbroker *b, void *handle, int pause)
{
  ksub *s = handle;

  if (!b || !s)
    return SWIT_E_INVAL;
  kgroup *g = s->g;
  pthread_mutex_lock(&g->mu);
  if (s->dead || g->closed) {
    pthread_mutex_unlock(&g->mu);
    return SWIT_E_STATE;
  }
  if (pause && !s->paused)
    s->pause_at = swit__now_ms();
  s->paused = pause;
  g->pause_dirty = 1;
  if (!pause && s->applied && !swit__kafka_on_poll_thread(g))
    rd_kafka_queue_yield(g->queue); /* the poll thread resumes it */
  pthread_mutex_unlock(&g->mu);
  return 0;
}
