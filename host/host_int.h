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
#include "broker.h"
#include "config.h"
#include "log.h"

typedef struct lua_State lua_State;

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
  uint32_t max_attempts;
  const swit_cfg_subscriber *scfg;
  swit_handler_cb ccb;        /* C handler, or NULL for a Lua one */
  void *cud;
  struct swit_host_s *host;
  void *handle;               /* the adapter's, once subscribed */
  atomic_uint rr;             /* round-robin cursor */
  atomic_int paused_by;       /* workers above high-water for this sub */
  pthread_mutex_t pause_lock; /* serialises adapter pause/resume */
  int adapter_paused;         /* under pause_lock */
} swit__sub;

/* One queued delivery: 40 bytes, copied by value into worker queues. */
typedef struct swit__item {
  const swit_msg_view *msg;
  uint64_t token;
  swit__sub *sub;
  const char *reject;         /* from the adapter: dead-letter unhandled */
  uint32_t attempt;
  uint32_t pad;
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
  uint8_t *paused;            /* [nsubs + 1]: this queue paused sub i */
  uint32_t npaused;
  uint32_t nsubs;
  int kicked;
} swit__queue;

void swit__mutex_init_fast(pthread_mutex_t *m);
int swit__queue_init(swit__queue *q, uint32_t cap, uint32_t high,
                     uint32_t low, uint32_t nsubs);
void swit__queue_destroy(swit__queue *q);

/* ---------------------------------------------------------------------
 * Retry heap (retry.c): per worker, ordered by due time. */

typedef struct swit__retry {
  int64_t due_ms;
  swit__item item;
  char *dlq_reason;  /* set when only the dead-letter publish is pending */
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

typedef struct swit__worker {
  swit_ffi_worker ffi;        /* first: what Lua sees */
  struct swit_host_s *host;
  uint32_t id;
  pthread_t thread;
  int thread_started;
  swit__queue q;
  lua_State *L;               /* NULL when no Lua scripts */
  int dispatch_ref;           /* swit._dispatch in the registry */
  swit__item *items;          /* the batch, parallel to ffi.msgs */
  swit__arena_chunk *arena;   /* set_header / reason copies, reset per batch */
  swit__retry_heap retries;
  swit_settle *settles;       /* settle run buffer [batch] */
  swit_header *dlq_headers;   /* dead-letter header scratch */
  size_t dlq_headers_cap;
  uint64_t rng;
  int64_t next_timer_ms;      /* worker 0: next swit.every due, -1 none */
} swit__worker;

/* ---------------------------------------------------------------------
 * The host */

enum { SWIT__NEW, SWIT__RUNNING, SWIT__DRAINING, SWIT__STOPPED };

typedef struct swit__chandler {
  char *topic, *group;
  int ordering;
  swit_handler_cb cb;
  void *ud;
} swit__chandler;

struct swit_host_s {
  swit_config *cfg;
  swit__logger log;
  const swit_broker_ops *ops;
  swit_broker *broker;
  void *broker_settings;
  int connected;

  swit__chandler *chandlers;
  size_t nchandlers;

  swit__sub **subs;           /* subs[i]->id == i + 1 */
  size_t nsubs, nlua_subs;

  swit__worker *workers;
  size_t nworkers;
  uint32_t batch_size;

  atomic_int state;           /* SWIT__* */
  atomic_int go;              /* workers may start dispatching */
  atomic_int_fast64_t inflight;      /* delivered, not yet settled */
  atomic_int_fast64_t last_activity_ms;
  atomic_int on_start_done;   /* 0 pending, 1 ok, -1 failed */
  atomic_int conn_state;      /* swit_conn_state, reported by the adapter */
  atomic_uint reconnects;     /* reconnect attempts so far */
  atomic_uint_fast64_t jitter_seed;
  pthread_mutex_t lock;       /* start/stop */
};

/* time.c-style helpers live in log.h: swit__now_ms(). */

/* dispatch.c */
void swit__dispatch_sink(void *sub, const swit_delivery *d, size_t n);
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
 * `resumed` (room for nsubs) and counted in *nresumed. */
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
void swit__workers_stop(struct swit_host_s *h);
void swit__workers_free(struct swit_host_s *h);
char *swit__arena_dup(swit__worker *w, const char *s, size_t len);
void *swit__arena_alloc(swit__worker *w, size_t size);

/* settle.c: apply a finished batch's results */
void swit__settle_batch(swit__worker *w, size_t n);
void swit__settle_retry_due(swit__worker *w, swit__retry *r);
void swit__settle_requeue_all(swit__worker *w);

/* publish.c */
int swit__publish(struct swit_host_s *h, const swit_msg_view *m,
                  int timeout_ms, uint64_t *confirm, char *err, size_t errlen);

/* lua_state.c */
lua_State *swit__lua_new_state(struct swit_host_s *h, swit__worker *w,
                               char *err, size_t errlen);
int swit__lua_registrations(struct swit_host_s *h, lua_State *L,
                            char *err, size_t errlen);
int swit__lua_dispatch(swit__worker *w, uint32_t n);
int swit__lua_on_start(swit__worker *w);
int64_t swit__lua_timers(swit__worker *w, int64_t now_ms);
void swit__lua_close(swit__worker *w);
int swit__lua_bind_dispatch(swit__worker *w);

/* host.c: allocate the subscription table for `nlua` Lua registrations
 * followed by the C handlers registered with swit_host_handle(). */
int swit__subs_create(struct swit_host_s *h, size_t nlua);

/* The Lua modules compiled into the binary (generated by the build). */
typedef struct swit__lua_module {
  const char *name;        /* "swit" */
  const char *chunkname;   /* "=swit/init.lua" */
  const unsigned char *src;
  size_t len;
} swit__lua_module;
extern const swit__lua_module swit__lua_modules[]; /* name == NULL ends */

/* conn.c */
void swit__conn_env(struct swit_host_s *h, swit_broker_env *env);
const char *swit__conn_state_name(int state);

/* brokers.c (generated list of compiled-in adapters) */
const swit_broker_ops *swit__broker_find(const char *name);

#endif /* SWIT_HOST_INT_H */
