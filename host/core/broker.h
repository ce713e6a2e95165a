/*
 * broker.h - the contract between the core and a broker adapter.
 *
 * An adapter (brokers/<name>/) exports one `const swit_broker_ops
 * swit_broker_<name>`. It only translates between a client library and
 * this vtable: retry, backoff, batching policy, threading of the handlers
 * and logging policy live in host/.
 *
 * Threads: the adapter calls the sink from its own thread(s), never
 * holding a lock the core could wait for, and never calls Lua. The core
 * calls every op from any thread; ops must be thread-safe. pause/resume
 * may be called from inside a sink call.
 *
 * Ownership: a delivered message's view and the memory behind it belong
 * to the adapter until the core settles it (ack or nack) by token. Exactly
 * one settle per delivery.
 */
#ifndef SWIT_BROKER_H
#define SWIT_BROKER_H

#include <stddef.h>
#include <stdint.h>

#include "swit/swit.h"
#include "swit_ffi.h"
#include "config/config.h"
#include "base/log.h"   /* swit__fail for adapters */
#include "base/clock.h" /* swit__now_ms, deadlines for adapters */

typedef struct swit_broker swit_broker; /* an adapter instance */

/* One received message handed to the sink. */
typedef struct swit_delivery {
  const swit_msg_view *msg; /* valid until settled */
  uint64_t token;           /* the adapter's settle handle */
  /* NULL, or why the message must not reach a handler (e.g. larger than
   * messaging.resources.memory.max_message_size): the host dead-letters
   * it with this reason and then acks it. Static or adapter-owned until
   * the settle. */
  const char *reject;
} swit_delivery;

/* Called by the adapter for received messages, in arrival order for each
 * subscription. `sink_ud` is what the core passed to subscribe(). The
 * core takes every delivery (it blocks the calling thread if its queues
 * are full beyond their slack) and pauses the subscription when they
 * cross the high-water mark. */
typedef void (*swit_sink_fn)(void *sink_ud, const swit_delivery *d, size_t n);

typedef struct swit_sub_spec {
  const char *topic;
  const char *group;
  int ordering;            /* SWIT_ORDER_* */
  uint32_t prefetch;       /* broker-side prefetch hint */
  int64_t ack_deadline_ms;
  int exactly_once;        /* swit.on{exactly_once = true} (Kafka) */
  int jetstream;           /* swit.on{jetstream = ...}: -1 unset, 0, 1 (NATS) */
  /* Where the host dead-letters this subscription's messages
   * (swit.on{dead_letter = ...}, "<topic>.dlq" by default). NULL from a
   * caller that does not say: "<topic>.dlq". Brokers that keep dead
   * letters for an operator (RabbitMQ: a parking queue bound to it) use
   * it; others may ignore it. */
  const char *dead_letter;
  /* 1: the topic is itself a dead-letter topic (it ends in ".dlq", or a
   * subscription of this host names it as its dead_letter), so its queue
   * is the parking queue those dead letters are kept in (RabbitMQ: no
   * TTL, length limit or dead-lettering of its own). */
  int parking;
  /* Where a new group starts: SWIT_FROM_* (swit.h). An adapter whose
   * broker cannot start a new subscriber at its oldest message refuses
   * SWIT_FROM_BEGINNING with SWIT_E_CONFIG. */
  int from;
} swit_sub_spec;

enum { SWIT_SETTLE_ACK = 0, SWIT_SETTLE_REQUEUE = 1, SWIT_SETTLE_DROP = 2 };

typedef struct swit_settle {
  uint64_t token;
  int action; /* SWIT_SETTLE_* */
} swit_settle;

/* A delivery a transaction covers: its subscription's handle and token. */
typedef struct swit_txn_msg {
  void *handle;
  uint64_t token;
} swit_txn_msg;

/* How long a publish may wait for room or for the broker's confirm;
 * 0 = never wait (SWIT_E_FULL at once). */
typedef struct swit_publish_opts {
  int timeout_ms;
  /* 1: the message must reach a queue or subscriber (the host sets it
   * for dead letters, whose originals it acks once they are confirmed).
   * An adapter that can tell (RabbitMQ: the mandatory flag and
   * basic.return) fails such a publish with SWIT_E_BROKER instead of
   * confirming a message the broker dropped as unroutable; others ignore
   * it. */
  int mandatory;
  /* > 0: the broker drops the message after this many ms (dead letters:
   * messaging.subscribers.<name>.dead_letter.ttl). Only adapters with
   * SWIT_CAP_TTL are given one; the host refuses the key for others. */
  int64_t ttl_ms;
} swit_publish_opts;

/* Logging from adapters goes through the host. */
typedef void (*swit_log_fn)(void *ud, int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* The connection state machine every adapter reports through (seed
 * design, "Connection Management"):
 *   Disconnected -> Connecting -> Connected
 *   Connecting -> BackingOff (failure) -> Connecting (retry)
 *   Connected -> Reconnecting (lost) -> Connected | BackingOff
 *   BackingOff -> Failed (reconnect.max_attempts reached)
 *   Connected -> Disconnected (disconnect)
 * The host logs every transition, counts reconnect attempts and answers
 * health from the last state. */
typedef enum swit_conn_state {
  SWIT_CONN_DISCONNECTED = 0,
  SWIT_CONN_CONNECTING,
  SWIT_CONN_CONNECTED,
  SWIT_CONN_RECONNECTING,
  SWIT_CONN_BACKING_OFF,
  SWIT_CONN_FAILED
} swit_conn_state;

/* messaging.security.transport.tls, for adapters that speak TLS. */
typedef struct swit_broker_tls {
  int enabled;
  const char *cert_file, *key_file, *ca_file; /* NULL or "": none */
  int verify_server;
} swit_broker_tls;

/* What an adapter sees of the host: plain values the host copies from
 * the configuration (swit__broker_env_config; strings live as long as
 * the host) and the host's callbacks. Adapters never see swit_config. */
typedef struct swit_broker_env {
  const char *server_name;       /* server.name: client and group names */
  const char *const *endpoints;  /* messaging.broker.endpoints */
  size_t n_endpoints;            /* 0: the adapter's local default */
  const void *settings;   /* filled from `config_fields`, NULL if none */
  /* messaging.broker.config as written, for an adapter with
   * SWIT_CAP_CONFIG_PASSTHROUGH (the keys not in config_fields); NULL or
   * empty otherwise. */
  const swit_cfg_kvlist *config;
  /* messaging.resources.memory.max_message_size (0: no limit). The core
   * checks publishes against it; an adapter that can drop a delivery
   * larger than it before copying it marks it (swit_delivery.reject). */
  int64_t max_message_size;
  /* messaging.publishers.default: how long a confirmed publish waits for
   * the broker's confirm, and how often an adapter that resends an
   * unconfirmed publish itself may try. */
  int64_t publish_timeout_ms;
  int64_t publish_retry_attempts;
  int64_t shutdown_timeout_ms;   /* server.shutdown_timeout */
  uint32_t workers;              /* worker_pool_size: txn_begin's `worker` bound */
  /* messaging.broker.reconnect, for a client library that reconnects by
   * itself (its own backoff settings); backoff_ms below is the policy. */
  int64_t reconnect_delay_ms, reconnect_max_delay_ms, reconnect_max_attempts;
  swit_broker_tls tls;
  /* messaging.security.authentication (NULL or "": none) */
  const char *mechanism, *username, *password;
  swit_log_fn log;
  void *log_ud;
  /* Report a state change (any thread); `detail` may be NULL. */
  void (*set_state)(void *host_ud, swit_conn_state state, const char *detail);
  /* The host's reconnect policy: milliseconds to wait before attempt
   * `attempt` (1-based) with jitter, or -1 when attempts are exhausted
   * (the adapter then reports SWIT_CONN_FAILED). */
  int64_t (*backoff_ms)(void *host_ud, uint32_t attempt);
  void *host_ud;
  /* Report consumer lag (messages between the group's position and the
   * end of the partition) for /metrics as swit_consumer_lag{topic, group,
   * partition}. Any thread, at any rate (the last value per topic, group
   * and partition is kept); partition -1 when the broker has none. For
   * Kafka, call it from the librdkafka statistics callback
   * (statistics.interval.ms) with each partition's consumer_lag. May be
   * NULL (older hosts): check before calling. */
  void (*report_lag)(void *host_ud, const char *topic, const char *group,
                     int32_t partition, int64_t lag);
} swit_broker_env;

/* msg_check.c: the core's one wording of message checks. Size counts
 * payload, key and header names and values. swit__msg_oversize: NULL if
 * `m` fits `max` (<= 0: no limit), else the reason, written to buf (an
 * adapter sets it as swit_delivery.reject). swit__msg_check: the checks
 * the core makes on every publish before the adapter sees it (topic,
 * NULL pointers with a length, size), SWIT_E_INVAL / SWIT_E_TOOBIG. */
size_t swit__msg_size(const swit_msg_view *m);
const char *swit__msg_oversize(const swit_msg_view *m, int64_t max,
                               char *buf, size_t len);
int swit__msg_check(const swit_msg_view *msgs, size_t n, int64_t max,
                    char *err, size_t errlen);

/* Fill the configuration part of `env` (broker_env.c); the callbacks
 * and `settings` are the caller's. */
void swit__broker_env_config(swit_broker_env *env, const swit_config *cfg);

enum {
  SWIT_CAP_REQUEUE = 1, /* nack with requeue redelivers */
  SWIT_CAP_CONFIRM = 2, /* publish returns a broker confirm id */
  /* messaging.broker.config keys not in config_fields are not refused at
   * load: the adapter reads them from the map and validates them itself
   * (Kafka: librdkafka properties, through librdkafka's setter). */
  SWIT_CAP_CONFIG_PASSTHROUGH = 4,
  SWIT_CAP_TTL = 8      /* publish honours swit_publish_opts.ttl_ms */
};

typedef struct swit_broker_ops {
  const char *name;
  unsigned caps;                        /* SWIT_CAP_* */
  const swit_cfg_field *config_fields;  /* messaging.broker.config keys; NULL = passthrough */
  size_t settings_size;                 /* size of the struct config_fields fills */

  int (*create)(swit_broker **out, const swit_broker_env *env,
                char *err, size_t errlen);
  void (*destroy)(swit_broker *b);      /* accepts NULL */
  /* Start connecting. An unreachable broker is not an error here: the
   * adapter reports SWIT_CONN_BACKING_OFF and keeps trying with the
   * host's backoff. Errors are for what retrying cannot fix (bad
   * credentials format, bad client settings): SWIT_E_CONFIG. */
  int (*connect)(swit_broker *b, char *err, size_t errlen);
  int (*disconnect)(swit_broker *b);
  /* 0 healthy, else SWIT_E_BROKER with detail */
  int (*health)(swit_broker *b, char *detail, size_t len);

  /* Returns once messages published after it returns will be delivered
   * (queued at the adapter if the connection is not up yet). A bad
   * subscription (unknown option value, topic the broker refuses) is
   * SWIT_E_CONFIG with the reason. */
  int (*subscribe)(swit_broker *b, const swit_sub_spec *spec,
                   swit_sink_fn sink, void *sink_ud, void **handle,
                   char *err, size_t errlen);
  int (*pause)(swit_broker *b, void *handle);
  int (*resume)(swit_broker *b, void *handle);
  /* No sink call for `handle` starts after this returns; unsettled
   * deliveries may still be settled afterwards. */
  int (*unsubscribe)(swit_broker *b, void *handle);
  /* Settle a batch of deliveries of one subscription. */
  int (*settle)(swit_broker *b, void *handle, const swit_settle *s, size_t n);
  /* Optional, with SWIT_CAP_REQUEUE: 0 when a REQUEUE of this
   * subscription's deliveries is not redelivered (core NATS: at most
   * once). NULL: every subscription redelivers what it is given back. */
  int (*redelivers)(swit_broker *b, void *handle);

  /* Publish n messages (n > 1 is a batch). Message views are read during
   * the call only. o->timeout_ms bounds the wait for room in a full
   * client queue (0: SWIT_E_FULL at once). confirm_ids NULL: return once
   * the client library accepted the messages. confirm_ids non-NULL: return
   * only once the broker confirmed each one (durably accepted), waiting up
   * to messaging.publishers.default.timeout, and store its confirm id
   * (sequence/offset) there; the host asks for this before acking a
   * dead-lettered message. */
  int (*publish)(swit_broker *b, const swit_msg_view *msgs, size_t n,
                 const swit_publish_opts *o, uint64_t *confirm_ids,
                 char *err, size_t errlen);
  int (*flush)(swit_broker *b, int timeout_ms);

  /* Only a broker that keeps messages in this process and nowhere else
   * (the memory broker); NULL for the others. How many deliveries the
   * subscriptions have not been handed yet (never delivered, or given
   * back). A graceful stop keeps the subscriptions running until this is
   * 0 and nothing is in flight (or the deadline passes), since nothing
   * given back would survive the process. */
  int64_t (*undelivered)(swit_broker *b);

  /* Transactions (exactly_once subscriptions). Both NULL for a broker
   * without them; the host then refuses exactly_once at start.
   *
   * txn_begin opens a transaction for worker `worker` (0-based, below
   * messaging.resources.subscribers.worker_pool_size) on the calling
   * thread. Until txn_end, every publish made on that thread belongs to
   * the transaction (a confirmed publish may return before the broker
   * confirmed it: the commit confirms it). One transaction per worker at
   * a time; txn_end is called on the same thread.
   *
   * txn_end with commit = 1 commits the publishes together with the
   * consumed positions that the deliveries `msgs` complete (never past a
   * delivery of the same partition that is not finished), and returns 0
   * only once the broker committed. The host then settles the deliveries
   * (ACK) as usual. commit = 0, or a failed commit (nonzero, with the
   * reason), aborts: nothing of the transaction is visible to
   * read_committed consumers, and the deliveries stay unsettled. */
  int (*txn_begin)(swit_broker *b, uint32_t worker, char *err, size_t errlen);
  int (*txn_end)(swit_broker *b, uint32_t worker, const swit_txn_msg *msgs,
                 size_t n, int commit, char *err, size_t errlen);
} swit_broker_ops;

#endif /* SWIT_BROKER_H */
