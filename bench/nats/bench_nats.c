/*
 * bench_nats.c - swit on NATS against raw cnats, in one run against the
 * same nats-server.
 *
 * Cases (each figure is the median of --repeat runs, messages of 16
 * bytes):
 *   core consume   a raw cnats async subscriber (counting callback) vs
 *                  swit with a trivial Lua handler; both receive N messages
 *                  a raw cnats publisher sends as fast as it can.
 *   js consume     N messages stored in a fresh stream first; a raw cnats
 *                  pull consumer (Fetch 256 + Ack each) vs swit in
 *                  JetStream mode with the same Lua handler.
 *   core publish   a raw loop of natsConnection_Publish vs a Lua on_start
 *                  calling swit.publish N times; a raw subscriber measures
 *                  both from the first to the last message it receives.
 * Consume times run from the first publish (core) or from subscribing
 * (JetStream) until every message was handled: the raw callback counts,
 * and so does the Lua handler (one FFI call to bench_nats_seen, exported
 * by this program). Client
 * settings: cnats pending limits lifted on every subscriber (no slow
 * consumer drops); swit with lua.batch_size 256, prefetch
 * (max_ack_pending) 8192. The consume cases run swit with 1 worker (the
 * raw subscriber handles messages on one thread too) and with 2 workers:
 * on a 2-core machine that also runs nats-server and the publisher, the
 * second worker thread for a handler that does no work mostly adds
 * context switches. raw and swit runs alternate. Prints the median and
 * min-max of messages/s and the swit/raw ratio of the medians. Figures
 * are not asserted, but a run that lost, duplicated or did not finish
 * its messages is reported, left out of the median, and makes the
 * program exit 1 (the ctest smoke run fails).
 *
 *   bench_nats --url nats://127.0.0.1:PORT [--messages N] [--repeat R]
 *              [--case core|js|publish]
 *   (default: 500,000 messages, 3 runs, every case)
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>
#include <swit/swit.h>
#include "../bench_util.h"

#ifndef BENCH_DIR
#define BENCH_DIR "."
#endif

#define PAYLOAD "0123456789abcdef"

static const char *url = "nats://127.0.0.1:4222";
static long nmsgs = 500000;
static int run_no;
static int workers = 1; /* swit's worker_pool_size for the next case */

/* Messages the Lua handler saw, and when the last one arrived. */
static atomic_long swit_seen;
static _Atomic double swit_last;

/* Called by bench/nats/handler.lua through the FFI (ffi.C). */
void bench_nats_seen(int n);
void bench_nats_seen(int n)
{
  if (atomic_fetch_add(&swit_seen, n) + n == nmsgs)
    atomic_store(&swit_last, now_s());
}

/* 0 if `got` is exactly N; otherwise says what went wrong, -1. */
static int exact(const char *who, long got)
{
  if (got == nmsgs)
    return 0;
  fprintf(stderr, "bench_nats: FAILED run: %s got %ld of %ld messages (%s)\n",
          who, got, nmsgs, got < nmsgs ? "lost or unfinished" : "duplicates");
  return -1;
}

static natsConnection *raw_connect(void)
{
  natsConnection *nc = NULL;
  if (natsConnection_ConnectTo(&nc, url) != NATS_OK) {
    fprintf(stderr, "bench_nats: cannot connect to %s: %s\n", url,
            nats_GetLastError(NULL));
    exit(1);
  }
  return nc;
}

static void raw_publish(natsConnection *nc, const char *subj, long n)
{
  for (long i = 0; i < n; i++)
    natsConnection_Publish(nc, subj, PAYLOAD, (int)strlen(PAYLOAD));
  natsConnection_FlushTimeout(nc, 30000);
}

/* ---------------------------------------------------------------------
 * A counting raw subscriber */

/* first/last are written on the NATS delivery thread and read by main:
 * atomics (ThreadSanitizer, nats.bench.smoke: on_count's write of last
 * raced publish_raw's read). */
typedef struct counter {
  atomic_long n;
  _Atomic double first, last;
} counter;

static void on_count(natsConnection *nc, natsSubscription *sub, natsMsg *m,
                     void *ud)
{
  counter *c = ud;
  (void)nc, (void)sub;
  long k = atomic_fetch_add(&c->n, 1) + 1;
  if (k == 1)
    c->first = now_s();
  if (k == nmsgs)
    c->last = now_s();
  natsMsg_Destroy(m);
}

static natsSubscription *count_sub(natsConnection *nc, const char *subj,
                                   counter *c)
{
  natsSubscription *s = NULL;
  natsConnection_Subscribe(&s, nc, subj, on_count, c);
  natsSubscription_SetPendingLimits(s, -1, -1);
  natsConnection_FlushTimeout(nc, 5000);
  return s;
}

/* 0 once the subscriber got exactly N messages (a 100 ms grace shows
 * duplicates), -1 if fewer within limit_s or more. */
static int wait_count(counter *c, double limit_s)
{
  double end = now_s() + limit_s;
  while (atomic_load(&c->n) < nmsgs && now_s() < end)
    nap_ms(1);
  nap_ms(100);
  return exact("raw subscriber", atomic_load(&c->n));
}

/* ---------------------------------------------------------------------
 * swit */

static swit_host_t *swit_start(const char *subject, int js, const char *script)
{
  char yaml[2048], err[512];
  swit_host_t *h = NULL;
  atomic_store(&swit_seen, 0);
  setenv("SWIT_BENCH_SUBJECT", subject, 1);
  snprintf(yaml, sizeof yaml,
           "server: {name: bench, shutdown_timeout: 5s, admin: {listen: \"off\"}}\n"
           "messaging:\n"
           "  broker:\n"
           "    type: nats\n"
           "    endpoints: [\"%s\"]\n"
           "    config: {jetstream: %s, storage: memory, pending_msgs: 2000000,"
           " pending_bytes: 1GB}\n"
           "  subscribers:\n"
           "    default: {prefetch: 8192}\n"
           "  resources:\n"
           "    subscribers: {worker_pool_size: %d, max_in_flight: 32768}\n"
           "lua:\n"
           "  batch_size: 256\n"
           "  scripts: [%s]\n",
           url, js ? "true" : "false", workers, script);
  if (swit_host_new_from_string(&h, yaml, BENCH_DIR, err, sizeof err) ||
      swit_host_start(h, err, sizeof err)) {
    fprintf(stderr, "bench_nats: swit: %s\n", err);
    swit_host_free(h);
    return NULL;
  }
  return h;
}

/* Seconds from t0 until the Lua handler saw every message; -1 if not
 * within two minutes. */
static double swit_until_all(double t0)
{
  double end = now_s() + 120;
  while (atomic_load(&swit_seen) < nmsgs && now_s() < end)
    nap_ms(1);
  return atomic_load(&swit_seen) >= nmsgs ? atomic_load(&swit_last) - t0 : -1;
}

/* ---------------------------------------------------------------------
 * Cases: each returns messages/s, or -1 */

static double core_consume_raw(void)
{
  char subj[64];
  counter c = { 0 };
  snprintf(subj, sizeof subj, "bench.core.raw.%d", run_no);
  natsConnection *sub = raw_connect(), *pub = raw_connect();
  natsSubscription *s = count_sub(sub, subj, &c);
  double t0 = now_s();
  raw_publish(pub, subj, nmsgs);
  double r = wait_count(&c, 120) ? -1 : nmsgs / (c.last - t0);
  natsSubscription_Destroy(s);
  natsConnection_Destroy(sub);
  natsConnection_Destroy(pub);
  return r;
}

static double core_consume_swit(void)
{
  char subj[64];
  snprintf(subj, sizeof subj, "bench.core.swit.%d", run_no);
  swit_host_t *h = swit_start(subj, 0, "handler.lua");
  if (!h)
    return -1;
  natsConnection *pub = raw_connect();
  nap_ms(20);
  double t0 = now_s();
  raw_publish(pub, subj, nmsgs);
  double t = swit_until_all(t0);
  natsConnection_Destroy(pub);
  swit_host_free(h);   /* workers joined: the count is final */
  return t > 0 && !exact("swit", atomic_load(&swit_seen)) ? nmsgs / t : -1;
}

/* Remove a stream js_fill made (the server keeps them in memory). */
static void js_drop(const char *who)
{
  char name[64];
  jsCtx *js = NULL;
  natsConnection *nc = raw_connect();
  snprintf(name, sizeof name, "BENCH_%s_%d_%d", who, (int)getpid(), run_no);
  if (natsConnection_JetStream(&js, nc, NULL) == NATS_OK)
    js_DeleteStream(js, name, NULL, NULL);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
}

/* A stream holding N messages on a fresh subject. */
static int js_fill(char *subj, size_t len, const char *who)
{
  char name[64];
  jsStreamConfig cfg;
  jsCtx *js = NULL;
  natsConnection *nc = raw_connect();
  snprintf(subj, len, "bench.js.%s.%d.%d", who, (int)getpid(), run_no);
  snprintf(name, sizeof name, "BENCH_%s_%d_%d", who, (int)getpid(), run_no);
  const char *subjects[] = { subj };
  jsStreamConfig_Init(&cfg);
  cfg.Name = name;
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 1;
  cfg.Storage = js_MemoryStorage;
  int rc = natsConnection_JetStream(&js, nc, NULL) ||
           js_AddStream(NULL, js, &cfg, NULL, NULL);
  for (long i = 0; !rc && i < nmsgs; i++)
    rc = js_PublishAsync(js, subj, PAYLOAD, (int)strlen(PAYLOAD), NULL) != NATS_OK;
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = 60000;
  if (!rc)
    rc = js_PublishAsyncComplete(js, &po) != NATS_OK;
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return rc;
}

static double js_consume_raw(void)
{
  char subj[128];
  natsSubscription *s = NULL;
  jsCtx *js = NULL;
  long got = 0;
  double t = 0;
  if (js_fill(subj, sizeof subj, "raw"))
    return -1;
  natsConnection *nc = raw_connect();
  double t0 = now_s();
  if (natsConnection_JetStream(&js, nc, NULL) != NATS_OK ||
      js_PullSubscribe(&s, js, subj, "raw", NULL, NULL, NULL) != NATS_OK)
    goto done;
  while (got < nmsgs) {
    natsMsgList list = { NULL, 0 };
    natsStatus st = natsSubscription_Fetch(&list, s, 256, 5000, NULL);
    for (int i = 0; i < list.Count; i++)
      natsMsg_Ack(list.Msgs[i], NULL);
    got += list.Count;
    natsMsgList_Destroy(&list);
    if (st != NATS_OK && st != NATS_TIMEOUT)
      break;
  }
  natsConnection_FlushTimeout(nc, 5000);
  t = now_s() - t0;
done:
  natsSubscription_Destroy(s);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  js_drop("raw");
  return !exact("raw", got) ? nmsgs / t : -1;
}

static double js_consume_swit(void)
{
  char subj[128];
  if (js_fill(subj, sizeof subj, "swit"))
    return -1;
  double t0 = now_s();
  swit_host_t *h = swit_start(subj, 1, "handler.lua");
  if (!h)
    return -1;
  double t = swit_until_all(t0);
  swit_host_free(h);   /* workers joined: the count is final */
  js_drop("swit");
  return t > 0 && !exact("swit", atomic_load(&swit_seen)) ? nmsgs / t : -1;
}

static double publish_raw(void)
{
  char subj[64];
  counter c = { 0 };
  snprintf(subj, sizeof subj, "bench.pub.raw.%d", run_no);
  natsConnection *sub = raw_connect(), *pub = raw_connect();
  natsSubscription *s = count_sub(sub, subj, &c);
  raw_publish(pub, subj, nmsgs);
  double r = wait_count(&c, 120) ? -1 : nmsgs / (c.last - c.first);
  natsSubscription_Destroy(s);
  natsConnection_Destroy(sub);
  natsConnection_Destroy(pub);
  return r;
}

static double publish_swit(void)
{
  char subj[64], n[32];
  counter c = { 0 };
  snprintf(subj, sizeof subj, "bench.pub.swit.%d", run_no);
  snprintf(n, sizeof n, "%ld", nmsgs);
  setenv("SWIT_BENCH_N", n, 1);
  natsConnection *sub = raw_connect();
  natsSubscription *s = count_sub(sub, subj, &c);
  swit_host_t *h = swit_start(subj, 0, "publish.lua");
  double r = h && !wait_count(&c, 120) ? nmsgs / (c.last - c.first) : -1;
  swit_host_free(h);
  natsSubscription_Destroy(s);
  natsConnection_Destroy(sub);
  return r;
}

/* ---------------------------------------------------------------------
 * Driver */

/* Runs that failed (lost, duplicated or unfinished): exit status 1. */
static int failures;

/* raw and swit alternate run by run, so drift of the machine or the
 * server lands on both sides; medians of completed runs only. */
static void row(const char *name, double (*raw)(void), double (*sw)(void),
                int repeat)
{
  bench_runs r = { .n = 0 }, s = { .n = 0 };
  char rt[96], st[96];
  for (int i = 0; i < repeat; i++) {
    run_no++;
    runs_add(&r, raw());
    run_no++;
    runs_add(&s, sw());
  }
  runs_text(&r, 0, rt, sizeof rt);
  runs_text(&s, 0, st, sizeof st);
  printf("%-16s raw %s msg/s   swit %s msg/s   swit/raw %.2f\n", name, rt, st,
         runs_median(&r) > 0 ? runs_median(&s) / runs_median(&r) : 0.0);
  fflush(stdout);
  failures += r.failed + s.failed;
}

int main(int argc, char **argv)
{
  int repeat = 3;
  const char *only = NULL;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--url"))
      url = argv[i + 1];
    else if (!strcmp(argv[i], "--case"))
      only = argv[i + 1];
    else if (!strcmp(argv[i], "--messages"))
      nmsgs = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--repeat"))
      repeat = atoi(argv[i + 1]);
  }
  if (nmsgs < 1 || repeat < 1 || repeat > 31) {
    fprintf(stderr, "usage: bench_nats --url URL [--messages N] [--repeat R]\n");
    return 2;
  }
  printf("nats benchmark: %ld messages of %zu bytes, %s, median of %d\n",
         nmsgs, strlen(PAYLOAD), url, repeat);
  publish_raw(); /* warm the server up */
  for (workers = 1; workers <= 2; workers++) {
    char name[32];
    snprintf(name, sizeof name, "core consume %dw", workers);
    if (!only || !strcmp(only, "core"))
      row(name, core_consume_raw, core_consume_swit, repeat);
    snprintf(name, sizeof name, "js consume %dw", workers);
    if (!only || !strcmp(only, "js"))
      row(name, js_consume_raw, js_consume_swit, repeat);
  }
  workers = 1;
  if (!only || !strcmp(only, "publish"))
    row("core publish", publish_raw, publish_swit, repeat);
  if (failures)
    fprintf(stderr, "bench_nats: %d run(s) FAILED (lost, duplicated or "
            "unfinished messages)\n", failures);
  return failures ? 1 : 0;
}
