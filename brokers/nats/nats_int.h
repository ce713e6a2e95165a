/*
 * nats_int.h - internals of the NATS adapter, shared by its files:
 *   nats_broker.c   the ops table, settings, create/destroy, health, flush
 *   nats_conn.c     cnats options, connect, the connection callbacks
 *                   (state machine, reconnect backoff, slow consumers),
 *                   drain and close
 *   nats_msg.c      deliveries: natsMsg -> swit_msg_view, the per
 *                   subscription pool, headers and the key header both ways
 *   nats_core.c     core NATS subscriptions (queue groups, at-most-once)
 *   nats_js.c       JetStream subscriptions: streams, durable pull
 *                   consumers, the fetch thread, ack/nak/term
 *   nats_publish.c  publish: core, JetStream async, JetStream with PubAck
 *
 * Threads: each subscription has one thread of ours that calls its sink,
 * in arrival order: a reader of a synchronous cnats subscription (core)
 * or a fetcher of a pull consumer (JetStream). cnats runs its own threads
 * for the socket and connection events (the callbacks in nats_conn.c).
 * Worker threads call settle and publish.
 *
 * Locks (never held while a sink runs): b->mu guards the subscription
 * list and is held briefly; s->mu guards one subscription's pause/stop
 * flags and wakes its fetch thread or its blocked core callback;
 * s->pool_mu guards its free deliveries and (JetStream) the list of held
 * ones; b->subj_mu the set of subjects
 * known to be captured by a stream.
 *
 * Ownership: the broker owns its subscriptions until destroy (a
 * natsSubscription must outlive every message it delivered, since acks
 * go through it). A delivery (nats_dlv) owns its natsMsg from the sink
 * call until settle, which acks or drops the message and returns the
 * delivery to its subscription's pool.
 */
#ifndef SWIT_NATS_INT_H
#define SWIT_NATS_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "nats_broker.h"

enum {
  NATS_INLINE_HDRS = 6,      /* headers a delivery holds without allocating */
  NATS_REASON_MAX = 160,     /* room for a reject reason */
  NATS_SUBJECT_MAX = 1024,   /* longest subject swit handles */
  NATS_KNOWN_SUBJECTS = 4096 /* subjects remembered as captured by a stream */
};

#define NATS_KEY_HEADER "Swit-Key"
#define NATS_KEY_B64_HEADER "Swit-Key-B64"

typedef struct swit_broker nats_broker;
typedef struct nats_sub nats_sub;
typedef struct nats_dlv nats_dlv;

/* One received message, from the sink call until settle. */
struct nats_dlv {
  swit_msg_view view;        /* what the core sees; points into msg */
  natsMsg *msg;
  nats_sub *sub;
  nats_dlv *next;            /* the pool's free list */
  nats_dlv *hprev, *hnext;   /* JetStream: the sub's held list (pool_mu) */
  int64_t since_ms;          /* JetStream: delivered or last kept alive */
  swit_header *hdrs;         /* inline_hdrs or heap (hdr_cap entries) */
  uint32_t hdr_cap;          /* heap capacity; 0 while inline */
  swit_header inline_hdrs[NATS_INLINE_HDRS];
  char *key;                 /* decoded Swit-Key-B64, reused */
  size_t key_cap;
  char reason[NATS_REASON_MAX]; /* swit_delivery.reject text */
  int action;                /* JetStream: its settle, SWIT_SETTLE_* */
  atomic_int out;            /* 1 from the sink call until its settle */
};

struct nats_sub {
  nats_broker *b;
  char *topic;
  char *group;
  int js;                    /* a JetStream subscription */
  swit_sink_fn sink;
  void *sink_ud;
  natsSubscription *ns;      /* current cnats subscription */
  natsSubscription **retired; /* replaced ones, destroyed with the sub */
  size_t nretired;

  pthread_mutex_t mu;
  pthread_cond_t cv;
  int paused;                /* under mu */
  atomic_int dead;           /* unsubscribed */
  int from;                  /* SWIT_FROM_*: JetStream deliver policy of a
                                new consumer */
  atomic_llong inflight;     /* delivered, not yet settled */
  atomic_llong requeue_dropped; /* core: requeues that cannot redeliver */
  atomic_llong late_dropped; /* core: of those, given back after it closed
                                (one log line at the first, the total at
                                free) */

  /* Our thread: the core reader or the JetStream fetcher */
  int stop;                  /* under mu: the thread must exit */
  pthread_t thread;
  int thread_started;
  swit_delivery *batch;      /* the thread's sink array */

  /* JetStream */
  char *stream, *durable;
  int64_t max_ack_pending;
  int64_t ack_wait_ms;
  atomic_int waiting_room;   /* the fetch thread waits for settles */
  int ready;                 /* consumer bound (fetch thread only after start) */

  pthread_mutex_t pool_mu;
  nats_dlv *pool;            /* free deliveries, settled by workers */
  nats_dlv *spare;           /* free deliveries of the receiving thread
                              * (no lock: only that thread touches it) */
  nats_dlv *held;            /* JetStream: delivered, not settled */
  nats_dlv *acks;            /* JetStream: settled, ack not sent yet */
  int acker;                 /* JetStream: the fetch thread is in a fetch
                              * and sends the queued acks when it returns
                              * (pool_mu); else settle sends them */
  int64_t next_touch_ms;     /* JetStream: next keep-alive scan (fetch thread) */
  atomic_llong last_warn_ms; /* rate limit of slow-consumer warnings */
  unsigned sync;             /* which of the locks are initialised */
  nats_sub *next;            /* the broker's list */
};

struct swit_broker {
  swit_broker_env env;
  swit_nats_settings st;     /* a copy; its strings belong to the core's
                                settings (alive until after destroy), or
                                to us when own_settings */
  int own_settings;          /* st was filled with defaults here */
  natsOptions *opts;
  natsConnection *nc;
  jsCtx *js;
  int64_t max_message_size;  /* <= 0: no limit */
  int64_t confirm_timeout_ms; /* publishers.default.timeout */
  int64_t shutdown_ms;       /* server.shutdown_timeout, bounds the drain */
  char servers_text[256];    /* for messages: "nats://a, nats://b" */

  pthread_mutex_t mu;        /* subs list; connect/disconnect */
  nats_sub *subs;
  atomic_int closing;        /* disconnect started: callbacks stay quiet */
  atomic_int closed;         /* the closed callback ran */
  atomic_int lost;           /* not connected: reconnecting reported */
  atomic_int js_used;        /* some JetStream use: health checks it */
  pthread_mutex_t js_mu;     /* js_ok and js_detail */
  int js_ok;                 /* last JetStream API call succeeded */
  char js_detail[256];       /* why not, for health */
  atomic_uint_fast64_t confirm_seq;
  atomic_llong async_pub_errors;
  pthread_mutex_t closed_mu;
  pthread_cond_t closed_cv;

  pthread_rwlock_t subj_mu;  /* known subjects (JetStream publish) */
  char **subjects;           /* open addressing, NATS_KNOWN_SUBJECTS * 2 */
  size_t nsubjects;
  unsigned sync;
};

/* Log through the host, if it gave a logger. */
#define NATS_LOG(b, level, ...)                                        \
  do {                                                                 \
    if ((b)->env.log)                                                  \
      (b)->env.log((b)->env.log_ud, (level), __VA_ARGS__);             \
  } while (0)

/* --- nats_broker.c -------------------------------------------------- */

/* cnats' own text for the last error on this thread, or the status text. */
const char *swit__nats_errtext(natsStatus s);
void swit__nats_report(nats_broker *b, swit_conn_state st, const char *detail);
/* Record whether JetStream answered (detail NULL) or why not: what
 * health reports. */
void swit__nats_js_status(nats_broker *b, const char *detail);

/* --- nats_conn.c ---------------------------------------------------- */

/* Build b->opts from the config. SWIT_E_CONFIG with the key on error. */
int swit__nats_options(nats_broker *b, char *err, size_t errlen);
int swit__nats_open(nats_broker *b, char *err, size_t errlen);
/* Drain and close the connection (bounded by shutdown_timeout). */
void swit__nats_close(nats_broker *b);
/* 0 if the server answers JetStream API requests, else SWIT_E_BROKER.
 * Records the outcome for health (a network round trip: not for the
 * health op itself, which only reads what was recorded). */
int swit__nats_js_check(nats_broker *b, char *err, size_t errlen);
int swit__nats_is_connected(nats_broker *b);

/* --- nats_msg.c ----------------------------------------------------- */

/* Receiving thread only (the core reader or the JetStream fetcher). */
nats_dlv *swit__nats_dlv_get(nats_sub *s);
/* Destroy the message and return d to the pool; any thread. */
void swit__nats_dlv_put(nats_sub *s, nats_dlv *d);
/* The same for the deliveries of n settles, taking the lock once. */
void swit__nats_dlv_put_settled(nats_sub *s, const swit_settle *st, size_t n);
void swit__nats_pool_free(nats_sub *s);
/* Point d's view at m (subject, payload, headers, key); sets *reject to
 * d->reason when the message is over max_message_size. SWIT_E_NOMEM. */
int swit__nats_dlv_fill(nats_broker *b, nats_dlv *d, natsMsg *m,
                        const char **reject);
/* A natsMsg for view v on subject `subj` (headers + key header), or a
 * message for err. */
int swit__nats_msg_build(const swit_msg_view *v, const char *subj,
                         natsMsg **out, char *err, size_t errlen);
/* Copy v's topic into buf as a C string and check it is publishable. */
int swit__nats_subject(const swit_msg_view *v, char *buf, size_t len,
                       char *err, size_t errlen);

/* --- nats_core.c ---------------------------------------------------- */

int swit__nats_core_subscribe(nats_broker *b, nats_sub *s, char *err,
                              size_t errlen);
void swit__nats_core_unsubscribe(nats_sub *s);
/* Stop the reader thread only (disconnect of a subscription still open). */
void swit__nats_core_stop(nats_sub *s);
void swit__nats_core_settle(nats_sub *s, const swit_settle *st, size_t n);
void swit__nats_core_set_paused(nats_sub *s, int paused);
/* The error handler's part for slow consumers of sub `ns`. */
void swit__nats_slow_consumer(nats_broker *b, natsSubscription *ns);

/* --- nats_js.c ------------------------------------------------------ */

int swit__nats_js_subscribe(nats_broker *b, nats_sub *s,
                            const swit_sub_spec *spec, char *err,
                            size_t errlen);
void swit__nats_js_unsubscribe(nats_sub *s);
void swit__nats_js_settle(nats_sub *s, const swit_settle *st, size_t n);
void swit__nats_js_set_paused(nats_sub *s, int paused);
/* Make sure a stream captures `subject` (creating one if allowed). */
int swit__nats_stream_for(nats_broker *b, const char *subject, char *name,
                          size_t namelen, int create, char *err,
                          size_t errlen);

/* --- nats_publish.c ------------------------------------------------- */

int swit__nats_publish(nats_broker *b, const swit_msg_view *msgs, size_t n,
                       const swit_publish_opts *o, uint64_t *confirm_ids,
                       char *err, size_t errlen);
void swit__nats_subjects_free(nats_broker *b);

#endif /* SWIT_NATS_INT_H */
