/*
 * http.c - one HTTP server on its own thread and event_base (http.h).
 *
 * libevent's evhttp parses requests, enforces the header and body size
 * limits (a body over max_body is refused with 413 before it is read,
 * or, chunked, as soon as it passes the limit), and times out idle or
 * slow clients, so a malformed or oversized request costs the server one
 * connection and never reaches a handler. Those answers are libevent's
 * own; for a swit server they are JSON too (see "libevent's error
 * pages" below). Stopping breaks the loop from another thread:
 * libevent's pthread locking is switched on once per process
 * (evthread_use_pthreads).
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/http_struct.h>   /* the version of a malformed request */
#include <event2/thread.h>

#include "obs/obs.h"
#include "net/http.h"

struct swit__http {
  struct event_base *base;
  struct evhttp *http;
  pthread_t thread;
  int started;
  size_t max_body;
  swit__http *next;             /* in `servers` while http exists */
  char addr[80];
};

/* Every swit server of the process, for evhttp_send_error below. */
static pthread_mutex_t servers_lock = PTHREAD_MUTEX_INITIALIZER;
static swit__http *servers;

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
  if (swit__listen_split(listen, host, sizeof host, &port) != 0) {
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
  s->max_body = max_body;
  pthread_mutex_lock(&servers_lock);
  s->next = servers;
  servers = s;
  pthread_mutex_unlock(&servers_lock);
  evhttp_set_max_headers_size(s->http, 16 * 1024);
  evhttp_set_max_body_size(s->http, (ev_ssize_t)max_body);
  evhttp_set_timeout(s->http, 30);
  /* every method reaches the handlers, which answer 405 in JSON (libevent
   * would answer a method it was not told about with its own 501) */
  evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
                             EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                             EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                             EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT |
                             EVHTTP_REQ_PATCH);
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

void swit__http_halt(swit__http *s)
{
  if (!s || !s->started) return;
  event_base_loopbreak(s->base);
  pthread_join(s->thread, NULL);
  s->started = 0;
}

void swit__http_stop(swit__http *s)
{
  if (!s) return;
  swit__http_halt(s);
  if (s->http) {
    pthread_mutex_lock(&servers_lock);
    for (swit__http **p = &servers; *p; p = &(*p)->next)
      if (*p == s) {
        *p = s->next;
        break;
      }
    pthread_mutex_unlock(&servers_lock);
    evhttp_free(s->http);
  }
  if (s->base) event_base_free(s->base);
  free(s);
}

const char *swit__http_addr(const swit__http *s)
{
  return s ? s->addr : "";
}

struct event_base *swit__http_base(const swit__http *s)
{
  return s->base;
}

void swit__http_reply(struct evhttp_request *req, int code, const char *ctype,
                      const char *body, size_t len)
{
  struct evbuffer *b = evbuffer_new();
  static const char *const reasons[] = {
    [200] = "OK", [202] = "Accepted", [400] = "Bad Request",
    [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
    [405] = "Method Not Allowed", [409] = "Conflict",
    [413] = "Payload Too Large", [417] = "Expectation Failed",
    [422] = "Unprocessable Entity", [500] = "Internal Server Error",
    [501] = "Not Implemented", [503] = "Service Unavailable",
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

/* ------------------------------------------------------------------ */
/* libevent's error pages
 *
 * libevent 2.1 answers some requests itself, before a handler sees them:
 * a body over max_body (413: a Content-Length over it, or a chunked body
 * once it passes it), a malformed request or headers over the limit
 * (400), an Expect it does not know (417). It builds these answers with
 * evhttp_send_error, an HTML page, and 2.1 offers no hook for them (2.2
 * adds evhttp_set_errorcb; 2.1 cannot even reach a request before its
 * headers are read). So swit defines evhttp_send_error: libevent calls
 * it through its PLT, and the dynamic linker binds that call to the
 * first definition, the one of the program or of libswit. A request of
 * a swit server gets {"ok":false,"error":...} with "Connection: close",
 * as libevent's page has (the body of a refused request is never read);
 * any other server's request goes to libevent's own function
 * (RTLD_NEXT), so an embedder's evhttp servers are not changed.
 * spec/c/test_admin.c checks the 413s: a libevent that binds its own
 * calls (-Bsymbolic-functions) would bring the HTML pages back. */

typedef void (*send_error_fn)(struct evhttp_request *, int, const char *);

static send_error_fn libevent_send_error;
static pthread_once_t send_error_once = PTHREAD_ONCE_INIT;

static void find_send_error(void)
{
  *(void **)&libevent_send_error = dlsym(RTLD_NEXT, "evhttp_send_error");
}

/* The max_body of the swit server that owns req, or 0 when none does. */
static int swit_server_of(struct evhttp_request *req, size_t *max_body)
{
  struct evhttp_connection *c = evhttp_request_get_connection(req);
  struct evhttp *http = c ? evhttp_connection_get_server(c) : NULL;
  int found = 0;

  pthread_mutex_lock(&servers_lock);
  for (swit__http *s = servers; http && s && !found; s = s->next)
    if (s->http == http) {
      *max_body = s->max_body;
      found = 1;
    }
  pthread_mutex_unlock(&servers_lock);
  return found;
}

/* Exported on purpose (libswit is built with hidden visibility): the one
 * interposed symbol left; spec/c/symbols.cmake names it as the only
 * exception until swit parses HTTP itself (branch `http`). */
__attribute__((visibility("default")))
void evhttp_send_error(struct evhttp_request *req, int error,
                       const char *reason)
{
  size_t max_body = 0;
  char msg[160];

  if (!swit_server_of(req, &max_body)) {
    pthread_once(&send_error_once, find_send_error);
    if (libevent_send_error) libevent_send_error(req, error, reason);
    else evhttp_send_reply(req, error, reason, NULL);
    return;
  }
  if (error == 413)
    snprintf(msg, sizeof msg, "request body over the limit of %zu bytes",
             max_body);
  else if (error == 400)
    snprintf(msg, sizeof msg, "malformed request");
  else if (error == 417)
    snprintf(msg, sizeof msg, "unsupported Expect header");
  else
    snprintf(msg, sizeof msg, "%s", reason ? reason : "request refused");
  if (!req->major) req->major = req->minor = 1;   /* unparsed: as libevent */
  evhttp_clear_headers(evhttp_request_get_output_headers(req));
  evhttp_add_header(evhttp_request_get_output_headers(req), "Connection",
                    "close");
  swit__http_json_error(req, error, msg);
}
