/*
 * intercept.h - the interception layer: C middleware around every batch,
 * message, publish and settle (intercept.c). Not API.
 *
 * An interceptor is a const swit__icpt_ops plus host-level state. The
 * layers above the core (metrics and tracing in obs/, later security,
 * registry and resilience) register theirs with the host before the
 * workers are created; the core calls them at fixed points and names none
 * of them. Order: interceptors run in registration order before a
 * handler and in reverse order after it, so the first registered wraps
 * all others:
 *
 *   batch_before(1..k) -> msgs_before(1..k)
 *     -> Lua middleware (swit.use) -> handler -> Lua middleware
 *   -> msgs_after(k..1) -> batch_after(k..1) -> settle
 *
 * Message hooks are batch-shaped: msgs_before and msgs_after are called
 * once per batch and visit the messages themselves (SWIT__ICPT_MSGS_*
 * below turn a per-message function into one), so a hook costs one
 * indirect call per batch, not per message, and a hook that only looks
 * at some messages pays nothing for the others. Interceptor k sees the
 * whole batch after interceptor k-1 has seen it; all of them run before
 * the batch's handlers (one lua_pcall per batch).
 *
 * Threads: worker hooks run on the worker thread with the worker's own
 * state (`ws`), never concurrently for one worker; publish hooks run on
 * whatever thread publishes (a worker, the ingress, an embedder), with
 * `w` set when it is a worker. Hooks must not block and must not call
 * Lua. A hook that is NULL costs nothing; with no interceptor registered
 * the hot path tests one integer per batch.
 *
 * Carry: bytes an interceptor keeps with a message across a retry or a
 * parked dead-letter publish (e.g. its trace context). The core copies
 * them with the message; it never reads them.
 */
#ifndef SWIT_INTERCEPT_H
#define SWIT_INTERCEPT_H

#include <stddef.h>
#include <stdint.h>

#include "swit_ffi.h"

struct swit_host_s;
struct swit__worker;
struct swit__item;
struct swit__sub;
struct swit_delivery;

#define SWIT__ICPT_MAX 16     /* interceptors per host */
#define SWIT__CARRY_MAX 64    /* carry bytes per message, all interceptors */

/* What a publish hook knows about the publish. */
typedef struct swit__pub_info {
  struct swit__worker *w;     /* the publishing worker, or NULL */
  int in_handler;             /* published by the handler of w's message
                                 w->ffi.cursor */
  int dead_letter;            /* a dead-letter copy made by the host */
  const unsigned char *carry; /* dead letter: the message's carry, or NULL */
} swit__pub_info;

/* How a message was settled, for the `settled` hook. */
enum {
  SWIT__OUT_ACK = 0,          /* done */
  SWIT__OUT_RETRY,            /* parked for a retry (attempt counted) */
  SWIT__OUT_DEAD,             /* dead-lettered (copy confirmed), then acked */
  SWIT__OUT_REQUEUE,          /* given back to the broker */
  SWIT__OUT_DROPPED           /* could not be dead-lettered: acked, lost */
};

typedef struct swit__icpt_ops {
  const char *name;
  size_t carry_size;          /* bytes of carry, 0 for none */
  unsigned flags;             /* SWIT__ICPT_F_* */

  /* Per worker: state for this worker (ws), made before it starts. */
  int (*worker_init)(void *hs, struct swit__worker *w, void **ws);
  void (*worker_free)(void *hs, struct swit__worker *w, void *ws);

  /* A filled batch of n (w->items, w->ffi.msgs), before any handler. */
  void (*batch_before)(void *ws, struct swit__worker *w, size_t n);
  /* Before the handlers, for messages 0..n-1: a hook visits the ones
   * not refused yet (swit__icpt_refused) and may refuse one by setting a
   * result with swit__msg_set_result and calling swit__icpt_refuse: its
   * handler and the later interceptors' msgs_before skip it. May rewrite
   * a message's view (headers, payload) with memory from
   * swit__arena_alloc. */
  void (*msgs_before)(void *ws, struct swit__worker *w, size_t n);
  /* After the handlers, for messages 0..n-1, refused ones included
   * (results set; a hook may change them). */
  void (*msgs_after)(void *ws, struct swit__worker *w, size_t n);
  /* Handler start (end 0) or end (end 1) of message i, for messages a
   * hook flagged SWIT_MSG_F_TRACED in batch_before. */
  void (*mark)(void *ws, struct swit__worker *w, uint32_t i, int end);
  /* After every handler of the batch, before settling; now_us is
   * swit__now_us() read once for the batch. */
  void (*batch_after)(void *ws, struct swit__worker *w, size_t n,
                      uint64_t now_us);
  /* `it` was settled with SWIT__OUT_* (plain acks only with
   * SWIT__ICPT_F_SETTLED_ACKS: they are the hot path). */
  void (*settled)(void *ws, struct swit__worker *w,
                  const struct swit__item *it, int outcome);

  /* Write message i's carry (it is being kept for later). */
  void (*carry_save)(void *ws, struct swit__worker *w, uint32_t i,
                     unsigned char *carry);

  /* A publish of n views: return the views to publish (m itself, or
   * rewritten copies in the worker's arena / the hook's memory), or NULL
   * with *rc set (a SWIT_E_* code) and err written to refuse it. */
  const swit_msg_view *(*publish_before)(void *hs, const swit_msg_view *m,
                                         size_t n, const swit__pub_info *pi,
                                         int *rc, char *err, size_t errlen);
  /* The publish finished with rc after `us` microseconds (0 when not
   * measured: see SWIT__ICPT_F_TIME_PUBLISH). */
  void (*publish_after)(void *hs, const swit_msg_view *m, size_t n, int rc,
                        uint64_t us);

  /* Intake: an adapter delivered the n messages d of `sub` (already
   * counted in sub->inflight), on the adapter's thread, before they are
   * routed to the workers. Return 0 to let the core route them now, or 1
   * to take them: the interceptor then routes every one of them itself,
   * in arrival order, through swit__dispatch_route (at once or later from
   * its own thread), or gives back at the adapter the ones it can no
   * longer route; it never drops one. The first interceptor that takes a
   * delivery ends the chain. It may pause the subscription (a count of
   * sub->paused_by); it never blocks the adapter's thread for long. */
  int (*intake)(void *hs, struct swit__sub *sub,
                const struct swit_delivery *d, size_t n);
  /* n messages of `sub` left the host's in-flight count (acked, given
   * back or dead-lettered at the adapter), on the settling thread. */
  void (*released)(void *hs, struct swit__sub *sub, size_t n);
} swit__icpt_ops;

enum {
  SWIT__ICPT_F_TIME_PUBLISH = 1, /* publish_after wants the elapsed time */
  SWIT__ICPT_F_RECV_TIME = 2,    /* items carry their receive time */
  SWIT__ICPT_F_SETTLED_ACKS = 4  /* `settled` for plain acks too */
};

/* One registered interceptor. */
typedef struct swit__icpt {
  const swit__icpt_ops *ops;
  void *hs;                   /* host-level state, the registrant's */
  size_t carry_off;           /* its carry bytes start here */
} swit__icpt;

/* The host's chain (inside struct swit_host_s). */
typedef struct swit__icpt_chain {
  swit__icpt v[SWIT__ICPT_MAX];
  uint32_t n;
  /* which hooks anyone has: the core tests these, never the list */
  uint8_t any_batch, any_msg, any_settled, any_publish, any_carry;
  uint8_t time_publish, recv_time, settled_acks;
  uint8_t any_intake, any_released;
  size_t carry_size;          /* sum of carry_size */
} swit__icpt_chain;

/* A msgs_before from `one(ws, w, i)`, which returns 1 when it refused
 * message i (result set) and 0 to pass; a msgs_after from a void `one`.
 * The loop is the hook's own, so `one` is a direct, inlinable call. */
#define SWIT__ICPT_MSGS_BEFORE(name, one)                                 \
  static void name(void *ws, struct swit__worker *w, size_t n)            \
  {                                                                       \
    for (uint32_t i_ = 0; i_ < (uint32_t)n; i_++)                         \
      if (!swit__icpt_refused(w, i_) && one(ws, w, i_))                   \
        swit__icpt_refuse(w, i_);                                         \
  }
#define SWIT__ICPT_MSGS_AFTER(name, one)                                  \
  static void name(void *ws, struct swit__worker *w, size_t n)            \
  {                                                                       \
    for (uint32_t i_ = 0; i_ < (uint32_t)n; i_++) one(ws, w, i_);         \
  }

/* Register (before swit__workers_create). Returns the interceptor's index
 * (for swit__icpt_ws), or SWIT_E_FULL / SWIT_E_INVAL. */
int swit__icpt_add(struct swit_host_s *h, const swit__icpt_ops *ops, void *hs);

/* Per worker (worker.c). */
int swit__icpt_worker_init(struct swit__worker *w);
void swit__icpt_worker_free(struct swit__worker *w);
/* Interceptor k's state on worker w (NULL if it keeps none). */
void *swit__icpt_ws(const struct swit__worker *w, int k);

/* The message path (worker.c, settle.c, txn.c). */
void swit__icpt_batch_before(struct swit__worker *w, size_t n);
void swit__icpt_batch_after(struct swit__worker *w, size_t n, uint64_t now_us);
void swit__icpt_mark(struct swit__worker *w, uint32_t i, int end);
void swit__icpt_settled(struct swit__worker *w, const struct swit__item *it,
                        int outcome);
/* Fill `carry` (SWIT__CARRY_MAX bytes) for message i of the batch. */
void swit__icpt_carry_save(struct swit__worker *w, uint32_t i,
                           unsigned char *carry);
/* The carry kept with batch slot i (loaded from a retry), or NULL when
 * the slot holds a fresh delivery. For interceptors: their own part is
 * at their carry offset. */
const unsigned char *swit__icpt_carry(const struct swit__worker *w,
                                      uint32_t i, int k);
/* Slot i of the next batch continues a message kept with `carry`
 * (NULL: a fresh delivery). */
void swit__icpt_carry_load(struct swit__worker *w, uint32_t i,
                           const unsigned char *carry);
/* Move slot `from`'s carry to slot `to` (a batch being compacted). */
void swit__icpt_carry_move(struct swit__worker *w, uint32_t from, uint32_t to);

/* The intake path (dispatch.c, settle.c). swit__icpt_intake: 1 when an
 * interceptor took the delivery, 0 when the core routes it. */
int swit__icpt_intake(struct swit_host_s *h, struct swit__sub *sub,
                      const struct swit_delivery *d, size_t n);
void swit__icpt_released(struct swit_host_s *h, struct swit__sub *sub,
                         size_t n);

/* The publish path (publish.c). */
const swit_msg_view *swit__icpt_publish_before(struct swit_host_s *h,
                                               const swit_msg_view *m,
                                               size_t n,
                                               const swit__pub_info *pi,
                                               int *rc, char *err,
                                               size_t errlen);
void swit__icpt_publish_after(struct swit_host_s *h, const swit_msg_view *m,
                              size_t n, int rc, uint64_t us);

#endif /* SWIT_INTERCEPT_H */
