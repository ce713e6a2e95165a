/*
 * config_schema.c - the field tables that describe swit_config.
 *
 * Every member of swit_config (config.h) that comes from YAML has one row
 * here: key name, type, offset, default (YAML text), bounds and a line of
 * description. The loader fills defaults from these rows, rejects keys
 * that have none, and swit__config_reference() prints them as the docs.
 * The tables are constant data, read from any thread. Members that are not
 * keys (path, base_dir, the *_mark fields) are set by config.c.
 *
 * No key is accepted and ignored: a key of the design that swit does not
 * implement yet is an UNSUPPORTED row (no member; a file that sets it is
 * refused), and a key only some adapters map names them in `.brokers`
 * (set with another broker type, it is refused at load).
 */
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* Offset of member `m` inside the (anonymous) struct at `sec`. */
#define OFF(sec, m) \
  (offsetof(swit_config, sec.m) - offsetof(swit_config, sec))

#define MS_S ((int64_t)1000)
#define MS_H ((int64_t)3600 * MS_S)
#define KIB ((int64_t)1024)
#define GIB (KIB * KIB * KIB)

/* A key of the design that swit does not implement yet: refused when a
 * file sets it (config_yaml.c), listed as such in the reference. */
#define UNSUPPORTED(key, what) \
  { .name = key, .type = SWIT_CFG_UNSUPPORTED, .desc = what }

/* A key only the named adapters map (names as in messaging.broker.type,
 * space-separated): set with another broker type, it is refused. */
#define ONLY(names) names

/* ---------------------------------------------------------------------
 * Named publishers and subscribers */


#define CB(f) offsetof(swit_cfg_breaker, f)
static const swit_cfg_field breaker_fields[] = {
  { .name = "enabled", .type = SWIT_CFG_BOOL, .offset = CB(enabled),
    .dflt = "false", .desc = "Open the circuit when calls keep failing "
                             "(a subscription's handler: pause it; a "
                             "publish target's publishes: refuse them)" },
  { .name = "failure_threshold", .type = SWIT_CFG_INT,
    .offset = CB(failure_threshold), .dflt = "5", .min = 0, .max = 1000000,
    .desc = "Failures in a row that open it (0 = the rate alone)" },
  { .name = "success_threshold", .type = SWIT_CFG_INT,
    .offset = CB(success_threshold), .dflt = "2", .min = 1, .max = 10000,
    .desc = "Half-open: trial calls let through (messages handled or "
            "published), all of which must succeed to close it" },
  { .name = "recovery_timeout", .type = SWIT_CFG_DURATION,
    .offset = CB(recovery_ms), .dflt = "30s", .min = 1, .max = 24 * MS_H,
    .desc = "Time open before the half-open trial" },
  { .name = "failure_rate", .type = SWIT_CFG_DOUBLE,
    .offset = CB(failure_rate), .dflt = "0", .min = 0, .max = 1,
    .desc = "Share of failures within `window` that opens it (0 = off)" },
  { .name = "min_calls", .type = SWIT_CFG_INT, .offset = CB(min_calls),
    .dflt = "10", .min = 1, .max = 1000000,
    .desc = "Outcomes within `window` before failure_rate applies" },
  { .name = "window", .type = SWIT_CFG_DURATION, .offset = CB(window_ms),
    .dflt = "60s", .min = 10, .max = 24 * MS_H,
    .desc = "The failure-rate window (counted in ten slices)" },
  { .name = NULL }
};

const swit_cfg_field swit__publisher_fields[] = {
  { .name = "retry_attempts", .type = SWIT_CFG_INT,
    .offset = offsetof(swit_cfg_publisher, retry_attempts), .dflt = "3",
    .min = 0, .max = 100, .default_only = 1,
    .desc = "Publish retries after the first failure (0 = none): "
            "swit_host_publish(), RabbitMQ's confirm retries" },
  { .name = "retry_delay", .type = SWIT_CFG_DURATION,
    .offset = offsetof(swit_cfg_publisher, retry_delay_ms), .dflt = "1s",
    .min = 0, .max = MS_H, .default_only = 1,
    .desc = "Pause between publish retries of swit_host_publish()" },
  UNSUPPORTED("batch_size", "Messages sent to the broker at once"),
  { .name = "timeout", .type = SWIT_CFG_DURATION,
    .offset = offsetof(swit_cfg_publisher, timeout_ms), .dflt = "5s",
    .min = 0, .max = MS_H, .default_only = 1,
    .desc = "How long a publish may wait for room or a confirm (0 = never): "
            "the C API, the HTTP ingress, the adapters' confirm waits" },
  { .name = "transactional", .type = SWIT_CFG_BOOL,
    .offset = offsetof(swit_cfg_publisher, transactional), .dflt = "false",
    .desc = "The subscriptions of the group of this name (set on default: "
            "of every group) run exactly_once: what their handlers publish "
            "commits with the consumed offsets in a broker transaction "
            "(Kafka)" },
  { .name = "circuit_breaker", .type = SWIT_CFG_SECTION,
    .offset = offsetof(swit_cfg_publisher, circuit_breaker),
    .fields = breaker_fields, .default_only = 1,
    .desc = "A circuit breaker per publish target (topic): while open, "
            "publishes to it fail at once (docs/resilience.md)" },
  { .name = NULL }
};

#define ER(f) offsetof(swit_cfg_errors, f)
static const swit_cfg_field errors_fields[] = {
  { .name = "enabled", .type = SWIT_CFG_BOOL, .offset = ER(enabled),
    .dflt = "false", .desc = "Classify handler failures by the rules below" },
  { .name = "default_rules", .type = SWIT_CFG_BOOL,
    .offset = ER(default_rules), .dflt = "true",
    .desc = "Add the built-in rule: msg:json() decode errors are "
            "non_retryable" },
  { .name = "retryable", .type = SWIT_CFG_LIST, .offset = ER(retryable),
    .desc = "Rules (error text substrings, or result:retry|reject|fatal) "
            "whose failures are retried" },
  { .name = "non_retryable", .type = SWIT_CFG_LIST,
    .offset = ER(non_retryable),
    .desc = "Rules whose failures go to the dead-letter topic at once" },
  { .name = "critical", .type = SWIT_CFG_LIST, .offset = ER(critical),
    .desc = "Rules whose failures are dead-lettered, open the circuit "
            "breaker and count as alerts" },
  { .name = NULL }
};

#define DD(f) offsetof(swit_cfg_dedup, f)
static const char *const dedup_stores[] = {"memory", "sqlite", NULL};
static const swit_cfg_field dedup_fields[] = {
  { .name = "enabled", .type = SWIT_CFG_BOOL, .offset = DD(enabled),
    .dflt = "false", .desc = "Ack without handling a message whose id was "
                             "handled within the window" },
  { .name = "header", .type = SWIT_CFG_STR, .offset = DD(header),
    .dflt = "x-swit-id", .desc = "The header that carries the message id "
                                 "(Nats-Msg-Id, amqp-message-id, ...)" },
  { .name = "window_size", .type = SWIT_CFG_INT, .offset = DD(window_size),
    .dflt = "10000", .min = 1, .max = 1000000,
    .desc = "Ids remembered per subscription (the oldest go first)" },
  { .name = "window", .type = SWIT_CFG_DURATION, .offset = DD(window_ms),
    .dflt = "10m", .min = 1, .max = 7 * 24 * MS_H,
    .desc = "How long a handled id is remembered" },
  { .name = "store", .type = SWIT_CFG_ENUM, .offset = DD(store),
    .dflt = "memory", .choices = dedup_stores,
    .desc = "memory (lost at exit), or sqlite: kept in `path` across "
            "restarts and shared by the processes using the file" },
  { .name = "path", .type = SWIT_CFG_STR, .offset = DD(path), .dflt = "",
    .desc = "store sqlite: the SQLite file (created; relative to the "
            "config file); refused with store memory" },
  { .name = NULL }
};

#define DL(f) offsetof(swit_cfg_dead_letter, f)
static const swit_cfg_field dead_letter_fields[] = {
  { .name = "include_metadata", .type = SWIT_CFG_BOOL,
    .offset = DL(include_metadata), .dflt = "true",
    .desc = "Dead letters carry x-swit-error, x-swit-attempts and "
            "x-swit-origin-topic (`swit dlq replay` needs the last)" },
  { .name = "ttl", .type = SWIT_CFG_DURATION, .offset = DL(ttl_ms),
    .dflt = "0", .min = 0, .max = 365 * 24 * MS_H,
    .desc = "Dead letters expire after this long in the broker (0 = never); "
            "only brokers that expire single messages (rabbitmq): "
            "others refuse it at start" },
  { .name = NULL }
};

#define RL(f) offsetof(swit_cfg_rate, f)
static const swit_cfg_field rate_fields[] = {
  { .name = "rate", .type = SWIT_CFG_DOUBLE, .offset = RL(rate),
    .dflt = "0", .min = 0, .max = 1000000,
    .desc = "Messages per second a subscription's handlers get, at most "
            "(unset = no limit; 0 is refused): what is over it is held, "
            "with the subscription paused at the broker" },
  { .name = "burst", .type = SWIT_CFG_INT, .offset = RL(burst),
    .dflt = "10", .min = 1, .max = 1000000,
    .desc = "Messages let through at once after an idle time (the "
            "bucket's size)" },
  { .name = NULL }
};

const swit_cfg_field swit__subscriber_fields[] = {
  { .name = "concurrency", .type = SWIT_CFG_INT,
    .offset = offsetof(swit_cfg_subscriber, concurrency), .dflt = "0",
    .min = 0, .max = 1000000,
    .desc = "Messages of a subscription being handled or waiting for a "
            "retry, at most, across the workers (a bulkhead; unset = no "
            "cap, 0 is refused): what is over it is held, with the "
            "subscription paused at the broker" },
  { .name = "rate_limit", .type = SWIT_CFG_SECTION,
    .offset = offsetof(swit_cfg_subscriber, rate_limit), .fields = rate_fields,
    .desc = "Token-bucket rate limit of a subscription's intake "
            "(docs/resilience.md)" },
  { .name = "prefetch", .type = SWIT_CFG_INT,
    .offset = offsetof(swit_cfg_subscriber, prefetch), .dflt = "100",
    .min = 1, .max = 100000,
    .desc = "Unacknowledged deliveries the broker may send ahead: "
            "RabbitMQ basic.qos, NATS JetStream max_ack_pending; Kafka "
            "and memory have no such limit (the worker queues' "
            "high-water mark applies)" },
  { .name = "ack_deadline", .type = SWIT_CFG_DURATION,
    .offset = offsetof(swit_cfg_subscriber, ack_deadline_ms), .dflt = "30s",
    .min = 1, .max = 24 * MS_H,
    .desc = "Time to settle a delivery before the broker redelivers it: "
            "NATS JetStream ack_wait; RabbitMQ, Kafka and memory redeliver "
            "on a lost connection or rebalance instead" },
  { .name = "max_attempts", .type = SWIT_CFG_INT,
    .offset = offsetof(swit_cfg_subscriber, max_attempts), .dflt = "3",
    .min = 1, .max = 1000,
    .desc = "Handler attempts before the message is dead-lettered" },
  { .name = "retry_delay", .type = SWIT_CFG_DURATION,
    .offset = offsetof(swit_cfg_subscriber, retry_delay_ms), .dflt = "100ms",
    .min = 0, .max = MS_H, .desc = "Backoff before the first retry" },
  { .name = "retry_max_delay", .type = SWIT_CFG_DURATION,
    .offset = offsetof(swit_cfg_subscriber, retry_max_delay_ms),
    .dflt = "30s", .min = 0, .max = 24 * MS_H,
    .desc = "Upper limit of the retry backoff" },
  { .name = "retry_multiplier", .type = SWIT_CFG_DOUBLE,
    .offset = offsetof(swit_cfg_subscriber, retry_multiplier), .dflt = "2.0",
    .min = 1, .max = 100, .desc = "Backoff growth factor per attempt" },
  { .name = "retry_jitter", .type = SWIT_CFG_DOUBLE,
    .offset = offsetof(swit_cfg_subscriber, retry_jitter), .dflt = "0.2",
    .min = 0, .max = 1, .desc = "Random +/- fraction applied to each delay" },
  { .name = "circuit_breaker", .type = SWIT_CFG_SECTION,
    .offset = offsetof(swit_cfg_subscriber, circuit_breaker),
    .fields = breaker_fields,
    .desc = "Circuit breaker of the subscriptions (docs/resilience.md)" },
  { .name = "errors", .type = SWIT_CFG_SECTION,
    .offset = offsetof(swit_cfg_subscriber, errors), .fields = errors_fields,
    .desc = "Error classification of handler failures (docs/resilience.md)" },
  { .name = "dedup", .type = SWIT_CFG_SECTION,
    .offset = offsetof(swit_cfg_subscriber, dedup), .fields = dedup_fields,
    .desc = "Deduplication by message id, in memory (docs/resilience.md)" },
  { .name = "dead_letter", .type = SWIT_CFG_SECTION,
    .offset = offsetof(swit_cfg_subscriber, dead_letter),
    .fields = dead_letter_fields,
    .desc = "What the dead-letter copies carry and how long they live "
            "(docs/resilience.md)" },
  { .name = NULL }
};

/* ---------------------------------------------------------------------
 * messaging.broker */

#define BROKER messaging.broker
#define RECONNECT messaging.broker.reconnect
static const swit_cfg_field reconnect_fields[] = {
  { .name = "delay", .type = SWIT_CFG_DURATION,
    .offset = OFF(RECONNECT, delay_ms), .dflt = "100ms", .min = 0,
    .max = MS_H, .desc = "Backoff before the first reconnect attempt" },
  { .name = "max_delay", .type = SWIT_CFG_DURATION,
    .offset = OFF(RECONNECT, max_delay_ms), .dflt = "30s", .min = 0,
    .max = 24 * MS_H, .desc = "Upper limit of the reconnect backoff" },
  { .name = "max_attempts", .type = SWIT_CFG_INT,
    .offset = OFF(RECONNECT, max_attempts), .dflt = "0", .min = 0,
    .max = 1000000, .desc = "Attempts before the connection is Failed "
                            "(0 = keep trying)" },
  { .name = NULL }
};

static const swit_cfg_field broker_fields[] = {
  { .name = "type", .type = SWIT_CFG_ENUM, .offset = OFF(BROKER, type),
    .dflt = "memory", .choices = swit__broker_types,
    .desc = "Broker adapter (one of those compiled in)" },
  { .name = "endpoints", .type = SWIT_CFG_LIST,
    .offset = OFF(BROKER, endpoints),
    .desc = "Broker addresses: Kafka bootstrap servers (host:port), "
            "RabbitMQ AMQP URLs or host:port, NATS URLs (the memory "
            "broker has no connection and reads none)" },
  { .name = "config", .type = SWIT_CFG_PASSTHROUGH,
    .offset = OFF(BROKER, config),
    .desc = "Broker-native settings, validated by the adapter" },
  { .name = "reconnect", .type = SWIT_CFG_SECTION,
    .offset = OFF(BROKER, reconnect), .fields = reconnect_fields,
    .desc = "Reconnect backoff (exponential, with jitter) of the networked "
            "brokers" },
  { .name = NULL }
};

/* ---------------------------------------------------------------------
 * messaging.resources */

static const swit_cfg_field connections_fields[] = {
  UNSUPPORTED("max_per_broker", "Connections opened to one broker at most"),
  UNSUPPORTED("idle_timeout", "Idle connections are closed after this"),
  { .name = NULL }
};

static const swit_cfg_field res_publishers_fields[] = {
  UNSUPPORTED("pool_size", "Publisher instances"),
  UNSUPPORTED("buffer_size", "Messages buffered before a publish waits"),
  UNSUPPORTED("flush_interval",
              "Buffered messages are flushed at least this often"),
  { .name = NULL }
};

#define RSUB messaging.resources.subscribers
static const swit_cfg_field res_subscribers_fields[] = {
  { .name = "worker_pool_size", .type = SWIT_CFG_INT,
    .offset = OFF(RSUB, worker_pool_size), .dflt = "50", .min = 1,
    .max = 1024, .desc = "Worker threads, each with its own Lua state" },
  UNSUPPORTED("prefetch_count", "Messages queued per worker (the queue's "
              "high-water mark comes from max_in_flight)"),
  { .name = "max_in_flight", .type = SWIT_CFG_INT,
    .offset = OFF(RSUB, max_in_flight), .dflt = "1000", .min = 1,
    .max = 1000000,
    .desc = "Unsettled messages per host, shared out among the workers as "
            "their queues' high-water mark (at least 2 batches each)" },
  { .name = NULL }
};

#define RMEM messaging.resources.memory
static const swit_cfg_field memory_fields[] = {
  { .name = "max_message_size", .type = SWIT_CFG_SIZE,
    .offset = OFF(RMEM, max_message_size), .dflt = "10MB", .min = 1,
    .max = GIB, .desc = "Largest message (payload + key + headers) a "
                         "broker accepts; larger ones are refused or "
                         "dead-lettered" },
  UNSUPPORTED("buffer_pool_size", "Memory for message buffers in total"),
  { .name = NULL }
};

#define RES messaging.resources
static const swit_cfg_field resources_fields[] = {
  /* offset 0: every key of these two is unsupported, nothing is written */
  { .name = "connections", .type = SWIT_CFG_SECTION, .offset = 0,
    .fields = connections_fields, .desc = "Broker connections" },
  { .name = "publishers", .type = SWIT_CFG_SECTION, .offset = 0,
    .fields = res_publishers_fields, .desc = "Publisher pool" },
  { .name = "subscribers", .type = SWIT_CFG_SECTION,
    .offset = OFF(RES, subscribers), .fields = res_subscribers_fields,
    .desc = "Worker pool" },
  { .name = "memory", .type = SWIT_CFG_SECTION, .offset = OFF(RES, memory),
    .fields = memory_fields, .desc = "Memory limits" },
  { .name = NULL }
};

/* ---------------------------------------------------------------------
 * messaging.security */

#define TLS messaging.security.transport.tls
static const swit_cfg_field tls_fields[] = {
  { .name = "enabled", .type = SWIT_CFG_BOOL, .offset = OFF(TLS, enabled),
    .dflt = "false", .brokers = ONLY("nats kafka"),
    .desc = "Use TLS to the broker (Kafka: security.protocol SSL, or "
            "SASL_SSL with a username)" },
  { .name = "cert_file", .type = SWIT_CFG_STR, .offset = OFF(TLS, cert_file),
    .brokers = ONLY("nats kafka"),
    .desc = "Client certificate (PEM), relative to the config file" },
  { .name = "key_file", .type = SWIT_CFG_STR, .offset = OFF(TLS, key_file),
    .brokers = ONLY("nats kafka"),
    .desc = "Client private key (PEM), relative to the config file" },
  { .name = "ca_file", .type = SWIT_CFG_STR, .offset = OFF(TLS, ca_file),
    .brokers = ONLY("nats kafka"),
    .desc = "CA bundle (PEM), relative to the config file" },
  { .name = "verify_server", .type = SWIT_CFG_BOOL,
    .offset = OFF(TLS, verify_server), .dflt = "true", .brokers = ONLY("nats kafka"),
    .desc = "Verify the broker's certificate and name (NATS: "
            "messaging.broker.config.tls_hostname)" },
  { .name = NULL }
};

#define TRANSPORT messaging.security.transport
static const swit_cfg_field transport_fields[] = {
  { .name = "tls", .type = SWIT_CFG_SECTION, .offset = OFF(TRANSPORT, tls),
    .fields = tls_fields, .desc = "TLS to the broker" },
  { .name = NULL }
};

#define AUTH messaging.security.authentication
static const swit_cfg_field auth_fields[] = {
  UNSUPPORTED("type", "One of none, sasl, basic, token"),
  { .name = "mechanism", .type = SWIT_CFG_STR, .offset = OFF(AUTH, mechanism),
    .brokers = ONLY("kafka"),
    .desc = "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 "
            "(sasl.mechanisms; needs username)" },
  { .name = "username", .type = SWIT_CFG_STR, .offset = OFF(AUTH, username),
    .brokers = ONLY("rabbitmq kafka nats"),
    .desc = "User name (RabbitMQ: replaces the endpoint URL's; Kafka: "
            "sasl.username; NATS: instead of messaging.broker.config.user)" },
  { .name = "password", .type = SWIT_CFG_STR, .offset = OFF(AUTH, password),
    .brokers = ONLY("rabbitmq kafka nats"),
    .desc = "Password; replaces the endpoint URL's; use ${VAR}" },
  { .name = NULL }
};

#define ENC messaging.security.message.encryption
static const swit_cfg_field encryption_fields[] = {
  { .name = "enabled", .type = SWIT_CFG_BOOL, .offset = OFF(ENC, enabled),
    .dflt = "false", .desc = "Encrypt payloads (docs/security.md)" },
  { .name = "algorithm", .type = SWIT_CFG_STR, .offset = OFF(ENC, algorithm),
    .dflt = "AES-256-GCM", .desc = "Payload cipher: AES-256-GCM" },
  { .name = "key_provider", .type = SWIT_CFG_STR,
    .offset = OFF(ENC, key_provider), .dflt = "",
    .desc = "Where keys come from: file or env" },
  { .name = "keyring", .type = SWIT_CFG_STR, .offset = OFF(ENC, keyring),
    .desc = "file: keyring path (relative to the config file); env: the "
            "variable holding the keyring" },
  { .name = "topics", .type = SWIT_CFG_LIST, .offset = OFF(ENC, topics),
    .desc = "Topic patterns encrypted (* and ? match); empty: every topic" },
  { .name = "headers", .type = SWIT_CFG_LIST, .offset = OFF(ENC, headers),
    .desc = "Headers encrypted with the payload" },
  { .name = NULL }
};

#define SIGN messaging.security.message.signing
static const swit_cfg_field signing_fields[] = {
  { .name = "enabled", .type = SWIT_CFG_BOOL, .offset = OFF(SIGN, enabled),
    .dflt = "false", .desc = "Sign published messages, verify received ones" },
  { .name = "algorithm", .type = SWIT_CFG_STR, .offset = OFF(SIGN, algorithm),
    .dflt = "HMAC-SHA256", .desc = "HMAC-SHA256 or Ed25519" },
  { .name = "key_provider", .type = SWIT_CFG_STR,
    .offset = OFF(SIGN, key_provider), .dflt = "",
    .desc = "Where keys come from: file or env" },
  { .name = "keyring", .type = SWIT_CFG_STR, .offset = OFF(SIGN, keyring),
    .desc = "file: keyring path (relative to the config file); env: the "
            "variable holding the keyring" },
  { .name = "topics", .type = SWIT_CFG_LIST, .offset = OFF(SIGN, topics),
    .desc = "Topic patterns signed and verified; empty: every topic" },
  { .name = NULL }
};

#define MSGSEC messaging.security.message
static const swit_cfg_field message_fields[] = {
  { .name = "encryption", .type = SWIT_CFG_SECTION,
    .offset = OFF(MSGSEC, encryption), .fields = encryption_fields,
    .desc = "Payload encryption" },
  { .name = "signing", .type = SWIT_CFG_SECTION,
    .offset = OFF(MSGSEC, signing), .fields = signing_fields,
    .desc = "Message signatures" },
  { .name = NULL }
};

#define AUDIT messaging.security.audit
static const char *const audit_on_full[] = { "drop", "block", NULL };
static const swit_cfg_field audit_fields[] = {
  { .name = "enabled", .type = SWIT_CFG_BOOL, .offset = OFF(AUDIT, enabled),
    .dflt = "false", .desc = "Write an audit log" },
  { .name = "log_publishes", .type = SWIT_CFG_BOOL,
    .offset = OFF(AUDIT, log_publishes), .dflt = "true",
    .desc = "Audit every publish (when enabled)" },
  { .name = "log_consumes", .type = SWIT_CFG_BOOL,
    .offset = OFF(AUDIT, log_consumes), .dflt = "true",
    .desc = "Audit every consumed message (when enabled)" },
  { .name = "log_payload", .type = SWIT_CFG_BOOL,
    .offset = OFF(AUDIT, log_payload), .dflt = "false",
    .desc = "Include JSON payloads (sensitive_fields redacted)" },
  { .name = "sensitive_fields", .type = SWIT_CFG_LIST,
    .offset = OFF(AUDIT, sensitive_fields),
    .desc = "Payload fields redacted in the audit log (a.b.c; * any key)" },
  { .name = "output", .type = SWIT_CFG_STR, .offset = OFF(AUDIT, output),
    .dflt = "stderr", .desc = "stderr, or a file appended to (relative to "
                              "the config file)" },
  { .name = "buffer_size", .type = SWIT_CFG_SIZE,
    .offset = OFF(AUDIT, buffer_size), .dflt = "1MB", .min = 4096,
    .max = (int64_t)1 << 30, .desc = "Bytes of lines waiting for the writer" },
  { .name = "on_full", .type = SWIT_CFG_ENUM, .offset = OFF(AUDIT, on_full),
    .dflt = "drop", .choices = audit_on_full,
    .desc = "A full buffer: drop the line (counted) or block the caller" },
  { .name = NULL }
};

#define SEC messaging.security
static const swit_cfg_field security_fields[] = {
  { .name = "transport", .type = SWIT_CFG_SECTION,
    .offset = OFF(SEC, transport), .fields = transport_fields,
    .desc = "Transport security" },
  { .name = "authentication", .type = SWIT_CFG_SECTION,
    .offset = OFF(SEC, authentication), .fields = auth_fields,
    .desc = "Broker authentication" },
  { .name = "message", .type = SWIT_CFG_SECTION,
    .offset = OFF(SEC, message), .fields = message_fields,
    .desc = "Message-level security" },
  { .name = "audit", .type = SWIT_CFG_SECTION, .offset = OFF(SEC, audit),
    .fields = audit_fields, .desc = "Audit logging" },
  { .name = NULL }
};

/* ---------------------------------------------------------------------
 * Top level: server, messaging, lua */

static const char *const log_levels[] = { "debug", "info", "warn", "error",
                                          NULL };
static const char *const log_formats[] = { "text", "json", NULL };

/* server.admin.tls and server.http.tls: offsets within swit_cfg_server_tls */
static const swit_cfg_field server_tls_fields[] = {
  { .name = "cert_file", .type = SWIT_CFG_STR,
    .offset = offsetof(swit_cfg_server_tls, cert_file),
    .desc = "Serve HTTPS: certificate chain (PEM, the server's first), "
            "relative to the config file; with key_file" },
  { .name = "key_file", .type = SWIT_CFG_STR,
    .offset = offsetof(swit_cfg_server_tls, key_file),
    .desc = "Private key of cert_file (PEM), relative to the config file" },
  { .name = "client_ca_file", .type = SWIT_CFG_STR,
    .offset = offsetof(swit_cfg_server_tls, client_ca_file),
    .desc = "Mutual TLS: CA certificates (PEM) a client's certificate must "
            "chain to; a client without one is refused in the handshake. "
            "Needs cert_file" },
  { .name = NULL }
};

#define ADMIN server.admin
static const swit_cfg_field admin_fields[] = {
  { .name = "listen", .type = SWIT_CFG_STR, .offset = OFF(ADMIN, listen),
    .dflt = "127.0.0.1:9090",
    .desc = "Admin HTTP server (health, metrics, status, reload): "
            "host:port ([v6]:port), port 0 = any free port, or off; "
            "anything else (port outside 0..65535) is refused" },
  { .name = "token", .type = SWIT_CFG_STR, .offset = OFF(ADMIN, token),
    .dflt = "", .desc = "Bearer token required by every state-changing "
                         "admin endpoint (empty: those endpoints answer "
                         "403); use ${VAR}" },
  { .name = "max_connections", .type = SWIT_CFG_INT,
    .offset = OFF(ADMIN, max_connections), .dflt = "64", .min = 8,
    .max = 65536,
    .desc = "Open connections at most; the last 4 serve /healthz and "
            "/readyz only, and a new connection at the cap closes the "
            "oldest one that is idle or still sending its request" },
  { .name = "tls", .type = SWIT_CFG_SECTION, .offset = OFF(ADMIN, tls),
    .fields = server_tls_fields,
    .desc = "TLS of the admin server (HTTPS; TLS 1.2 at least)" },
  { .name = NULL }
};

#define LOG server.log
static const swit_cfg_field log_fields[] = {
  { .name = "level", .type = SWIT_CFG_ENUM, .offset = OFF(LOG, level),
    .dflt = "info", .choices = log_levels,
    .desc = "Lowest level written to stderr" },
  { .name = "format", .type = SWIT_CFG_ENUM, .offset = OFF(LOG, format),
    .dflt = "text", .choices = log_formats,
    .desc = "text lines, or JSON lines (time, level, worker, topic, "
            "trace_id, msg), the swit command's own messages included" },
  { .name = NULL }
};

#define HTTP server.http
static const swit_cfg_field http_fields[] = {
  { .name = "listen", .type = SWIT_CFG_STR, .offset = OFF(HTTP, listen),
    .dflt = "off",
    .desc = "HTTP ingress (POST /v1/publish/{topic}): host:port "
            "([v6]:port), port 0 = any free port, or off; anything else "
            "(port outside 0..65535) is refused" },
  { .name = "max_connections", .type = SWIT_CFG_INT,
    .offset = OFF(HTTP, max_connections), .dflt = "1024", .min = 1,
    .max = 65536,
    .desc = "Open ingress connections at most; a new connection at the "
            "cap closes the oldest one that is idle or still sending its "
            "request" },
  { .name = "trust_headers", .type = SWIT_CFG_BOOL,
    .offset = OFF(HTTP, trust_headers), .dflt = "false",
    .desc = "Let clients set x-swit-* and traceparent/tracestate message "
            "headers (Swit-Header-...); off: such a request gets 400" },
  { .name = "token", .type = SWIT_CFG_STR, .offset = OFF(HTTP, token),
    .dflt = "", .desc = "Bearer token every ingress request must carry "
                         "(Authorization: Bearer ...; else 401); empty: "
                         "none; use ${VAR}" },
  { .name = "tls", .type = SWIT_CFG_SECTION, .offset = OFF(HTTP, tls),
    .fields = server_tls_fields,
    .desc = "TLS of the ingress (HTTPS; TLS 1.2 at least)" },
  { .name = NULL }
};

#define METRICS server.metrics
static const swit_cfg_field metrics_fields[] = {
  { .name = "enabled", .type = SWIT_CFG_BOOL, .offset = OFF(METRICS, enabled),
    .dflt = "true",
    .desc = "Count messages for /metrics (off: the hot path counts "
            "nothing and /metrics serves gauges only)" },
  { .name = NULL }
};

static const swit_cfg_field server_fields[] = {
  { .name = "name", .type = SWIT_CFG_STR, .offset = OFF(server, name),
    .dflt = "swit", .desc = "Service name; the default subscription group" },
  { .name = "version", .type = SWIT_CFG_STR, .offset = OFF(server, version),
    .dflt = "0.0.0",
    .desc = "Service version: in the start-up log line, the "
            "swit_build_info metric (service_version) and /admin/status" },
  { .name = "shutdown_timeout", .type = SWIT_CFG_DURATION,
    .offset = OFF(server, shutdown_timeout_ms), .dflt = "30s",
    .min = 0, .max = MS_H,
    .desc = "How long a stop may drain in-flight messages before giving "
            "the rest back to the broker" },
  { .name = "admin", .type = SWIT_CFG_SECTION, .offset = OFF(server, admin),
    .fields = admin_fields, .desc = "Admin HTTP server" },
  { .name = "log", .type = SWIT_CFG_SECTION, .offset = OFF(server, log),
    .fields = log_fields, .desc = "The host's log (stderr)" },
  { .name = "http", .type = SWIT_CFG_SECTION, .offset = OFF(server, http),
    .fields = http_fields, .desc = "HTTP ingress beside messaging" },
  { .name = "metrics", .type = SWIT_CFG_SECTION,
    .offset = OFF(server, metrics), .fields = metrics_fields,
    .desc = "Prometheus metrics" },
  { .name = NULL }
};

#define TRACING messaging.tracing
static const swit_cfg_field tracing_fields[] = {
  { .name = "enabled", .type = SWIT_CFG_BOOL, .offset = OFF(TRACING, enabled),
    .dflt = "false",
    .desc = "W3C trace context: a consumer span per handled message, a "
            "child traceparent on everything handlers publish" },
  { .name = "otlp_endpoint", .type = SWIT_CFG_STR,
    .offset = OFF(TRACING, otlp_endpoint), .dflt = "",
    .desc = "OTLP/HTTP JSON traces URL, e.g. "
            "http://127.0.0.1:4318/v1/traces (http only; empty: context "
            "is propagated, no span is recorded)" },
  { .name = "sampling_ratio", .type = SWIT_CFG_DOUBLE,
    .offset = OFF(TRACING, sampling_ratio), .dflt = "1.0", .min = 0,
    .max = 1, .desc = "Fraction of new traces sampled (incoming "
                      "traceparent flags are followed)" },
  { .name = "buffer_size", .type = SWIT_CFG_INT,
    .offset = OFF(TRACING, buffer_size), .dflt = "2048", .min = 16,
    .max = 1000000,
    .desc = "Spans waiting for export, shared out among the workers; "
            "beyond it spans are dropped and counted" },
  { .name = "export_interval", .type = SWIT_CFG_DURATION,
    .offset = OFF(TRACING, export_interval_ms), .dflt = "1s", .min = 10,
    .max = MS_H, .desc = "Spans are exported at least this often" },
  { .name = NULL }
};

static const swit_cfg_field messaging_fields[] = {
  { .name = "enabled", .type = SWIT_CFG_BOOL,
    .offset = OFF(messaging, enabled), .dflt = "true",
    .desc = "Connect to the broker" },
  { .name = "broker", .type = SWIT_CFG_SECTION,
    .offset = OFF(messaging, broker), .fields = broker_fields,
    .desc = "Broker connection" },
  { .name = "publishers", .type = SWIT_CFG_NAMED,
    .offset = OFF(messaging, publishers), .fields = swit__publisher_fields,
    .elem_size = sizeof(swit_cfg_publisher),
    .desc = "Publisher settings by name; others inherit from `default`" },
  { .name = "subscribers", .type = SWIT_CFG_NAMED,
    .offset = OFF(messaging, subscribers), .fields = swit__subscriber_fields,
    .elem_size = sizeof(swit_cfg_subscriber),
    .desc = "Subscriber settings by name; others inherit from `default`" },
  { .name = "resources", .type = SWIT_CFG_SECTION,
    .offset = OFF(messaging, resources), .fields = resources_fields,
    .desc = "Pools and limits" },
  { .name = "security", .type = SWIT_CFG_SECTION,
    .offset = OFF(messaging, security), .fields = security_fields,
    .desc = "TLS, authentication, message security, audit" },
  { .name = "tracing", .type = SWIT_CFG_SECTION,
    .offset = OFF(messaging, tracing), .fields = tracing_fields,
    .desc = "Distributed tracing (W3C trace context, OTLP export)" },
  { .name = NULL }
};

#define HOT lua.hot_reload
static const swit_cfg_field hot_reload_fields[] = {
  { .name = "watch", .type = SWIT_CFG_BOOL, .offset = OFF(HOT, watch),
    .dflt = "false",
    .desc = "Reload when a script or a module on package_path changes" },
  { .name = "debounce", .type = SWIT_CFG_DURATION,
    .offset = OFF(HOT, debounce_ms), .dflt = "200ms", .min = 0, .max = MS_H,
    .desc = "Quiet time after the last change before reloading" },
  { .name = NULL }
};

#define LIMITS lua.limits
static const swit_cfg_field limits_fields[] = {
  { .name = "handler_timeout", .type = SWIT_CFG_DURATION,
    .offset = OFF(LIMITS, handler_timeout_ms), .dflt = "30s", .min = 1,
    .max = 24 * MS_H,
    .desc = "A handler, timer or on_start running longer than this fails "
            "/healthz (named with its topic and script), gets no new "
            "unordered work, and is interrupted where LuaJIT allows "
            "(docs/lua-api.md, 'Limits')" },
  { .name = "load_timeout", .type = SWIT_CFG_DURATION,
    .offset = OFF(LIMITS, load_timeout_ms), .dflt = "5s", .min = 1,
    .max = MS_H,
    .desc = "Loading the scripts (top level, on_load, export/import) must "
            "finish within this, or they are refused with file:line" },
  { .name = "memory", .type = SWIT_CFG_SIZE,
    .offset = OFF(LIMITS, memory), .dflt = "256MB", .min = 1024 * 1024,
    .max = 1024 * GIB,
    .desc = "Bytes one worker's Lua state may hold while a handler, timer "
            "or on_start runs (garbage not yet collected included); past "
            "it the message fails with \"lua.limits.memory exceeded\" and "
            "is retried or dead-lettered (docs/lua-api.md, 'Limits')" },
  { .name = NULL }
};

static const swit_cfg_field lua_fields[] = {
  { .name = "scripts", .type = SWIT_CFG_LIST, .offset = OFF(lua, scripts),
    .desc = "Handler scripts, relative to the config file" },
  { .name = "package_path", .type = SWIT_CFG_LIST,
    .offset = OFF(lua, package_path),
    .desc = "Directories or ?.lua patterns added to package.path" },
  { .name = "batch_size", .type = SWIT_CFG_INT, .offset = OFF(lua, batch_size),
    .dflt = "256", .min = 1, .max = 65536,
    .desc = "Messages handed to Lua per call" },
  { .name = "hot_reload", .type = SWIT_CFG_SECTION,
    .offset = OFF(lua, hot_reload), .fields = hot_reload_fields,
    .desc = "Reloading the scripts while running" },
  { .name = "limits", .type = SWIT_CFG_SECTION, .offset = OFF(lua, limits),
    .fields = limits_fields, .desc = "Limits on handlers" },
  { .name = NULL }
};

const swit_cfg_field swit__config_fields[] = {
  { .name = "server", .type = SWIT_CFG_SECTION,
    .offset = offsetof(swit_config, server), .fields = server_fields,
    .desc = "This service" },
  { .name = "messaging", .type = SWIT_CFG_SECTION,
    .offset = offsetof(swit_config, messaging), .fields = messaging_fields,
    .desc = "Broker, publishers, subscribers, resources, security" },
  { .name = "lua", .type = SWIT_CFG_SECTION,
    .offset = offsetof(swit_config, lua), .fields = lua_fields,
    .desc = "Lua scripts" },
  { .name = NULL }
};
