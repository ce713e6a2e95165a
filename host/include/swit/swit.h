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

#include <swit/swit_version.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Every public declaration carries SWIT_API: libswit is built with hidden
 * visibility, so this is the whole list of what libswit.so exports. */
#if defined(__GNUC__)
#define SWIT_API __attribute__((visibility("default")))
#else
#define SWIT_API
#endif

/* The constants shared with Lua come from the three lists below, each
 * entry X(NAME, value, text). The C enums are generated from them here;
 * the build copies the same lists into the FFI cdef (cmake/embed.cmake,
 * MODE=cdef), where lua/swit reads them as ffi.C.NAME: one name and one
 * value per constant on both sides of the FFI. */

/* Error codes; the text is what swit_strerror() returns. */
#define SWIT_ERRNO_MAP(X)                                              \
  X(SWIT_E_INVAL,    -1, "invalid argument")                           \
  X(SWIT_E_NOMEM,    -2, "out of memory")                              \
  X(SWIT_E_CONFIG,   -3, "configuration error")                        \
  X(SWIT_E_SCRIPT,   -4, "script error")                               \
  X(SWIT_E_NOTFOUND, -5, "not found")                                  \
  X(SWIT_E_FULL,     -6, "queue full")                                 \
  X(SWIT_E_TOOBIG,   -7, "message too large")                          \
  X(SWIT_E_STATE,    -8, "operation not valid in the current state")   \
  X(SWIT_E_TIMEDOUT, -9, "timed out")                                  \
  X(SWIT_E_BROKER,  -10, "broker error")                               \
  X(SWIT_E_EXISTS,  -11, "already exists")                             \
  X(SWIT_E_SYS,     -12, "system error")

/* What a handler returns (C handlers, and Lua's swit.retry/reject/fatal). */
#define SWIT_RESULT_MAP(X)                                             \
  X(SWIT_ACK,    0, "ack")    /* done: ack/commit the message */       \
  X(SWIT_RETRY,  1, "retry")  /* retried with backoff up to max_attempts */ \
  X(SWIT_REJECT, 2, "reject") /* not retryable: dead-lettered at once */ \
  X(SWIT_FATAL,  3, "fatal")  /* dead-lettered at once, logged as error */

/* Log levels (swit_host_log, the log callback, Lua's swit.log). */
#define SWIT_LOG_LEVEL_MAP(X)                                          \
  X(SWIT_LOG_DEBUG, 0, "debug")                                        \
  X(SWIT_LOG_INFO,  1, "info")                                         \
  X(SWIT_LOG_WARN,  2, "warn")                                         \
  X(SWIT_LOG_ERROR, 3, "error")

#define SWIT__ENUM(name, value, text) name = (value),
enum { SWIT_OK = 0, SWIT_ERRNO_MAP(SWIT__ENUM) };
enum { SWIT_RESULT_MAP(SWIT__ENUM) };
enum { SWIT_LOG_LEVEL_MAP(SWIT__ENUM) };
#undef SWIT__ENUM

/* Subscription ordering. */
enum {
  SWIT_ORDER_KEY = 0, /* same key -> same worker, in order (default) */
  SWIT_ORDER_NONE = 1, /* any worker, round-robin */
  SWIT_ORDER_PARTITION = 2 /* the broker's partition: strict partition order */
};

/* Where a new group starts reading (swit_host_handle_from). A group that
 * already has a position on the broker resumes from it. */
enum {
  SWIT_FROM_DEFAULT = 0,   /* the broker's own default: Kafka and JetStream
                              the oldest message kept, core NATS and
                              RabbitMQ what is published after subscribing */
  SWIT_FROM_BEGINNING = 1, /* the oldest message the broker keeps */
  SWIT_FROM_LATEST = 2     /* what is published after subscribing */
};

typedef struct swit_host_s swit_host_t;
typedef struct swit_ffi_msg swit_msg_t; /* opaque: use the accessors */

/* A C handler. Runs on a worker thread (several handlers run at once on
 * different workers); `msg` and every pointer read from it are borrowed
 * for the duration of the call. Return SWIT_ACK, SWIT_RETRY, SWIT_REJECT
 * or SWIT_FATAL; swit_msg_set_error() may add a reason that ends up in
 * the dead-letter headers. It may call swit_host_publish and
 * swit_host_log, not swit_host_stop, _reload or _free. */
typedef int (*swit_handler_cb)(swit_msg_t *msg, void *ud);

/* A log callback (swit_host_set_log). Gets each line the host logs at or
 * above server.log.level: `level` is SWIT_LOG_*, `text` the message alone
 * (no time, no level; server.log.format does not apply), NUL-terminated,
 * len bytes (cut at about 2 KB), borrowed for the call. Called on
 * whichever host thread logs (workers, broker and admin threads, the
 * caller of start/stop), possibly at the same time from several: it must
 * be thread-safe and must not call back into this host. */
typedef void (*swit_log_cb)(void *ud, int level, const char *text,
                            size_t len);

/* ---------------------------------------------------------------------
 * Version and errors: any thread, any time; static results. */

/* The version of the loaded library as "MAJOR.MINOR.PATCH" (static). */
SWIT_API const char *swit_version(void);
/* The loaded library's SWIT_VERSION_NUMBER: compare it with the one of
 * the headers (swit_version.h) to detect a mismatched libswit.so. */
SWIT_API int swit_version_number(void);
/* Text for a SWIT_E_* code (static; never NULL; "unknown error" for a
 * code not in SWIT_ERRNO_MAP). */
SWIT_API const char *swit_strerror(int code);

/* ---------------------------------------------------------------------
 * The host. Unless said otherwise a host's functions are called from the
 * embedder's threads, not from handlers, and not at the same time as
 * swit_host_free of that host. */

/* Create a host from a config file (script paths are relative to the file's
 * directory) or from a YAML string (relative to `base_dir`, or the working
 * directory when NULL). Validates the config fully; connects nothing.
 * Errors: SWIT_E_CONFIG with "file:line:col: key: expected ..." in err,
 * SWIT_E_NOMEM; *out is left untouched then. On success *out owns the
 * host; free it with swit_host_free(). The strings are copied. Any
 * thread; hosts are independent of each other. */
SWIT_API int swit_host_new(swit_host_t **out, const char *config_path,
                           char *err, size_t errlen);
SWIT_API int swit_host_new_from_string(swit_host_t **out, const char *yaml,
                                       const char *base_dir, char *err,
                                       size_t errlen);

/* Send the host's log lines to cb(ud, ...) instead of stderr (cb NULL:
 * back to stderr). Lines below server.log.level are still dropped. `ud`
 * stays owned by the caller and must outlive the host: cb may be called
 * until swit_host_free returns. Before swit_host_start only, from the
 * thread that creates and starts the host: SWIT_E_STATE once the host
 * was started, SWIT_E_INVAL for h NULL. Lines written before the call
 * went to stderr. */
SWIT_API int swit_host_set_log(swit_host_t *h, swit_log_cb cb, void *ud);

/* Register a C handler for `topic` (group NULL = the default group,
 * ordering SWIT_ORDER_*). Before swit_host_start() only (SWIT_E_STATE
 * after). `ud` is passed to every call and stays owned by the caller; cb
 * runs on worker threads from swit_host_start until swit_host_stop
 * returns. Errors: SWIT_E_INVAL (no topic, no cb, bad ordering),
 * SWIT_E_EXISTS (the same topic and group already has a handler),
 * SWIT_E_NOMEM. Strings are copied. */
SWIT_API int swit_host_handle(swit_host_t *h, const char *topic,
                              const char *group, int ordering,
                              swit_handler_cb cb, void *ud, char *err,
                              size_t errlen);

/* swit_host_handle, saying where a new group starts (SWIT_FROM_*; what
 * swit tail --from maps to). SWIT_E_INVAL for another value. A broker
 * that keeps no history for a new subscriber (core NATS, RabbitMQ, the
 * memory broker) refuses SWIT_FROM_BEGINNING when swit_host_start
 * subscribes (SWIT_E_CONFIG, err names the broker); Kafka subscriptions
 * of one group share its start. */
SWIT_API int swit_host_handle_from(swit_host_t *h, const char *topic,
                                   const char *group, int ordering, int from,
                                   swit_handler_cb cb, void *ud, char *err,
                                   size_t errlen);

/* Make h a client of its config's broker, for tools such as `swit
 * publish` and `swit tail`: it loads no scripts, starts neither the admin
 * server, the ingress nor the script watch, and runs one worker (for C
 * handlers of swit_host_handle). Before swit_host_start only. Errors:
 * SWIT_E_STATE (started), SWIT_E_INVAL (h NULL), SWIT_E_CONFIG (a broker
 * that lives inside one process, such as the memory broker: there is no
 * one to reach). */
SWIT_API int swit_host_client_only(swit_host_t *h, char *err, size_t errlen);

/* Wait up to timeout_ms until the broker holds everything published
 * through h so far (core NATS: the server answered a ping after them;
 * Kafka: every produce was acknowledged; RabbitMQ: confirmed). While
 * running only. Errors: SWIT_E_STATE (not running, or the broker is not
 * connected), SWIT_E_TIMEDOUT, SWIT_E_BROKER; err says which. */
SWIT_API int swit_host_flush(swit_host_t *h, int timeout_ms, char *err,
                             size_t errlen);

/* Load the scripts into a scratch state and report registrations without
 * connecting (what `swit check` does). Before swit_host_start only
 * (SWIT_E_STATE after). Errors: SWIT_E_SCRIPT (file:line in err),
 * SWIT_E_CONFIG (a registration the config refuses), SWIT_E_NOMEM. */
SWIT_API int swit_host_check(swit_host_t *h, char *err, size_t errlen);

/* Connect, load the scripts into every worker, subscribe, start the
 * workers. Returns once all of that runs; the scripts' on_start functions
 * then run on worker 0 (swit_host_wait_idle waits for them). Once only:
 * SWIT_E_STATE on a second call. Errors: SWIT_E_BROKER (cannot connect),
 * SWIT_E_SCRIPT, SWIT_E_CONFIG, SWIT_E_SYS (a thread or server could not
 * start), SWIT_E_NOMEM. On failure nothing keeps running, no handler or
 * callback of this start fires, and the host may only be freed. Not
 * concurrently with swit_host_stop. */
SWIT_API int swit_host_start(swit_host_t *h, char *err, size_t errlen);

/* Publish one message. Thread-safe, callable from handlers, while the
 * host runs. `headers` is NULL or a NULL-terminated array of name, value,
 * name, value, ... strings; everything is copied before it returns.
 * Waits for room when the broker's queue is full (up to the default
 * publisher's retry budget); *confirm_id (may be NULL) receives the
 * broker's confirm sequence once the broker has accepted it. Errors:
 * SWIT_E_STATE (not started, stopped, or the broker is not connected),
 * SWIT_E_INVAL (a topic the broker refuses), SWIT_E_TOOBIG,
 * SWIT_E_FULL or SWIT_E_BROKER (still failing after the retry budget),
 * SWIT_E_TIMEDOUT (no confirm in time). */
SWIT_API int swit_host_publish(swit_host_t *h, const char *topic,
                               const void *key, size_t key_len,
                               const void *payload, size_t payload_len,
                               const char *const *headers,
                               uint64_t *confirm_id, char *err,
                               size_t errlen);

/* One message of a batch publish (no headers: use swit_host_publish).
 * The caller owns the bytes; they are copied during the call. */
typedef struct swit_pub {
  const void *key;
  size_t key_len;
  const void *payload;
  size_t payload_len;
} swit_pub_t;

/* Publish n messages to one topic in one call to the broker (one lock,
 * one round trip where the broker allows it). Same thread rules, waiting,
 * retry and error codes as swit_host_publish. On failure, the first
 * *accepted (may be NULL) messages were published and the rest were
 * not. */
SWIT_API int swit_host_publish_batch(swit_host_t *h, const char *topic,
                                     const swit_pub_t *msgs, size_t n,
                                     size_t *accepted, char *err,
                                     size_t errlen);

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
 * receives the generation running afterwards. Errors: SWIT_E_STATE (not
 * running, no Lua scripts, or no previous generation to roll back to),
 * SWIT_E_SCRIPT, SWIT_E_CONFIG, SWIT_E_NOMEM. Thread-safe; a call made
 * during another reload waits for it. Not from a handler. */
SWIT_API int swit_host_reload(swit_host_t *h, int flags,
                              unsigned *generation, char *err,
                              size_t errlen);

/* Write one line to the host's log at SWIT_LOG_* level, as the host
 * writes its own: dropped below server.log.level; to the log callback
 * when one is set (swit_host_set_log), else to stderr: with
 * server.log.format: json a JSON object ({"time","level","msg"}), else
 * "<time> <level> <text>"; one write(2), cut at about 2 KB. Any thread,
 * handlers included, from swit_host_new to swit_host_free. h NULL:
 * nothing is written. No error. */
SWIT_API void swit_host_log(swit_host_t *h, int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* 1 when the host's log is JSON lines (server.log.format: json), else 0
 * (also for NULL). Any thread. */
SWIT_API int swit_host_log_json(const swit_host_t *h);

/* Parse a duration such as "250ms", "30s", "5m", "1h" into
 * milliseconds. 0, or SWIT_E_INVAL (*ms untouched). Any thread. */
SWIT_API int swit_parse_duration_ms(const char *text, int64_t *ms);

/* Every config key (and each compiled-in broker's own keys) as Markdown
 * table rows, one line per emit call (the line is borrowed for the
 * call): the reference the loader checks against. Any thread; emit runs
 * on the calling thread before this returns. No error. */
SWIT_API void swit_config_reference(void (*emit)(void *ud, const char *line),
                                    void *ud);

/* Block until the host has been idle for `idle_ms`: on_start finished,
 * every subscription active, no message arrived, in flight or waiting for
 * a retry, and none accepted by a broker that lives in this process (the
 * memory broker) waits there to be delivered (unless a subscription is
 * paused: an open circuit breaker holds them for its trial). 0; SWIT_E_TIMEDOUT after `timeout_ms` (<0: no limit);
 * SWIT_E_SCRIPT when an on_start function failed; SWIT_E_STATE when the
 * host is not running. Any thread but a handler's. */
SWIT_API int swit_host_wait_idle(swit_host_t *h, int idle_ms,
                                 int timeout_ms);

/* Stop: stop intake, drain in-flight messages (up to `deadline_ms`; <0 =
 * server.shutdown_timeout from the config; what is left is given back to
 * the broker), flush publishers, unsubscribe, disconnect. Idempotent;
 * thread-safe; must not be called from a handler. Returns 0 once no
 * handler runs any more (also when not running). A worker still inside
 * Lua at the deadline is interrupted and, one second later, left behind:
 * then SWIT_E_TIMEDOUT, and the host must not be freed (swit_host_free
 * leaves it allocated; the process should exit). Bound: deadline + 1 s +
 * the publishers' flush (at most 5 s). Log callback lines may still come
 * from swit_host_free. */
SWIT_API int swit_host_stop(swit_host_t *h, int deadline_ms);

/* 1 when a script asked the host to stop (os.exit() in a handler, timer
 * or on_start: swit logs it and makes that call fail instead of ending
 * the process), with the code it gave in *exit_code (may be NULL); else
 * 0. The embedder then calls swit_host_stop. Any thread. */
SWIT_API int swit_host_stop_requested(const swit_host_t *h, int *exit_code);

/* Stops the host if running and frees it and everything it owns.
 * Accepts NULL. After it returns no callback fires and `h` is invalid.
 * Not concurrently with any other call on `h`. If the stop left a worker
 * behind (SWIT_E_TIMEDOUT above), the host stays allocated. */
SWIT_API void swit_host_free(swit_host_t *h);

/* ---------------------------------------------------------------------
 * Test mode: what `swit test` and its Lua module swit.test use to run a
 * user's handlers in-process and look at what they did. */

/* swit_host_test_mode flags */
enum {
  SWIT_TEST_RECORD = 1,     /* record every settle and every publish */
  SWIT_TEST_NO_BACKOFF = 2, /* retries are due at once: every subscriber's
                               retry_delay and retry_max_delay read as 0 */
  SWIT_TEST_NO_SERVERS = 4  /* no admin server, HTTP ingress or script
                               watch, whatever the config says */
};

/* Put h in test mode. Before swit_host_start only: SWIT_E_STATE after,
 * SWIT_E_INVAL for h NULL or an unknown flag, SWIT_E_FULL when the
 * interceptor chain is full; once per host (SWIT_E_EXISTS after). With
 * SWIT_TEST_RECORD the host records, in the order they happen: each
 * settle of a message (ack, retry, dead letter, drop, requeue, with its
 * result, reason, attempt and headers) and each publish the broker
 * accepted (from handlers, timers, on_start, dead letters and
 * swit_host_publish). Records are kept until swit_host_test_take, at
 * most 64 MiB; past that, records are dropped and the take that finds
 * no kept record left reports it (SWIT_E_FULL). */
SWIT_API int swit_host_test_mode(swit_host_t *h, unsigned flags, char *err,
                                 size_t errlen);

/* Move the clock swit.every timers see forward by ms (1..one day) and
 * wait until worker 0 has run the timers due then (each due timer runs
 * once, as after a late wake-up; advance in steps to see every tick).
 * Only the timers' clock moves: retries (see SWIT_TEST_NO_BACKOFF),
 * timeouts and timestamps keep real time. While running, in test mode:
 * SWIT_E_STATE otherwise; SWIT_E_INVAL for ms out of range;
 * SWIT_E_TIMEDOUT when worker 0 did not get to its timers within
 * timeout_ms (a handler still runs there). Not from a handler. */
SWIT_API int swit_host_test_advance(swit_host_t *h, int64_t ms,
                                    int timeout_ms);

/* Move the oldest records into buf (cap bytes), as many whole records as
 * fit; *len (may be NULL) gets the bytes written. A record is a count of
 * fields then the fields, each "<decimal length>:<bytes>": the count is
 * written "<n>:" alone. Fields: kind (ack, retry, dead, dropped,
 * requeue, publish), topic, key ("" when none; field 9 says which),
 * payload, attempt (decimal; "" for a publish), result (ack, retry,
 * reject, fatal; "" for a publish), reason, group (the subscription's;
 * "" for a publish), has_key ("1"/"0"), then name, value for each
 * header. Returns the number of records moved (0: none waiting);
 * SWIT_E_TOOBIG when the oldest record exceeds cap (*len = its size);
 * SWIT_E_FULL once all kept records were taken and some were not
 * recorded (the bound); SWIT_E_STATE when h is not in test mode;
 * SWIT_E_INVAL for h or buf NULL. Any thread but a handler's. */
SWIT_API int swit_host_test_take(swit_host_t *h, char *buf, size_t cap,
                                 size_t *len);

/* ---------------------------------------------------------------------
 * Message accessors, for C handlers: on the handler's thread, during the
 * call only. Pointers are borrowed (valid during the handler call) and
 * not NUL-terminated; lengths go to *len (len may be NULL). No error
 * codes. */
SWIT_API const char *swit_msg_topic(const swit_msg_t *m, size_t *len);
/* NULL with *len 0 when the message has no key. */
SWIT_API const char *swit_msg_key(const swit_msg_t *m, size_t *len);
SWIT_API const void *swit_msg_payload(const swit_msg_t *m, size_t *len);
/* NULL if the header is absent. Names compare ASCII case-insensitively. */
SWIT_API const char *swit_msg_header(const swit_msg_t *m, const char *name,
                                     size_t *len);
/* The i-th header (from 0, in the message's order): 1 with the name and
 * value set (lengths in *nlen, *vlen; either pointer may be NULL), 0 when
 * there is no i-th header. */
SWIT_API int swit_msg_header_at(const swit_msg_t *m, size_t i,
                                const char **name, size_t *nlen,
                                const char **value, size_t *vlen);
/* 1 on the first delivery, 2 on the first retry, ... */
SWIT_API unsigned swit_msg_attempt(const swit_msg_t *m);
/* Reason carried to logs and dead-letter headers (copied; NULL or out of
 * memory: the reason stays unset). */
SWIT_API void swit_msg_set_error(swit_msg_t *m, const char *reason);

#ifdef __cplusplus
}
#endif
#endif /* SWIT_H */
