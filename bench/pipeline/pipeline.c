/*
 * pipeline.c - messages/s through swit on the embedded memory broker.
 *
 * For each case a fresh host is started with one handler on topic
 * "bench"; the main thread publishes N messages with
 * swit_host_publish_batch (256 per call) while the workers consume; the
 * time runs from the first publish until the host is idle (minus the
 * idle window). Cases: (a) trivial Lua handler, (b) the same as a C
 * handler, (c) a Lua handler decoding a ~200-byte JSON payload, and a
 * CPU-bound Lua handler; each with 1 and 2 workers. Prints messages/s and
 * the Lua/C and 2-worker/1-worker ratios. Each figure is the median of
 * --repeat runs (2 cores shared by producer, delivery and worker threads
 * make single runs noisy); the spread is printed beside it. Figures are
 * not asserted, but every run is checked: the handlers count what they
 * saw (each Lua state and each C worker thread in a slot of its own,
 * read after the run), and a run where that is not exactly N, or that
 * failed to publish or drain, makes the program exit 1 (so the smoke
 * run in ctest fails) and is never part of a median.
 *
 *
 * --tracing RATIO (1.0, 0.01, ...) turns messaging.tracing on with that
 * sampling ratio, exporting to an OTLP receiver thread inside the bench
 * (it reads each POST and answers 200, so the exporter does its whole
 * job: JSON and HTTP), then runs the same cases with tracing off and
 * prints each case's traced/off throughput ratio. With --otlp closed
 * the endpoint is a closed local port instead: every export fails at
 * connect and its spans are dropped (counted), which leaves out the JSON,
 * the HTTP and the receiver's own CPU time (on a 2-core machine the
 * receiver thread competes with the workers).
 *
 *   bench_pipeline [--messages N] [--case a|b|c|d] [--workers 1|2]
 *                  [--repeat R] [--metrics on|off] [--tracing off|RATIO]
 *                  [--otlp receiver|closed]
 *   (default: 4,000,000 messages, every case, 1 and 2 workers, 5 runs)
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

#include <swit/swit.h>
#include "../bench_util.h"

#ifndef BENCH_DIR
#define BENCH_DIR "."
#endif

#define IDLE_MS 20

/* --metrics on|off: server.metrics.enabled (the admin server stays off) */
static const char *metrics = "true";
/* --tracing off|RATIO: messaging.tracing, exported to otlp_port */
static const char *tracing = NULL;
static int otlp_port, otlp_closed;
#define CHUNK 256

/* ------------------------------------------------------------------ */
/* The OTLP receiver: read a request (headers, Content-Length bytes of
 * body), answer 200, close. */

static void serve_one(int fd)
{
  static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
                           "Connection: close\r\n\r\n";
  char head[4096], body[1 << 16];
  size_t n = 0, need = 0;
  char *end = NULL, *cl;
  ssize_t k;

  while (!end && n < sizeof head - 1 &&
         (k = read(fd, head + n, sizeof head - 1 - n)) > 0) {
    n += (size_t)k;
    head[n] = '\0';
    end = strstr(head, "\r\n\r\n");
  }
  if (end) {
    cl = strcasestr(head, "content-length:");
    need = cl ? strtoul(cl + 15, NULL, 10) : 0;
    n -= (size_t)(end + 4 - head);          /* body bytes already read */
    while (n < need && (k = read(fd, body, sizeof body)) > 0) n += (size_t)k;
  }
  if (write(fd, ok, sizeof ok - 1) < 0) { /* the exporter sees no answer */ }
  close(fd);
}

static void *otlp_receiver(void *arg)
{
  int lfd = (int)(intptr_t)arg, fd;
  while ((fd = accept(lfd, NULL, NULL)) >= 0) serve_one(fd);
  return NULL;
}

static int start_receiver(void)
{
  struct sockaddr_in sa = {.sin_family = AF_INET};
  socklen_t sl = sizeof sa;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  pthread_t t;

  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
      (!otlp_closed && listen(fd, 64) != 0) ||
      getsockname(fd, (struct sockaddr *)&sa, &sl) != 0)
    return -1;
  otlp_port = ntohs(sa.sin_port);
  if (otlp_closed) return close(fd);      /* --otlp closed: nobody listens */
  return pthread_create(&t, NULL, otlp_receiver, (void *)(intptr_t)fd) ? -1
         : pthread_detach(t);
}

static const char order_json[] =
  "{\"id\":\"order-12345\",\"customer\":\"customer-42\",\"currency\":\"EUR\","
  "\"items\":[{\"sku\":\"A-1\",\"qty\":2,\"price\":9.5},"
  "{\"sku\":\"B-7\",\"qty\":1,\"price\":120.0}],"
  "\"note\":\"leave at the front door\",\"priority\":false}";

/* What the handlers saw: one cache line per Lua state or C worker
 * thread, so counting costs a plain increment. The Lua handlers take
 * their slot once, when the script loads (bench_pipeline_slot through
 * ffi.C: the program exports it). */
#define SLOTS 64
static struct { long n; char pad[56]; } seen_slot[SLOTS];
static atomic_int slots_used;

long *bench_pipeline_slot(void);
long *bench_pipeline_slot(void)
{
  int i = atomic_fetch_add(&slots_used, 1);
  if (i >= SLOTS) {
    fprintf(stderr, "bench: more than %d handler states\n", SLOTS);
    abort();
  }
  return &seen_slot[i].n;
}

static long seen_total(void)
{
  long sum = 0;
  for (int i = 0; i < atomic_load(&slots_used) && i < SLOTS; i++)
    sum += seen_slot[i].n;
  return sum;
}

static _Thread_local long *c_seen;

static int c_trivial(swit_msg_t *m, void *ud)
{
  (void)m, (void)ud;
  if (!c_seen) c_seen = bench_pipeline_slot();
  (*c_seen)++;
  return SWIT_ACK;
}

/* Runs one case; returns messages/s, or -1 on error. */
static double run_case(const char *script, int workers, const char *payload,
                       long n)
{
  static swit_pub_t batch[CHUNK];
  char yaml[1024], err[512], tr[256] = "";
  swit_host_t *h = NULL;
  double t0, t1;
  int rc;

  if (tracing)
    snprintf(tr, sizeof tr, "  tracing: {enabled: true, sampling_ratio: %s, "
             "otlp_endpoint: \"http://127.0.0.1:%d/v1/traces\"}\n", tracing,
             otlp_port);
  snprintf(yaml, sizeof yaml,
           "server: {name: bench, admin: {listen: \"off\"}, "
           "metrics: {enabled: %s}}\n"
           "messaging:\n%s"
           "  broker: {type: memory, config: {queue_size: 65536}}\n"
           "  resources:\n"
           "    subscribers: {worker_pool_size: %d, max_in_flight: %d}\n"
           "lua:\n"
           "  batch_size: 256\n"
           "  scripts: [%s]\n",
           metrics, tr, workers, 16384 * workers, script ? script : "");
  if (!script) *strstr(yaml, "  scripts: [") = '\0';
  memset(seen_slot, 0, sizeof seen_slot);
  atomic_store(&slots_used, 0);
  rc = swit_host_new_from_string(&h, yaml, BENCH_DIR, err, sizeof err);
  if (rc == 0 && !script)
    rc = swit_host_handle(h, "bench", NULL, SWIT_ORDER_NONE, c_trivial, NULL,
                          err, sizeof err);
  if (rc == 0) rc = swit_host_start(h, err, sizeof err);
  if (rc == 0) rc = swit_host_wait_idle(h, IDLE_MS, 10000);
  for (int i = 0; i < CHUNK; i++)
    batch[i] = (swit_pub_t){NULL, 0, payload, strlen(payload)};
  t0 = now_s();
  for (long sent = 0; rc == 0 && sent < n; sent += CHUNK)
    rc = swit_host_publish_batch(h, "bench", batch,
                                 n - sent < CHUNK ? (size_t)(n - sent) : CHUNK,
                                 NULL, err, sizeof err);
  if (rc == 0) rc = swit_host_wait_idle(h, IDLE_MS, 600000);
  t1 = now_s() - IDLE_MS / 1000.0;
  if (rc != 0) fprintf(stderr, "bench: %s (%s)\n", err, swit_strerror(rc));
  swit_host_free(h);   /* workers joined: their counts are final */
  if (rc == 0 && seen_total() != n) {
    fprintf(stderr, "bench: FAILED run: %ld messages published, the handlers "
            "saw %ld\n", n, seen_total());
    return -1;
  }
  return rc == 0 ? (double)n / (t1 - t0) : -1;
}

static const char *const scripts[4] = {"trivial.lua", NULL, "json.lua",
                                        "cpu.lua"};
static const char *const names[4] = {
  "(a) trivial Lua handler", "(b) trivial C handler",
  "(c) Lua handler, msg:json() ~200 B", "(d) CPU-bound Lua handler"};

/* Median of `repeat` runs of case c; min and max to *lo and *hi. With
 * tracing on, each run alternates with one with tracing off (so both see
 * the same machine load), whose median goes to *off. */
static double run_named(int c, int workers, long n, int repeat, double *lo,
                        double *hi, double *off)
{
  double v[repeat], u[repeat];
  const char *traced = tracing;

  for (int i = 0; i < repeat; i++) {
    /* the JSON and CPU-bound cases are slower: a quarter of the messages */
    v[i] = run_case(scripts[c], workers, c == 2 ? order_json : "x",
                    c >= 2 ? n / 4 : n);
    if (v[i] < 0) return -1;
    if (!traced) continue;
    tracing = NULL;
    u[i] = run_case(scripts[c], workers, c == 2 ? order_json : "x",
                    c >= 2 ? n / 4 : n);
    tracing = traced;
    if (u[i] < 0) return -1;
  }
  qsort(v, (size_t)repeat, sizeof *v, cmp_double);
  if (traced) {
    qsort(u, (size_t)repeat, sizeof *u, cmp_double);
    *off = u[repeat / 2];
  }
  *lo = v[0];
  *hi = v[repeat - 1];
  return v[repeat / 2];
}

int main(int argc, char **argv)
{
  long n = 4000000;
  int only = -1, wmin = 1, wmax = 2, repeat = 5;
  double r[4][2], lo[4][2], hi[4][2], off[4][2];

  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--messages") == 0) n = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--case") == 0) only = argv[i + 1][0] - 'a';
    else if (strcmp(argv[i], "--workers") == 0) wmin = wmax = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--repeat") == 0) repeat = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--metrics") == 0)
      metrics = strcmp(argv[i + 1], "off") ? "true" : "false";
    else if (strcmp(argv[i], "--tracing") == 0)
      tracing = strcmp(argv[i + 1], "off") ? argv[i + 1] : NULL;
    else if (strcmp(argv[i], "--otlp") == 0)
      otlp_closed = strcmp(argv[i + 1], "closed") == 0;
    else n = -1;
  }
  if (n <= 0 || (argc % 2) == 0 || only < -1 || only > 3 || wmin < 1 ||
      wmax > 2 || repeat < 1) {
    fprintf(stderr, "usage: bench_pipeline [--messages N] [--case a|b|c|d] "
            "[--workers 1|2] [--repeat R] [--metrics on|off] "
            "[--tracing off|RATIO] [--otlp receiver|closed]\n");
    return 2;
  }
  if (tracing && (atof(tracing) < 0 || atof(tracing) > 1 ||
                  start_receiver() != 0)) {
    fprintf(stderr, "bench: --tracing: a ratio in 0..1, and an OTLP "
            "receiver on 127.0.0.1 (could not start one)\n");
    return 2;
  }
  printf("swit pipeline benchmark: memory broker, %ld messages per case "
         "(a quarter for c and d), batch 256, 1 producer thread,\n"
         "median of %d runs [min-max], messages/s; metrics %s; tracing %s%s%s\n",
         n, repeat, strcmp(metrics, "true") ? "off" : "on",
         tracing ? "on, sampling " : "off", tracing ? tracing : "",
         !tracing ? "" : otlp_closed ? ", OTLP endpoint a closed port"
                                     : ", OTLP receiver thread in the bench");
  printf("json payload: %zu bytes\n\n", strlen(order_json));
  printf("%-36s %26s %26s %6s\n", "case", "1 worker", "2 workers", "2w/1w");
  for (int c = 0; c < 4; c++) {
    char col[2][64];
    if (only >= 0 && c != only) continue;
    for (int w = 1; w <= 2; w++) {
      int on = w >= wmin && w <= wmax;
      r[c][w - 1] = on ? run_named(c, w, n, repeat, &lo[c][w - 1],
                                   &hi[c][w - 1], &off[c][w - 1]) : 0;
      if (r[c][w - 1] < 0) return 1;
      if (on)
        snprintf(col[w - 1], sizeof col[0], "%.2fM [%.2f-%.2f]",
                 r[c][w - 1] / 1e6, lo[c][w - 1] / 1e6, hi[c][w - 1] / 1e6);
      else
        snprintf(col[w - 1], sizeof col[0], "-");
    }
    printf("%-36s %26s %26s %5.2fx\n", names[c], col[0], col[1],
           r[c][0] > 0 ? r[c][1] / r[c][0] : 0);
  }
  if (only < 0)
    printf("\nLua/C ratio (trivial handler): 1 worker %.2f, 2 workers %.2f\n",
           r[0][0] / r[1][0], r[0][1] / r[1][1]);
  if (!tracing) return 0;
  printf("\ntracing %s vs off, runs alternated (traced/off messages/s; "
         "off median in brackets):\n", tracing);
  for (int c = 0; c < 4; c++) {
    if (only >= 0 && c != only) continue;
    printf("%-36s", names[c]);
    for (int w = wmin; w <= wmax; w++)
      printf("   %dw %.3f [%.2fM]", w, r[c][w - 1] / off[c][w - 1],
             off[c][w - 1] / 1e6);
    printf("\n");
  }
  return 0;
}
