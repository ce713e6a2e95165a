/*
 * test_trace.c - W3C trace propagation and OTLP export against a small
 * OTLP/HTTP receiver (a libevent evhttp server on its own thread, port 0)
 * and a host on the memory broker:
 *   - a two-hop flow (on_start publishes A; A's Lua handler publishes B;
 *     B's C handler records what it got): B's span is a child of A's in
 *     A's trace, msg:trace_id() is the exported traceId, an incoming
 *     traceparent (and tracestate) is continued, an incoming unsampled
 *     flag is followed, a dead-letter copy is a child of the failed span;
 *   - sampling 0: no span, but B still gets a valid traceparent;
 *   - the receiver down: every span dropped and counted, none exported;
 *   - tracing off: msg:trace_id() is the incoming traceparent's, or nil;
 *   - a tracestate that is not printable ASCII (<= 512 bytes) is dropped.
 * Links the objects (reads the metrics through swit__metrics_render).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>

#include "check.h"
#include "obs/obs.h"

static void sleep_ms(long ms)
{
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------ */
/* The OTLP receiver: keeps every span of every POST /v1/traces */

typedef struct span {
  char trace[33], id[17], parent[17], name[64], state[64];
  int status;
} span;

static pthread_mutex_t rx_lock = PTHREAD_MUTEX_INITIALIZER;
static span spans[4096];
static int nspans, nposts, bad_posts;

/* The string value after `key` at or after p, up to `end`. */
static int field(const char *p, const char *end, const char *key, char *out,
                 size_t cap)
{
  const char *k = strstr(p, key), *q;
  size_t n;

  out[0] = '\0';
  if (!k || k > end) return -1;
  k += strlen(key);
  q = strchr(k, '"');
  if (!q) return -1;
  n = (size_t)(q - k) < cap - 1 ? (size_t)(q - k) : cap - 1;
  memcpy(out, k, n);
  out[n] = '\0';
  return 0;
}

static void parse_spans(const char *body)
{
  const char *p = body;

  pthread_mutex_lock(&rx_lock);
  if (!strstr(body, "\"resourceSpans\":[{\"resource\":") ||
      !strstr(body, "\"service.name\"") || !strstr(body, "\"scopeSpans\"")) {
    fprintf(stderr, "trace: not an OTLP body: %.300s\n", body);
    bad_posts++;
  }
  while ((p = strstr(p, "{\"traceId\":\"")) && nspans < 4096) {
    const char *next = strstr(p + 1, "{\"traceId\":\"");
    const char *end = next ? next : p + strlen(p);
    span *s = &spans[nspans++];
    const char *st;

    field(p, end, "\"traceId\":\"", s->trace, sizeof s->trace);
    field(p, end, "\"spanId\":\"", s->id, sizeof s->id);
    field(p, end, "\"parentSpanId\":\"", s->parent, sizeof s->parent);
    field(p, end, "\"name\":\"", s->name, sizeof s->name);
    field(p, end, "\"traceState\":\"", s->state, sizeof s->state);
    st = strstr(p, "\"status\":{\"code\":");
    s->status = st && st < end ? atoi(st + 17) : -1;
    if (!strstr(p, "\"kind\":5") || strstr(p, "\"kind\":5") > end ||
        !strstr(p, "\"startTimeUnixNano\":\"") ||
        !strstr(p, "\"messaging.destination\"")) {
      fprintf(stderr, "trace: a span without kind, time or attributes: "
              "%.300s\n", p);
      bad_posts++;
    }
    p = end;
  }
  nposts++;
  pthread_mutex_unlock(&rx_lock);
}

static void on_request(struct evhttp_request *req, void *ud)
{
  struct evbuffer *in = evhttp_request_get_input_buffer(req);
  size_t len = evbuffer_get_length(in);
  char *body = malloc(len + 1);

  (void)ud;
  evbuffer_remove(in, body, len);
  body[len] = '\0';
  if (evhttp_request_get_command(req) == EVHTTP_REQ_POST &&
      !strcmp(evhttp_request_get_uri(req), "/v1/traces"))
    parse_spans(body);
  else
    fprintf(stderr, "trace: unexpected %s\n", evhttp_request_get_uri(req)),
    bad_posts++;
  free(body);
  evhttp_send_reply(req, 200, "OK", NULL);
}

static struct event_base *rx_base;
static struct evhttp *rx_http;
static pthread_t rx_thread;

static void *rx_loop(void *arg)
{
  (void)arg;
  event_base_loop(rx_base, EVLOOP_NO_EXIT_ON_EMPTY);
  return NULL;
}

static int rx_start(void)
{
  struct evhttp *http;
  struct evhttp_bound_socket *bs;

  struct sockaddr_in sa;
  socklen_t sl = sizeof sa;

  evthread_use_pthreads();
  rx_base = event_base_new();
  http = rx_http = evhttp_new(rx_base);
  evhttp_set_gencb(http, on_request, NULL);
  bs = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
  if (!bs) return -1;
  getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sa, &sl);
  pthread_create(&rx_thread, NULL, rx_loop, NULL);
  return ntohs(sa.sin_port);
}

static void rx_reset(void)
{
  pthread_mutex_lock(&rx_lock);
  nspans = nposts = bad_posts = 0;
  pthread_mutex_unlock(&rx_lock);
}

static const span *span_named(const char *name, const char *trace)
{
  for (int i = 0; i < nspans; i++)
    if (!strcmp(spans[i].name, name) && !strcmp(spans[i].trace, trace))
      return &spans[i];
  return NULL;
}

static int spans_of(const char *trace)
{
  int n = 0;
  for (int i = 0; i < nspans; i++) n += !strcmp(spans[i].trace, trace);
  return n;
}

/* ------------------------------------------------------------------ */
/* What the C handlers on "b" and "r.dlq" saw */

typedef struct seen {
  char payload[32], tp[64], ts[64], atrace[40];
} seen;

static seen got[16];
static atomic_int ngot, ndlq;
static char dlq_tp[64];

static void copy_header(swit_msg_t *m, const char *name, char *out, size_t cap)
{
  size_t len;
  const char *v = swit_msg_header(m, name, &len);
  snprintf(out, cap, "%.*s", v ? (int)len : 0, v ? v : "");
}

static int on_b(swit_msg_t *m, void *ud)
{
  size_t len;
  const char *p = swit_msg_payload(m, &len);
  int i = atomic_fetch_add(&ngot, 1);   /* claim a slot: two workers run this */

  (void)ud;
  if (i < 16) {   /* read only after swit_host_stop, when writers are done */
    snprintf(got[i].payload, sizeof got[i].payload, "%.*s", (int)len, p);
    copy_header(m, "traceparent", got[i].tp, sizeof got[i].tp);
    copy_header(m, "tracestate", got[i].ts, sizeof got[i].ts);
    copy_header(m, "x-a-trace", got[i].atrace, sizeof got[i].atrace);
  }
  return SWIT_ACK;
}

static int on_dlq(swit_msg_t *m, void *ud)
{
  (void)ud;
  copy_header(m, "traceparent", dlq_tp, sizeof dlq_tp);
  atomic_fetch_add(&ndlq, 1);
  return SWIT_ACK;
}

static const seen *got_payload(const char *payload)
{
  for (int i = 0; i < atomic_load(&ngot) && i < 16; i++)
    if (!strcmp(got[i].payload, payload)) return &got[i];
  return NULL;
}

/* ------------------------------------------------------------------ */
/* Hosts */

static char dir[] = "/tmp/swit-test-trace-XXXXXX";

static const char script[] =
  "local swit = require 'swit'\n"
  "swit.on_start(function()\n"
  "  assert(swit.publish('a', 'plain'))\n"
  "  if os.getenv('SWIT_TEST_TRACE_ONLY_PLAIN') then return end\n"
  "  assert(swit.publish('a', 'continued', { headers = {\n"
  "    traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',\n"
  "    tracestate = 'vendor=1' } }))\n"
  "  assert(swit.publish('a', 'unsampled', { headers = {\n"
  "    traceparent = '00-aaaabbbbccccddddeeeeffff00001111-1111222233334444-00' } }))\n"
  "  assert(swit.publish('r', 'bad'))\n"
  "end)\n"
  "swit.on('a', function(msg)\n"
  "  assert(swit.publish('b', msg:payload(),\n"
  "                      { headers = { ['x-a-trace'] = msg:trace_id() } }))\n"
  "end)\n"
  "swit.on('r', function(msg) return swit.reject('refused: ' .. msg:trace_id()) end)\n";

static swit_host_t *start_host(const char *endpoint, const char *ratio,
                               int with_script)
{
  char yaml[2048], err[512];
  swit_host_t *h = NULL;

  snprintf(yaml, sizeof yaml,
           "server: {name: tr, admin: {listen: \"off\"}}\n"
           "messaging:\n"
           "  broker: {type: memory}\n"
           "  subscribers: {default: {max_attempts: 1}}\n"
           "  resources: {subscribers: {worker_pool_size: 2}}\n"
           "  tracing: {enabled: %s, otlp_endpoint: \"%s\", "
           "sampling_ratio: %s, export_interval: 50ms}\n"
           "%s", ratio ? "true" : "false", endpoint, ratio ? ratio : "1",
           with_script ? "lua:\n  scripts: [trace.lua]\n" : "");
  atomic_store(&ngot, 0);
  atomic_store(&ndlq, 0);
  memset(got, 0, sizeof got);
  if (swit_host_new_from_string(&h, yaml, dir, err, sizeof err) != 0 ||
      swit_host_handle(h, "b", NULL, SWIT_ORDER_NONE, on_b, NULL, err,
                       sizeof err) != 0 ||
      swit_host_handle(h, "r.dlq", NULL, SWIT_ORDER_NONE, on_dlq, NULL, err,
                       sizeof err) != 0 ||
      swit_host_start(h, err, sizeof err) != 0) {
    fprintf(stderr, "trace: cannot start: %s\n", err);
    swit_host_free(h);
    return NULL;
  }
  return h;
}

static double metric(swit_host_t *h, const char *series)
{
  swit__buf b = {NULL, 0, 0};
  size_t len = strlen(series);
  double v = -1;

  swit__metrics_render(h, &b);
  for (const char *p = b.data; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p)
    if (!strncmp(p, series, len) && p[len] == ' ') v = atof(p + len + 1);
  free(b.data);
  return v;
}

static void wait_for(atomic_int *v, int n)
{
  for (int i = 0; i < 1000 && atomic_load(v) < n; i++) sleep_ms(5);
}

/* "00-<trace>-<span>-<flags>" pieces */
static int tp_split(const char *tp, char *trace, char *id, char *flags)
{
  if (strlen(tp) != 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-')
    return -1;
  snprintf(trace, 33, "%.32s", tp + 3);
  snprintf(id, 17, "%.16s", tp + 36);
  snprintf(flags, 3, "%.2s", tp + 53);
  return 0;
}

static void it_links_a_two_hop_flow(int port)
{
  char url[128], trace[33], id[17], flags[3];
  const seen *s;
  const span *a, *b, *r;
  swit_host_t *h;

  snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/traces", port);
  rx_reset();
  h = start_host(url, "1.0", 1);
  CHECK(h != NULL);
  if (!h) return;
  wait_for(&ngot, 3);
  wait_for(&ndlq, 1);
  CHECK(swit_host_wait_idle(h, 50, 5000) == 0);
  CHECK(swit_host_stop(h, 5000) == 0); /* flushes the exporter */
  pthread_mutex_lock(&rx_lock);
  CHECK(bad_posts == 0);

  /* a new trace: A is a root, B its child, msg:trace_id() is A's trace */
  s = got_payload("plain");
  CHECK(s != NULL);
  if (s && tp_split(s->tp, trace, id, flags) == 0) {
    a = span_named("a process", s->atrace);
    b = span_named("b process", s->atrace);
    CHECK(strlen(s->atrace) == 32 && !strcmp(trace, s->atrace));
    CHECK(!strcmp(flags, "01"));
    CHECK(a != NULL && b != NULL);
    if (a && b) {
      CHECK(a->parent[0] == '\0');
      CHECK(!strcmp(id, a->id));           /* B's traceparent: A's span */
      CHECK(!strcmp(b->parent, a->id));
      CHECK(strcmp(b->id, a->id) != 0);
      CHECK(a->status == 1 && b->status == 1);
    }
  } else {
    CHECK(!"B of 'plain' has a traceparent");
  }

  /* an incoming traceparent is continued, with its tracestate */
  s = got_payload("continued");
  CHECK(s != NULL);
  a = span_named("a process", "4bf92f3577b34da6a3ce929d0e0e4736");
  b = span_named("b process", "4bf92f3577b34da6a3ce929d0e0e4736");
  CHECK(a != NULL && b != NULL);
  if (s && a && b) {
    CHECK(!strcmp(s->atrace, "4bf92f3577b34da6a3ce929d0e0e4736"));
    CHECK(!strcmp(a->parent, "00f067aa0ba902b7"));
    CHECK(!strcmp(a->state, "vendor=1"));
    CHECK(!strcmp(b->parent, a->id));
    CHECK(!strcmp(s->ts, "vendor=1"));
    CHECK(tp_split(s->tp, trace, id, flags) == 0 && !strcmp(id, a->id));
  }

  /* an incoming unsampled flag is followed: no span, context propagated */
  s = got_payload("unsampled");
  CHECK(s != NULL);
  CHECK(spans_of("aaaabbbbccccddddeeeeffff00001111") == 0);
  if (s && tp_split(s->tp, trace, id, flags) == 0) {
    CHECK(!strcmp(trace, "aaaabbbbccccddddeeeeffff00001111"));
    CHECK(!strcmp(flags, "00"));
    CHECK(strcmp(id, "1111222233334444") != 0 && strcmp(id, "0000000000000000"));
  } else {
    CHECK(!"B of 'unsampled' has a traceparent");
  }

  /* the dead-letter copy is a child of the rejected message's span */
  CHECK(tp_split(dlq_tp, trace, id, flags) == 0);
  r = span_named("r process", trace);
  CHECK(r != NULL);
  if (r) {
    CHECK(!strcmp(r->id, id));
    CHECK(r->status == 2);
    CHECK(span_named("r.dlq process", trace) != NULL);
  }

  /* every span exported and counted: a, b, r, r.dlq (x2 for a and b) */
  CHECK(nspans == 6);
  CHECK(metric(h, "swit_trace_spans_exported_total") == nspans);
  CHECK(metric(h, "swit_trace_spans_dropped_total{reason=\"buffer_full\"}")
        == 0);
  CHECK(metric(h, "swit_trace_spans_dropped_total{reason=\"export_failed\"}")
        == 0);
  pthread_mutex_unlock(&rx_lock);
  swit_host_free(h);
}

static void it_propagates_without_spans_at_sampling_0(int port)
{
  char url[128], trace[33], id[17], flags[3];
  const seen *s;
  swit_host_t *h;

  snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/traces", port);
  rx_reset();
  setenv("SWIT_TEST_TRACE_ONLY_PLAIN", "1", 1);
  h = start_host(url, "0", 1);
  CHECK(h != NULL);
  if (!h) return;
  wait_for(&ngot, 1);
  CHECK(swit_host_wait_idle(h, 50, 5000) == 0);     /* on_start is done */
  unsetenv("SWIT_TEST_TRACE_ONLY_PLAIN");
  CHECK(swit_host_stop(h, 5000) == 0);
  s = got_payload("plain");
  CHECK(s != NULL);
  CHECK(s && tp_split(s->tp, trace, id, flags) == 0);
  if (s) {
    CHECK(!strcmp(trace, s->atrace));
    CHECK(strcmp(trace, "00000000000000000000000000000000") != 0);
    CHECK(!strcmp(flags, "00"));
  }
  pthread_mutex_lock(&rx_lock);
  CHECK(nspans == 0);
  pthread_mutex_unlock(&rx_lock);
  CHECK(metric(h, "swit_trace_spans_exported_total") == 0);
  swit_host_free(h);
}

static int closed_port(void)
{
  struct sockaddr_in sa = {.sin_family = AF_INET};
  socklen_t sl = sizeof sa;
  int fd = socket(AF_INET, SOCK_STREAM, 0), port;

  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, (struct sockaddr *)&sa, sizeof sa);
  getsockname(fd, (struct sockaddr *)&sa, &sl);
  port = ntohs(sa.sin_port);
  close(fd);
  return port;
}

static void it_counts_drops_when_the_receiver_is_down(void)
{
  char url[128];
  swit_host_t *h;

  snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/traces", closed_port());
  h = start_host(url, "1", 0);
  CHECK(h != NULL);
  if (!h) return;
  for (int i = 0; i < 50; i++)
    CHECK(swit_host_publish(h, "b", NULL, 0, "x", 1, NULL, NULL, NULL, 0)
          == 0);
  wait_for(&ngot, 50);
  CHECK(swit_host_wait_idle(h, 50, 5000) == 0);
  CHECK(swit_host_stop(h, 5000) == 0);
  CHECK(metric(h, "swit_trace_spans_exported_total") == 0);
  CHECK(metric(h, "swit_trace_spans_dropped_total{reason=\"export_failed\"}")
        == 50);
  swit_host_free(h);
}

static void it_reads_the_trace_id_with_tracing_off(int port)
{
  char url[128];
  const seen *s;
  swit_host_t *h;

  snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/traces", port);
  rx_reset();
  h = start_host(url, NULL, 1);
  CHECK(h != NULL);
  if (!h) return;
  wait_for(&ngot, 3);
  CHECK(swit_host_wait_idle(h, 50, 5000) == 0);
  CHECK(swit_host_stop(h, 5000) == 0);
  s = got_payload("continued");       /* msg:trace_id() of its traceparent */
  CHECK(s && !strcmp(s->atrace, "4bf92f3577b34da6a3ce929d0e0e4736"));
  CHECK(s && s->tp[0] == '\0');       /* nothing injected */
  s = got_payload("plain");           /* no traceparent: nil */
  CHECK(s && s->atrace[0] == '\0');
  pthread_mutex_lock(&rx_lock);
  CHECK(nspans == 0 && nposts == 0);
  pthread_mutex_unlock(&rx_lock);
  CHECK(metric(h, "swit_trace_spans_exported_total") == 0);
  swit_host_free(h);
}

static void it_rejects_a_bad_endpoint(void)
{
  char err[512];
  swit_host_t *h = NULL;
  int rc = swit_host_new_from_string(&h,
      "messaging:\n  broker: {type: memory}\n"
      "  tracing: {enabled: true, otlp_endpoint: \"https://x:4318\"}\n",
      NULL, err, sizeof err);

  CHECK(rc == SWIT_E_CONFIG);
  CHECK(rc != 0 && strstr(err, "messaging.tracing.otlp_endpoint") != NULL);
  if (rc == 0) swit_host_free(h);
}

/* The incoming context read from headers alone: a tracestate that is not
 * printable ASCII of at most 512 bytes is left out, so a CR or LF in it
 * never reaches the headers of what a handler publishes. */
static void it_keeps_only_a_printable_tracestate(void)
{
  static const char tp[] =
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  char big[SWIT__TRACE_STATE_MAX + 1];
  swit_header hv[2] = {{"TraceParent", tp, 11, sizeof tp - 1},
                       {"tracestate", "a=1,b=2", 10, 7}};
  swit_msg_view v = {.headers = hv, .nheaders = 2};
  swit__trace_ctx c;

  CHECK(swit__trace_from_headers(&v, &c) == 0);
  CHECK(c.hi == 0x0af7651916cd43ddULL && c.lo == 0x8448eb211c80319cULL);
  CHECK(c.parent == 0xb7ad6b7169203331ULL && c.sampled == 1);
  CHECK(c.state == hv[1].value && c.state_len == 7);
  hv[1].value = "a=1\r\nx-swit-forged: 1";
  hv[1].value_len = (uint32_t)strlen(hv[1].value);
  CHECK(swit__trace_from_headers(&v, &c) == 0 && c.state == NULL);
  memset(big, 'a', sizeof big);
  hv[1].value = big;
  hv[1].value_len = sizeof big;
  CHECK(swit__trace_from_headers(&v, &c) == 0 && c.state == NULL);
  hv[1].value_len = sizeof big - 1;
  CHECK(swit__trace_from_headers(&v, &c) == 0 && c.state_len == sizeof big - 1);
  hv[0].value_len--; /* 54 characters: no context, nothing kept */
  CHECK(swit__trace_from_headers(&v, &c) == SWIT_E_NOTFOUND);
  CHECK(c.hi == 0 && c.lo == 0 && c.parent == 0 && c.state == NULL);
}

int main(void)
{
  char path[256];
  FILE *f;
  int port;

  if (!mkdtemp(dir)) return 1;
  snprintf(path, sizeof path, "%s/trace.lua", dir);
  f = fopen(path, "w");
  if (!f) return 1;
  fputs(script, f);
  fclose(f);
  port = rx_start();
  CHECK(port > 0);
  it_links_a_two_hop_flow(port);
  it_propagates_without_spans_at_sampling_0(port);
  it_counts_drops_when_the_receiver_is_down();
  it_reads_the_trace_id_with_tracing_off(port);
  it_rejects_a_bad_endpoint();
  it_keeps_only_a_printable_tracestate();
  remove(path);
  rmdir(dir);
  event_base_loopexit(rx_base, NULL);
  pthread_join(rx_thread, NULL);
  evhttp_free(rx_http);
  event_base_free(rx_base);
  return check_done("trace");
}
