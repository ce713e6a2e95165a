/*
 * reload_bench.c - what a hot reload costs a running pipeline.
 *
 * A Lua handler (a generated script set of ~1,000 lines) republishes
 * every message to a C handler, which records the latency from publish to
 * handling (both hops) and counts messages. The main thread publishes at
 * a steady rate for a few seconds, once without reloads and once with one
 * reload per second (alternating two versions of the script set); it
 * prints messages/s, lost or duplicated messages, latency p50/p99/max,
 * and how long each reload took (validation plus every worker switching).
 *
 *   bench_reload [--seconds S] [--rate MSG_PER_S]   (default 5 s, 50,000/s)
 *
 * Exits 1 when a run lost, duplicated or garbled a message, a publish or
 * reload failed, or the host did not drain: the smoke run in ctest
 * (bench.reload.smoke) then fails.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <swit/swit.h>

static char dir[] = "/tmp/swit-bench-reload-XXXXXX";
static char path[128];

static int64_t now_us(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ~1,000 lines: a handler plus many small helper functions, as a real
 * script set with some library code would have. */
static void write_scripts(int version)
{
  FILE *f = fopen(path, "w");
  fprintf(f, "local swit = require 'swit'\nlocal M = {}\n");
  for (int i = 0; i < 320; i++)
    fprintf(f, "function M.f%d(x)\n  return x + %d * %d\nend\n", i, i, version);
  fprintf(f, "swit.on('in', function(msg)\n"
             "  local ok, err = swit.publish('out', msg:payload(), { key = msg:key() })\n"
             "  if not ok then return swit.retry(err) end\n"
             "end)\n");
  fclose(f);
}

/* ------------------------------------------------------------------ */

typedef struct run {
  atomic_long received, dup_or_bad;
  uint32_t *lat_us;      /* by sequence number */
  uint8_t *seen;
  long n;
} run;

static run R;

static int on_out(swit_msg_t *m, void *ud)
{
  size_t len;
  const char *p = swit_msg_payload(m, &len);
  char text[48];
  long seq;
  long long t0;

  (void)ud;
  if (len >= sizeof text) len = sizeof text - 1;
  memcpy(text, p, len);
  text[len] = '\0';
  if (sscanf(text, "%ld %lld", &seq, &t0) != 2 || seq < 0 || seq >= R.n ||
      R.seen[seq]) {
    atomic_fetch_add(&R.dup_or_bad, 1);
    return SWIT_ACK;
  }
  R.seen[seq] = 1;
  R.lat_us[seq] = (uint32_t)(now_us() - t0);
  atomic_fetch_add(&R.received, 1);
  return SWIT_ACK;
}

static int cmp_u32(const void *a, const void *b)
{
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* One run; returns 0, or 1 if it lost, duplicated or garbled a message,
 * a publish or a reload failed, or the host did not drain in 60 s. */
static int run_case(const char *name, int seconds, long rate, int reloads)
{
  long failed_pub = 0, failed_reload = 0;
  char yaml[512], err[1024];
  swit_host_t *h = NULL;
  double reload_ms_sum = 0, reload_ms_max = 0;
  int nreloads = 0;
  int64_t start, next_reload;
  long sent = 0;

  R.n = rate * seconds;
  R.lat_us = calloc((size_t)R.n, sizeof *R.lat_us);
  R.seen = calloc((size_t)R.n, 1);
  atomic_store(&R.received, 0);
  atomic_store(&R.dup_or_bad, 0);
  write_scripts(1);
  snprintf(yaml, sizeof yaml,
           "server: {admin: {listen: \"off\"}}\n"
           "messaging:\n"
           "  broker: {type: memory, config: {queue_size: 1000000}}\n"
           "  resources:\n"
           "    subscribers: {worker_pool_size: 2}\n"
           "lua:\n"
           "  scripts: [%s]\n", path);
  if (swit_host_new_from_string(&h, yaml, NULL, err, sizeof err) ||
      swit_host_handle(h, "out", NULL, SWIT_ORDER_KEY, on_out, NULL, err, sizeof err) ||
      swit_host_start(h, err, sizeof err)) {
    fprintf(stderr, "bench_reload: %s\n", err);
    exit(1);
  }
  start = now_us();
  next_reload = start + 500000;
  while (sent < R.n) {
    int64_t due = start + (int64_t)((double)sent * 1e6 / (double)rate);
    int64_t now = now_us();
    if (now < due) {
      usleep((useconds_t)(due - now > 1000 ? 1000 : due - now));
      continue;
    }
    for (int k = 0; k < 50 && sent < R.n; k++, sent++) {
      char key[8], payload[48];
      snprintf(key, sizeof key, "k%ld", sent % 64);
      snprintf(payload, sizeof payload, "%ld %lld", sent, (long long)now_us());
      if (swit_host_publish(h, "in", key, strlen(key), payload, strlen(payload),
                            NULL, NULL, err, sizeof err) != 0 && failed_pub++ == 0)
        fprintf(stderr, "bench_reload: publish failed: %s\n", err);
    }
    if (reloads && now_us() >= next_reload) {
      int64_t t0 = now_us();
      write_scripts(2 + nreloads % 2);
      if (swit_host_reload(h, 0, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "bench_reload: reload failed: %s\n", err);
        failed_reload++;
      }
      double ms = (double)(now_us() - t0) / 1000.0;
      reload_ms_sum += ms;
      if (ms > reload_ms_max) reload_ms_max = ms;
      nreloads++;
      next_reload += 1000000;
    }
  }
  int drained = swit_host_wait_idle(h, 100, 60000) == 0;
  double secs = (double)(now_us() - start) / 1e6 - 0.1;
  long got = atomic_load(&R.received);
  swit_host_free(h);
  qsort(R.lat_us, (size_t)R.n, sizeof *R.lat_us, cmp_u32);
  printf("%-22s %9.0f msg/s  lost %ld  dup/bad %ld  latency p50 %6.2f ms  "
         "p99 %6.2f ms  max %7.2f ms", name, (double)got / secs, R.n - got,
         atomic_load(&R.dup_or_bad), R.lat_us[R.n / 2] / 1000.0,
         R.lat_us[R.n * 99 / 100] / 1000.0, R.lat_us[R.n - 1] / 1000.0);
  if (nreloads)
    printf("  reloads %d, each %.1f ms avg / %.1f ms max", nreloads,
           reload_ms_sum / nreloads, reload_ms_max);
  printf("\n");
  free(R.lat_us);
  free(R.seen);
  long lost = R.n - got, dup = atomic_load(&R.dup_or_bad);
  if (lost == 0 && dup == 0 && failed_pub == 0 && failed_reload == 0 && drained)
    return 0;
  fprintf(stderr, "bench_reload: FAILED %s: lost %ld, dup/bad %ld, publish "
          "errors %ld, reload errors %ld%s\n", name, lost, dup, failed_pub,
          failed_reload, drained ? "" : ", not drained in 60 s");
  return 1;
}

int main(int argc, char **argv)
{
  int seconds = 5;
  long rate = 50000;

  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--seconds")) seconds = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--rate")) rate = atol(argv[i + 1]);
  }
  if (seconds < 1 || rate < 100) {
    fprintf(stderr, "usage: bench_reload [--seconds S] [--rate MSG_PER_S]\n");
    return 2;
  }
  if (!mkdtemp(dir)) return 1;
  snprintf(path, sizeof path, "%s/handlers.lua", dir);
  printf("swit reload benchmark: %d s at %ld msg/s, 2 workers, memory broker,\n"
         "a ~1,000-line script set republishing to a C handler; latency is "
         "publish -> C handler (two hops)\n\n", seconds, rate);
  int failed = run_case("steady (no reload)", seconds, rate, 0);
  failed |= run_case("one reload per second", seconds, rate, 1);
  unlink(path);
  rmdir(dir);
  return failed;
}
