/*
 * testrec.c - test mode (swit_host_test_mode / swit_host_test_take): an
 * interceptor that records every settle and every accepted publish of a
 * host, for `swit test` and its Lua module swit.test; the "no backoff"
 * switch that makes retries due at once; and the one that keeps the
 * host's servers (admin, ingress, script watch) closed.
 *
 * The recorder is innermost-last: registered after the host's own
 * interceptors, its `settled` hook sees the final decision (after error
 * classification, circuits and dedup). Records are encoded at once
 * (swit.h documents the format) into one growing buffer under a mutex;
 * the hooks copy, never block on anything but that mutex. The host owns
 * the recorder (h->testrec) and frees it in swit_host_free.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"

#define TESTREC_MAX ((size_t)64 << 20)   /* bytes kept, at most */

typedef struct swit__testrec {
  pthread_mutex_t lock;
  char *buf;                  /* encoded records [head, len) */
  size_t head, len, cap;
  uint64_t base;              /* the stream position of buf[0] */
  struct pend {               /* publishes in flight: their records are */
    uint64_t at;              /* kept from before the broker is called  */
    size_t len;               /* (a delivery may settle before it       */
  } *pend;                    /* returns) and held back from take until */
  size_t npend, pcap;         /* publish_after says whether it counted  */
  int overflow;               /* a record was not kept (TESTREC_MAX) */
} swit__testrec;

/* This thread's publish in flight: its recorder and stream position. */
static _Thread_local struct {
  swit__testrec *t;
  uint64_t at;
} inflight;

/* One record being encoded: fields appended to a local growable buffer,
 * then moved into the recorder as a whole. */
typedef struct rec {
  char *p;
  size_t len, cap, nfields;
  int oom;
} rec;

static int rec_grow(rec *r, size_t need)
{
  if (r->oom) return -1;
  if (need > r->cap) {
    size_t cap = r->cap ? r->cap : 256;
    while (cap < need) cap *= 2;
    char *p = realloc(r->p, cap);
    if (!p) {
      r->oom = 1;
      return -1;
    }
    r->p = p;
    r->cap = cap;
  }
  return 0;
}

static void rec_put(rec *r, const char *s, size_t n)
{
  char num[24];
  int k = snprintf(num, sizeof num, "%zu:", n);
  size_t need = r->len + (size_t)k + n;

  if (rec_grow(r, need) < 0) return;
  memcpy(r->p + r->len, num, (size_t)k);
  memcpy(r->p + r->len + k, s, n);
  r->len = need;
  r->nfields++;
}

static void rec_str(rec *r, const char *s)
{
  rec_put(r, s ? s : "", s ? strlen(s) : 0);
}

static void rec_headers(rec *r, const swit_header *hv, uint32_t n)
{
  for (uint32_t i = 0; i < n; i++) {
    rec_put(r, hv[i].name, hv[i].name_len);
    rec_put(r, hv[i].value, hv[i].value_len);
  }
}

/* Finish record r into the batch b: "<nfields>:" then its fields. */
static void rec_end(rec *b, rec *r)
{
  char num[24];
  int k = snprintf(num, sizeof num, "%zu:", r->nfields);

  if (r->oom) b->oom = 1;
  if (rec_grow(b, b->len + (size_t)k + r->len) == 0) {
    memcpy(b->p + b->len, num, (size_t)k);
    memcpy(b->p + b->len + k, r->p, r->len);
    b->len += (size_t)k + r->len;
  }
  free(r->p);
  *r = (rec){0};
}

/* Move the finished records b into the recorder; with `pending`, as a
 * publish in flight (this thread's, until publish_after). */
static void rec_store(swit__testrec *t, rec *b, int pending)
{
  pthread_mutex_lock(&t->lock);
  if (t->head && t->head == t->len) {
    t->base += t->len;
    t->head = t->len = 0;
  }
  if (b->oom || t->overflow || t->len - t->head + b->len > TESTREC_MAX ||
      (pending && t->npend == t->pcap && t->pcap >= 4096)) {
    t->overflow = 1;
    goto out;
  }
  if (pending && t->npend == t->pcap) {
    size_t cap = t->pcap ? t->pcap * 2 : 8;
    struct pend *p = realloc(t->pend, cap * sizeof *p);
    if (!p) {
      t->overflow = 1;
      goto out;
    }
    t->pend = p;
    t->pcap = cap;
  }
  if (t->head && t->len + b->len > t->cap) {         /* compact first */
    memmove(t->buf, t->buf + t->head, t->len - t->head);
    t->base += t->head;
    t->len -= t->head;
    t->head = 0;
  }
  if (t->len + b->len > t->cap) {
    size_t cap = t->cap ? t->cap : 4096;
    while (cap < t->len + b->len) cap *= 2;
    char *p = realloc(t->buf, cap);
    if (!p) {
      t->overflow = 1;
      goto out;
    }
    t->buf = p;
    t->cap = cap;
  }
  if (pending) {
    t->pend[t->npend++] = (struct pend){t->base + t->len, b->len};
    inflight.t = t;
    inflight.at = t->base + t->len;
  }
  memcpy(t->buf + t->len, b->p, b->len);
  t->len += b->len;
out:
  pthread_mutex_unlock(&t->lock);
  free(b->p);
}

/* This thread's publish finished: its records count (rc 0) or go. The
 * records after them move down; none was taken (take stops at the
 * first pending one). */
static void rec_settle_pending(swit__testrec *t, int rc)
{
  size_t k;

  if (inflight.t != t) return;
  inflight.t = NULL;
  pthread_mutex_lock(&t->lock);
  for (k = 0; k < t->npend && t->pend[k].at != inflight.at; k++) {}
  if (k < t->npend) {
    struct pend d = t->pend[k];
    t->pend[k] = t->pend[--t->npend];
    if (rc) {
      size_t i = (size_t)(d.at - t->base);
      memmove(t->buf + i, t->buf + i + d.len, t->len - i - d.len);
      t->len -= d.len;
      for (size_t j = 0; j < t->npend; j++)
        if (t->pend[j].at > d.at) t->pend[j].at -= d.len;
    }
  }
  pthread_mutex_unlock(&t->lock);
}

static void rec_commit(swit__testrec *t, rec *r)
{
  rec b = {0};

  rec_end(&b, r);
  rec_store(t, &b, 0);
}

static const char *const kinds[] = {"ack", "retry", "dead", "requeue",
                                    "dropped"};

static const char *result_text(int32_t result)
{
  switch (result) {
  case SWIT_ACK: return "ack";
  case SWIT_RETRY: return "retry";
  case SWIT_REJECT: return "reject";
  case SWIT_FATAL: return "fatal";
  default: return "";
  }
}

static void on_settled(void *ws, swit__worker *w, const swit__item *it,
                       int outcome)
{
  swit__testrec *t = w->host->testrec;
  const swit_ffi_msg *m = NULL;
  const swit_msg_view *v = it->msg;
  rec r = {0};
  char attempt[16];

  (void)ws;
  /* a settle of the batch: its slot says why; a parked dead letter
   * settled later has no slot (its reason is in the dead letter) */
  if (it >= w->items && it < w->items + w->ffi.n)
    m = &w->ffi.msgs[it - w->items];
  snprintf(attempt, sizeof attempt, "%u", (unsigned)it->attempt);
  rec_str(&r, outcome >= 0 && outcome <= SWIT__OUT_DROPPED ? kinds[outcome]
                                                            : "");
  rec_put(&r, v->topic, v->topic_len);
  rec_put(&r, v->key, v->key ? v->key_len : 0);
  rec_put(&r, v->payload, v->payload_len);
  rec_str(&r, attempt);
  rec_str(&r, m ? result_text(m->result) : "");
  if (m && m->reason) rec_put(&r, m->reason, m->reason_len);
  else rec_str(&r, it->reject);
  rec_str(&r, it->sub ? it->sub->group : "");
  rec_str(&r, v->key ? "1" : "0");
  rec_headers(&r, v->headers, v->nheaders);
  if (m) rec_headers(&r, m->extra, m->nextra);
  rec_commit(t, &r);
}

/* The records of a publish are kept before the broker is called, so a
 * delivery that settles before the publish returns comes after them;
 * they are held back from take until publish_after: kept if the broker
 * took the messages, removed if not. The recorder is the innermost
 * interceptor: every other one accepted the publish already. */
static const swit_msg_view *on_publish_before(void *hs,
                                              const swit_msg_view *m,
                                              size_t n,
                                              const swit__pub_info *pi,
                                              int *rc, char *err,
                                              size_t errlen)
{
  swit__testrec *t = hs;
  rec b = {0};

  (void)pi;
  (void)rc;
  (void)err;
  (void)errlen;
  for (size_t i = 0; i < n; i++) {
    rec r = {0};
    rec_str(&r, "publish");
    rec_put(&r, m[i].topic, m[i].topic_len);
    rec_put(&r, m[i].key, m[i].key ? m[i].key_len : 0);
    rec_put(&r, m[i].payload, m[i].payload_len);
    rec_str(&r, "");
    rec_str(&r, "");
    rec_str(&r, "");
    rec_str(&r, "");
    rec_str(&r, m[i].key ? "1" : "0");
    rec_headers(&r, m[i].headers, m[i].nheaders);
    rec_end(&b, &r);
  }
  if (n) rec_store(t, &b, 1);
  return m;
}

static void on_publish_after(void *hs, const swit_msg_view *m, size_t n,
                             int rc, uint64_t us)
{
  (void)m;
  (void)n;
  (void)us;
  rec_settle_pending(hs, rc);
}

static const swit__icpt_ops testrec_ops = {
  .name = "test",
  .flags = SWIT__ICPT_F_SETTLED_ACKS,
  .settled = on_settled,
  .publish_before = on_publish_before,
  .publish_after = on_publish_after,
};

int swit_host_test_mode(swit_host_t *h, unsigned flags, char *err,
                        size_t errlen)
{
  swit__testrec *t;
  int rc;

  if (!err) errlen = 0;
  if (!h || (flags & ~(unsigned)(SWIT_TEST_RECORD | SWIT_TEST_NO_BACKOFF |
                                 SWIT_TEST_NO_SERVERS))) {
    if (errlen) snprintf(err, errlen, "swit_host_test_mode: %s",
                         h ? "unknown flag" : "no host");
    return SWIT_E_INVAL;
  }
  if (atomic_load(&h->state) != SWIT__NEW) {
    if (errlen) snprintf(err, errlen, "swit_host_test_mode: the host was "
                         "started");
    return SWIT_E_STATE;
  }
  if (h->testrec) {
    if (errlen) snprintf(err, errlen, "swit_host_test_mode: already set");
    return SWIT_E_EXISTS;
  }
  if (!(t = calloc(1, sizeof *t))) {
    if (errlen) snprintf(err, errlen, "out of memory");
    return SWIT_E_NOMEM;
  }
  pthread_mutex_init(&t->lock, NULL);
  h->testrec = t;
  if (flags & SWIT_TEST_RECORD) {
    rc = swit__icpt_add(h, &testrec_ops, t);
    if (rc < 0) {
      if (errlen) snprintf(err, errlen, "swit_host_test_mode: %s",
                           swit_strerror(rc));
      return rc;     /* the host frees t */
    }
  }
  if (flags & SWIT_TEST_NO_BACKOFF) {
    swit_cfg_named *nm = &h->cfg->messaging.subscribers;
    swit_cfg_subscriber *s = nm->elems;
    for (size_t i = 0; i < nm->n; i++) {
      s[i].retry_delay_ms = 0;
      s[i].retry_max_delay_ms = 0;
    }
  }
  if (flags & SWIT_TEST_NO_SERVERS) {
    char *off1 = strdup("off"), *off2 = strdup("off");
    if (!off1 || !off2) {
      free(off1);
      free(off2);
      if (errlen) snprintf(err, errlen, "out of memory");
      return SWIT_E_NOMEM;
    }
    free(h->cfg->server.admin.listen);
    free(h->cfg->server.http.listen);
    h->cfg->server.admin.listen = off1;
    h->cfg->server.http.listen = off2;
    h->cfg->lua.hot_reload.watch = 0;
  }
  return 0;
}

int swit_host_test_take(swit_host_t *h, char *buf, size_t cap, size_t *len)
{
  swit__testrec *t;
  size_t out = 0, limit;
  int n = 0;

  if (len) *len = 0;
  if (!h || !buf) return SWIT_E_INVAL;
  if (!(t = h->testrec)) return SWIT_E_STATE;
  pthread_mutex_lock(&t->lock);
  limit = t->len;                     /* up to the first publish in flight */
  for (size_t k = 0; k < t->npend; k++) {
    size_t at = (size_t)(t->pend[k].at - t->base);
    if (at < limit) limit = at;
  }
  while (t->head < limit && n < 1 << 20) {
    /* a record's size: its count, then each "<len>:<bytes>" */
    const char *p = t->buf + t->head, *end = t->buf + t->len;
    size_t nf = strtoul(p, NULL, 10), size;
    const char *q = memchr(p, ':', (size_t)(end - p)) + 1;
    for (size_t f = 0; f < nf; f++) {
      size_t fl = strtoul(q, NULL, 10);
      q = (const char *)memchr(q, ':', (size_t)(end - q)) + 1 + fl;
    }
    size = (size_t)(q - p);
    if (out + size > cap) {
      if (n == 0) {
        if (len) *len = size;
        pthread_mutex_unlock(&t->lock);
        return SWIT_E_TOOBIG;
      }
      break;
    }
    memcpy(buf + out, p, size);
    out += size;
    t->head += size;
    n++;
  }
  if (n == 0 && t->overflow) {
    t->overflow = 0;
    pthread_mutex_unlock(&t->lock);
    return SWIT_E_FULL;
  }
  pthread_mutex_unlock(&t->lock);
  if (len) *len = out;
  return n;
}

int swit_host_test_advance(swit_host_t *h, int64_t ms, int timeout_ms)
{
  swit__deadline d = swit__deadline_in(timeout_ms);
  int64_t skew;

  if (!h || ms < 1 || ms > 86400000) return SWIT_E_INVAL;
  if (!h->testrec || atomic_load(&h->state) != SWIT__RUNNING ||
      h->nworkers == 0)
    return SWIT_E_STATE;
  skew = atomic_fetch_add(&h->timer_skew_ms, ms) + ms;
  swit__queue_kick(&h->workers[0].q);
  while (atomic_load(&h->timer_skew_seen) < skew) {
    if (swit__deadline_passed(d)) return SWIT_E_TIMEDOUT;
    swit__sleep_ms(1);
  }
  return 0;
}

void swit__testrec_free(swit_host_t *h)
{
  swit__testrec *t = h->testrec;

  if (!t) return;
  pthread_mutex_destroy(&t->lock);
  free(t->buf);
  free(t->pend);
  free(t);
  h->testrec = NULL;
}
