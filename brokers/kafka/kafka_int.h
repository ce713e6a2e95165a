/*
 * kafka_int.h - internals of the Kafka adapter, shared by its files:
 *   kafka_broker.c  the ops table, create/destroy, connect/disconnect
 *   kafka_conf.c    messaging.broker.config -> librdkafka confs + swit keys
 *   kafka_health.c  connection state, health, librdkafka log/error/stats
 *   kafka_producer.c publishing, delivery reports (confirms), flush
 *   kafka_group.c   consumer groups: subscribe/unsubscribe, pause/resume
 *   kafka_poll.c    a group's poll thread: deliveries, backpressure
 *   kafka_offsets.c per-partition settle windows, settle, commits and the
 *                   rebalance callback
 *   kafka_txn.c     transactions of exactly_once subscriptions: one
 *                   transactional producer per worker
 *
 * Threads: each consumer group has one poll thread (kafka_poll.c) that
 * alone calls rd_kafka_consumer_poll on its handle, so every rebalance
 * and commit callback of a group runs there. The producer has one poll
 * thread serving delivery reports, errors and statistics. Core threads
 * call the ops (publish, settle, pause, ...) from anywhere.
 *
 * Locks, outermost first: b->groups_mu (subscribe/unsubscribe/disconnect
 * only), a group's g->mu (its subscriptions, partitions, windows, message
 * records; held across rd_kafka_assign, _subscribe, _pause_partitions,
 * _resume_partitions and _seek_partitions, none of which waits for our
 * callbacks), b->prod_lock (the producer's open state and topic handles,
 * read-locked by publishers), b->conf_mu (confirm waiters, delivery
 * failure counts), b->state_mu. No adapter lock is held while a sink
 * runs.
 *
 * Ownership: the broker owns its groups; a group owns its rd_kafka_t, its
 * subscriptions (kept until destroy, so late settles find them), its
 * partitions and its message records. A delivered message's record (the
 * token) owns its rd_kafka_message_t until the settle destroys it. A
 * partition revoked while messages are in flight is detached and freed by
 * the settle of its last message.
 */
#ifndef SWIT_KAFKA_INT_H
#define SWIT_KAFKA_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "kafka_broker.h"

enum {
  KAFKA_BATCH = 256,        /* messages per sink call, at most */
  KAFKA_POLL_MS = 100,      /* poll timeout: how fast a stop is seen */
  KAFKA_INLINE_HEADERS = 4, /* header slots inside a message record */
  KAFKA_SLAB = 128,         /* message records per allocation */
  KAFKA_PAUSE_DELAY_MS = 100, /* a pause reaches librdkafka after this */
  KAFKA_RESUBSCRIBE_DELAY_MS = 500 /* unsubscribe -> rd_kafka_subscribe */
};

typedef struct swit_broker kbroker;
typedef struct kgroup kgroup;
typedef struct ksub ksub;
typedef struct kpart kpart;
typedef struct kmsg kmsg;

/* ---------------------------------------------------------------------
 * Settings (kafka_conf.c) */

typedef struct kconf {
  rd_kafka_conf_t *producer;    /* validated template, callbacks unset */
  rd_kafka_conf_t *consumer;    /* template; group.id set per group */
  char *default_group;          /* consumer_group, or NULL */
  int64_t commit_interval_ms;   /* auto.commit.interval.ms (1s default) */
  int64_t subscribe_timeout_ms; /* subscribe_timeout: wait for assignment */
  int64_t revoke_timeout_ms;    /* revoke_timeout: wait for in-flight */
  char *txn_prefix;             /* transactional_id: <prefix>-<worker> */
  int stats;                    /* statistics.interval.ms > 0 */
} kconf;

/* rd_kafka_new's error text -> SWIT_E_CONFIG naming the swit key */
int swit__kafka_new_fail(const char *text, char *err, size_t errlen);

/* From the host's environment; env->settings NULL: the defaults of
 * swit__kafka_config_fields. */
int swit__kafka_conf_build(kconf *kc, const swit_broker_env *env, char *err,
                           size_t errlen);
void swit__kafka_conf_free(kconf *kc);

/* ---------------------------------------------------------------------
 * Consumer side */

/* One delivered message: the token handed to the core. */
struct kmsg {
  swit_msg_view view;         /* what the core reads, until settle */
  rd_kafka_message_t *rkm;    /* owned until settle */
  kpart *part;
  uint64_t seq;               /* position in part's settle window */
  const char *reject;         /* NULL, or reject_buf */
  swit_header *hdrs;          /* inline_hdrs or a malloc'ed array */
  uint32_t hcap;
  kmsg *next_free;
  swit_header inline_hdrs[KAFKA_INLINE_HEADERS];
  char reject_buf[160];
};

/* Settled-offset tracking for one assigned partition: the delivered
 * messages in delivery (= offset) order, [head, tail) by sequence. */
typedef struct kwindow {
  int64_t *off;               /* offset of sequence s at [s & mask] */
  uint8_t *state;             /* KW_* of sequence s at [s & mask] */
  uint64_t head, tail, mask;  /* capacity mask + 1, a power of two */
} kwindow;

/* KW_TXN: finished by a transaction that has not committed yet. */
enum { KW_OPEN = 0, KW_DONE = 1, KW_HELD = 2, KW_TXN = 3 };

struct kpart {
  ksub *sub;
  int32_t partition;
  int owned;                  /* assigned to us (not yet revoked) */
  int revoking;               /* revoke in progress: deliver nothing */
  kwindow win;
  int64_t frontier;           /* highest contiguous settled offset + 1, -1 none */
  int64_t hold;               /* a requeued offset commits never pass, -1 none */
  int64_t committed;          /* last value sent in a commit, -1 none */
  uint64_t inflight;          /* delivered, not settled */
};

struct ksub {
  kgroup *g;
  char *topic;
  uint32_t topic_len;
  rd_kafka_topic_t *rkt;      /* cache: handle of this topic's messages */
  swit_sink_fn sink;
  void *sink_ud;
  int paused;                 /* what the core asked for */
  int applied;                /* what librdkafka was told (poll thread) */
  int64_t pause_at;           /* when the core asked for the pause */
  int active, dead;
  int eos;                    /* exactly_once: offsets commit in transactions */
  kpart **parts;              /* owned partitions by number, or NULL */
  int32_t nparts;
  ksub *next;
};

struct kgroup {
  kbroker *b;
  char *name;
  rd_kafka_t *rk;
  rd_kafka_queue_t *queue;    /* the consumer queue (for yield) */
  int cooperative;            /* incremental rebalance protocol */
  int from;                   /* SWIT_FROM_*: auto.offset.reset of a new
                                 group (its first subscription's) */
  pthread_t thread;
  int thread_started;
  int closed;                 /* stopping or stopped (under mu) */
  atomic_int stop;
  pthread_mutex_t mu;
  pthread_cond_t cv;          /* settles, sink ends, assignments */
  unsigned sync;              /* which of mu/cv are initialised */
  ksub *subs;                 /* live and dead, newest first */
  uint64_t inflight;          /* delivered, not settled, all partitions */
  uint64_t pauses;            /* backpressure pauses, logged at close */
  int sinking;                /* the poll thread is inside sink calls */
  int pause_dirty;            /* some sub's paused != applied */
  int64_t resub_at;           /* resubscribe then (poll thread), 0 none */
  int waiters;                /* threads waiting on cv */
  kmsg *free_msgs;
  kmsg **slabs;               /* records, KAFKA_SLAB per allocation */
  size_t nslabs, slabs_cap;
  /* the poll thread's batch */
  rd_kafka_message_t *pending[KAFKA_BATCH];
  size_t npending;
  kmsg *recs[KAFKA_BATCH];
  swit_delivery deliveries[KAFKA_BATCH];
  int64_t next_commit_ms;
  kgroup *next;
};

/* kafka_group.c: the subscription ops and group lifecycle */
int swit__kafka_subscribe(kbroker *b, const swit_sub_spec *spec,
                          swit_sink_fn sink, void *sink_ud, void **handle,
                          char *err, size_t errlen);
int swit__kafka_unsubscribe(kbroker *b, void *handle);
int swit__kafka_pause(kbroker *b, void *handle, int pause);
/* Stop every group's poll thread and destroy its handle (disconnect). */
void swit__kafka_groups_close(kbroker *b);
void swit__kafka_groups_free(kbroker *b);
/* Subscribe the consumer to the topics of the group's live subs. */
int swit__kafka_group_resubscribe(kgroup *g, char *err, size_t errlen);

/* kafka_poll.c: the poll thread */
void *swit__kafka_poll_main(void *group);
/* Nonzero on g's poll thread. */
int swit__kafka_on_poll_thread(const kgroup *g);
/* Hand the poll thread's pending messages to the sinks (poll thread). */
void swit__kafka_deliver_pending(kgroup *g);
/* Free the group's message records (destroy, after the thread stopped). */
void swit__kafka_recs_free(kgroup *g);

/* kafka_offsets.c */
int swit__kafka_settle(kbroker *b, void *handle, const swit_settle *s,
                       size_t n);
/* Register a delivered message in its partition's window; g->mu held.
 * 0, or SWIT_E_NOMEM. */
int swit__kafka_window_push(kpart *p, int64_t offset, uint64_t *seq);
void swit__kafka_part_free(kpart *p);
/* Commit what advanced since the last commit (poll thread). */
void swit__kafka_commit(kgroup *g, int async);
void swit__kafka_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                              rd_kafka_topic_partition_list_t *parts,
                              void *opaque);
void swit__kafka_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t *offsets,
                           void *opaque);
/* Transactions: mark (on = 1) or unmark a message as finished by an open
 * transaction, and the offset its partition commits once the marked
 * messages are done (-1: nothing new). g->mu held. */
void swit__kafka_txn_mark(kmsg *r, int on);
int64_t swit__kafka_txn_point(const kpart *p);

/* ---------------------------------------------------------------------
 * Producer side (kafka_producer.c) */

typedef struct ktopic {
  char *name;
  uint32_t len;
  rd_kafka_topic_t *rkt;
} ktopic;

int swit__kafka_producer_start(kbroker *b, char *err, size_t errlen);
void swit__kafka_producer_stop(kbroker *b);
int swit__kafka_publish(kbroker *b, const swit_msg_view *msgs, size_t n,
                        const swit_publish_opts *o, uint64_t *confirm_ids,
                        char *err, size_t errlen);
int swit__kafka_flush(kbroker *b, int timeout_ms);
void swit__kafka_topics_free(kbroker *b);
/* Shared with kafka_txn.c */
rd_kafka_headers_t *swit__kafka_headers(const swit_msg_view *m);
int swit__kafka_produce_error(rd_kafka_resp_err_t e, const swit_msg_view *m,
                              char *err, size_t errlen);

/* ---------------------------------------------------------------------
 * Transactions (kafka_txn.c) */

typedef struct ktxn {
  rd_kafka_t *rk;             /* transactional producer, or NULL */
  int ready;                  /* init_transactions done */
  int open;                   /* a transaction is open */
  uint64_t commits, aborts;
} ktxn;

int swit__kafka_txn_begin(kbroker *b, uint32_t worker, char *err,
                          size_t errlen);
int swit__kafka_txn_end(kbroker *b, uint32_t worker, const swit_txn_msg *msgs,
                        size_t n, int commit, char *err, size_t errlen);
/* The calling thread's open transactional producer, or NULL. */
rd_kafka_t *swit__kafka_txn_current(kbroker *b);
int swit__kafka_txn_publish(kbroker *b, rd_kafka_t *rk,
                            const swit_msg_view *msgs, size_t n, char *err,
                            size_t errlen);
int swit__kafka_txns_init(kbroker *b);
void swit__kafka_txns_free(kbroker *b);

/* ---------------------------------------------------------------------
 * Health (kafka_health.c) */

/* Install the log, error and (producer) stats callbacks on a conf whose
 * opaque is `b` (producer) or a group (consumer). */
void swit__kafka_conf_callbacks(rd_kafka_conf_t *conf, int producer);
void swit__kafka_state(kbroker *b, swit_conn_state s, const char *detail);
int swit__kafka_health(kbroker *b, char *detail, size_t len);
/* Log through the host, if it gave a logger. */
#define KAFKA_LOG(b, level, ...)                                       \
  do {                                                                 \
    if ((b)->env.log)                                                  \
      (b)->env.log((b)->env.log_ud, (level), __VA_ARGS__);             \
  } while (0)

/* ---------------------------------------------------------------------
 * The broker */

struct swit_broker {
  swit_broker_env env;
  kconf conf;
  int64_t max_message_size;   /* <= 0: no limit */
  int64_t confirm_timeout_ms; /* publishers.default.timeout */
  unsigned sync;              /* which locks below are initialised */

  pthread_mutex_t life;       /* connect/disconnect */
  int connected;

  /* producer */
  rd_kafka_t *producer;
  pthread_t prod_thread;
  int prod_started;
  atomic_int prod_stop;
  pthread_rwlock_t prod_lock; /* prod_open and the topic table; publishers
                                 read-lock it for the whole call */
  int prod_open;              /* publishing allowed */
  ktopic *topics;             /* producer topic handles, creation order */
  size_t ntopics, topics_cap;
  uint32_t *topic_index;      /* open addressing: position + 1, 0 empty */
  size_t topic_index_cap;
  pthread_mutex_t conf_mu;    /* confirm waiters, delivery failures */
  pthread_cond_t conf_cv;
  uint64_t dr_failed;         /* unconfirmed messages that failed */
  uint64_t dr_logged;
  char dr_last[256];
  int64_t dr_log_ms;

  /* transactional producers, one per worker (kafka_txn.c) */
  ktxn *txns;
  size_t ntxns;

  /* consumer groups */
  pthread_mutex_t groups_mu;
  kgroup *groups;

  /* health */
  pthread_mutex_t state_mu;
  swit_conn_state state;
  uint32_t attempt;           /* failed attempts since last connected */
  char state_detail[256];
};

#endif /* SWIT_KAFKA_INT_H */
