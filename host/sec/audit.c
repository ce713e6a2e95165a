/*
 * audit.c - the audit log (audit.h): lines formatted on the calling
 * thread, copied into a byte ring, written by one writer thread.
 *
 * A line is
 *   {"ts":"2026-12-04T16:45:01.123Z","service":S,"event":"consume",
 *    "worker":N,"topic":T,"key":K,"id":ID,"size":BYTES,"result":R
 *    [,"reason":WHY][,"payload":{...}]}
 * with event publish (worker, or "thread":"other" off the workers and
 * "remote" for the HTTP ingress; result ok or the error) and admin (action, target, remote). The
 * payload appears with log_payload, when it is JSON, with the
 * sensitive_fields redacted; a consumed message is logged as its
 * handler saw it (decrypted), a publish as it was sent.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/host_int.h"
#include "core/intercept.h"
#include "core/msg_int.h"
#include "sec/audit.h"
#include "sec/msgsec.h"

struct swit__audit {
  const swit_config *cfg;
  int fd, own_fd;
  pthread_mutex_t lock;
  pthread_cond_t more, room;    /* writer waits on more, blockers on room */
  char *ring;
  size_t cap, head, len;        /* bytes at [head, head+len) mod cap */
  int stop;
  pthread_t writer;
  atomic_uint_fast64_t lines, dropped, blocked;
};

/* ------------------------------------------------------------------ */
/* The ring and its writer */

static void *writer_main(void *arg)
{
  swit__audit *a = arg;
  char chunk[64 * 1024];

  pthread_mutex_lock(&a->lock);
  for (;;) {
    size_t n, first;
    while (a->len == 0 && !a->stop) pthread_cond_wait(&a->more, &a->lock);
    if (a->len == 0) break;                     /* stopping, drained */
    n = a->len < sizeof chunk ? a->len : sizeof chunk;
    first = a->cap - a->head < n ? a->cap - a->head : n;
    memcpy(chunk, a->ring + a->head, first);
    memcpy(chunk + first, a->ring, n - first);
    a->head = (a->head + n) % a->cap;
    a->len -= n;
    pthread_cond_broadcast(&a->room);
    pthread_mutex_unlock(&a->lock);
    for (size_t o = 0; o < n;) {
      ssize_t w = write(a->fd, chunk + o, n - o);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break;                        /* lost: nowhere to say so */
      o += (size_t)w;
    }
    pthread_mutex_lock(&a->lock);
  }
  pthread_mutex_unlock(&a->lock);
  return NULL;
}

static void put(swit__audit *a, const char *s, size_t n)
{
  size_t tail, first;

  if (n > a->cap) {
    atomic_fetch_add(&a->dropped, 1);
    return;
  }
  pthread_mutex_lock(&a->lock);
  if (a->cap - a->len < n && a->cfg->messaging.security.audit.on_full ==
                                 SWIT_AUDIT_BLOCK) {
    atomic_fetch_add(&a->blocked, 1);
    while (a->cap - a->len < n && !a->stop)
      pthread_cond_wait(&a->room, &a->lock);
  }
  if (a->cap - a->len < n || a->stop) {
    pthread_mutex_unlock(&a->lock);
    atomic_fetch_add(&a->dropped, 1);
    return;
  }
  tail = (a->head + a->len) % a->cap;
  first = a->cap - tail < n ? a->cap - tail : n;
  memcpy(a->ring + tail, s, first);
  memcpy(a->ring, s + first, n - first);
  a->len += n;
  pthread_cond_signal(&a->more);
  pthread_mutex_unlock(&a->lock);
  atomic_fetch_add(&a->lines, 1);
}

void swit__audit_stats_get(swit__audit *a, swit__audit_stats *st)
{
  st->lines = atomic_load(&a->lines);
  st->dropped = atomic_load(&a->dropped);
  st->blocked = atomic_load(&a->blocked);
}

/* ------------------------------------------------------------------ */
/* Lines */

static void line_start(swit__audit *a, swit__buf *b, const char *event)
{
  struct timespec ts;
  struct tm tm;
  char when[32];

  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
  swit__buf_printf(b, "{\"ts\":\"%s.%03ldZ\",\"service\":", when,
                   ts.tv_nsec / 1000000L);
  swit__buf_json(b, a->cfg->server.name, strlen(a->cfg->server.name));
  swit__buf_printf(b, ",\"event\":\"%s\"", event);
}

static void line_end(swit__audit *a, swit__buf *b)
{
  if (swit__buf_add(b, "}\n", 2) == 0) put(a, b->data, b->len);
  else atomic_fetch_add(&a->dropped, 1);
  free(b->data);
}

static void field(swit__buf *b, const char *name, const char *s, size_t n)
{
  swit__buf_printf(b, ",\"%s\":", name);
  swit__buf_json(b, s ? s : "", s ? n : 0);
}

/* What every message line has: who (worker) and what. */
static void message_fields(swit__audit *a, swit__buf *b, const swit_msg_view *v)
{
  swit__worker *w = swit__current_worker;

  if (w) swit__buf_printf(b, ",\"worker\":%u", w->id);
  else swit__buf_add(b, ",\"thread\":\"other\"", 17);
  if (!w && swit__publish_remote)
    field(b, "remote", swit__publish_remote, strlen(swit__publish_remote));
  field(b, "topic", v->topic, v->topic_len);
  field(b, "key", v->key, v->key_len);
  for (uint32_t i = 0; i < v->nheaders; i++)
    if (v->headers[i].name_len == sizeof SWIT__HDR_ID - 1 &&
        strncasecmp(v->headers[i].name, SWIT__HDR_ID,
                    sizeof SWIT__HDR_ID - 1) == 0)
      field(b, "id", v->headers[i].value, v->headers[i].value_len);
  swit__buf_printf(b, ",\"size\":%zu", v->payload_len);
  (void)a;
}

static void payload(swit__audit *a, swit__buf *b, const swit_msg_view *v)
{
  const swit_cfg_list *f = &a->cfg->messaging.security.audit.sensitive_fields;

  if (!a->cfg->messaging.security.audit.log_payload) return;
  swit__buf_add(b, ",\"payload\":", 11);
  if (swit__redact_json(v->payload, v->payload_len, f, b) != 0)
    swit__buf_add(b, "null,\"payload_note\":\"not JSON\"", 30);
}

void swit__audit_admin(swit__audit *a, const char *action, const char *target,
                       const char *remote, int rc, const char *detail)
{
  swit__buf b = {0};

  if (!a) return;
  line_start(a, &b, "admin");
  field(&b, "action", action, strlen(action));
  if (target) field(&b, "target", target, strlen(target));
  if (remote) field(&b, "remote", remote, strlen(remote));
  field(&b, "result", rc == 0 ? "ok" : swit_strerror(rc),
        strlen(rc == 0 ? "ok" : swit_strerror(rc)));
  if (detail) field(&b, "reason", detail, strlen(detail));
  line_end(a, &b);
}

/* ------------------------------------------------------------------ */
/* The interceptor */

/* The text of SWIT_RESULT_MAP (swit.h). */
static const char *result_name(int r)
{
#define RESULT_CASE(name, code, text) case name: return text;
  switch (r) {
  SWIT_RESULT_MAP(RESULT_CASE)
  }
#undef RESULT_CASE
  return "unknown";
}

static int worker_init(void *hs, swit__worker *w, void **ws)
{
  (void)w;
  *ws = hs;
  return 0;
}

static void msg_after(void *ws, swit__worker *w, uint32_t i)
{
  swit__audit *a = ws;
  const swit_ffi_msg *m = &w->ffi.msgs[i];
  const char *r = result_name(m->result);
  swit__buf b = {0};

  line_start(a, &b, "consume");
  message_fields(a, &b, &m->v);
  field(&b, "result", r, strlen(r));
  if (m->reason) field(&b, "reason", m->reason, m->reason_len);
  if (m->result == SWIT_ACK || m->result == SWIT_RETRY)
    payload(a, &b, &m->v);
  line_end(a, &b);
}
SWIT__ICPT_MSGS_AFTER(msgs_after, msg_after)

static void publish_after(void *hs, const swit_msg_view *m, size_t n, int rc,
                          uint64_t us)
{
  swit__audit *a = hs;
  const char *r = rc == 0 ? "ok" : swit_strerror(rc);

  (void)us;
  for (size_t i = 0; i < n; i++) {
    swit__buf b = {0};
    line_start(a, &b, "publish");
    message_fields(a, &b, &m[i]);
    field(&b, "result", r, strlen(r));
    payload(a, &b, &m[i]);
    line_end(a, &b);
  }
}

static const swit__icpt_ops audit_consume_ops = {
  .name = "audit",
  .worker_init = worker_init,
  .msgs_after = msgs_after,
};
static const swit__icpt_ops audit_publish_ops = {
  .name = "audit",
  .publish_after = publish_after,
};
static const swit__icpt_ops audit_both_ops = {
  .name = "audit",
  .worker_init = worker_init,
  .msgs_after = msgs_after,
  .publish_after = publish_after,
};

int swit__audit_register(swit_host_t *h, swit__audit *a)
{
  int pub = a->cfg->messaging.security.audit.log_publishes;
  int con = a->cfg->messaging.security.audit.log_consumes;
  int k = 0;

  if (pub || con)
    k = swit__icpt_add(h, pub && con ? &audit_both_ops
                          : pub ? &audit_publish_ops : &audit_consume_ops, a);
  return k < 0 ? k : 0;
}

/* ------------------------------------------------------------------ */
/* Life */

int swit__audit_new(swit__audit **out, const swit_config *cfg, char *err,
                    size_t errlen)
{
  const char *path = cfg->messaging.security.audit.output;
  const swit_cfg_mark *mk = &cfg->messaging.security.audit.output_mark;
  swit__audit *a;

  *out = NULL;
  if (!cfg->messaging.security.audit.enabled) return 0;
  if (!(a = calloc(1, sizeof *a))) return SWIT_E_NOMEM;
  a->cfg = cfg;
  a->cap = (size_t)cfg->messaging.security.audit.buffer_size;
  if (!path || !*path || strcmp(path, "stderr") == 0) {
    a->fd = STDERR_FILENO;
  } else {
    a->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (a->fd < 0) {
      snprintf(err, errlen, "%s:%d:%d: messaging.security.audit.output: "
               "cannot open '%s': %s", mk->file ? mk->file : cfg->path,
               mk->line, mk->col, path, strerror(errno));
      free(a);
      return SWIT_E_CONFIG;
    }
    a->own_fd = 1;
  }
  pthread_mutex_init(&a->lock, NULL);
  pthread_cond_init(&a->more, NULL);
  pthread_cond_init(&a->room, NULL);
  if (!(a->ring = malloc(a->cap))) {
    swit__audit_free(a);
    return SWIT_E_NOMEM;
  }
  if (pthread_create(&a->writer, NULL, writer_main, a) != 0) {
    free(a->ring);
    a->ring = NULL;
    swit__audit_free(a);
    snprintf(err, errlen, "audit: cannot start the writer thread");
    return SWIT_E_SYS;
  }
  *out = a;
  return 0;
}

void swit__audit_free(swit__audit *a)
{
  if (!a) return;
  if (a->ring) {
    pthread_mutex_lock(&a->lock);
    a->stop = 1;
    pthread_cond_broadcast(&a->more);
    pthread_cond_broadcast(&a->room);
    pthread_mutex_unlock(&a->lock);
    pthread_join(a->writer, NULL);
  }
  if (a->own_fd) close(a->fd);
  pthread_mutex_destroy(&a->lock);
  pthread_cond_destroy(&a->more);
  pthread_cond_destroy(&a->room);
  free(a->ring);
  free(a);
}
