/*
 * http.c - one HTTP server on its own thread and event_base (http.h).
 *
 * libevent's evhttp parses requests, enforces the header and body size
 * limits (a body over max_body is refused with 413 before it is read),
 * and times out idle or slow clients, so a malformed or oversized request
 * costs the server one connection and never reaches a handler. Stopping
 * breaks the loop from another thread: libevent's pthread locking is
 * switched on once per process (evthread_use_pthreads).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>

#include "host_int.h"
#include "http.h"

struct swit__http {
  struct event_base *base;
  struct evhttp *http;
  pthread_t thread;
  int started;
  char addr[80];
};

static pthread_once_t threads_once = PTHREAD_ONCE_INIT;

static void use_threads(void)
{
  evthread_use_pthreads();
}

static void *loop(void *arg)
{
  swit__http *s = arg;
  event_base_loop(s->base, EVLOOP_NO_EXIT_ON_EMPTY);
  return NULL;
}

/* "host:port" or "[v6]:port" into host and port. */
static int split(const char *listen, char *host, size_t hlen, int *port)
{
  const char *colon = strrchr(listen, ':');
  const char *h = listen;
  size_t n;
  char *end;
  long p;

  if (!colon) return -1;
  n = (size_t)(colon - listen);
  if (n >= 2 && h[0] == '[' && h[n - 1] == ']') h++, n -= 2;
  if (n == 0 || n >= hlen) return -1;
  memcpy(host, h, n);
  host[n] = '\0';
  p = strtol(colon + 1, &end, 10);
  if (*end || colon[1] == '\0' || p < 0 || p > 65535) return -1;
  *port = (int)p;
  return 0;
}

static void bound_addr(swit__http *s, struct evhttp_bound_socket *bs)
{
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  char ip[INET6_ADDRSTRLEN] = "?";
  int port = 0;

  if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss,
                  &len) == 0) {
    if (ss.ss_family == AF_INET) {
      struct sockaddr_in *a = (struct sockaddr_in *)&ss;
      inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
      port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
      inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
      port = ntohs(a->sin6_port);
    }
  }
  snprintf(s->addr, sizeof s->addr, ss.ss_family == AF_INET6 ? "[%s]:%d"
           : "%s:%d", ip, port);
}

int swit__http_start(swit__http **out, const char *listen, const char *what,
                     size_t max_body, swit__http_cb cb, void *ud,
                     const swit__logger *log, char *err, size_t errlen)
{
  struct evhttp_bound_socket *bs;
  swit__http *s;
  char host[256];
  int port, rc;

  *out = NULL;
  if (split(listen, host, sizeof host, &port) != 0) {
    snprintf(err, errlen, "%s: listen address '%s' is not host:port or off",
             what, listen);
    return SWIT_E_CONFIG;
  }
  pthread_once(&threads_once, use_threads);
  if (!(s = calloc(1, sizeof *s))) return SWIT_E_NOMEM;
  s->base = event_base_new();
  s->http = s->base ? evhttp_new(s->base) : NULL;
  if (!s->http) {
    snprintf(err, errlen, "%s: cannot create an event base", what);
    rc = SWIT_E_SYS;
    goto fail;
  }
  evhttp_set_max_headers_size(s->http, 16 * 1024);
  evhttp_set_max_body_size(s->http, (ev_ssize_t)max_body);
  evhttp_set_timeout(s->http, 30);
  evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
                             EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                             EVHTTP_REQ_DELETE);
  evhttp_set_gencb(s->http, cb, ud);
  if (!(bs = evhttp_bind_socket_with_handle(s->http, host, (uint16_t)port))) {
    snprintf(err, errlen, "%s: cannot listen on %s", what, listen);
    rc = SWIT_E_SYS;
    goto fail;
  }
  bound_addr(s, bs);
  if (pthread_create(&s->thread, NULL, loop, s) != 0) {
    snprintf(err, errlen, "%s: cannot start its thread", what);
    rc = SWIT_E_SYS;
    goto fail;
  }
  s->started = 1;
  swit__log(log, SWIT_LOG_INFO, "%s listening on http://%s", what, s->addr);
  *out = s;
  return 0;
fail:
  swit__http_stop(s);
  return rc;
}

void swit__http_stop(swit__http *s)
{
  if (!s) return;
  if (s->started) {
    event_base_loopbreak(s->base);
    pthread_join(s->thread, NULL);
  }
  if (s->http) evhttp_free(s->http);
  if (s->base) event_base_free(s->base);
  free(s);
}

const char *swit__http_addr(const swit__http *s)
{
  return s ? s->addr : "";
}

void swit__http_reply(struct evhttp_request *req, int code, const char *ctype,
                      const char *body, size_t len)
{
  struct evbuffer *b = evbuffer_new();
  static const char *const reasons[] = {
    [200] = "OK", [202] = "Accepted", [400] = "Bad Request",
    [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
    [405] = "Method Not Allowed", [409] = "Conflict",
    [413] = "Payload Too Large", [422] = "Unprocessable Entity",
    [500] = "Internal Server Error", [503] = "Service Unavailable",
  };
  const char *reason = code > 0 && code <= 503 && reasons[code] ? reasons[code]
                                                                 : "";

  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                    ctype);
  if (b) evbuffer_add(b, body, len);
  evhttp_send_reply(req, code, reason, b);
  if (b) evbuffer_free(b);
}

void swit__http_json_error(struct evhttp_request *req, int code,
                           const char *msg)
{
  swit__buf b = {0};

  swit__buf_add(&b, "{\"ok\":false,\"error\":", 20);
  swit__buf_json(&b, msg, strlen(msg));
  swit__buf_add(&b, "}\n", 2);
  swit__http_reply(req, code, "application/json", b.data ? b.data : "",
                   b.len);
  free(b.data);
}
