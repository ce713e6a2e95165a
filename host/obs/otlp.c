/*
 * otlp.c - the tracer's life and its exporter thread: spans from the
 * workers' rings posted as OTLP/HTTP JSON to messaging.tracing.otlp_endpoint.
 *
 * One exporter thread per host. It wakes every export_interval, or when
 * a worker's ring holds a full batch (SWIT__EXPORT_BATCH spans), drains
 * every ring in batches and posts each batch with one HTTP/1.1 request
 * on a plain blocking socket (connect and I/O time out after 2 s). A
 * batch the endpoint does not take (down, slow, non-2xx) is dropped and
 * counted: spans are never retried, so a dead endpoint costs the workers
 * nothing. Stopping (after the workers stopped) exports what is left.
 * The thread reads the host's subscriptions (topic and group of a span),
 * which live until swit_host_free, after the exporter is joined.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "obs/obs.h"

#define IO_TIMEOUT_MS 2000

/* Append a string literal. */
#define LIT(b, s) swit__buf_add((b), (s), sizeof(s) - 1)

/* ------------------------------------------------------------------ */
/* Life */

/* "http://host[:port][/path]" ([v6] hosts too); no path: /v1/traces. */
static int parse_endpoint(swit__tracer *t, const char *url)
{
  const char *p = url + 7, *end, *slash, *colon;
  size_t hl;

  if (strncasecmp(url, "http://", 7) != 0) return -1;
  slash = strchr(p, '/');
  end = slash ? slash : p + strlen(p);
  if (*p == '[') {
    const char *rb = memchr(p, ']', (size_t)(end - p));
    if (!rb) return -1;
    colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
    hl = (size_t)(rb - p - 1);
    p++;
  } else {
    colon = memchr(p, ':', (size_t)(end - p));
    hl = (size_t)((colon ? colon : end) - p);
  }
  if (hl == 0 || hl >= sizeof t->host) return -1;
  memcpy(t->host, p, hl);
  t->host[hl] = '\0';
  if (colon) {
    size_t pl = (size_t)(end - colon - 1);
    if (pl == 0 || pl >= sizeof t->port) return -1;
    memcpy(t->port, colon + 1, pl);
    t->port[pl] = '\0';
    if (strspn(t->port, "0123456789") != pl || atoi(t->port) > 65535)
      return -1;
  } else {
    strcpy(t->port, "80");
  }
  if (!slash || !slash[1]) strcpy(t->path, "/v1/traces");
  else if (strlen(slash) < sizeof t->path) strcpy(t->path, slash);
  else return -1;
  return strpbrk(t->path, " \r\n") ? -1 : 0;
}

static uint32_t pow2_at_least(uint64_t n)
{
  uint32_t c = 16;
  while (c < n && c < (1u << 30)) c <<= 1;
  return c;
}

int swit__trace_new(swit_host_t *h, char *err, size_t errlen)
{
  const swit_config *cfg = h->cfg;
  const char *url = cfg->messaging.tracing.otlp_endpoint;
  double ratio = cfg->messaging.tracing.sampling_ratio;
  int64_t workers = cfg->messaging.resources.subscribers.worker_pool_size;
  swit__tracer *t;

  if (!cfg->messaging.tracing.enabled) return 0;
  t = calloc(1, sizeof *t);
  if (!t) return SWIT_E_NOMEM;
  pthread_mutex_init(&t->lock, NULL);
  swit__cond_init_monotonic(&t->cv);
  h->tracer = t;
  /* sampled when a 64-bit draw < ratio * 2^64 */
  t->always = ratio * 18446744073709551616.0 >= 18446744073709551615.0;
  t->threshold = ratio <= 0 || t->always
                 ? 0 : (uint64_t)(ratio * 18446744073709551616.0);
  t->interval_ms = cfg->messaging.tracing.export_interval_ms;
  /* buffer_size spans in all: shared out among the workers' rings */
  t->ring_cap = pow2_at_least((uint64_t)(cfg->messaging.tracing.buffer_size /
                                         (workers > 0 ? workers : 1)));
  if (url && *url) {
    if (parse_endpoint(t, url) != 0) {
      snprintf(err, errlen, "%s: messaging.tracing.otlp_endpoint: expected "
               "http://host:port/path, got '%s'", cfg->path, url);
      return SWIT_E_CONFIG;
    }
    t->exporting = 1;
    t->batch = calloc(SWIT__EXPORT_BATCH, sizeof *t->batch);
    t->body = calloc(1, sizeof *t->body);
    if (!t->batch || !t->body) return SWIT_E_NOMEM;
  }
  return 0;
}

static void *exporter_main(void *arg);

int swit__trace_start(swit_host_t *h, char *err, size_t errlen)
{
  swit__tracer *t = h->tracer;
  int rc;

  if (!t || !t->exporting || t->started) return 0;
  rc = pthread_create(&t->thread, NULL, exporter_main, h);
  if (rc != 0) {
    snprintf(err, errlen, "cannot start the trace exporter: %s",
             strerror(rc));
    return SWIT_E_SYS;
  }
  t->started = 1;
  return 0;
}

void swit__trace_stop(swit_host_t *h)
{
  swit__tracer *t = h->tracer;

  if (!t || !t->started) return;
  pthread_mutex_lock(&t->lock);
  t->stop = 1;
  pthread_cond_signal(&t->cv);
  pthread_mutex_unlock(&t->lock);
  pthread_join(t->thread, NULL);
  t->started = 0;
}

void swit__trace_free(swit_host_t *h)
{
  swit__tracer *t = h->tracer;

  if (!t) return;
  swit__trace_stop(h);
  pthread_mutex_destroy(&t->lock);
  pthread_cond_destroy(&t->cv);
  free(t->batch);
  if (t->body) free(t->body->data);
  free(t->body);
  free(t);
  h->tracer = NULL;
}

void swit__trace_kick(swit_host_t *h)
{
  swit__tracer *t = h->tracer;

  if (atomic_exchange_explicit(&t->kick_pending, 1, memory_order_relaxed))
    return;                               /* already asked */
  pthread_mutex_lock(&t->lock);
  t->kicked = 1;
  pthread_cond_signal(&t->cv);
  pthread_mutex_unlock(&t->lock);
}

void swit__trace_counts(swit_host_t *h, uint64_t *exported,
                        uint64_t *dropped_full, uint64_t *dropped_export)
{
  swit__tracer *t = h->tracer;

  *exported = *dropped_full = *dropped_export = 0;
  if (!t) return;
  *exported = atomic_load_explicit(&t->exported, memory_order_relaxed);
  *dropped_export = atomic_load_explicit(&t->failed, memory_order_relaxed);
  for (size_t i = 0; h->workers && i < h->nworkers; i++)
    if (swit__wtrace_of(&h->workers[i]))
      *dropped_full += atomic_load_explicit(
          &swit__wtrace_of(&h->workers[i])->ring.dropped,
                                            memory_order_relaxed);
}

/* ------------------------------------------------------------------ */
/* OTLP/HTTP JSON (opentelemetry-proto, ExportTraceServiceRequest) */

static void hex_id(swit__buf *b, uint64_t a)
{
  static const char digits[] = "0123456789abcdef";
  char s[16];
  for (int i = 15; i >= 0; i--, a >>= 4) s[i] = digits[a & 15];
  swit__buf_add(b, s, 16);
}

static void attr_str(swit__buf *b, const char *key, const char *v, size_t len,
                     int first)
{
  swit__buf_printf(b, "%s{\"key\":\"%s\",\"value\":{\"stringValue\":",
                   first ? "" : ",", key);
  swit__buf_json(b, v, len);
  LIT(b, "}}");
}

/* The text of SWIT_RESULT_MAP (swit.h), or given_back (requeued). */
static const char *result_name(int r)
{
  switch (r) {
#define RESULT_CASE(name, value, text) case name: return text;
  SWIT_RESULT_MAP(RESULT_CASE)
#undef RESULT_CASE
  }
  return "given_back";
}

static void span_json(swit_host_t *h, const swit__span_rec *s, swit__buf *b)
{
  const swit__sub *sub = s->sub >= 1 && s->sub <= SWIT__MAX_SUBS
                         ? h->subs[s->sub - 1] : NULL;
  const char *topic = sub ? sub->topic : "?", *group = sub ? sub->group : "";
  const char *broker = h->ops ? h->ops->name : "none";
  char name[320];

  LIT(b, "{\"traceId\":\"");
  hex_id(b, s->hi);
  hex_id(b, s->lo);
  LIT(b, "\",\"spanId\":\"");
  hex_id(b, s->span);
  LIT(b, "\",\"parentSpanId\":\"");
  if (s->parent) hex_id(b, s->parent);
  LIT(b, "\"");
  if (s->state_len) {
    LIT(b, ",\"traceState\":");
    swit__buf_json(b, s->state, s->state_len);
  }
  snprintf(name, sizeof name, "%s process", topic);
  LIT(b, ",\"name\":");
  swit__buf_json(b, name, strlen(name));
  swit__buf_printf(b, ",\"kind\":5,\"startTimeUnixNano\":\"%" PRIu64
                   "\",\"endTimeUnixNano\":\"%" PRIu64 "\",\"attributes\":[",
                   s->start_ns, s->end_ns);
  attr_str(b, "messaging.system", broker, strlen(broker), 1);
  attr_str(b, "messaging.destination", topic, strlen(topic), 0);
  attr_str(b, "messaging.consumer.group", group, strlen(group), 0);
  attr_str(b, "messaging.operation", "process", 7, 0);
  swit__buf_printf(b, ",{\"key\":\"swit.attempt\",\"value\":{\"intValue\":\"%"
                   PRIu32 "\"}},{\"key\":\"swit.worker\",\"value\":"
                   "{\"intValue\":\"%" PRIu32 "\"}}", s->attempt, s->worker);
  attr_str(b, "swit.result", result_name(s->result),
           strlen(result_name(s->result)), 0);
  if (s->result == SWIT_ACK) {
    LIT(b, "],\"status\":{\"code\":1}}");
  } else {
    LIT(b, "],\"status\":{\"code\":2,\"message\":");
    if (s->reason_len) swit__buf_json(b, s->reason, s->reason_len);
    else swit__buf_json(b, result_name(s->result),
                        strlen(result_name(s->result)));
    LIT(b, "}}");
  }
}

int swit__otlp_json(swit_host_t *h, const swit__span_rec *s, size_t n,
                    swit__buf *b)
{
  const char *svc = h->cfg->server.name ? h->cfg->server.name : "swit";

  LIT(b, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
  attr_str(b, "service.name", svc, strlen(svc), 1);
  swit__buf_printf(b, "]},\"scopeSpans\":[{\"scope\":{\"name\":\"swit\","
                   "\"version\":\"%s\"},\"spans\":[", SWIT_VERSION_STRING);
  for (size_t i = 0; i < n; i++) {
    if (i) LIT(b, ",");
    span_json(h, &s[i], b);
  }
  LIT(b, "]}]}]}");
  return b->data ? 0 : SWIT_E_NOMEM;
}

/* ------------------------------------------------------------------ */
/* HTTP POST on a plain socket */

static int wait_fd(int fd, short ev)
{
  struct pollfd p = {fd, ev, 0};
  int rc;
  while ((rc = poll(&p, 1, IO_TIMEOUT_MS)) < 0 && errno == EINTR) {}
  return rc == 1 ? 0 : -1;
}

/* The endpoint's address: resolved on first use and kept (no allocation
 * per export); a host name is resolved again after a failed connect. */
static int resolve(swit__tracer *t)
{
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;

  if (t->addrlen) return 0;
  if (getaddrinfo(t->host, t->port, &hints, &res) != 0 || !res) return -1;
  memcpy(&t->addr, res->ai_addr, res->ai_addrlen);
  t->addrlen = res->ai_addrlen;
  hints.ai_flags = AI_NUMERICHOST;
  freeaddrinfo(res);
  res = NULL;
  t->numeric = getaddrinfo(t->host, NULL, &hints, &res) == 0;
  if (res) freeaddrinfo(res);
  return 0;
}

static int connect_to(swit__tracer *t)
{
  int fd, e = 0;
  socklen_t el = sizeof e;

  if (resolve(t) != 0) return -1;
  fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
              0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&t->addr, t->addrlen) != 0 &&
      (errno != EINPROGRESS || wait_fd(fd, POLLOUT) != 0 ||
       getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0 || e != 0)) {
    close(fd);
    if (!t->numeric) t->addrlen = 0;
    return -1;
  }
  return fd;
}

static int send_all(int fd, const char *p, size_t len)
{
  while (len) {
    ssize_t k = send(fd, p, len, MSG_NOSIGNAL);
    if (k < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (wait_fd(fd, POLLOUT) != 0) return -1;
      continue;
    }
    if (k <= 0) return -1;
    p += k;
    len -= (size_t)k;
  }
  return 0;
}

/* The response's status code, or -1. */
static int read_status(int fd)
{
  char buf[512];
  size_t n = 0;
  int status = -1;

  while (n < sizeof buf - 1) {
    ssize_t k = recv(fd, buf + n, sizeof buf - 1 - n, 0);
    if (k < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (wait_fd(fd, POLLIN) != 0) return -1;
      continue;
    }
    if (k <= 0) break;
    n += (size_t)k;
    buf[n] = '\0';
    if (strchr(buf, '\n')) break;
  }
  buf[n] = '\0';
  if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) return -1;
  return status;
}

/* Send the body on fd (connected) and close it. */
static int post(swit__tracer *t, int fd, const swit__buf *body, char *why,
                size_t whylen)
{
  char head[1024];
  int n, status;

  n = snprintf(head, sizeof head, "POST %s HTTP/1.1\r\nHost: %s:%s\r\n"
               "Content-Type: application/json\r\nContent-Length: %zu\r\n"
               "Connection: close\r\n\r\n", t->path, t->host, t->port,
               body->len);
  status = send_all(fd, head, (size_t)n) == 0 &&
           send_all(fd, body->data, body->len) == 0 ? read_status(fd) : -1;
  close(fd);
  if (status >= 200 && status < 300) return 0;
  if (status < 0) snprintf(why, whylen, "no HTTP answer from %s:%s", t->host,
                           t->port);
  else snprintf(why, whylen, "%s:%s answered %d", t->host, t->port, status);
  return -1;
}

/* ------------------------------------------------------------------ */
/* The exporter thread */

/* Up to SWIT__EXPORT_BATCH spans from the rings, round-robin. */
static size_t collect(swit_host_t *h, swit__span_rec *out)
{
  size_t n = 0;

  for (size_t i = 0; i < h->nworkers && n < SWIT__EXPORT_BATCH; i++) {
    swit__wtrace *tr = swit__wtrace_of(&h->workers[i]);
    swit__span_ring *rg;
    uint32_t tail, head;

    if (!tr) continue;
    rg = &tr->ring;
    tail = atomic_load_explicit(&rg->tail, memory_order_relaxed);
    head = atomic_load_explicit(&rg->head, memory_order_acquire);
    while (tail != head && n < SWIT__EXPORT_BATCH)
      out[n++] = rg->v[tail++ & (rg->cap - 1)];
    atomic_store_explicit(&rg->tail, tail, memory_order_release);
  }
  return n;
}

static void export_batch(swit_host_t *h, size_t n)
{
  swit__tracer *t = h->tracer;
  char why[300] = "out of memory";
  int ok, fd = connect_to(t);   /* first: a dead endpoint costs no JSON */

  t->body->len = 0;                           /* the buffer is reused */
  if (fd < 0) {
    snprintf(why, sizeof why, "cannot connect to %s:%s", t->host, t->port);
    ok = 0;
  } else if (swit__otlp_json(h, t->batch, n, t->body) != 0) {
    close(fd);
    ok = 0;
  } else {
    ok = post(t, fd, t->body, why, sizeof why) == 0;
  }
  atomic_store_explicit(ok ? &t->exported : &t->failed,
                        atomic_load_explicit(ok ? &t->exported : &t->failed,
                                             memory_order_relaxed) + n,
                        memory_order_relaxed);
  if (!ok && !t->failing)
    swit__log(&h->log, SWIT_LOG_WARN, "tracing: cannot export spans to "
              "http://%s:%s%s (spans are dropped until it works): %s",
              t->host, t->port, t->path, why);
  else if (ok && t->failing)
    swit__log(&h->log, SWIT_LOG_INFO, "tracing: exporting spans again");
  t->failing = !ok;
}

static void drain(swit_host_t *h)
{
  size_t n;
  while ((n = collect(h, h->tracer->batch)) > 0) export_batch(h, n);
}

static void *exporter_main(void *arg)
{
  swit_host_t *h = arg;
  swit__tracer *t = h->tracer;

  pthread_mutex_lock(&t->lock);
  while (!t->stop) {
    swit__deadline until = swit__deadline_in(t->interval_ms);
    while (!t->stop && !t->kicked &&
           swit__cond_wait_until(&t->cv, &t->lock, until) == 0) {}
    t->kicked = 0;
    pthread_mutex_unlock(&t->lock);
    atomic_store_explicit(&t->kick_pending, 0, memory_order_relaxed);
    drain(h);
    pthread_mutex_lock(&t->lock);
  }
  pthread_mutex_unlock(&t->lock);
  drain(h);                           /* the workers have stopped */
  return NULL;
}
