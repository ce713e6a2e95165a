/*
 * settle.c - what happens to a message after its handler ran: ack it,
 * schedule a retry with backoff, or dead-letter it and then ack it.
 *
 * Runs on the worker thread that ran the batch. Acks of consecutive
 * messages of one subscription go to the adapter in one settle call.
 * A message leaves the host's in-flight count only when the adapter has
 * been told to ack or requeue it, so nothing is forgotten in between:
 *   ack        - handler succeeded, or its dead-letter copy was accepted;
 *   retry      - kept unsettled in the worker's retry heap until due;
 *   dead-letter- published to the subscription's dead_letter topic with
 *                x-swit-error, x-swit-attempts, x-swit-origin-topic; if
 *                that publish fails, retried later, never dropped;
 *   requeue    - at shutdown, for what was not finished in time; and a
 *                message an interceptor gives back unhandled (an open
 *                circuit), where the broker redelivers one (REQUEUE);
 *   hold       - a message given back unhandled while running, on a
 *                broker that cannot redeliver one (Kafka: a requeue only
 *                holds its commit; core NATS drops it): kept in the
 *                retry heap, no attempt
 *                counted, and offered again after GIVE_BACK_HOLD_MS.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/host_int.h"

/* A run of settles for one subscription, flushed when the sub changes. */
typedef struct settle_run {
  swit__sub *sub;
  size_t n;
} settle_run;

static void run_flush(swit__worker *w, settle_run *r)
{
  swit_host_t *h = w->host;

  if (r->n == 0) return;
  h->ops->settle(h->broker, r->sub->handle, w->settles, r->n);
  atomic_fetch_sub(&r->sub->inflight, (int_fast64_t)r->n);
  atomic_fetch_sub(&h->inflight, (int_fast64_t)r->n);
  if (h->icpt.any_released) swit__icpt_released(h, r->sub, r->n);
  r->n = 0;
}

static void run_add(swit__worker *w, settle_run *r, swit__sub *sub,
                    uint64_t token, int action)
{
  if (r->sub != sub || r->n == w->host->batch_size) {
    run_flush(w, r);
    r->sub = sub;
  }
  w->settles[r->n++] = (swit_settle){token, action};
}

/* "retry", "reject", "fatal": the text of SWIT_RESULT_MAP (swit.h). */
static const char *result_name(int code)
{
  switch (code) {
#define RESULT_CASE(name, value, text) case name: return text;
  SWIT_RESULT_MAP(RESULT_CASE)
#undef RESULT_CASE
  }
  return "fatal";
}

/* ------------------------------------------------------------------ */
/* Dead-lettering */

static int is_swit_header(const swit_header *h)
{
  static const char *const names[] = {"x-swit-error", "x-swit-attempts",
                                      "x-swit-origin-topic"};
  for (size_t i = 0; i < 3; i++)
    if (h->name_len == strlen(names[i]) &&
        strncasecmp(h->name, names[i], h->name_len) == 0)
      return 1;
  return 0;
}

/* The dead-letter copy: the original headers (less x-swit-* ones from an
 * earlier dead-lettering, which this one replaces), then ours unless the
 * subscriber's dead_letter.include_metadata is off; with its
 * dead_letter.ttl (the host refused the key at start where the broker
 * cannot expire a message). */
int swit__settle_dead_letter(swit__worker *w, const swit__item *it,
                             const unsigned char *carry, const char *reason,
                             size_t reason_len, char *err, size_t errlen)
{
  const swit_msg_view *o = it->msg;
  swit__sub *sub = it->sub;
  size_t need = o->nheaders + 5, n = 0;
  char attempts[16];
  uint64_t confirm;
  swit_msg_view v = *o;
  swit_header *hv;

  if (w->dlq_headers_cap < need) {
    hv = realloc(w->dlq_headers, need * sizeof *hv);
    if (!hv) return SWIT_E_NOMEM;
    w->dlq_headers = hv;
    w->dlq_headers_cap = need;
  }
  hv = w->dlq_headers;
  for (uint32_t i = 0; i < o->nheaders; i++)
    if (!is_swit_header(&o->headers[i])) hv[n++] = o->headers[i];
  if (sub->scfg->dead_letter.include_metadata) {
    snprintf(attempts, sizeof attempts, "%" PRIu32, it->attempt);
    hv[n++] = (swit_header){"x-swit-error", reason, 12, (uint32_t)reason_len};
    hv[n++] = (swit_header){"x-swit-attempts", attempts, 15,
                            (uint32_t)strlen(attempts)};
    hv[n++] = (swit_header){"x-swit-origin-topic", o->topic, 19,
                            o->topic_len};
  }
  v.topic = sub->dead_letter;
  v.topic_len = (uint32_t)strlen(sub->dead_letter);
  v.headers = hv;
  v.nheaders = (uint32_t)n;
  return swit__publish_dead_letter(w, &v, carry,
                                   sub->scfg->dead_letter.ttl_ms, &confirm,
                                   err, errlen);
}

/* Errors that trying again later can cure. */
static int transient(int rc)
{
  return rc == SWIT_E_FULL || rc == SWIT_E_BROKER || rc == SWIT_E_STATE ||
         rc == SWIT_E_TIMEDOUT || rc == SWIT_E_NOMEM;
}

/* Dead-letter now; or, if the broker cannot take it right now, park the
 * message and try again (never sooner than PARK_MIN_MS); or, if it can
 * never take it (e.g. the copy with our headers exceeds the size limit),
 * drop it with an error in the log: there is nowhere left to put it. */
#define PARK_MIN_MS 100

static void dead_letter_or_park(swit__worker *w, settle_run *run,
                                const swit__item *it,
                                const unsigned char *carry, const char *reason,
                                size_t reason_len)
{
  int64_t delay = it->sub->scfg->retry_delay_ms;
  char err[256];
  int rc = swit__settle_dead_letter(w, it, carry, reason, reason_len, err,
                                    sizeof err);

  if (rc == 0) {
    swit__icpt_settled(w, it, SWIT__OUT_DEAD);
    run_add(w, run, it->sub, it->token, SWIT_SETTLE_ACK);
    return;
  }
  if (!transient(rc)) {
    swit__log(&w->host->log, SWIT_LOG_ERROR, "[worker %u] DROPPED a message "
              "of '%s': it cannot be dead-lettered to '%s': %s (its error "
              "was: %.*s)", w->id, it->sub->topic, it->sub->dead_letter, err,
              (int)reason_len, reason);
    swit__icpt_settled(w, it, SWIT__OUT_DROPPED);
    run_add(w, run, it->sub, it->token, SWIT_SETTLE_ACK);
    return;
  }
  swit__log(&w->host->log, SWIT_LOG_ERROR, "[worker %u] cannot dead-letter "
            "a message of '%s' to '%s' (will try again): %s", w->id,
            it->sub->topic, it->sub->dead_letter, err);
  swit__retry r = {
    .due_ms = swit__now_ms() + (delay > PARK_MIN_MS ? delay : PARK_MIN_MS),
    .item = *it,
    .dlq_reason = strndup(reason, reason_len),
  };
  if (carry) memcpy(r.carry, carry, sizeof r.carry);
  if (!r.dlq_reason || swit__retry_push(&w->retries, &r) != 0) {
    free(r.dlq_reason);
    swit__log(&w->host->log, SWIT_LOG_ERROR, "[worker %u] out of memory "
              "parking a message of '%s'; requeueing it", w->id,
              it->sub->topic);
    run_add(w, run, it->sub, it->token, SWIT_SETTLE_REQUEUE);
  }
}

/* ------------------------------------------------------------------ */
/* Given back unhandled */

#define GIVE_BACK_HOLD_MS 250

/* Message it was given back unhandled by an interceptor. A broker that
 * redelivers gets it back; otherwise, while the host runs, the worker
 * keeps it (its attempt not counted) and offers it again later, so it
 * is neither lost until a restart nor holding the commit behind it. */
static void give_back(swit__worker *w, settle_run *run, const swit__item *it,
                      const swit_ffi_msg *m)
{
  const swit_broker_ops *ops = w->host->ops;
  swit__retry r = {.due_ms = swit__now_ms() + GIVE_BACK_HOLD_MS,
                   .item = *it};

  if (((ops->caps & SWIT_CAP_REQUEUE) &&
       (!ops->redelivers || ops->redelivers(w->host->broker, it->sub->handle))) ||
      atomic_load(&w->host->state) != SWIT__RUNNING ||
      __atomic_load_n(&w->ffi.stop, __ATOMIC_RELAXED)) {
    run_add(w, run, it->sub, it->token, SWIT_SETTLE_REQUEUE);
    return;
  }
  if (w->host->icpt.any_carry)
    swit__icpt_carry_save(w, (uint32_t)(m - w->ffi.msgs), r.carry);
  if (swit__retry_push(&w->retries, &r) != 0)
    run_add(w, run, it->sub, it->token, SWIT_SETTLE_REQUEUE);
}

/* ------------------------------------------------------------------ */
/* Failures */

static void schedule_retry(swit__worker *w, settle_run *run,
                           const swit__item *it, const unsigned char *carry,
                           const char *reason, size_t reason_len)
{
  int64_t delay = swit__retry_backoff_ms(it->sub->scfg, it->attempt, &w->rng);
  swit__retry r = {.due_ms = swit__now_ms() + delay, .item = *it};

  if (carry) memcpy(r.carry, carry, sizeof r.carry);
  swit__icpt_settled(w, it, SWIT__OUT_RETRY);
  r.item.attempt++;
  swit__log(&w->host->log, SWIT_LOG_WARN,
            "[worker %u] handler for '%s' failed (attempt %u of %u), "
            "retrying in %" PRId64 " ms: %.*s", w->id, it->sub->topic,
            it->attempt, it->sub->max_attempts, delay, (int)reason_len,
            reason);
  if (swit__retry_push(&w->retries, &r) != 0)
    run_add(w, run, it->sub, it->token, SWIT_SETTLE_REQUEUE);
}

static void settle_failure(swit__worker *w, settle_run *run,
                           const swit__item *it, const swit_ffi_msg *m)
{
  const char *reason = m->reason ? m->reason : result_name(m->result);
  size_t len = m->reason ? m->reason_len : strlen(reason);
  swit__sub *sub = it->sub;
  unsigned char carry[SWIT__CARRY_MAX];
  const unsigned char *cp = NULL;

  if (w->host->icpt.any_carry) {     /* what the interceptors keep */
    swit__icpt_carry_save(w, (uint32_t)(m - w->ffi.msgs), carry);
    cp = carry;
  }
  if (m->result == SWIT_RETRY && it->attempt < sub->max_attempts) {
    schedule_retry(w, run, it, cp, reason, len);
    return;
  }
  swit__log(&w->host->log,
            m->result == SWIT_FATAL ? SWIT_LOG_ERROR : SWIT_LOG_WARN,
            "[worker %u] %s: message of '%s' goes to '%s' after %u "
            "attempt(s): %.*s", w->id,
            m->result == SWIT_RETRY ? "retries exhausted"
                                        : result_name(m->result),
            sub->topic, sub->dead_letter, it->attempt, (int)len, reason);
  dead_letter_or_park(w, run, it, cp, reason, len);
}

/* ------------------------------------------------------------------ */
/* Entry points */

void swit__settle_batch(swit__worker *w, size_t n)
{
  settle_run run = {NULL, 0};
  int acks = w->host->icpt.settled_acks;   /* interceptors that see acks */

  for (size_t i = 0; i < n; i++) {
    const swit_ffi_msg *m = &w->ffi.msgs[i];
    const swit__item *it = &w->items[i];

    if (m->result == SWIT_ACK) {
      run_add(w, &run, it->sub, it->token, SWIT_SETTLE_ACK);
      if (acks) swit__icpt_settled(w, it, SWIT__OUT_ACK);
    }
    else if (m->result == SWIT__RES_GIVE_BACK)
      give_back(w, &run, it, m);
    else
      settle_failure(w, &run, it, m);
  }
  run_flush(w, &run);
  atomic_store(&w->host->last_activity_ms, swit__now_ms());
}

void swit__settle_one(swit__worker *w, const swit__item *it, int action)
{
  settle_run run = {NULL, 0};

  run_add(w, &run, it->sub, it->token, action);
  run_flush(w, &run);
}

/* A parked dead-letter publish is due again. */
void swit__settle_retry_due(swit__worker *w, swit__retry *r)
{
  settle_run run = {NULL, 0};

  dead_letter_or_park(w, &run, &r->item, r->carry, r->dlq_reason,
                      strlen(r->dlq_reason));
  free(r->dlq_reason);
  r->dlq_reason = NULL;
  run_flush(w, &run);
}

/* Shutdown: give back everything this worker still holds, so the broker
 * redelivers it (to this process after a restart, or to another member). */
void swit__settle_requeue_all(swit__worker *w)
{
  settle_run run = {NULL, 0};
  swit__retry r;
  size_t n;

  while ((n = swit__queue_take_all(&w->q, w->items, w->host->batch_size))) {
    for (size_t i = 0; i < n; i++)
      run_add(w, &run, w->items[i].sub, w->items[i].token,
              SWIT_SETTLE_REQUEUE);
  }
  while ((n = swit__txn_take_all(w, w->items, w->host->batch_size))) {
    for (size_t i = 0; i < n; i++)                 /* exactly_once holds */
      run_add(w, &run, w->items[i].sub, w->items[i].token,
              SWIT_SETTLE_REQUEUE);
  }
  while (swit__retry_pop_due(&w->retries, INT64_MAX, &r)) {
    run_add(w, &run, r.item.sub, r.item.token, SWIT_SETTLE_REQUEUE);
    free(r.dlq_reason);
  }
  run_flush(w, &run);
}
