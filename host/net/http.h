/*
 * http.h - the small HTTP server shell the admin server and the ingress
 * run on: one thread with its own libevent event_base and evhttp, bound
 * to "host:port" (port 0: any free port; the bound address is logged and
 * kept in `addr`). Requests are handled on that thread, never a worker.
 */
#ifndef SWIT_HTTP_H
#define SWIT_HTTP_H

#include <stddef.h>

struct event_base;
struct evhttp_request;
struct swit__logger;

typedef void (*swit__http_cb)(struct evhttp_request *req, void *ud);

typedef struct swit__http swit__http;

/* Bind and start the thread. `what` names the server in logs. 0, or
 * SWIT_E_CONFIG (bad address), SWIT_E_SYS (bind, thread) with err set. */
int swit__http_start(swit__http **out, const char *listen, const char *what,
                     size_t max_body, swit__http_cb cb, void *ud,
                     const struct swit__logger *log, char *err, size_t errlen);
/* Stop the loop and join the thread: no handler runs afterwards, and
 * the event_base is still there. Accepts NULL; stop calls it too. */
void swit__http_halt(swit__http *s);
/* Stop the loop, join the thread, free. Accepts NULL. */
void swit__http_stop(swit__http *s);
/* "127.0.0.1:9090" as bound. */
const char *swit__http_addr(const swit__http *s);
/* The server's event_base: other threads may hand it work
 * (event_base_once) until the server is stopped. */
struct event_base *swit__http_base(const swit__http *s);

/* "address:port" of the request's peer in buf (for the audit log), or
 * NULL when the connection is gone. */
const char *swit__http_peer(struct evhttp_request *req, char *buf,
                            size_t len);

/* Reply helpers (on the server thread). */
void swit__http_reply(struct evhttp_request *req, int code, const char *ctype,
                      const char *body, size_t len);
void swit__http_json_error(struct evhttp_request *req, int code,
                           const char *msg);

#endif /* SWIT_HTTP_H */
