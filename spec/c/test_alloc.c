/*
 * test_alloc.c - the per-message hot path allocates nothing.
 *
 * This executable defines malloc/calloc/realloc/free itself (forwarding
 * to glibc's __libc_* entry points), which interposes them for every
 * library in the process, and counts calls. After a warm-up run it sends
 * 200,000 messages through a Lua handler and a C handler and checks that
 * the number of allocations does not grow with the number of messages.
 * (The memory broker allocates a slot's buffer the first time the slot
 * is used: up to queue_size per topic, which the warm-up reaches.)
 * On the Lua side, it checks that the GC heap of the worker states does
 * not grow either (collectgarbage("count") with the collector stopped).
 * Not built under sanitizers, which interpose malloc themselves.
 * `test_alloc tracing` runs the same with tracing on (sampling 0.01,
 * spans exported to a closed port: the worker rings, the exporter and its
 * failing posts must not allocate per message or per export either).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "swit/swit.h"

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

static atomic_long allocs;

void *malloc(size_t n)
{
  atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
  return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
  atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
  return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
  atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
  return __libc_realloc(p, n);
}

void free(void *p)
{
  __libc_free(p);
}

static int c_handler(swit_msg_t *m, void *ud)
{
  (void)m, (void)ud;
  return SWIT_ACK;
}

/* One worker runs the Lua handler (ordering none, one worker): it notes
 * its GC heap after the warm-up and reports the growth on topic "report"
 * once all messages passed. */
static const char script[] =
  "local swit = require 'swit'\n"
  "collectgarbage('stop')\n"
  "local n, base = 0, nil\n"
  "swit.on('lua', { ordering = 'none' }, function(msg)\n"
  "  n = n + 1\n"
  "  if n == 20000 then base = collectgarbage('count') end\n"
  "  if n == 220000 then\n"
  "    swit.publish('report', tostring(collectgarbage('count') - base))\n"
  "  end\n"
  "end)\n";

static double gc_growth_kb = -1;

static int on_report(swit_msg_t *m, void *ud)
{
  size_t len;
  const char *p = swit_msg_payload(m, &len);
  char text[64];

  (void)ud;
  if (len >= sizeof text) len = sizeof text - 1;
  memcpy(text, p, len);
  text[len] = '\0';
  gc_growth_kb = atof(text);
  return SWIT_ACK;
}

static void publish(swit_host_t *h, const char *topic, long n)
{
  static const swit_pub_t m[64] = {[0 ... 63] = {"k", 1, "payload", 7}};
  char err[256];

  for (long i = 0; i < n; i += 64)
    CHECK(swit_host_publish_batch(h, topic, m, 64, NULL, err, sizeof err) == 0);
}

int main(int argc, char **argv)
{
  char dir[] = "/tmp/swit-alloc-XXXXXX", path[64], yaml[768], err[512];
  const char *tracing = argc > 1 && !strcmp(argv[1], "tracing")
      ? "  tracing: {enabled: true, sampling_ratio: 0.01, "
        "otlp_endpoint: \"http://127.0.0.1:9/v1/traces\", "
        "export_interval: 20ms}\n" : "";
  swit_host_t *h = NULL;
  long warm, steady;
  FILE *f;

  CHECK(mkdtemp(dir) != NULL);
  snprintf(path, sizeof path, "%s/alloc.lua", dir);
  f = fopen(path, "w");
  fputs(script, f);
  fclose(f);
  snprintf(yaml, sizeof yaml,
           "messaging:\n"
           "  broker: {type: memory, config: {queue_size: 1024}}\n"
           "  resources:\n"
           "    subscribers: {worker_pool_size: 1, max_in_flight: 4096}\n"
           "%s"
           "lua:\n"
           "  scripts: [%s]\n", tracing, path);
  CHECK(swit_host_new_from_string(&h, yaml, NULL, err, sizeof err) == 0);
  CHECK(swit_host_handle(h, "c", NULL, SWIT_ORDER_KEY, c_handler, NULL, err,
                         sizeof err) == 0);
  CHECK(swit_host_handle(h, "report", NULL, SWIT_ORDER_KEY, on_report, NULL,
                         err, sizeof err) == 0);
  CHECK(swit_host_start(h, err, sizeof err) == 0);

  /* warm-up: slots, queues, arenas, traces reach their steady sizes */
  publish(h, "lua", 20000);
  publish(h, "c", 20000);
  CHECK(swit_host_wait_idle(h, 50, 30000) == 0);
  warm = atomic_load(&allocs);
  publish(h, "lua", 200000);
  publish(h, "c", 200000);
  CHECK(swit_host_wait_idle(h, 50, 30000) == 0);
  steady = atomic_load(&allocs) - warm;
  printf("allocations while 400,000 messages flowed: %ld\n", steady);
  printf("Lua GC heap growth over 200,000 messages: %.1f KB\n", gc_growth_kb);
  CHECK(steady < 100);
  CHECK(gc_growth_kb >= 0 && gc_growth_kb < 64);
  swit_host_free(h);
  unlink(path);
  rmdir(dir);
  return check_done("alloc");
}
