/*
 * test_alloc.c - the per-message hot path allocates nothing.
 *
 * This executable defines malloc/calloc/realloc/free itself (forwarding
 * to glibc's __libc_* entry points), which interposes them for every
 * library in the process, and counts calls. After a warm-up run it sends
 * 200,000 messages with a key and a header through a Lua handler and a
 * C handler, which both read payload, key and header, ask for a retry of
 * one message in 50 and dead-letter another (the dead letters are read
 * back, x-swit-error header included, by a C handler). The bound is the
 * real one: at most ALLOC_BOUND allocations in the whole steady run. One
 * allocation per batch of 256 would be ~1,500, one per retry or dead
 * letter ~8,000 each, one per message 400,000.
 * (The memory broker allocates a slot's buffer the first time the slot
 * is used: up to queue_size (256) per topic, which the warm-up reaches,
 * dead-letter topics included: 400 dead letters each.)
 * On the Lua side, it checks that the GC heap of the worker states does
 * not grow either (collectgarbage("count") with the collector stopped).
 * Not built under sanitizers, which interpose malloc themselves.
 * `test_alloc tracing` runs the same with tracing on (sampling 0.01,
 * spans exported to a closed port: the worker rings, the exporter and its
 * failing posts must not allocate per message or per export either).
 * `test_alloc nats URL_FILE` runs it on core NATS (the server whose URL
 * the nats fixture wrote), with fewer messages (core NATS drops what a
 * slow subscriber cannot buffer). The client library allocates per
 * message itself there (a cnats natsMsg for each one received), so only
 * allocations called from libswit's own code are counted: the caller's
 * address (__builtin_return_address) within libswit.so's executable
 * segment. One made for swit by a libc helper (strdup, asprintf) would
 * escape that count; the memory broker run, which counts every
 * allocation in the process, catches those. The NATS adapter keeps its
 * deliveries in a pool that grows to the high-water mark of messages in
 * flight (at most max_in_flight, 4096 here) and reuses them: how far the
 * receiving thread runs ahead varies from run to run, so the bound there
 * is max_in_flight plus the handful, against 100,000 messages (one per
 * message, or per batch, would still fail it).
 */
#include <link.h>
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
static uintptr_t swit_lo, swit_hi;  /* libswit.so's code; 0: count all */

static inline void count(const void *caller)
{
  if (!swit_hi || ((uintptr_t)caller >= swit_lo && (uintptr_t)caller < swit_hi))
    atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
}

void *malloc(size_t n)
{
  count(__builtin_return_address(0));
  return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
  count(__builtin_return_address(0));
  return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
  count(__builtin_return_address(0));
  return __libc_realloc(p, n);
}

/* dl_iterate_phdr: libswit.so's executable segment into swit_lo/hi. */
static int find_swit(struct dl_phdr_info *info, size_t size, void *ud)
{
  (void)size;
  (void)ud;
  if (!info->dlpi_name || !strstr(info->dlpi_name, "libswit.so")) return 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
      swit_lo = info->dlpi_addr + ph->p_vaddr;
      swit_hi = swit_lo + ph->p_memsz;
    }
  }
  return 1;
}

void free(void *p)
{
  __libc_free(p);
}

/* A handful for the whole steady run (0 to 6 seen here): what the run
 * does once, never per message, per batch, per retry or per dead letter. */
#define ALLOC_BOUND 16

/* What the handlers read, so the reads are not optimised away, and
 * what they did. */
static atomic_long c_bytes, c_calls, dead_letters, dead_bad;

static int c_handler(swit_msg_t *m, void *ud)
{
  size_t plen = 0, klen = 0, hlen = 0;
  long n = atomic_fetch_add(&c_calls, 1) + 1;

  (void)ud;
  swit_msg_payload(m, &plen);
  swit_msg_key(m, &klen);
  if (!swit_msg_header(m, "h-trace", &hlen)) hlen = 0;
  atomic_fetch_add(&c_bytes, (long)(plen + klen + hlen));
  if (n % 50 == 0 && swit_msg_attempt(m) == 1) return SWIT_RETRY;
  if (n % 50 == 25) return SWIT_REJECT;
  return SWIT_ACK;
}

/* The dead letters of both handlers: each must carry x-swit-error. */
static int on_dead_letter(swit_msg_t *m, void *ud)
{
  size_t len = 0;
  (void)ud;
  atomic_fetch_add(&dead_letters, 1);
  if (!swit_msg_header(m, "x-swit-error", &len) || len == 0)
    atomic_fetch_add(&dead_bad, 1);
  return SWIT_ACK;
}

/* One worker runs the Lua handler (ordering none, one worker): it reads
 * payload, key and header, retries one message in 50 and rejects
 * another; it notes its GC heap after the warm-up (WARM messages, defined
 * in front of the script) and reports the growth
 * (and what it read) on topic "report" when asked on "ask". */
static const char script[] =
  "local swit = require 'swit'\n"
  "collectgarbage('stop')\n"
  "local n, bytes, base = 0, 0, nil\n"
  "swit.on('lua', { ordering = 'none' }, function(msg)\n"
  "  n = n + 1\n"
  "  bytes = bytes + #msg:payload() + #msg:key() + #(msg:header('h-trace') or '')\n"
  "  if n == WARM then base = collectgarbage('count') end\n"
  "  if n % 50 == 0 and msg:attempt() == 1 then return swit.retry('again') end\n"
  "  if n % 50 == 25 then return swit.reject('bad') end\n"
  "end)\n"
  "swit.on('ask', function()\n"
  "  swit.publish('report', ('%f %d'):format(collectgarbage('count') - base, bytes))\n"
  "end)\n";

static long lua_bytes = -1;

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
  if (sscanf(text, "%lf %ld", &gc_growth_kb, &lua_bytes) != 2) gc_growth_kb = -1;
  return SWIT_ACK;
}

/* n messages with key "k", payload "payload" and header h-trace. */
static void publish(swit_host_t *h, const char *topic, long n)
{
  static const char *const headers[] = {"h-trace", "abc", NULL};
  char err[256];

  for (long i = 0; i < n; i++)
    CHECK(swit_host_publish(h, topic, "k", 1, "payload", 7, headers, NULL,
                            err, sizeof err) == 0);
}

int main(int argc, char **argv)
{
  char dir[] = "/tmp/swit-alloc-XXXXXX", path[64], yaml[1024], err[512];
  char broker[384] = "  broker: {type: memory, config: {queue_size: 256}}\n";
  const char *tracing = argc > 1 && !strcmp(argv[1], "tracing")
      ? "  tracing: {enabled: true, sampling_ratio: 0.01, "
        "otlp_endpoint: \"http://127.0.0.1:9/v1/traces\", "
        "export_interval: 20ms}\n" : "";
  long warm_n = 20000, steady_n = 200000, bound = ALLOC_BOUND;
  int idle = 50;
  swit_host_t *h = NULL;
  long warm, steady;
  FILE *f;

  if (argc > 2 && !strcmp(argv[1], "nats")) {    /* core NATS, URL in a file */
    char url[256] = "";
    f = fopen(argv[2], "r");
    CHECK(f && fgets(url, sizeof url, f));
    if (f) fclose(f);
    url[strcspn(url, "\r\n")] = '\0';
    snprintf(broker, sizeof broker, "  broker: {type: nats, endpoints: "
             "[\"%s\"]}\n", url);
    dl_iterate_phdr(find_swit, NULL);
    CHECK(swit_hi > swit_lo);
    warm_n = 20000;
    steady_n = 50000;
    bound = 4096 + ALLOC_BOUND;     /* the delivery pool's high-water mark */
    idle = 500;                     /* a server round trip, not a thread hop */
  }

  CHECK(mkdtemp(dir) != NULL);
  snprintf(path, sizeof path, "%s/alloc.lua", dir);
  f = fopen(path, "w");
  fprintf(f, "local WARM = %ld\n", warm_n);
  fputs(script, f);
  fclose(f);
  snprintf(yaml, sizeof yaml,
           "server: {admin: {listen: \"off\"}, log: {level: error}}\n"
           "messaging:\n"
           "%s"
           "  subscribers:\n"
           "    default: {max_attempts: 3, retry_delay: 1ms, retry_max_delay: 2ms}\n"
           "  resources:\n"
           "    subscribers: {worker_pool_size: 1, max_in_flight: 4096}\n"
           "%s"
           "lua:\n"
           "  scripts: [%s]\n", broker, tracing, path);
  CHECK(swit_host_new_from_string(&h, yaml, NULL, err, sizeof err) == 0);
  CHECK(swit_host_handle(h, "c", NULL, SWIT_ORDER_KEY, c_handler, NULL, err,
                         sizeof err) == 0);
  CHECK(swit_host_handle(h, "report", NULL, SWIT_ORDER_KEY, on_report, NULL,
                         err, sizeof err) == 0);
  CHECK(swit_host_handle(h, "lua.dlq", NULL, SWIT_ORDER_KEY, on_dead_letter,
                         NULL, err, sizeof err) == 0);
  CHECK(swit_host_handle(h, "c.dlq", NULL, SWIT_ORDER_KEY, on_dead_letter,
                         NULL, err, sizeof err) == 0);
  CHECK(swit_host_start(h, err, sizeof err) == 0);

  /* warm-up: slots, queues, arenas, traces reach their steady sizes */
  publish(h, "lua", warm_n);
  publish(h, "c", warm_n);
  CHECK(swit_host_wait_idle(h, idle, 30000) == 0);
  warm = atomic_load(&allocs);
  publish(h, "lua", steady_n);
  publish(h, "c", steady_n);
  CHECK(swit_host_wait_idle(h, idle, 60000) == 0);
  steady = atomic_load(&allocs) - warm;
  publish(h, "ask", 1);
  CHECK(swit_host_wait_idle(h, idle, 30000) == 0);
  printf("allocations %swhile %ld messages flowed (with %ld dead letters "
         "and as many retries): %ld, bound %ld\n",
         swit_hi ? "by libswit's code " : "", 2 * steady_n,
         atomic_load(&dead_letters), steady, bound);
  printf("Lua GC heap growth over %ld messages: %.1f KB\n", steady_n,
         gc_growth_kb);
  CHECK(steady <= bound);
  /* Lua garbage: none per message (16 B each would be ~3 MB); the
   * retry and reject results leave a few bytes each (~8 seen), so 64 KB
   * plus 16 B for each of the 8,000 in the steady run */
  CHECK(gc_growth_kb >= 0 && gc_growth_kb < 64 + 8000 * 16 / 1024.0);
  /* the handlers read what was sent; retries and dead letters happened */
  CHECK(lua_bytes >= (warm_n + steady_n) * 11);
  CHECK(atomic_load(&c_bytes) >= (warm_n + steady_n) * 11);
  CHECK(atomic_load(&c_calls) > warm_n + steady_n);  /* retries came back */
  CHECK(atomic_load(&dead_letters) >= (warm_n + steady_n) / 50);
  CHECK(atomic_load(&dead_bad) == 0);
  swit_host_free(h);
  unlink(path);
  rmdir(dir);
  return check_done("alloc");
}
