/*
 * intercept_bench.c - what the interception layer costs per message.
 *
 * A host on the memory broker with one worker and a trivial C handler;
 * the main thread publishes N messages in batches and waits until the
 * handler saw them all. The same run with 0, 1, 2 and 4 registered no-op
 * interceptors (each with msgs_before and msgs_after visiting every
 * message: the per-message shape, the costliest) gives the cost per hook and message as the
 * difference of the medians divided by hooks and messages. Metrics are
 * off so only the hooks under test are registered. Figures are printed,
 * never asserted; a run that loses a message fails (exit 1).
 *
 * Resilience (host/resil/): the same run with an idle (closed) circuit
 * breaker on the subscription, and with idle intake limits (concurrency
 * 1000000: every delivery goes through the limiter's intake and every
 * settle run through released, nothing is ever held), against none; and
 * the token bucket's own path (one take per delivery of 256, as the
 * intake hook does, divided per message); and the breaker's own
 * per-message path in a loop (allow, then one record per 64 outcomes, as
 * the interceptor does per batch), which the end-to-end difference is
 * too noisy to resolve; the hooks' own path the same way (the layer's
 * calls on a filled batch, no broker); and a dedup lookup (hash of a
 * 36-byte id, then seen() in a full window of 10000 ids, half of the
 * lookups hits).
 *
 *   bench_intercept [--messages N] [--repeat R]
 *   bench_intercept --hooks K [--resil breaker|limits] [--messages N]
 *
 * --hooks K (and --resil) runs that case once, without timing: for
 * counting instructions, which the machine's load does not change, e.g.
 *   perf stat -e instructions:u bench_intercept --hooks 4 --messages 2000000
 * against --hooks 0 (docs/benchmarks.md shows both ways), or where the
 * machine has no counters, valgrind --tool=callgrind with fewer messages
 * (docs/resilience.md, "Cost").
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../bench_util.h"
#include "core/host_int.h"
#include "resil/resil.h"

static atomic_long seen;

static int handler(swit_msg_t *m, void *ud)
{
  (void)m;
  (void)ud;
  atomic_fetch_add_explicit(&seen, 1, memory_order_relaxed);
  return SWIT_ACK;
}

/* The "no-op" hooks visit every message the way a real one does: before
 * reads the message (refusing none: no message here is empty), after
 * reads its result (counting, in its per-worker state, the impossible
 * ones). */
static int worker_init(void *hs, swit__worker *w, void **ws)
{
  (void)w;
  *ws = hs;
  return 0;
}

static int nop_before(void *ws, swit__worker *w, uint32_t i)
{
  (void)ws;
  return w->ffi.msgs[i].v.payload_len == 0;
}
SWIT__ICPT_MSGS_BEFORE(nop_before_all, nop_before)

static void nop_after(void *ws, swit__worker *w, uint32_t i)
{
  if (w->ffi.msgs[i].result > SWIT_FATAL) ++*(long *)ws;   /* never */
}
SWIT__ICPT_MSGS_AFTER(nop_after_all, nop_after)

static const swit__icpt_ops nop = {
  .name = "nop", .worker_init = worker_init,
  .msgs_before = nop_before_all, .msgs_after = nop_after_all,
};
static long nop_sum[SWIT__ICPT_MAX]; /* each hook's state (one worker) */

#define CHUNK 256

/* Seconds for n messages through a host with `hooks` no-op hooks (and
 * an idle circuit breaker when `resil` is 1, idle intake limits when it
 * is 2), or -1. */
static double run(long n, int hooks, int resil)
{
  static const char yaml0[] =
    "server: {admin: {listen: \"off\"}, metrics: {enabled: false},\n"
    "         log: {level: warn}}\n"
    "messaging:\n"
    "  broker: {type: memory, config: {queue_size: 1000000}}\n"
    "  resources:\n"
    "    subscribers: {worker_pool_size: 1, max_in_flight: 100000}\n";
  static const char yaml1[] =
    "server: {admin: {listen: \"off\"}, metrics: {enabled: false},\n"
    "         log: {level: warn}}\n"
    "messaging:\n"
    "  broker: {type: memory, config: {queue_size: 1000000}}\n"
    "  subscribers:\n"
    "    default: {circuit_breaker: {enabled: true}}\n"
    "  resources:\n"
    "    subscribers: {worker_pool_size: 1, max_in_flight: 100000}\n";
  static const char yaml2[] =
    "server: {admin: {listen: \"off\"}, metrics: {enabled: false},\n"
    "         log: {level: warn}}\n"
    "messaging:\n"
    "  broker: {type: memory, config: {queue_size: 1000000}}\n"
    "  subscribers:\n"
    "    default: {concurrency: 1000000}\n"
    "  resources:\n"
    "    subscribers: {worker_pool_size: 1, max_in_flight: 100000}\n";
  const char *yaml = resil == 1 ? yaml1 : resil == 2 ? yaml2 : yaml0;
  static swit_pub_t batch[CHUNK];
  swit_host_t *h = NULL;
  char err[256];
  double t0, t1;
  int rc;

  if (swit_host_new_from_string(&h, yaml, NULL, err, sizeof err) != 0) {
    fprintf(stderr, "bench_intercept: %s\n", err);
    return -1;
  }
  for (int k = 0; k < hooks && k < SWIT__ICPT_MAX; k++) swit__icpt_add(h, &nop, &nop_sum[k]);
  swit_host_handle(h, "bench", NULL, SWIT_ORDER_NONE, handler, NULL, err,
                   sizeof err);
  if (swit_host_start(h, err, sizeof err) != 0) {
    fprintf(stderr, "bench_intercept: %s\n", err);
    swit_host_free(h);
    return -1;
  }
  for (int i = 0; i < CHUNK; i++)
    batch[i] = (swit_pub_t){.payload = "x", .payload_len = 1};
  atomic_store(&seen, 0);
  t0 = now_s();
  for (long sent = 0; sent < n; sent += CHUNK)
    if (swit_host_publish_batch(h, "bench", batch, CHUNK, NULL, err,
                                sizeof err)) {
      fprintf(stderr, "bench_intercept: publish: %s\n", err);
      break;
    }
  for (int i = 0; i < 60000 && atomic_load(&seen) < n; i++) nap_ms(1);
  t1 = now_s();
  if ((rc = swit_host_stop(h, 5000)) != 0) {
    /* a handler was left behind: the host must not be freed */
    fprintf(stderr, "bench_intercept: stop: %s\n", swit_strerror(rc));
    return -1;
  }
  swit_host_free(h);
  if (atomic_load(&seen) != n) {
    fprintf(stderr, "bench_intercept: handled %ld of %ld messages\n",
            atomic_load(&seen), n);
    return -1;
  }
  return t1 - t0;
}

/* ns per message of an idle breaker's own path: allow() per message,
 * one record of 64 successes per 64 messages. */
static double micro_breaker(long n)
{
  static const swit_cfg_breaker cfg = {
    .enabled = 1, .failure_threshold = 5, .success_threshold = 2,
    .recovery_ms = 30000, .min_calls = 10, .window_ms = 60000,
  };
  uint8_t out[64] = {0};
  swit__breaker b;
  long allowed = 0;
  double t0, t1;
  int64_t now = swit__now_ms();

  swit__breaker_init(&b, &cfg, NULL, NULL);
  t0 = now_s();
  for (long i = 0; i < n; i += 64) {
    for (int j = 0; j < 64; j++) allowed += swit__breaker_allow(&b, now);
    swit__breaker_record(&b, now, out, 64);
  }
  t1 = now_s();
  swit__breaker_destroy(&b);
  return allowed == n ? (t1 - t0) / (double)n * 1e9 : -1;
}

/* ns per batch of CHUNK messages through the interception layer's own
 * calls (batch_before, then batch_after) with `hooks` no-op hooks, on a
 * worker that is not running: the hooks' path without the broker, the
 * queue and the machine's load around it, or -1. */
static double micro_hooks(long n, int hooks)
{
  static swit_ffi_msg msgs[CHUNK];
  swit__worker w;
  swit_host_t *h = NULL;
  char err[256];
  double t0, t1;

  if (swit_host_new_from_string(&h, "server: {admin: {listen: \"off\"}, "
                                "metrics: {enabled: false}}\n",
                                NULL, err, sizeof err) != 0)
    return -1;
  memset(&w, 0, sizeof w);
  w.host = h;
  w.ffi.msgs = msgs;
  for (int i = 0; i < CHUNK; i++) msgs[i].v.payload_len = 1;
  for (int k = 0; k < hooks; k++) {
    int at = swit__icpt_add(h, &nop, &nop_sum[k]);
    if (at < 0) {
      swit_host_free(h);
      return -1;
    }
    w.icpt_ws[at] = &nop_sum[k];
  }
  t0 = now_s();
  for (long i = 0; i < n; i += CHUNK) {
    swit__icpt_batch_before(&w, CHUNK);
    swit__icpt_batch_after(&w, CHUNK, 0);
  }
  t1 = now_s();
  swit_host_free(h);
  return (t1 - t0) / (double)n * 1e9;
}

/* ns per message of a rate limit that does not bind: one bucket take
 * and room per delivery of 256 (the intake hook's arithmetic), the
 * clock read included. */
static double micro_bucket(long n)
{
  swit__bucket b;
  size_t got = 0;
  double t0, t1;

  if (swit__bucket_init(&b, 1e6, 1e6, (int64_t)swit__now_us()) != 0)
    return -1;
  t0 = now_s();
  for (long i = 0; i < n; i += 256) {
    int64_t now = (int64_t)swit__now_us();
    size_t want = swit__limit_room(256, SIZE_MAX, 1000000, 0);
    got += swit__bucket_take(&b, now, want);
    b.tokens = b.burst;                  /* never binds */
  }
  t1 = now_s();
  return got >= (size_t)n ? (t1 - t0) / (double)n * 1e9 : -1;
}

/* ns per dedup lookup: hash + seen() in a window of 10000 ids. */
static double micro_dedup(long n)
{
  static char ids[20000][37];
  swit__dedup_set d;
  long hits = 0;
  double t0, t1;

  if (swit__dedup_set_init(&d, 10000, 3600000) != 0) return -1;
  for (int i = 0; i < 20000; i++)
    snprintf(ids[i], sizeof ids[i], "6f1c2a0e-1d3b-4c5e-8f70-%012d", i);
  for (int i = 0; i < 20000; i += 2)
    swit__dedup_add(&d, swit__dedup_hash(ids[i], 36), 1);
  t0 = now_s();
  for (long i = 0; i < n; i++)
    hits += swit__dedup_seen(&d, swit__dedup_hash(ids[i % 20000], 36), 2);
  t1 = now_s();
  swit__dedup_set_free(&d);
  return hits == n / 2 ? (t1 - t0) / (double)n * 1e9 : -1;
}

int main(int argc, char **argv)
{
  /* the last two: an idle breaker, idle intake limits */
  static const int hooks[] = {0, 1, 2, 4, 0, 0};
  long n = 4000000;
  int repeat = 5, failed = 0, only = -1, only_resil = 0;
  double base = 0;

  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--messages") == 0) n = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--repeat") == 0) repeat = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--hooks") == 0) only = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--resil") == 0) {
      only_resil = strcmp(argv[i + 1], "breaker") == 0 ? 1
                   : strcmp(argv[i + 1], "limits") == 0 ? 2 : -1;
      if (only < 0) only = 0;
    }
    else n = 0;                                      /* usage */
  }
  n -= n % CHUNK;
  if (n <= 0 || repeat < 1 || repeat > 50 || only > 16 || only_resil < 0 ||
      argc % 2 == 0) {
    fprintf(stderr, "usage: bench_intercept [--messages N] [--repeat R] "
            "[--hooks K] [--resil breaker|limits]\n");
    return 2;
  }
  if (only >= 0) return run(n, only, only_resil) < 0;
  printf("interception layer: memory broker, 1 worker, trivial C handler, "
         "%ld messages, median of %d (cases interleaved run by run, after "
         "one warm-up run)\n", n, repeat);
  double v[6][50];
  int ok[6] = {0};
  if (run(n, 0, 0) < 0) failed = 1;                  /* warm-up */
  for (int r = 0; r < repeat; r++)
    for (size_t c = 0; c < 6; c++) {
      double t = run(n, hooks[c], c < 4 ? 0 : (int)c - 3);
      if (t < 0) failed = 1;
      else v[c][ok[c]++] = t;
    }
  for (size_t c = 0; c < 6; c++) {
    double med;
    if (!ok[c]) continue;
    med = median_of(v[c], ok[c]);              /* sorts v[c] */
    if (c == 0) base = med;
    if (c >= 4)
      printf("%s: %6.2f M msg/s  %6.1f ns/msg  (%+.2f ns per message)",
             c == 4 ? "idle circuit breaker" : "idle intake limits",
             n / med / 1e6, med / n * 1e9, (med - base) / n * 1e9);
    else
      printf("%d no-op hook(s): %6.2f M msg/s  %6.1f ns/msg", hooks[c],
             n / med / 1e6, med / n * 1e9);
    if (c > 0 && c < 4)
      printf("  (%+.2f ns per hook and message)",
             (med - base) / n * 1e9 / hooks[c]);
    printf("  [min %.1f max %.1f ns/msg]\n", v[c][0] / n * 1e9,
           v[c][ok[c] - 1] / n * 1e9);
  }
  {
    double m[50];
    int k = 0;
    for (int r = 0; r < repeat; r++) {
      double x = micro_breaker(n * 4);
      if (x < 0) failed = 1;
      else m[k++] = x;
    }
    if (k)
      printf("idle breaker, its own path (allow per message, record per 64): "
             "%.2f ns/msg (median of %d)\n", median_of(m, k), k);
    for (int c = 1; c <= 4; c *= 2) {          /* 1, 2 and 4 hooks */
      double d[50];
      k = 0;
      for (int r = 0; r < repeat; r++) {
        double x0 = micro_hooks(n * 4, 0), x = micro_hooks(n * 4, c);
        if (x0 < 0 || x < 0) failed = 1;
        else d[k++] = (x - x0) / c;
      }
      if (k)
        printf("%d no-op hook(s), the layer's own path (msgs_before + "
               "msgs_after over batches of %d): %+.2f ns per hook and "
               "message (median of %d)\n", c, CHUNK, median_of(d, k), k);
    }
    k = 0;
    for (int r = 0; r < repeat; r++) {
      double x = micro_bucket(n * 4);
      if (x < 0) failed = 1;
      else m[k++] = x;
    }
    if (k)
      printf("rate limit that does not bind, its own path (clock, room and "
             "bucket take per delivery of 256): %.2f ns/msg (median of %d)\n",
             median_of(m, k), k);
    k = 0;
    for (int r = 0; r < repeat; r++) {
      double x = micro_dedup(n < 20000 ? 20000 : n - n % 20000);
      if (x < 0) failed = 1;
      else m[k++] = x;
    }
    if (k)
      printf("dedup lookup (hash of a 36-byte id + seen in a window of "
             "10000, half hits): %.2f ns (median of %d)\n", median_of(m, k), k);
  }
  return failed;
}
