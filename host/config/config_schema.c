/*
 * config_schema.c - the field tables that describe swit_config.
 *
 * Every member of swit_config (config.h) that comes from YAML has one row
 * here: key name, type, offset, default (YAML text), bounds and a line of
 * description. The loader fills defaults from these rows, rejects keys
 * that have none, and swit__config_reference() prints them as the docs.
 * The tables are constant data, read from any thread. Members that are not
 * keys (path, base_dir, the *_mark fields) are set by config.c.
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

/* ---------------------------------------------------------------------
 * Named publishers and subscribers */

const swit_cfg_field swit__publisher_fields[] = {
  { .name = "retry_attempts", .type = SWIT_CFG_INT,
    .offset = offsetof(swit_cfg_publisher, retry_attempts), .dflt = "3",
    .min = 0, .max = 100,
    .desc = "Publish retries after the first failure (0 = none)" },
  { .name = "retry_delay", .type = SWIT_CFG_DURATION,
    .offset = offsetof(swit_cfg_publisher, retry_delay_ms), .dflt = "1s",
    .min = 0, .max = MS_H, .desc = "Pause between publish retries" },
  { .name = "batch_size", .type = SWIT_CFG_INT,
    .offset = offsetof(swit_cfg_publisher, batch_size), .dflt = "100",
    .min = 1, .max = 100000, .desc = "Messages sent to the broker at once" },
  { .name = "timeout", .type = SWIT_CFG_DURATION,
    .offset = offsetof(swit_cfg_publisher, timeout_ms), .dflt = "5s",
    .min = 0, .max = MS_H,
    .desc = "How long a publish may wait for room or a confirm (0 = never)" },
  { .name = "transactional", .type = SWIT_CFG_BOOL,
    .offset = offsetof(swit_cfg_publisher, transactional), .dflt = "false",
    .desc = "The subscriptions of the group of this name (set on default: "
            "of every group) run exactly_once: what their handlers publish "
            "commits with the consumed offsets in a broker transaction "
            "(Kafka)" },
  { .name = NULL }
};

#define CB(f) offsetof(swit_cfg_breaker, f)
static const swit_cfg_field breaker_fields[] = {
  { .name = "enabled", .type = SWIT_CFG_BOOL, .offset = CB(enabled),
    .dflt = "false", .desc = "Open the circuit (pause the subscription) when "
                             "its handler keeps failing" },
  { .name = "failure_threshold", .type = SWIT_CFG_INT,
    .offset = CB(failure_threshold), .dflt = "5", .min = 0, .max = 1000000,
    .desc = "Failures in a row that open it (0 = the rate alone)" },
  { .name = "success_threshold", .type = SWIT_CFG_INT,
    .offset = CB(success_threshold), .dflt = "2", .min = 1, .max = 10000,
    .desc = "Half-open: trial messages let through, all of which must "
            "succeed to close it" },
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
  { .name = NULL }
};

const swit_cfg_field swit__subscriber_fields[] = {
  { .name = "concurrency", .type = SWIT_CFG_INT,
    .offset = offsetof(swit_cfg_subscriber, concurrency), .dflt = "10",
    .min = 1, .max = 1024, .desc = "Messages handled in parallel" },
  { .name = "prefetch", .type = SWIT_CFG_INT,
    .offset = offsetof(swit_cfg_subscriber, prefetch), .dflt = "100",
    .min = 1, .max = 100000, .desc = "Broker-side prefetch hint" },
  { .name = "ack_deadline", .type = SWIT_CFG_DURATION,
    .offset = offsetof(swit_cfg_subscriber, ack_deadline_ms), .dflt = "30s",
    .min = 1, .max = 24 * MS_H,
    .desc = "Time to settle a delivery before the broker redelivers it" },
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
  { .name = NULL }
};

/* ---------------------------------------------------------------------
 * messaging.broker */

static const char *const broker_types[] = { "memory", "kafka", "rabbitmq",
                                            "nats", NULL };

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
    .dflt = "memory", .choices = broker_types, .desc = "Broker adapter" },
  { .name = "endpoints", .type = SWIT_CFG_LIST,
    .offset = OFF(BROKER, endpoints), .desc = "Broker addresses (host:port)" },
  { .name = "config", .type = SWIT_CFG_PASSTHROUGH,
    .offset = OFF(BROKER, config),
    .desc = "Broker-native settings, validated by the adapter" },
  { .name = "reconnect", .type = SWIT_CFG_SECTION,
    .offset = OFF(BROKER, reconnect), .fields = reconnect_fields,
    .desc = "Reconnect backoff (exponential, with jitter)" },
  { .name = NULL }
};

/* ---------------------------------------------------------------------
 * messaging.resources */

#define CONNS messaging.resources.connections
static const swit_cfg_field connections_fields[] = {
  { .name = "max_per_broker", .type = SWIT_CFG_INT,
    .offset = OFF(CONNS, max_per_broker), .dflt = "10", .min = 1,
    .max = 1000, .desc = "Connections opened to one broker at most" },
  { .name = "idle_timeout", .type = SWIT_CFG_DURATION,
    .offset = OFF(CONNS, idle_timeout_ms), .dflt = "5m", .min = 0,
    .max = 24 * MS_H, .desc = "Idle connections are closed after this" },
  { .name = NULL }
};

#define RPUB messaging.resources.publishers
static const swit_cfg_field res_publishers_fields[] = {
  { .name = "pool_size", .type = SWIT_CFG_INT, .offset = OFF(RPUB, pool_size),
    .dflt = "20", .min = 1, .max = 1024, .desc = "Publisher instances" },
  { .name = "buffer_size", .type = SWIT_CFG_INT,
    .offset = OFF(RPUB, buffer_size), .dflt = "1000", .min = 1,
    .max = 1000000, .desc = "Messages buffered before a publish waits" },
  { .name = "flush_interval", .type = SWIT_CFG_DURATION,
    .offset = OFF(RPUB, flush_interval_ms), .dflt = "100ms", .min = 0,
    .max = MS_H, .desc = "Buffered messages are flushed at least this often" },
  { .name = NULL }
};

#define RSUB messaging.resources.subscribers
static const swit_cfg_field res_subscribers_fields[] = {
  { .name = "worker_pool_size", .type = SWIT_CFG_INT,
    .offset = OFF(RSUB, worker_pool_size), .dflt = "50", .min = 1,
    .max = 1024, .desc = "Worker threads, each with its own Lua state" },
  { .name = "prefetch_count", .type = SWIT_CFG_INT,
    .offset = OFF(RSUB, prefetch_count), .dflt = "100", .min = 1,
    .max = 100000, .desc = "Messages queued per worker" },
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
  { .name = "buffer_pool_size", .type = SWIT_CFG_SIZE,
    .offset = OFF(RMEM, buffer_pool_size), .dflt = "100MB", .min = 1,
    .max = 1024 * GIB, .desc = "Memory for message buffers in total" },
  { .name = NULL }
};

#define RES messaging.resources
static const swit_cfg_field resources_fields[] = {
  { .name = "connections", .type = SWIT_CFG_SECTION,
    .offset = OFF(RES, connections), .fields = connections_fields,
    .desc = "Broker connections" },
  { .name = "publishers", .type = SWIT_CFG_SECTION,
    .offset = OFF(RES, publishers), .fields = res_publishers_fields,
    .desc = "Publisher pool" },
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
    .dflt = "false", .desc = "Use TLS to the broker" },
  { .name = "cert_file", .type = SWIT_CFG_STR, .offset = OFF(TLS, cert_file),
    .desc = "Client certificate (PEM), relative to the config file" },
  { .name = "key_file", .type = SWIT_CFG_STR, .offset = OFF(TLS, key_file),
    .desc = "Client private key (PEM), relative to the config file" },
  { .name = "ca_file", .type = SWIT_CFG_STR, .offset = OFF(TLS, ca_file),
    .desc = "CA bundle (PEM), relative to the config file" },
  { .name = "verify_server", .type = SWIT_CFG_BOOL,
    .offset = OFF(TLS, verify_server), .dflt = "true",
    .desc = "Verify the broker's certificate" },
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
  { .name = "type", .type = SWIT_CFG_STR, .offset = OFF(AUTH, type),
    .dflt = "none", .desc = "One of none, sasl, basic, token" },
  { .name = "mechanism", .type = SWIT_CFG_STR,
    .offset = OFF(AUTH, mechanism),
    .desc = "SASL mechanism, e.g. SCRAM-SHA-512" },
  { .name = "username", .type = SWIT_CFG_STR, .offset = OFF(AUTH, username),
    .desc = "User name" },
  { .name = "password", .type = SWIT_CFG_STR, .offset = OFF(AUTH, password),
    .desc = "Password or token; use ${VAR}" },
  { .name = NULL }
};

#define ENC messaging.security.message.encryption
static const swit_cfg_field encryption_fields[] = {
  { .name = "enabled", .type = SWIT_CFG_BOOL, .offset = OFF(ENC, enabled),
    .dflt = "false", .desc = "Encrypt payloads" },
  { .name = "algorithm", .type = SWIT_CFG_STR, .offset = OFF(ENC, algorithm),
    .dflt = "AES-256-GCM", .desc = "Payload cipher" },
  { .name = "key_provider", .type = SWIT_CFG_STR,
    .offset = OFF(ENC, key_provider), .dflt = "",
    .desc = "Where keys come from, e.g. vault" },
  { .name = NULL }
};

#define SIGN messaging.security.message.signing
static const swit_cfg_field signing_fields[] = {
  { .name = "enabled", .type = SWIT_CFG_BOOL, .offset = OFF(SIGN, enabled),
    .dflt = "false", .desc = "Sign published messages, verify received ones" },
  { .name = "algorithm", .type = SWIT_CFG_STR, .offset = OFF(SIGN, algorithm),
    .dflt = "HMAC-SHA256", .desc = "Signature algorithm" },
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
static const swit_cfg_field audit_fields[] = {
  { .name = "enabled", .type = SWIT_CFG_BOOL, .offset = OFF(AUDIT, enabled),
    .dflt = "false", .desc = "Write an audit log" },
  { .name = "log_publishes", .type = SWIT_CFG_BOOL,
    .offset = OFF(AUDIT, log_publishes), .dflt = "true",
    .desc = "Audit every publish (when enabled)" },
  { .name = "log_consumes", .type = SWIT_CFG_BOOL,
    .offset = OFF(AUDIT, log_consumes), .dflt = "true",
    .desc = "Audit every consumed message (when enabled)" },
  { .name = "sensitive_fields", .type = SWIT_CFG_LIST,
    .offset = OFF(AUDIT, sensitive_fields),
    .desc = "Payload fields masked in the audit log" },
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
  { .name = "message", .type = SWIT_CFG_SECTION, .offset = OFF(SEC, message),
    .fields = message_fields, .desc = "Message-level security" },
  { .name = "audit", .type = SWIT_CFG_SECTION, .offset = OFF(SEC, audit),
    .fields = audit_fields, .desc = "Audit logging" },
  { .name = NULL }
};

/* ---------------------------------------------------------------------
 * Top level: server, messaging, lua */

static const char *const log_levels[] = { "debug", "info", "warn", "error",
                                          NULL };
static const char *const log_formats[] = { "text", "json", NULL };

#define ADMIN server.admin
static const swit_cfg_field admin_fields[] = {
  { .name = "listen", .type = SWIT_CFG_STR, .offset = OFF(ADMIN, listen),
    .dflt = "127.0.0.1:9090",
    .desc = "Admin HTTP server (health, metrics, status, reload): "
            "host:port, port 0 = any free port, or off" },
  { .name = "token", .type = SWIT_CFG_STR, .offset = OFF(ADMIN, token),
    .dflt = "", .desc = "Bearer token required by every state-changing "
                         "admin endpoint (empty: those endpoints answer "
                         "403); use ${VAR}" },
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
    .desc = "HTTP ingress (POST /v1/publish/{topic}): host:port, port 0 = "
            "any free port, or off" },
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
    .dflt = "0.0.0", .desc = "Service version" },
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
    .desc = "A worker in one batch of handlers longer than this fails "
            "/healthz (named with its topic and script)" },
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
