/*
 * pipeline.c - messages/s through swit on the embedded memory broker.
 *
 * For each case a fresh host is started with one handler on topic
 * "bench"; a producer thread publishes N messages with
 * swit_host_publish_batch (256 per call) while the workers consume; the
 * time runs from the first publish until the host is idle (minus the
 * idle window). Cases: (a) trivial Lua handler, (b) the same as a C
 * handler, (c) a Lua handler decoding a ~200-byte JSON payload, and a
 * CPU-bound Lua handler; each with 1 and 2 workers. Prints messages/s and
 * the Lua/C and 2-worker/1-worker ratios. Figures only; nothing asserted.
 *
 *   bench_pipeline [--messages N] [--case a|b|c|d] [--workers 1|2]
 *   (default: 4,000,000 messages, every case, 1 and 2 workers)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <swit/swit.h>

#ifndef BENCH_DIR
#define BENCH_DIR "."
#endif

#define IDLE_MS 20
#define CHUNK 256

static const char order_json[] =
  "{\"id\":\"order-12345\",\"customer\":\"customer-42\",\"currency\":\"EUR\","
  "\"items\":[{\"sku\":\"A-1\",\"qty\":2,\"price\":9.5},"
  "{\"sku\":\"B-7\",\"qty\":1,\"price\":120.0}],"
  "\"note\":\"leave at the front door\",\"priority\":false}";

static _Thread_local long c_seen;

static int c_trivial(swit_msg_t *m, void *ud)
{
  (void)m, (void)ud;
  c_seen++;
  return SWIT_ACK;
}

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs one case; returns messages/s, or -1 on error. */
static double run_case(const char *script, int workers, const char *payload,
                       long n)
{
  static swit_pub_t batch[CHUNK];
  char yaml[1024], err[512];
  swit_host_t *h = NULL;
  double t0, t1;
  int rc;

  snprintf(yaml, sizeof yaml,
           "server: {name: bench}\n"
           "messaging:\n"
           "  broker: {type: memory, config: {queue_size: 65536}}\n"
           "  resources:\n"
           "    subscribers: {worker_pool_size: %d, max_in_flight: %d}\n"
           "lua:\n"
           "  batch_size: 256\n"
           "  scripts: [%s]\n",
           workers, 16384 * workers, script ? script : "");
  if (!script) *strstr(yaml, "  scripts: [") = '\0';
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
  swit_host_free(h);
  return rc == 0 ? (double)n / (t1 - t0) : -1;
}

static const char *const scripts[4] = {"trivial.lua", NULL, "json.lua",
                                        "cpu.lua"};
static const char *const names[4] = {
  "(a) trivial Lua handler", "(b) trivial C handler",
  "(c) Lua handler, msg:json() ~200 B", "(d) CPU-bound Lua handler"};

static double run_named(int c, int workers, long n)
{
  /* the JSON and CPU-bound cases are slower: a quarter of the messages */
  return run_case(scripts[c], workers, c == 2 ? order_json : "x",
                  c >= 2 ? n / 4 : n);
}

int main(int argc, char **argv)
{
  long n = 4000000;
  int only = -1, wmin = 1, wmax = 2;
  double r[4][2];

  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--messages") == 0) n = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--case") == 0) only = argv[i + 1][0] - 'a';
    else if (strcmp(argv[i], "--workers") == 0) wmin = wmax = atoi(argv[i + 1]);
    else n = -1;
  }
  if (n <= 0 || (argc % 2) == 0 || only < -1 || only > 3 || wmin < 1 ||
      wmax > 2) {
    fprintf(stderr, "usage: bench_pipeline [--messages N] [--case a|b|c|d] "
            "[--workers 1|2]\n");
    return 2;
  }
  printf("swit pipeline benchmark: memory broker, %ld messages per case "
         "(a quarter for c and d), batch 256, 1 producer thread\n", n);
  printf("json payload: %zu bytes\n\n", strlen(order_json));
  printf("%-38s %14s %14s %8s\n", "case", "1 worker", "2 workers", "2w/1w");
  for (int c = 0; c < 4; c++) {
    if (only >= 0 && c != only) continue;
    for (int w = 1; w <= 2; w++) {
      r[c][w - 1] = w >= wmin && w <= wmax ? run_named(c, w, n) : 0;
      if (r[c][w - 1] < 0) return 1;
    }
    printf("%-38s %12.0f/s %12.0f/s %7.2fx\n", names[c], r[c][0], r[c][1],
           r[c][0] > 0 ? r[c][1] / r[c][0] : 0);
  }
  if (only < 0)
    printf("\nLua/C ratio (trivial handler): 1 worker %.2f, 2 workers %.2f\n",
           r[0][0] / r[1][0], r[0][1] / r[1][1]);
  return 0;
}
