/*
 * rabbitmq_broker.h - the RabbitMQ adapter (rabbitmq-c), as the host sees
 * it: the ops table and the settings its config table fills.
 *
 * The host validates messaging.broker.config against `config_fields` and
 * passes the filled swit_rabbitmq_settings as env->settings (NULL = the
 * defaults). Everything else is private (rabbitmq_int.h); the design is
 * described at the top of rabbitmq_broker.c and in docs/brokers/rabbitmq.md.
 */
#ifndef SWIT_RABBITMQ_BROKER_H
#define SWIT_RABBITMQ_BROKER_H

#include <stdint.h>

#include "core/broker.h"

enum { RMQ_QUEUE_CLASSIC = 0, RMQ_QUEUE_QUORUM = 1 };
enum { RMQ_OVERFLOW_DROP_HEAD = 0, RMQ_OVERFLOW_REJECT_PUBLISH = 1,
       RMQ_OVERFLOW_REJECT_PUBLISH_DLX = 2 };

/* messaging.broker.config keys of the RabbitMQ adapter. */
typedef struct swit_rabbitmq_settings {
  char *exchange;             /* "swit": the topic exchange topics map to */
  char *alternate_exchange;   /* "": where unroutable publishes go */
  char *vhost;                /* "/" unless an endpoint URL names one */
  int64_t heartbeat_ms;       /* "10s"; 0 = no heartbeats */
  int64_t connect_timeout_ms; /* "5s": TCP connect, login, each RPC */
  int queue_type;             /* RMQ_QUEUE_*: classic */
  int64_t message_ttl_ms;     /* 0 = none (x-message-ttl) */
  int64_t max_length;         /* 0 = none (x-max-length) */
  int64_t max_length_bytes;   /* 0 = none (x-max-length-bytes) */
  int overflow;               /* RMQ_OVERFLOW_*: drop-head */
  int dead_letter_queues;     /* true: a parking queue per group and topic */
  int persistent;             /* true: delivery mode 2 */
  int64_t publish_buffer;     /* 100000 messages not yet confirmed */
  int64_t max_publish_size;   /* "128MB": RabbitMQ's own default limit */
} swit_rabbitmq_settings;

/* The field table behind swit_broker_rabbitmq.config_fields. */
extern const swit_cfg_field swit__rabbitmq_config_fields[];

extern const swit_broker_ops swit_broker_rabbitmq;

#endif /* SWIT_RABBITMQ_BROKER_H */
