/*
 * kafka_broker.h - the Kafka adapter as the host sees it: one ops table.
 *
 * The adapter is built on librdkafka. messaging.broker.config is a
 * passthrough map (config_fields is NULL): the adapter itself splits it
 * into swit's own keys and librdkafka properties and validates the latter
 * with librdkafka's setter when the host creates it (kafka_conf.c).
 * Everything else is private (kafka_int.h); docs/brokers/kafka.md
 * describes the behaviour users see.
 */
#ifndef SWIT_KAFKA_BROKER_H
#define SWIT_KAFKA_BROKER_H

#include "core/broker.h"

extern const swit_broker_ops swit_broker_kafka;

#endif /* SWIT_KAFKA_BROKER_H */
