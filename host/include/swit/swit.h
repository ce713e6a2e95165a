/*
 * swit.h - the whole public C API of libswit.
 *
 * A host owns a broker connection, a pool of worker threads (each with its
 * own LuaJIT state holding the user's scripts) and the dispatcher between
 * them. An embedder creates a host from a YAML config, may register C
 * handlers beside the Lua ones, starts it, publishes, and stops it.
 *
 * Conventions: functions return 0 on success or a negative SWIT_E_* code;
 * where an `err` buffer is taken, a human-readable reason is written there
 * on failure (always NUL-terminated, may be NULL). Types are opaque.
 * Every *_free accepts NULL. No callback fires after a call that failed.
 */
#ifndef SWIT_H
#define SWIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SWIT_VERSION_STRING "0.1.0"

/* Error codes: one list, generating the enum and swit_strerror(). */
#define SWIT_ERRNO_MAP(X)                                              \
  X(INVAL,    -1, "invalid argument")                                  \
  X(NOMEM,    -2, "out of memory")                                     \
  X(CONFIG,   -3, "configuration error")                               \
  X(SCRIPT,   -4, "script error")                                      \
  X(NOTFOUND, -5, "not found")                                         \
  X(FULL,     -6, "queue full")                                        \
  X(TOOBIG,   -7, "message too large")                                 \
  X(STATE,    -8, "operation not valid in the current state")          \
  X(TIMEDOUT, -9, "timed out")                                         \
  X(BROKER,  -10, "broker error")                                      \
  X(EXISTS,  -11, "already exists")                                    \
  X(SYS,     -12, "system error")

enum {
  SWIT_OK = 0,
#define SWIT__ERR_ENUM(name, code, text) SWIT_E_##name = (code),
  SWIT_ERRNO_MAP(SWIT__ERR_ENUM)
#undef SWIT__ERR_ENUM
};

/* What a handler returns. Values match SWIT_RES_* in bindings/swit_ffi.h. */
enum {
  SWIT_ACK = 0,    /* done: ack/commit the message */
  SWIT_RETRY = 1,  /* retryable: retried with backoff up to max_attempts */
  SWIT_REJECT = 2, /* not retryable: to the dead-letter topic at once */
  SWIT_FATAL = 3   /* critical: dead-lettered at once, logged as an error */
};

/* Subscription ordering. */
enum {
  SWIT_ORDER_KEY = 0, /* same key -> same worker, in order (default) */
  SWIT_ORDER_NONE = 1, /* any worker, round-robin */
  SWIT_ORDER_PARTITION = 2 /* the broker's partition: strict partition order */
};

typedef struct swit_host_s swit_host_t;
typedef struct swit_ffi_msg swit_msg_t; /* opaque: use the accessors */

/* A C handler. Runs on a worker thread; `msg` and every pointer read from
 * it are borrowed for the duration of the call. Return SWIT_ACK,
 * SWIT_RETRY, SWIT_REJECT or SWIT_FATAL; swit_msg_set_error() may add a
 * reason that ends up in the dead-letter headers. */
typedef int (*swit_handler_cb)(swit_msg_t *msg, void *ud);

const char *swit_version(void);
/* Text for a SWIT_E_* code (static; never NULL). */
const char *swit_strerror(int code);

/* Create a host from a config file (script paths are relative to the file's
 * directory) or from a YAML string (relative to `base_dir`, or the working
 * directory when NULL). Validates the config fully; connects nothing.
 * Returns SWIT_E_CONFIG with "file:line:col: key: expected ..." in err.
 * On success *out owns the host; free it with swit_host_free(). */
int swit_host_new(swit_host_t **out, const char *config_path,
                  char *err, size_t errlen);
int swit_host_new_from_string(swit_host_t **out, const char *yaml,
                              const char *base_dir, char *err, size_t errlen);

/* Register a C handler for `topic` (group NULL = the default group,
 * ordering SWIT_ORDER_*). Before swit_host_start() only. `ud` is passed to
 * every call and stays owned by the caller. SWIT_E_EXISTS if the same
 * topic and group already has a handler. */
int swit_host_handle(swit_host_t *h, const char *topic, const char *group,
                     int ordering, swit_handler_cb cb, void *ud,
                     char *err, size_t errlen);

/* Load the scripts into a scratch state and report registrations without
 * connecting (what `swit check` does). */
int swit_host_check(swit_host_t *h, char *err, size_t errlen);

/* Connect, load the scripts into every worker, subscribe, start the
 * workers. Returns once all of that runs; the scripts' on_start functions
 * then run on worker 0 (swit_host_wait_idle waits for them). On failure
 * nothing keeps running and the host may only be freed. */
int swit_host_start(swit_host_t *h, char *err, size_t errlen);

/* Publish one message. Thread-safe, callable from handlers. `headers` is
 * NULL or a NULL-terminated array of name, value, name, value, ...
 * strings. Waits for room when the broker's queue is full (up to the
 * default publisher's retry budget); *confirm_id (may be NULL) receives
 * the broker's confirm sequence once the broker has accepted it. */
int swit_host_publish(swit_host_t *h, const char *topic,
                      const void *key, size_t key_len,
                      const void *payload, size_t payload_len,
                      const char *const *headers, uint64_t *confirm_id,
                      char *err, size_t errlen);

/* One message of a batch publish (no headers: use swit_host_publish). */
typedef struct swit_pub {
  const void *key;
  size_t key_len;
  const void *payload;
  size_t payload_len;
} swit_pub_t;

/* Publish n messages to one topic in one call to the broker (one lock,
 * one round trip where the broker allows it). Same waiting and retry
 * rules as swit_host_publish. On failure, the first *accepted (may be
 * NULL) messages were published and the rest were not. */
int swit_host_publish_batch(swit_host_t *h, const char *topic,
                            const swit_pub_t *msgs, size_t n,
                            size_t *accepted, char *err, size_t errlen);

/* swit_host_reload flags */
enum {
  SWIT_RELOAD_ROLLBACK = 1 /* back to the previous good generation's code */
};

/* Reload the Lua scripts while running (hot reload). The new code is
 * validated in a scratch state first (load, registrations, every
 * swit.on_load); if that fails the running code stays and err holds the
 * reason with file:line (SWIT_E_SCRIPT). Otherwise each worker switches
 * to the new code between two batches; no message is lost, handled
 * twice or reordered within a key. Subscriptions the new code no longer
 * has are drained by the old code and closed; new ones are opened once
 * every worker runs the new code; unchanged ones keep their broker
 * subscription. With SWIT_RELOAD_ROLLBACK the previous good generation
 * comes back from memory, reading no file. *generation (may be NULL)
 * receives the generation running afterwards. Thread-safe; a call made
 * during another reload waits for it. Not from a handler. */
int swit_host_reload(swit_host_t *h, int flags, unsigned *generation,
                     char *err, size_t errlen);

/* Levels of swit_host_log (the values of SWIT_LOG_* in
 * bindings/swit_ffi.h, the levels of swit.log). */
enum {
  SWIT_LEVEL_DEBUG = 0,
  SWIT_LEVEL_INFO = 1,
  SWIT_LEVEL_WARN = 2,
  SWIT_LEVEL_ERROR = 3
};

/* Write one line to the host's log on stderr, as the host writes its own
 * lines: dropped below server.log.level; with server.log.format: json a
 * JSON object ({"time","level","msg"}), else "<time> <level> <text>";
 * one write(2), cut at about 2 KB. Any thread, from swit_host_new to
 * swit_host_free. h NULL: nothing is written. */
void swit_host_log(swit_host_t *h, int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* 1 when the host's log is JSON lines (server.log.format: json), else 0
 * (also for NULL). */
int swit_host_log_json(const swit_host_t *h);

/* Parse a duration such as "250ms", "30s", "5m", "1h" into
 * milliseconds. 0, or SWIT_E_INVAL. */
int swit_parse_duration_ms(const char *text, int64_t *ms);

/* Every config key (and each compiled-in broker's own keys) as Markdown
 * table rows, one line per emit call: the reference the loader checks
 * against. */
void swit_config_reference(void (*emit)(void *ud, const char *line),
                           void *ud);

/* Block until the host has been idle for `idle_ms`: on_start finished,
 * every subscription active, no message arrived, in flight or waiting for
 * a retry. Returns SWIT_E_TIMEDOUT after `timeout_ms` (<0: no limit). */
int swit_host_wait_idle(swit_host_t *h, int idle_ms, int timeout_ms);

/* Stop: stop intake, drain in-flight messages (up to `deadline_ms`; <0 =
 * server.shutdown_timeout from the config), give back what is left,
 * flush publishers, unsubscribe, disconnect. Idempotent; thread-safe;
 * must not be called from a handler. Returns 0 once no handler runs any
 * more. A worker still inside Lua at the deadline is interrupted and,
 * one second later, left behind: then SWIT_E_TIMEDOUT, and the host must
 * not be freed (swit_host_free leaves it allocated; the process should
 * exit). Bound: deadline + 1 s + the publishers' flush (at most 5 s). */
int swit_host_stop(swit_host_t *h, int deadline_ms);

/* 1 when a script asked the host to stop (os.exit() in a handler, timer
 * or on_start: swit logs it and makes that call fail instead of ending
 * the process), with the code it gave in *exit_code (may be NULL); else
 * 0. The embedder then calls swit_host_stop. Any thread. */
int swit_host_stop_requested(const swit_host_t *h, int *exit_code);

/* Stops the host if running and frees it. Accepts NULL. */
void swit_host_free(swit_host_t *h);

/* Message accessors for C handlers. Pointers are borrowed (valid during
 * the handler call) and not NUL-terminated; lengths go to *len. */
const char *swit_msg_topic(const swit_msg_t *m, size_t *len);
const char *swit_msg_key(const swit_msg_t *m, size_t *len);
const void *swit_msg_payload(const swit_msg_t *m, size_t *len);
/* NULL if the header is absent. Names compare ASCII case-insensitively. */
const char *swit_msg_header(const swit_msg_t *m, const char *name,
                            size_t *len);
/* 1 on the first delivery, 2 on the first retry, ... */
unsigned swit_msg_attempt(const swit_msg_t *m);
/* Reason carried to logs and dead-letter headers (copied). */
void swit_msg_set_error(swit_msg_t *m, const char *reason);

#ifdef __cplusplus
}
#endif
#endif /* SWIT_H */
