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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "obs/obs.h"
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

static void ensure_ids(swit__wtrace *tr, swit__trace_ctx *c)
{
  if (c->hi == 0 && c->lo == 0) {
    c->hi = draw(&tr->rng);
    c->lo = draw_nonzero(&tr->rng);
  }
  if (c->span == 0) c->span = draw_nonzero(&tr->rng);
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

static int worker_init(void *hs, swit__worker *w, void **ws)
{
  swit__tracer *t = hs;
  swit__wtrace *tr;

  /* the ring's head and tail sit on cache lines of their own */
  tr = aligned_alloc(64, (sizeof *tr + 63) & ~(size_t)63);
  if (!tr) return SWIT_E_NOMEM;
  memset(tr, 0, sizeof *tr);
  *ws = tr;
  tr->rng = unix_ns() ^ ((uint64_t)getpid() << 32) ^
            ((uint64_t)w->id * 0xD1B54A32D192ED03ULL) ^ (uintptr_t)tr;
  tr->slots = calloc(w->host->batch_size, sizeof *tr->slots);
  tr->ring.cap = t->ring_cap;
  if (t->exporting) tr->ring.v = calloc(t->ring_cap, sizeof *tr->ring.v);
  if (!tr->slots || (t->exporting && !tr->ring.v)) return SWIT_E_NOMEM;
  return 0;
}

static void worker_free(void *hs, swit__worker *w, void *ws)
{
  swit__wtrace *tr = ws;

  (void)hs;
  (void)w;
  if (!tr) return;
  free(tr->slots);
  free(tr->ring.v);
  free(tr);
}

swit__wtrace *swit__wtrace_of(const swit__worker *w)
{
  swit__tracer *t = w->host ? w->host->tracer : NULL;
  return t ? swit__icpt_ws(w, t->k) : NULL;
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

/* W3C trace-context 3.3: printable ASCII, at most 512 bytes kept. Anything
 * else is left out rather than propagated (a CR or LF in it would reach
 * the headers of every message a handler publishes). */
static int state_ok(const char *s, size_t len)
{
  if (len == 0 || len > SWIT__TRACE_STATE_MAX) return 0;
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e) return 0;
  return 1;
}

int swit__trace_from_headers(const swit_msg_view *v, swit__trace_ctx *c)
{
  const swit_header *tp = v->nheaders ? find_header(v, "traceparent", 11)
                                      : NULL;
  const swit_header *ts;
  int sampled;

  c->hi = c->lo = c->parent = 0;
  c->state = NULL;
  c->state_len = 0;
  if (!tp || parse_traceparent(tp->value, tp->value_len, &c->hi, &c->lo,
                               &c->parent, &sampled) != 0) {
    c->hi = c->lo = c->parent = 0;
    return SWIT_E_NOTFOUND;
  }
  c->sampled = (uint8_t)sampled;
  ts = find_header(v, "tracestate", 10);
  if (ts && state_ok(ts->value, ts->value_len)) {
    c->state = ts->value;
    c->state_len = ts->value_len;
  }
  return 0;
}

/* The context of one message from its headers, or a new trace. */
static void ctx_from_headers(swit__tracer *t, swit__wtrace *tr,
                             const swit_msg_view *v, swit__trace_ctx *c)
{
  if (swit__trace_from_headers(v, c) == 0) return;
  c->sampled = t->always || draw(&tr->rng) < t->threshold;
}

/* The next attempt of a kept message: same trace; a sibling of the first
 * attempt under the incoming parent, or the child of the previous attempt
 * when the trace started here. */
static void ctx_from_carry(swit__trace_ctx *c, const unsigned char *carry)
{
  swit__trace_ctx kept;

  memcpy(&kept, carry, sizeof kept);
  *c = kept;
  if (!c->parent) c->parent = kept.span;
}

/* Before the handlers: each message's context from its traceparent and
 * tracestate headers, from what a retry kept, or a new trace; sampling;
 * the sampled messages are flagged for their handler times. */
static void batch_before(void *ws, swit__worker *w, size_t n)
{
  swit__wtrace *tr = ws;
  swit__tracer *t = w->host->tracer;

  tr->batch_ns = 0;
  for (size_t i = 0; i < n; i++) {
    swit_ffi_msg *m = &w->ffi.msgs[i];
    swit__trace_ctx *c = &tr->slots[i];
    const unsigned char *cy;

    if (m->flags & SWIT_MSG_F_REJECTED) {
      c->kind = SWIT__TR_NONE;
      continue;
    }
    cy = swit__icpt_carry(w, (uint32_t)i, t->k);
    if (cy && ((const swit__trace_ctx *)(const void *)cy)->kind != SWIT__TR_NONE)
      ctx_from_carry(c, cy);
    else
      ctx_from_headers(t, tr, &m->v, c);
    c->kind = SWIT__TR_READY;
    c->span = 0;
    if (c->sampled && t->exporting) {
      m->flags |= SWIT_MSG_F_TRACED;
      c->start_ns = c->end_ns = 0;
      if (!tr->batch_ns) tr->batch_ns = unix_ns();
      ensure_ids(tr, c);
    }
  }
}

static void mark(void *ws, swit__worker *w, uint32_t i, int end)
{
  swit__wtrace *tr = ws;

  (void)w;
  if (end) tr->slots[i].end_ns = unix_ns();
  else tr->slots[i].start_ns = unix_ns();
}

static void span_fill(swit__worker *w, swit__wtrace *tr, uint32_t i,
                      uint64_t now, swit__span_rec *r)
{
  const swit__trace_ctx *c = &tr->slots[i];
  const swit_ffi_msg *m = &w->ffi.msgs[i];
  size_t rl = m->reason ? m->reason_len : 0;

  r->hi = c->hi;
  r->lo = c->lo;
  r->span = c->span;
  r->parent = c->parent;
  r->start_ns = c->start_ns ? c->start_ns : tr->batch_ns;
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

/* After the handlers, before settling: the sampled messages' spans go to
 * the worker's ring (a full ring drops and counts them). */
static void batch_after(void *ws, swit__worker *w, size_t n, uint64_t now_us)
{
  swit__wtrace *tr = ws;
  swit__span_ring *rg = &tr->ring;
  uint32_t head, tail, mask = rg->cap - 1;
  uint64_t now = 0, dropped = 0;

  (void)now_us;
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
    span_fill(w, tr, (uint32_t)i, now, &rg->v[head & mask]);
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
/* Retries and dead letters */

static const swit__trace_ctx *slot_ctx(swit__wtrace *tr, const swit__worker *w,
                                       uint32_t i)
{
  swit__trace_ctx *c;

  if (!tr || i >= w->ffi.n) return NULL;
  c = &tr->slots[i];
  if (c->kind != SWIT__TR_READY) return NULL;
  ensure_ids(tr, c);
  return c;
}

/* A message is kept (retry, parked dead letter): its context, ids drawn,
 * so the next attempt and the dead-letter copy continue its trace. */
static void carry_save(void *ws, swit__worker *w, uint32_t i,
                       unsigned char *carry)
{
  const swit__trace_ctx *c = slot_ctx(ws, w, i);
  swit__trace_ctx none = {.kind = SWIT__TR_NONE};

  memcpy(carry, c ? c : &none, sizeof *c);
}

const swit__trace_ctx *swit__trace_slot(swit__worker *w, uint32_t i)
{
  return slot_ctx(swit__wtrace_of(w), w, i);
}

/* ------------------------------------------------------------------ */
/* Publishing */

/* Copies of m[0..n) in the worker's arena with a child traceparent of c
 * (and c's tracestate); `replace`: drop the views' own trace headers (a
 * dead letter continues the failed attempt's trace), else keep a view's
 * own traceparent (the handler set it). */
static const swit_msg_view *with_context(swit__worker *w,
                                         const swit__trace_ctx *c,
                                         const swit_msg_view *m, size_t n,
                                         int replace)
{
  swit_msg_view *out = swit__arena_alloc(w, n * sizeof *out);
  char *tp = swit__arena_alloc(w, 56);

  if (!out || !tp) return m;
  swit__trace_format(c, tp);
  for (size_t i = 0; i < n; i++) {
    uint32_t nh = m[i].nheaders, k = 0;
    int has_state = 0;
    swit_header *hv;

    out[i] = m[i];
    if (!replace && find_header(&m[i], "traceparent", 11)) continue;
    if (!(hv = swit__arena_alloc(w, (nh + 2) * sizeof *hv))) return m;
    for (uint32_t j = 0; j < nh; j++) {
      if (replace && swit__trace_is_header(&m[i].headers[j])) continue;
      has_state |= name_is(&m[i].headers[j], "tracestate", 10);
      hv[k++] = m[i].headers[j];
    }
    hv[k++] = (swit_header){"traceparent", tp, 11, 55};
    if (c->state && !has_state)
      hv[k++] = (swit_header){"tracestate", c->state, 10, c->state_len};
    out[i].headers = hv;
    out[i].nheaders = k;
  }
  return out;
}

/* Everything a handler publishes gets a child traceparent of its
 * message; a dead-letter copy one of the failed attempt. */
static const swit_msg_view *publish_before(void *hs, const swit_msg_view *m,
                                           size_t n, const swit__pub_info *pi,
                                           int *rc, char *err, size_t errlen)
{
  swit__trace_ctx kept;
  const swit__trace_ctx *c;

  (void)hs;
  (void)rc;
  (void)err;
  (void)errlen;
  if (!pi->w) return m;
  if (pi->dead_letter) {
    if (!pi->carry) return m;
    memcpy(&kept, pi->carry, sizeof kept);
    return kept.kind == SWIT__TR_NONE ? m : with_context(pi->w, &kept, m, n, 1);
  }
  if (!pi->in_handler) return m;
  c = slot_ctx(swit__icpt_ws(pi->w, pi->w->host->tracer->k), pi->w,
               pi->w->ffi.cursor);
  return c ? with_context(pi->w, c, m, n, 0) : m;
}

static const swit__icpt_ops tracing = {
  .name = "tracing",
  .carry_size = sizeof(swit__trace_ctx),
  .worker_init = worker_init,
  .worker_free = worker_free,
  .batch_before = batch_before,
  .mark = mark,
  .batch_after = batch_after,
  .carry_save = carry_save,
  .publish_before = publish_before,
};

int swit__trace_register(swit_host_t *h)
{
  int k;

  if (!h->tracer) return 0;
  if ((k = swit__icpt_add(h, &tracing, h->tracer)) < 0) return k;
  h->tracer->k = k;
  return 0;
}

/* ------------------------------------------------------------------ */
/* msg:trace_id() and the JSON log */

int swit__trace_id_hex(swit__worker *w, const swit_ffi_msg *m, char out[33])
{
  const swit__trace_ctx *c = NULL;
  const swit_header *tp;
  uint64_t hi, lo, parent;
  int sampled;

  if (w && m >= w->ffi.msgs && m < w->ffi.msgs + w->ffi.n)
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

/* The JSON log's context of the calling thread (swit__logger.context):
 * on a worker inside a batch, its id, the topic and trace id of the
 * message being handled; on a worker outside one, its id. */
size_t swit__trace_log_context(char *out, size_t cap)
{
  swit__worker *w = swit__current_worker;
  const swit_ffi_msg *m;
  char tid[33];
  size_t n;

  if (!w || !w->host || cap < 128) return 0;
  n = (size_t)snprintf(out, cap, ",\"worker\":%u", w->id);
  if (!atomic_load_explicit(&w->busy_since_us, memory_order_relaxed) ||
      w->ffi.cursor >= w->ffi.n)
    return n;
  m = &w->ffi.msgs[w->ffi.cursor];
  memcpy(out + n, ",\"topic\":\"", 10);
  n += 10;
  n += swit__json_escape(out + n, cap - n - 64, m->v.topic, m->v.topic_len);
  out[n++] = '"';
  if (swit__trace_id_hex(w, m, tid) == 0)
    n += (size_t)snprintf(out + n, cap - n, ",\"trace_id\":\"%s\"", tid);
  return n;
}
