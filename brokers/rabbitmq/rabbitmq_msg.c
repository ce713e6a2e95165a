/*
 * rabbitmq_msg.c - message memory of the RabbitMQ adapter and the mapping
 * between AMQP messages and swit message views, both ways.
 *
 * Mapping (docs/brokers/rabbitmq.md, "Messages"):
 *   topic        <-> routing key
 *   key          <-> header "swit-key"
 *   headers      <-> the AMQP headers table (strings; received numbers and
 *                    booleans become text; nested tables and arrays, such
 *                    as RabbitMQ's x-death, are not shown)
 *   "amqp-<prop>" <-> the basic properties content-type, content-encoding,
 *                    correlation-id, reply-to, expiration, message-id,
 *                    type, user-id, app-id and priority
 *   timestamp    <-  properties.timestamp (seconds); every publish sets it
 *   "amqp-redelivered: true" is added to redelivered messages.
 *
 * Slots (deliveries) are used by the I/O thread only; publish records are
 * filled by the publishing thread before they are handed over. Both come
 * from pools that keep buffers up to RMQ_KEEP_BUF, so a steady load does
 * not allocate.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "rabbitmq_int.h"

/* ---------------------------------------------------------------------
 * Lists */

void swit__rmq_slot_link(rmq_slot_list *l, rmq_slot *s)
{
  s->next = NULL;
  s->prev = l->tail;
  if (l->tail)
    l->tail->next = s;
  else
    l->head = s;
  l->tail = s;
}

void swit__rmq_slot_unlink(rmq_slot_list *l, rmq_slot *s)
{
  if (s->prev)
    s->prev->next = s->next;
  else
    l->head = s->next;
  if (s->next)
    s->next->prev = s->prev;
  else
    l->tail = s->prev;
  s->next = s->prev = NULL;
}

void swit__rmq_pub_append(rmq_pub_list *l, rmq_pub *p)
{
  p->next = NULL;
  p->prev = l->tail;
  if (l->tail)
    l->tail->next = p;
  else
    l->head = p;
  l->tail = p;
  l->n++;
}

void swit__rmq_pub_unlink(rmq_pub_list *l, rmq_pub *p)
{
  if (p->prev)
    p->prev->next = p->next;
  else
    l->head = p->next;
  if (p->next)
    p->next->prev = p->prev;
  else
    l->tail = p->prev;
  p->next = p->prev = NULL;
  l->n--;
}

void swit__rmq_pub_splice(rmq_pub_list *to, rmq_pub_list *from, int front)
{
  if (!from->head)
    return;
  if (!to->head) {
    *to = *from;
  } else if (front) {
    from->tail->next = to->head;
    to->head->prev = from->tail;
    to->head = from->head;
    to->n += from->n;
  } else {
    to->tail->next = from->head;
    from->head->prev = to->tail;
    to->tail = from->tail;
    to->n += from->n;
  }
  from->head = from->tail = NULL;
  from->n = 0;
}

/* ---------------------------------------------------------------------
 * Slots */

rmq_slot *swit__rmq_slot_get(rmq_broker *b)
{
  rmq_slot *s = b->slot_free;
  if (s) {
    b->slot_free = s->next;
    b->nslot_free--;
  } else if (!(s = calloc(1, sizeof *s))) {
    return NULL;
  }
  s->next = s->prev = NULL;
  s->sub = NULL;
  s->state = RMQ_SLOT_ASSEMBLING;
  s->reject = NULL;
  s->body = NULL;
  s->body_size = s->body_got = 0;
  s->rkey_len = 0;
  s->redelivered = 0;
  return s;
}

void swit__rmq_slot_put(rmq_broker *b, rmq_slot *s)
{
  if (!s)
    return;
  s->state = RMQ_SLOT_FREE;
  if (s->cap > RMQ_KEEP_BUF || b->nslot_free >= RMQ_POOL_MAX) {
    free(s->buf);
    s->buf = NULL;
    s->cap = 0;
  }
  if (b->nslot_free >= RMQ_POOL_MAX) {
    free(s);
    return;
  }
  s->next = b->slot_free;
  b->slot_free = s;
  b->nslot_free++;
}

static void slot_list_free(rmq_slot_list *l)
{
  rmq_slot *s = l->head;
  while (s) {
    rmq_slot *next = s->next;
    free(s->buf);
    free(s);
    s = next;
  }
  l->head = l->tail = NULL;
}

void swit__rmq_slots_free(rmq_broker *b)
{
  slot_list_free(&b->outstanding);
  slot_list_free(&b->stale);
  if (b->assembling) {
    free(b->assembling->buf);
    free(b->assembling);
    b->assembling = NULL;
  }
  while (b->slot_free) {
    rmq_slot *s = b->slot_free;
    b->slot_free = s->next;
    free(s->buf);
    free(s);
  }
  b->nslot_free = 0;
}

/* ---------------------------------------------------------------------
 * Received messages */

/* Basic properties shown as "amqp-<name>" headers (all short strings). */
typedef struct prop_map {
  const char *name;
  amqp_flags_t flag;
  size_t off;
} prop_map;

#define PROP(n, f, m) { n, f, offsetof(amqp_basic_properties_t, m) }
static const prop_map props[] = {
  PROP("amqp-content-type", AMQP_BASIC_CONTENT_TYPE_FLAG, content_type),
  PROP("amqp-content-encoding", AMQP_BASIC_CONTENT_ENCODING_FLAG,
       content_encoding),
  PROP("amqp-correlation-id", AMQP_BASIC_CORRELATION_ID_FLAG, correlation_id),
  PROP("amqp-reply-to", AMQP_BASIC_REPLY_TO_FLAG, reply_to),
  PROP("amqp-expiration", AMQP_BASIC_EXPIRATION_FLAG, expiration),
  PROP("amqp-message-id", AMQP_BASIC_MESSAGE_ID_FLAG, message_id),
  PROP("amqp-type", AMQP_BASIC_TYPE_FLAG, type),
  PROP("amqp-user-id", AMQP_BASIC_USER_ID_FLAG, user_id),
  PROP("amqp-app-id", AMQP_BASIC_APP_ID_FLAG, app_id),
};
#define NPROPS (sizeof props / sizeof props[0])
#define KEY_HEADER "swit-key"
#define PRIORITY_HEADER "amqp-priority"
#define REDELIVERED_HEADER "amqp-redelivered"

static amqp_bytes_t *prop_field(amqp_basic_properties_t *p, size_t i)
{
  return (amqp_bytes_t *)((char *)p + props[i].off);
}

/* A table value as text: strings as they are, numbers and booleans
 * printed into tmp. 0 if the value has no text form (tables, arrays). */
static int value_text(const amqp_field_value_t *v, char *tmp, size_t tmplen,
                      const char **out, size_t *len)
{
  int w;
  switch (v->kind) {
  case AMQP_FIELD_KIND_UTF8:
  case AMQP_FIELD_KIND_BYTES:
    *out = v->value.bytes.bytes;
    *len = v->value.bytes.len;
    return 1;
  case AMQP_FIELD_KIND_BOOLEAN:
    *out = v->value.boolean ? "true" : "false";
    *len = strlen(*out);
    return 1;
  case AMQP_FIELD_KIND_I8: w = snprintf(tmp, tmplen, "%d", v->value.i8); break;
  case AMQP_FIELD_KIND_U8: w = snprintf(tmp, tmplen, "%u", v->value.u8); break;
  case AMQP_FIELD_KIND_I16: w = snprintf(tmp, tmplen, "%d", v->value.i16); break;
  case AMQP_FIELD_KIND_U16: w = snprintf(tmp, tmplen, "%u", v->value.u16); break;
  case AMQP_FIELD_KIND_I32:
    w = snprintf(tmp, tmplen, "%" PRId32, v->value.i32);
    break;
  case AMQP_FIELD_KIND_U32:
    w = snprintf(tmp, tmplen, "%" PRIu32, v->value.u32);
    break;
  case AMQP_FIELD_KIND_I64:
    w = snprintf(tmp, tmplen, "%" PRId64, v->value.i64);
    break;
  case AMQP_FIELD_KIND_U64:
  case AMQP_FIELD_KIND_TIMESTAMP:
    w = snprintf(tmp, tmplen, "%" PRIu64, v->value.u64);
    break;
  case AMQP_FIELD_KIND_F32: w = snprintf(tmp, tmplen, "%.9g", v->value.f32); break;
  case AMQP_FIELD_KIND_F64: w = snprintf(tmp, tmplen, "%.17g", v->value.f64); break;
  default:
    return 0;
  }
  *out = tmp;
  *len = w > 0 ? (size_t)w : 0;
  return 1;
}

/* Walks a delivery's headers in the order they are laid out; with
 * `hv` NULL it only measures. Returns the number of headers. */
typedef struct layout {
  swit_header *hv;  /* NULL: measuring */
  char *at;         /* where the next bytes go */
  size_t bytes;     /* bytes of names and values */
  uint32_t n;
  const char *key;
  size_t key_len;
} layout;

static void put_header(layout *L, const char *name, size_t nlen,
                       const char *val, size_t vlen)
{
  if (L->hv) {
    swit_header *h = &L->hv[L->n];
    memcpy(L->at, name, nlen);
    h->name = L->at;
    h->name_len = (uint32_t)nlen;
    L->at += nlen;
    if (vlen)
      memcpy(L->at, val, vlen);
    h->value = L->at;
    h->value_len = (uint32_t)vlen;
    L->at += vlen;
  }
  L->bytes += nlen + vlen;
  L->n++;
}

static void walk_headers(layout *L, amqp_basic_properties_t *p, int redelivered)
{
  char tmp[40];
  const char *val;
  size_t vlen;

  if (p->_flags & AMQP_BASIC_HEADERS_FLAG) {
    for (int i = 0; i < p->headers.num_entries; i++) {
      const amqp_table_entry_t *e = &p->headers.entries[i];
      if (!value_text(&e->value, tmp, sizeof tmp, &val, &vlen))
        continue;
      if (e->key.len == strlen(KEY_HEADER) && val != tmp &&
          strncasecmp(e->key.bytes, KEY_HEADER, e->key.len) == 0) {
        L->key = val; /* a string: points into the frame */
        L->key_len = vlen;
        continue;
      }
      put_header(L, e->key.bytes, e->key.len, val, vlen);
    }
  }
  for (size_t i = 0; i < NPROPS; i++) {
    if (!(p->_flags & props[i].flag))
      continue;
    const amqp_bytes_t *f = prop_field(p, i);
    put_header(L, props[i].name, strlen(props[i].name), f->bytes, f->len);
  }
  if (p->_flags & AMQP_BASIC_PRIORITY_FLAG) {
    int w = snprintf(tmp, sizeof tmp, "%u", (unsigned)p->priority);
    put_header(L, PRIORITY_HEADER, strlen(PRIORITY_HEADER), tmp, (size_t)w);
  }
  if (redelivered)
    put_header(L, REDELIVERED_HEADER, strlen(REDELIVERED_HEADER), "true", 4);
}

static int slot_reserve(rmq_slot *s, size_t need)
{
  if (need <= s->cap)
    return 0;
  char *nb = malloc(need);
  if (!nb)
    return SWIT_E_NOMEM;
  free(s->buf);
  s->buf = nb;
  s->cap = need;
  return 0;
}

int swit__rmq_slot_header(rmq_broker *b, rmq_slot *s,
                          const amqp_basic_properties_t *cp, uint64_t body_size)
{
  amqp_basic_properties_t *p = (amqp_basic_properties_t *)cp;
  layout L = { 0 };
  walk_headers(&L, p, s->redelivered);
  uint32_t nh = L.n;
  size_t hdr = (size_t)nh * sizeof(swit_header);
  size_t need = hdr + s->rkey_len + L.key_len + L.bytes + (size_t)body_size;
  if (body_size > SIZE_MAX / 2 || slot_reserve(s, need ? need : 1))
    return SWIT_E_NOMEM;

  layout W = { .hv = (swit_header *)s->buf, .at = s->buf + hdr };
  walk_headers(&W, p, s->redelivered);
  swit_msg_view *v = &s->view;
  memset(v, 0, sizeof *v);
  v->headers = nh ? W.hv : NULL;
  v->nheaders = nh;
  memcpy(W.at, s->rkey, s->rkey_len);
  v->topic = W.at;
  v->topic_len = s->rkey_len;
  W.at += s->rkey_len;
  if (W.key_len)
    memcpy(W.at, W.key, W.key_len);
  v->key = W.key_len ? W.at : NULL;
  v->key_len = (uint32_t)W.key_len;
  W.at += W.key_len;
  s->body = W.at;
  s->body_size = (size_t)body_size;
  s->body_got = 0;
  v->payload = s->body;
  v->payload_len = s->body_size;
  v->partition = -1;
  v->timestamp_ms = (p->_flags & AMQP_BASIC_TIMESTAMP_FLAG)
                        ? (int64_t)p->timestamp * 1000 : 0;
  s->reject = swit__msg_oversize(v, b->max_message_size, s->reason,
                                 sizeof s->reason);
  return 0;
}

/* ---------------------------------------------------------------------
 * Messages to publish */

static int prop_index(const char *name, size_t len)
{
  for (size_t i = 0; i < NPROPS; i++)
    if (strlen(props[i].name) == len &&
        strncasecmp(props[i].name, name, len) == 0)
      return (int)i;
  return -1;
}

static int name_is(const swit_header *h, const char *name)
{
  return h->name_len == strlen(name) &&
         strncasecmp(h->name, name, h->name_len) == 0;
}

/* What a header becomes on the wire. */
enum { AS_ENTRY, AS_PROP, AS_PRIORITY, AS_NOTHING };

static int header_role(const swit_header *h, int has_key, int *prop)
{
  *prop = prop_index(h->name, h->name_len);
  if (*prop >= 0)
    return AS_PROP;
  if (name_is(h, PRIORITY_HEADER))
    return AS_PRIORITY;
  if (name_is(h, REDELIVERED_HEADER) || (has_key && name_is(h, KEY_HEADER)))
    return AS_NOTHING;
  return AS_ENTRY;
}

static int check_view(const swit_msg_view *m, char *err, size_t errlen)
{
  if (!m->topic || !m->topic_len)
    return swit__fail(err, errlen, SWIT_E_INVAL, "publish: no topic");
  if (m->topic_len > 255)
    return swit__fail(err, errlen, SWIT_E_INVAL, "publish to '%.40s...': "
                      "a topic (AMQP routing key) is at most 255 bytes",
                      m->topic);
  if ((m->key_len && !m->key) || (m->payload_len && !m->payload) ||
      (m->nheaders && !m->headers))
    return swit__fail(err, errlen, SWIT_E_INVAL, "publish to '%.*s': a "
                      "NULL pointer with a nonzero length",
                      (int)m->topic_len, m->topic);
  for (uint32_t i = 0; i < m->nheaders; i++) {
    const swit_header *h = &m->headers[i];
    if ((h->name_len && !h->name) || (h->value_len && !h->value) ||
        !h->name_len || h->name_len > 255)
      return swit__fail(err, errlen, SWIT_E_INVAL, "publish to '%.*s': "
                        "header %u needs a name of 1..255 bytes",
                        (int)m->topic_len, m->topic, i + 1);
  }
  return 0;
}

static int parse_priority(const swit_header *h, uint8_t *out)
{
  unsigned v = 0;
  if (!h->value_len || h->value_len > 3)
    return -1;
  for (uint32_t i = 0; i < h->value_len; i++) {
    if (h->value[i] < '0' || h->value[i] > '9')
      return -1;
    v = v * 10 + (unsigned)(h->value[i] - '0');
  }
  if (v > 255)
    return -1;
  *out = (uint8_t)v;
  return 0;
}

static amqp_bytes_t copy_bytes(char **at, const void *src, size_t len)
{
  amqp_bytes_t out = { len, *at };
  if (len)
    memcpy(*at, src, len);
  *at += len;
  return out;
}

/* Fill the properties and table of r from m's headers; `at` is where the
 * bytes go (room was measured by the caller). */
static int fill_headers(rmq_pub *r, const swit_msg_view *m, char **at,
                        char *err, size_t errlen)
{
  amqp_basic_properties_t *p = &r->props;
  int n = 0, prop;
  for (uint32_t i = 0; i < m->nheaders; i++) {
    const swit_header *h = &m->headers[i];
    switch (header_role(h, m->key_len > 0, &prop)) {
    case AS_PROP:
      *prop_field(p, (size_t)prop) = copy_bytes(at, h->value, h->value_len);
      p->_flags |= props[prop].flag;
      break;
    case AS_PRIORITY:
      if (parse_priority(h, &p->priority))
        return swit__fail(err, errlen, SWIT_E_INVAL, "publish to '%.*s': "
                          "header amqp-priority must be 0..255",
                          (int)m->topic_len, m->topic);
      p->_flags |= AMQP_BASIC_PRIORITY_FLAG;
      break;
    case AS_ENTRY:
      r->entries[n].key = copy_bytes(at, h->name, h->name_len);
      r->entries[n].value.kind = AMQP_FIELD_KIND_UTF8;
      r->entries[n].value.value.bytes = copy_bytes(at, h->value, h->value_len);
      n++;
      break;
    default:
      break;
    }
  }
  if (m->key_len) {
    r->entries[n].key = amqp_cstring_bytes(KEY_HEADER);
    r->entries[n].value.kind = AMQP_FIELD_KIND_UTF8;
    r->entries[n].value.value.bytes = copy_bytes(at, m->key, m->key_len);
    n++;
  }
  p->headers.num_entries = n;
  p->headers.entries = n ? r->entries : NULL;
  if (n)
    p->_flags |= AMQP_BASIC_HEADERS_FLAG;
  return 0;
}

int swit__rmq_pub_fill(const rmq_broker *b, rmq_pub *r, const swit_msg_view *m,
                       char *err, size_t errlen)
{
  int rc = check_view(m, err, errlen);
  if (rc)
    return rc;
  size_t nent = m->key_len ? 1 : 0, bytes = m->topic_len + m->payload_len;
  bytes += m->key_len;
  for (uint32_t i = 0; i < m->nheaders; i++) {
    int prop, role = header_role(&m->headers[i], m->key_len > 0, &prop);
    nent += role == AS_ENTRY;
    bytes += m->headers[i].name_len + m->headers[i].value_len;
  }
  size_t need = nent * sizeof(amqp_table_entry_t) + bytes;
  if (need > r->cap) {
    char *nb = malloc(need);
    if (!nb)
      return swit__fail(err, errlen, SWIT_E_NOMEM, "publish to '%.*s': "
                        "out of memory", (int)m->topic_len, m->topic);
    free(r->buf);
    r->buf = nb;
    r->cap = need;
  }
  r->entries = (amqp_table_entry_t *)r->buf;
  char *at = r->buf + nent * sizeof(amqp_table_entry_t);
  memset(&r->props, 0, sizeof r->props);
  r->props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_TIMESTAMP_FLAG;
  r->props.delivery_mode = b->st.persistent ? 2 : 1;
  r->props.timestamp = (uint64_t)time(NULL);
  r->rkey = copy_bytes(&at, m->topic, m->topic_len);
  r->body = copy_bytes(&at, m->payload, m->payload_len);
  return fill_headers(r, m, &at, err, errlen);
}
