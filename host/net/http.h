/*
 * http.h - the small HTTP/1.1 server the admin server and the ingress
 * run on: one thread with its own libevent event_base, bound to
 * "host:port" (port 0: any free port; the bound address is logged and
 * kept in `addr`). Requests are handled on that thread, never a worker.
 *
 * swit parses HTTP itself (http.c, RFC 9112, strictly): libevent gives
 * the event loop, the listener and the buffered sockets only, so every
 * answer, refusals included, is swit's JSON and no libevent symbol is
 * overridden. A handler gets a complete request (head and body) and
 * answers it with swit__http_reply, at once or later on the server
 * thread (the admin reload answers from an event_base_once).
 */
#ifndef SWIT_HTTP_H
#define SWIT_HTTP_H

#include <stddef.h>

#include "obs/metrics.h"

struct event_base;
struct swit__logger;
struct bufferevent;

typedef struct swit__http_req swit__http_req;
typedef void (*swit__http_cb)(swit__http_req *req, void *ud);

typedef struct swit__http swit__http;

typedef struct swit__http_opts {
  const char *what;          /* names the server in logs ("admin") */
  size_t max_body;           /* a larger body is answered 413 */
  size_t max_conns;          /* open connections at most (>= 1) */
  /* The last `reserve` connections of max_conns serve only requests
   * whose path is in `reserved_paths` (NULL-terminated); others get 503.
   * 0: no reserve. */
  size_t reserve;
  const char *const *reserved_paths;
  /* Counters the server adds to (may be NULL): failed accept(2) calls
   * (EMFILE, ENFILE, ...), connections closed to make room or refused
   * at the cap, requests refused by the parser (4xx before a handler). */
  swit__ctr *accept_errors, *conns_shed, *bad_requests;
  /* HTTPS when both are set (PEM files, already resolved); errors name
   * `tls_key` ("server.admin.tls"). */
  const char *tls_cert, *tls_keyfile, *tls_key;
  const char *tls_client_ca;  /* mTLS: client certificates required */
} swit__http_opts;

/* Whether o's TLS files make a server context (nothing is kept): 0, or
 * SWIT_E_CONFIG with err naming the key (for start-up and swit check). */
int swit__http_tls_check(const swit__http_opts *o, char *err, size_t errlen);

/* "Authorization: Bearer <want>" on req, compared in constant time in
 * the token's content; 1 when it matches. */
int swit__http_bearer_ok(swit__http_req *req, const char *want);

/* Bind and start the thread. 0, or SWIT_E_CONFIG (bad address, TLS files
 * that do not load or do not match),
 * SWIT_E_SYS (bind, thread), SWIT_E_NOMEM with err set. */
int swit__http_start(swit__http **out, const char *listen,
                     const swit__http_opts *opts, swit__http_cb cb, void *ud,
                     const struct swit__logger *log, char *err, size_t errlen);
/* Stop the loop and join the thread: no handler runs afterwards, and
 * the event_base is still there. Accepts NULL; stop calls it too. */
void swit__http_halt(swit__http *s);
/* Stop the loop, join the thread, free (requests still waiting for an
 * answer go with their connections). Accepts NULL. */
void swit__http_stop(swit__http *s);
/* Serve one connection over bev, made on s's event_base (a
 * bufferevent_pair end, a socket), as if accepted: the connection cap
 * applies, and bev is the server's from here on (freed with the
 * connection, or at once when this fails: -1). `peer` names it
 * ("address:port", the audit log). On the server thread, or while the
 * server is halted and the caller runs its base (spec/fuzz/fuzz_http.c
 * feeds bytes through the parser this way, without sockets). */
int swit__http_attach(swit__http *s, struct bufferevent *bev,
                      const char *peer);
/* Open connections (the same rule as attach: the server thread, or a
 * halted server). */
size_t swit__http_conns(const swit__http *s);
/* "127.0.0.1:9090" as bound. */
const char *swit__http_addr(const swit__http *s);
/* The server's event_base: other threads may hand it work
 * (event_base_once) until the server is stopped. */
struct event_base *swit__http_base(const swit__http *s);

/* The request (server thread only, until it is answered). The method
 * as sent ("GET"); the path and query of the target, still
 * percent-encoded (query NULL when there is none); the first header of
 * that name (case-insensitive) or NULL; header i of n; the body. */
const char *swit__http_method(const swit__http_req *req);
const char *swit__http_path(const swit__http_req *req);
const char *swit__http_query(const swit__http_req *req);
const char *swit__http_header(const swit__http_req *req, const char *name);
size_t swit__http_nheaders(const swit__http_req *req);
void swit__http_header_at(const swit__http_req *req, size_t i,
                          const char **name, const char **value);
const char *swit__http_body(swit__http_req *req, size_t *len);

/* Percent-decode `len` bytes of s into a new string (free it). NULL
 * when out of memory, when an escape is malformed, or when the result
 * has a NUL or another control character (0x00-0x1f, 0x7f). */
char *swit__http_decode(const char *s, size_t len);

/* The first query parameter `name`, decoded (swit__http_decode) into
 * *out (free it; NULL when absent): 0, or -1 when it cannot be decoded. */
int swit__http_param(const swit__http_req *req, const char *name,
                     char **out);

/* "address:port" of the request's peer in buf (for the audit log), or
 * NULL when the connection is gone. */
const char *swit__http_peer(const swit__http_req *req, char *buf,
                            size_t len);

/* Add a response header (before the reply). */
void swit__http_add_header(swit__http_req *req, const char *name,
                           const char *value);
/* Answer req (on the server thread) and release it: req is gone after. */
void swit__http_reply(swit__http_req *req, int code, const char *ctype,
                      const char *body, size_t len);
void swit__http_json_error(swit__http_req *req, int code, const char *msg);

#endif /* SWIT_HTTP_H */
