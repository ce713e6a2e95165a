/*
 * worker.c - worker threads: each takes batches from its queue (and its
 * due retries), runs C handlers directly and Lua handlers with one
 * lua_pcall per batch, then settles the batch (settle.c).
 *
 * A worker owns its lua_State, its batch arrays, its arena and its retry
 * heap; nothing else touches them while the thread runs. Worker 0 also
 * runs the scripts' on_start functions (once, first) and swit.every
 * timers. The batch arrays are allocated once: the per-message path
 * copies a 64-byte view into the batch and allocates nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/host_int.h"
#include "core/msg_int.h"

_Thread_local swit__worker *swit__current_worker;

#define ARENA_CHUNK (64 * 1024)

swit__worker *swit__worker_of(const swit_ffi_msg *m)
{
  (void)m;
  return swit__current_worker;
}

/* ------------------------------------------------------------------ */
/* Arena: copies that live until the end of the batch */

void *swit__arena_alloc(swit__worker *w, size_t size)
{
  swit__arena_chunk *c = w->arena;

  size = (size + 15) & ~(size_t)15;
  if (!c || c->cap - c->used < size) {
    size_t cap = size > ARENA_CHUNK ? size : ARENA_CHUNK;
    swit__arena_chunk *n = malloc(sizeof *n + cap);
    if (!n) return NULL;
    n->next = c;
    n->cap = cap;
    n->used = 0;
    w->arena = c = n;
  }
  c->used += size;
  return c->data + c->used - size;
}

char *swit__arena_dup(swit__worker *w, const char *s, size_t len)
{
  char *p = swit__arena_alloc(w, len + 1);
  if (!p) return NULL;
  memcpy(p, s, len);
  p[len] = '\0';
  return p;
}

/* Keep the newest chunk (the one in use), free the rest: a batch that
 * needed more than one chunk is rare, and steady state allocates nothing. */
static void arena_reset(swit__worker *w)
{
  swit__arena_chunk *c = w->arena;
  if (!c) return;
  while (c->next) {
    swit__arena_chunk *old = c->next;
    c->next = old->next;
    free(old);
  }
  c->used = 0;
}

/* ------------------------------------------------------------------ */
/* Running a batch */

/* Copy the batch into the FFI slots. *nlua: messages for Lua handlers;
 * returns how many messages run a handler (C or Lua). */
static size_t fill_batch(swit__worker *w, size_t n, size_t *nlua)
{
  swit_ffi_msg *msgs = w->ffi.msgs;
  size_t nrun = 0;

  *nlua = 0;
  for (size_t i = 0; i < n; i++) {
    const swit__item *it = &w->items[i];
    swit_ffi_msg *m = &msgs[i];
    m->v = *it->msg;
    m->extra = NULL;
    m->reason = NULL;
    m->nextra = 0;
    m->reason_len = 0;
    m->attempt_no = it->attempt;
    m->sub = it->sub->id;
    m->result = SWIT_ACK;
    m->flags = it->sub->ccb ? SWIT_MSG_F_CHANDLER : 0;
    m->serial = ++w->serial ? w->serial : ++w->serial;   /* never 0 */
    if (!atomic_load_explicit(&it->sub->active, memory_order_relaxed)) {
      m->flags |= SWIT_MSG_F_REJECTED;      /* removed by a reload */
      m->result = SWIT__RES_GIVE_BACK;
      continue;
    }
    if (it->reject) {
      m->flags |= SWIT_MSG_F_REJECTED;
      m->result = SWIT_REJECT;
      m->reason = it->reject;
      m->reason_len = (uint32_t)strlen(it->reject);
      continue;
    }
    *nlua += it->sub->ccb == NULL;
    nrun++;
  }
  w->ffi.n = (uint32_t)n;
  return nrun;
}

/* Past the stop's deadline (ffi.stop): the messages from..n-1 that
 * handlers of this kind (C: SWIT_MSG_F_CHANDLER, Lua: not) would still run
 * are given back to the broker, not handled. */
static void give_back(swit__worker *w, uint32_t from, uint32_t n,
                      uint32_t chandler)
{
  for (uint32_t i = from; i < n; i++) {
    swit_ffi_msg *m = &w->ffi.msgs[i];
    if ((m->flags & SWIT_MSG_F_REJECTED) ||
        (m->flags & SWIT_MSG_F_CHANDLER) != chandler)
      continue;
    m->result = SWIT__RES_GIVE_BACK;
    m->serial = 0;
  }
}

void swit__worker_give_back(swit__worker *w, uint32_t from, uint32_t n)
{
  give_back(w, from, n, 0);
}

static void run_c_handlers(swit__worker *w, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    swit_ffi_msg *m = &w->ffi.msgs[i];
    swit__sub *sub = w->items[i].sub;
    int r, timed = m->flags & SWIT_MSG_F_TRACED;

    if (!sub->ccb || (m->flags & SWIT_MSG_F_REJECTED)) continue;
    if (__atomic_load_n(&w->ffi.stop, __ATOMIC_RELAXED)) {
      give_back(w, (uint32_t)i, (uint32_t)n, SWIT_MSG_F_CHANDLER);
      return;
    }
    w->ffi.cursor = (uint32_t)i;          /* the message being handled */
    if (timed) swit__icpt_mark(w, (uint32_t)i, 0);
    r = sub->ccb(m, sub->cud);
    if (timed) swit__icpt_mark(w, (uint32_t)i, 1);
    if (r < SWIT_ACK || r > SWIT_FATAL) {
      char why[80];
      snprintf(why, sizeof why, "C handler returned %d (not a SWIT_ACK.."
               "SWIT_FATAL result)", r);
      swit__msg_set_result(w, m, SWIT_RETRY, why, strlen(why));
    } else {
      m->result = r;
    }
  }
}

void swit__worker_run_handlers(swit__worker *w, size_t n)
{
  size_t nlua, nrun;
  swit_host_t *h = w->host;
  uint64_t t0 = swit__now_us(), t1;   /* health (busy) and handler time */
  uint32_t sid = w->items[0].sub->id;

  /* for /healthz: what the batch runs, published by busy_since_us */
  atomic_store_explicit(&w->busy_sub, sid, memory_order_relaxed);
  atomic_store_explicit(&w->busy_script, h->runner->script_of(w, sid),
                        memory_order_relaxed);
  atomic_store_explicit(&w->busy_since_us, (int64_t)t0,
                        memory_order_release);
  nrun = fill_batch(w, n, &nlua);
  if (h->icpt.any_batch | h->icpt.any_msg) swit__icpt_batch_before(w, n);
  if (h->has_chandlers) run_c_handlers(w, n);
  if (nlua) h->runner->dispatch(w, (uint32_t)n);
  t1 = swit__now_us();
  /* the batch's handler time, shared evenly among the messages whose
   * handler ran (two clock reads per batch, none per message;
   * operations.md says what swit_handler_duration_seconds measures) */
  w->handler_us = nrun ? (t1 - t0) / nrun : 0;
  if (h->icpt.any_batch | h->icpt.any_msg) swit__icpt_batch_after(w, n, t1);
  atomic_store_explicit(&w->busy_since_us, 0, memory_order_relaxed);
}

static void run_batch(swit__worker *w, size_t n)
{
  size_t ntxn = 0;

  if (atomic_load_explicit(&w->host->has_txn, memory_order_relaxed))
    ntxn = swit__txn_split(w, &n);                      /* exactly_once */
  if (n) {
    swit__worker_run_handlers(w, n);
    swit__settle_batch(w, n);
  }
  if (ntxn) swit__txn_run(w, ntxn);
  arena_reset(w);
}

/* ------------------------------------------------------------------ */
/* The loop */

static int64_t earliest(int64_t a, int64_t b)
{
  if (a < 0) return b;
  if (b < 0) return a;
  return a < b ? a : b;
}

/* Take due retries into the batch; dead-letter-only retries are settled
 * here directly. Returns how many items were added. */
static size_t take_due_retries(swit__worker *w, int64_t now, size_t max)
{
  swit__retry r;
  size_t n = 0;

  /* bounded by `max` pops, parked dead-letter publishes included, so a
   * refused publish that parks itself again cannot keep the worker here */
  for (size_t popped = 0; popped < max &&
                          swit__retry_pop_due(&w->retries, now, &r); popped++) {
    if (r.dlq_reason && r.item.sub->exactly_once) {
      /* dead-lettered in a transaction, with the batch (txn.c) */
      r.item.reject = swit__arena_dup(w, r.dlq_reason, strlen(r.dlq_reason));
      free(r.dlq_reason);
      if (!r.item.reject) r.item.reject = "dead-lettered (reason lost)";
      w->items[n++] = r.item;
    } else if (r.dlq_reason) {
      swit__settle_retry_due(w, &r);
    } else {
      swit__icpt_carry_load(w, (uint32_t)n, r.carry);
      w->items[n++] = r.item;
    }
  }
  return n;
}

/* busy_since_us and busy_kind tell /healthz and the watchdog what this
 * worker runs; a batch sets them in swit__worker_run_handlers. */
static void busy(swit__worker *w, int kind)
{
  atomic_store_explicit(&w->busy_sub, 0, memory_order_relaxed);
  atomic_store_explicit(&w->busy_script, NULL, memory_order_relaxed);
  atomic_store_explicit(&w->busy_kind, kind, memory_order_relaxed);
  atomic_store_explicit(&w->busy_since_us, (int64_t)swit__now_us(),
                        memory_order_release);
}

static void idle(swit__worker *w)
{
  atomic_store_explicit(&w->busy_since_us, 0, memory_order_relaxed);
  atomic_store_explicit(&w->busy_kind, SWIT__BUSY_BATCH, memory_order_relaxed);
}

/* Timers are intake too: none runs once a stop began. */
static void run_timers(swit__worker *w, int64_t now)
{
  if (w->id != 0 || !w->L || w->next_timer_ms < 0 || now < w->next_timer_ms ||
      atomic_load_explicit(&w->host->state, memory_order_relaxed) !=
          SWIT__RUNNING)
    return;
  busy(w, SWIT__BUSY_TIMER);
  w->next_timer_ms = w->host->runner->timers(w, now);
  idle(w);
}

static void run_on_start(swit__worker *w)
{
  swit_host_t *h = w->host;
  int ok = 1;

  if (w->L) {
    busy(w, SWIT__BUSY_ON_START);
    ok = h->runner->on_start(w) == 0;
    busy(w, SWIT__BUSY_TIMER);
    w->next_timer_ms = h->runner->timers(w, swit__now_ms());
    idle(w);
  }
  atomic_store(&h->last_activity_ms, swit__now_ms());
  atomic_store(&h->on_start_done, ok ? 1 : -1);
}

static void *worker_main(void *arg)
{
  swit__worker *w = arg;
  swit_host_t *h = w->host;
  uint32_t resumed[SWIT__MAX_SUBS + 1];

  swit__current_worker = w;
  if (w->id == 0) run_on_start(w);
  while (!swit__queue_closed(&w->q)) {
    int64_t now = swit__now_ms();
    size_t nres = 0, n;

    h->runner->swap(w);
    run_timers(w, now);
    if (w->carried) memset(w->carried, 0, h->batch_size); /* fresh slots */
    n = swit__txn_take_ready(w, w->items, h->batch_size);  /* exactly_once */
    n += take_due_retries(w, now, h->batch_size - n);
    if (n < h->batch_size) {
      int64_t deadline = n ? 0 : earliest(swit__retry_next_due(&w->retries),
                                          w->id == 0 ? w->next_timer_ms : -1);
      n += swit__queue_pop(&w->q, w->items + n, h->batch_size - n, deadline,
                           resumed, &nres);
    }
    for (size_t i = 0; i < nres; i++) {
      swit__sub *sub = h->subs[resumed[i] - 1];
      atomic_fetch_sub(&sub->paused_by, 1);
      swit__sub_reconcile_pause(sub);
    }
    if (n) run_batch(w, n);
    else arena_reset(w);        /* parked dead letters may have used it */
  }
  swit__settle_requeue_all(w);
  return NULL;
}

/* ------------------------------------------------------------------ */
/* Lifecycle */

static int worker_init(swit_host_t *h, swit__worker *w, uint32_t id)
{
  w->host = h;
  w->id = id;
  w->ffi.id = id;
  w->dispatch_ref = -1;
  w->next_timer_ms = -1;
  w->rng = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)id << 32 | 1);
  w->items = calloc(h->batch_size, sizeof *w->items);
  w->ffi.msgs = calloc(h->batch_size, sizeof *w->ffi.msgs);
  w->settles = calloc(h->batch_size, sizeof *w->settles);
  w->items_spare = calloc(h->batch_size, sizeof *w->items_spare);
  if (swit__icpt_worker_init(w) != 0) return SWIT_E_NOMEM;
  if (swit__txn_worker_init(w) != 0) return SWIT_E_NOMEM;
  return w->items && w->ffi.msgs && w->settles && w->items_spare
         ? 0 : SWIT_E_NOMEM;
}

int swit__workers_create(swit_host_t *h, char *err, size_t errlen)
{
  h->nworkers = (size_t)h->cfg->messaging.resources.subscribers.worker_pool_size;
  h->workers = calloc(h->nworkers, sizeof *h->workers);
  if (!h->workers) goto nomem;
  for (size_t i = 0; i < h->nworkers; i++)
    if (worker_init(h, &h->workers[i], (uint32_t)i) != 0) goto nomem;
  return 0;
nomem:
  snprintf(err, errlen, "cannot allocate %zu workers", h->nworkers);
  return SWIT_E_NOMEM;
}

/* Queues need the number of subscriptions (their pause flags), known once
 * the scripts have registered. High-water per worker: its share of
 * max_in_flight, at least two batches; slack above it absorbs what an
 * adapter delivers after a pause. */
int swit__workers_init_queues(swit_host_t *h, char *err, size_t errlen)
{
  const swit_config *c = h->cfg;
  uint32_t per = (uint32_t)(c->messaging.resources.subscribers.max_in_flight
                            / (int64_t)h->nworkers);
  uint32_t high = per > 2 * h->batch_size ? per : 2 * h->batch_size;

  for (size_t i = 0; i < h->nworkers; i++) {
    if (swit__queue_init(&h->workers[i].q, high + 4 * h->batch_size, high,
                         high / 4) != 0) {
      snprintf(err, errlen, "cannot allocate worker queues");
      return SWIT_E_NOMEM;
    }
  }
  return 0;
}

int swit__workers_start(swit_host_t *h, char *err, size_t errlen)
{
  int rc = swit__watchdog_start(h, err, errlen);

  if (rc) return rc;
  for (size_t i = 0; i < h->nworkers; i++) {
    swit__worker *w = &h->workers[i];
    rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc != 0) {
      snprintf(err, errlen, "cannot start worker thread %zu: %s", i,
               strerror(rc));
      return SWIT_E_SYS;
    }
    w->thread_started = 1;
  }
  return 0;
}

#if defined(__SANITIZE_THREAD__)
#define SWIT__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SWIT__TSAN 1
#endif
#endif

/* Join t by the deadline d (CLOCK_MONOTONIC); 0 or ETIMEDOUT.
 * ThreadSanitizer does not intercept pthread_clockjoin_np: it would see
 * no join, report the worker's last writes as racing with
 * swit__workers_free and the thread as leaked. Under TSan the same
 * deadline is kept by polling pthread_tryjoin_np, which it intercepts. */
static int join_by(pthread_t t, swit__deadline d)
{
#ifdef SWIT__TSAN
  for (;;) {
    if (pthread_tryjoin_np(t, NULL) == 0) return 0;
    if (swit__deadline_passed(d)) return ETIMEDOUT;
    nanosleep(&(struct timespec){0, 1000000L}, NULL);
  }
#else
  struct timespec ts = swit__deadline_timespec(d);
  return pthread_clockjoin_np(t, NULL, CLOCK_MONOTONIC, &ts);
#endif
}

/* A worker that did not finish: interrupted, then (still stuck after the
 * grace) left behind. What waits in its queue is given back; its batch
 * and retries stay with the stuck thread and are counted. */
static size_t abandon(swit_host_t *h, swit__worker *w)
{
  swit_settle s;
  size_t n, given = 0;

  while ((n = swit__queue_take_all(&w->q, w->items_spare, h->batch_size))) {
    for (size_t i = 0; i < n; i++) {
      s = (swit_settle){w->items_spare[i].token, SWIT_SETTLE_REQUEUE};
      h->ops->settle(h->broker, w->items_spare[i].sub->handle, &s, 1);
      atomic_fetch_sub(&w->items_spare[i].sub->inflight, 1);
      atomic_fetch_sub(&h->inflight, 1);
    }
    given += n;
  }
  w->abandoned = 1;
  swit__log(&h->log, SWIT_LOG_ERROR, "stop: worker %u is still in %s after "
            "the shutdown deadline, a stop request and an interrupt %d ms apart: left behind; %zu queued "
            "message(s) given back, its batch of %u and %zu waiting retries "
            "are not settled (a broker redelivers them, the memory broker "
            "loses them)", w->id,
            atomic_load(&w->busy_kind) == SWIT__BUSY_ON_START ? "on_start"
            : atomic_load(&w->busy_kind) == SWIT__BUSY_TIMER ? "a timer"
            : "a handler", SWIT__STOP_GRACE_MS, given, w->ffi.n,
            w->retries.n);
  return 1;
}

void swit__workers_halt(swit_host_t *h)
{
  for (size_t i = 0; i < h->nworkers; i++)
    __atomic_store_n(&h->workers[i].ffi.stop, 1, __ATOMIC_RELAXED);
}

/* The stop, in three steps, each bounded (docs/operations.md, "Stop"):
 * by `end` the workers finish what they hold; past it every worker still
 * running is told to stop at its next message boundary (ffi.stop: the rest
 * of its batch and its queue are given back) and gets SWIT__STOP_GRACE_MS;
 * one still in Lua after that is interrupted (a hook raises in its handler;
 * that message is given back too) and gets the grace again; one still
 * running then is left behind. Returns how many were left behind. */
size_t swit__workers_stop(swit_host_t *h, swit__deadline end)
{
  swit__deadline grace;
  size_t left = 0, running = 0;

  for (size_t i = 0; i < h->nworkers; i++)
    if (h->workers[i].q.ring) swit__queue_close(&h->workers[i].q);
  for (size_t i = 0; i < h->nworkers; i++) {
    swit__worker *w = &h->workers[i];
    if (!w->thread_started) continue;
    if (join_by(w->thread, end) == 0) w->thread_started = 0;
    else running++;
  }
  for (int step = 0; running && step < 2; step++) {
    for (size_t i = 0; i < h->nworkers; i++) {
      swit__worker *w = &h->workers[i];
      if (!w->thread_started) continue;
      if (step == 0)
        __atomic_store_n(&w->ffi.stop, 1, __ATOMIC_RELAXED);
      else if (h->runner && h->runner->interrupt)
        h->runner->interrupt(w);
    }
    grace = swit__deadline_in(SWIT__STOP_GRACE_MS);
    for (size_t i = 0; i < h->nworkers; i++) {
      swit__worker *w = &h->workers[i];
      if (w->thread_started && join_by(w->thread, grace) == 0) {
        w->thread_started = 0;
        running--;
      }
    }
  }
  for (size_t i = 0; running && i < h->nworkers; i++)
    if (h->workers[i].thread_started) left += abandon(h, &h->workers[i]);
  swit__watchdog_stop(h);
  return left;
}

void swit__workers_free(swit_host_t *h)
{
  if (!h->workers) return;
  for (size_t i = 0; i < h->nworkers; i++) {
    swit__worker *w = &h->workers[i];
    if (h->runner) h->runner->worker_free(w);
    swit__queue_destroy(&w->q);
    swit__retry_free(&w->retries);
    while (w->arena) {
      swit__arena_chunk *c = w->arena;
      w->arena = c->next;
      free(c);
    }
    free(w->items);
    free(w->ffi.msgs);
    free(w->settles);
    free(w->items_spare);
    free(w->dlq_headers);
    swit__icpt_worker_free(w);
    swit__txn_worker_free(w);
  }
  free(h->workers);
  h->workers = NULL;
}
