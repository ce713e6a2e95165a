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
 *       the first failure stops with exit 1.
 *   swit tail CONFIG TOPIC [--group G] [--count N] [--json]
 *       prints every message that arrives, one line each, until SIGINT,
 *       SIGTERM or N messages (messages of the same batch past N are
 *       acked unprinted: use --count with the tail's own group, the
 *       default swit-tail-<pid>).
 *
 * Owns nothing beyond the call: main.c dispatches here.
 */
#include <inttypes.h>
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
                           const char *group, swit_handler_cb cb, void *ud,
                           int *code)
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
    rc = swit_host_handle(h, topic, group, SWIT_ORDER_KEY, cb, ud, err,
                          sizeof err);
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
} pub_args;

static int publish_one(swit_host_t *h, const pub_args *a, const char *p,
                       size_t len, uint64_t *n)
{
  char err[1024];
  int rc = swit_host_publish(h, a->topic, a->key, a->key ? strlen(a->key) : 0,
                             p, len, a->headers, NULL, err, sizeof err);
  if (rc) {
    fprintf(stderr, "swit: publish to '%s' (message %" PRIu64 "): %s\n",
            a->topic, *n + 1, err);
    return EXIT_RUNTIME;
  }
  (*n)++;
  return 0;
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

  if (rc == 0 && (h = client(a.config, NULL, NULL, NULL, NULL, &code))) {
    if (a.payload) {
      code = publish_one(h, &a, a.payload, strlen(a.payload), &n);
    } else {
      FILE *f = strcmp(a.file, "-") ? fopen(a.file, "rb") : stdin;
      char *line = NULL;
      size_t cap = 0;
      ssize_t len;
      if (!f) {
        fail("publish: cannot read '%s'%s", a.file, "");
        code = EXIT_USAGE;
      }
      while (f && code == 0 && (len = getline(&line, &cap, f)) >= 0) {
        if (len && line[len - 1] == '\n') len--;
        code = publish_one(h, &a, line, (size_t)len, &n);
      }
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
                      "[--header N=V]... PAYLOAD | --file F|-\n", stderr);
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
  const char *group = NULL;
  char gbuf[64];
  swit_host_t *h;
  struct timespec tick = {0, 50 * 1000000L};
  int code = 0;

  if (argc < 4) goto usage;
  for (int i = 4; i < argc; i++) {
    if (!strcmp(argv[i], "--json")) {
      st.json = 1;
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
  if (!(h = client(argv[2], argv[3], group, on_message, &st, &code)))
    return code;
  for (;;) {
    int sig = sigtimedwait(sigs, NULL, &tick);
    if (sig == SIGINT || sig == SIGTERM) break;
    if (st.max && atomic_load(&st.seen) >= st.max) break;
  }
  swit_host_stop(h, -1);
  swit_host_free(h);
  return 0;
usage:
  fputs("usage: swit tail CONFIG TOPIC [--group G] [--count N] [--json]\n",
        stderr);
  return EXIT_USAGE;
}
