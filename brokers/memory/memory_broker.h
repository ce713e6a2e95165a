/*
 * memory_broker.h - the embedded in-memory broker adapter, as the host
 * sees it: the ops table and the settings its config table fills.
 *
 * The host registers `swit_broker_memory` like any other adapter; the core
 * validates messaging.broker.config against `config_fields` and passes the
 * filled swit_memory_settings as env->settings (NULL = the defaults).
 * Everything else about the adapter is private (memory_int.h).
 */
#ifndef SWIT_MEMORY_BROKER_H
#define SWIT_MEMORY_BROKER_H

#include <stdint.h>

#include "core/broker.h"

/* messaging.broker.config keys of the memory broker. */
typedef struct swit_memory_settings {
  int64_t queue_size;         /* queue_size: 10000, 1..10000000 messages per topic */
} swit_memory_settings;

/* The field table behind swit_broker_memory.config_fields. */
extern const swit_cfg_field swit__memory_config_fields[];

extern const swit_broker_ops swit_broker_memory;

#endif /* SWIT_MEMORY_BROKER_H */
