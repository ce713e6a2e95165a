/*
 * config.h - swit's configuration: the typed structs, the field tables
 * that describe them, and the YAML loader.
 *
 * The loader (config.c, config_yaml.c) parses YAML with libyaml, expands
 * ${VAR} and ${VAR:-default} in scalars, and walks the document against
 * the field tables in config_schema.c: each field has a name, a type,
 * an offset into its struct, a default, bounds and a description. The
 * same tables fill defaults, reject unknown keys, and print the reference
 * (`swit config-reference`). Errors read "file:line:col: key: expected...".
 *
 * A loaded swit_config is immutable and owned by whoever loaded it; free
 * it with swit__config_free(). It is read from any thread.
 */
#ifndef SWIT_CONFIG_H
#define SWIT_CONFIG_H

#include "base/log.h" /* SWIT_LOG_FMT_* */
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------------
 * Field tables */

typedef enum swit_cfg_type {
  SWIT_CFG_STR,         /* char * (owned by the config) */
  SWIT_CFG_BOOL,        /* int (0/1): true/false/yes/no/on/off */
  SWIT_CFG_INT,         /* int64_t, within [min, max] */
  SWIT_CFG_DOUBLE,      /* double */
  SWIT_CFG_DURATION,    /* int64_t milliseconds: "250ms", "30s", "5m", "1h", or a bare number of ms */
  SWIT_CFG_SIZE,        /* int64_t bytes: "512", "64KB", "10MB", "1GB" (1024-based) */
  SWIT_CFG_ENUM,        /* int: index into `choices` */
  SWIT_CFG_LIST,        /* swit_cfg_list (strings); a scalar is a one-item list */
  SWIT_CFG_SECTION,     /* nested struct described by `fields` */
  SWIT_CFG_NAMED,       /* swit_cfg_named: map of name -> section (`fields`, `elem_size`) */
  SWIT_CFG_PASSTHROUGH, /* swit_cfg_kvlist: any keys, scalar values kept as strings */
  SWIT_CFG_UNSUPPORTED  /* no member: a key of the design that swit does not
                           implement yet; present in a file, it is refused
                           ("not supported yet"), so no key is accepted and
                           ignored. A section whose keys are all unsupported
                           has no member either (offset 0, nothing written). */
} swit_cfg_type;

typedef struct swit_cfg_field {
  const char *name;
  swit_cfg_type type;
  size_t offset;                       /* into the enclosing struct */
  const char *dflt;                    /* default as YAML text, NULL = none */
  int64_t min, max;                    /* INT/DURATION/SIZE bounds (min==max==0: none) */
  const char *const *choices;          /* ENUM: NULL-terminated */
  const struct swit_cfg_field *fields; /* SECTION/NAMED: NULL-name-terminated */
  size_t elem_size;                    /* NAMED: sizeof the element struct */
  const char *desc;                    /* one line for the reference */
  const char *brokers;                 /* NULL, or the broker types that
                                          map this key ("nats", "kafka
                                          rabbitmq"): set with any other,
                                          it is refused at load */
  int default_only;                    /* in a NAMED map: only the
                                          "default" entry's value is read;
                                          set in another entry, refused */
} swit_cfg_field;

/* Where a value came from, for error messages after loading. */
typedef struct swit_cfg_mark {
  const char *file; /* points into the config (owned by it) */
  int line, col;    /* 1-based; 0 when defaulted */
} swit_cfg_mark;

typedef struct swit_cfg_list {
  char **items;
  size_t n;
} swit_cfg_list;

typedef struct swit_cfg_kv {
  char *key;
  char *value;
  swit_cfg_mark mark;
} swit_cfg_kv;

typedef struct swit_cfg_kvlist {
  swit_cfg_kv *items;
  size_t n;
  swit_cfg_mark mark; /* of the map itself */
} swit_cfg_kvlist;

typedef struct swit_cfg_named {
  char **names;
  void *elems;  /* n elements of elem_size bytes */
  size_t n;
} swit_cfg_named;

/* ---------------------------------------------------------------------
 * The configuration (keys of seed-design.md plus `lua`) */

/* messaging.subscribers.<name>.circuit_breaker (host/resil/circuit.c),
 * messaging.publishers.default.circuit_breaker (host/resil/pubcirc.c) */
typedef struct swit_cfg_breaker {
  int enabled;              /* false */
  int64_t failure_threshold;/* 5: failures in a row that open it, 0 = off */
  int64_t success_threshold;/* 2: trial successes that close it */
  int64_t recovery_ms;      /* "30s": open this long, then half-open */
  double failure_rate;      /* 0: failure share in the window that opens it (0 = off) */
  int64_t min_calls;        /* 10: outcomes in the window before the rate counts */
  int64_t window_ms;        /* "60s": the failure-rate window */
} swit_cfg_breaker;

typedef struct swit_cfg_publisher {
  int64_t retry_attempts;   /* 3 */
  int64_t retry_delay_ms;   /* "1s" */
  int64_t timeout_ms;       /* "5s": how long a publish may wait for room/confirm */
  int transactional;        /* false: subscriptions of the group run exactly_once */
  swit_cfg_breaker circuit_breaker; /* per publish target (resil/pubcirc.c) */
} swit_cfg_publisher;

/* messaging.subscribers.<name>.errors (host/resil/classify.c) */
typedef struct swit_cfg_errors {
  int enabled;              /* false */
  int default_rules;        /* true: decode errors are non_retryable */
  swit_cfg_list retryable, non_retryable, critical; /* rules */
} swit_cfg_errors;

/* messaging.subscribers.<name>.dedup (host/resil/dedup.c) */
typedef struct swit_cfg_dedup {
  int enabled;              /* false */
  char *header;             /* "x-swit-id": the message id's header */
  int64_t window_size;      /* 10000: ids remembered per subscription */
  int64_t window_ms;        /* "10m": how long an id is remembered */
  int store;                /* SWIT_DEDUP_MEMORY */
  char *path;               /* store sqlite: the file (resolved), else "" */
} swit_cfg_dedup;

enum { SWIT_DEDUP_MEMORY, SWIT_DEDUP_SQLITE };

/* messaging.subscribers.<name>.dead_letter (core/settle.c) */
typedef struct swit_cfg_dead_letter {
  int include_metadata;     /* true: the x-swit-* headers */
  int64_t ttl_ms;           /* 0: the copies never expire */
} swit_cfg_dead_letter;

/* messaging.subscribers.<name>.rate_limit (host/resil/limit.c); a rate
 * set in the file is at least SWIT_CFG_RATE_MIN */
#define SWIT_CFG_RATE_MIN 0.001
typedef struct swit_cfg_rate {
  double rate;              /* 0: messages per second taken in (0 = off) */
  int64_t burst;            /* 10: messages taken in at once after a pause */
} swit_cfg_rate;

typedef struct swit_cfg_subscriber {
  int64_t concurrency;      /* 0: messages in flight at most (0 = no cap) */
  swit_cfg_rate rate_limit;
  int64_t prefetch;         /* 100 */
  int64_t ack_deadline_ms;  /* "30s" */
  int64_t max_attempts;     /* 3: handler attempts before dead-lettering */
  int64_t retry_delay_ms;   /* "100ms": first retry backoff */
  int64_t retry_max_delay_ms; /* "30s" */
  double retry_multiplier;  /* 2.0 */
  double retry_jitter;      /* 0.2: +/- fraction of the delay */
  swit_cfg_breaker circuit_breaker;
  swit_cfg_errors errors;
  swit_cfg_dedup dedup;
  swit_cfg_dead_letter dead_letter;
} swit_cfg_subscriber;

typedef struct swit_cfg_reconnect {
  int64_t delay_ms;         /* "100ms": first reconnect backoff */
  int64_t max_delay_ms;     /* "30s" */
  int64_t max_attempts;     /* 0: retry forever */
} swit_cfg_reconnect;


/* The compiled-in broker adapters' names, NULL-terminated: generated from
 * the CMake list SWIT_BROKERS (cmake/embed.cmake), so the host names no
 * broker. messaging.broker.type indexes it. */
extern const char *const swit__broker_types[];

enum { SWIT_AUDIT_DROP, SWIT_AUDIT_BLOCK };

/* server.admin.tls, server.http.tls: the HTTP servers' own TLS (both
 * files set, resolved against base_dir and readable; or neither). */
typedef struct swit_cfg_server_tls {
  char *cert_file;          /* PEM chain, the server's certificate first */
  char *key_file;           /* PEM private key */
  char *client_ca_file;     /* mTLS: the CAs of client certificates, or "" */
} swit_cfg_server_tls;

typedef struct swit_config {
  char *path;        /* file name as given, or "<string>" */
  char *base_dir;    /* directory scripts are relative to */

  struct {
    char *name;      /* "swit" */
    char *version;   /* "0.0.0" */
    int64_t shutdown_timeout_ms; /* "30s": drain deadline of a stop */
    /* observability (admin.c, metrics.c, log.c, ingress.c) */
    struct {
      char *listen; char *token; int64_t max_connections;
      swit_cfg_server_tls tls;
    } admin; /* "127.0.0.1:9090" | "off", "", 64 */
    struct { int level; int format; } log;       /* SWIT_LOG_*, SWIT_LOG_FMT_* */
    struct {
      char *listen; int64_t max_connections; int trust_headers;
      char *token;             /* "": no token required */
      swit_cfg_server_tls tls;
    } http; /* ingress: "off", 1024, false */
    struct { int enabled; } metrics;             /* true */
  } server;

  struct {
    int enabled;     /* true */
    struct {
      int type;                 /* index into swit__broker_types */
      swit_cfg_mark type_mark;
      swit_cfg_list endpoints;
      swit_cfg_kvlist config;   /* passthrough; validated by the adapter */
      swit_cfg_reconnect reconnect;
    } broker;
    swit_cfg_named publishers;  /* of swit_cfg_publisher; "default" always present */
    swit_cfg_named subscribers; /* of swit_cfg_subscriber; "default" always present */
    /* resources.connections and resources.publishers are
     * SWIT_CFG_UNSUPPORTED keys: no member */
    struct {
      struct { int64_t worker_pool_size; int64_t max_in_flight; } subscribers; /* 50, 1000 */
      struct { int64_t max_message_size; } memory; /* "10MB" */
    } resources;
    struct {
      struct {
        struct { int enabled; char *cert_file; char *key_file; char *ca_file; int verify_server; } tls; /* false,,,, true (NATS) */
      } transport;
      struct {
        char *mechanism; char *username; char *password;
      } authentication;
      struct {
        /* algorithm, key_provider and keyring are checked by host/sec/,
         * with the marks recorded here ("keyring" is a resolved path
         * for the file provider) */
        struct {
          int enabled; char *algorithm; char *key_provider; char *keyring;
          swit_cfg_list topics, headers;
          swit_cfg_mark algorithm_mark, provider_mark, keyring_mark;
        } encryption;                                  /* false, "AES-256-GCM", "" */
        struct {
          int enabled; char *algorithm; char *key_provider; char *keyring;
          swit_cfg_list topics;
          swit_cfg_mark algorithm_mark, provider_mark, keyring_mark;
        } signing;                                     /* false, "HMAC-SHA256", "" */
      } message;
      struct {
        int enabled; int log_publishes; int log_consumes; int log_payload;
        swit_cfg_list sensitive_fields;
        char *output;                 /* "stderr" or a resolved path */
        int64_t buffer_size;          /* "1MB" */
        int on_full;                  /* SWIT_AUDIT_DROP | SWIT_AUDIT_BLOCK */
        swit_cfg_mark sensitive_mark, output_mark;
      } audit;
    } security;
    struct {
      int enabled;              /* false */
      char *otlp_endpoint;      /* "" = spans are not exported */
      double sampling_ratio;    /* 1.0 */
      int64_t buffer_size;      /* 2048 spans waiting for export */
      int64_t export_interval_ms; /* "1s" */
    } tracing;
  } messaging;

  struct {
    swit_cfg_list scripts;        /* resolved against base_dir at load */
    swit_cfg_list package_path;   /* directories or ?.lua patterns */
    int64_t batch_size;           /* 256: messages per lua_pcall */
    struct {
      int watch;                  /* false: reload when a script changes */
      int64_t debounce_ms;        /* "200ms": quiet time before reloading */
    } hot_reload;
    struct {
      int64_t handler_timeout_ms; /* "30s": /healthz fails past it */
      int64_t load_timeout_ms;    /* "5s": loading scripts past it fails */
      int64_t memory;             /* "256MB": bytes of a worker's state */
    } limits;
    swit_cfg_mark scripts_mark;
  } lua;
} swit_config;

extern const swit_cfg_field swit__config_fields[];      /* the top level */
extern const swit_cfg_field swit__publisher_fields[];
extern const swit_cfg_field swit__subscriber_fields[];

/* The field called `name`, or NULL: the bounds of a key, for the entry
 * points that take the same setting another way (swit.on options). */
const swit_cfg_field *swit__config_field(const swit_cfg_field *fields,
                                         const char *name);

/* "host:port" or "[v6]:port" (port 0..65535) into host and port; -1 if
 * it is neither (server.admin.listen, server.http.listen). */
int swit__listen_split(const char *listen, char *host, size_t hlen,
                       int *port);

/* The longest topic name in bytes (Kafka's limit), at every entry point:
 * swit.on and its dead_letter, the HTTP ingress. */
#define SWIT_TOPIC_MAX 249
/* The longest swit.every period: a day, as the longest config durations. */
#define SWIT_EVERY_MAX_MS ((int64_t)24 * 3600 * 1000)

/* Load from a file or a string (base_dir NULL = working directory).
 * 0 and *out set, or SWIT_E_CONFIG / SWIT_E_NOMEM with the message in err. */
int swit__config_load_file(swit_config **out, const char *path,
                           char *err, size_t errlen);
int swit__config_load_string(swit_config **out, const char *yaml,
                             const char *base_dir, char *err, size_t errlen);
void swit__config_free(swit_config *cfg);

/* Validate a passthrough map against a field table (an adapter's own
 * settings) and fill `out` (defaults applied first). Errors carry the
 * kv's mark and "messaging.broker.config.<key>". A key not in `fields`
 * is refused, or with `keep_unknown` left for the adapter to read. */
int swit__config_apply(const swit_cfg_kvlist *kv, const swit_cfg_field *fields,
                       int keep_unknown, void *out, char *err, size_t errlen);
/* The field called `name`, or NULL. */
const swit_cfg_field *swit__config_field(const swit_cfg_field *fields,
                                         const char *name);
/* Free what swit__config_apply (or the loader) allocated in `obj`. */
void swit__config_free_fields(const swit_cfg_field *fields, void *obj);

/* Lookups: the named publisher/subscriber, falling back to "default". */
const swit_cfg_publisher *swit__config_publisher(const swit_config *cfg,
                                                 const char *name);
const swit_cfg_subscriber *swit__config_subscriber(const swit_config *cfg,
                                                   const char *name);

/* Parse helpers (exposed for tests and for the CLI's --exit-when-idle). */
int swit__parse_duration_ms(const char *s, int64_t *out);
int swit__parse_size(const char *s, int64_t *out);

/* Write the reference of a field table as Markdown table rows
 * (`swit config-reference`, docs/configuration.md). */
void swit__config_reference(const swit_cfg_field *fields, const char *prefix,
                            void (*emit)(void *ud, const char *line), void *ud);

#endif /* SWIT_CONFIG_H */
