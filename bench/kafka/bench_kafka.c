/*
 * bench_kafka.c - swit on Kafka against raw librdkafka, in one run on one
 * mock cluster (swit-kafka-mock, 3 brokers, started by this program).
 *
 * Each run uses fresh 16-partition topics:
 *   produce  raw: a loop of rd_kafka_producev (key, 64-byte value) and a
 *            flush; swit: a Lua on_start calling swit.publish N times;
 *            both timed by a raw consumer assigned to the topic (no
 *            group) from the first message it receives to the last;
 *   consume  the raw producer's topic, read from the beginning by a raw
 *            consumer (rd_kafka_consumer_poll + rd_kafka_offset_store, no
 *            work; auto commit) and by swit with a trivial Lua handler
 *            (one FFI call to bench_kafka_seen, exported by this program),
 *            each in its own group, timed from its first message to its
 *            last.
 * Client settings, the same on both sides: enable.idempotence=true and
 * queue.buffering.max.messages=2000000 (producers), queued.min.messages=
 * 1000000 (consumers: librdkafka's default stalls fetching for ~1 s at
 * 100000), auto.offset.reset=earliest, other librdkafka defaults; swit
 * with lua.batch_size 256, max_in_flight 65536 (so backpressure does not
 * pause the partitions), ordering "key", metrics on (--metrics off turns
 * the host's counters off); swit consumes once with 1 worker and once
 * with 2 (on 2 cores the second competes with librdkafka's threads). N
 * defaults to 320,000: 20,000 per partition, well under the mock's ~5 MB
 * per partition. Prints messages/s and swit/raw; each figure is the
 * median of --repeat runs (default 5), raw and swit alternating run by
 * run, with min..max. Figures are not asserted, but every reader keeps
 * reading 300 ms past the N-th message, and a run that lost, duplicated
 * or did not finish its messages is reported, left out of the median,
 * and makes the program exit 1 (the ctest smoke run fails).
 *
 *   bench_kafka [--messages N] [--repeat R] [--metrics on|off] [--mock PATH]
 *
 * One thread drives everything; librdkafka and swit run their own.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <swit/swit.h>
#include "../bench_util.h"

#ifndef BENCH_DIR
#define BENCH_DIR "."
#endif

#define PARTITIONS 16
#define KEYS 1024
#define PAYLOAD "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static long nmsgs = 320000;
static int repeats = 5;
static const char *metrics = "true"; /* --metrics on|off */
static const char *mock_bin = "swit-kafka-mock";
static char bootstrap[512];

/* What the Lua handler saw: count, first and last time. */
static atomic_long swit_seen;
static _Atomic double swit_first, swit_last;

/* Called by bench/kafka/consume.lua through the FFI (ffi.C). */
void bench_kafka_seen(int n);
void bench_kafka_seen(int n)
{
  long k = atomic_fetch_add(&swit_seen, n) + n;
  if (k == n)
    atomic_store(&swit_first, now_s());
  if (k == nmsgs)
    atomic_store(&swit_last, now_s());
}

/* ---------------------------------------------------------------------
 * The mock cluster */

static pid_t mock_start(char *dir, size_t dirlen)
{
  static const char *const kinds[] = {"in", "out", "warm"};
  static char names[40][32];
  char path[600];
  char *argv[96];
  int argc = 0;
  pid_t pid;

  snprintf(dir, dirlen, "/tmp/bench_kafka.XXXXXX");
  if (!mkdtemp(dir))
    return -1;
  snprintf(path, sizeof path, "%s/bootstrap", dir);
  argv[argc++] = (char *)mock_bin;
  argv[argc++] = "--brokers";
  argv[argc++] = "3";
  argv[argc++] = "--bootstrap-file";
  argv[argc++] = path;
  int k = 0;
  for (int r = 0; r <= repeats && k + 3 <= 40; r++) {
    for (int i = 0; i < 3; i++) {
      snprintf(names[k], sizeof names[k], "bench.%s.%d:%d", kinds[i], r,
               PARTITIONS);
      argv[argc++] = "--topic";
      argv[argc++] = names[k++];
    }
  }
  argv[argc] = NULL;
  if ((pid = fork()) == 0) {
    if (!freopen("/dev/null", "w", stdout))
      _exit(127);
    execvp(mock_bin, argv);
    fprintf(stderr, "bench_kafka: cannot run %s: %s\n", mock_bin,
            strerror(errno));
    _exit(127);
  }
  for (int i = 0; pid > 0 && i < 200; i++) {
    FILE *f = fopen(path, "r");
    if (f) {
      int ok = fgets(bootstrap, sizeof bootstrap, f) != NULL;
      fclose(f);
      if (ok) {
        bootstrap[strcspn(bootstrap, "\n")] = '\0';
        return pid;
      }
    }
    nap_ms(50);
  }
  return -1;
}

static void mock_stop(pid_t pid, const char *dir)
{
  char path[600];
  if (pid > 0) {
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
  }
  snprintf(path, sizeof path, "%s/bootstrap", dir);
  unlink(path);
  rmdir(dir);
}

/* 0 if `got` is exactly N; otherwise says what went wrong, -1. */
static int exact(const char *who, long got)
{
  if (got == nmsgs)
    return 0;
  fprintf(stderr, "bench_kafka: FAILED run: %s got %ld of %ld messages (%s)\n",
          who, got, nmsgs, got < nmsgs ? "lost or unfinished" : "duplicates");
  return -1;
}

/* ---------------------------------------------------------------------
 * Raw librdkafka */

static rd_kafka_t *raw_client(rd_kafka_type_t type, const char *group)
{
  static const char *const common[][2] = {
    {"log_level", "3"},
  };
  static const char *const prod[][2] = {
    {"enable.idempotence", "true"},
    {"queue.buffering.max.messages", "2000000"},
  };
  static const char *const cons[][2] = {
    {"queued.min.messages", "1000000"},
    {"auto.offset.reset", "earliest"},
    {"enable.auto.offset.store", "false"},
  };
  char err[512];
  rd_kafka_conf_t *c = rd_kafka_conf_new();
  int bad = rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, err, sizeof err);
  bad |= rd_kafka_conf_set(c, common[0][0], common[0][1], err, sizeof err);
  for (size_t i = 0; type == RD_KAFKA_PRODUCER && i < 2; i++)
    bad |= rd_kafka_conf_set(c, prod[i][0], prod[i][1], err, sizeof err);
  for (size_t i = 0; type == RD_KAFKA_CONSUMER && i < 3; i++)
    bad |= rd_kafka_conf_set(c, cons[i][0], cons[i][1], err, sizeof err);
  if (group)
    bad |= rd_kafka_conf_set(c, "group.id", group, err, sizeof err);
  rd_kafka_t *rk = bad ? NULL : rd_kafka_new(type, c, err, sizeof err);
  if (!rk) {
    fprintf(stderr, "bench_kafka: %s\n", err);
    exit(1);
  }
  return rk; /* conf owned by rk */
}

/* Produce n messages and wait for their delivery reports. */
static int raw_produce(const char *topic, long n)
{
  static char keys[KEYS][8];
  rd_kafka_t *rk = raw_client(RD_KAFKA_PRODUCER, NULL);
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);

  for (int i = 0; i < KEYS; i++)
    snprintf(keys[i], sizeof keys[i], "k%d", i);
  for (long i = 0; i < n; i++) {
    const char *key = keys[i % KEYS];
    while (rd_kafka_producev(rk, RD_KAFKA_V_RKT(rkt),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_KEY(key, strlen(key)),
                             RD_KAFKA_V_VALUE(PAYLOAD, sizeof PAYLOAD - 1),
                             RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
      rd_kafka_poll(rk, 1);
    rd_kafka_poll(rk, 0);
  }
  int left = rd_kafka_flush(rk, 120000);
  rd_kafka_topic_destroy(rkt);
  rd_kafka_destroy(rk);
  return left ? -1 : 0;
}

static double raw_consume(const char *topic, const char *group, long n)
{
  rd_kafka_t *rk = raw_client(RD_KAFKA_CONSUMER, group);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  double first = 0, last = 0, end = now_s() + 120;
  long seen = 0;

  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_partition_list_add(l, topic, RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  /* until N, then 300 ms more: anything past N is a duplicate */
  while (now_s() < end && (seen < n || now_s() < last + 0.3)) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
    if (!m)
      continue;
    if (!m->err) {
      if (seen++ == 0)
        first = now_s();
      rd_kafka_offset_store(m->rkt, m->partition, m->offset);
      if (seen == n)
        last = now_s();
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return exact("raw consumer", seen) ? -1 : n / (last - first);
}

/* A raw consumer assigned to every partition of a topic (no group),
 * timing the first and the last of N messages it receives: how both
 * producers are timed. Runs on its own thread. */
typedef struct watcher {
  rd_kafka_t *rk;
  pthread_t thread;
  atomic_int ready;
  long seen;
  double first, last;
} watcher;

static void *watch_main(void *arg)
{
  watcher *w = arg;
  double end = now_s() + 180;
  atomic_store(&w->ready, 1);
  /* until N, then 300 ms more: anything past N is a duplicate */
  while (now_s() < end && (w->seen < nmsgs || now_s() < w->last + 0.3)) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(w->rk, 100);
    if (!m)
      continue;
    if (!m->err) {
      if (w->seen++ == 0)
        w->first = now_s();
      if (w->seen == nmsgs)
        w->last = now_s();
    }
    rd_kafka_message_destroy(m);
  }
  return NULL;
}

static void watch_start(watcher *w, const char *topic)
{
  rd_kafka_topic_partition_list_t *l =
      rd_kafka_topic_partition_list_new(PARTITIONS);
  char group[80];
  memset(w, 0, sizeof *w);
  /* consumer_poll needs a group.id; assign() never joins it */
  snprintf(group, sizeof group, "bench.watch.%s", topic);
  w->rk = raw_client(RD_KAFKA_CONSUMER, group);
  rd_kafka_poll_set_consumer(w->rk);
  for (int p = 0; p < PARTITIONS; p++)
    rd_kafka_topic_partition_list_add(l, topic, p)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(w->rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  pthread_create(&w->thread, NULL, watch_main, w);
  while (!atomic_load(&w->ready))
    nap_ms(1);
  nap_ms(500); /* its fetchers are up before the producer starts */
}

/* messages/s the watcher saw, or -1. */
static double watch_end(watcher *w)
{
  pthread_join(w->thread, NULL);
  rd_kafka_destroy(w->rk);
  return exact("watching consumer", w->seen) ? -1 : nmsgs / (w->last - w->first);
}

/* ---------------------------------------------------------------------
 * swit */

static swit_host_t *swit_start(const char *topic, const char *group,
                               const char *script, int workers)
{
  char yaml[2048], err[512], n[32];
  swit_host_t *h = NULL;

  atomic_store(&swit_seen, 0);
  setenv("SWIT_BENCH_TOPIC", topic, 1);
  setenv("SWIT_BENCH_GROUP", group, 1);
  snprintf(n, sizeof n, "%ld", nmsgs);
  setenv("SWIT_BENCH_N", n, 1);
  snprintf(yaml, sizeof yaml,
           "server: {name: bench, shutdown_timeout: 5s, "
           "admin: {listen: \"off\"}, metrics: {enabled: %s}}\n"
           "messaging:\n"
           "  broker:\n"
           "    type: kafka\n"
           "    endpoints: [\"%s\"]\n"
           "    config:\n"
           "      consumer.queued.min.messages: 1000000\n"
           "      producer.queue.buffering.max.messages: 2000000\n"
           "      log_level: 3\n"
           "  resources:\n"
           "    subscribers: {worker_pool_size: %d, max_in_flight: 65536}\n"
           "lua:\n"
           "  batch_size: 256\n"
           "  scripts: [%s]\n",
           metrics, bootstrap, workers, script);
  if (swit_host_new_from_string(&h, yaml, BENCH_DIR, err, sizeof err) ||
      swit_host_start(h, err, sizeof err)) {
    fprintf(stderr, "bench_kafka: swit: %s\n", err);
    swit_host_free(h);
    return NULL;
  }
  return h;
}

static double swit_consume(const char *topic, const char *group, int workers)
{
  swit_host_t *h = swit_start(topic, group, "consume.lua", workers);
  double end = now_s() + 120, r = -1;

  if (!h)
    return -1;
  while (atomic_load(&swit_seen) < nmsgs && now_s() < end)
    nap_ms(1);
  if (atomic_load(&swit_seen) >= nmsgs)
    r = nmsgs / (atomic_load(&swit_last) - atomic_load(&swit_first));
  nap_ms(300);         /* anything past N is a duplicate */
  swit_host_free(h);   /* workers joined: the count is final */
  return exact("swit", atomic_load(&swit_seen)) ? -1 : r;
}

static double raw_produce_timed(const char *topic)
{
  watcher w;
  watch_start(&w, topic);
  int rc = raw_produce(topic, nmsgs);
  double r = watch_end(&w);
  return rc ? -1 : r;
}

static double swit_produce(const char *topic)
{
  watcher w;
  watch_start(&w, topic);
  swit_host_t *h = swit_start(topic, "none", "produce.lua", 2);
  double r = watch_end(&w);
  swit_host_free(h);
  return h ? r : -1;
}

/* ---------------------------------------------------------------------
 * Main */

static void usage(void)
{
  fprintf(stderr, "usage: bench_kafka [--messages N] [--repeat R] "
          "[--metrics on|off] [--mock PATH]\n");
  exit(2);
}

static void parse_args(int argc, char **argv)
{
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 >= argc)
      usage();
    if (!strcmp(argv[i], "--messages"))
      nmsgs = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--repeat"))
      repeats = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--mock"))
      mock_bin = argv[i + 1];
    else if (!strcmp(argv[i], "--metrics") && (!strcmp(argv[i + 1], "on") ||
                                               !strcmp(argv[i + 1], "off")))
      metrics = strcmp(argv[i + 1], "on") ? "false" : "true";
    else
      usage();
  }
  if (nmsgs < 1000 || repeats < 1 || repeats > 12)
    usage();
}

/* Runs that failed (lost, duplicated or unfinished): exit status 1. */
static int failures;

static void print_row(const char *what, double *raw, double *sw)
{
  bench_runs r = { .n = 0 }, s = { .n = 0 };
  char rt[96], st[96];
  for (int i = 0; i < repeats; i++) {
    runs_add(&r, raw[i]);
    runs_add(&s, sw[i]);
  }
  runs_text(&r, 0, rt, sizeof rt);
  runs_text(&s, 0, st, sizeof st);
  printf("%-20s %28s %28s   %.2f\n", what, rt, st,
         runs_median(&r) > 0 ? runs_median(&s) / runs_median(&r) : 0);
  failures += r.failed + s.failed;
}

int main(int argc, char **argv)
{
  double rp[12], sp[12], rc[12], sc1[12], sc2[12], rc2[12];
  char dir[64], t_in[64], t_out[64], g[64];
  pid_t mock;

  parse_args(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  if ((mock = mock_start(dir, sizeof dir)) < 0) {
    fprintf(stderr, "bench_kafka: cannot start %s\n", mock_bin);
    return 1;
  }
  printf("bench_kafka: %ld messages of %zu bytes, keys k0..k%d, "
         "%d-partition topics, mock cluster of 3 brokers\n",
         nmsgs, sizeof PAYLOAD - 1, KEYS - 1, PARTITIONS);
  raw_produce("bench.warm.0", nmsgs / 4); /* a fresh mock is slower at first */
  for (int r = 0; r < repeats; r++) {
    snprintf(t_in, sizeof t_in, "bench.in.%d", r + 1);
    snprintf(t_out, sizeof t_out, "bench.out.%d", r + 1);
    rp[r] = raw_produce_timed(t_in);
    sp[r] = swit_produce(t_out);
    snprintf(g, sizeof g, "bench.raw.%d", r);
    rc[r] = rc2[r] = raw_consume(t_in, g, nmsgs);
    snprintf(g, sizeof g, "bench.swit1.%d", r);
    sc1[r] = swit_consume(t_in, g, 1);
    snprintf(g, sizeof g, "bench.swit2.%d", r);
    sc2[r] = swit_consume(t_in, g, 2);
    fprintf(stderr, "run %d: produce raw %.0f swit %.0f; consume raw %.0f, "
            "swit 1 worker %.0f, 2 workers %.0f msg/s\n", r + 1, rp[r], sp[r],
            rc[r], sc1[r], sc2[r]);
  }
  printf("client settings on both sides: enable.idempotence=true, "
         "queue.buffering.max.messages=2000000 (producers), "
         "queued.min.messages=1000000 (consumers), auto.offset.reset="
         "earliest; swit: lua.batch_size 256, max_in_flight 65536, ordering "
         "key, metrics %s\n", strcmp(metrics, "true") ? "off" : "on");
  printf("median [min-max] of %d run(s), msg/s   raw librdkafka   "
         "swit, Lua   swit/raw\n", repeats);
  print_row("produce (2 workers)", rp, sp);
  print_row("consume (1 worker)", rc, sc1);
  print_row("consume (2 workers)", rc2, sc2);
  mock_stop(mock, dir);
  if (failures)
    fprintf(stderr, "bench_kafka: %d run(s) FAILED (lost, duplicated or "
            "unfinished messages)\n", failures);
  return failures ? 1 : 0;
}
