/*
 * memory_delivery.c - the in-memory broker's delivery thread: moves
 * retained messages to the subscribers' sinks.
 *
 * One thread per broker, started by connect and joined by disconnect. A
 * pass visits every topic and, under the topic lock, every live group;
 * for a group it serves each non-paused member at most once, starting
 * after the member served last, with an equal share of what is waiting
 * (requeued messages first, then the log in publish order), up to
 * MEM_BATCH per sink call. The topic lock is dropped around each sink
 * call, so the sink may pause, resume, settle, publish or unsubscribe;
 * the thread owns `b->batch`, the array every sink call receives (valid
 * for that call only; the views in it stay valid until settled).
 *
 * Sleep and wake: the thread clears `work`, runs a pass, and sleeps on
 * `wake` only if the pass delivered nothing and nobody set `work` again.
 * Wakers set `work` and signal only when `sleeping` is set (both seq_cst,
 * the thread holds `mu` from setting `sleeping` to waiting), so the hot
 * publish path costs one atomic store and one load while the thread is
 * busy.
 */
#include <errno.h>
#include <time.h>

#include "memory_int.h"

/* The broker whose delivery thread this is (NULL on other threads). */
static _Thread_local const mem_broker *mem_deliverer;

int swit__mem_on_delivery_thread(const mem_broker *b)
{
  return mem_deliverer == b;
}

void swit__mem_delivery_wake(mem_broker *b)
{
  atomic_store(&b->work, 1);
  if (!atomic_load(&b->sleeping))
    return;
  pthread_mutex_lock(&b->mu);
  pthread_cond_signal(&b->wake);
  pthread_mutex_unlock(&b->mu);
}

/* ---------------------------------------------------------------------
 * One pass */

/* The next non-paused member in rotation (advancing the rotation), and
 * how many members are not paused. */
static mem_member *next_member(mem_group *g, size_t *nactive)
{
  mem_member *pick = NULL;
  size_t start = g->rr, n = 0;
  for (size_t k = 0; k < g->nlive; k++) {
    size_t i = (start + k) % g->nlive;
    if (g->live[i]->paused)
      continue;
    if (!pick) {
      pick = g->live[i];
      g->rr = (i + 1) % g->nlive;
    }
    n++;
  }
  *nactive = n;
  return pick;
}

/* Serve group g; t->mu held on entry and exit (dropped around sinks).
 * Returns the number of messages delivered; sets *short_mem when the
 * group had messages but no room to track them. */
static size_t deliver_group(mem_broker *b, mem_topic *t, mem_group *g,
                            int *short_mem)
{
  size_t total = 0;
  for (size_t turn = 0; turn < g->nlive && !atomic_load(&b->stop); turn++) {
    uint64_t pending = swit__mem_group_pending(t, g);
    size_t nactive;
    mem_member *m = pending ? next_member(g, &nactive) : NULL;
    if (!m)
      break;
    uint64_t share = (pending + nactive - 1) / nactive;
    size_t k = swit__mem_group_take(t, g, m, share < MEM_BATCH ? share : MEM_BATCH,
                                    b->batch);
    if (!k) {
      *short_mem = 1;
      break;
    }
    m->in_sink = 1;
    pthread_mutex_unlock(&t->mu);
    m->sink(m->sink_ud, b->batch, k);
    pthread_mutex_lock(&t->mu);
    m->in_sink = 0;
    total += k;
    int gone = g->nlive == 0; /* then g may go with m below */
    if (m->unsub_waiting)
      pthread_cond_broadcast(&t->sink_done);
    else
      swit__mem_member_reap(m);
    if (gone)
      break;
  }
  return total;
}

static size_t deliver_pass(mem_broker *b, int *short_mem)
{
  size_t total = 0;
  mem_topic *t;
  for (size_t i = 0; !atomic_load(&b->stop) && (t = swit__mem_topic_at(b, i)); i++) {
    pthread_mutex_lock(&t->mu);
    /* Sink calls may remove groups; a group skipped here is served by
     * the next pass, which follows any pass that delivered something. */
    for (size_t k = 0; k < t->ngroups; k++)
      total += deliver_group(b, t, t->groups[k], short_mem);
    pthread_mutex_unlock(&t->mu);
  }
  return total;
}

/* ---------------------------------------------------------------------
 * The thread */

/* Sleep until woken or stopped; with short_mem, retry after 100 ms. */
static void sleep_until_work(mem_broker *b, int short_mem)
{
  swit__deadline until = swit__deadline_in(100);
  pthread_mutex_lock(&b->mu);
  atomic_store(&b->sleeping, 1);
  while (!atomic_load(&b->stop) && !atomic_load(&b->work)) {
    if (!short_mem)
      pthread_cond_wait(&b->wake, &b->mu);
    else if (swit__cond_wait_until(&b->wake, &b->mu, until) == ETIMEDOUT)
      break;
  }
  atomic_store(&b->sleeping, 0);
  pthread_mutex_unlock(&b->mu);
}

static void *delivery_main(void *arg)
{
  mem_broker *b = arg;
  mem_deliverer = b;
  while (!atomic_load(&b->stop)) {
    atomic_store(&b->work, 0);
    int short_mem = 0;
    if (deliver_pass(b, &short_mem) > 0)
      continue;
    if (short_mem)
      MEM_LOG(b, SWIT_LOG_WARN,
              "memory broker: out of memory tracking deliveries; retrying");
    sleep_until_work(b, short_mem);
  }
  return NULL;
}

int swit__mem_delivery_start(mem_broker *b)
{
  atomic_store(&b->stop, 0);
  atomic_store(&b->work, 1);
  return pthread_create(&b->thread, NULL, delivery_main, b);
}

void swit__mem_delivery_stop(mem_broker *b)
{
  atomic_store(&b->stop, 1);
  pthread_mutex_lock(&b->mu);
  pthread_cond_signal(&b->wake);
  pthread_mutex_unlock(&b->mu);
  pthread_join(b->thread, NULL);
}
