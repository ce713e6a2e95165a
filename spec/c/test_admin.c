/*
 * test_admin.c - the admin server and the HTTP ingress against a running
 * host on the memory broker: metrics after a known workload (counts match,
 * promtool accepts the exposition when installed), health flipping with
 * the connection state and with a worker stuck in a handler, token auth,
 * pause/resume, reload answers, ingress round trip and error codes,
 * malformed and oversized requests. Both servers listen on port 0; the
 * test reads the bound addresses from the host. Links the objects (it
 * drives the connection state machine through the adapter's env).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "api/api.h"
#include "net/http.h"

static atomic_int handled, slow_done;
/* written by any worker thread, read by main: under last_lock */
static pthread_mutex_t last_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_key[64], last_hdr[64];

static void sleep_ms(long ms)
{
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int on_msg(swit_msg_t *m, void *ud)
{
  size_t len, klen, hlen;
  const char *p = swit_msg_payload(m, &len);
  const char *k = swit_msg_key(m, &klen);
  const char *hv = swit_msg_header(m, "x-foo", &hlen);

  (void)ud;
  if (len == 4 && !memcmp(p, "slow", 4)) {
    sleep_ms(600);
    atomic_store(&slow_done, 1);
  }
  pthread_mutex_lock(&last_lock);
  if (k && klen < sizeof last_key) snprintf(last_key, sizeof last_key, "%.*s",
                                            (int)klen, k);
  if (hv && hlen < sizeof last_hdr) snprintf(last_hdr, sizeof last_hdr, "%.*s",
                                             (int)hlen, hv);
  pthread_mutex_unlock(&last_lock);
  atomic_fetch_add(&handled, 1);
  if (len == 3 && !memcmp(p, "bad", 3)) return SWIT_REJECT;
  return SWIT_ACK;
}

/* ------------------------------------------------------------------ */
/* A tiny HTTP client: send raw bytes, read the whole answer. */

typedef struct resp {
  int status;
  char *body;   /* after the blank line; owned */
  char *raw;
} resp;

static resp http_raw(const char *addr, const char *req, size_t len)
{
  resp r = {0, NULL, NULL};
  struct sockaddr_in sa = {.sin_family = AF_INET};
  char host[64];
  const char *colon = strrchr(addr, ':');
  size_t cap = 1 << 16, n = 0;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ssize_t k;

  snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
  sa.sin_port = htons((uint16_t)atoi(colon + 1));
  inet_pton(AF_INET, host, &sa.sin_addr);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    close(fd);
    return r;
  }
  for (size_t off = 0; off < len; off += (size_t)k)
    if ((k = write(fd, req + off, len - off)) <= 0) break;
  shutdown(fd, SHUT_WR);
  r.raw = malloc(cap);
  while (r.raw && (k = read(fd, r.raw + n, cap - n - 1)) > 0) {
    n += (size_t)k;
    if (cap - n < 1024) r.raw = realloc(r.raw, cap *= 2);
  }
  close(fd);
  if (!r.raw) return r;
  r.raw[n] = '\0';
  sscanf(r.raw, "HTTP/1.%*d %d", &r.status);
  r.body = strstr(r.raw, "\r\n\r\n");
  r.body = r.body ? r.body + 4 : r.raw + n;
  return r;
}

static resp http(const char *addr, const char *method, const char *path,
                 const char *headers, const char *body)
{
  char req[8192];
  int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: t\r\n"
                   "Connection: close\r\nContent-Length: %zu\r\n%s\r\n%s",
                   method, path, body ? strlen(body) : 0,
                   headers ? headers : "", body ? body : "");
  return http_raw(addr, req, (size_t)n);
}

static void resp_free(resp *r)
{
  free(r->raw);
}

static int status_of(const char *addr, const char *method, const char *path,
                     const char *headers)
{
  resp r = http(addr, method, path, headers, NULL);
  int s = r.status;
  resp_free(&r);
  return s;
}

/* The value of the metric line starting with `series ` (-1 if absent). */
static double metric(const char *text, const char *series)
{
  size_t len = strlen(series);
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p)
    if (!strncmp(p, series, len) && p[len] == ' ') return atof(p + len + 1);
  return -1;
}

static int wait_handled(int n)
{
  for (int i = 0; i < 1000 && atomic_load(&handled) < n; i++) sleep_ms(5);
  return atomic_load(&handled) >= n;
}

/* ------------------------------------------------------------------ */

static const char yaml[] =
  "server:\n"
  "  name: adm\n"
  "  version: 2.1.0\n"
  "  admin: {listen: \"127.0.0.1:0\", token: \"t0ken\"}\n"
  "  http: {listen: \"127.0.0.1:0\"}\n"
  "messaging:\n"
  "  broker: {type: memory}\n"
  "  subscribers:\n"
  "    default: {max_attempts: 1}\n"
  "  resources:\n"
  "    subscribers: {worker_pool_size: 2}\n"
  "    memory: {max_message_size: 1KB}\n"
  "lua:\n"
  "  limits: {handler_timeout: 150ms}\n";

static void it_counts_a_known_workload(swit_host_t *h, const char *adm)
{
  static swit_pub_t msgs[1000];
  resp r;

  for (int i = 0; i < 1000; i++) msgs[i] = (swit_pub_t){"k", 1, "x", 1};
  CHECK(swit_host_publish_batch(h, "work", msgs, 1000, NULL, NULL, 0) == 0);
  CHECK(swit_host_publish(h, "work", NULL, 0, "bad", 3, NULL, NULL, NULL, 0)
        == 0);
  CHECK(wait_handled(1001));
  CHECK(swit_host_wait_idle(h, 50, 5000) == 0);
  r = http(adm, "GET", "/metrics", NULL, NULL);
  CHECK(r.status == 200);
  CHECK(metric(r.body, "swit_messages_consumed_total{broker=\"memory\","
               "topic=\"work\",group=\"adm\"}") == 1001);
  CHECK(metric(r.body, "swit_consume_errors_total{broker=\"memory\","
               "topic=\"work\",group=\"adm\"}") == 1);
  CHECK(metric(r.body, "swit_rejected_total{broker=\"memory\","
               "topic=\"work\",group=\"adm\"}") == 1);
  CHECK(metric(r.body, "swit_dead_lettered_total{broker=\"memory\","
               "topic=\"work\",group=\"adm\"}") == 1);
  CHECK(metric(r.body, "swit_messages_published_total{broker=\"memory\","
               "topic=\"work\"}") == 1001);
  CHECK(metric(r.body, "swit_messages_published_total{broker=\"memory\","
               "topic=\"work.dlq\"}") == 1);
  CHECK(metric(r.body, "swit_consume_latency_seconds_count{broker=\"memory\","
               "topic=\"work\",group=\"adm\"}") == 1001);
  CHECK(metric(r.body, "swit_connection_state{broker=\"memory\","
               "state=\"connected\"}") == 1);
  CHECK(metric(r.body, "swit_active_subscribers{broker=\"memory\"}") == 1);
  CHECK(metric(r.body, "swit_build_info{version=\"" SWIT_VERSION_STRING "\","
               "broker=\"memory\",service=\"adm\",service_version="
               "\"2.1.0\"}") == 1);
  /* promtool validates the exposition; a build configured with
   * SWIT_WITH_PROMTOOL=OFF skips it, any other build fails without it */
  if (SWIT_TEST_PROMTOOL) {
    CHECK(system("command -v promtool >/dev/null 2>&1") == 0);
    FILE *p = popen("promtool check metrics >/dev/null 2>&1", "w");
    CHECK(p != NULL);
    if (p) {
      fputs(r.body, p);
      int st = pclose(p);
      CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
  } else {
    printf("admin: configured with SWIT_WITH_PROMTOOL=OFF, exposition not validated\n");
  }
  resp_free(&r);
}

static void it_flips_readiness_with_the_connection(swit_host_t *h,
                                                   const char *adm)
{
  swit_broker_env env;
  resp r;

  swit__conn_env(h, &env);
  CHECK(status_of(adm, "GET", "/readyz", NULL) == 200);
  env.set_state(env.host_ud, SWIT_CONN_RECONNECTING, "test: broker down");
  r = http(adm, "GET", "/readyz", NULL, NULL);
  CHECK(r.status == 503);
  CHECK(strstr(r.body, "\"name\":\"broker_connectivity\",\"status\":\"fail\"")
        != NULL);
  resp_free(&r);
  CHECK(status_of(adm, "GET", "/healthz", NULL) == 200); /* still live */
  env.set_state(env.host_ud, SWIT_CONN_CONNECTED, "test: back");
  CHECK(status_of(adm, "GET", "/readyz", NULL) == 200);
}

static void it_names_a_stuck_worker(swit_host_t *h, const char *adm)
{
  int saw = 0;

  CHECK(swit_host_publish(h, "work", NULL, 0, "slow", 4, NULL, NULL, NULL, 0)
        == 0);
  for (int i = 0; i < 200 && !atomic_load(&slow_done) && !saw; i++) {
    resp r = http(adm, "GET", "/healthz", NULL, NULL);
    if (r.status == 503 && strstr(r.body, "topic 'work', C handler)") &&
        strstr(r.body, "worker "))
      saw = 1;
    resp_free(&r);
    sleep_ms(10);
  }
  CHECK(saw);
  for (int i = 0; i < 200 && !atomic_load(&slow_done); i++) sleep_ms(10);
  sleep_ms(20);
  CHECK(status_of(adm, "GET", "/healthz", NULL) == 200);
  CHECK(swit_host_wait_idle(h, 50, 5000) == 0);
  {
    /* one observation per handled message; the 600 ms message ran alone
     * in its batch: the sum holds it and one observation is over 0.5 s */
    resp r = http(adm, "GET", "/metrics", NULL, NULL);
    const char *l = "{broker=\"memory\",topic=\"work\",group=\"adm\"";
    char s[160];
    double consumed, count;

    snprintf(s, sizeof s, "swit_messages_consumed_total%s}", l);
    consumed = metric(r.body, s);
    snprintf(s, sizeof s, "swit_handler_duration_seconds_count%s}", l);
    count = metric(r.body, s);
    CHECK(consumed > 1001 && count == consumed);
    snprintf(s, sizeof s, "swit_handler_duration_seconds_sum%s}", l);
    CHECK(metric(r.body, s) >= 0.6);
    snprintf(s, sizeof s, "swit_handler_duration_seconds_bucket%s,le=\"0.5\"}",
             l);
    CHECK(metric(r.body, s) == count - 1);
    resp_free(&r);
  }
}

static void it_requires_the_token(const char *adm)
{
  resp r;

  CHECK(status_of(adm, "POST", "/admin/reload", NULL) == 401);
  CHECK(status_of(adm, "POST", "/admin/reload",
                  "Authorization: Bearer t0ke\r\n") == 401);
  CHECK(status_of(adm, "POST", "/admin/reload",
                  "Authorization: Bearer t0kenX\r\n") == 401);
  CHECK(status_of(adm, "POST", "/admin/subscriptions/work/pause", NULL) == 401);
  r = http(adm, "POST", "/admin/reload", "Authorization: Bearer t0ken\r\n",
           NULL);
  CHECK(r.status == 409);                     /* no Lua scripts to reload */
  CHECK(strstr(r.body, "\"ok\":false") && strstr(r.body, "no Lua scripts"));
  resp_free(&r);
  CHECK(status_of(adm, "GET", "/admin/reload", NULL) == 405);
  CHECK(status_of(adm, "POST", "/metrics", NULL) == 405);
  CHECK(status_of(adm, "GET", "/nope", NULL) == 404);
}

static void it_pauses_and_resumes(swit_host_t *h, const char *adm)
{
  const char *auth = "Authorization: Bearer t0ken\r\n";
  int before;
  resp r;

  CHECK(status_of(adm, "POST", "/admin/subscriptions/nosuch/pause", auth)
        == 404);
  CHECK(status_of(adm, "POST", "/admin/subscriptions/work/pause", auth)
        == 200);
  r = http(adm, "GET", "/admin/status", NULL, NULL);
  CHECK(strstr(r.body, "\"state\":\"paused\",\"paused_by_operator\":true"));
  CHECK(strstr(r.body, "\"service\":\"adm\",\"service_version\":\"2.1.0\","));
  resp_free(&r);
  before = atomic_load(&handled);
  CHECK(swit_host_publish(h, "work", NULL, 0, "p", 1, NULL, NULL, NULL, 0)
        == 0);
  sleep_ms(100);
  CHECK(atomic_load(&handled) == before);     /* held at the broker */
  CHECK(status_of(adm, "POST", "/admin/subscriptions/work/resume?group=adm",
                  auth) == 200);
  CHECK(wait_handled(before + 1));
}

static void it_publishes_through_the_ingress(swit_host_t *h, const char *ing)
{
  char big[2048];
  int before = atomic_load(&handled);
  resp r = http(ing, "POST", "/v1/publish/work",
                "Swit-Key: key-1\r\nSwit-Header-X-Foo: bar\r\n", "hello");

  CHECK(r.status == 202);
  CHECK(strstr(r.body, "\"confirm_id\":") != NULL);
  resp_free(&r);
  CHECK(wait_handled(before + 1));
  pthread_mutex_lock(&last_lock);
  CHECK(!strcmp(last_key, "key-1"));
  CHECK(!strcmp(last_hdr, "bar"));
  pthread_mutex_unlock(&last_lock);
  CHECK(status_of(ing, "GET", "/v1/publish/work", NULL) == 405);
  CHECK(status_of(ing, "POST", "/v1/publish/", NULL) == 400);
  CHECK(status_of(ing, "POST", "/v1/publish/a%20b", NULL) == 400);
  CHECK(status_of(ing, "POST", "/elsewhere", NULL) == 404);
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  r = http(ing, "POST", "/v1/publish/work", NULL, big);   /* over 1KB */
  CHECK(r.status == 413);
  resp_free(&r);
  r = http(ing, "POST", "/v1/publish/work", "Swit-Key: k\r\n", "12345");
  CHECK(r.status == 202);
  resp_free(&r);
  atomic_store(&h->connected, 0);             /* the broker went away */
  r = http(ing, "POST", "/v1/publish/work", NULL, "x");
  CHECK(r.status == 503);
  CHECK(strstr(r.body, "\"ok\":false,\"error\":") != NULL);
  resp_free(&r);
  atomic_store(&h->connected, 1);
}

static void it_survives_malformed_requests(const char *adm, const char *ing)
{
  static const char *const junk[] = {
    "GARBAGE\r\n\r\n",
    "GET /healthz HTTP/9.9\r\n\r\n",
    "POST /v1/publish/work HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    "POST /v1/publish/work HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\nx",
    "\x01\x02\x03\xff\r\n\r\n",
  };
  char hdr[40000];

  for (size_t i = 0; i < sizeof junk / sizeof *junk; i++) {
    resp a = http_raw(adm, junk[i], strlen(junk[i]));
    resp b = http_raw(ing, junk[i], strlen(junk[i]));
    CHECK(a.status != 200 && b.status != 202);
    resp_free(&a);
    resp_free(&b);
  }
  memset(hdr, 'a', sizeof hdr);
  memcpy(hdr, "GET /healthz HTTP/1.1\r\nX: ", 26);
  memcpy(hdr + sizeof hdr - 4, "\r\n\r\n", 4);
  {
    resp a = http_raw(adm, hdr, sizeof hdr);  /* headers over 16 KB */
    CHECK(a.status != 200);
    resp_free(&a);
  }
  CHECK(status_of(adm, "GET", "/healthz", NULL) == 200);
  CHECK(status_of(ing, "POST", "/v1/publish/work", NULL) == 202);
}

/* An error body is {"ok":false,"error":"..."}: JSON, never libevent's
 * HTML page. */
static int json_error(const resp *r)
{
  return r->raw && strstr(r->raw, "Content-Type: application/json") &&
         !strncmp(r->body, "{\"ok\":false,\"error\":\"", 20) &&
         strstr(r->body, "\"}");
}

static void it_refuses_oversized_bodies_in_json(const char *adm,
                                                const char *ing)
{
  static const char huge[] = "POST /v1/publish/work HTTP/1.1\r\nHost: t\r\n"
                             "Content-Length: 99999999999\r\n\r\nxyz";
  static const char huge_adm[] = "POST /admin/reload HTTP/1.1\r\nHost: t\r\n"
                                 "Content-Length: 1000000\r\n\r\n";
  char chunked[4096];
  size_t n = (size_t)snprintf(chunked, sizeof chunked, "POST /v1/publish/work "
                              "HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: "
                              "chunked\r\n\r\n");
  resp r;

  r = http_raw(ing, huge, sizeof huge - 1);       /* Content-Length */
  CHECK(r.status == 413);
  CHECK(json_error(&r));
  CHECK(strstr(r.body, "over the limit of 1024 bytes") != NULL);
  resp_free(&r);
  for (int i = 0; i < 3; i++) {                   /* 3 x 500 bytes, chunked */
    n += (size_t)snprintf(chunked + n, sizeof chunked - n, "1f4\r\n");
    memset(chunked + n, 'c', 500);
    n += 500;
    n += (size_t)snprintf(chunked + n, sizeof chunked - n, "\r\n");
  }
  n += (size_t)snprintf(chunked + n, sizeof chunked - n, "0\r\n\r\n");
  r = http_raw(ing, chunked, n);
  CHECK(r.status == 413);
  CHECK(json_error(&r));
  resp_free(&r);
  r = http_raw(adm, huge_adm, sizeof huge_adm - 1);
  CHECK(r.status == 413);
  CHECK(json_error(&r));
  resp_free(&r);
  r = http_raw(adm, "GET /healthz HTPT/1.1\r\n\r\n", 25); /* malformed */
  CHECK(r.status == 400);
  CHECK(json_error(&r));
  resp_free(&r);
  r = http_raw(adm, "GET /healthz HTTP/9.9\r\n\r\n", 25); /* RFC 9110 */
  CHECK(r.status == 505);
  CHECK(json_error(&r));
  resp_free(&r);
  r = http(ing, "PATCH", "/v1/publish/work", NULL, "x");
  CHECK(r.status == 405);
  CHECK(json_error(&r));
  resp_free(&r);
  CHECK(status_of(adm, "GET", "/healthz", NULL) == 200);   /* still up */
  CHECK(status_of(ing, "POST", "/v1/publish/work", NULL) == 202);
}

/* Two hosts in one process, each with its own ingress, published to at
 * once from two threads with header names of their own: every message
 * reaches its host with its own header (no buffer is shared between the
 * ingress servers; issue 11, item 6). */
static _Atomic int twin_ok[2], twin_bad;

static int on_twin(swit_msg_t *m, void *ud)
{
  const char *want = ud, *other = want[0] == 'a' ? "b-side" : "a-side";
  size_t len;
  const char *v = swit_msg_header(m, want, &len);

  if (v && len == 3 && !memcmp(v, want, 1) &&
      !swit_msg_header(m, other, &len))
    atomic_fetch_add(&twin_ok[want[0] == 'b'], 1);
  else
    atomic_fetch_add(&twin_bad, 1);
  return SWIT_ACK;
}

typedef struct twin_arg { const char *ing, *side; int ok; } twin_arg;

static void *twin_post(void *arg)
{
  twin_arg *a = arg;
  char hdr[96];

  snprintf(hdr, sizeof hdr, "Swit-Header-%s: %c%c%c\r\n", a->side,
           a->side[0], a->side[0], a->side[0]);
  for (int i = 0; i < 200; i++) {
    resp r = http(a->ing, "POST", "/v1/publish/twin", hdr, "x");
    a->ok += r.status == 202;
    resp_free(&r);
  }
  return NULL;
}

static void never_called(swit__http_req *req, void *ud)
{
  (void)ud;
  swit__http_json_error(req, 500, "no request was sent");
}

/* A server stopped right after it started: the stop came before the
 * server thread had entered its loop, event_base_loopbreak was lost
 * (event_base_loop clears it as it starts) and the join hung for good
 * (found by spec/fuzz/fuzz_http.c, which halts both servers at once). */
static void it_stops_a_server_just_started(void)
{
  const swit__logger quiet = {.level = SWIT_LOG_ERROR};
  const swit__http_opts opts = {.what = "quick", .max_body = 16,
                                .max_conns = 1};
  char err[256];
  int stopped = 0;

  for (int i = 0; i < 200; i++) {
    swit__http *s = NULL;
    if (swit__http_start(&s, "127.0.0.1:0", &opts, never_called, NULL,
                         &quiet, err, sizeof err) != 0) {
      fprintf(stderr, "admin: %s\n", err);
      break;
    }
    swit__http_halt(s);            /* hung here */
    swit__http_stop(s);
    stopped++;
  }
  CHECK(stopped == 200);
}

static void it_serves_two_hosts_in_one_process(void)
{
  static const char twin_yaml[] =
    "server:\n"
    "  name: twin\n"
    "  admin: {listen: off}\n"
    "  http: {listen: \"127.0.0.1:0\"}\n"
    "messaging:\n"
    "  broker: {type: memory}\n"
    "  resources:\n"
    "    subscribers: {worker_pool_size: 1}\n";
  static const char *const sides[2] = { "a-side", "b-side" };
  swit_host_t *hs[2] = {NULL, NULL};
  twin_arg args[2];
  pthread_t th[2];
  char err[512];

  for (int i = 0; i < 2; i++) {
    CHECK(swit_host_new_from_string(&hs[i], twin_yaml, NULL, err, sizeof err)
          == 0);
    CHECK(swit_host_handle(hs[i], "twin", NULL, SWIT_ORDER_NONE, on_twin,
                           (void *)sides[i], err, sizeof err) == 0);
    CHECK(swit_host_start(hs[i], err, sizeof err) == 0);
    args[i] = (twin_arg){swit__http_addr(hs[i]->obs->ingress), sides[i], 0};
  }
  for (int i = 0; i < 2; i++)
    CHECK(pthread_create(&th[i], NULL, twin_post, &args[i]) == 0);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < 2; i++) {
    CHECK(args[i].ok == 200);
    CHECK(swit_host_wait_idle(hs[i], 50, 5000) == 0);
  }
  CHECK(atomic_load(&twin_ok[0]) == 200 && atomic_load(&twin_ok[1]) == 200);
  CHECK(atomic_load(&twin_bad) == 0);
  for (int i = 0; i < 2; i++) {
    CHECK(swit_host_stop(hs[i], 5000) == 0);
    swit_host_free(hs[i]);
  }
}

int main(void)
{
  swit_host_t *h = NULL;
  char err[512], adm[80], ing[80];

  if (swit_host_new_from_string(&h, yaml, NULL, err, sizeof err) != 0 ||
      swit_host_handle(h, "work", NULL, SWIT_ORDER_NONE, on_msg, NULL, err,
                       sizeof err) != 0 ||
      swit_host_start(h, err, sizeof err) != 0) {
    fprintf(stderr, "admin: cannot start: %s\n", err);
    return 1;
  }
  snprintf(adm, sizeof adm, "%s", swit__http_addr(h->obs->admin));
  snprintf(ing, sizeof ing, "%s", swit__http_addr(h->obs->ingress));
  CHECK(adm[0] && ing[0]);
  it_counts_a_known_workload(h, adm);
  it_flips_readiness_with_the_connection(h, adm);
  it_names_a_stuck_worker(h, adm);
  it_requires_the_token(adm);
  it_pauses_and_resumes(h, adm);
  it_publishes_through_the_ingress(h, ing);
  it_survives_malformed_requests(adm, ing);
  it_refuses_oversized_bodies_in_json(adm, ing);
  it_serves_two_hosts_in_one_process();
  it_stops_a_server_just_started();
  CHECK(swit_host_stop(h, 5000) == 0);
  CHECK(status_of(adm, "GET", "/readyz", NULL) == 503);  /* stopped */
  swit_host_free(h);
  return check_done("admin");
}
