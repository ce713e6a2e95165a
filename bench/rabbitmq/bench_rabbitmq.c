/*
 * bench_rabbitmq.c - swit on RabbitMQ against raw rabbitmq-c, in one run
 * against the same server.
 *
 * Cases (persistent messages of 16 bytes, durable queues; each figure is
 * the median of --repeat runs):
 *   consume   N messages are stored in a queue first; then a raw
 *             rabbitmq-c consumer (basic.qos prefetch P, basic.consume,
 *             amqp_consume_message, one basic.ack with `multiple` per
 *             P/2 messages, as a competent user batches them) vs a swit
 *             host (embedded through libswit, same prefetch, 2 workers)
 *             with a trivial Lua handler that only counts (one FFI call to
 *             bench_rabbitmq_seen, exported by this program). Timed from
 *             connecting / swit_host_start until the last message was
 *             handled.
 *   publish   a raw rabbitmq-c publisher in confirm mode (publishes
 *             pipelined, confirms read as they come, `multiple`
 *             honoured) until every message is confirmed, vs a Lua
 *             on_start calling swit.publish N times (retrying when the
 *             adapter's publish_buffer is full) until the queue holds
 *             all N (the adapter confirms right after that; polled every
 *             5 ms with a passive queue.declare, whose small cost is
 *             counted against swit).
 * For each it prints messages/s, swit/raw, and the CPU time of this
 * process per message (getrusage): on 2 shared cores the broker itself
 * caps throughput near 45-60k msg/s for any client, so client overhead
 * shows in CPU time more than in messages/s. The broker is warmed up
 * first (a fresh broker is slower for its first client). raw and swit
 * alternate run by run; each figure is the median [min-max] of the runs
 * that completed. Figures are not asserted, but a run that lost,
 * duplicated or did not finish its messages (the handler count 300 ms
 * after the N-th, the queue depth past N, the queue not empty after a
 * consume) is reported, left out of the median, and makes the program
 * exit 1 (the ctest smoke run fails).
 *
 *   bench_rabbitmq --url amqp://guest:guest@127.0.0.1:15673
 *                  [--messages N] [--prefetch P] [--repeat R]
 *   (default: 100,000 messages, prefetch 500, 3 runs)
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <swit/swit.h>
#include "../bench_util.h"

#ifndef BENCH_DIR
#define BENCH_DIR "."
#endif

#define PAYLOAD "0123456789abcdef"

static const char *url = "amqp://guest:guest@127.0.0.1:5672";
static long nmsgs = 100000;
static int prefetch = 500;
static int run_no;

static atomic_long swit_seen;
static atomic_int swit_published;

/* Called by bench/rabbitmq/consume.lua and publish.lua through the FFI. */
void bench_rabbitmq_seen(int n);
void bench_rabbitmq_published(void);
void bench_rabbitmq_seen(int n) { atomic_fetch_add(&swit_seen, n); }
void bench_rabbitmq_published(void) { atomic_store(&swit_published, 1); }

static double cpu_s(void)
{
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void die(const char *what, const char *why)
{
  fprintf(stderr, "bench_rabbitmq: %s: %s\n", what, why);
  exit(1);
}

static void check(amqp_connection_state_t c, const char *what)
{
  amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
  if (r.reply_type != AMQP_RESPONSE_NORMAL)
    die(what, r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION
                  ? amqp_error_string2(r.library_error) : "refused by the server");
}

/* ---------------------------------------------------------------------
 * Raw rabbitmq-c */

static amqp_connection_state_t raw_connect(void)
{
  struct amqp_connection_info ci;
  char *u = strdup(url);
  amqp_connection_state_t c = amqp_new_connection();
  amqp_socket_t *s = amqp_tcp_socket_new(c);
  if (!u || amqp_parse_url(u, &ci) != AMQP_STATUS_OK)
    die("url", url);
  if (amqp_socket_open(s, ci.host, ci.port) != AMQP_STATUS_OK)
    die("connect", url);
  amqp_rpc_reply_t r = amqp_login(c, *ci.vhost ? ci.vhost : "/", 0, 131072, 0,
                                  AMQP_SASL_METHOD_PLAIN, ci.user, ci.password);
  if (r.reply_type != AMQP_RESPONSE_NORMAL)
    die("login", url);
  free(u);
  amqp_channel_open(c, 1);
  check(c, "channel.open");
  return c;
}

static void raw_close(amqp_connection_state_t c)
{
  amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
  amqp_connection_close(c, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(c);
}

/* A durable queue bound to the swit exchange with its own name as key. */
static void raw_queue(amqp_connection_state_t c, const char *q)
{
  amqp_exchange_declare(c, 1, amqp_cstring_bytes("swit"),
                        amqp_cstring_bytes("topic"), 0, 1, 0, 0, amqp_empty_table);
  check(c, "exchange.declare");
  amqp_queue_declare(c, 1, amqp_cstring_bytes(q), 0, 1, 0, 0, amqp_empty_table);
  check(c, "queue.declare");
  amqp_queue_bind(c, 1, amqp_cstring_bytes(q), amqp_cstring_bytes("swit"),
                  amqp_cstring_bytes(q), amqp_empty_table);
  check(c, "queue.bind");
}

static void raw_delete(const char *q)
{
  amqp_connection_state_t c = raw_connect();
  amqp_queue_delete(c, 1, amqp_cstring_bytes(q), 0, 0);
  raw_close(c);
}

/* Read confirms already available (or wait for one when `block`). */
static long read_confirms(amqp_connection_state_t c, long confirmed, int block)
{
  struct timeval zero = { 0, 0 };
  for (;;) {
    amqp_frame_t f;
    int rc = amqp_simple_wait_frame_noblock(c, &f, block ? NULL : &zero);
    if (rc == AMQP_STATUS_TIMEOUT)
      return confirmed;
    if (rc != AMQP_STATUS_OK)
      die("confirms", amqp_error_string2(rc));
    if (f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
      const amqp_basic_ack_t *a = f.payload.method.decoded;
      confirmed = a->multiple ? (long)a->delivery_tag : confirmed + 1;
    }
    block = 0;
  }
}

/* Publish n persistent messages with confirms, waiting for all. */
static void raw_publish(const char *key, long n)
{
  amqp_connection_state_t c = raw_connect();
  amqp_basic_properties_t p = { ._flags = AMQP_BASIC_DELIVERY_MODE_FLAG,
                                .delivery_mode = 2 };
  long confirmed = 0;
  amqp_confirm_select(c, 1);
  check(c, "confirm.select");
  for (long i = 0; i < n; i++) {
    if (amqp_basic_publish(c, 1, amqp_cstring_bytes("swit"), amqp_cstring_bytes(key),
                           0, 0, &p, amqp_cstring_bytes(PAYLOAD)) < 0)
      die("publish", key);
    if (i % 256 == 255)
      confirmed = read_confirms(c, confirmed, 0);
  }
  while (confirmed < n)
    confirmed = read_confirms(c, confirmed, 1);
  amqp_maybe_release_buffers(c);
  raw_close(c);
}

/* Consume n messages with prefetch, acking with `multiple` every
 * prefetch/2 messages and at the end. */
static void raw_consume(const char *q, long n)
{
  long every = prefetch / 2 > 0 ? prefetch / 2 : 1;
  amqp_connection_state_t c = raw_connect();
  amqp_basic_qos(c, 1, 0, (uint16_t)prefetch, 0);
  check(c, "basic.qos");
  amqp_basic_consume(c, 1, amqp_cstring_bytes(q), amqp_empty_bytes, 0, 0, 0,
                     amqp_empty_table);
  check(c, "basic.consume");
  for (long i = 0; i < n; i++) {
    amqp_envelope_t e;
    amqp_maybe_release_buffers(c);
    amqp_rpc_reply_t r = amqp_consume_message(c, &e, NULL, 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL)
      die("consume", q);
    if ((i + 1) % every == 0 || i + 1 == n)
      amqp_basic_ack(c, 1, e.delivery_tag, 1);
    amqp_destroy_envelope(&e);
  }
  raw_close(c);
}

/* ---------------------------------------------------------------------
 * swit */

static swit_host_t *swit_start(const char *topic, const char *script)
{
  char yaml[2048], err[512];
  swit_host_t *h = NULL;
  setenv("SWIT_BENCH_TOPIC", topic, 1);
  snprintf(yaml, sizeof yaml,
           "server: {name: bench, shutdown_timeout: 10s, admin: {listen: \"off\"}}\n"
           "messaging:\n"
           "  broker:\n"
           "    type: rabbitmq\n"
           "    endpoints: [\"%s\"]\n"
           "  subscribers:\n"
           "    default: {prefetch: %d}\n"
           "  resources:\n"
           "    subscribers: {worker_pool_size: 2, max_in_flight: 32768}\n"
           "lua:\n"
           "  batch_size: 256\n"
           "  scripts: [%s]\n",
           url, prefetch, script);
  if (swit_host_new_from_string(&h, yaml, BENCH_DIR, err, sizeof err) ||
      swit_host_start(h, err, sizeof err)) {
    fprintf(stderr, "bench_rabbitmq: swit: %s\n", err);
    swit_host_free(h);
    return NULL;
  }
  return h;
}

/* Messages in queue q (passive declare). */
static long queue_depth(amqp_connection_state_t c, const char *q)
{
  amqp_queue_declare_ok_t *ok = amqp_queue_declare(c, 1, amqp_cstring_bytes(q),
                                                   1, 0, 0, 0, amqp_empty_table);
  check(c, "queue.declare (passive)");
  return ok ? (long)ok->message_count : 0;
}

/* ---------------------------------------------------------------------
 * Cases: each fills *rate (messages/s) and *cpu (CPU us per message) */

typedef struct figure {
  double rate, cpu_us;
} figure;

/* A run that failed: never in a median, exit status 1. */
static const figure bad = { -1, -1 };

/* 0 if `got` is exactly N; otherwise says what went wrong, -1. */
static int exact(const char *who, long got)
{
  if (got == nmsgs)
    return 0;
  fprintf(stderr, "bench_rabbitmq: FAILED run: %s: %ld of %ld messages (%s)\n",
          who, got, nmsgs, got < nmsgs ? "lost or unfinished" : "duplicates");
  return -1;
}

/* Messages left in queue q after a consume: 0, or the run failed. */
static int drained(const char *who, const char *q)
{
  amqp_connection_state_t c = raw_connect();
  long left = queue_depth(c, q);
  raw_close(c);
  if (left == 0)
    return 0;
  fprintf(stderr, "bench_rabbitmq: FAILED run: %s left %ld message(s) in %s\n",
          who, left, q);
  return -1;
}

static figure finish(double t0, double c0, long n)
{
  figure f = { n / (now_s() - t0), (cpu_s() - c0) * 1e6 / n };
  return f;
}

static figure consume_raw(void)
{
  char q[64];
  snprintf(q, sizeof q, "bench.raw.consume.%d", run_no);
  amqp_connection_state_t c = raw_connect();
  raw_queue(c, q);
  raw_close(c);
  raw_publish(q, nmsgs);
  double t0 = now_s(), c0 = cpu_s();
  raw_consume(q, nmsgs);
  figure f = finish(t0, c0, nmsgs);
  if (drained("raw consumer", q))
    f = bad;
  raw_delete(q);
  return f;
}

static void swit_delete_queues(const char *topic)
{
  char q[128];
  snprintf(q, sizeof q, "bench.%s", topic);
  raw_delete(q);
  snprintf(q, sizeof q, "bench.%s.dlq", topic);
  raw_delete(q);
}

static figure consume_swit(void)
{
  char topic[64], q[128];
  snprintf(topic, sizeof topic, "bench.swit.consume.%d", run_no);
  swit_host_t *h = swit_start(topic, "consume.lua"); /* declares the queue */
  if (!h)
    return bad;
  swit_host_free(h);
  raw_publish(topic, nmsgs);
  atomic_store(&swit_seen, 0);
  double t0 = now_s(), c0 = cpu_s(), end = t0 + 60 + nmsgs / 1000.0; /* ample: >= 1,000 msg/s */
  if (!(h = swit_start(topic, "consume.lua")))
    return bad;
  while (atomic_load(&swit_seen) < nmsgs && now_s() < end)
    nap_ms(2);
  figure f = finish(t0, c0, nmsgs);
  nap_ms(300);         /* anything past N is a duplicate */
  swit_host_free(h);   /* workers joined, acks sent: the count is final */
  snprintf(q, sizeof q, "bench.%s", topic);
  if (exact("swit handler", atomic_load(&swit_seen)) || drained("swit", q))
    f = bad;
  swit_delete_queues(topic);
  return f;
}

static figure publish_raw(void)
{
  char q[64];
  snprintf(q, sizeof q, "bench.raw.publish.%d", run_no);
  amqp_connection_state_t c = raw_connect();
  raw_queue(c, q);
  raw_close(c);
  double t0 = now_s(), c0 = cpu_s();
  raw_publish(q, nmsgs);
  figure f = finish(t0, c0, nmsgs);
  c = raw_connect();
  if (exact("queue depth after the raw publish", queue_depth(c, q)))
    f = bad;
  raw_close(c);
  raw_delete(q);
  return f;
}

static figure publish_swit(void)
{
  char q[64];
  snprintf(q, sizeof q, "bench.swit.publish.%d", run_no);
  amqp_connection_state_t c = raw_connect();
  raw_queue(c, q);
  atomic_store(&swit_published, 0);
  double t0 = now_s(), c0 = cpu_s(), end = t0 + 60 + nmsgs / 1000.0; /* ample: >= 1,000 msg/s */
  swit_host_t *h = swit_start(q, "publish.lua");
  if (!h) {
    raw_close(c);
    return bad;
  }
  while (!atomic_load(&swit_published) && now_s() < end)
    nap_ms(5);
  long depth = 0;
  while ((depth = queue_depth(c, q)) < nmsgs && now_s() < end)
    nap_ms(5);
  figure f = finish(t0, c0, nmsgs);
  swit_host_free(h);   /* every confirm is in */
  if (exact("queue depth after the swit publish", queue_depth(c, q)))
    f = bad;
  raw_close(c);
  raw_delete(q);
  return f;
}

/* ---------------------------------------------------------------------
 * Main */

static void usage(void)
{
  fprintf(stderr, "usage: bench_rabbitmq --url AMQP_URL [--messages N] "
                  "[--prefetch P] [--repeat R]\n");
  exit(2);
}

/* Runs that failed (lost, duplicated or unfinished): exit status 1. */
static int failures;

static void report(const char *what, figure *raw, figure *sw, int reps)
{
  bench_runs rr = { .n = 0 }, rc = { .n = 0 }, sr = { .n = 0 }, sc = { .n = 0 };
  char t[4][96];
  for (int i = 0; i < reps; i++) {
    runs_add(&rr, raw[i].rate);
    runs_add(&rc, raw[i].cpu_us);
    runs_add(&sr, sw[i].rate);
    runs_add(&sc, sw[i].cpu_us);
  }
  runs_text(&rr, 0, t[0], sizeof t[0]);
  runs_text(&rc, 2, t[1], sizeof t[1]);
  runs_text(&sr, 0, t[2], sizeof t[2]);
  runs_text(&sc, 2, t[3], sizeof t[3]);
  printf("%-8s raw rabbitmq-c %s msg/s, %s us CPU/msg | swit %s msg/s, "
         "%s us CPU/msg | swit/raw %.2f\n", what, t[0], t[1], t[2], t[3],
         runs_median(&rr) > 0 ? runs_median(&sr) / runs_median(&rr) : 0);
  failures += rr.failed + sr.failed;
}

int main(int argc, char **argv)
{
  int reps = 3;
  for (int i = 1; i < argc; i++) {
    if (i + 1 >= argc)
      usage();
    if (!strcmp(argv[i], "--url"))
      url = argv[++i];
    else if (!strcmp(argv[i], "--messages"))
      nmsgs = atol(argv[++i]);
    else if (!strcmp(argv[i], "--prefetch"))
      prefetch = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--repeat"))
      reps = atoi(argv[++i]);
    else
      usage();
  }
  if (nmsgs < 1 || reps < 1 || reps > 64 || prefetch < 1 || prefetch > 65535)
    usage();
  char count[32];
  snprintf(count, sizeof count, "%ld", nmsgs);
  setenv("SWIT_BENCH_MESSAGES", count, 1);
  run_no = (int)getpid() * 100;
  printf("bench_rabbitmq: %ld persistent messages of %zu bytes, prefetch %d, "
         "median of %d runs, %s\n", nmsgs, strlen(PAYLOAD), prefetch, reps, url);
  fflush(stdout);
  consume_raw(); /* warm the broker up */
  figure cr[64], cs[64], pr[64], ps[64];
  for (int i = 0; i < reps; i++) {
    run_no++;
    cr[i] = consume_raw();
    cs[i] = consume_swit();
    pr[i] = publish_raw();
    ps[i] = publish_swit();
  }
  report("consume", cr, cs, reps);
  report("publish", pr, ps, reps);
  if (failures)
    fprintf(stderr, "bench_rabbitmq: %d run(s) FAILED (lost, duplicated or "
            "unfinished messages)\n", failures);
  return failures ? 1 : 0;
}
