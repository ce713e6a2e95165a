/*
 * fuzz_http.c - libFuzzer harness of HTTP request handling in both
 * servers: the RFC 9112 parser (host/net/http.c) and the route handlers
 * behind it, the admin server's (host/api/admin.c: /healthz, /readyz,
 * /metrics, /admin/status, the token-guarded endpoints) and the
 * ingress's (host/net/ingress.c: POST /v1/publish/{topic} into the
 * memory broker).
 *
 * A real host runs (memory broker, both servers on 127.0.0.1:0); their
 * threads are halted at start-up and this thread runs their event_bases
 * instead, so every input is handled here, in order, without sockets.
 * The input is the byte stream of one client connection (any number of
 * pipelined requests): it goes to the admin server in one write, and to
 * the ingress in pieces of PIECE bytes with a loop turn after each (the
 * parser sees requests split anywhere), over a bufferevent_pair; then
 * the client half-closes. Checked on every input:
 *   - after the half-close the server closes the connection by itself
 *     (no connection is left behind: swit__http_conns is 0);
 *   - what the client received is a sequence of whole HTTP/1.1 answers:
 *     a status line with a known code, header fields without control
 *     bytes, Content-Length framing, nothing after "Connection: close";
 *   - no 500, and no 503 from the ingress (the broker is never full:
 *     the host is rebuilt long before a topic could fill).
 * Built with -DSWIT_FUZZ=ON (spec/fuzz/CMakeLists.txt).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "api/api.h"
#include "net/http.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum {
  PIECE = 61,                 /* ingress write size: a prime, so splits move */
  MAX_INPUT = 60 * 1024,      /* below http.c's read cap of 64 KiB */
  MAX_TURNS = 64,             /* loop turns after the half-close */
  /* Under queue_size (100000), and small enough that the topics the
   * inputs made up stay few: each has its metric series, and /metrics
   * renders them all (a long run once spent 13 s on one input that asked
   * for /metrics ten times with ~20000 topics in the registry) */
  REBUILD_MSGS = 2000,
  REBUILD_BYTES = 32 << 20,
};

/* The ingress needs the token: the 401 path and the bearer check are
 * fuzzed too (the seeds carry it). No admin token: reload and pause
 * answer 403 (a reload would run on a thread of its own). */
static const char yaml[] =
  "server:\n"
  "  name: fuzz\n"
  "  log: {level: error}\n"
  "  admin: {listen: \"127.0.0.1:0\"}\n"
  "  http: {listen: \"127.0.0.1:0\", token: fuzz-token}\n"
  "messaging:\n"
  "  broker: {type: memory, config: {queue_size: 100000}}\n"
  "  publishers:\n"
  "    default: {timeout: 1ms}\n"
  "  resources:\n"
  "    subscribers: {worker_pool_size: 1}\n"
  "    memory: {max_message_size: 4KB}\n";

static swit_host_t *host;
static size_t held_msgs, held_bytes;  /* what the broker retains */

static void host_up(void)
{
  char err[512];

  if (swit_host_new_from_string(&host, yaml, NULL, err, sizeof err) != 0 ||
      swit_host_start(host, err, sizeof err) != 0 || !host->obs->admin ||
      !host->obs->ingress) {
    fprintf(stderr, "fuzz_http: cannot start a host: %s\n", err);
    abort();
  }
  swit__http_halt(host->obs->admin);
  swit__http_halt(host->obs->ingress);
  held_msgs = held_bytes = 0;
}

static void host_down(void)
{
  if (!host) return;
  swit_host_stop(host, 5000);
  swit_host_free(host);
  host = NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc, (void)argv;
  host_up();
  atexit(host_down);
  return 0;
}

/* ------------------------------------------------------------------ */
/* What the client received */

static const char *line_end(const char *p, const char *end)
{
  for (; p + 1 < end; p++)
    if (p[0] == '\r' && p[1] == '\n') return p;
  return NULL;
}

static int known_code(int code)
{
  static const int codes[] = {100, 200, 202, 400, 401, 403, 404, 405, 409,
                              411, 413, 417, 422, 431, 501, 503, 505};
  for (size_t i = 0; i < sizeof codes / sizeof *codes; i++)
    if (codes[i] == code) return 1;
  return 0;
}

/* Whole answers, one after the other; returns how many were 202. A
 * HEAD answer has a Content-Length and no body: an answer whose body
 * would be the next status line (or nothing) is taken as one. */
static size_t check_answers(const char *p, size_t n, int ingress)
{
  const char *end;
  size_t accepted = 0;

  if (!n) return 0;
  end = p + n;
  while (p < end) {
    const char *eol = line_end(p, end), *body;
    long cl = -1;
    int code, close = 0;

    if (!eol || eol - p < 13 || memcmp(p, "HTTP/1.1 ", 9) != 0 ||
        p[12] != ' ' || sscanf(p + 9, "%3d", &code) != 1 || !known_code(code))
      abort();
    if (code == 500 || (ingress && code == 503)) abort();
    accepted += code == 202;
    for (p = eol + 2; (eol = line_end(p, end)) != p; p = eol + 2) {
      const char *colon;
      if (!eol || !(colon = memchr(p, ':', (size_t)(eol - p)))) abort();
      for (const char *q = p; q < eol; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7f) abort();
      if (!strncmp(p, "Content-Length: ", 16)) cl = strtol(p + 16, NULL, 10);
      if (!strncmp(p, "Connection: close", 17)) close = 1;
    }
    body = p + 2;
    if (code == 100) {           /* interim: no length, no body */
      if (cl >= 0 || close) abort();
      p = body;
      continue;
    }
    if (cl < 0) abort();
    if (body == end || (end - body >= 9 && !memcmp(body, "HTTP/1.1 ", 9)))
      p = body;                  /* the answer to a HEAD */
    else if (end - body < cl) abort();
    else p = body + cl;
    if (close && p != end) abort();
  }
  return accepted;
}

/* ------------------------------------------------------------------ */
/* One connection */

static void turn(struct event_base *base)
{
  event_base_loop(base, EVLOOP_NONBLOCK);
}

static size_t feed(swit__http *s, const uint8_t *data, size_t size,
                   size_t piece, int ingress)
{
  struct event_base *base = swit__http_base(s);
  struct bufferevent *pair[2];
  struct evbuffer *got;
  size_t accepted;

  if (bufferevent_pair_new(base, BEV_OPT_DEFER_CALLBACKS, pair) != 0 ||
      swit__http_attach(s, pair[1], "127.0.0.1:1") != 0)
    abort();
  bufferevent_enable(pair[0], EV_READ);
  for (size_t off = 0; off < size; off += piece) {
    bufferevent_write(pair[0], data + off,
                      size - off < piece ? size - off : piece);
    turn(base);
  }
  bufferevent_flush(pair[0], EV_WRITE, BEV_FINISHED);   /* half-close */
  for (int i = 0; i < MAX_TURNS && swit__http_conns(s); i++) turn(base);
  if (swit__http_conns(s)) abort();
  got = bufferevent_get_input(pair[0]);
  accepted = check_answers((const char *)evbuffer_pullup(got, -1),
                           evbuffer_get_length(got), ingress);
  bufferevent_free(pair[0]);
  turn(base);                    /* deferred frees */
  return accepted;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  size_t accepted;

  if (size > MAX_INPUT) return 0;
  feed(host->obs->admin, data, size, size ? size : 1, 0);
  accepted = feed(host->obs->ingress, data, size, PIECE, 1);
  if (accepted) {
    held_msgs += accepted;
    held_bytes += size;
  }
  if (held_msgs > REBUILD_MSGS || held_bytes > REBUILD_BYTES) {
    host_down();
    host_up();
  }
  return 0;
}
