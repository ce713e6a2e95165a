/*
 * trace.c - W3C trace context on the message path (trace.h).
 *
 * Runs on worker threads. Before a batch's handlers run, each message
 * gets a context: the trace id and parent span id of its `traceparent`
 * header (and its `tracestate`), or a new trace. Sampling is parent-based:
 * an incoming sampled flag is followed, otherwise a draw against
 * messaging.tracing.sampling_ratio decides. Ids come from the worker's
 * own splitmix64 generator and are drawn lazily, so an unsampled message
 * that publishes nothing costs one draw and a few stores. Everything a
 * handler publishes gets a child traceparent (publish.c calls
 * swit__trace_inject); a sampled message's consumer span goes to the
 * worker's ring at the end of the batch, for the exporter (otlp.c). A
 * full ring drops the span and counts it: a worker never waits.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/host_int.h"
#include "core/msg_int.h"

/* ------------------------------------------------------------------ */
/* Ids and the header format */

static uint64_t draw(uint64_t *s)
{
  uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

static uint64_t draw_nonzero(uint64_t *s)
{
  uint64_t v;
  while ((v = draw(s)) == 0) {}
  return v;
}

static uint64_t unix_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void hex64(uint64_t v, char *out)
{
  static const char digits[] = "0123456789abcdef";
  for (int i = 15; i >= 0; i--, v >>= 4) out[i] = digits[v & 15];
}

static int unhex64(const char *s, uint64_t *out)
{
  uint64_t v = 0;
  for (int i = 0; i < 16; i++) {
    char c = s[i];
    int d = c >= '0' && c <= '9' ? c - '0'
          : c >= 'a' && c <= 'f' ? c - 'a' + 10
          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return -1;
    v = v << 4 | (uint64_t)d;
  }
  *out = v;
  return 0;
}

/* "vv-<32 hex trace>-<16 hex parent>-<2 hex flags>"; version ff and
 * all-zero ids are invalid; version 00 is exactly 55 characters, later
 * versions may append "-..." (W3C trace-context, section 3.2). */
static int parse_traceparent(const char *v, size_t len, uint64_t *hi,
                             uint64_t *lo, uint64_t *parent, int *sampled)
{
  uint64_t ver, fl;
  char buf[16];

  if (len < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-') return -1;
  memset(buf, '0', 14);
  memcpy(buf + 14, v, 2);
  if (unhex64(buf, &ver) || ver == 0xff) return -1;
  if (ver == 0 ? len != 55 : len > 55 && v[55] != '-') return -1;
  memcpy(buf + 14, v + 53, 2);
  if (unhex64(buf, &fl) || unhex64(v + 3, hi) || unhex64(v + 19, lo) ||
      unhex64(v + 36, parent))
    return -1;
  if ((*hi == 0 && *lo == 0) || *parent == 0) return -1;
  *sampled = (int)(fl & 1);
  return 0;
}

static int name_is(const swit_header *hd, const char *name, size_t len)
{
  return hd->name_len == len && strncasecmp(hd->name, name, len) == 0;
}

int swit__trace_is_header(const swit_header *hd)
{
  return name_is(hd, "traceparent", 11) || name_is(hd, "tracestate", 10);
}

static void ensure_ids(swit__worker *w, swit__trace_ctx *c)
{
  if (c->hi == 0 && c->lo == 0) {
    c->hi = draw(&w->tr->rng);
    c->lo = draw_nonzero(&w->tr->rng);
  }
  if (c->span == 0) c->span = draw_nonzero(&w->tr->rng);
}

void swit__trace_format(const swit__trace_ctx *c, char out[56])
{
  memcpy(out, "00-", 3);
  hex64(c->hi, out + 3);
  hex64(c->lo, out + 19);
  out[35] = '-';
  hex64(c->span, out + 36);
  out[52] = '-';
  out[53] = '0';
  out[54] = c->sampled ? '1' : '0';
  out[55] = '\0';
}

/* ------------------------------------------------------------------ */
/* Per worker */

int swit__trace_worker_init(swit__worker *w)
{
  swit__tracer *t = w->host->tracer;
  swit__wtrace *tr;

  if (!t) return 0;
  /* the ring's head and tail sit on cache lines of their own */
  tr = aligned_alloc(64, (sizeof *tr + 63) & ~(size_t)63);
  if (!tr) return SWIT_E_NOMEM;
  memset(tr, 0, sizeof *tr);
  w->tr = tr;
  tr->rng = unix_ns() ^ ((uint64_t)getpid() << 32) ^
            ((uint64_t)w->id * 0xD1B54A32D192ED03ULL) ^ (uintptr_t)tr;
  tr->slots = calloc(w->host->batch_size, sizeof *tr->slots);
  tr->ring.cap = t->ring_cap;
  if (t->exporting) tr->ring.v = calloc(t->ring_cap, sizeof *tr->ring.v);
  if (!tr->slots || (t->exporting && !tr->ring.v)) return SWIT_E_NOMEM;
  return 0;
}

void swit__trace_worker_free(swit__worker *w)
{
  if (!w->tr) return;
  free(w->tr->slots);
  free(w->tr->ring.v);
  free(w->tr);
  w->tr = NULL;
}

/* ------------------------------------------------------------------ */
/* A batch */

static const swit_header *find_header(const swit_msg_view *v, const char *name,
                                      size_t len)
{
  for (uint32_t i = 0; i < v->nheaders; i++)
    if (name_is(&v->headers[i], name, len)) return &v->headers[i];
  return NULL;
}

/* The context of one message from its headers, or a new trace. */
static void ctx_from_headers(swit__worker *w, const swit_msg_view *v,
                             swit__trace_ctx *c)
{
  swit__tracer *t = w->host->tracer;
  const swit_header *tp = v->nheaders ? find_header(v, "traceparent", 11)
                                      : NULL;
  int sampled;

  if (tp && parse_traceparent(tp->value, tp->value_len, &c->hi, &c->lo,
                              &c->parent, &sampled) == 0) {
    const swit_header *ts = find_header(v, "tracestate", 10);
    c->sampled = (uint8_t)sampled;
    c->state = ts ? ts->value : NULL;
    c->state_len = ts ? ts->value_len : 0;
    return;
  }
  c->hi = c->lo = c->parent = 0;
  c->state = NULL;
  c->state_len = 0;
  c->sampled = t->always || draw(&w->tr->rng) < t->threshold;
}

void swit__trace_batch_begin(swit__worker *w, size_t n)
{
  swit__wtrace *tr = w->tr;
  int exporting = w->host->tracer->exporting;

  tr->in_handlers = 1;
  tr->batch_ns = 0;
  for (size_t i = 0; i < n; i++) {
    swit_ffi_msg *m = &w->ffi.msgs[i];
    swit__trace_ctx *c = &tr->slots[i];

    if (m->flags & SWIT_MSG_F_REJECTED) {
      c->kind = SWIT__TR_NONE;
      continue;
    }
    if (c->kind != SWIT__TR_PRESET) ctx_from_headers(w, &m->v, c);
    c->kind = SWIT__TR_READY;
    c->span = 0;
    if (c->sampled && exporting) {
      m->flags |= SWIT_MSG_F_TRACED;
      c->start_ns = c->end_ns = 0;
      if (!tr->batch_ns) tr->batch_ns = unix_ns();
      ensure_ids(w, c);
    }
  }
}

void swit__trace_mark(swit__worker *w, uint32_t i, int end)
{
  if (!w->tr || i >= w->ffi.n) return;
  if (end) w->tr->slots[i].end_ns = unix_ns();
  else w->tr->slots[i].start_ns = unix_ns();
}

static void span_fill(swit__worker *w, uint32_t i, uint64_t now,
                      swit__span_rec *r)
{
  const swit__trace_ctx *c = &w->tr->slots[i];
  const swit_ffi_msg *m = &w->ffi.msgs[i];
  size_t rl = m->reason ? m->reason_len : 0;

  r->hi = c->hi;
  r->lo = c->lo;
  r->span = c->span;
  r->parent = c->parent;
  r->start_ns = c->start_ns ? c->start_ns : w->tr->batch_ns;
  r->end_ns = c->end_ns >= r->start_ns ? c->end_ns : now;
  r->sub = m->sub;
  r->attempt = m->attempt_no;
  r->worker = w->id;
  r->result = m->result;
  if (rl > SWIT__SPAN_REASON) rl = SWIT__SPAN_REASON;
  if (rl) memcpy(r->reason, m->reason, rl);
  r->reason_len = (uint16_t)rl;
  /* a tracestate that does not fit is left out, never cut */
  r->state_len = c->state_len <= SWIT__SPAN_STATE ? (uint16_t)c->state_len
                                                  : 0;
  if (r->state_len) memcpy(r->state, c->state, r->state_len);
}

void swit__trace_batch_end(swit__worker *w, size_t n)
{
  swit__wtrace *tr = w->tr;
  swit__span_ring *rg = &tr->ring;
  uint32_t head, tail, mask = rg->cap - 1;
  uint64_t now = 0, dropped = 0;

  tr->in_handlers = 0;
  if (!tr->batch_ns) return;           /* nothing sampled, or no export */
  head = atomic_load_explicit(&rg->head, memory_order_relaxed);
  tail = atomic_load_explicit(&rg->tail, memory_order_acquire);
  for (size_t i = 0; i < n; i++) {
    if (!(w->ffi.msgs[i].flags & SWIT_MSG_F_TRACED)) continue;
    if (!now) now = unix_ns();
    if (head - tail >= rg->cap) {
      dropped++;
      continue;
    }
    span_fill(w, (uint32_t)i, now, &rg->v[head & mask]);
    head++;
  }
  atomic_store_explicit(&rg->head, head, memory_order_release);
  if (dropped)
    atomic_store_explicit(&rg->dropped, atomic_load_explicit(
        &rg->dropped, memory_order_relaxed) + dropped, memory_order_relaxed);
  if (head - tail >= SWIT__EXPORT_BATCH || head - tail >= rg->cap / 2)
    swit__trace_kick(w->host);
}

/* ------------------------------------------------------------------ */
/* Retries */

void swit__trace_preset(swit__worker *w, uint32_t i,
                        const swit__trace_ctx *kept)
{
  swit__trace_ctx *c;

  if (!w->tr || kept->kind == SWIT__TR_NONE) return;
  c = &w->tr->slots[i];
  *c = *kept;
  /* the next attempt: same trace; a sibling of the first attempt under
   * the incoming parent, or the child of the previous attempt when the
   * trace started here */
  if (!c->parent) c->parent = kept->span;
  c->kind = SWIT__TR_PRESET;
}

const swit__trace_ctx *swit__trace_slot(swit__worker *w, uint32_t i)
{
  swit__trace_ctx *c;

  if (!w->tr || i >= w->ffi.n) return NULL;
  c = &w->tr->slots[i];
  if (c->kind != SWIT__TR_READY) return NULL;
  ensure_ids(w, c);
  return c;
}

/* ------------------------------------------------------------------ */
/* Publishing from a handler */

const swit_msg_view *swit__trace_inject(swit_host_t *h,
                                        const swit_msg_view *m, size_t n)
{
  swit__worker *w = swit__current_worker;
  const swit__trace_ctx *c;
  swit_msg_view *out;
  char *tp;

  if (!w || w->host != h || !w->tr || !w->tr->in_handlers) return m;
  if (!(c = swit__trace_slot(w, w->ffi.cursor))) return m;
  out = swit__arena_alloc(w, n * sizeof *out);
  tp = swit__arena_alloc(w, 56);
  if (!out || !tp) return m;
  swit__trace_format(c, tp);
  for (size_t i = 0; i < n; i++) {
    uint32_t nh = m[i].nheaders, k;
    swit_header *hv;

    out[i] = m[i];
    if (find_header(&m[i], "traceparent", 11)) continue; /* the handler's */
    hv = swit__arena_alloc(w, (nh + 2) * sizeof *hv);
    if (!hv) return m;
    if (nh) memcpy(hv, m[i].headers, nh * sizeof *hv);
    k = nh;
    hv[k++] = (swit_header){"traceparent", tp, 11, 55};
    if (c->state && !find_header(&m[i], "tracestate", 10))
      hv[k++] = (swit_header){"tracestate", c->state, 10, c->state_len};
    out[i].headers = hv;
    out[i].nheaders = k;
  }
  return out;
}

/* ------------------------------------------------------------------ */
/* msg:trace_id() and the JSON log */

int swit__trace_id_hex(swit__worker *w, const swit_ffi_msg *m, char out[33])
{
  const swit__trace_ctx *c = NULL;
  const swit_header *tp;
  uint64_t hi, lo, parent;
  int sampled;

  if (w && w->tr && m >= w->ffi.msgs && m < w->ffi.msgs + w->ffi.n)
    c = swit__trace_slot(w, (uint32_t)(m - w->ffi.msgs));
  if (c) {
    hi = c->hi;
    lo = c->lo;
  } else {
    tp = swit__msg_header_find(m, "traceparent", 11);
    if (!tp || parse_traceparent(tp->value, tp->value_len, &hi, &lo, &parent,
                                 &sampled) != 0)
      return SWIT_E_NOTFOUND;
  }
  hex64(hi, out);
  hex64(lo, out + 16);
  out[32] = '\0';
  return 0;
}
