/*
 * kafka_poll.c - a consumer group's poll thread: it polls the group's
 * consumer, delivers the messages to the sinks, applies backpressure and
 * commits periodically (kafka_offsets.c).
 *
 * The poll thread alone calls rd_kafka_consumer_poll on its handle, so
 * rebalance and commit callbacks run there (kafka_offsets.c). It takes up
 * to KAFKA_BATCH messages that are ready (one rd_kafka_consumer_poll each:
 * librdkafka 2.0.2's batch consume API can skip offsets around pause and
 * resume), registers them in their partitions' settle windows (under
 * g->mu), builds their views (key, headers, timestamp: pointers into the
 * rd_kafka_message_t, no copy; the record owns the message until settle)
 * and hands them to the sinks, one call per run of one subscription. A
 * message larger than max_message_size is delivered with a reject reason
 * (the core dead-letters it). Messages of partitions not owned any more
 * (revoked between poll and delivery) are dropped uncommitted. A
 * rebalance callback first delivers what was polled before it.
 *
 * Backpressure: pause/resume (kafka_group.c) record what the core wants;
 * the poll thread applies it with rd_kafka_pause_partitions/
 * resume_partitions on the subscription's owned partitions. Pausing in
 * librdkafka is costly (it drops what it prefetched for the partition,
 * fetched again at resume), so a pause reaches librdkafka only once it
 * has lasted KAFKA_PAUSE_DELAY_MS: shorter ones are absorbed by the
 * worker queues' slack, the sink blocking this thread when they are full.
 * The paused state survives rebalances (newly assigned partitions of a
 * paused subscription are paused); membership is kept, the poll thread
 * keeps polling while paused. After a resume the poll thread seeks the
 * partitions to their position (the next offset it would have polled):
 * librdkafka 2.0.2 otherwise restarts fetching a resumed partition only
 * on its fetcher's next 1 s wakeup. Both happen on this thread, so no
 * message is polled between the resume and the seek.
 *
 * Message records come in slabs of KAFKA_SLAB, recycled through
 * g->free_msgs: the steady state allocates nothing per message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_int.h"

static _Thread_local kgroup *tl_poll_group; /* set on poll threads */

int swit__kafka_on_poll_thread(const kgroup *g)
{
  return tl_poll_group == g;
}

/* ---------------------------------------------------------------------
 * Message records */

/* A free record; records come in slabs and go back to g->free_msgs at
 * settle (g->mu held). */
static kmsg *rec_alloc(kgroup *g)
{
  kmsg *r = g->free_msgs, *slab;
  if (r) {
    g->free_msgs = r->next_free;
    return r;
  }
  if (g->nslabs == g->slabs_cap) {
    size_t cap = g->slabs_cap ? g->slabs_cap * 2 : 16;
    kmsg **v = realloc(g->slabs, cap * sizeof *v);
    if (!v)
      return NULL;
    g->slabs = v;
    g->slabs_cap = cap;
  }
  if (!(slab = calloc(KAFKA_SLAB, sizeof *slab)))
    return NULL;
  g->slabs[g->nslabs++] = slab;
  for (size_t i = 0; i < KAFKA_SLAB; i++) {
    slab[i].hdrs = slab[i].inline_hdrs;
    slab[i].hcap = KAFKA_INLINE_HEADERS;
    if (i > 0) {
      slab[i].next_free = g->free_msgs;
      g->free_msgs = &slab[i];
    }
  }
  return &slab[0];
}

/* Free every record; one never settled still holds its message and a
 * count on its partition (freed here if it was revoked meanwhile). */
void swit__kafka_recs_free(kgroup *g)
{
  for (size_t s = 0; s < g->nslabs; s++) {
    for (size_t i = 0; i < KAFKA_SLAB; i++) {
      kmsg *r = &g->slabs[s][i];
      if (r->rkm) {
        rd_kafka_message_destroy(r->rkm);
        if (--r->part->inflight == 0 && !r->part->owned)
          swit__kafka_part_free(r->part);
      }
      if (r->hdrs != r->inline_hdrs)
        free(r->hdrs);
    }
    free(g->slabs[s]);
  }
  free(g->slabs);
  g->slabs = NULL;
  g->nslabs = g->slabs_cap = 0;
}

/* ---------------------------------------------------------------------
 * Delivery (poll thread) */

static ksub *sub_of(kgroup *g, rd_kafka_topic_t *rkt)
{
  for (ksub *s = g->subs; s; s = s->next) {
    if (s->rkt == rkt)
      return s;
    if (!s->rkt && !strcmp(s->topic, rd_kafka_topic_name(rkt))) {
      s->rkt = rkt;
      return s;
    }
  }
  return NULL;
}

/* Register the pending messages; g->mu held. Returns how many are kept
 * (in g->recs), dropping the rest into `drop`. */
static size_t register_pending(kgroup *g, rd_kafka_message_t **drop,
                               size_t *ndrop)
{
  size_t n = 0;
  for (size_t i = 0; i < g->npending; i++) {
    rd_kafka_message_t *m = g->pending[i];
    ksub *s = sub_of(g, m->rkt);
    kpart *p = s && !s->dead && m->partition < s->nparts
                   ? s->parts[m->partition] : NULL;
    kmsg *r = NULL;
    uint64_t seq;
    if (!p || p->revoking) {
      drop[(*ndrop)++] = m; /* not ours any more: uncommitted */
      continue;
    }
    if (!(r = rec_alloc(g)) || swit__kafka_window_push(p, m->offset, &seq)) {
      /* Out of memory: drop it, and never commit past it (the partition's
       * next owner, or this process after a restart, consumes it). */
      if (p->hold < 0 || m->offset < p->hold)
        p->hold = m->offset;
      if (r) {
        r->next_free = g->free_msgs;
        g->free_msgs = r;
      }
      drop[(*ndrop)++] = m;
      continue;
    }
    r->rkm = m; /* owned by the record until settle */
    r->part = p;
    r->seq = seq;
    p->inflight++;
    g->inflight++;
    g->recs[n++] = r;
  }
  return n;
}

static void fill_headers(kmsg *r)
{
  rd_kafka_headers_t *h;
  const char *name;
  const void *val;
  size_t size, cnt;

  r->view.nheaders = 0;
  r->view.headers = NULL;
  if (rd_kafka_message_headers(r->rkm, &h) || !(cnt = rd_kafka_header_cnt(h)))
    return;
  if (cnt > r->hcap) {
    swit_header *v = malloc(cnt * sizeof *v);
    if (!v)
      return; /* delivered without headers rather than lost */
    if (r->hdrs != r->inline_hdrs)
      free(r->hdrs);
    r->hdrs = v;
    r->hcap = (uint32_t)cnt;
  }
  for (size_t i = 0; !rd_kafka_header_get_all(h, i, &name, &val, &size); i++)
    r->hdrs[i] = (swit_header){name, val ? val : "", /* null value: "" */
                               (uint32_t)strlen(name), (uint32_t)size};
  r->view.headers = r->hdrs;
  r->view.nheaders = (uint32_t)cnt;
}

static void fill_view(kgroup *g, kmsg *r)
{
  const rd_kafka_message_t *m = r->rkm;
  rd_kafka_timestamp_type_t tstype;
  int64_t ts = rd_kafka_message_timestamp(m, &tstype);
  ksub *s = r->part->sub;
  int64_t max = g->b->max_message_size;

  r->view.topic = s->topic;
  r->view.topic_len = s->topic_len;
  r->view.key = m->key;
  r->view.key_len = (uint32_t)m->key_len;
  r->view.payload = m->payload;
  r->view.payload_len = m->len;
  r->view.partition = m->partition;
  r->view.timestamp_ms = ts > 0 ? ts : 0;
  fill_headers(r);
  r->reject = swit__msg_oversize(&r->view, max, r->reject_buf,
                                 sizeof r->reject_buf);
}

/* Call the sinks: one call per run of messages of one subscription. */
static void run_sinks(kgroup *g, size_t n)
{
  size_t i = 0;
  while (i < n) {
    ksub *s = g->recs[i]->part->sub;
    size_t j = i;
    for (; j < n && g->recs[j]->part->sub == s; j++)
      g->deliveries[j] = (swit_delivery){.msg = &g->recs[j]->view,
                                         .token = (uint64_t)(uintptr_t)g->recs[j],
                                         .reject = g->recs[j]->reject};
    s->sink(s->sink_ud, &g->deliveries[i], j - i);
    i = j;
  }
}

void swit__kafka_deliver_pending(kgroup *g)
{
  rd_kafka_message_t *drop[KAFKA_BATCH];
  size_t ndrop = 0, n;

  if (!g->npending)
    return;
  pthread_mutex_lock(&g->mu);
  n = register_pending(g, drop, &ndrop);
  g->sinking = n > 0;
  pthread_mutex_unlock(&g->mu);
  g->npending = 0;
  for (size_t i = 0; i < ndrop; i++)
    rd_kafka_message_destroy(drop[i]);
  if (!n)
    return;
  for (size_t i = 0; i < n; i++)
    fill_view(g, g->recs[i]);
  run_sinks(g, n);
  pthread_mutex_lock(&g->mu);
  g->sinking = 0;
  if (g->waiters)
    pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
}

/* A consumer error or event: log it and drop it. */
static void consumer_event(kgroup *g, rd_kafka_message_t *m)
{
  if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
    KAFKA_LOG(g->b, SWIT_LOG_WARN, "kafka: group '%s': %s%s%s",
              g->name, m->rkt ? rd_kafka_topic_name(m->rkt) : "",
              m->rkt ? ": " : "", rd_kafka_message_errstr(m));
  rd_kafka_message_destroy(m);
}

static void poll_once(kgroup *g)
{
  rd_kafka_message_t *m = rd_kafka_consumer_poll(g->rk, KAFKA_POLL_MS);
  while (m) {
    if (m->err)
      consumer_event(g, m);
    else
      g->pending[g->npending++] = m;
    if (g->npending == KAFKA_BATCH)
      break;
    m = rd_kafka_consumer_poll(g->rk, 0);
  }
  swit__kafka_deliver_pending(g);
}

/* ---------------------------------------------------------------------
 * Backpressure (poll thread) */

/* The owned partitions of s that are not being revoked; g->mu held. */
static rd_kafka_topic_partition_list_t *owned_parts(ksub *s)
{
  rd_kafka_topic_partition_list_t *l =
      rd_kafka_topic_partition_list_new(s->nparts > 0 ? s->nparts : 1);
  for (int32_t i = 0; i < s->nparts; i++)
    if (s->parts[i] && !s->parts[i]->revoking)
      rd_kafka_topic_partition_list_add(l, s->topic, i);
  return l;
}

/* Resume l and seek it to where polling stopped (see the top). */
static void resume_parts(kgroup *g, rd_kafka_topic_partition_list_t *l)
{
  rd_kafka_topic_partition_list_t *pos;
  rd_kafka_error_t *error;

  rd_kafka_resume_partitions(g->rk, l);
  pos = rd_kafka_topic_partition_list_new(l->cnt);
  rd_kafka_position(g->rk, l);
  for (int i = 0; i < l->cnt; i++)
    if (l->elems[i].offset >= 0)
      rd_kafka_topic_partition_list_add(pos, l->elems[i].topic,
                                        l->elems[i].partition)
          ->offset = l->elems[i].offset;
  if (pos->cnt && (error = rd_kafka_seek_partitions(g->rk, pos, 0)))
    rd_kafka_error_destroy(error);
  rd_kafka_topic_partition_list_destroy(pos);
}

/* Bring librdkafka's pause state of every sub to what the core wants:
 * resumes at once, pauses once they have lasted KAFKA_PAUSE_DELAY_MS.
 * Poll thread, g->mu held. */
static void apply_pauses(kgroup *g)
{
  int64_t now = swit__now_ms();

  g->pause_dirty = 0;
  for (ksub *s = g->subs; s; s = s->next) {
    if (s->applied == s->paused || s->dead)
      continue;
    if (s->paused && now - s->pause_at < KAFKA_PAUSE_DELAY_MS) {
      g->pause_dirty = 1; /* look again later */
      continue;
    }
    rd_kafka_topic_partition_list_t *l = owned_parts(s);
    s->applied = s->paused;
    g->pauses += s->paused;
    if (l->cnt && s->paused)
      rd_kafka_pause_partitions(g->rk, l);
    else if (l->cnt)
      resume_parts(g, l);
    rd_kafka_topic_partition_list_destroy(l);
  }
}

static void apply_pending_pauses(kgroup *g)
{
  pthread_mutex_lock(&g->mu);
  if (g->pause_dirty)
    apply_pauses(g);
  pthread_mutex_unlock(&g->mu);
}

/* ---------------------------------------------------------------------
 * The loop */

static int resubscribe_due(kgroup *g, int64_t now)
{
  pthread_mutex_lock(&g->mu);
  int due = g->resub_at && now >= g->resub_at;
  pthread_mutex_unlock(&g->mu);
  return due;
}

void *swit__kafka_poll_main(void *arg)
{
  kgroup *g = arg;

  tl_poll_group = g;
  g->next_commit_ms = swit__now_ms() + g->b->conf.commit_interval_ms;
  while (!atomic_load(&g->stop)) {
    apply_pending_pauses(g);
    poll_once(g);
    int64_t now = swit__now_ms();
    if (resubscribe_due(g, now))
      swit__kafka_group_resubscribe(g, NULL, 0); /* revokes removed topics */
    if (now >= g->next_commit_ms) {
      swit__kafka_commit(g, 1);
      g->next_commit_ms = now + g->b->conf.commit_interval_ms;
    }
  }
  swit__kafka_commit(g, 0);
  /* Revokes the assignment through the rebalance callback: waits for
   * what is in flight, commits, leaves the group. */
  rd_kafka_consumer_close(g->rk);
  return NULL;
}

