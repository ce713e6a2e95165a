/*
 * host_int.h - internal types shared by the core's files: the host, its
 * subscriptions, worker queues and workers. Not API (see swit.h).
 *
 * Threads: the embedder's thread runs swit_host_* calls; adapter threads
 * run the dispatcher sink (dispatch.c); each worker thread runs one
 * worker (worker.c) and is the only thread to touch its lua_State,
 * its batch, its arena and its retry heap.
 */
#ifndef SWIT_HOST_INT_H
#define SWIT_HOST_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "swit/swit.h"
#include "swit_ffi.h"
#include "core/broker.h"
#include "config/config.h"
#include "base/log.h"
#include "core/intercept.h"

typedef struct lua_State lua_State;
struct swit__codeset;
struct swit__buf;

/* Subscription ids are stable for the life of a host (never reused), so a
 * reload can add and remove handlers without renumbering: at most this
 * many distinct subscriptions per host. */
#define SWIT__MAX_SUBS 1024

/* A registration as read from Lua (defaults not yet applied). */
typedef struct swit__subdef {
  char *topic, *group, *dead_letter;
  char *script;               /* chunk name of the script that called
                                 swit.on ("@path"), NULL for C handlers */
  int ordering, exactly_once, jetstream;
  int from;                   /* SWIT_FROM_* (C handlers) */
  uint32_t max_attempts;
} swit__subdef;

/* ---------------------------------------------------------------------
 * Subscriptions */

typedef struct swit__sub {
  uint32_t id;                /* 1-based; Lua's handler table index */
  char *topic;
  char *group;
  char *dead_letter;          /* "<topic>.dlq" unless given */
  int ordering;               /* SWIT_ORDER_* */
  int exactly_once;
  int jetstream;              /* -1 unset */
  int from;                   /* SWIT_FROM_*: where a new group starts */
  uint32_t max_attempts;
  const swit_cfg_subscriber *scfg;
  swit_handler_cb ccb;        /* C handler, or NULL for a Lua one */
  void *cud;
  struct swit_host_s *host;
  void *handle;               /* the adapter's; kept after unsubscribe for
                                 settles of what is still in flight */
  atomic_int subscribed;      /* the adapter delivers to handle */
  atomic_int active;          /* subscribed; 0 once a reload removed it */
  atomic_int_fast64_t inflight; /* delivered, not settled */
  atomic_uint rr;             /* round-robin cursor */
  atomic_int paused_by;       /* workers above high-water for this sub */
  pthread_mutex_t pause_lock; /* serialises adapter pause/resume */
  int adapter_paused;         /* under pause_lock */
  atomic_uint pauses;         /* backpressure pauses (metrics) */
  atomic_int admin_paused;    /* paused by POST /admin/.../pause */
} swit__sub;

/* One queued delivery: 40 bytes, copied by value into worker queues. */
typedef struct swit__item {
  const swit_msg_view *msg;
  uint64_t token;
  swit__sub *sub;
  const char *reject;         /* from the adapter: dead-letter unhandled */
  uint32_t attempt;
  uint32_t recv_us;           /* low 32 bits of swit__now_us() at receipt */
} swit__item;

/* ---------------------------------------------------------------------
 * Worker queue (queue.c): bounded ring, many producers, one consumer. */

typedef struct swit__queue {
  pthread_mutex_t lock;
  pthread_cond_t not_empty;   /* the worker waits here */
  pthread_cond_t not_full;    /* producers beyond capacity wait here */
  swit__item *ring;
  uint32_t cap, head, count;  /* head: next to pop */
  uint32_t high, low;         /* pause at >= high, resume at <= low */
  int consumer_waiting;
  int producers_waiting;
  int closed;
  uint8_t *paused;            /* [SWIT__MAX_SUBS + 1]: this queue paused sub i */
  uint32_t npaused;
  int kicked;
} swit__queue;

void swit__mutex_init_fast(pthread_mutex_t *m);
int swit__queue_init(swit__queue *q, uint32_t cap, uint32_t high,
                     uint32_t low);
void swit__queue_destroy(swit__queue *q);

/* ---------------------------------------------------------------------
 * Retry heap (retry.c): per worker, ordered by due time. */

typedef struct swit__retry {
  int64_t due_ms;
  swit__item item;
  char *dlq_reason;  /* set when only the dead-letter publish is pending */
  unsigned char carry[SWIT__CARRY_MAX]; /* the interceptors' (intercept.h) */
} swit__retry;

typedef struct swit__retry_heap {
  swit__retry *v;
  size_t n, cap;
} swit__retry_heap;

int swit__retry_push(swit__retry_heap *h, const swit__retry *r);
/* Pop the earliest entry if due at `now_ms`; 1 if popped. */
int swit__retry_pop_due(swit__retry_heap *h, int64_t now_ms, swit__retry *out);
int64_t swit__retry_next_due(const swit__retry_heap *h); /* -1 if empty */
void swit__retry_free(swit__retry_heap *h);
int64_t swit__retry_backoff_ms(const swit_cfg_subscriber *s, uint32_t attempt,
                               uint64_t *rng);

/* ---------------------------------------------------------------------
 * Workers */

typedef struct swit__arena_chunk {
  struct swit__arena_chunk *next;
  size_t cap, used;
  char data[];
} swit__arena_chunk;

/* Exactly-once (txn.c): a (subscription, partition) whose oldest
 * unfinished message (token) waits for its retry; the later messages of
 * that partition wait here, in order, until it is finished. */
typedef struct swit__hold {
  struct swit__sub *sub;
  int32_t partition;
  uint64_t token;
  swit__item *items;
  size_t n, cap;
} swit__hold;

typedef struct swit__wtxn {
  swit__item *stash;          /* [batch]: the batch's exactly_once items */
  swit_txn_msg *msgs;         /* [batch]: what a transaction covers */
  swit__hold *holds;
  size_t nholds, capholds;
  swit__item *ready;          /* released by a finished hold, in order */
  size_t nready, capready, readyhead;
} swit__wtxn;

typedef struct swit__worker {
  swit_ffi_worker ffi;        /* first: what Lua sees */
  struct swit_host_s *host;
  uint32_t id;
  pthread_t thread;
  int thread_started;
  swit__queue q;
  lua_State *L;               /* NULL when no Lua scripts */
  int dispatch_ref;           /* the swit module's dispatch, registry ref */
  const struct swit__sub_scripts *scripts; /* L's, by sub id (lua_state.c) */
  atomic_uint seen_gen;       /* last generation this worker acted on */
  lua_State *_Atomic next_L;  /* prebuilt by a reload, taken at the swap */
  lua_State *_Atomic old_L;   /* left by the swap for the reload to close */
  swit__item *items;          /* the batch, parallel to ffi.msgs */
  swit__item *items_spare;    /* [batch]: stop's scratch (abandon) */
  int abandoned;              /* left behind by a stop (still running) */
  swit__arena_chunk *arena;   /* set_header / reason copies, reset per batch */
  swit__retry_heap retries;
  swit_settle *settles;       /* settle run buffer [batch] */
  swit_header *dlq_headers;   /* dead-letter header scratch */
  size_t dlq_headers_cap;
  uint64_t rng;
  uint32_t serial;            /* the last delivery's (swit_ffi_msg.serial) */
  int64_t next_timer_ms;      /* worker 0: next swit.every due, -1 none */
  uint64_t handler_us;        /* this batch: its handler time / messages
                                 whose handler ran */
  /* what the batch runs now, for /healthz (health.c) and log lines */
  _Atomic int64_t busy_since_us;    /* batch start, 0 when idle */
  _Atomic uint32_t busy_sub;        /* first message's subscription */
  _Atomic(const char *) busy_script;/* the script of its handler, or NULL
                                       (C handler); host-lived string */
  _Atomic int busy_kind;            /* SWIT__BUSY_*: what busy_since times */
  atomic_int stuck;                 /* past handler_timeout (watchdog.c) */
  atomic_int in_lua;                /* inside a guarded Lua call (runtime) */
  void *icpt_ws[SWIT__ICPT_MAX];    /* each interceptor's worker state */
  unsigned char *carry;       /* [batch][SWIT__CARRY_MAX] (intercept.c) */
  uint8_t *carried;           /* [batch]: slot i continues a kept message */
  swit__wtxn txn;             /* exactly_once subscriptions (txn.c) */
} swit__worker;

/* For msgs_before hooks (intercept.h): message i of w's batch was refused
 * by an earlier interceptor; refuse it (after swit__msg_set_result). */
static inline int swit__icpt_refused(const swit__worker *w, uint32_t i)
{
  return (w->ffi.msgs[i].flags & SWIT_MSG_F_REJECTED) != 0;
}

static inline void swit__icpt_refuse(swit__worker *w, uint32_t i)
{
  w->ffi.msgs[i].flags |= SWIT_MSG_F_REJECTED;
}

/* ---------------------------------------------------------------------
 * The handler runtime (runtime/: Lua), as the workers see it. The layer
 * above sets h->runner before the workers start; the core calls through
 * it and includes nothing of the runtime. Every call is on the worker's
 * own thread. */
typedef struct swit__runner {
  /* Run the handlers of the n messages of w->ffi.msgs that are for the
   * runtime (one call per batch); results go into the messages. */
  int (*dispatch)(struct swit__worker *w, uint32_t n);
  /* Worker 0, once before the first batch: on_start functions; 0 or -1. */
  int (*on_start)(struct swit__worker *w);
  /* Worker 0: run due timers; the next due time (monotonic ms) or -1. */
  int64_t (*timers)(struct swit__worker *w, int64_t now_ms);
  /* Between two batches: take a newer code generation if one waits. */
  void (*swap)(struct swit__worker *w);
  /* The script whose handler serves subscription `sub`, or NULL. */
  const char *(*script_of)(const struct swit__worker *w, uint32_t sub);
  /* The worker is being freed: close its states. */
  void (*worker_free)(struct swit__worker *w);
  /* Any thread: make the worker's running Lua call fail at its next
   * interpreted instruction (it ran past lua.limits.handler_timeout). */
  void (*interrupt)(struct swit__worker *w);
} swit__runner;

/* ---------------------------------------------------------------------
 * The host */

enum { SWIT__NEW, SWIT__RUNNING, SWIT__DRAINING, SWIT__STOPPED };

typedef struct swit__chandler {
  char *topic, *group;
  int ordering, from;
  swit_handler_cb cb;
  void *ud;
} swit__chandler;

struct swit_host_s {
  swit_config *cfg;
  swit__logger log;
  const swit_broker_ops *ops;
  swit_broker *broker;
  void *broker_settings;
  atomic_int connected;

  swit__chandler *chandlers;
  size_t nchandlers;

  swit__sub **subs;           /* [SWIT__MAX_SUBS]; subs[i]->id == i + 1 */
  size_t nsubs;               /* ever created; only `active` ones run */
  struct swit__name *_Atomic script_names; /* swit__subs_script (subs.c) */
  int has_chandlers;

  swit__worker *workers;
  size_t nworkers;
  uint32_t batch_size;

  atomic_int state;           /* SWIT__* */
  int client_only;            /* swit_host_client_only: no scripts, no
                                 servers, one worker */
  atomic_int intake_busy;     /* ingress requests between their state
                                 check and their publish's return */
  atomic_int go;              /* workers may start dispatching */
  atomic_int_fast64_t inflight;      /* delivered, not yet settled */
  atomic_int_fast64_t last_activity_ms;
  atomic_int on_start_done;   /* 0 pending, 1 ok, -1 failed */
  atomic_int has_txn;         /* some subscription is exactly_once */
  atomic_uint_fast64_t txn_commits, txn_aborts; /* metrics */
  atomic_int conn_state;      /* swit_conn_state, reported by the adapter */
  atomic_uint reconnects;     /* reconnect attempts so far */
  atomic_uint_fast64_t jitter_seed;
  pthread_mutex_t lock;       /* start/stop */

  /* code generations (reload.c) */
  struct swit__codeset *code;        /* current generation's code, NULL: no Lua */
  struct swit__codeset *prev_code;   /* the previous good generation (rollback) */
  atomic_uint generation;     /* 1 at start, +1 per accepted reload */
  pthread_mutex_t reload_lock;/* one reload at a time; others queue */
  pthread_mutex_t swap_lock;  /* with swap_cv: workers report swaps */
  pthread_cond_t swap_cv;
  atomic_uint reloads_ok, reloads_failed;
  atomic_uint lua_memory_exceeded; /* calls failed on lua.limits.memory */
  struct swit__watch *watch;  /* lua.hot_reload.watch (watch.c) */
  const struct swit__runner *runner; /* the handler runtime (Lua) */
  swit__icpt_chain icpt;      /* C middleware (intercept.h) */
  struct swit__obs *obs;      /* admin server, metrics (obs/obs.h) */
  struct swit__tracer *tracer;/* tracing (obs/trace.h); NULL when off */
  struct swit__watchdog *watchdog; /* watchdog.c */
  size_t abandoned;           /* workers a stop left running (never freed) */
  atomic_int stop_requested;  /* os.exit() from a script (lua_state.c) */
  atomic_int stop_code;       /* the code it gave */
  struct swit__sec *sec;      /* message security, audit (sec/sec.h); NULL when off */
  struct swit__resil *resil;  /* circuit breakers (resil/resil.h) */
  struct swit__testrec *testrec; /* swit test's recorder (api/testrec.c); NULL */
  /* test mode's clock (swit_host_test_advance): ms added to the time
   * swit.every timers see, and the last skew worker 0 ran its timers at */
  atomic_int_fast64_t timer_skew_ms;
  atomic_int_fast64_t timer_skew_seen;
};

/* What a worker's busy_since_us times. */
enum { SWIT__BUSY_BATCH = 0, SWIT__BUSY_ON_START, SWIT__BUSY_TIMER };

/* watchdog.c: one thread per host while the workers run. A worker busy
 * past lua.limits.handler_timeout is marked stuck (the dispatcher gives
 * it no unordered work), logged once, and interrupted through the runner
 * on every tick until it is free again. */
int swit__watchdog_start(struct swit_host_s *h, char *err, size_t errlen);
void swit__watchdog_stop(struct swit_host_s *h);

/* A result only the host sets: give the message back to the broker
 * unhandled (its subscription was removed by a reload). */
#define SWIT__RES_GIVE_BACK 16

/* dispatch.c */
void swit__dispatch_sink(void *sub, const swit_delivery *d, size_t n);
/* Route n delivered messages of `sub` (already counted in its inflight)
 * to the worker queues, in order; blocks while a queue is full beyond its
 * slack. The sink's second half, for an intake interceptor that held
 * them (core/intercept.h). */
void swit__dispatch_route(swit__sub *sub, const swit_delivery *d, size_t n);
/* Called by a worker after popping: resume what it paused. */
void swit__sub_reconcile_pause(swit__sub *sub);
uint32_t swit__key_hash(const char *key, size_t len);

/* queue.c. Push never drops: past `cap` the producer waits for room.
 * Returns 1 when this push took the queue to high-water for `sub` (the
 * caller then pauses it). */
int swit__queue_push(swit__queue *q, const swit__sub *sub,
                     const swit__item *items, size_t n);
/* Pop up to max items; waits until something arrives, `deadline_ms`
 * (monotonic, -1 = none) passes, or the queue is closed or kicked. Sub ids
 * this queue had paused and that may now resume are written to
 * `resumed` (room for SWIT__MAX_SUBS) and counted in *nresumed. */
size_t swit__queue_pop(swit__queue *q, swit__item *out, size_t max,
                       int64_t deadline_ms, uint32_t *resumed,
                       size_t *nresumed);
/* Wake the consumer without an item (timers, stop). */
void swit__queue_kick(swit__queue *q);
void swit__queue_close(swit__queue *q);
int swit__queue_closed(swit__queue *q);
size_t swit__queue_take_all(swit__queue *q, swit__item *out, size_t max);
uint32_t swit__queue_depth(swit__queue *q);

/* worker.c */
int swit__workers_create(struct swit_host_s *h, char *err, size_t errlen);
int swit__workers_init_queues(struct swit_host_s *h, char *err, size_t errlen);
int swit__workers_start(struct swit_host_s *h, char *err, size_t errlen);
/* Close every queue and join each worker by `end`; past it, one still
 * running is asked to stop at its next message boundary, interrupted
 * SWIT__STOP_GRACE_MS later, and left behind (its queue given back) one
 * grace after that (worker.c). Returns how many were left behind: the
 * host must then not be freed (a thread still runs in it). */
#define SWIT__STOP_GRACE_MS 1000
/* Past the stop's deadline: every worker stops at its next message
 * boundary and gives the rest back (before the adapters' unsubscribe,
 * which may wait for what is in flight). */
void swit__workers_halt(struct swit_host_s *h);
size_t swit__workers_stop(struct swit_host_s *h, swit__deadline end);
void swit__workers_free(struct swit_host_s *h);
char *swit__arena_dup(swit__worker *w, const char *s, size_t len);
void *swit__arena_alloc(swit__worker *w, size_t size);
/* Fill the batch from w->items[0..n) and run its handlers; results are
 * in w->ffi.msgs. */
void swit__worker_run_handlers(swit__worker *w, size_t n);
/* The Lua loop stopped at `from` (ffi.stop): give back from..n-1. */
void swit__worker_give_back(swit__worker *w, uint32_t from, uint32_t n);

/* settle.c: apply a finished batch's results */
void swit__settle_batch(swit__worker *w, size_t n);
void swit__settle_retry_due(swit__worker *w, swit__retry *r);
void swit__settle_requeue_all(swit__worker *w);
/* Publish the dead-letter copy of it (with confirm); 0 or an SWIT_E_*.
 * `carry`: what the interceptors kept with the message, or NULL. */
int swit__settle_dead_letter(swit__worker *w, const swit__item *it,
                             const unsigned char *carry, const char *reason,
                             size_t reason_len, char *err, size_t errlen);
/* Settle one message at once (ack or requeue). */
void swit__settle_one(swit__worker *w, const swit__item *it, int action);

/* txn.c: exactly_once subscriptions */
int swit__txn_worker_init(swit__worker *w);
void swit__txn_worker_free(swit__worker *w);
/* Move the exactly_once items of w->items[0..*n) aside (order kept);
 * *n becomes the number of the others, left at the front. Returns how
 * many were moved. */
size_t swit__txn_split(swit__worker *w, size_t *n);
/* Run the `n` items moved aside in transactions. */
void swit__txn_run(swit__worker *w, size_t n);
/* Items released by finished holds, for the next batch. */
size_t swit__txn_take_ready(swit__worker *w, swit__item *out, size_t max);
/* Everything parked or ready (shutdown: given back). */
size_t swit__txn_take_all(swit__worker *w, swit__item *out, size_t max);

/* publish.c */
int swit__publish(struct swit_host_s *h, const swit_msg_view *m,
                  int timeout_ms, uint64_t *confirm, char *err, size_t errlen);
/* A dead letter: timeout 0, confirm awaited, and `mandatory` (a copy no
 * queue would keep fails with SWIT_E_BROKER instead of being confirmed);
 * expiring after ttl_ms when > 0. */
int swit__publish_dead_letter(swit__worker *w, const swit_msg_view *m,
                              const unsigned char *carry, int64_t ttl_ms,
                              uint64_t *confirm, char *err, size_t errlen);

/* subs.c: the subscription table */
int swit__subs_init(struct swit_host_s *h);
void swit__subs_free(struct swit_host_s *h);
void swit__subs_truncate(struct swit_host_s *h, size_t keep);
void swit__subdefs_free(swit__subdef *defs, size_t n);
/* The name of a script that registers handlers, from its chunk name
 * ("@/srv/h.lua" -> "/srv/h.lua"): kept until the host is freed, so any
 * thread may read it while code generations come and go. NULL when out
 * of memory. */
const char *swit__subs_script(struct swit_host_s *h, const char *chunkname);
/* Apply defaults (group, dead letter, max_attempts) in place. */
int swit__subdef_defaults(struct swit_host_s *h, swit__subdef *d);
/* Map each def to an existing active subscription id, or 0 when new.
 * Errors: the same topic and group twice, a C handler's topic and group,
 * or an existing subscription with different options. */
int swit__subs_resolve(struct swit_host_s *h, const swit__subdef *defs,
                       size_t n, uint32_t *ids, char *err, size_t errlen);
int swit__subs_add(struct swit_host_s *h, const swit__subdef *d,
                   swit_handler_cb cb, void *ud, uint32_t *id);
int swit__subs_subscribe(struct swit_host_s *h, swit__sub *s, char *err,
                         size_t errlen);
void swit__subs_unsubscribe(struct swit_host_s *h, swit__sub *s);

/* conn.c */
void swit__conn_env(struct swit_host_s *h, swit_broker_env *env);
const char *swit__conn_state_name(int state);

/* brokers.c (generated list of compiled-in adapters) */
const swit_broker_ops *swit__broker_find(const char *name);


#endif /* SWIT_HOST_INT_H */
