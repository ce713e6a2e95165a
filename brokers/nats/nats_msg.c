/*
 * nats_msg.c - messages both ways: a received natsMsg presented as a
 * swit_msg_view (a delivery), and a swit_msg_view turned into a natsMsg
 * with NATS 2.2 headers for publishing.
 *
 * Keys travel as a header: `Swit-Key: <key>` when the key is printable
 * ASCII without leading or trailing blanks, else `Swit-Key-B64: <base64>`
 * (binary keys arrive byte for byte). Neither header is shown to handlers
 * as a header; msg:key() returns it. Header values must not contain CR or
 * LF (the NATS header block is line based); names must be printable ASCII
 * without ':' or blanks.
 *
 * Deliveries come from a per-subscription pool in two halves: workers
 * return settled deliveries to s->pool (under s->pool_mu, once per settle
 * call), and the receiving thread takes from its own s->spare list,
 * refilling it with the whole of s->pool in one locked swap when it runs
 * dry. So the lock is taken once per batch on each side, not once per
 * message. The receive path allocates only when both lists are empty or a
 * message has more headers than any before it. The view points into the
 * natsMsg, which the delivery owns until settle.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nats_int.h"

/* ---------------------------------------------------------------------
 * The pool */

nats_dlv *swit__nats_dlv_get(nats_sub *s)
{
  nats_dlv *d = s->spare;
  if (!d) {
    pthread_mutex_lock(&s->pool_mu);
    d = s->pool;
    s->pool = NULL;
    pthread_mutex_unlock(&s->pool_mu);
  }
  if (d)
    s->spare = d->next;
  else if (!(d = calloc(1, sizeof *d)))
    return NULL;
  d->sub = s;
  d->next = NULL;
  return d;
}

/* Link first..last (already chained) into the pool. */
static void pool_splice(nats_sub *s, nats_dlv *first, nats_dlv *last)
{
  pthread_mutex_lock(&s->pool_mu);
  last->next = s->pool;
  s->pool = first;
  pthread_mutex_unlock(&s->pool_mu);
}

void swit__nats_dlv_put(nats_sub *s, nats_dlv *d)
{
  natsMsg_Destroy(d->msg);
  d->msg = NULL;
  pool_splice(s, d, d);
}

void swit__nats_dlv_put_settled(nats_sub *s, const swit_settle *st, size_t n)
{
  nats_dlv *first = NULL, *last = NULL;
  for (size_t i = 0; i < n; i++) {
    nats_dlv *d = (nats_dlv *)(uintptr_t)st[i].token;
    natsMsg_Destroy(d->msg);
    d->msg = NULL;
    d->next = first;
    first = d;
    if (!last)
      last = d;
  }
  if (first)
    pool_splice(s, first, last);
}

static void list_free(nats_dlv *d)
{
  while (d) {
    nats_dlv *next = d->next;
    if (d->hdr_cap)
      free(d->hdrs);
    free(d->key);
    free(d);
    d = next;
  }
}

void swit__nats_pool_free(nats_sub *s)
{
  list_free(s->pool);
  list_free(s->spare);
  s->pool = s->spare = NULL;
}

/* ---------------------------------------------------------------------
 * Base64 (keys that are not plain text) */

static const char b64[] =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t b64_encode(const unsigned char *in, size_t n, char *out)
{
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < n) v |= in[i + 2];
    out[o++] = b64[v >> 18 & 63];
    out[o++] = b64[v >> 12 & 63];
    out[o++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
    out[o++] = i + 2 < n ? b64[v & 63] : '=';
  }
  out[o] = '\0';
  return o;
}

static int b64_value(char c)
{
  const char *p = c ? strchr(b64, c) : NULL;
  return p ? (int)(p - b64) : -1;
}

/* Decode into out (room for 3/4 of n); -1 on bad input. */
static long b64_decode(const char *in, size_t n, char *out)
{
  size_t o = 0;
  if (n % 4)
    return -1;
  for (size_t i = 0; i < n; i += 4) {
    int v[4], pad = 0;
    for (int k = 0; k < 4; k++) {
      v[k] = in[i + k] == '=' && i + 4 == n && k >= 2 ? (pad++, 0)
                                                      : b64_value(in[i + k]);
      if (v[k] < 0)
        return -1;
    }
    uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 |
                 (uint32_t)v[2] << 6 | (uint32_t)v[3];
    out[o++] = (char)(x >> 16);
    if (pad < 2) out[o++] = (char)(x >> 8 & 255);
    if (pad < 1) out[o++] = (char)(x & 255);
  }
  return (long)o;
}

/* ---------------------------------------------------------------------
 * Receiving */

static int add_header(nats_dlv *d, uint32_t *n, const char *name,
                      const char *value)
{
  uint32_t cap = d->hdr_cap ? d->hdr_cap : NATS_INLINE_HDRS;
  if (*n == cap) {
    uint32_t ncap = cap * 2;
    swit_header *h = malloc(ncap * sizeof *h);
    if (!h)
      return SWIT_E_NOMEM;
    memcpy(h, d->hdrs, cap * sizeof *h);
    if (d->hdr_cap)
      free(d->hdrs);
    d->hdrs = h;
    d->hdr_cap = ncap;
  }
  d->hdrs[(*n)++] = (swit_header){ name, value, (uint32_t)strlen(name),
                                   (uint32_t)strlen(value) };
  return 0;
}

static int set_key_b64(nats_dlv *d, const char *v)
{
  size_t n = strlen(v);
  if (d->key_cap < n + 1) {
    char *k = realloc(d->key, n + 1);
    if (!k)
      return SWIT_E_NOMEM;
    d->key = k;
    d->key_cap = n + 1;
  }
  long len = b64_decode(v, n, d->key);
  if (len < 0)
    return 0; /* not ours: leave the key unset */
  d->view.key = d->key;
  d->view.key_len = (uint32_t)len;
  return 0;
}

/* One header key (all its values): the key headers become the key. */
static int take_header(nats_dlv *d, natsMsg *m, const char *name, uint32_t *n)
{
  const char **vals = NULL;
  int count = 0, rc = 0;
  if (natsMsgHeader_Values(m, name, &vals, &count) != NATS_OK)
    return 0;
  if (!strcmp(name, NATS_KEY_HEADER) && count) {
    d->view.key = vals[0];
    d->view.key_len = (uint32_t)strlen(vals[0]);
  } else if (!strcmp(name, NATS_KEY_B64_HEADER) && count) {
    rc = set_key_b64(d, vals[0]);
  } else {
    for (int i = 0; !rc && i < count; i++)
      rc = add_header(d, n, name, vals[i]);
  }
  free((void *)vals);
  return rc;
}

static int fill_headers(nats_dlv *d, natsMsg *m)
{
  const char **keys = NULL;
  int nkeys = 0, rc = 0;
  uint32_t n = 0;
  if (!d->hdr_cap)
    d->hdrs = d->inline_hdrs;
  if (natsMsgHeader_Keys(m, &keys, &nkeys) != NATS_OK)
    return 0; /* no headers */
  for (int i = 0; !rc && i < nkeys; i++)
    rc = take_header(d, m, keys[i], &n);
  free((void *)keys);
  d->view.headers = d->hdrs;
  d->view.nheaders = n;
  return rc;
}

int swit__nats_dlv_fill(nats_broker *b, nats_dlv *d, natsMsg *m,
                        const char **reject)
{
  const char *subj = natsMsg_GetSubject(m);
  d->msg = m;
  d->view = (swit_msg_view){ .topic = subj,
                             .topic_len = (uint32_t)strlen(subj),
                             .payload = natsMsg_GetData(m),
                             .payload_len = (size_t)natsMsg_GetDataLength(m),
                             .partition = -1 };
  *reject = NULL;
  if (fill_headers(d, m))
    return SWIT_E_NOMEM;
  *reject = swit__msg_oversize(&d->view, b->max_message_size, d->reason,
                               sizeof d->reason);
  return 0;
}

/* ---------------------------------------------------------------------
 * Publishing */

int swit__nats_subject(const swit_msg_view *v, char *buf, size_t len,
                       char *err, size_t errlen)
{
  if (!v->topic || !v->topic_len)
    return swit__fail(err, errlen, SWIT_E_INVAL, "publish: no topic");
  if (v->topic_len >= len)
    return swit__fail(err, errlen, SWIT_E_INVAL, "publish: subject of "
                      "%u bytes is too long", v->topic_len);
  memcpy(buf, v->topic, v->topic_len);
  buf[v->topic_len] = '\0';
  for (size_t i = 0; i < v->topic_len; i++) {
    unsigned char c = (unsigned char)buf[i];
    int wild = (c == '*' || c == '>') &&
               (i == 0 || buf[i - 1] == '.') &&
               (i + 1 == v->topic_len || buf[i + 1] == '.');
    if (c <= ' ' || c == 127 || wild || (c == '.' && (i == 0 ||
        i + 1 == v->topic_len || buf[i + 1] == '.')))
      return swit__fail(err, errlen, SWIT_E_INVAL, "publish: '%s' is "
                        "not a NATS subject one can publish to (no "
                        "blanks, empty tokens or wildcards)", buf);
  }
  return 0;
}

static int header_ok(const swit_header *h)
{
  if (!h->name_len)
    return 0;
  for (uint32_t i = 0; i < h->name_len; i++) {
    unsigned char c = (unsigned char)h->name[i];
    if (c <= ' ' || c >= 127 || c == ':')
      return 0;
  }
  for (uint32_t i = 0; i < h->value_len; i++)
    if (h->value[i] == '\r' || h->value[i] == '\n' || h->value[i] == '\0')
      return 0;
  return 1;
}

static int key_is_text(const char *k, size_t n)
{
  if (k[0] == ' ' || k[0] == '\t' || k[n - 1] == ' ' || k[n - 1] == '\t')
    return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)k[i] < ' ' || (unsigned char)k[i] >= 127)
      return 0;
  return 1;
}

/* Add name: value (copied to C strings; cnats copies again). */
static natsStatus put_header(natsMsg *m, const char *name, size_t nlen,
                             const char *val, size_t vlen)
{
  char small[512];
  char *buf = nlen + vlen + 2 <= sizeof small ? small : malloc(nlen + vlen + 2);
  if (!buf)
    return NATS_NO_MEMORY;
  memcpy(buf, name, nlen);
  buf[nlen] = '\0';
  memcpy(buf + nlen + 1, val, vlen);
  buf[nlen + 1 + vlen] = '\0';
  natsStatus s = natsMsgHeader_Add(m, buf, buf + nlen + 1);
  if (buf != small)
    free(buf);
  return s;
}

static natsStatus put_key(natsMsg *m, const swit_msg_view *v)
{
  if (key_is_text(v->key, v->key_len))
    return put_header(m, NATS_KEY_HEADER, strlen(NATS_KEY_HEADER), v->key,
                      v->key_len);
  size_t need = (v->key_len + 2) / 3 * 4 + 1;
  char *enc = malloc(need);
  if (!enc)
    return NATS_NO_MEMORY;
  size_t n = b64_encode((const unsigned char *)v->key, v->key_len, enc);
  natsStatus s = put_header(m, NATS_KEY_B64_HEADER,
                            strlen(NATS_KEY_B64_HEADER), enc, n);
  free(enc);
  return s;
}

int swit__nats_msg_build(const swit_msg_view *v, const char *subj,
                         natsMsg **out, char *err, size_t errlen)
{
  natsMsg *m = NULL;
  natsStatus s;
  for (uint32_t i = 0; i < v->nheaders; i++)
    if (!header_ok(&v->headers[i]))
      return swit__fail(err, errlen, SWIT_E_INVAL, "publish to '%s': "
                        "header %u ('%.*s') cannot travel in NATS "
                        "headers (name: printable, no ':' or blanks; "
                        "value: no CR, LF or NUL)", subj, i + 1,
                        (int)v->headers[i].name_len,
                        v->headers[i].name ? v->headers[i].name : "");
  s = natsMsg_Create(&m, subj, NULL, v->payload, (int)v->payload_len);
  for (uint32_t i = 0; s == NATS_OK && i < v->nheaders; i++)
    s = put_header(m, v->headers[i].name, v->headers[i].name_len,
                   v->headers[i].value, v->headers[i].value_len);
  if (s == NATS_OK && v->key_len)
    s = put_key(m, v);
  if (s != NATS_OK) {
    natsMsg_Destroy(m);
    return swit__fail(err, errlen, s == NATS_NO_MEMORY ? SWIT_E_NOMEM
                                                            : SWIT_E_INVAL,
                      "publish to '%s': %s", subj,
                      swit__nats_errtext(s));
  }
  *out = m;
  return 0;
}
