/*
 * txn.c - exactly_once subscriptions: their messages run in broker
 * transactions (broker.h, txn_begin/txn_end), so that what their handlers
 * publish and the consumed positions commit together.
 *
 * A worker moves the exactly_once messages of its batch aside
 * (swit__txn_split; the others run as usual first) and runs them in one
 * transaction: begin, handlers (their publishes join the transaction),
 * dead letters of rejected messages (also inside it), then commit with
 * the positions the messages complete, then settle (ack).
 *
 * If a handler failed, the transaction is aborted (its publishes are
 * discarded, nothing is acked) and the messages are sorted out, in
 * order, before another pass runs what is left in a new transaction:
 *   - a retryable failure goes to the retry heap and puts a hold on its
 *     (subscription, partition): the later messages of that partition,
 *     in this batch and in later ones, are parked behind it in order and
 *     released when it is finished (committed, or dead-lettered in a
 *     transaction). So a partition's transactions commit in offset
 *     order, and the committed offset always equals the end of what
 *     committed: a crash re-runs exactly what was not committed.
 *   - a rejected, fatal or exhausted message is dead-lettered in the next
 *     pass (its handler does not run again);
 *   - the others run again (their publishes were discarded with the
 *     aborted transaction).
 * Each failing pass removes or settles at least one message, so the loop
 * ends. A commit that fails counts as a failure of every message in the
 * transaction (they may be its cause, e.g. an output too large); a
 * transaction that cannot begin retries its messages without counting
 * an attempt (nothing ran).
 *
 * exactly_once forces ordering "partition" (subs.c): a partition's
 * messages all run on one worker, so its transactions never overlap.
 *
 * Runs on the worker thread only; the holds and the ready list are the
 * worker's. They allocate only when a message fails.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/host_int.h"

int swit__txn_worker_init(swit__worker *w)
{
  uint32_t n = w->host->batch_size;

  w->txn.stash = calloc(n, sizeof *w->txn.stash);
  w->txn.msgs = calloc(n, sizeof *w->txn.msgs);
  return w->txn.stash && w->txn.msgs ? 0 : SWIT_E_NOMEM;
}

void swit__txn_worker_free(swit__worker *w)
{
  for (size_t i = 0; i < w->txn.nholds; i++) free(w->txn.holds[i].items);
  free(w->txn.holds);
  free(w->txn.ready);
  free(w->txn.stash);
  free(w->txn.msgs);
  memset(&w->txn, 0, sizeof w->txn);
}

size_t swit__txn_split(swit__worker *w, size_t *n)
{
  size_t plain = 0, moved = 0;

  for (size_t i = 0; i < *n; i++) {
    if (w->items[i].sub->exactly_once) {
      w->txn.stash[moved++] = w->items[i];
    } else {
      swit__icpt_carry_move(w, (uint32_t)i, (uint32_t)plain); /* retries' */
      w->items[plain++] = w->items[i];
    }
  }
  *n = plain;
  return moved;
}

/* ------------------------------------------------------------------ */
/* Holds and the ready list */

static swit__hold *hold_find(swit__worker *w, const swit__item *it)
{
  for (size_t i = 0; i < w->txn.nholds; i++) {
    swit__hold *h = &w->txn.holds[i];
    if (h->sub == it->sub && h->partition == it->msg->partition) return h;
  }
  return NULL;
}

static int hold_add(swit__worker *w, const swit__item *it)
{
  swit__wtxn *t = &w->txn;
  swit__hold *h = hold_find(w, it);

  if (h) {
    h->token = it->token;
    return 0;
  }
  if (t->nholds == t->capholds) {
    size_t cap = t->capholds ? t->capholds * 2 : 8;
    swit__hold *v = realloc(t->holds, cap * sizeof *v);
    if (!v) return SWIT_E_NOMEM;
    t->holds = v;
    t->capholds = cap;
  }
  t->holds[t->nholds++] = (swit__hold){.sub = it->sub,
                                       .partition = it->msg->partition,
                                       .token = it->token};
  return 0;
}

static int arena_owns(const swit__worker *w, const void *p)
{
  for (const swit__arena_chunk *c = w->arena; c; c = c->next)
    if ((const char *)p >= c->data && (const char *)p < c->data + c->cap)
      return 1;
  return 0;
}

/* Park it behind hold h; if there is no memory, give it back instead. */
static void park(swit__worker *w, swit__hold *h, swit__item it)
{
  if (it.reject && arena_owns(w, it.reject))
    it.reject = NULL;        /* reset with the batch: it runs again instead */
  if (h->n == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 16;
    swit__item *v = realloc(h->items, cap * sizeof *v);
    if (!v) {
      swit__settle_one(w, &it, SWIT_SETTLE_REQUEUE);
      return;
    }
    h->items = v;
    h->cap = cap;
  }
  h->items[h->n++] = it;
}

/* The message `token` is finished: its hold's parked messages are ready. */
static void release(swit__worker *w, uint64_t token)
{
  swit__wtxn *t = &w->txn;

  for (size_t i = 0; i < t->nholds; i++) {
    swit__hold *h = &t->holds[i];
    if (h->token != token) continue;
    if (t->readyhead == t->nready) t->readyhead = t->nready = 0;
    if (t->capready - t->nready < h->n) {
      size_t cap = t->capready ? t->capready : 64;
      while (cap - t->nready < h->n) cap *= 2;
      swit__item *v = realloc(t->ready, cap * sizeof *v);
      if (!v) {                            /* give them back, in order */
        for (size_t j = 0; j < h->n; j++)
          swit__settle_one(w, &h->items[j], SWIT_SETTLE_REQUEUE);
        h->n = 0;
      } else {
        t->ready = v;
        t->capready = cap;
      }
    }
    if (h->n) memcpy(t->ready + t->nready, h->items, h->n * sizeof *h->items);
    t->nready += h->n;
    free(h->items);
    *h = t->holds[--t->nholds];
    return;
  }
}

size_t swit__txn_take_ready(swit__worker *w, swit__item *out, size_t max)
{
  swit__wtxn *t = &w->txn;
  size_t n = t->nready - t->readyhead;

  if (n == 0) return 0;
  if (n > max) n = max;
  memcpy(out, t->ready + t->readyhead, n * sizeof *out);
  t->readyhead += n;
  return n;
}

size_t swit__txn_take_all(swit__worker *w, swit__item *out, size_t max)
{
  swit__wtxn *t = &w->txn;
  size_t n = swit__txn_take_ready(w, out, max);

  while (n < max && t->nholds) {
    swit__hold *h = &t->holds[t->nholds - 1];
    size_t k = h->n < max - n ? h->n : max - n;
    memcpy(out + n, h->items + h->n - k, k * sizeof *out);
    h->n -= k;
    n += k;
    if (h->n == 0) {
      free(h->items);
      t->nholds--;
    }
  }
  return n;
}

/* Park the items of held partitions (all but each hold's own message);
 * the rest stay, compacted, in order. */
static size_t park_held(swit__worker *w, size_t n)
{
  size_t k = 0;

  if (!w->txn.nholds) return n;
  for (size_t i = 0; i < n; i++) {
    swit__item *it = &w->items[i];
    swit__hold *h = hold_find(w, it);
    if (h && h->token != it->token)
      park(w, h, *it);
    else
      w->items[k++] = *it;
  }
  return k;
}

/* ------------------------------------------------------------------ */
/* One pass */

static int handler_failed(const swit_ffi_msg *m)
{
  return m->result != SWIT_ACK && m->result != SWIT__RES_GIVE_BACK &&
         !(m->flags & SWIT_MSG_F_REJECTED);
}

/* Dead-letter the rejected messages inside the transaction and mark them
 * acked; 0, or the publish's error. */
static int dead_letters(swit__worker *w, size_t n, char *err, size_t errlen)
{
  for (size_t i = 0; i < n; i++) {
    swit_ffi_msg *m = &w->ffi.msgs[i];
    const swit__item *it = &w->items[i];
    unsigned char carry[SWIT__CARRY_MAX];
    int rc;

    if (m->result == SWIT_ACK || m->result == SWIT__RES_GIVE_BACK)
      continue;
    swit__log(&w->host->log, SWIT_LOG_WARN, "[worker %u] message of '%s' "
              "goes to '%s' in a transaction after %u attempt(s): %.*s",
              w->id, it->sub->topic, it->sub->dead_letter, it->attempt,
              (int)m->reason_len, m->reason ? m->reason : "");
    swit__icpt_carry_save(w, (uint32_t)i, carry);
    rc = swit__settle_dead_letter(w, it, carry, m->reason ? m->reason : "",
                                  m->reason_len, err, errlen);
    if (rc) return rc;
    m->result = SWIT_ACK;
    swit__icpt_settled(w, it, SWIT__OUT_DEAD);
  }
  return 0;
}

/* Commit the pass's transaction (begun): 0, or why not. */
static int commit(swit__worker *w, size_t n, char *err, size_t errlen)
{
  swit_host_t *h = w->host;
  size_t k = 0;
  int rc = dead_letters(w, n, err, errlen);

  if (rc) {
    h->ops->txn_end(h->broker, w->id, NULL, 0, 0, NULL, 0);
    return rc;
  }
  for (size_t i = 0; i < n; i++)
    if (w->ffi.msgs[i].result == SWIT_ACK)
      w->txn.msgs[k++] = (swit_txn_msg){w->items[i].sub->handle,
                                        w->items[i].token};
  return h->ops->txn_end(h->broker, w->id, w->txn.msgs, k, 1, err, errlen);
}

/* Why a message goes to the retry heap (with a hold on its partition):
 * its handler failed (an attempt is counted), its dead-letter copy must
 * be published again, or no transaction could begin (nothing ran: no
 * attempt counted, tried again after the same backoff). */
enum { RL_HANDLER, RL_DEAD_LETTER, RL_AGAIN };

static void retry_later(swit__worker *w, const swit__item *it,
                        const char *reason, size_t len, int why)
{
  const swit_cfg_subscriber *sc = it->sub->scfg;
  int64_t delay = why == RL_DEAD_LETTER
      ? (sc->retry_delay_ms > 100 ? sc->retry_delay_ms : 100)
      : swit__retry_backoff_ms(sc, it->attempt, &w->rng);
  swit__retry r = {.due_ms = swit__now_ms() + delay, .item = *it};
  static const char *const what[] = {"handler", "dead-lettering a message",
                                     "transaction"};

  r.item.reject = NULL;
  if (why == RL_DEAD_LETTER) {
    r.dlq_reason = strndup(reason, len);
  } else if (why == RL_HANDLER) {
    r.item.attempt++;
    swit__icpt_settled(w, it, SWIT__OUT_RETRY);
  }
  swit__log(&w->host->log, why == RL_AGAIN ? SWIT_LOG_DEBUG : SWIT_LOG_WARN,
            "[worker %u] %s of '%s' failed (attempt %u of %u); transaction "
            "aborted, trying again in %" PRId64 " ms: %.*s", w->id, what[why],
            it->sub->topic, it->attempt, it->sub->max_attempts, delay,
            (int)len, reason);
  if ((why == RL_DEAD_LETTER && !r.dlq_reason) || hold_add(w, it) != 0 ||
      swit__retry_push(&w->retries, &r) != 0) {
    free(r.dlq_reason);
    swit__settle_one(w, it, SWIT_SETTLE_REQUEUE);
    release(w, it->token);
  }
}

/* The transaction could not begin: no handler ran. Every message waits
 * (its partition held, no attempt counted), or is parked behind one. */
static void begin_failed(swit__worker *w, size_t n, const char *why)
{
  for (size_t i = 0; i < n; i++) {
    swit__item *it = &w->items[i];
    swit__hold *h = hold_find(w, it);

    if (h && h->token != it->token)
      park(w, h, *it);
    else if (it->reject)
      retry_later(w, it, it->reject, strlen(it->reject), RL_DEAD_LETTER);
    else
      retry_later(w, it, why, strlen(why), RL_AGAIN);
  }
}

/* After an aborted pass: sort the messages out (see the top); returns
 * how many run again, compacted at the front of w->items. `why` is set
 * when the commit failed: then every message failed. */
static size_t sort_out(swit__worker *w, size_t n, const char *why)
{
  size_t k = 0;

  for (size_t i = 0; i < n; i++) {
    swit_ffi_msg *m = &w->ffi.msgs[i];
    swit__item *it = &w->items[i];
    swit__hold *h = hold_find(w, it);
    const char *reason = why ? why : m->reason ? m->reason : "failed";
    size_t len = why || !m->reason ? strlen(reason) : m->reason_len;

    if (m->result == SWIT__RES_GIVE_BACK) {    /* its subscription is gone */
      swit__settle_one(w, it, SWIT_SETTLE_REQUEUE);
      release(w, it->token);
    } else if (h && h->token != it->token) {
      park(w, h, *it);
    } else if (m->flags & SWIT_MSG_F_REJECTED) {   /* to be dead-lettered */
      if (why) retry_later(w, it, m->reason ? m->reason : "rejected",
                           m->reason ? m->reason_len : 8, RL_DEAD_LETTER);
      else w->items[k++] = *it;
    } else if (why || m->result != SWIT_ACK) {
      if ((why || m->result == SWIT_RETRY) &&
          it->attempt < it->sub->max_attempts) {
        retry_later(w, it, reason, len, RL_HANDLER);
      } else {                          /* dead-lettered in the next pass */
        it->reject = swit__arena_dup(w, reason, len);
        if (!it->reject) it->reject = "failed (reason lost: out of memory)";
        w->items[k++] = *it;
      }
    } else {
      w->items[k++] = *it;
    }
  }
  return k;
}

void swit__txn_run(swit__worker *w, size_t n)
{
  swit_host_t *h = w->host;
  char err[256];

  memcpy(w->items, w->txn.stash, n * sizeof *w->items);
  if (w->carried)   /* a retried message starts a new attempt here */
    memset(w->carried, 0, n);
  n = park_held(w, n);
  while (n) {
    int rc = h->ops->txn_begin(h->broker, w->id, err, sizeof err);
    int failed = 0;

    if (rc) {
      swit__log(&h->log, SWIT_LOG_ERROR, "[worker %u] cannot begin a "
                "transaction: %s", w->id, err);
      begin_failed(w, n, err);
      break;
    }
    swit__worker_run_handlers(w, n);  /* fills the batch (results) */
    for (size_t i = 0; i < n && !failed; i++)
      failed = handler_failed(&w->ffi.msgs[i]);
    if (failed) {
      h->ops->txn_end(h->broker, w->id, NULL, 0, 0, NULL, 0);
      atomic_fetch_add(&h->txn_aborts, 1);
      n = sort_out(w, n, NULL);
      continue;
    }
    if ((rc = commit(w, n, err, sizeof err)) != 0) {
      swit__log(&h->log, SWIT_LOG_ERROR, "[worker %u] transaction of %zu "
                "message(s) aborted: %s", w->id, n, err);
      atomic_fetch_add(&h->txn_aborts, 1);
      n = sort_out(w, n, err);
      continue;
    }
    atomic_fetch_add(&h->txn_commits, 1);
    swit__settle_batch(w, n);         /* every result is an ack now */
    for (size_t i = 0; i < n; i++) release(w, w->items[i].token);
    break;
  }
}
