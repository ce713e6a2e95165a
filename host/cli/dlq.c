/*
 * dlq.c - `swit dlq replay`: dead letters published again to the topic
 * they came from, through libswit's public API only (a client host: no
 * scripts, no servers).
 *
 *   swit dlq replay CONFIG DLQ_TOPIC [--group G] [--to TOPIC] [--max N]
 *                   [--idle S] [--timeout S]
 *
 * Each message of DLQ_TOPIC is published to its x-swit-origin-topic (or
 * to --to) with its key, payload and headers less the x-swit-* ones the
 * dead-lettering added, so it starts again at attempt 1; it is acked in
 * DLQ_TOPIC only once that publish was accepted. A message that cannot
 * be replayed as it is (no origin and no --to, a header with a NUL byte
 * that the C API cannot carry) is rejected: it goes on to the dead-letter
 * topic of the replay's own subscription (DLQ_TOPIC.dlq) with the reason,
 * never dropped, and is counted. A failed publish is retried per the
 * subscriber config of G (or default), then dead-lettered the same way.
 *
 * It stops after N messages, when nothing arrived for S seconds (--idle,
 * default 10: a Kafka group takes seconds to join), at --timeout
 * (default 300 s: exit 1), or at SIGINT/SIGTERM; then prints what it did.
 * --group defaults to swit-dlq-replay; on RabbitMQ the dead letters of a
 * subscription wait in the parking queue "<group>.<dead-letter topic>",
 * so give the group of the subscription that dead-lettered them.
 *
 * Owns nothing beyond the call: main.c dispatches here.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "swit/swit.h"
#include "cli/tools.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2
#define MAX_TOPIC 249
#define ORIGIN "x-swit-origin-topic"

typedef struct replay_state {
  swit_host_t *h;                /* set before the first message */
  const char *to;                /* --to, or NULL: the origin */
  atomic_uint_fast64_t seen, replayed, refused;
  atomic_int_fast64_t last_ms;   /* CLOCK_MONOTONIC ms of the last arrival */
} replay_state;

static int64_t now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int topic_ok(const char *t, size_t n)
{
  if (n == 0 || n > MAX_TOPIC) return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)t[i] <= 0x20 || t[i] == 0x7f) return 0;
  return 1;
}

static int refuse(replay_state *st, swit_msg_t *m, const char *why)
{
  swit_msg_set_error(m, why);
  atomic_fetch_add(&st->refused, 1);
  return SWIT_REJECT;
}

/* A header the dead-lettering added (settle.c); x-swit-id stays. */
static int added_header(const char *name, size_t n)
{
  static const char *const added[] = {"x-swit-error", "x-swit-attempts",
                                      ORIGIN};
  for (size_t i = 0; i < sizeof added / sizeof *added; i++)
    if (n == strlen(added[i]) && strncasecmp(name, added[i], n) == 0)
      return 1;
  return 0;
}

/* The headers to publish again, as swit_host_publish wants them: NUL-
 * terminated copies in one block (freed by the caller); NULL and *why
 * set when one cannot be carried. */
static char **copy_headers(swit_msg_t *m, const char **why)
{
  const char *name, *value;
  size_t nlen, vlen, n = 0, bytes = 0;
  char **hv, *at;

  for (size_t i = 0; swit_msg_header_at(m, i, &name, &nlen, &value, &vlen);
       i++) {
    if (memchr(name, '\0', nlen) || memchr(value, '\0', vlen)) {
      *why = "dlq replay: a header has a NUL byte the C API cannot carry";
      return NULL;
    }
    n++;
    bytes += nlen + vlen + 2;
  }
  if (!(hv = malloc((2 * n + 1) * sizeof *hv + bytes))) {
    *why = "dlq replay: out of memory";
    return NULL;
  }
  at = (char *)(hv + 2 * n + 1);
  n = 0;
  for (size_t i = 0; swit_msg_header_at(m, i, &name, &nlen, &value, &vlen);
       i++) {
    if (added_header(name, nlen)) continue;
    hv[n++] = memcpy(at, name, nlen);
    at[nlen] = '\0';
    at += nlen + 1;
    hv[n++] = memcpy(at, value, vlen);
    at[vlen] = '\0';
    at += vlen + 1;
  }
  hv[n] = NULL;
  return hv;
}

static int replay_one(swit_msg_t *m, void *ud)
{
  replay_state *st = ud;
  size_t olen = 0, klen = 0, plen = 0;
  const char *origin = swit_msg_header(m, ORIGIN, &olen);
  const char *key = swit_msg_key(m, &klen), *why = NULL;
  const void *payload = swit_msg_payload(m, &plen);
  char topic[MAX_TOPIC + 1], err[512];
  char **hv;
  int rc;

  atomic_fetch_add(&st->seen, 1);
  atomic_store(&st->last_ms, now_ms());
  if (st->to) {
    snprintf(topic, sizeof topic, "%s", st->to);
  } else if (!origin) {
    return refuse(st, m, "dlq replay: no " ORIGIN " header (the subscriber's "
                  "dead_letter.include_metadata was off?): use --to TOPIC");
  } else if (!topic_ok(origin, olen)) {
    return refuse(st, m, "dlq replay: the " ORIGIN " header is not a topic");
  } else {
    memcpy(topic, origin, olen);
    topic[olen] = '\0';
  }
  if (!(hv = copy_headers(m, &why))) return refuse(st, m, why);
  rc = swit_host_publish(st->h, topic, key, key ? klen : 0, payload, plen,
                         (const char *const *)hv, NULL, err, sizeof err);
  free(hv);
  if (rc) {
    swit_msg_set_error(m, err);
    return SWIT_RETRY;
  }
  atomic_fetch_add(&st->replayed, 1);
  return SWIT_ACK;
}

static int seconds(const char *opt, const char *v, double *out)
{
  char *end;
  double d = strtod(v, &end);

  if (end == v || *end || !(d > 0 && d <= 86400)) {
    fprintf(stderr, "swit: dlq replay: %s: expected seconds in (0, 86400], "
            "got '%s'\n", opt, v);
    return -1;
  }
  *out = d;
  return 0;
}

int swit__cli_dlq(int argc, char **argv, const sigset_t *sigs)
{
  replay_state st = {0};
  const char *group = "swit-dlq-replay";
  double idle = 10, timeout = 300;
  uint64_t max = 0;
  struct timespec tick = {0, 50 * 1000000L};
  char err[1024];
  swit_host_t *h;
  int64_t start;
  int rc, code = 0, timed_out = 0;

  if (argc < 5 || strcmp(argv[2], "replay") != 0) goto usage;
  for (int i = 5; i < argc; i++) {
    const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) goto usage;
    i++;
    if (!strcmp(o, "--group")) {
      group = v;
    } else if (!strcmp(o, "--to")) {
      if (!topic_ok(v, strlen(v))) {
        fprintf(stderr, "swit: dlq replay: --to: topic '%s' is empty, longer "
                "than 249 bytes or has a space or control character\n", v);
        return EXIT_USAGE;
      }
      st.to = v;
    } else if (!strcmp(o, "--max")) {
      char *end;
      unsigned long long c = strtoull(v, &end, 10);
      if (*end || c == 0 || v[0] == '-') {
        fprintf(stderr, "swit: dlq replay: --max: expected a positive number, "
                "got '%s'\n", v);
        return EXIT_USAGE;
      }
      max = c;
    } else if (!strcmp(o, "--idle")) {
      if (seconds(o, v, &idle)) return EXIT_USAGE;
    } else if (!strcmp(o, "--timeout")) {
      if (seconds(o, v, &timeout)) return EXIT_USAGE;
    } else {
      fprintf(stderr, "swit: dlq replay: unknown option '%s'\n", o);
      goto usage;
    }
  }
  if (!topic_ok(argv[4], strlen(argv[4]))) {
    fprintf(stderr, "swit: dlq replay: topic '%s' is empty, longer than 249 "
            "bytes or has a space or control character\n", argv[4]);
    return EXIT_USAGE;
  }
  pthread_sigmask(SIG_BLOCK, sigs, NULL);
  if ((rc = swit_host_new(&h, argv[3], err, sizeof err)) == 0) {
    st.h = h;
    rc = swit_host_client_only(h, err, sizeof err);
    if (rc == 0)
      rc = swit_host_handle_from(h, argv[4], group, SWIT_ORDER_KEY,
                                 SWIT_FROM_DEFAULT, replay_one, &st, err,
                                 sizeof err);
    if (rc == 0) rc = swit_host_start(h, err, sizeof err);
    if (rc) swit_host_free(h);
  }
  if (rc) {
    fprintf(stderr, "swit: %s\n", err);
    return rc == SWIT_E_CONFIG || rc == SWIT_E_SCRIPT ? EXIT_USAGE
                                                      : EXIT_RUNTIME;
  }
  start = now_ms();
  atomic_store(&st.last_ms, start);
  for (;;) {
    int sig = sigtimedwait(sigs, NULL, &tick);
    int64_t now = now_ms();
    if (sig == SIGINT || sig == SIGTERM) break;
    if (max && atomic_load(&st.seen) >= max) break;
    if (now - atomic_load(&st.last_ms) >= (int64_t)(idle * 1000) &&
        swit_host_wait_idle(h, 0, 0) == 0)
      break;
    if (now - start >= (int64_t)(timeout * 1000)) {
      timed_out = 1;
      break;
    }
  }
  swit_host_stop(h, -1);
  swit_host_free(h);
  fprintf(stderr, "swit: dlq replay: %" PRIuFAST64 " replayed from '%s'",
          atomic_load(&st.replayed), argv[4]);
  if (atomic_load(&st.refused))
    fprintf(stderr, ", %" PRIuFAST64 " not replayable (rejected to "
            "'%s.dlq' with the reason)", atomic_load(&st.refused), argv[4]);
  fputc('\n', stderr);
  if (timed_out) {
    fprintf(stderr, "swit: dlq replay: --timeout reached with messages still "
            "arriving\n");
    code = EXIT_RUNTIME;
  }
  return code;
usage:
  fputs("usage: swit dlq replay CONFIG DLQ_TOPIC [--group G] [--to TOPIC] "
        "[--max N] [--idle S] [--timeout S]\n", stderr);
  return EXIT_USAGE;
}
