/*
 * kafka_offsets.c - what a group commits, and when: the settle windows of
 * its partitions, settle, commits and the rebalance callback.
 *
 * The commit rule: a partition commits the highest *contiguous* settled
 * offset + 1. Its window lists the delivered messages in offset order;
 * a settle marks one done, and the frontier advances over the done
 * messages at the head only. Messages finishing out of order (different
 * keys of one partition run on different workers) therefore never move
 * the commit past one still running. A message given back with REQUEUE
 * (the host does this at shutdown) sets a hold: commits never pass its
 * offset, so it is consumed again after a restart or a rebalance.
 *
 * Commits run on the group's poll thread: asynchronously every
 * auto.commit.interval.ms, synchronously on revoke and close. Only owned
 * partitions are committed. On revoke the poll thread stops delivering
 * the revoked partitions, waits (up to revoke_timeout) for their
 * messages in flight, commits them and releases them; a message settled
 * after that is only destroyed. Eager and cooperative rebalancing are
 * both handled (rd_kafka_rebalance_protocol).
 *
 * Locks: everything here runs under g->mu, which settle (worker threads)
 * and the poll thread share; rd_kafka_message_destroy runs after it is
 * released. The revoke wait releases it while it sleeps.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kafka_int.h"

#define KW_START 256 /* first window capacity */

/* ---------------------------------------------------------------------
 * Windows */

static int window_grow(kwindow *w)
{
  uint64_t cap = w->mask ? (w->mask + 1) * 2 : KW_START;
  int64_t *off = malloc(cap * sizeof *off);
  uint8_t *st = malloc(cap);
  if (!off || !st) {
    free(off);
    free(st);
    return SWIT_E_NOMEM;
  }
  for (uint64_t s = w->head; s < w->tail; s++) {
    off[s & (cap - 1)] = w->off[s & w->mask];
    st[s & (cap - 1)] = w->state[s & w->mask];
  }
  free(w->off);
  free(w->state);
  w->off = off;
  w->state = st;
  w->mask = cap - 1;
  return 0;
}

int swit__kafka_window_push(kpart *p, int64_t offset, uint64_t *seq)
{
  kwindow *w = &p->win;
  if ((!w->off || w->tail - w->head > w->mask) && window_grow(w))
    return SWIT_E_NOMEM;
  *seq = w->tail++;
  w->off[*seq & w->mask] = offset;
  w->state[*seq & w->mask] = KW_OPEN;
  return 0;
}

/* Mark one sequence settled and advance the frontier over the head. */
static void window_settle(kpart *p, uint64_t seq, int held)
{
  kwindow *w = &p->win;
  w->state[seq & w->mask] = held ? KW_HELD : KW_DONE;
  while (w->head < w->tail && (w->state[w->head & w->mask] == KW_DONE ||
                               w->state[w->head & w->mask] == KW_HELD)) {
    int64_t off = w->off[w->head & w->mask];
    if (w->state[w->head & w->mask] == KW_HELD && (p->hold < 0 || off < p->hold))
      p->hold = off;
    p->frontier = off + 1;
    w->head++;
  }
}

/* The offset to commit now, or -1 for nothing new. */
static int64_t commit_point(const kpart *p)
{
  int64_t at = p->frontier;
  if (p->hold >= 0 && (at < 0 || p->hold < at))
    at = p->hold;
  return at > p->committed ? at : -1;
}

void swit__kafka_txn_mark(kmsg *r, int on)
{
  kpart *p = r->part;
  uint8_t *st;
  if (!p->owned)
    return;
  st = &p->win.state[r->seq & p->win.mask];
  if (on && *st == KW_OPEN)
    *st = KW_TXN;
  else if (!on && *st == KW_TXN)
    *st = KW_OPEN;
}

/* commit_point as if the KW_TXN messages were done. */
int64_t swit__kafka_txn_point(const kpart *p)
{
  const kwindow *w = &p->win;
  int64_t at = p->frontier, hold = p->hold;
  for (uint64_t s = w->head; s < w->tail && w->state[s & w->mask] != KW_OPEN;
       s++) {
    int64_t off = w->off[s & w->mask];
    if (w->state[s & w->mask] == KW_HELD && (hold < 0 || off < hold))
      hold = off;
    at = off + 1;
  }
  if (hold >= 0 && (at < 0 || hold < at))
    at = hold;
  return at > p->committed ? at : -1;
}

void swit__kafka_part_free(kpart *p)
{
  if (!p)
    return;
  free(p->win.off);
  free(p->win.state);
  free(p);
}

/* ---------------------------------------------------------------------
 * Settle (worker threads) */

#define SETTLE_CHUNK 128

static void release_msg(kgroup *g, kmsg *r)
{
  kpart *p = r->part;
  p->inflight--;
  g->inflight--;
  if (!p->owned && !p->inflight)
    swit__kafka_part_free(p); /* revoked earlier: last one out */
  r->part = NULL;
  r->rkm = NULL;
  r->next_free = g->free_msgs;
  g->free_msgs = r;
}

int swit__kafka_settle(kbroker *b, void *handle, const swit_settle *s,
                       size_t n)
{
  ksub *sub = handle;
  rd_kafka_message_t *done[SETTLE_CHUNK];

  if (!b || !sub || (n && !s))
    return SWIT_E_INVAL;
  kgroup *g = sub->g;
  while (n) {
    size_t k = n < SETTLE_CHUNK ? n : SETTLE_CHUNK;
    pthread_mutex_lock(&g->mu);
    for (size_t i = 0; i < k; i++) {
      kmsg *r = (kmsg *)(uintptr_t)s[i].token;
      if (r->part->owned)
        window_settle(r->part, r->seq, s[i].action == SWIT_SETTLE_REQUEUE);
      done[i] = r->rkm;
      release_msg(g, r);
    }
    if (g->waiters)
      pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    for (size_t i = 0; i < k; i++)
      rd_kafka_message_destroy(done[i]);
    s += k;
    n -= k;
  }
  return 0;
}

/* ---------------------------------------------------------------------
 * Commits (poll thread) */

/* Add p's commit point to `list` (created on first use); g->mu held. */
static void commit_add(rd_kafka_topic_partition_list_t **list, kpart *p)
{
  int64_t at = p->sub->eos ? -1 : commit_point(p); /* eos: in transactions */
  if (at < 0)
    return;
  if (!*list)
    *list = rd_kafka_topic_partition_list_new(16);
  rd_kafka_topic_partition_list_add(*list, p->sub->topic, p->partition)
      ->offset = at;
  p->committed = at;
}

static void commit_send(kgroup *g, rd_kafka_topic_partition_list_t *list,
                        int async)
{
  rd_kafka_resp_err_t e;
  if (!list)
    return;
  e = rd_kafka_commit(g->rk, list, async);
  if (e && !async)
    KAFKA_LOG(g->b, SWIT_LOG_WARN, "kafka: group '%s': commit of %d "
              "partition(s) failed: %s", g->name, list->cnt,
              rd_kafka_err2str(e));
  rd_kafka_topic_partition_list_destroy(list);
}

void swit__kafka_commit(kgroup *g, int async)
{
  rd_kafka_topic_partition_list_t *list = NULL;

  pthread_mutex_lock(&g->mu);
  for (ksub *s = g->subs; s; s = s->next)
    for (int32_t i = 0; i < s->nparts; i++)
      if (s->parts[i] && !s->parts[i]->revoking)
        commit_add(&list, s->parts[i]);
  pthread_mutex_unlock(&g->mu);
  commit_send(g, list, async);
}

void swit__kafka_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t *offsets,
                           void *opaque)
{
  kgroup *g = opaque;
  (void)rk;
  if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
    KAFKA_LOG(g->b, SWIT_LOG_WARN, "kafka: group '%s': commit of %d "
              "partition(s) failed: %s (the next commit carries them)",
              g->name, offsets ? offsets->cnt : 0, rd_kafka_err2str(err));
  if (!err || err == RD_KAFKA_RESP_ERR__NO_OFFSET || !offsets)
    return;
  /* Send these again with the next commit. */
  pthread_mutex_lock(&g->mu);
  for (ksub *s = g->subs; s; s = s->next)
    for (int32_t i = 0; i < s->nparts; i++)
      if (s->parts[i])
        s->parts[i]->committed = -1;
  pthread_mutex_unlock(&g->mu);
}

/* ---------------------------------------------------------------------
 * Rebalance (poll thread, inside rd_kafka_consumer_poll) */

static ksub *sub_named(kgroup *g, const char *topic)
{
  for (ksub *s = g->subs; s; s = s->next)
    if (!s->dead && !strcmp(s->topic, topic))
      return s;
  return NULL;
}

static kpart *part_of(kgroup *g, const char *topic, int32_t partition)
{
  for (ksub *s = g->subs; s; s = s->next)
    if (!strcmp(s->topic, topic) && partition < s->nparts &&
        s->parts[partition])
      return s->parts[partition];
  return NULL;
}

static int part_slot(ksub *s, int32_t partition)
{
  if (partition < s->nparts)
    return 0;
  int32_t n = partition + 1 > s->nparts * 2 ? partition + 1 : s->nparts * 2;
  kpart **v = realloc(s->parts, (size_t)n * sizeof *v);
  if (!v)
    return SWIT_E_NOMEM;
  memset(v + s->nparts, 0, (size_t)(n - s->nparts) * sizeof *v);
  s->parts = v;
  s->nparts = n;
  return 0;
}

/* Create the partition state of each assigned partition; collect those
 * of paused subscriptions into `pause`. g->mu held. */
static void track_assigned(kgroup *g, rd_kafka_topic_partition_list_t *parts,
                           rd_kafka_topic_partition_list_t *pause)
{
  for (int i = 0; i < parts->cnt; i++) {
    const rd_kafka_topic_partition_t *tp = &parts->elems[i];
    ksub *s = sub_named(g, tp->topic);
    kpart *p;
    if (!s || part_slot(s, tp->partition) || !(p = calloc(1, sizeof *p))) {
      KAFKA_LOG(g->b, SWIT_LOG_ERROR, "kafka: group '%s': cannot track "
                "%s [%d]; its messages will not be delivered", g->name,
                tp->topic, (int)tp->partition);
      continue;
    }
    *p = (kpart){.sub = s, .partition = tp->partition, .owned = 1,
                 .frontier = -1, .hold = -1, .committed = -1};
    swit__kafka_part_free(s->parts[tp->partition]); /* none expected */
    s->parts[tp->partition] = p;
    if (s->applied)
      rd_kafka_topic_partition_list_add(pause, tp->topic, tp->partition);
  }
}

static void mark_active(kgroup *g)
{
  rd_kafka_topic_partition_list_t *sub = NULL;
  if (rd_kafka_subscription(g->rk, &sub) || !sub)
    return;
  for (int i = 0; i < sub->cnt; i++) {
    ksub *s = sub_named(g, sub->elems[i].topic);
    if (s)
      s->active = 1;
  }
  rd_kafka_topic_partition_list_destroy(sub);
}

static void on_assign(kgroup *g, rd_kafka_topic_partition_list_t *parts)
{
  rd_kafka_topic_partition_list_t *pause =
      rd_kafka_topic_partition_list_new(parts->cnt ? parts->cnt : 1);
  rd_kafka_error_t *error = NULL;
  rd_kafka_resp_err_t e = 0;

  pthread_mutex_lock(&g->mu);
  track_assigned(g, parts, pause);
  /* Under g->mu, so that a pause() cannot slip between the two. */
  if (g->cooperative)
    error = rd_kafka_incremental_assign(g->rk, parts);
  else
    e = rd_kafka_assign(g->rk, parts);
  if (pause->cnt)
    rd_kafka_pause_partitions(g->rk, pause);
  mark_active(g);
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
  rd_kafka_topic_partition_list_destroy(pause);
  if (error) {
    KAFKA_LOG(g->b, SWIT_LOG_ERROR, "kafka: group '%s': assign: %s", g->name,
              rd_kafka_error_string(error));
    rd_kafka_error_destroy(error);
  } else if (e) {
    KAFKA_LOG(g->b, SWIT_LOG_ERROR, "kafka: group '%s': assign: %s", g->name,
              rd_kafka_err2str(e));
  }
  KAFKA_LOG(g->b, SWIT_LOG_INFO, "kafka: group '%s': %d partition(s) "
            "assigned", g->name, parts->cnt);
}

/* Wait until the revoked partitions have nothing in flight, or until the
 * revoke timeout; g->mu held. Returns how many are still in flight. */
static uint64_t wait_revoked(kgroup *g, rd_kafka_topic_partition_list_t *parts)
{
  swit__deadline end = swit__deadline_in(g->b->conf.revoke_timeout_ms);
  for (;;) {
    uint64_t left = 0;
    for (int i = 0; i < parts->cnt; i++) {
      kpart *p = part_of(g, parts->elems[i].topic, parts->elems[i].partition);
      left += p ? p->inflight : 0;
    }
    if (!left || swit__deadline_passed(end))
      return left;
    g->waiters++;
    swit__cond_wait_until(&g->cv, &g->mu, swit__deadline_min(end, 100));
    g->waiters--;
  }
}

/* Stop delivering, wait, commit (unless lost), release. */
static void on_revoke(kgroup *g, rd_kafka_topic_partition_list_t *parts)
{
  rd_kafka_topic_partition_list_t *list = NULL;
  int lost = rd_kafka_assignment_lost(g->rk);

  pthread_mutex_lock(&g->mu);
  for (int i = 0; i < parts->cnt; i++) {
    kpart *p = part_of(g, parts->elems[i].topic, parts->elems[i].partition);
    if (p)
      p->revoking = 1;
  }
  uint64_t left = wait_revoked(g, parts);
  for (int i = 0; i < parts->cnt; i++) {
    kpart *p = part_of(g, parts->elems[i].topic, parts->elems[i].partition);
    if (!p)
      continue;
    if (!lost)
      commit_add(&list, p);
    p->sub->parts[p->partition] = NULL;
    p->owned = 0;
    if (!p->inflight)
      swit__kafka_part_free(p);
  }
  pthread_mutex_unlock(&g->mu);
  if (left)
    KAFKA_LOG(g->b, SWIT_LOG_WARN, "kafka: group '%s': %llu message(s) of "
              "revoked partitions still running after revoke_timeout; the "
              "new owner may consume them again", g->name,
              (unsigned long long)left);
  if (lost)
    KAFKA_LOG(g->b, SWIT_LOG_WARN, "kafka: group '%s': %d partition(s) lost "
              "(not committed)", g->name, parts->cnt);
  commit_send(g, list, 0);
  if (g->cooperative) {
    rd_kafka_error_t *error = rd_kafka_incremental_unassign(g->rk, parts);
    if (error)
      rd_kafka_error_destroy(error);
  } else {
    rd_kafka_assign(g->rk, NULL);
  }
  KAFKA_LOG(g->b, SWIT_LOG_INFO, "kafka: group '%s': %d partition(s) "
            "revoked", g->name, parts->cnt);
}

void swit__kafka_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                              rd_kafka_topic_partition_list_t *parts,
                              void *opaque)
{
  kgroup *g = opaque;

  g->cooperative = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
  swit__kafka_deliver_pending(g); /* what was polled before the rebalance */
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    on_assign(g, parts);
  } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
    on_revoke(g, parts);
  } else {
    KAFKA_LOG(g->b, SWIT_LOG_ERROR, "kafka: group '%s': rebalance: %s",
              g->name, rd_kafka_err2str(err));
    rd_kafka_assign(rk, NULL);
  }
}
