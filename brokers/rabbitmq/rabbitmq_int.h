/*
 * rabbitmq_int.h - internals of the RabbitMQ adapter, shared by its files:
 *   rabbitmq_broker.c   the ops table: create, connect, subscribe, settle...
 *   rabbitmq_io.c       the I/O thread: its loop, frames, deliveries, acks
 *   rabbitmq_conn.c     connecting, topology, consumers, losing and
 *                       regaining the connection (on the I/O thread)
 *   rabbitmq_publish.c  publishing: records, confirms, flush
 *   rabbitmq_msg.c      message memory and the AMQP <-> swit mapping
 *
 * Threads: one I/O thread per broker owns the rabbitmq-c connection and
 * everything marked "io" below; no other thread calls rabbitmq-c. Other
 * threads hand it work under `mu` (commands, settles, publishes) and wake
 * it through an eventfd. The I/O thread calls the sinks holding no lock.
 * A watchdog thread only ever shuts the socket down (under `mu`).
 *
 * Ownership: a delivery's memory is a slot, owned by the adapter until the
 * core settles it (the token is the slot's address). A publish is copied
 * into a record at once; the record lives until the broker confirmed it
 * (or the adapter gave up on it). A subscription is owned by the I/O
 * thread's list from subscribe to unsubscribe.
 */
#ifndef SWIT_RABBITMQ_INT_H
#define SWIT_RABBITMQ_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <amqp.h>

#include "rabbitmq_broker.h"

/* Channels of one connection: publishing in confirm mode, consuming, and
 * declarations (a refused declaration closes only that channel). */
enum { RMQ_CH_PUB = 1, RMQ_CH_SUB = 2, RMQ_CH_TOPO = 3 };

enum {
  RMQ_BATCH = 256,       /* deliveries per sink call, at most */
  RMQ_KEEP_BUF = 65536,  /* a pooled slot or record keeps a buffer up to this */
  RMQ_POOL_MAX = 4096,   /* pooled slots and records, each */
  RMQ_FRAME_BUDGET = 2048, /* frames read before other work gets a turn */
  RMQ_SEND_BUDGET = 1024,  /* publishes sent before reading again */
  RMQ_ERRLEN = 256
};

typedef struct swit_broker rmq_broker;

/* One messaging.broker.endpoints entry, parsed by amqp_parse_url. */
typedef struct rmq_endpoint {
  char *buf;                        /* working copy; info points into it */
  struct amqp_connection_info info;
} rmq_endpoint;

typedef struct rmq_sub rmq_sub;
struct rmq_sub {
  uint32_t id;
  char *topic;          /* the binding key */
  char *queue;          /* "<group>.<topic>" */
  char *dlq_key;        /* its dead-letter topic (spec->dead_letter) */
  char *dlq_queue;      /* "<group>.<dlq_key>"; NULL: no parking queue */
  int parking;          /* `queue` is itself a parking queue (spec->parking) */
  char tag[24];         /* consumer tag "swit-<id>" */
  uint32_t prefetch;
  swit_sink_fn sink;
  void *sink_ud;
  atomic_int paused;    /* what the core wants */
  int consuming;        /* io: basic.consume active on this connection */
  int declared;         /* io: queues declared on this connection */
  rmq_sub *next;        /* io: b->subs */
};

enum { RMQ_SLOT_FREE, RMQ_SLOT_ASSEMBLING, RMQ_SLOT_OUT, RMQ_SLOT_ACKED };

/* One delivery. `view` points into `buf`; `body` is where the content
 * frames go. The slot is in b->outstanding (delivered on the current
 * channel, in delivery-tag order) or b->stale (its channel is gone). */
typedef struct rmq_slot rmq_slot;
struct rmq_slot {
  swit_msg_view view;
  rmq_slot *next, *prev;
  rmq_sub *sub;         /* while assembling; NULL: nobody wants it */
  uint64_t tag;         /* delivery tag on the consume channel */
  uint64_t gen;         /* connection generation it arrived on */
  int state;            /* RMQ_SLOT_* */
  int redelivered;
  const char *reject;   /* NULL, or `reason` */
  char reason[160];     /* the core's oversize text (swit__msg_oversize) */
  char *buf;
  size_t cap;
  char *body;
  size_t body_size, body_got;
  uint32_t rkey_len;
  char rkey[256];       /* routing key, kept until the header frame */
};

typedef struct rmq_slot_list {
  rmq_slot *head, *tail;
} rmq_slot_list;

/* A publish call waiting for confirms; shared by the caller and its
 * records, freed by whoever drops the last reference (under mu). */
typedef struct rmq_ticket {
  size_t pending;       /* records not finished */
  int rc;               /* first failure, 0 if none */
  int returned;         /* a record failed as unroutable (basic.return) */
  int refs;
  uint64_t ids[];       /* confirm id per message, 0 if not confirmed */
} rmq_ticket;

typedef struct rmq_pub rmq_pub;
struct rmq_pub {
  rmq_pub *next, *prev;
  uint64_t seq;         /* publish sequence on the channel; 0 unsent */
  uint64_t id;          /* confirm id handed to the caller */
  rmq_ticket *ticket;   /* NULL: nobody waits for it */
  uint32_t index;       /* its message's index in the ticket */
  uint32_t nacks;       /* times the broker refused it */
  int failed;           /* finished without a confirm */
  int mandatory;        /* published mandatory (swit_publish_opts) */
  int returned;         /* a basic.return may be this one's: fail it */
  char expiration[24];  /* swit_publish_opts.ttl_ms, in the props */
  amqp_bytes_t rkey, body;
  amqp_basic_properties_t props;
  amqp_table_entry_t *entries;
  char *buf;
  size_t cap;
};

typedef struct rmq_pub_list {
  rmq_pub *head, *tail;
  size_t n;
} rmq_pub_list;

typedef struct rmq_settle_req {
  rmq_slot *slot;
  int action;           /* SWIT_SETTLE_* */
} rmq_settle_req;

enum { RMQ_CMD_SUBSCRIBE, RMQ_CMD_UNSUBSCRIBE };

typedef struct rmq_cmd rmq_cmd;
struct rmq_cmd {
  int type;
  rmq_sub *sub;
  int done;
  int rc;
  char err[RMQ_ERRLEN];
  rmq_cmd *next;
};

struct swit_broker {
  swit_broker_env env;
  swit_rabbitmq_settings st;  /* own copy (strings included) */
  rmq_endpoint *eps;
  size_t neps;
  int64_t max_message_size;   /* <= 0: no limit */
  int64_t confirm_timeout_ms; /* publishers.default.timeout */
  int64_t publish_retries;    /* publishers.default.retry_attempts */
  uint32_t next_sub_id;

  /* Shared with other threads, under mu. */
  pthread_mutex_t mu;
  pthread_cond_t cv;          /* commands done, confirms, room, startup */
  int sync;                   /* which of mu/cv/wd_cv/life/efd exist */
  rmq_cmd *cmds, *cmds_tail;
  rmq_settle_req *settles;
  size_t nsettles, settles_cap;
  rmq_pub_list submitted;     /* handed over, not yet taken by io */
  rmq_pub *pub_free;          /* record pool */
  size_t npub_free;
  size_t pub_count;           /* records alive anywhere */
  uint64_t next_id;           /* confirm ids */
  int first_try_done;         /* the first connection attempt finished */
  int gave_up;                /* reconnect attempts exhausted: FAILED */
  char last_error[RMQ_ERRLEN];
  char where[128];            /* the endpoint connected to */

  int efd;                    /* eventfd that wakes the I/O thread */
  atomic_int work;            /* something was handed over */
  atomic_int sleeping;        /* the I/O thread is (about to be) in poll */
  atomic_int stop;
  atomic_int reconcile;       /* a pause or resume to apply */
  atomic_int connected;
  atomic_int_fast64_t last_rx_ms; /* last time the socket had input */

  /* The watchdog (rabbitmq_io.c): shuts the socket down when the I/O
   * thread is stuck writing to a broker that stopped reading. */
  pthread_cond_t wd_cv;       /* under mu */
  pthread_t wd_thread;
  int wd_fd;                  /* the connection's socket, -1: none (mu) */
  int wd_stop;                /* (mu) */
  atomic_int wd_fired;        /* it shut a socket down */

  pthread_mutex_t life;       /* serialises connect/disconnect */
  pthread_t thread;
  int running;

  /* I/O thread only. */
  amqp_connection_state_t conn;
  uint64_t gen;               /* bumped whenever a connection goes */
  int ever_connected;
  size_t ep_next;             /* endpoint to try first */
  rmq_sub *subs;
  rmq_slot_list outstanding, stale;
  rmq_slot *slot_free;
  size_t nslot_free;
  rmq_slot *assembling;       /* delivery waiting for header/body frames */
  rmq_pub_list outq;          /* to send, in order */
  rmq_pub_list unconfirmed;   /* sent, in sequence order */
  rmq_pub_list done;          /* finished, to hand back under mu */
  uint64_t pub_seq;
  size_t send_limit;          /* bytes we let wait in the socket */
  int send_blocked;           /* publishes wait for the socket to drain */
  int alarm;                  /* connection.blocked: publishes wait */
  rmq_settle_req *io_settles; /* swapped with `settles` */
  size_t io_settles_cap;
  rmq_slot **acked;           /* settle scratch */
  size_t acked_cap;
  size_t bad_settles;         /* settles of slots not out: ignored */
  swit_delivery batch[RMQ_BATCH];
  size_t nbatch;
  rmq_sub *batch_sub;
};

/* Log through the host, if it gave a logger. */
#define RMQ_LOG(b, level, ...)                                         \
  do {                                                                 \
    if ((b)->env.log)                                                  \
      (b)->env.log((b)->env.log_ud, (level), __VA_ARGS__);             \
  } while (0)

void swit__rmq_set_state(rmq_broker *b, swit_conn_state s, const char *detail);
/* Text of a failed RPC reply: the server's reply text, or the library's. */
void swit__rmq_reply_text(amqp_rpc_reply_t r, char *buf, size_t len);

/* --- lists ---------------------------------------------------------- */

void swit__rmq_slot_link(rmq_slot_list *l, rmq_slot *s);
void swit__rmq_slot_unlink(rmq_slot_list *l, rmq_slot *s);
void swit__rmq_pub_append(rmq_pub_list *l, rmq_pub *p);
void swit__rmq_pub_unlink(rmq_pub_list *l, rmq_pub *p);
/* Move all of `from` to the end (or the front) of `to`. */
void swit__rmq_pub_splice(rmq_pub_list *to, rmq_pub_list *from, int front);

/* --- rabbitmq_io.c --------------------------------------------------- */

int swit__rmq_io_start(rmq_broker *b);
void swit__rmq_io_stop(rmq_broker *b);
void swit__rmq_wake(rmq_broker *b);
int swit__rmq_on_io_thread(const rmq_broker *b);
/* Run a command on the I/O thread and wait for it (inline when called
 * on that thread). Returns cmd->rc. */
int swit__rmq_command(rmq_broker *b, rmq_cmd *cmd);
/* Sleep until woken, `until_ms` (monotonic) or stop, serving commands,
 * settles and publish hand-overs meanwhile (no connection). */
void swit__rmq_io_idle_until(rmq_broker *b, int64_t until_ms);
/* Deliveries of the current connection become stale (io). */
void swit__rmq_io_drop_deliveries(rmq_broker *b);
/* Tell the watchdog which socket to watch (-1: none). */
void swit__rmq_watch_fd(rmq_broker *b, int fd);

/* --- rabbitmq_conn.c ------------------------------------------------- */

/* Connect (trying every endpoint in turn, backing off between rounds)
 * until connected, stopped or out of attempts. 0 when connected. */
int swit__rmq_conn_establish(rmq_broker *b);
/* The connection broke: forget it, keep what must be redone. */
void swit__rmq_conn_lost(rmq_broker *b, const char *why);
/* Orderly close at disconnect. */
void swit__rmq_conn_close(rmq_broker *b);
/* Declare the subscription's queues and bindings on the topology
 * channel. SWIT_E_CONFIG (server refused, err says why) or SWIT_E_BROKER
 * (connection lost). */
int swit__rmq_sub_declare(rmq_broker *b, rmq_sub *s, char *err, size_t errlen);
/* Start or stop consuming to match what the core wants. 0, or
 * SWIT_E_BROKER when the connection was lost. */
int swit__rmq_sub_sync(rmq_broker *b, rmq_sub *s);
int swit__rmq_sub_cancel(rmq_broker *b, rmq_sub *s);
/* Check the reply of the last RPC on `ch`: 0, SWIT_E_CONFIG when the
 * server closed that channel (reopened here), SWIT_E_BROKER when the
 * connection is lost (already handled). */
int swit__rmq_rpc_check(rmq_broker *b, amqp_channel_t ch, const char *what,
                        char *err, size_t errlen);

/* --- rabbitmq_publish.c ---------------------------------------------- */

int swit__rmq_publish(rmq_broker *b, const swit_msg_view *msgs, size_t n,
                      const swit_publish_opts *o, uint64_t *confirm_ids,
                      char *err, size_t errlen);
int swit__rmq_flush(rmq_broker *b, int timeout_ms);
/* io: take what was handed over and send up to RMQ_SEND_BUDGET. 0, or
 * SWIT_E_BROKER when the connection was lost. */
int swit__rmq_pub_send(rmq_broker *b);
/* io: basic.ack / basic.nack on the publish channel. */
void swit__rmq_pub_confirm(rmq_broker *b, uint64_t tag, int multiple, int ok);
/* io: basic.return of a mandatory publish no queue took. */
void swit__rmq_pub_returned(rmq_broker *b, const amqp_basic_return_t *ret);
/* io: hand finished records back (tickets, room) under one lock. */
void swit__rmq_pub_complete(rmq_broker *b);
/* io: the connection went: unconfirmed records go back to the front of
 * the send queue, to be sent again on the next connection. */
void swit__rmq_pub_requeue(rmq_broker *b);
/* io: finish every record (queued or sent) with `rc`. */
void swit__rmq_pub_fail_all(rmq_broker *b, int rc);
void swit__rmq_pubs_free(rmq_broker *b);

/* --- rabbitmq_msg.c -------------------------------------------------- */

rmq_slot *swit__rmq_slot_get(rmq_broker *b);
void swit__rmq_slot_put(rmq_broker *b, rmq_slot *s);
void swit__rmq_slots_free(rmq_broker *b);
/* Lay the delivery out from its header frame: topic, key, headers (from
 * the AMQP headers table and properties) and room for the body. 0 or
 * SWIT_E_NOMEM. Sets s->reject when over max_message_size. */
int swit__rmq_slot_header(rmq_broker *b, rmq_slot *s,
                          const amqp_basic_properties_t *p, uint64_t body_size);
/* Copy a message into a publish record: routing key, body, properties
 * and headers table. 0, SWIT_E_INVAL or SWIT_E_NOMEM (err set). */
int swit__rmq_pub_fill(const rmq_broker *b, rmq_pub *r, const swit_msg_view *m,
                       char *err, size_t errlen);

#endif /* SWIT_RABBITMQ_INT_H */
