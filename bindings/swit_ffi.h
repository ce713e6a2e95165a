/*
 * swit_ffi.h - the FFI boundary between the host and Lua, declared once.
 *
 * The C compiler reads this file as it is; the build turns it, minus its
 * '#' lines, into the cdef string that lua/swit hands to ffi.cdef (see
 * cmake/embed.cmake, MODE=cdef), so the two cannot drift. SWIT_FFI_ABI is
 * checked by the Lua side at load: bump it on any change below.
 *
 * Rules (DESIGN.md, "Lua side"): exports are plain C, never touch a
 * lua_State, take pointers and fixed-width scalars, return 0 or a negative
 * SWIT_E_* code and pass data through out-parameters. Only <stddef.h> and
 * <stdint.h> may be included here.
 *
 * Ownership: a swit_ffi_msg and everything it points to belong to the
 * worker that runs the batch; they are valid until the batch is settled.
 */
#ifndef SWIT_FFI_H
#define SWIT_FFI_H

#include <stddef.h>
#include <stdint.h>

enum { SWIT_FFI_ABI = 5 };

/* Handler results (same values as SWIT_ACK.. in swit.h). */
enum {
  SWIT_RES_ACK = 0,
  SWIT_RES_RETRY = 1,
  SWIT_RES_REJECT = 2,
  SWIT_RES_FATAL = 3
};

enum {
  SWIT_LOG_DEBUG = 0,
  SWIT_LOG_INFO = 1,
  SWIT_LOG_WARN = 2,
  SWIT_LOG_ERROR = 3
};

/* swit_ffi_msg.flags */
enum {
  SWIT_MSG_F_CHANDLER = 1, /* handled by a C handler: Lua skips it */
  SWIT_MSG_F_REJECTED = 2, /* refused before any handler (result set) */
  SWIT_MSG_F_TRACED = 4    /* sampled: Lua marks handler start and end */
};

/* One header: name and value are byte slices (not NUL-terminated). */
typedef struct swit_header {
  const char *name;
  const char *value;
  uint32_t name_len;
  uint32_t value_len;
} swit_header;

/* A received message as an adapter presents it: a view over memory the
 * adapter owns until the message is settled. */
typedef struct swit_msg_view {
  const char *topic;
  const char *key;
  const char *payload;
  const swit_header *headers;
  size_t payload_len;
  uint32_t topic_len;
  uint32_t key_len;
  uint32_t nheaders;
  int32_t partition;     /* ordering hint from the broker, -1 if none */
  int64_t timestamp_ms;  /* broker or publish time, 0 if unknown */
} swit_msg_view;

/* One slot of a worker batch, as Lua (and C handlers) see it. Field
 * names must not collide with the msg methods of lua/swit (a cdata field
 * hides a metatype method of the same name). */
typedef struct swit_ffi_msg {
  swit_msg_view v;         /* borrowed view, copied by value */
  const swit_header *extra; /* headers added by set_header (worker arena) */
  const char *reason;      /* error text for a non-ack result */
  uint32_t nextra;
  uint32_t reason_len;
  uint32_t attempt_no;     /* 1 on first delivery */
  uint32_t sub;            /* subscription index, 1-based */
  int32_t result;          /* SWIT_RES_*, SWIT_RES_ACK when filled */
  uint32_t flags;          /* SWIT_MSG_F_* */
} swit_ffi_msg;

/* A worker's view of its current batch. The Lua dispatch loop writes
 * `cursor` before each message so the host knows which one raised. */
typedef struct swit_ffi_worker {
  swit_ffi_msg *msgs;
  uint32_t n;
  uint32_t cursor;
  uint32_t id;             /* 0-based worker index */
  uint32_t generation;     /* code generation the state runs (1 at start) */
} swit_ffi_worker;

/* --- exports (swit_ffi_*) ------------------------------------------- */

int swit_ffi_abi(void);

/* The worker that owns the calling thread's Lua state (a placeholder
 * worker with no host for `swit check` states). Never NULL. */
swit_ffi_worker *swit_ffi_worker_current(void);

/* Look a header up (set_header overlay first; ASCII case-insensitive).
 * 0 with val and vlen set, or SWIT_E_NOTFOUND (-5). */
int swit_ffi_msg_header(const swit_ffi_msg *m, const char *name,
                        size_t name_len, const char **val, size_t *vlen);

/* The i-th header across original and overlay (0-based), for iteration.
 * 0, or SWIT_E_NOTFOUND past the end. */
int swit_ffi_msg_header_at(const swit_ffi_msg *m, uint32_t i,
                           const char **name, size_t *name_len,
                           const char **val, size_t *vlen);

/* Add or replace a header for the rest of this message's handling.
 * Copies both strings into the worker's batch arena. */
int swit_ffi_msg_set_header(swit_ffi_worker *w, swit_ffi_msg *m,
                            const char *name, size_t name_len,
                            const char *val, size_t vlen);

/* Record a non-ack result with its reason (copied). */
int swit_ffi_msg_set_result(swit_ffi_worker *w, swit_ffi_msg *m, int code,
                            const char *reason, size_t reason_len);

/* Publish through the host's broker. Never blocks on a full queue
 * (returns SWIT_E_FULL). Error text goes to err. */
int swit_ffi_publish(swit_ffi_worker *w, const char *topic, size_t topic_len,
                     const char *key, size_t key_len,
                     const char *payload, size_t payload_len,
                     const swit_header *headers, uint32_t nheaders,
                     char *err, size_t errlen);

/* The message's W3C trace id as 32 lowercase hex characters and a NUL
 * in out[33]: the trace it continues or starts when tracing is on, else
 * the one of its traceparent header. 0, or SWIT_E_NOTFOUND (none). */
int swit_ffi_msg_trace_id(swit_ffi_worker *w, const swit_ffi_msg *m,
                          char *out);

/* The handler of batch message i starts (end == 0) or ends (end == 1):
 * span times of a SWIT_MSG_F_TRACED message. */
void swit_ffi_span_mark(swit_ffi_worker *w, uint32_t i, int end);

/* Write one line to the host's log (stderr). */
void swit_ffi_log(swit_ffi_worker *w, int level, const char *text,
                  size_t len);

/* --- swit.metrics ---------------------------------------------------- */

enum {
  SWIT_METRIC_COUNTER = 0,
  SWIT_METRIC_GAUGE = 1,
  SWIT_METRIC_HISTOGRAM = 2
};

/* Register a series (name + labels rendered as `k="v",...`, may be
 * empty); the same series registered again gets the same slot. Returns
 * the slot (>= 0), or SWIT_E_INVAL (bad name: [a-zA-Z_:][a-zA-Z0-9_:]*,
 * not starting with swit_), SWIT_E_EXISTS (name registered with another
 * type), SWIT_E_FULL, SWIT_E_NOMEM. In a state with no host (swit check)
 * returns 0 and updates do nothing. `bounds`: nb upper bounds, ascending
 * (histograms, nb <= 16). */
int swit_ffi_metric_register(swit_ffi_worker *w, int type, const char *name,
                             size_t name_len, const char *help,
                             size_t help_len, const char *labels,
                             size_t labels_len, const double *bounds,
                             uint32_t nb);
/* Counter: add v (>= 0) on this worker's slot. */
void swit_ffi_metric_add(swit_ffi_worker *w, int32_t slot, double v);
/* Gauge: set (add == 0) or add to the shared value. */
void swit_ffi_metric_gauge(swit_ffi_worker *w, int32_t slot, double v,
                           int add);
/* Histogram with nb bounds: count v on this worker's slots. */
void swit_ffi_metric_observe(swit_ffi_worker *w, int32_t slot, uint32_t nb,
                             const double *bounds, double v);

/* --- swit.breaker ---------------------------------------------------- */

enum {
  SWIT_BREAKER_CLOSED = 0,
  SWIT_BREAKER_OPEN = 1,
  SWIT_BREAKER_HALF_OPEN = 2
};

/* outcomes of swit_ffi_breaker_record */
enum {
  SWIT_BREAKER_SUCCESS = 0,
  SWIT_BREAKER_FAILURE = 1,
  SWIT_BREAKER_CRITICAL = 2  /* opens it at once */
};

/* The host's breaker named `name` (1..128 printable bytes), shared by
 * every worker; made with these options on first use. Returns its id
 * (>= 0), or SWIT_E_INVAL (bad name or options: both thresholds 0,
 * success_threshold, min_calls or recovery_ms < 1, window_ms < 10,
 * failure_rate outside 0..1), SWIT_E_EXISTS (the name has other
 * options), SWIT_E_FULL (256 names), SWIT_E_NOMEM. In a state with no
 * host (swit check) returns 0 and the breaker is always closed. */
int swit_ffi_breaker_get(swit_ffi_worker *w, const char *name,
                         size_t name_len, int64_t failure_threshold,
                         int64_t success_threshold, int64_t recovery_ms,
                         double failure_rate, int64_t min_calls,
                         int64_t window_ms);
/* 1 when a call may go ahead, 0 when the breaker refuses it. A call it
 * allowed while half-open is one of the trial: record its outcome. */
int swit_ffi_breaker_allow(swit_ffi_worker *w, int32_t id);
/* The outcome of a call (SWIT_BREAKER_SUCCESS..CRITICAL). */
void swit_ffi_breaker_record(swit_ffi_worker *w, int32_t id, int outcome);
/* SWIT_BREAKER_CLOSED..HALF_OPEN. */
int swit_ffi_breaker_state(swit_ffi_worker *w, int32_t id);

#endif /* SWIT_FFI_H */
