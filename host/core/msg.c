/*
 * msg.c - reading and annotating a message in a worker's batch: header
 * lookup over the original headers and the set_header overlay, result
 * and reason recording, and the public swit_msg_* accessors.
 *
 * Runs on the worker thread that owns the batch. Copies (set_header,
 * reasons) go to the worker's arena, reset after each batch.
 */
#include <string.h>
#include <strings.h>

#include "core/host_int.h"
#include "core/msg_int.h"

static int name_eq(const char *a, size_t alen, const char *b, size_t blen)
{
  return alen == blen && strncasecmp(a, b, alen) == 0;
}

static const swit_header *find(const swit_header *h, uint32_t n,
                               const char *name, size_t len)
{
  for (uint32_t i = 0; i < n; i++)
    if (name_eq(h[i].name, h[i].name_len, name, len)) return &h[i];
  return NULL;
}

const swit_header *swit__msg_header_find(const swit_ffi_msg *m,
                                         const char *name, size_t len)
{
  const swit_header *h = find(m->extra, m->nextra, name, len);
  return h ? h : find(m->v.headers, m->v.nheaders, name, len);
}

/* Overlay first, then originals not shadowed by the overlay. */
const swit_header *swit__msg_header_at(const swit_ffi_msg *m, uint32_t i)
{
  if (i < m->nextra) return &m->extra[i];
  i -= m->nextra;
  for (uint32_t j = 0; j < m->v.nheaders; j++) {
    const swit_header *h = &m->v.headers[j];
    if (find(m->extra, m->nextra, h->name, h->name_len)) continue;
    if (i-- == 0) return h;
  }
  return NULL;
}

int swit__msg_set_header(swit__worker *w, swit_ffi_msg *m, const char *name,
                         size_t nlen, const char *val, size_t vlen)
{
  swit_header *v;
  char *n, *s;
  uint32_t i;

  for (i = 0; i < m->nextra; i++)
    if (name_eq(m->extra[i].name, m->extra[i].name_len, name, nlen)) break;
  s = swit__arena_dup(w, val, vlen);
  if (!s) return SWIT_E_NOMEM;
  if (i < m->nextra) { /* replace: the overlay array is ours, cast is safe */
    v = (swit_header *)(uintptr_t)m->extra;
    v[i].value = s;
    v[i].value_len = (uint32_t)vlen;
    return 0;
  }
  n = swit__arena_dup(w, name, nlen);
  v = swit__arena_alloc(w, (m->nextra + 1) * sizeof *v);
  if (!n || !v) return SWIT_E_NOMEM;
  if (m->nextra) memcpy(v, m->extra, m->nextra * sizeof *v);
  v[m->nextra] = (swit_header){n, s, (uint32_t)nlen, (uint32_t)vlen};
  m->extra = v;
  m->nextra++;
  return 0;
}

int swit__msg_set_result(swit__worker *w, swit_ffi_msg *m, int code,
                         const char *reason, size_t len)
{
  if (code < SWIT_ACK || code > SWIT_FATAL) return SWIT_E_INVAL;
  m->result = code;
  m->reason = NULL;
  m->reason_len = 0;
  if (reason && len) {
    char *r = swit__arena_dup(w, reason, len);
    if (!r) return SWIT_E_NOMEM;
    m->reason = r;
    m->reason_len = (uint32_t)len;
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* Public accessors (swit.h) */

const char *swit_msg_topic(const swit_msg_t *m, size_t *len)
{
  if (len) *len = m->v.topic_len;
  return m->v.topic;
}

const char *swit_msg_key(const swit_msg_t *m, size_t *len)
{
  if (len) *len = m->v.key_len;
  return m->v.key_len ? m->v.key : NULL;
}

const void *swit_msg_payload(const swit_msg_t *m, size_t *len)
{
  if (len) *len = m->v.payload_len;
  return m->v.payload;
}

const char *swit_msg_header(const swit_msg_t *m, const char *name,
                            size_t *len)
{
  const swit_header *h = swit__msg_header_find(m, name, strlen(name));
  if (!h) return NULL;
  if (len) *len = h->value_len;
  return h->value;
}

int swit_msg_header_at(const swit_msg_t *m, size_t i, const char **name,
                       size_t *nlen, const char **value, size_t *vlen)
{
  const swit_header *h;

  if (i < m->v.nheaders) h = &m->v.headers[i];
  else if (i - m->v.nheaders < m->nextra) h = &m->extra[i - m->v.nheaders];
  else return 0;
  if (name) *name = h->name;
  if (nlen) *nlen = h->name_len;
  if (value) *value = h->value;
  if (vlen) *vlen = h->value_len;
  return 1;
}

unsigned swit_msg_attempt(const swit_msg_t *m)
{
  return m->attempt_no;
}

void swit_msg_set_error(swit_msg_t *m, const char *reason)
{
  swit__worker *w = swit__worker_of(m);
  char *r = reason ? swit__arena_dup(w, reason, strlen(reason)) : NULL;
  if (!r) return;
  m->reason = r;
  m->reason_len = (uint32_t)strlen(reason);
}
