/*
 * ingress.c - HTTP beside messaging (server.http.listen):
 *
 *   POST /v1/publish/{topic}
 *     body                   the payload (bytes as sent)
 *     Swit-Key: k            the message key
 *     Swit-Header-<name>: v  a message header <name> (lower-cased)
 *   202 {"ok":true,"topic":..,"confirm_id":N} once the broker confirmed;
 *   401 (server.http.token set, and the request does not carry it as
 *   "Authorization: Bearer <token>"),
 *   400 (bad topic, method or headers), 413 (over
 *   messaging.resources.memory.max_message_size), 503 (not running, broker
 *   down or full) with {"ok":false,"error":..}.
 *
 * Runs on its own thread and event_base (http.c), separate from the
 * admin server, so a publish waiting for its confirm never delays a
 * health check. A body over the limit is refused before it is read
 * (http.c), a Swit-Header-x-swit-* or -traceparent/-tracestate with 400
 * unless server.http.trust_headers. The Swit-Key and header values were
 * checked for control characters by the parser; the decoded topic is
 * checked here (NUL and controls -> 400).
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/msg_int.h"
#include "obs/obs.h"
#include "net/http.h"

#define MAX_HEADERS 64

/* What one request's Swit-Header-* fields become: lower-cased names
 * (on the stack of the request's handler, nothing shared between
 * requests, servers or hosts). */
typedef struct hdrs {
  swit_header hv[MAX_HEADERS];
  char names[MAX_HEADERS][128];
  uint32_t n;
} hdrs;

static int status_for(int rc)
{
  switch (rc) {
  case SWIT_E_TOOBIG: return 413;
  case SWIT_E_INVAL: case SWIT_E_CONFIG: return 400;
  default: return 503;
  }
}

static void fail(swit_host_t *h, swit__http_req *req, int code,
                 const char *msg)
{
  swit__ctr_add(&h->obs->ingress_err, 1);
  swit__http_json_error(req, code, msg);
}

/* Header names a client may not set unless server.http.trust_headers:
 * swit's own (x-swit-*) and the trace context. */
static int reserved_name(const char *n)
{
  return !strncmp(n, "x-swit-", 7) || !strcmp(n, "traceparent") ||
         !strcmp(n, "tracestate");
}

/* Swit-Header-* request headers into out: NULL, or why not. */
static const char *collect_headers(swit_host_t *h, swit__http_req *req,
                                   hdrs *out)
{
  size_t nf = swit__http_nheaders(req);

  out->n = 0;
  for (size_t f = 0; f < nf; f++) {
    const char *key, *value;
    char *name;
    size_t len;
    swit__http_header_at(req, f, &key, &value);
    if (strncasecmp(key, "Swit-Header-", 12) != 0) continue;
    len = strlen(key + 12);
    if (len == 0 || len >= 128 || out->n == MAX_HEADERS)
      return "too many Swit-Header-* headers, or a bad name";
    name = out->names[out->n];
    for (size_t i = 0; i < len; i++)
      name[i] = (char)tolower((unsigned char)key[12 + i]);
    name[len] = '\0';
    if (!h->cfg->server.http.trust_headers && reserved_name(name))
      return "x-swit-* and trace context headers are set by swit, not by "
             "clients (see server.http.trust_headers)";
    out->hv[out->n] = (swit_header){name, value, (uint32_t)len,
                                    (uint32_t)strlen(value)};
    out->n++;
  }
  return NULL;
}

static void publish(swit_host_t *h, swit__http_req *req, const char *topic)
{
  const char *key = swit__http_header(req, "Swit-Key");
  const swit_cfg_publisher *pc = swit__config_publisher(h->cfg, "default");
  const char *payload, *why;
  size_t len, total;
  uint64_t confirm = 0;
  char err[512];
  swit_msg_view m;
  swit__buf b = {0};
  hdrs hd;
  char peer[80];
  int rc;

  payload = swit__http_body(req, &len);
  if ((why = collect_headers(h, req, &hd))) {
    fail(h, req, 400, why);
    return;
  }
  total = len + (key ? strlen(key) : 0);
  for (uint32_t i = 0; i < hd.n; i++)
    total += hd.hv[i].name_len + hd.hv[i].value_len;
  if ((int64_t)total > h->cfg->messaging.resources.memory.max_message_size) {
    fail(h, req, 413, "message larger than messaging.resources.memory."
         "max_message_size");
    return;
  }
  /* intake_busy first: a stop that begins after this check waits for
   * the publish to land before it looks at what the broker holds */
  atomic_fetch_add(&h->intake_busy, 1);
  if (atomic_load(&h->state) != SWIT__RUNNING) {
    atomic_fetch_sub(&h->intake_busy, 1);
    fail(h, req, 503, "swit is not running");
    return;
  }
  m = (swit_msg_view){
    .topic = topic, .topic_len = (uint32_t)strlen(topic),
    .key = key, .key_len = key ? (uint32_t)strlen(key) : 0,
    .payload = payload, .payload_len = len,
    .headers = hd.hv, .nheaders = hd.n, .partition = -1,
  };
  swit__publish_remote = swit__http_peer(req, peer, sizeof peer);
  rc = swit__publish(h, &m, (int)pc->timeout_ms, &confirm, err, sizeof err);
  swit__publish_remote = NULL;
  atomic_fetch_sub(&h->intake_busy, 1);
  if (rc != 0) {
    fail(h, req, status_for(rc), err);
    return;
  }
  swit__ctr_add(&h->obs->ingress_ok, 1);
  swit__buf_add(&b, "{\"ok\":true,\"topic\":", 19);
  swit__buf_json(&b, topic, strlen(topic));
  swit__buf_printf(&b, ",\"confirm_id\":%" PRIu64 "}\n", confirm);
  if (!b.data) {
    fail(h, req, 500, "out of memory");
    return;
  }
  swit__http_reply(req, 202, "application/json", b.data, b.len);
  free(b.data);
}

static int topic_ok(const char *t)
{
  if (!*t || strlen(t) > SWIT_TOPIC_MAX) return 0;
  for (; *t; t++)
    if ((unsigned char)*t < 0x21 || *t == 0x7f) return 0;
  return 1;
}

static void route(swit__http_req *req, void *ud)
{
  swit_host_t *h = ud;
  const char *path = swit__http_path(req);
  char *topic;

  if (strncmp(path, "/v1/publish/", 12) != 0) {
    fail(h, req, 404, "no such endpoint: POST /v1/publish/{topic}");
    return;
  }
  if (strcmp(swit__http_method(req), "POST") != 0) {
    fail(h, req, 405, "use POST");
    return;
  }
  if (*h->cfg->server.http.token &&
      !swit__http_bearer_ok(req, h->cfg->server.http.token)) {
    swit__http_add_header(req, "WWW-Authenticate", "Bearer");
    fail(h, req, 401, "missing or wrong bearer token (server.http.token)");
    return;
  }
  topic = swit__http_decode(path + 12, strlen(path + 12));
  if (!topic || !topic_ok(topic))
    fail(h, req, 400, "the topic is empty, too long, malformed or has "
         "spaces, NUL or control characters");
  else
    publish(h, req, topic);
  free(topic);
}

int swit__ingress_start(swit_host_t *h, char *err, size_t errlen)
{
  const char *listen = h->cfg->server.http.listen;
  const swit__http_opts opts = {
    .what = "http ingress",
    .max_body = (size_t)h->cfg->messaging.resources.memory.max_message_size,
    .max_conns = (size_t)h->cfg->server.http.max_connections,
    .accept_errors = &h->obs->http_accept_errors[1],
    .conns_shed = &h->obs->http_conns_shed[1],
    .bad_requests = &h->obs->http_bad_requests[1],
    .tls_cert = h->cfg->server.http.tls.cert_file,
    .tls_keyfile = h->cfg->server.http.tls.key_file,
    .tls_key = "server.http.tls",
    .tls_client_ca = h->cfg->server.http.tls.client_ca_file,
  };

  if (!listen || !*listen || !strcmp(listen, "off")) return 0;
  return swit__http_start(&h->obs->ingress, listen, &opts, route, h, &h->log,
                          err, errlen);
}
