/*
 * http.c - one HTTP/1.1 server on its own thread and event_base (http.h).
 *
 * Why swit parses HTTP itself. libevent 2.1's evhttp answers malformed
 * or oversized requests itself with HTML pages and offers no hook for
 * them (swit used to override evhttp_send_error for the whole process
 * to get JSON), accepts conflicting Content-Length headers, cuts names
 * at NUL bytes and spins on EMFILE. The two servers need little of
 * HTTP: a request line, header fields, a body framed by Content-Length
 * or chunked, keep-alive. So libevent gives the loop, the listener
 * (evconnlistener) and buffered sockets (bufferevent) only, and this
 * file owns a strict RFC 9112 request parser:
 *
 *   - request line "METHOD SP origin-form SP HTTP/1.x" (other versions
 *     505), target bytes visible ASCII only; leading empty lines skipped;
 *   - lines end in CRLF; a bare CR or LF, obs-fold, whitespace before a
 *     colon, a field name that is not a token, NUL or a control byte in
 *     a value -> 400; a head over 16 KiB or over 100 fields -> 431;
 *   - Content-Length: 1*DIGIT, once (repeated, listed or conflicting ->
 *     400); with Transfer-Encoding -> 400; Transfer-Encoding other than
 *     "chunked" -> 501, on HTTP/1.0 -> 400; a POST/PUT/PATCH with no
 *     length on HTTP/1.0 -> 411; on HTTP/1.1 no length is an empty body;
 *   - chunked: hex size, chunk extensions (token[=token|quoted-string])
 *     parsed and ignored, trailer fields checked like header fields and
 *     dropped; a body over max_body -> 413 (Content-Length: before the
 *     body is read), Expect: 100-continue answered, other Expect -> 417.
 *
 * Every refusal is {"ok":false,"error":...} with "Connection: close".
 * Requests on one connection are handled one at a time (pipelined bytes
 * wait in the buffer, whose read side is capped).
 *
 * Floods. At most max_conns connections: a new one at the cap closes the
 * oldest connection that has no request being handled (idle, or still
 * sending its head or body: slow clients lose their place first), and
 * is itself closed when every slot is handling a request; either counts
 * in conns_shed. The last `reserve` slots serve only reserved_paths
 * (the admin server's /healthz and /readyz), so health checks get in
 * while the rest is full. accept(2) failing (EMFILE, ENFILE, ENOBUFS)
 * stops the listener for a back-off (10 ms doubling to 1 s, back to 10
 * ms after an accept succeeds) instead of spinning, closes the oldest
 * sheddable connection to free a descriptor, counts accept_errors and
 * logs one line per 10 s with the count. Idle and slow connections time
 * out after 30 s.
 *
 * Threads: everything here runs on the server thread, except start,
 * halt and stop (the owner's) and event_base_once from other threads
 * (libevent's pthread locking is switched on once per process).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "obs/obs.h"
#include "net/http.h"

#define MAX_HEAD (16 * 1024)        /* request line and header fields */
#define MAX_FIELDS 100
#define MAX_CHUNK_LINE 4096         /* chunk size line with extensions */
#define READ_CAP (64 * 1024)        /* input buffered beyond what is parsed */
#define IDLE_S 30
#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 1000
#define LOG_EVERY_US (10 * 1000000ull)

typedef struct conn conn;

struct swit__http_req {
  conn *c;                      /* NULL once its connection is gone */
  char *head;                   /* the head, NUL-split in place */
  const char *method, *path, *query;
  int minor;                    /* HTTP/1.<minor> */
  int keep_alive, is_head;
  size_t nf;
  struct { const char *name, *value; } f[MAX_FIELDS];
  struct evbuffer *body;
  swit__buf out;                /* extra response header lines */
};

enum cstate { C_HEAD, C_BODY, C_CHUNK_SIZE, C_CHUNK_DATA, C_CHUNK_END,
              C_TRAILER, C_HANDLING, C_CLOSING };

struct conn {
  swit__http *s;
  struct bufferevent *bev;
  enum cstate st;
  size_t left;                  /* body or chunk bytes still to read */
  size_t ntrailers;
  swit__http_req *req;          /* being read, or being handled */
  int reserved;                 /* accepted into the reserve */
  int parsing;                  /* inside advance(): reply must not recurse */
  char peer[64];                /* "address:port" (the audit log) */
  conn *prev, *next;            /* oldest first */
};

struct swit__http {
  struct event_base *base;
  struct evconnlistener *lis;
  struct event *resume;         /* re-enables the listener after back-off */
  struct event *halt;           /* made active by halt: breaks the loop */
  pthread_t thread;
  int started;
  swit__http_opts o;
  swit__http_cb cb;
  void *ud;
  const swit__logger *log;
  conn *first, *last;
  size_t nconns;
  int backoff_ms;
  uint64_t last_log_us, errors_since_log;
  SSL_CTX *tls;                 /* HTTPS, or NULL */
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

/* event_base_loopbreak from another thread is lost when it comes before
 * the loop has started (event_base_loop clears the flag as it starts):
 * halt makes this event active instead, which a loop not started yet
 * still runs first thing, and the break comes from inside the loop. */
static void on_halt(evutil_socket_t fd, short what, void *arg)
{
  swit__http *s = arg;
  (void)fd, (void)what;
  event_base_loopbreak(s->base);
}

static void count(swit__ctr *c)
{
  if (c) swit__ctr_add(c, 1);
}

/* ------------------------------------------------------------------ */
/* Connections */

static void req_free(swit__http_req *r)
{
  if (!r) return;
  if (r->body) evbuffer_free(r->body);
  free(r->head);
  free(r->out.data);
  free(r);
}

static void conn_free(conn *c)
{
  swit__http *s = c->s;

  if (c->req) {
    if (c->st == C_HANDLING) c->req->c = NULL;   /* answered later: dropped */
    else req_free(c->req);
  }
  if (c->prev) c->prev->next = c->next;
  else s->first = c->next;
  if (c->next) c->next->prev = c->prev;
  else s->last = c->prev;
  s->nconns--;
  bufferevent_free(c->bev);
  free(c);
}

/* The oldest connection no handler is answering, or NULL. */
static conn *sheddable(swit__http *s)
{
  for (conn *c = s->first; c; c = c->next)
    if (c->st != C_HANDLING) return c;
  return NULL;
}

/* EOF, an error or a timeout. A client that half-closes after its
 * request (shutdown(SHUT_WR)) still gets the answer: a request being
 * handled is answered, then the connection closes; an answer still
 * being written is finished. */
static void on_event(struct bufferevent *bev, short what, void *arg)
{
  conn *c = arg;

  if (what == BEV_EVENT_CONNECTED) return;   /* a TLS handshake completed */
  if (what & BEV_EVENT_EOF) {
    bufferevent_disable(bev, EV_READ);
    if (c->st == C_HANDLING) {
      c->req->keep_alive = 0;
      return;
    }
    if (evbuffer_get_length(bufferevent_get_output(bev))) {
      c->st = C_CLOSING;
      return;
    }
  }
  conn_free(c);
}

static void on_written(struct bufferevent *bev, void *arg)
{
  conn *c = arg;

  (void)bev;
  if (c->st == C_CLOSING) conn_free(c);
}

static void set_idle_timeout(conn *c, int on)
{
  const struct timeval t = {IDLE_S, 0};
  bufferevent_set_timeouts(c->bev, on ? &t : NULL, &t);
}

/* ------------------------------------------------------------------ */
/* Writing answers */

static const char *reason(int code)
{
  switch (code) {
  case 100: return "Continue";
  case 200: return "OK";
  case 202: return "Accepted";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 409: return "Conflict";
  case 411: return "Length Required";
  case 413: return "Content Too Large";
  case 417: return "Expectation Failed";
  case 422: return "Unprocessable Content";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 503: return "Service Unavailable";
  case 505: return "HTTP Version Not Supported";
  default: return "";
  }
}

static void write_answer(conn *c, int code, const char *ctype,
                         const char *extra, size_t extra_len, int keep,
                         const char *body, size_t len, int head_only)
{
  struct evbuffer *out = bufferevent_get_output(c->bev);

  evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                      "Content-Length: %zu\r\n", code, reason(code), ctype,
                      len);
  if (extra_len) evbuffer_add(out, extra, extra_len);
  evbuffer_add_printf(out, "%s\r\n", keep ? "" : "Connection: close\r\n");
  if (!head_only && len) evbuffer_add(out, body, len);
}

static void json_body(swit__buf *b, const char *msg)
{
  swit__buf_add(b, "{\"ok\":false,\"error\":", 20);
  swit__buf_json(b, msg, strlen(msg));
  swit__buf_add(b, "}\n", 2);
}

/* A refusal before any handler: answer, close once written. */
static void refuse(conn *c, int code, const char *msg)
{
  swit__buf b = {0};

  count(c->s->o.bad_requests);
  json_body(&b, msg);
  write_answer(c, code, "application/json", NULL, 0, 0,
               b.data ? b.data : "", b.data ? b.len : 0, 0);
  free(b.data);
  req_free(c->req);
  c->req = NULL;
  c->st = C_CLOSING;
  bufferevent_disable(c->bev, EV_READ);
}

/* ------------------------------------------------------------------ */
/* Parsing */

static int is_tchar(unsigned char ch)
{
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
         (ch >= '0' && ch <= '9') || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static int is_token(const char *s, size_t n)
{
  if (!n) return 0;
  for (size_t i = 0; i < n; i++)
    if (!is_tchar((unsigned char)s[i])) return 0;
  return 1;
}

/* field-value: HTAB, SP, VCHAR, obs-text; no NUL or other control. */
static int value_ok(const char *v, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)v[i];
    if ((ch < 0x20 && ch != '\t') || ch == 0x7f) return 0;
  }
  return 1;
}

/* "name: value" (the line without its CRLF) split in place. */
static const char *parse_field(char *line, const char **name,
                               const char **value)
{
  char *colon = strchr(line, ':'), *v, *end;

  if (*line == ' ' || *line == '\t') return "obsolete line folding";
  if (!colon || !is_token(line, (size_t)(colon - line)))
    return "a header field name is not a token (or has whitespace before "
           "its colon)";
  *colon = '\0';
  for (v = colon + 1; *v == ' ' || *v == '\t'; v++) {}
  end = v + strlen(v);
  while (end > v && (end[-1] == ' ' || end[-1] == '\t')) *--end = '\0';
  if (!value_ok(v, (size_t)(end - v)))
    return "a header field value has a control character";
  *name = line;
  *value = v;
  return NULL;
}

static int parse_length(const char *v, size_t *out)
{
  size_t n = 0;

  if (!*v) return -1;
  for (; *v; v++) {
    if (*v < '0' || *v > '9') return -1;
    if (n > (SIZE_MAX - 9) / 10) return -1;
    n = n * 10 + (size_t)(*v - '0');
  }
  *out = n;
  return 0;
}

/* Whether a comma-separated header value lists `tok` (case-insensitive). */
static int lists(const char *v, const char *tok)
{
  size_t n = strlen(tok);

  while (v && *v) {
    while (*v == ' ' || *v == '\t' || *v == ',') v++;
    if (!strncasecmp(v, tok, n) &&
        (v[n] == '\0' || v[n] == ',' || v[n] == ' ' || v[n] == '\t'))
      return 1;
    v = strchr(v, ',');
  }
  return 0;
}

static void dispatch(conn *c);

/* The head (without its final CRLF CRLF, NUL-terminated, no NUL
 * inside): request line and fields into c->req; 0, or an answer sent. */
static int parse_head(conn *c, char *head)
{
  swit__http_req *r = c->req;
  char *line = head, *next, *sp1, *sp2, *q;
  const char *cl = NULL, *te = NULL, *expect = NULL, *conn_hdr = NULL;
  size_t clen = 0;
  int chunked = 0, ncl = 0, nte = 0;

  /* lines: every CR must be followed by LF and every LF preceded by CR */
  for (char *p = head; *p; p++)
    if ((*p == '\r' && p[1] != '\n') ||
        (*p == '\n' && (p == head || p[-1] != '\r'))) {
      refuse(c, 400, "a bare CR or LF in the request head");
      return -1;
    }
  next = strstr(line, "\r\n");
  if (next) *next = '\0', next += 2;
  sp1 = strchr(line, ' ');
  sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
  if (!sp1 || !sp2 || strchr(sp2 + 1, ' ') ||
      !is_token(line, (size_t)(sp1 - line))) {
    refuse(c, 400, "malformed request line");
    return -1;
  }
  *sp1 = *sp2 = '\0';
  if (strncmp(sp2 + 1, "HTTP/", 5) != 0 || strlen(sp2 + 1) != 8 ||
      sp2[6] < '0' || sp2[6] > '9' || sp2[7] != '.' || sp2[8] < '0' ||
      sp2[8] > '9') {
    refuse(c, 400, "malformed HTTP version");
    return -1;
  }
  if (sp2[6] != '1') {
    refuse(c, 505, "only HTTP/1.0 and HTTP/1.1 are served");
    return -1;
  }
  r->minor = sp2[8] - '0';
  r->method = line;
  r->is_head = !strcmp(line, "HEAD");
  if (sp1[1] != '/') {
    refuse(c, 400, "the request target must be a path (origin-form)");
    return -1;
  }
  for (const char *t = sp1 + 1; *t; t++)
    if ((unsigned char)*t <= 0x20 || (unsigned char)*t >= 0x7f) {
      refuse(c, 400, "the request target has a control, space or "
             "non-ASCII byte");
      return -1;
    }
  r->path = sp1 + 1;
  if ((q = strchr(sp1 + 1, '?'))) *q = '\0', r->query = q + 1;
  for (line = next; line && *line; line = next) {
    const char *name, *value, *why;
    next = strstr(line, "\r\n");
    if (next) *next = '\0', next += 2;
    if (r->nf == MAX_FIELDS) {
      refuse(c, 431, "more than 100 header fields");
      return -1;
    }
    if ((why = parse_field(line, &name, &value))) {
      refuse(c, 400, why);
      return -1;
    }
    r->f[r->nf].name = name;
    r->f[r->nf++].value = value;
    if (!strcasecmp(name, "Content-Length")) ncl++, cl = value;
    else if (!strcasecmp(name, "Transfer-Encoding")) nte++, te = value;
    else if (!strcasecmp(name, "Expect")) expect = value;
    else if (!strcasecmp(name, "Connection")) conn_hdr = value;
  }
  if (ncl > 1 || (cl && parse_length(cl, &clen) != 0)) {
    refuse(c, 400, "Content-Length repeated, listed or not a number");
    return -1;
  }
  if (nte) {
    if (cl) {
      refuse(c, 400, "both Content-Length and Transfer-Encoding");
      return -1;
    }
    if (r->minor == 0) {
      refuse(c, 400, "Transfer-Encoding in an HTTP/1.0 request");
      return -1;
    }
    if (nte > 1 || strcasecmp(te, "chunked") != 0) {
      refuse(c, 501, "only Transfer-Encoding: chunked is understood");
      return -1;
    }
    chunked = 1;
  } else if (!cl && r->minor == 0 &&
             (!strcmp(r->method, "POST") || !strcmp(r->method, "PUT") ||
              !strcmp(r->method, "PATCH"))) {
    refuse(c, 411, "a request body needs a Content-Length");
    return -1;
  }
  if (cl && clen > c->s->o.max_body) {
    char msg[96];
    snprintf(msg, sizeof msg, "request body over the limit of %zu bytes",
             c->s->o.max_body);
    refuse(c, 413, msg);
    return -1;
  }
  if (expect && strcasecmp(expect, "100-continue") != 0) {
    refuse(c, 417, "unsupported Expect header");
    return -1;
  }
  r->keep_alive = r->minor == 1 && !lists(conn_hdr, "close");
  if (!(r->body = evbuffer_new())) {
    refuse(c, 500, "out of memory");
    return -1;
  }
  if (expect && r->minor == 1 && (chunked || clen > 0))
    evbuffer_add(bufferevent_get_output(c->bev),
                 "HTTP/1.1 100 Continue\r\n\r\n", 25);
  c->st = chunked ? C_CHUNK_SIZE : C_BODY;
  c->left = clen;
  return 0;
}

/* The chunk size line (without CRLF): size, then extensions. */
static int parse_chunk_size(const char *l, size_t *size)
{
  size_t n = 0;
  int digits = 0;

  for (; *l; l++, digits++) {
    int d = *l >= '0' && *l <= '9' ? *l - '0'
            : *l >= 'a' && *l <= 'f' ? *l - 'a' + 10
            : *l >= 'A' && *l <= 'F' ? *l - 'A' + 10 : -1;
    if (d < 0) break;
    if (n > (SIZE_MAX >> 4)) return -1;
    n = (n << 4) | (size_t)d;
  }
  if (!digits) return -1;
  /* chunk-ext: *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted ) ] ) */
  for (;;) {
    while (*l == ' ' || *l == '\t') l++;
    if (!*l) break;
    if (*l++ != ';') return -1;
    while (*l == ' ' || *l == '\t') l++;
    if (!is_tchar((unsigned char)*l)) return -1;
    while (is_tchar((unsigned char)*l)) l++;
    while (*l == ' ' || *l == '\t') l++;
    if (*l != '=') continue;
    l++;
    while (*l == ' ' || *l == '\t') l++;
    if (*l == '"') {
      for (l++; *l != '"'; l++) {
        if (*l == '\\') l++;
        if (!*l || ((unsigned char)*l < 0x20 && *l != '\t') || *l == 0x7f)
          return -1;
      }
      l++;
    } else {
      if (!is_tchar((unsigned char)*l)) return -1;
      while (is_tchar((unsigned char)*l)) l++;
    }
  }
  *size = n;
  return 0;
}

/* One CRLF-terminated line of at most max bytes out of in: 1 and a new
 * string, 0 (not complete yet), or -1 (too long, bare CR/LF or NUL). */
static int take_line(struct evbuffer *in, size_t max, char **out)
{
  struct evbuffer_ptr p = evbuffer_search(in, "\r\n", 2, NULL);
  size_t n;

  if (p.pos < 0) return evbuffer_get_length(in) > max ? -1 : 0;
  n = (size_t)p.pos;
  if (n > max || !(*out = malloc(n + 1))) return -1;
  evbuffer_remove(in, *out, n);
  evbuffer_drain(in, 2);
  (*out)[n] = '\0';
  if (strlen(*out) != n || strchr(*out, '\r') || strchr(*out, '\n')) {
    free(*out);
    return -1;
  }
  return 1;
}

static int body_room(conn *c, size_t n)
{
  if (evbuffer_get_length(c->req->body) + n > c->s->o.max_body) {
    char msg[96];
    snprintf(msg, sizeof msg, "request body over the limit of %zu bytes",
             c->s->o.max_body);
    refuse(c, 413, msg);
    return 0;
  }
  return 1;
}

/* Whether the unfinished head in `in` has an LF without its CR (a
 * client ending lines in LF alone would otherwise wait for a timeout). */
static int bare_lf(struct evbuffer *in)
{
  size_t n = evbuffer_get_length(in);
  const char *b = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);

  for (size_t i = 0; b && i < n; i++)
    if (b[i] == '\n' && (i == 0 || b[i - 1] != '\r')) return 1;
  return 0;
}

/* One step over what is buffered: 1 to go on, 0 to wait for bytes, an
 * answer or the end of the connection. */
static int step(conn *c)
{
  struct evbuffer *in = bufferevent_get_input(c->bev);

  {
    switch (c->st) {
    case C_HEAD: {
      struct evbuffer_ptr p;
      size_t n;
      char *head;
      /* empty lines before a request are ignored (RFC 9112 2.2) */
      while (evbuffer_get_length(in) >= 2) {
        char two[2];
        evbuffer_copyout(in, two, 2);
        if (two[0] != '\r' || two[1] != '\n') break;
        evbuffer_drain(in, 2);
      }
      p = evbuffer_search(in, "\r\n\r\n", 4, NULL);
      if (p.pos < 0) {
        if (evbuffer_get_length(in) > MAX_HEAD)
          refuse(c, 431, "request head over 16 KiB");
        else if (bare_lf(in))
          refuse(c, 400, "a bare CR or LF in the request head");
        return 0;
      }
      n = (size_t)p.pos;
      if (n > MAX_HEAD) {
        refuse(c, 431, "request head over 16 KiB");
        return 0;
      }
      if (!(c->req = calloc(1, sizeof *c->req)) ||
          !(head = malloc(n + 1))) {
        refuse(c, 500, "out of memory");
        return 0;
      }
      c->req->c = c;
      c->req->head = head;
      evbuffer_remove(in, head, n);
      evbuffer_drain(in, 4);
      head[n] = '\0';
      if (strlen(head) != n) {
        refuse(c, 400, "a NUL byte in the request head");
        return 0;
      }
      if (parse_head(c, head) != 0) return 0;
      break;
    }
    case C_BODY: {
      size_t n = evbuffer_get_length(in);
      if (n > c->left) n = c->left;
      evbuffer_remove_buffer(in, c->req->body, n);
      c->left -= n;
      if (c->left) return 0;
      dispatch(c);
      return c->st == C_HEAD;   /* answered at once: the next request */
    }
    case C_CHUNK_SIZE: {
      char *line;
      size_t size;
      int got = take_line(in, MAX_CHUNK_LINE, &line);
      if (got == 0) return 0;
      if (got < 0 || parse_chunk_size(line, &size) != 0) {
        if (got > 0) free(line);
        refuse(c, 400, "malformed chunk size line");
        return 0;
      }
      free(line);
      if (size && !body_room(c, size)) return 0;
      c->left = size;
      c->ntrailers = 0;
      c->st = size ? C_CHUNK_DATA : C_TRAILER;
      break;
    }
    case C_CHUNK_DATA: {
      size_t n = evbuffer_get_length(in);
      if (n > c->left) n = c->left;
      evbuffer_remove_buffer(in, c->req->body, n);
      c->left -= n;
      if (c->left) return 0;
      c->st = C_CHUNK_END;
      return 1;
    }
    case C_CHUNK_END: {
      char crlf[2];
      if (evbuffer_get_length(in) < 2) return 0;
      evbuffer_remove(in, crlf, 2);
      if (crlf[0] != '\r' || crlf[1] != '\n') {
        refuse(c, 400, "chunk data not followed by CRLF");
        return 0;
      }
      c->st = C_CHUNK_SIZE;
      break;
    }
    case C_TRAILER: {
      char *line;
      const char *name, *value;
      int got = take_line(in, MAX_HEAD, &line);
      if (got == 0) return 0;
      if (got < 0) {
        refuse(c, 400, "malformed trailer section");
        return 0;
      }
      if (!*line) {
        free(line);
        dispatch(c);
        return c->st == C_HEAD;
      }
      if (++c->ntrailers > MAX_FIELDS ||
          parse_field(line, &name, &value) != NULL) {
        free(line);
        refuse(c, 400, "malformed trailer field");
        return 0;
      }
      free(line);              /* trailer fields are checked, not kept */
      break;
    }
    case C_HANDLING:
    case C_CLOSING:
      return 0;
    }
  }
  return 1;
}

/* Parse what is buffered, as far as it goes. */
static void advance(conn *c)
{
  c->parsing = 1;
  while (step(c)) {}
  c->parsing = 0;
}

static int reserved_path(const swit__http *s, const char *path)
{
  for (const char *const *p = s->o.reserved_paths; p && *p; p++)
    if (!strcmp(*p, path)) return 1;
  return 0;
}

static void dispatch(conn *c)
{
  c->st = C_HANDLING;
  set_idle_timeout(c, 0);
  if (c->reserved && !reserved_path(c->s, c->req->path)) {
    c->st = C_HEAD;              /* refuse() expects a request being read */
    refuse(c, 503, "connection limit reached: only health checks are "
           "served now");
    return;
  }
  c->s->cb(c->req, c->s->ud);
}

static void on_read(struct bufferevent *bev, void *arg)
{
  (void)bev;
  advance(arg);
}

/* ------------------------------------------------------------------ */
/* Accepting */

static void resume_accept(evutil_socket_t fd, short what, void *arg)
{
  swit__http *s = arg;
  (void)fd, (void)what;
  evconnlistener_enable(s->lis);
}

static void on_accept_error(struct evconnlistener *lis, void *arg)
{
  swit__http *s = arg;
  int e = EVUTIL_SOCKET_ERROR();
  uint64_t now = swit__now_us();
  struct timeval t;
  conn *victim;

  count(s->o.accept_errors);
  s->errors_since_log++;
  if (!s->last_log_us || now - s->last_log_us >= LOG_EVERY_US) {
    swit__log(s->log, SWIT_LOG_WARN, "%s: accept failed %" PRIu64 " time(s) "
              "in the last 10s (%s); pausing accept %d ms at a time",
              s->o.what, s->errors_since_log, strerror(e), s->backoff_ms);
    s->last_log_us = now;
    s->errors_since_log = 0;
  }
  if ((victim = sheddable(s))) {   /* a descriptor for the next accept */
    count(s->o.conns_shed);
    conn_free(victim);
  }
  evconnlistener_disable(lis);
  t.tv_sec = s->backoff_ms / 1000;
  t.tv_usec = (s->backoff_ms % 1000) * 1000;
  evtimer_add(s->resume, &t);
  if (s->backoff_ms < BACKOFF_MAX_MS) s->backoff_ms *= 2;
  if (s->backoff_ms > BACKOFF_MAX_MS) s->backoff_ms = BACKOFF_MAX_MS;
}

/* "address:port" of an accepted peer, "?" for another family. */
static void format_peer(const struct sockaddr *sa, int salen, char *buf,
                        size_t len)
{
  char host[INET6_ADDRSTRLEN] = "?";
  unsigned port = 0;

  if (sa->sa_family == AF_INET && salen >= (int)sizeof(struct sockaddr_in)) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
  } else if (sa->sa_family == AF_INET6 &&
             salen >= (int)sizeof(struct sockaddr_in6)) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    port = ntohs(a->sin6_port);
  }
  snprintf(buf, len, "%s:%u", host, port);
}

/* The connection's bufferevent: plain, or TLS (handshake as the server;
 * a client that closes without close_notify is not an error). */
static struct bufferevent *new_bev(swit__http *s, evutil_socket_t fd)
{
  struct bufferevent *bev;
  SSL *ssl;

  if (!s->tls) return bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
  if (!(ssl = SSL_new(s->tls))) return NULL;
  bev = bufferevent_openssl_socket_new(s->base, fd, ssl,
                                       BUFFEREVENT_SSL_ACCEPTING,
                                       BEV_OPT_CLOSE_ON_FREE);
  if (!bev) {
    SSL_free(ssl);
    return NULL;
  }
  bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
  return bev;
}

/* Room for one more connection: at the cap, the oldest sheddable
 * connection is closed. 0, or -1 when every slot is handling a request
 * (the new connection is to be closed); either counts in conns_shed. */
static int make_room(swit__http *s)
{
  conn *victim;

  if (s->nconns < s->o.max_conns) return 0;
  count(s->o.conns_shed);
  if (!(victim = sheddable(s))) return -1;
  conn_free(victim);
  return 0;
}

/* A connection over bev, which it owns from here on: bev is freed when
 * this fails (out of memory). */
static int add_conn(swit__http *s, struct bufferevent *bev, const char *peer)
{
  conn *c = calloc(1, sizeof *c);

  if (!c) {
    bufferevent_free(bev);
    return -1;
  }
  c->s = s;
  c->bev = bev;
  snprintf(c->peer, sizeof c->peer, "%s", peer);
  c->reserved = s->o.reserve && s->nconns >= s->o.max_conns - s->o.reserve;
  c->prev = s->last;
  if (s->last) s->last->next = c;
  else s->first = c;
  s->last = c;
  s->nconns++;
  bufferevent_setcb(c->bev, on_read, on_written, on_event, c);
  bufferevent_setwatermark(c->bev, EV_READ, 0, READ_CAP);
  set_idle_timeout(c, 1);
  bufferevent_enable(c->bev, EV_READ | EV_WRITE);
  return 0;
}

static void on_accept(struct evconnlistener *lis, evutil_socket_t fd,
                      struct sockaddr *sa, int salen, void *arg)
{
  swit__http *s = arg;
  struct bufferevent *bev;
  char peer[64];

  (void)lis;
  s->backoff_ms = BACKOFF_MIN_MS;
  if (make_room(s) != 0 || !(bev = new_bev(s, fd))) {
    evutil_closesocket(fd);
    return;
  }
  format_peer(sa, salen, peer, sizeof peer);
  add_conn(s, bev, peer);
}

int swit__http_attach(swit__http *s, struct bufferevent *bev,
                      const char *peer)
{
  if (make_room(s) != 0) {
    bufferevent_free(bev);
    return -1;
  }
  return add_conn(s, bev, peer);
}

size_t swit__http_conns(const swit__http *s)
{
  return s->nconns;
}

/* ------------------------------------------------------------------ */
/* The server */

static void bound_addr(swit__http *s)
{
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  char ip[INET6_ADDRSTRLEN] = "?";
  int port = 0;

  if (getsockname(evconnlistener_get_fd(s->lis), (struct sockaddr *)&ss,
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

/* A TLS context from o's files: TLS 1.2 at least, the key checked against
 * the certificate. 0 (*out NULL when o asks for no TLS), or SWIT_E_CONFIG
 * naming the key. */
static int tls_context(const swit__http_opts *o, SSL_CTX **out, char *err,
                       size_t errlen)
{
  const char *file = o->tls_cert, *what = "cert_file";
  char why[256] = "";
  SSL_CTX *ctx;

  *out = NULL;
  if (!o->tls_cert || !*o->tls_cert) return 0;
  ERR_clear_error();
  if (!(ctx = SSL_CTX_new(TLS_server_method())) ||
      !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION))
    goto fail;
  if (SSL_CTX_use_certificate_chain_file(ctx, o->tls_cert) != 1) goto fail;
  file = o->tls_keyfile;
  what = "key_file";
  if (SSL_CTX_use_PrivateKey_file(ctx, o->tls_keyfile, SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1)
    goto fail;
  if (o->tls_client_ca && *o->tls_client_ca) {       /* mutual TLS */
    STACK_OF(X509_NAME) *names;
    file = o->tls_client_ca;
    what = "client_ca_file";
    if (SSL_CTX_load_verify_locations(ctx, o->tls_client_ca, NULL) != 1 ||
        !(names = SSL_load_client_CA_file(o->tls_client_ca)))
      goto fail;
    SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       NULL);
  }
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  *out = ctx;
  return 0;
fail:
  ERR_error_string_n(ERR_peek_last_error(), why, sizeof why);
  ERR_clear_error();
  SSL_CTX_free(ctx);
  snprintf(err, errlen, "%s.%s: cannot use '%s' for TLS: %s", o->tls_key,
           what, file, why[0] ? why : "unknown OpenSSL error");
  return SWIT_E_CONFIG;
}

int swit__http_tls_check(const swit__http_opts *o, char *err, size_t errlen)
{
  SSL_CTX *ctx;
  int rc = tls_context(o, &ctx, err, errlen);

  SSL_CTX_free(ctx);
  return rc;
}

int swit__http_start(swit__http **out, const char *listen,
                     const swit__http_opts *opts, swit__http_cb cb, void *ud,
                     const swit__logger *log, char *err, size_t errlen)
{
  struct evutil_addrinfo hints = {0}, *ai = NULL;
  swit__http *s;
  char host[256], port_s[8];
  int port, rc;

  *out = NULL;
  if (swit__listen_split(listen, host, sizeof host, &port) != 0) {
    snprintf(err, errlen, "%s: listen address '%s' is not host:port or off",
             opts->what, listen);
    return SWIT_E_CONFIG;
  }
  pthread_once(&threads_once, use_threads);
  if (!(s = calloc(1, sizeof *s))) return SWIT_E_NOMEM;
  s->o = *opts;
  if (!s->o.max_conns) s->o.max_conns = 1;
  if (s->o.reserve >= s->o.max_conns) s->o.reserve = s->o.max_conns - 1;
  s->cb = cb;
  s->ud = ud;
  s->log = log;
  s->backoff_ms = BACKOFF_MIN_MS;
  if ((rc = tls_context(opts, &s->tls, err, errlen))) goto fail;
  s->base = event_base_new();
  s->resume = s->base ? evtimer_new(s->base, resume_accept, s) : NULL;
  s->halt = s->base ? event_new(s->base, -1, 0, on_halt, s) : NULL;
  if (!s->resume || !s->halt) {
    snprintf(err, errlen, "%s: cannot create an event base", opts->what);
    rc = SWIT_E_SYS;
    goto fail;
  }
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_ADDRCONFIG;
  snprintf(port_s, sizeof port_s, "%d", port);
  if (evutil_getaddrinfo(host, port_s, &hints, &ai) != 0 || !ai ||
      !(s->lis = evconnlistener_new_bind(
            s->base, on_accept, s, LEV_OPT_CLOSE_ON_FREE |
            LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 128, ai->ai_addr,
            (int)ai->ai_addrlen))) {
    snprintf(err, errlen, "%s: cannot listen on %s", opts->what, listen);
    rc = SWIT_E_SYS;
    goto fail;
  }
  evutil_freeaddrinfo(ai);
  ai = NULL;
  evconnlistener_set_error_cb(s->lis, on_accept_error);
  bound_addr(s);
  /* *out is published before the loop starts: a handler may read it at
   * once (the admin reload thread finds the base through h->obs->admin;
   * ThreadSanitizer, e2e.admin, saw that read race this store). */
  *out = s;
  if (pthread_create(&s->thread, NULL, loop, s) != 0) {
    *out = NULL;
    snprintf(err, errlen, "%s: cannot start its thread", opts->what);
    rc = SWIT_E_SYS;
    goto fail;
  }
  s->started = 1;
  swit__log(log, SWIT_LOG_INFO, "%s listening on %s://%s", opts->what,
            s->tls ? "https" : "http", s->addr);
  return 0;
fail:
  if (ai) evutil_freeaddrinfo(ai);
  swit__http_stop(s);
  return rc;
}

void swit__http_halt(swit__http *s)
{
  if (!s || !s->started) return;
  event_active(s->halt, EV_TIMEOUT, 0);
  pthread_join(s->thread, NULL);
  s->started = 0;
}

void swit__http_stop(swit__http *s)
{
  if (!s) return;
  swit__http_halt(s);
  while (s->first) {
    conn *c = s->first;
    if (c->st == C_HANDLING) {   /* its answer will never come now */
      req_free(c->req);
      c->req = NULL;
    }
    conn_free(c);
  }
  if (s->lis) evconnlistener_free(s->lis);
  if (s->resume) event_free(s->resume);
  if (s->halt) event_free(s->halt);
  if (s->base) event_base_free(s->base);
  SSL_CTX_free(s->tls);
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

/* ------------------------------------------------------------------ */
/* Requests */

const char *swit__http_method(const swit__http_req *r) { return r->method; }
const char *swit__http_path(const swit__http_req *r) { return r->path; }
const char *swit__http_query(const swit__http_req *r) { return r->query; }
size_t swit__http_nheaders(const swit__http_req *r) { return r->nf; }

const char *swit__http_header(const swit__http_req *r, const char *name)
{
  for (size_t i = 0; i < r->nf; i++)
    if (!strcasecmp(r->f[i].name, name)) return r->f[i].value;
  return NULL;
}

void swit__http_header_at(const swit__http_req *r, size_t i,
                          const char **name, const char **value)
{
  *name = r->f[i].name;
  *value = r->f[i].value;
}

const char *swit__http_body(swit__http_req *r, size_t *len)
{
  *len = evbuffer_get_length(r->body);
  return *len ? (const char *)evbuffer_pullup(r->body, -1) : "";
}

static int hexval(char ch)
{
  return ch >= '0' && ch <= '9' ? ch - '0'
         : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
         : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

char *swit__http_decode(const char *s, size_t len)
{
  char *out = malloc(len + 1), *o = out;

  if (!out) return NULL;
  for (size_t i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '%') {
      int a = i + 2 < len ? hexval(s[i + 1]) : -1;
      int b = a >= 0 ? hexval(s[i + 2]) : -1;
      if (a < 0 || b < 0) {
        free(out);
        return NULL;
      }
      ch = (unsigned char)(a << 4 | b);
      i += 2;
    }
    if (ch < 0x20 || ch == 0x7f) {
      free(out);
      return NULL;
    }
    *o++ = (char)ch;
  }
  *o = '\0';
  return out;
}

int swit__http_param(const swit__http_req *r, const char *name, char **out)
{
  size_t nl = strlen(name);

  *out = NULL;
  for (const char *q = r->query; q && *q;) {
    const char *amp = strchr(q, '&'), *end = amp ? amp : q + strlen(q);
    const char *eq = memchr(q, '=', (size_t)(end - q));
    const char *kend = eq ? eq : end;
    if ((size_t)(kend - q) == nl && !memcmp(q, name, nl)) {
      const char *v = eq ? eq + 1 : end;
      return (*out = swit__http_decode(v, (size_t)(end - v))) ? 0 : -1;
    }
    q = amp ? amp + 1 : end;
  }
  return 0;
}

void swit__http_add_header(swit__http_req *r, const char *name,
                           const char *value)
{
  swit__buf_printf(&r->out, "%s: %s\r\n", name, value);
}

void swit__http_reply(swit__http_req *r, int code, const char *ctype,
                      const char *body, size_t len)
{
  conn *c = r->c;

  if (!c) {                      /* the client went away meanwhile */
    req_free(r);
    return;
  }
  write_answer(c, code, ctype, r->out.data, r->out.data ? r->out.len : 0,
               r->keep_alive, body, len, r->is_head);
  c->req = NULL;
  if (!r->keep_alive) {
    req_free(r);
    c->st = C_CLOSING;
    bufferevent_disable(c->bev, EV_READ);
    return;
  }
  req_free(r);
  c->st = C_HEAD;
  set_idle_timeout(c, 1);
  if (!c->parsing) advance(c);   /* a pipelined request may be waiting */
}

void swit__http_json_error(swit__http_req *r, int code, const char *msg)
{
  swit__buf b = {0};

  json_body(&b, msg);
  swit__http_reply(r, code, "application/json", b.data ? b.data : "",
                   b.data ? b.len : 0);
  free(b.data);
}

const char *swit__http_peer(const swit__http_req *req, char *buf, size_t len)
{
  if (!req->c) return NULL;
  snprintf(buf, len, "%s", req->c->peer);
  return buf;
}

/* Constant-time in the token's content: every byte of the longer string
 * is looked at whatever matches. */
int swit__http_bearer_ok(swit__http_req *req, const char *want)
{
  const char *auth = swit__http_header(req, "Authorization"), *given;
  size_t gl, wl, n;
  unsigned char d;

  if (!auth || strncasecmp(auth, "Bearer ", 7) != 0) return 0;
  given = auth + 7;
  gl = strlen(given);
  wl = strlen(want);
  n = gl > wl ? gl : wl;
  d = (unsigned char)(gl != wl);
  for (size_t i = 0; i < n; i++) {
    unsigned char a = i < gl ? (unsigned char)given[i] : 0;
    unsigned char b = i < wl ? (unsigned char)want[i] : 0;
    d |= a ^ b;
  }
  return d == 0;
}
