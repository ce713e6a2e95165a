/*
 * nats_broker.h - the NATS adapter (core NATS and JetStream on cnats), as
 * the host sees it: the ops table and the settings its config table fills
 * from messaging.broker.config.
 *
 * The host registers `swit_broker_nats` like any other adapter; the core
 * validates messaging.broker.config against `config_fields` and passes the
 * filled swit_nats_settings as env->settings. Everything else about the
 * adapter is private (nats_int.h). docs/brokers/nats.md is the user's
 * reference for every key.
 */
#ifndef SWIT_NATS_BROKER_H
#define SWIT_NATS_BROKER_H

#include <stdint.h>

#include "core/broker.h"

enum { SWIT_NATS_STORAGE_FILE = 0, SWIT_NATS_STORAGE_MEMORY = 1 };
enum {
  SWIT_NATS_RETENTION_LIMITS = 0,
  SWIT_NATS_RETENTION_INTEREST = 1,
  SWIT_NATS_RETENTION_WORKQUEUE = 2
};

/* messaging.broker.config keys of the NATS adapter. */
typedef struct swit_nats_settings {
  int jetstream;               /* jetstream: false; swit.on{jetstream} overrides */
  char *name;                  /* name: connection name, default server.name */
  char *user, *password;       /* user/password */
  char *token;                 /* token */
  char *nkey, *nkey_seed_file;  /* NKEY public key and its seed file */
  char *creds_file;            /* .creds file (JWT + NKEY seed) */
  char *tls_hostname;          /* name the server certificate must carry */
  char *stream;                /* stream: "" = one stream per subject, auto */
  swit_cfg_list stream_subjects; /* stream_subjects: when swit creates `stream` */
  int create_streams;          /* create_streams: true */
  char *stream_prefix;         /* stream_prefix: "SWIT_" for auto streams */
  int storage;                 /* storage: file | memory */
  int retention;               /* retention: limits | interest | workqueue */
  int64_t max_age_ms;          /* max_age: 0 = unlimited */
  int64_t duplicate_window_ms; /* duplicate_window: "2m" (Nats-Msg-Id) */
  int64_t fetch_batch;         /* fetch_batch: 256 */
  int64_t fetch_wait_ms;       /* fetch_wait: "250ms" */
  int64_t nak_delay_ms;        /* nak_delay: 0 = redeliver at once */
  int64_t max_deliver;         /* max_deliver: 0 = unlimited */
  int64_t pending_msgs;        /* pending_msgs: 65536 per core subscription */
  int64_t pending_bytes;       /* pending_bytes: "64MB" per core subscription */
  int64_t reconnect_buffer;    /* reconnect_buffer: "8MB" */
  int64_t connect_timeout_ms;  /* connect_timeout: "2s" */
  int64_t ping_interval_ms;    /* ping_interval: "2m" */
  int64_t max_pings_out;       /* max_pings_out: 2 */
} swit_nats_settings;

/* The field table behind swit_broker_nats.config_fields. */
extern const swit_cfg_field swit__nats_config_fields[];

extern const swit_broker_ops swit_broker_nats;

#endif /* SWIT_NATS_BROKER_H */
