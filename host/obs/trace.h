/*
 * trace.h - W3C trace context and span export (trace.c, otlp.c). Included
 * by obs.h; not API.
 *
 * Threads: a worker owns its swit__wtrace (the trace context of each
 * message of its batch, its id generator and its span ring) and is the
 * only writer of the ring's head; the exporter thread (otlp.c) is the only
 * reader, and the only writer of the tail. Nothing on the message path
 * takes a lock or allocates: a worker takes the exporter's mutex only to
 * wake it when its ring holds a full export batch.
 *
 * With messaging.tracing.enabled false the host has no tracer and no
 * worker has a swit__wtrace: the hot path tests one pointer per batch.
 */
#ifndef SWIT_TRACE_H
#define SWIT_TRACE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "swit_ffi.h"

struct swit_host_s;
struct swit__worker;
struct swit__buf;

/* A message's trace context. Ids are drawn lazily: 0 means not drawn yet
 * (an unsampled message that never publishes draws none). */
enum { SWIT__TR_NONE = 0, SWIT__TR_READY = 1, SWIT__TR_PRESET = 2 };

typedef struct swit__trace_ctx {
  uint64_t hi, lo;          /* trace id */
  uint64_t span;            /* this message's (consumer) span id */
  uint64_t parent;          /* incoming parent span id, 0: a new trace */
  uint64_t start_ns, end_ns;/* handler start and end, unix ns (sampled) */
  const char *state;        /* incoming tracestate (message memory) */
  uint32_t state_len;
  uint8_t sampled;
  uint8_t kind;             /* SWIT__TR_* */
} swit__trace_ctx;
/* kept with a retried message as the interceptor's carry */
_Static_assert(sizeof(swit__trace_ctx) <= 64, "trace context fits a carry");

/* One finished span, as handed to the exporter. */
#define SWIT__SPAN_REASON 120
#define SWIT__SPAN_STATE 128
typedef struct swit__span_rec {
  uint64_t hi, lo, span, parent;
  uint64_t start_ns, end_ns;
  uint32_t sub, attempt, worker;
  int32_t result;
  uint16_t reason_len, state_len;
  char reason[SWIT__SPAN_REASON];
  char state[SWIT__SPAN_STATE];
} swit__span_rec;

/* Single-producer (the worker) single-consumer (the exporter) ring. */
typedef struct swit__span_ring {
  swit__span_rec *v;
  uint32_t cap;                            /* a power of two */
  _Alignas(64) _Atomic uint32_t head;      /* next to write (worker) */
  _Alignas(64) _Atomic uint32_t tail;      /* next to read (exporter) */
  _Alignas(64) _Atomic uint64_t dropped;   /* ring full (worker writes) */
} swit__span_ring;

/* Per worker. */
typedef struct swit__wtrace {
  swit__trace_ctx *slots;   /* [batch_size], parallel to the batch */
  uint64_t rng;             /* splitmix64 state */
  uint64_t batch_ns;        /* this batch's start, unix ns */
  swit__span_ring ring;
} swit__wtrace;

/* The host's tracer (h->tracer; NULL when tracing is off). */
#define SWIT__EXPORT_BATCH 512
typedef struct swit__tracer {
  int k;                    /* the interceptor's index */
  int exporting;            /* otlp_endpoint set: spans are recorded */
  int always;               /* sampling_ratio 1 */
  uint64_t threshold;       /* else sampled when a draw < threshold */
  uint32_t ring_cap;        /* per worker */
  int64_t interval_ms;      /* export_interval */
  char host[256], port[8], path[512];   /* from otlp_endpoint */
  pthread_t thread;
  int started;
  pthread_mutex_t lock;     /* with cv: stop, kicked */
  pthread_cond_t cv;
  int stop, kicked;
  atomic_int kick_pending;  /* a worker asked for an export */
  _Atomic uint64_t exported, failed;    /* written by the exporter */
  int failing;              /* the last export failed (log once) */
  swit__span_rec *batch;    /* [SWIT__EXPORT_BATCH], the exporter's */
  struct swit__buf *body;   /* the request body, reused */
  struct sockaddr_storage addr;  /* the endpoint, resolved once; again */
  socklen_t addrlen;        /*   after a failure unless host is an IP */
  int numeric;
} swit__tracer;

/* ---------------------------------------------------------------------
 * Lifecycle (host.c, worker.c). new: with the host (checks the endpoint
 * URL: SWIT_E_CONFIG); start: the exporter thread, once the host runs;
 * stop: after the workers stopped, exports what is left and joins;
 * free: stops if needed. All accept a host without a tracer. */
int swit__trace_new(struct swit_host_s *h, char *err, size_t errlen);
int swit__trace_start(struct swit_host_s *h, char *err, size_t errlen);
void swit__trace_stop(struct swit_host_s *h);
void swit__trace_free(struct swit_host_s *h);

/* ---------------------------------------------------------------------
 * The message path: an interceptor (core/intercept.h) registered by
 * swit__trace_register when tracing is on. Before a batch's handlers it
 * gives each message a context (and flags the sampled ones for their
 * handler times); after them it puts the sampled spans in the worker's
 * ring; it keeps a message's context across retries (its carry) and
 * adds a child traceparent to what a handler publishes and to dead
 * letters. */
int swit__trace_register(struct swit_host_s *h);
/* A worker's tracing state, or NULL (tracing off). */
swit__wtrace *swit__wtrace_of(const struct swit__worker *w);
/* Context of message i of the batch, ids drawn, or NULL. */
const swit__trace_ctx *swit__trace_slot(struct swit__worker *w, uint32_t i);

/* The incoming context of a message: hi, lo, parent and sampled from its
 * traceparent header, state from its tracestate when that is printable
 * ASCII of 1..SWIT__TRACE_STATE_MAX bytes (else NULL: never propagated).
 * 0, or SWIT_E_NOTFOUND with ids and state cleared when there is no valid
 * traceparent. Any thread; reads only the view. */
#define SWIT__TRACE_STATE_MAX 512
int swit__trace_from_headers(const swit_msg_view *v, swit__trace_ctx *c);
/* "00-<trace>-<span>-<flags>" (55 chars + NUL): the traceparent a child
 * of c carries (c->span is its parent id). */
void swit__trace_format(const swit__trace_ctx *c, char out[56]);
/* 1 if a header is traceparent or tracestate (ASCII case-insensitive). */
int swit__trace_is_header(const swit_header *hd);
/* The trace id (32 hex + NUL) of batch message m: its context when
 * tracing is on, else from its traceparent header. 0 or SWIT_E_NOTFOUND. */
int swit__trace_id_hex(struct swit__worker *w, const swit_ffi_msg *m,
                       char out[33]);
/* The JSON log's context (swit__logger.context): the calling worker,
 * and the topic and trace id of the message it handles. */
size_t swit__trace_log_context(char *out, size_t cap);

/* ---------------------------------------------------------------------
 * Export (otlp.c) */

/* Counts for /metrics (zeros without a tracer). */
void swit__trace_counts(struct swit_host_s *h, uint64_t *exported,
                        uint64_t *dropped_full, uint64_t *dropped_export);
/* Wake the exporter (a ring holds a full batch). */
void swit__trace_kick(struct swit_host_s *h);
/* The OTLP/HTTP JSON body of n spans. */
int swit__otlp_json(struct swit_host_s *h, const swit__span_rec *s, size_t n,
                    struct swit__buf *out);

#endif /* SWIT_TRACE_H */
