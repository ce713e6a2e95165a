/*
 * tools.c - `swit publish` and `swit tail`: a config's broker reached
 * from the command line, through libswit's public API only (a host made
 * a client with swit_host_client_only: no scripts, no servers).
 *
 *   swit publish CONFIG TOPIC [--key K] [--header N=V]... PAYLOAD
 *   swit publish CONFIG TOPIC [--key K] [--header N=V]... --file F|-
 *       one message, or one per line of F (- = stdin); each publish
 *       waits as messaging.publishers.default says, then everything is
 *       flushed to the broker (swit_host_flush); the count goes to stderr;
 *       the first failure stops with exit 1. With --json each line of F
 *       is an object as `swit tail --json` prints (jsonl.c): key, headers
 *       and payload byte for byte; a line that is not one stops with
 *       exit 2.
 *   swit tail CONFIG TOPIC [--group G] [--from beginning|latest]
 *                          [--count N] [--json]
 *       prints every message that arrives, one line each, until SIGINT,
 *       SIGTERM or N messages (messages of the same batch past N are
 *       acked unprinted: use --count with the tail's own group, the
 *       default swit-tail-<pid>). --from says where a new group starts
 *       (swit_host_handle_from); brokers that keep no history for a new
 *       subscriber refuse `beginning` (exit 2).
 *   swit bench CONFIG TOPIC [--rate R] [--messages N] [--size B]
 *                           [--timeout D]
 *       publishes N messages at R per second (0: as fast as it can) to
 *       TOPIC and receives them in a group of its own started at the
 *       latest message, in one process, after a warm-up probe came
 *       through (the subscription is live end to end): prints what arrived (lost and
 *       duplicated counted by sequence number), the end-to-end rate and
 *       the latency percentiles (send to handler, one monotonic clock);
 *       exit 1 if anything was lost or duplicated, or after D seconds
 *       (default 30) of waiting, or on SIGINT/SIGTERM.
 *
 * On a terminal, publish --file, tail and bench show a progress line on
 * stderr (count, rate, elapsed); piped, they print none.
 *
 * Owns nothing beyond the call: main.c dispatches here.
 */
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "swit/swit.h"
#include "cli/tools.h"

#define MAX_HEADERS 32
#define MAX_TOPIC 249
#define EXIT_RUNTIME 1
#define EXIT_USAGE 2
#define PROGRESS_NS 500000000LL  /* progress line period on a terminal */

static int64_t mono_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* A progress line on stderr when it is a terminal, at most every
 * PROGRESS_NS: "<what> <count> ... <rate>/s <elapsed>s"; progress_end
 * ends it. */
typedef struct progress {
  int on;
  int64_t start, last;
} progress;

static void progress_init(progress *pg)
{
  pg->on = isatty(STDERR_FILENO);
  pg->start = pg->last = mono_ns();
}

static void progress_show(progress *pg, const char *what, uint64_t n,
                          uint64_t of, uint64_t other, const char *oname)
{
  int64_t now;
  double s;

  if (!pg->on || (now = mono_ns()) - pg->last < PROGRESS_NS) return;
  pg->last = now;
  s = (double)(now - pg->start) / 1e9;
  fprintf(stderr, "\r\033[Kswit: %s %" PRIu64, what, n);
  if (of) fprintf(stderr, "/%" PRIu64, of);
  if (oname) fprintf(stderr, ", %s %" PRIu64, oname, other);
  fprintf(stderr, "  %.0f/s  %.1fs", s > 0 ? (double)n / s : 0.0, s);
}

static void progress_end(const progress *pg)
{
  if (pg->on && pg->last != pg->start) fputs("\r\033[K", stderr);
}

static void fail(const char *fmt, const char *a, const char *b)
{
  fprintf(stderr, "swit: ");
  fprintf(stderr, fmt, a, b);
  fputc('\n', stderr);
}

/* A topic a user typed: 1..249 bytes, no space, control byte or NUL. */
static int topic_ok(const char *t)
{
  size_t n = strlen(t);

  if (n == 0 || n > MAX_TOPIC) return 0;
  for (; *t; t++)
    if ((unsigned char)*t <= 0x20 || *t == 0x7f) return 0;
  return 1;
}

static int exit_for(int rc)
{
  return rc == SWIT_E_CONFIG || rc == SWIT_E_SCRIPT ? EXIT_USAGE
                                                    : EXIT_RUNTIME;
}

/* A client host on CONFIG's broker, started; NULL after a message. */
static swit_host_t *client(const char *config, const char *topic,
                           const char *group, int from, swit_handler_cb cb,
                           void *ud, int *code)
{
  swit_host_t *h;
  char err[1024];
  int rc;

  if ((rc = swit_host_new(&h, config, err, sizeof err))) {
    fail("%s%s", err, "");
    *code = exit_for(rc);
    return NULL;
  }
  rc = swit_host_client_only(h, err, sizeof err);
  if (rc == 0 && cb)
    rc = swit_host_handle_from(h, topic, group, SWIT_ORDER_KEY, from, cb, ud,
                               err, sizeof err);
  if (rc == 0) rc = swit_host_start(h, err, sizeof err);
  if (rc) {
    fail("%s%s", err, "");
    swit_host_free(h);
    *code = exit_for(rc);
    return NULL;
  }
  return h;
}

/* ------------------------------------------------------------------ */
/* publish */

typedef struct pub_args {
  const char *config, *topic, *key, *payload, *file;
  const char *headers[2 * MAX_HEADERS + 1];   /* name, value, ..., NULL */
  char *owned[MAX_HEADERS];
  size_t nh;
  int json;                                   /* --json: lines are objects */
} pub_args;

/* One message to a->topic; exit 1 with the reason when it fails. */
static int send_one(swit_host_t *h, const pub_args *a, const char *key,
                    size_t klen, const char *p, size_t len,
                    const char *const *headers, uint64_t *n)
{
  char err[1024];
  int rc = swit_host_publish(h, a->topic, key, klen, p, len, headers, NULL,
                             err, sizeof err);
  if (rc) {
    fprintf(stderr, "swit: publish to '%s' (message %" PRIu64 "): %s\n",
            a->topic, *n + 1, err);
    return EXIT_RUNTIME;
  }
  (*n)++;
  return 0;
}

static int publish_one(swit_host_t *h, const pub_args *a, const char *p,
                       size_t len, uint64_t *n)
{
  return send_one(h, a, a->key, a->key ? strlen(a->key) : 0, p, len,
                  a->headers, n);
}

/* One --json line: exit 2 for a line that is not a message (the ones
 * before it were published), else as publish_one. */
static int publish_json(swit_host_t *h, const pub_args *a, char *line,
                        size_t len, uint64_t *n)
{
  swit__jsonl_msg m;
  const char *why;
  size_t at;

  if (swit__jsonl_parse(line, len, &m, &why, &at)) {
    fprintf(stderr, "swit: publish --json: line %" PRIu64 ", byte %zu: %s "
            "(%" PRIu64 " message(s) published before it)\n", *n + 1, at, why,
            *n);
    return EXIT_USAGE;
  }
  return send_one(h, a, m.key, m.key_len, m.payload, m.payload_len,
                  m.headers, n);
}

static int parse_publish(int argc, char **argv, pub_args *a)
{
  if (argc < 4) return -1;
  a->config = argv[2];
  a->topic = argv[3];
  for (int i = 4; i < argc; i++) {
    const char *o = argv[i];
    if ((!strcmp(o, "--key") || !strcmp(o, "--header") || !strcmp(o, "--file"))
        && i + 1 >= argc) {
      fail("%s: needs a value%s", o, "");
      return -2;
    }
    if (!strcmp(o, "--key")) {
      a->key = argv[++i];
    } else if (!strcmp(o, "--file")) {
      a->file = argv[++i];
    } else if (!strcmp(o, "--json")) {
      a->json = 1;
    } else if (!strcmp(o, "--header")) {
      const char *nv = argv[++i], *eq = strchr(nv, '=');
      char *name;
      if (!eq || eq == nv) {
        fail("--header: expected NAME=VALUE, got '%s'%s", nv, "");
        return -2;
      }
      if (a->nh == MAX_HEADERS) {
        fail("--header: at most 32 headers%s%s", "", "");
        return -2;
      }
      if (!(name = strndup(nv, (size_t)(eq - nv)))) return -2;
      a->owned[a->nh] = name;
      a->headers[2 * a->nh] = name;
      a->headers[2 * a->nh + 1] = eq + 1;
      a->nh++;
    } else if (o[0] == '-' && o[1] == '-') {
      fail("publish: unknown option '%s'%s", o, "");
      return -2;
    } else if (!a->payload) {
      a->payload = o;
    } else {
      return -1;
    }
  }
  if (a->json && (!a->file || a->key || a->nh)) {
    fail("publish: --json reads key, headers and payload from each line of "
         "--file F (or -): %s%s", a->file ? "not with --key or --header"
                                          : "give --file", "");
    return -2;
  }
  if (!a->payload == !a->file) {
    fail("publish: give a PAYLOAD or --file F (- for stdin), not %s%s",
         a->payload ? "both" : "neither", "");
    return -2;
  }
  if (!topic_ok(a->topic)) {
    fail("publish: topic '%s' is empty, longer than 249 bytes or has a "
         "space or control character%s", a->topic, "");
    return -2;
  }
  return 0;
}

int swit__cli_publish(int argc, char **argv)
{
  pub_args a = {0};
  char err[1024];
  swit_host_t *h;
  uint64_t n = 0;
  int code = 0, rc = parse_publish(argc, argv, &a);

  if (rc == 0 && (h = client(a.config, NULL, NULL, SWIT_FROM_DEFAULT, NULL,
                             NULL, &code))) {
    if (a.payload) {
      code = publish_one(h, &a, a.payload, strlen(a.payload), &n);
    } else {
      FILE *f = strcmp(a.file, "-") ? fopen(a.file, "rb") : stdin;
      char *line = NULL;
      size_t cap = 0;
      ssize_t len;
      progress pg;
      progress_init(&pg);
      if (!f) {
        fail("publish: cannot read '%s'%s", a.file, "");
        code = EXIT_USAGE;
      }
      while (f && code == 0 && (len = getline(&line, &cap, f)) >= 0) {
        if (len && line[len - 1] == '\n') len--;
        if (a.json) code = publish_json(h, &a, line, (size_t)len, &n);
        else code = publish_one(h, &a, line, (size_t)len, &n);
        if ((n & 255) == 0) progress_show(&pg, "published", n, 0, 0, NULL);
      }
      progress_end(&pg);
      free(line);
      if (f && f != stdin) fclose(f);
    }
    if (n && swit_host_flush(h, 10000, err, sizeof err) != 0) {
      fprintf(stderr, "swit: %s: %" PRIu64 " message(s) to '%s' may be "
              "lost\n", err, n, a.topic);
      code = EXIT_RUNTIME;
    } else {
      fprintf(stderr, "swit: published %" PRIu64 " message(s) to '%s'\n", n,
              a.topic);
    }
    swit_host_stop(h, -1);
    swit_host_free(h);
  }
  for (size_t i = 0; i < a.nh; i++) free(a.owned[i]);
  if (rc == -1) fputs("usage: swit publish CONFIG TOPIC [--key K] "
                      "[--header N=V]... PAYLOAD | --file F|- [--json]\n",
                      stderr);
  return rc ? EXIT_USAGE : code;
}

/* ------------------------------------------------------------------ */
/* tail */

typedef struct tail_state {
  int json;
  uint64_t max;                 /* 0: no limit */
  atomic_uint_fast64_t seen;
} tail_state;

/* s[0..n) on one line: text (\\ \n \r \t \xNN) or a JSON string body. */
static void put_escaped(FILE *out, const char *s, size_t n, int json)
{
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\\') fputs("\\\\", out);
    else if (c == '\n') fputs("\\n", out);
    else if (c == '\r') fputs("\\r", out);
    else if (c == '\t') fputs("\\t", out);
    else if (json && c == '"') fputs("\\\"", out);
    else if (c < 0x20 || c == 0x7f || (json && c >= 0x80))
      fprintf(out, json ? "\\u%04x" : "\\x%02x", c);
    else fputc(c, out);
  }
}

static int on_message(swit_msg_t *m, void *ud)
{
  tail_state *st = ud;
  const char *name, *value, *key = NULL;
  size_t nlen, vlen, tlen, klen = 0, plen;
  const char *topic = swit_msg_topic(m, &tlen);
  const void *payload = swit_msg_payload(m, &plen);

  key = swit_msg_key(m, &klen);
  if (st->max && atomic_fetch_add(&st->seen, 1) >= st->max)
    return SWIT_ACK;            /* past --count, in the same batch */
  flockfile(stdout);
  if (st->json) {
    fputs("{\"topic\":\"", stdout);
    put_escaped(stdout, topic, tlen, 1);
    fputs("\",\"key\":", stdout);
    if (key) {
      fputc('"', stdout);
      put_escaped(stdout, key, klen, 1);
      fputc('"', stdout);
    } else {
      fputs("null", stdout);
    }
    fputs(",\"headers\":{", stdout);
    for (size_t i = 0; swit_msg_header_at(m, i, &name, &nlen, &value, &vlen);
         i++) {
      fputs(i ? ",\"" : "\"", stdout);
      put_escaped(stdout, name, nlen, 1);
      fputs("\":\"", stdout);
      put_escaped(stdout, value, vlen, 1);
      fputc('"', stdout);
    }
    fputs("},\"payload\":\"", stdout);
    put_escaped(stdout, payload, plen, 1);
    fputs("\"}\n", stdout);
  } else {
    put_escaped(stdout, topic, tlen, 0);
    if (key) {
      fputs(" key=", stdout);
      put_escaped(stdout, key, klen, 0);
    }
    for (size_t i = 0; swit_msg_header_at(m, i, &name, &nlen, &value, &vlen);
         i++) {
      fputc(' ', stdout);
      put_escaped(stdout, name, nlen, 0);
      fputc('=', stdout);
      put_escaped(stdout, value, vlen, 0);
    }
    fputs(" | ", stdout);
    put_escaped(stdout, payload, plen, 0);
    fputc('\n', stdout);
  }
  fflush(stdout);
  funlockfile(stdout);
  if (!st->max) atomic_fetch_add(&st->seen, 1);
  return SWIT_ACK;
}

int swit__cli_tail(int argc, char **argv, const sigset_t *sigs)
{
  tail_state st = {0};
  progress pg;
  const char *group = NULL;
  int from = SWIT_FROM_DEFAULT;
  char gbuf[64];
  swit_host_t *h;
  struct timespec tick = {0, 50 * 1000000L};
  int code = 0;

  if (argc < 4) goto usage;
  for (int i = 4; i < argc; i++) {
    if (!strcmp(argv[i], "--json")) {
      st.json = 1;
    } else if (!strcmp(argv[i], "--from") && i + 1 < argc) {
      i++;
      if (!strcmp(argv[i], "beginning")) {
        from = SWIT_FROM_BEGINNING;
      } else if (!strcmp(argv[i], "latest")) {
        from = SWIT_FROM_LATEST;
      } else {
        fail("tail: --from: expected 'beginning' or 'latest', got '%s'%s",
             argv[i], "");
        return EXIT_USAGE;
      }
    } else if ((!strcmp(argv[i], "--group") || !strcmp(argv[i], "--count"))
               && i + 1 < argc) {
      if (argv[i][2] == 'g') {
        group = argv[++i];
      } else {
        char *end;
        unsigned long long c = strtoull(argv[++i], &end, 10);
        if (*end || c == 0 || argv[i][0] == '-') {
          fail("tail: --count: expected a positive number, got '%s'%s",
               argv[i], "");
          return EXIT_USAGE;
        }
        st.max = c;
      }
    } else {
      goto usage;
    }
  }
  if (!topic_ok(argv[3])) {
    fail("tail: topic '%s' is empty, longer than 249 bytes or has a space "
         "or control character%s", argv[3], "");
    return EXIT_USAGE;
  }
  if (!group) {                 /* a group of its own: it takes nothing
                                   from the service's consumers */
    snprintf(gbuf, sizeof gbuf, "swit-tail-%ld", (long)getpid());
    group = gbuf;
  }
  pthread_sigmask(SIG_BLOCK, sigs, NULL);
  if (!(h = client(argv[2], argv[3], group, from, on_message, &st, &code)))
    return code;
  progress_init(&pg);
  pg.on = pg.on && !isatty(STDOUT_FILENO);  /* not across its own lines */
  for (;;) {
    int sig = sigtimedwait(sigs, NULL, &tick);
    if (sig == SIGINT || sig == SIGTERM) break;
    if (st.max && atomic_load(&st.seen) >= st.max) break;
    progress_show(&pg, "received", atomic_load(&st.seen), st.max, 0, NULL);
  }
  progress_end(&pg);
  swit_host_stop(h, -1);
  swit_host_free(h);
  return 0;
usage:
  fputs("usage: swit tail CONFIG TOPIC [--group G] [--from beginning|latest] "
        "[--count N] [--json]\n", stderr);
  return EXIT_USAGE;
}

/* ------------------------------------------------------------------ */
/* bench */

#define BENCH_OCTAVES 40        /* latency buckets: 1 us .. 2^40 us */
#define BENCH_SUB 8             /* per octave: ~9% resolution */
#define BENCH_SEQ 20            /* payload prefix: the sequence number */

typedef struct bench_state {
  uint64_t n;                   /* messages to send */
  _Atomic uint8_t *seen;        /* [n]: times each arrived (saturating) */
  atomic_uint_fast64_t received, duplicated, alien;
  atomic_int probed;            /* a warm-up probe came through */
  atomic_uint_fast64_t lat[BENCH_OCTAVES * BENCH_SUB];
  _Atomic int64_t max_ns;
} bench_state;

static size_t lat_bucket(int64_t ns)
{
  uint64_t us = ns > 1000 ? (uint64_t)ns / 1000 : 1;
  int o = 63 - __builtin_clzll(us);
  size_t sub = o >= 3 ? (size_t)(us >> (o - 3)) & (BENCH_SUB - 1)
                      : (size_t)(us << (3 - o)) & (BENCH_SUB - 1);
  size_t i = (size_t)o * BENCH_SUB + sub;
  return i < BENCH_OCTAVES * BENCH_SUB ? i : BENCH_OCTAVES * BENCH_SUB - 1;
}

/* The upper bound of bucket i, in milliseconds. */
static double lat_bound_ms(size_t i)
{
  size_t o = i / BENCH_SUB, sub = i % BENCH_SUB;
  return ldexp(1.0 + (double)(sub + 1) / BENCH_SUB, (int)o) / 1000.0;
}

static int bench_message(swit_msg_t *m, void *ud)
{
  bench_state *st = ud;
  size_t plen, vlen;
  const char *p = swit_msg_payload(m, &plen);
  const char *v = swit_msg_header(m, "x-swit-bench-ns", &vlen);
  int64_t now = mono_ns(), sent = 0, max;
  uint64_t seq = 0;

  if (p && plen == 5 && memcmp(p, "probe", 5) == 0) {
    atomic_store(&st->probed, 1);
    return SWIT_ACK;
  }
  if (!p || plen < BENCH_SEQ || !v || vlen == 0 || vlen > 19) {
    atomic_fetch_add(&st->alien, 1);        /* not one of ours */
    return SWIT_ACK;
  }
  for (size_t i = 0; i < BENCH_SEQ; i++) {
    if (p[i] < '0' || p[i] > '9') {
      atomic_fetch_add(&st->alien, 1);
      return SWIT_ACK;
    }
    seq = seq * 10 + (uint64_t)(p[i] - '0');
  }
  for (size_t i = 0; i < vlen; i++)
    sent = sent * 10 + (v[i] >= '0' && v[i] <= '9' ? v[i] - '0' : 0);
  if (seq >= st->n) {
    atomic_fetch_add(&st->alien, 1);
    return SWIT_ACK;
  }
  if (atomic_fetch_add(&st->seen[seq], 1) != 0) {
    atomic_store(&st->seen[seq], 2);        /* saturate */
    atomic_fetch_add(&st->duplicated, 1);
    return SWIT_ACK;
  }
  atomic_fetch_add(&st->received, 1);
  atomic_fetch_add_explicit(&st->lat[lat_bucket(now - sent)], 1,
                            memory_order_relaxed);
  max = atomic_load(&st->max_ns);
  while (now - sent > max &&
         !atomic_compare_exchange_weak(&st->max_ns, &max, now - sent))
    ;
  return SWIT_ACK;
}

/* The q-th latency quantile in ms: its bucket's upper bound, at most
 * the largest latency seen; 0 with none. */
static double lat_quantile(bench_state *st, double q)
{
  uint64_t total = atomic_load(&st->received), want, acc = 0;
  double max = (double)atomic_load(&st->max_ns) / 1e6, b;
  size_t i;

  if (!total) return 0;
  want = (uint64_t)ceil(q * (double)total);
  for (i = 0; i + 1 < BENCH_OCTAVES * BENCH_SUB; i++)
    if ((acc += atomic_load(&st->lat[i])) >= want) break;
  b = lat_bound_ms(i);
  return b < max ? b : max;
}

static int bench_number(const char *opt, const char *v, double lo, double hi,
                        double *out)
{
  char *end;
  double d = strtod(v, &end);

  if (end == v || *end || !(d >= lo && d <= hi)) {
    fprintf(stderr, "swit: bench: %s: expected a number from %.15g to %.15g, got "
            "'%s'\n", opt, lo, hi, v);
    return -1;
  }
  *out = d;
  return 0;
}

int swit__cli_bench(int argc, char **argv, const sigset_t *sigs)
{
  double rate = 1000, msgs = 10000, size = 100, timeout = 30;
  static bench_state st;        /* big (latency buckets): not on the stack */
  char group[64], err[1024], ts[24], *payload = NULL;
  const char *headers[3] = {"x-swit-bench-ns", ts, NULL};
  struct timespec zero = {0, 0}, tick = {0, 50 * 1000000L};
  swit_host_t *h;
  progress pg;
  uint64_t sent = 0;
  int64_t t0, t_end, deadline;
  int code = 0, stopped = 0;

  if (argc < 4) goto usage;
  for (int i = 4; i < argc; i++) {
    double *dst = !strcmp(argv[i], "--rate") ? &rate
                  : !strcmp(argv[i], "--messages") ? &msgs
                  : !strcmp(argv[i], "--size") ? &size
                  : !strcmp(argv[i], "--timeout") ? &timeout : NULL;
    double lo = dst == &msgs ? 1 : dst == &size ? BENCH_SEQ : 0;
    double hi = dst == &rate ? 1e7 : dst == &msgs ? 1e8
                : dst == &size ? 16777216 : 86400;
    if (!dst || i + 1 >= argc) goto usage;
    if (bench_number(argv[i], argv[i + 1], lo, hi, dst)) return EXIT_USAGE;
    if (dst == &timeout && timeout <= 0) {
      fputs("swit: bench: --timeout: expected more than 0 seconds\n", stderr);
      return EXIT_USAGE;
    }
    i++;
  }
  if (msgs != floor(msgs) || size != floor(size)) {
    fputs("swit: bench: --messages and --size are whole numbers\n", stderr);
    return EXIT_USAGE;
  }
  if (!topic_ok(argv[3])) {
    fail("bench: topic '%s' is empty, longer than 249 bytes or has a space "
         "or control character%s", argv[3], "");
    return EXIT_USAGE;
  }
  memset(&st, 0, sizeof st);
  st.n = (uint64_t)msgs;
  if (!(st.seen = calloc(st.n, 1)) || !(payload = malloc((size_t)size))) {
    fputs("swit: bench: out of memory\n", stderr);
    free((void *)st.seen);
    return EXIT_RUNTIME;
  }
  memset(payload, 'x', (size_t)size);
  snprintf(group, sizeof group, "swit-bench-%ld", (long)getpid());
  pthread_sigmask(SIG_BLOCK, sigs, NULL);
  if (!(h = client(argv[2], argv[3], group, SWIT_FROM_LATEST, bench_message,
                   &st, &code))) {
    free((void *)st.seen);
    free(payload);
    return code;
  }
  /* warm-up: probes until one comes through, so the subscription is
   * live end to end (a Kafka group resolves its start after the
   * assignment, a RabbitMQ binding or NATS interest takes a moment) */
  deadline = mono_ns() + (int64_t)(timeout * 1e9);
  for (int64_t next = 0; !atomic_load(&st.probed) && !stopped;) {
    int64_t now = mono_ns();
    if (now >= deadline) {
      fprintf(stderr, "swit: bench: nothing published to '%s' came back "
              "within %.3g s\n", argv[3], timeout);
      code = EXIT_RUNTIME;
      break;
    }
    if (now >= next) {
      if (swit_host_publish(h, argv[3], NULL, 0, "probe", 5, NULL, NULL, err,
                            sizeof err) != 0) {
        fprintf(stderr, "swit: bench: publish: %s\n", err);
        code = EXIT_RUNTIME;
        break;
      }
      next = now + 200000000LL;
    }
    int sig = sigtimedwait(sigs, NULL, &tick);
    stopped = sig == SIGINT || sig == SIGTERM;
  }
  progress_init(&pg);
  t0 = mono_ns();
  for (; sent < st.n && !stopped && code == 0; sent++) {
    char seq[BENCH_SEQ + 1];
    int64_t now = mono_ns();
    if (rate > 0) {             /* message i is due at t0 + i / rate */
      int64_t due = t0 + (int64_t)((double)sent * 1e9 / rate);
      if (due > now) {
        struct timespec d = {due / 1000000000LL, due % 1000000000LL};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &d, NULL);
        now = mono_ns();
      }
    }
    snprintf(seq, sizeof seq, "%020" PRIu64, sent);
    memcpy(payload, seq, BENCH_SEQ);
    snprintf(ts, sizeof ts, "%" PRId64, now);
    if (swit_host_publish(h, argv[3], NULL, 0, payload, (size_t)size,
                          headers, NULL, err, sizeof err) != 0) {
      fprintf(stderr, "%sswit: bench: publish %" PRIu64 ": %s\n",
              pg.on ? "\n" : "", sent + 1, err);
      code = EXIT_RUNTIME;
      break;
    }
    if ((sent & 255) == 0) {
      int sig = sigtimedwait(sigs, NULL, &zero);
      stopped = sig == SIGINT || sig == SIGTERM;
      progress_show(&pg, "sent", sent, st.n,
                    atomic_load(&st.received), "received");
    }
  }
  if (sent && swit_host_flush(h, 10000, err, sizeof err) != 0) {
    fprintf(stderr, "swit: bench: %s\n", err);
    code = EXIT_RUNTIME;
  }
  deadline = mono_ns() + (int64_t)(timeout * 1e9);
  while (!stopped && atomic_load(&st.received) < sent &&
         mono_ns() < deadline) {
    int sig = sigtimedwait(sigs, NULL, &tick);
    stopped = sig == SIGINT || sig == SIGTERM;
    progress_show(&pg, "sent", sent, st.n, atomic_load(&st.received),
                  "received");
  }
  t_end = mono_ns();
  progress_end(&pg);
  swit_host_stop(h, -1);
  {
    uint64_t got = atomic_load(&st.received), dup = atomic_load(&st.duplicated);
    double secs = (double)(t_end - t0) / 1e9;
    printf("sent %" PRIu64 " received %" PRIu64 " lost %" PRIu64
           " duplicated %" PRIu64 " in %.3f s: %.0f msg/s end to end; "
           "latency ms p50 %.3g p90 %.3g p99 %.3g max %.3g\n",
           sent, got, sent - got, dup, secs, secs > 0 ? (double)got / secs : 0,
           lat_quantile(&st, 0.5), lat_quantile(&st, 0.9),
           lat_quantile(&st, 0.99), (double)atomic_load(&st.max_ns) / 1e6);
    if (atomic_load(&st.alien))
      printf("(%" PRIu64 " other message(s) on '%s' ignored)\n",
             (uint64_t)atomic_load(&st.alien), argv[3]);
    if (stopped) fputs("swit: bench: interrupted\n", stderr);
    else if (got < sent)
      fprintf(stderr, "swit: bench: %" PRIu64 " message(s) did not arrive "
              "within %.3g s\n", sent - got, timeout);
    if (stopped || got < sent || dup || sent < st.n) code = EXIT_RUNTIME;
  }
  swit_host_free(h);
  free((void *)st.seen);
  free(payload);
  return code;
usage:
  fputs("usage: swit bench CONFIG TOPIC [--rate R] [--messages N] "
        "[--size B] [--timeout SECONDS]\n", stderr);
  return EXIT_USAGE;
}
