/*
 * kafka_broker.h - the Kafka adapter as the host sees it: one ops table.
 *
 * The adapter is built on librdkafka. messaging.broker.config holds
 * swit's own keys (config_fields: the host validates them and fills a
 * swit_kafka_settings) and librdkafka properties (every other key: the
 * adapter passes them to librdkafka's validating setter when the host
 * creates it, kafka_conf.c; SWIT_CAP_CONFIG_PASSTHROUGH).
 * Everything else is private (kafka_int.h); docs/brokers/kafka.md
 * describes the behaviour users see.
 */
#ifndef SWIT_KAFKA_BROKER_H
#define SWIT_KAFKA_BROKER_H

#include <stdint.h>

#include "core/broker.h"

/* messaging.broker.config keys of the Kafka adapter (not librdkafka's). */
typedef struct swit_kafka_settings {
  char *consumer_group;         /* "": each handler's group */
  char *client_id;              /* "": server.name */
  int64_t subscribe_timeout_ms;
  int64_t revoke_timeout_ms;
  char *transactional_id;       /* "": <server.name>-<hostname> */
} swit_kafka_settings;

extern const swit_cfg_field swit__kafka_config_fields[];
extern const swit_broker_ops swit_broker_kafka;

#endif /* SWIT_KAFKA_BROKER_H */
