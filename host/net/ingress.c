/*
 * ingress.c - HTTP beside messaging (server.http.listen):
 *
 *   POST /v1/publish/{topic}
 *     body                   the payload (bytes as sent)
 *     Swit-Key: k            the message key
 *     Swit-Header-<name>: v  a message header <name> (lower-cased)
 *   202 {"ok":true,"topic":..,"confirm_id":N} once the broker confirmed;
 *   400 (bad topic, method or headers), 413 (over
 *   messaging.resources.memory.max_message_size), 503 (not running, broker
 *   down or full) with {"ok":false,"error":..}.
 *
 * Runs on its own thread and event_base (http.c), separate from the
 * admin server, so a publish waiting for its confirm never delays a
 * health check. A body over the limit is refused by libevent before it
 * is read (its own 413 page).
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <sys/queue.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "obs/obs.h"
#include "net/http.h"

#define MAX_HEADERS 64

static int status_for(int rc)
{
  switch (rc) {
  case SWIT_E_TOOBIG: return 413;
  case SWIT_E_INVAL: case SWIT_E_CONFIG: return 400;
  default: return 503;
  }
}

static void fail(swit_host_t *h, struct evhttp_request *req, int code,
                 const char *msg)
{
  swit__ctr_add(&h->obs->ingress_err, 1);
  swit__http_json_error(req, code, msg);
}

/* Swit-Header-* request headers into hv (names lower-cased into names). */
static int collect_headers(struct evhttp_request *req, swit_header *hv,
                           char names[][128], uint32_t *n)
{
  struct evkeyvalq *in = evhttp_request_get_input_headers(req);
  struct evkeyval *kv;

  *n = 0;
  TAILQ_FOREACH(kv, in, next) {
    size_t len;
    if (strncasecmp(kv->key, "Swit-Header-", 12) != 0) continue;
    len = strlen(kv->key + 12);
    if (len == 0 || len >= 128 || *n == MAX_HEADERS) return -1;
    for (size_t i = 0; i < len; i++)
      names[*n][i] = (char)tolower((unsigned char)kv->key[12 + i]);
    names[*n][len] = '\0';
    hv[*n] = (swit_header){names[*n], kv->value, (uint32_t)len,
                           (uint32_t)strlen(kv->value)};
    (*n)++;
  }
  return 0;
}

static void publish(swit_host_t *h, struct evhttp_request *req,
                    const char *topic)
{
  struct evbuffer *body = evhttp_request_get_input_buffer(req);
  const char *key = evhttp_find_header(evhttp_request_get_input_headers(req),
                                       "Swit-Key");
  static char names[MAX_HEADERS][128];   /* ingress thread only */
  swit_header hv[MAX_HEADERS];
  size_t len = evbuffer_get_length(body), total;
  const swit_cfg_publisher *pc = swit__config_publisher(h->cfg, "default");
  uint64_t confirm = 0;
  char err[512];
  swit_msg_view m;
  uint32_t nh;
  swit__buf b = {0};
  int rc;

  if (collect_headers(req, hv, names, &nh) != 0) {
    fail(h, req, 400, "too many Swit-Header-* headers, or a bad name");
    return;
  }
  total = len + (key ? strlen(key) : 0);
  for (uint32_t i = 0; i < nh; i++) total += hv[i].name_len + hv[i].value_len;
  if ((int64_t)total > h->cfg->messaging.resources.memory.max_message_size) {
    fail(h, req, 413, "message larger than messaging.resources.memory."
         "max_message_size");
    return;
  }
  if (atomic_load(&h->state) != SWIT__RUNNING) {
    fail(h, req, 503, "swit is not running");
    return;
  }
  m = (swit_msg_view){
    .topic = topic, .topic_len = (uint32_t)strlen(topic),
    .key = key, .key_len = key ? (uint32_t)strlen(key) : 0,
    .payload = (const char *)evbuffer_pullup(body, -1), .payload_len = len,
    .headers = hv, .nheaders = nh, .partition = -1,
  };
  rc = swit__publish(h, &m, (int)pc->timeout_ms, &confirm, err, sizeof err);
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

static void route(struct evhttp_request *req, void *ud)
{
  swit_host_t *h = ud;
  const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
  const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
  char *topic;

  if (!path || strncmp(path, "/v1/publish/", 12) != 0) {
    fail(h, req, 404, "no such endpoint: POST /v1/publish/{topic}");
    return;
  }
  if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
    fail(h, req, 405, "use POST");
    return;
  }
  topic = evhttp_uridecode(path + 12, 0, NULL);
  if (!topic || !topic_ok(topic))
    fail(h, req, 400, "the topic is empty, too long or has spaces or "
         "control characters");
  else
    publish(h, req, topic);
  free(topic);
}

int swit__ingress_start(swit_host_t *h, char *err, size_t errlen)
{
  const char *listen = h->cfg->server.http.listen;

  if (!listen || !*listen || !strcmp(listen, "off")) return 0;
  return swit__http_start(&h->obs->ingress, listen, "http ingress",
                          (size_t)h->cfg->messaging.resources.memory
                              .max_message_size,
                          route, h, &h->log, err, errlen);
}
