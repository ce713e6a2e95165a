/*
 * admin.c - the admin HTTP server (server.admin.listen):
 *
 *   GET  /healthz                          liveness (health.c)
 *   GET  /readyz                           readiness (health.c)
 *   GET  /metrics                          Prometheus text (metrics.c)
 *   GET  /admin/status                     workers, subscriptions, broker
 *   POST /admin/reload[?rollback=1]        swit_host_reload        (token)
 *   POST /admin/subscriptions/{topic}/pause[?group=G]              (token)
 *   POST /admin/subscriptions/{topic}/resume[?group=G]             (token)
 *
 * Runs on its own thread and event_base (http.c). State-changing
 * endpoints need "Authorization: Bearer <server.admin.token>", compared
 * in constant time; with no token configured they answer 403.
 *
 * A reload runs on a thread of its own, so the loop keeps answering
 * (/healthz, /metrics, ...) while new Lua states are built: the request
 * waits, and the reload thread hands its result back to the loop
 * (event_base_once), which answers it. One at a time: a POST
 * /admin/reload during one gets 409. The reload record is the loop's
 * (req, thread) and the reload thread's (result) by turns; the base's
 * lock orders the hand-over. swit__admin_stop joins a running reload.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>

#include "api/api.h"
#include "net/http.h"

/* Connections of server.admin.max_connections kept for /healthz and
 * /readyz (http.c): the config key's minimum is above it. */
#define ADMIN_RESERVE 4

static int authorized(swit_host_t *h, swit__http_req *req)
{
  const char *want = h->cfg->server.admin.token;
  if (!want || !*want) {
    swit__http_json_error(req, 403, "state-changing admin endpoints are "
                          "disabled: server.admin.token is not set");
    return 0;
  }
  if (!swit__http_bearer_ok(req, want)) {
    swit__ctr_add(&h->obs->admin_denied, 1);  /* admin thread only */
    swit__http_add_header(req, "WWW-Authenticate", "Bearer");
    swit__http_json_error(req, 401, "missing or wrong bearer token");
    return 0;
  }
  return 1;
}

static void send_buf(swit__http_req *req, int code, const char *ctype,
                     swit__buf *b)
{
  if (!b->data) {
    swit__http_json_error(req, 500, "out of memory");
    return;
  }
  swit__http_reply(req, code, ctype, b->data, b->len);
  free(b->data);
}

/* ------------------------------------------------------------------ */
/* Endpoints */

struct swit__admin_reload {
  swit_host_t *h;
  swit__http_req *req;          /* waiting for the answer, or NULL */
  int rollback;
  pthread_t thread;
  int joinable;                 /* thread not joined yet */
  int rc;                       /* result: written by the reload thread */
  unsigned gen;
  char err[1024];
};

/* Back on the loop: answer the request. */
static void reload_answer(evutil_socket_t fd, short what, void *arg)
{
  swit__admin_reload *r = arg;
  swit__buf b = {0};
  char peer[80];

  (void)fd, (void)what;
  swit__sec_admin(r->h, r->rollback ? "rollback" : "reload", NULL,
                  swit__http_peer(r->req, peer, sizeof peer), r->rc,
                  r->rc ? r->err : NULL);
  if (r->rc == 0) {
    swit__buf_printf(&b, "{\"ok\":true,\"generation\":%u,\"rollback\":%s}\n",
                     r->gen, r->rollback ? "true" : "false");
    send_buf(r->req, 200, "application/json", &b);
  } else {
    swit__buf_printf(&b, "{\"ok\":false,\"generation\":%u,\"error\":",
                     r->gen);
    swit__buf_json(&b, r->err, strlen(r->err));
    swit__buf_add(&b, "}\n", 2);
    send_buf(r->req, r->rc == SWIT_E_SCRIPT ? 422 : r->rc == SWIT_E_STATE
             ? 409 : 500, "application/json", &b);
  }
  r->req = NULL;
}

static void *reload_main(void *arg)
{
  swit__admin_reload *r = arg;
  const struct timeval now = {0, 0};

  r->gen = 0;
  r->err[0] = '\0';
  r->rc = swit_host_reload(r->h, r->rollback ? SWIT_RELOAD_ROLLBACK : 0,
                           &r->gen, r->err, sizeof r->err);
  if (event_base_once(swit__http_base(r->h->obs->admin), -1, EV_TIMEOUT,
                      reload_answer, r, &now) != 0)
    swit__log(&r->h->log, SWIT_LOG_ERROR, "admin: cannot answer a reload "
              "request (out of memory)");
  return NULL;
}

static void do_reload(swit_host_t *h, swit__http_req *req, const char *rb)
{
  swit__admin_reload *r = h->obs->reload;

  if (r->req) {
    swit__http_json_error(req, 409, "a reload requested here is running; "
                          "try again when it has answered");
    return;
  }
  if (r->joinable) pthread_join(r->thread, NULL);   /* it has answered */
  r->joinable = 0;
  r->rollback = rb && (!strcmp(rb, "1") || !strcmp(rb, "true"));
  r->req = req;
  if (pthread_create(&r->thread, NULL, reload_main, r) != 0) {
    r->req = NULL;
    swit__http_json_error(req, 500, "cannot start a thread for the reload");
    return;
  }
  r->joinable = 1;
}

/* Pause or resume every active subscription of `topic` (of `group`
 * only, when given). An operator pause holds one count of paused_by, so
 * it combines with backpressure: the subscription resumes when both are
 * gone. */
static void do_pause(swit_host_t *h, swit__http_req *req,
                     const char *topic, const char *group, int pause)
{
  size_t n = h->subs ? __atomic_load_n(&h->nsubs, __ATOMIC_ACQUIRE) : 0;
  swit__buf b = {0};
  int found = 0;

  swit__buf_printf(&b, "{\"ok\":true,\"%s\":[", pause ? "paused" : "resumed");
  for (size_t i = 0; i < n; i++) {
    swit__sub *s = h->subs[i];
    if (!atomic_load(&s->active) || strcmp(s->topic, topic) ||
        (group && strcmp(s->group, group)))
      continue;
    if (atomic_exchange(&s->admin_paused, pause) != pause) {
      atomic_fetch_add(&s->paused_by, pause ? 1 : -1);
      swit__sub_reconcile_pause(s);
      swit__log(&h->log, SWIT_LOG_INFO, "admin: %s '%s' (group %s)",
                pause ? "paused" : "resumed", s->topic, s->group);
    }
    swit__buf_printf(&b, "%s{\"topic\":", found++ ? "," : "");
    swit__buf_json(&b, s->topic, strlen(s->topic));
    swit__buf_add(&b, ",\"group\":", 9);
    swit__buf_json(&b, s->group, strlen(s->group));
    swit__buf_add(&b, "}", 1);
  }
  swit__buf_add(&b, "]}\n", 3);
  {
    char peer[80];
    swit__sec_admin(h, pause ? "pause" : "resume", topic,
                    swit__http_peer(req, peer, sizeof peer),
                    found ? 0 : SWIT_E_NOTFOUND, NULL);
  }
  if (!found) {
    free(b.data);
    swit__http_json_error(req, 404, "no active subscription for that topic");
    return;
  }
  send_buf(req, 200, "application/json", &b);
}

static void get_doc(swit_host_t *h, swit__http_req *req,
                    const char *path)
{
  swit__buf b = {0};
  int ok = 1;

  if (!strcmp(path, "/healthz")) {
    ok = swit__health_live(h, &b);
  } else if (!strcmp(path, "/readyz")) {
    ok = swit__health_ready(h, &b);
  } else if (!strcmp(path, "/admin/status")) {
    swit__status_json(h, &b);
    /* the resilience layer's part goes inside the object: "...]}\n" */
    if (b.len >= 2 && b.data[b.len - 2] == '}') {
      b.len -= 2;
      swit__resil_status_json(h, &b);
      swit__buf_add(&b, "}\n", 2);
    }
  } else {
    swit__metrics_render(h, &b);
    swit__resil_metrics_render(h, &b);
    send_buf(req, 200, "text/plain; version=0.0.4; charset=utf-8", &b);
    return;
  }
  send_buf(req, ok ? 200 : 503, "application/json", &b);
}

/* "/admin/subscriptions/<topic>/<action>": the decoded topic, or NULL
 * (with *action set when the topic could not be decoded). */
static char *sub_path(const char *path, const char **action)
{
  static const char prefix[] = "/admin/subscriptions/";
  const char *t = path + sizeof prefix - 1, *slash;

  if (strncmp(path, prefix, sizeof prefix - 1) != 0) return NULL;
  if (!(slash = strrchr(t, '/')) || slash == t) return NULL;
  *action = slash + 1;
  return swit__http_decode(t, (size_t)(slash - t));
}

static void route(swit__http_req *req, void *ud)
{
  swit_host_t *h = ud;
  const char *path = swit__http_path(req);
  const char *m = swit__http_method(req);
  const char *action = NULL;
  char *topic = NULL, *rollback = NULL, *group = NULL;

  swit__ctr_add(&h->obs->http_requests, 1);
  if (swit__http_param(req, "rollback", &rollback) != 0 ||
      swit__http_param(req, "group", &group) != 0) {
    swit__http_json_error(req, 400, "bad query string (a malformed escape "
                          "or a control character)");
  } else if (!strcmp(path, "/healthz") || !strcmp(path, "/readyz") ||
      !strcmp(path, "/metrics") || !strcmp(path, "/admin/status")) {
    if (strcmp(m, "GET") && strcmp(m, "HEAD"))
      swit__http_json_error(req, 405, "use GET");
    else
      get_doc(h, req, path);
  } else if (!strcmp(path, "/admin/reload")) {
    if (strcmp(m, "POST")) swit__http_json_error(req, 405, "use POST");
    else if (authorized(h, req)) do_reload(h, req, rollback);
  } else if (!(topic = sub_path(path, &action)) && action) {
    swit__http_json_error(req, 400, "the topic is empty, malformed or has "
                          "a control character");
  } else if (topic &&
             (!strcmp(action, "pause") || !strcmp(action, "resume"))) {
    if (strcmp(m, "POST")) swit__http_json_error(req, 405, "use POST");
    else if (authorized(h, req))
      do_pause(h, req, topic, group, !strcmp(action, "pause"));
  } else {
    swit__http_json_error(req, 404, "no such endpoint (see "
                          "docs/operations.md)");
  }
  free(topic);
  free(rollback);
  free(group);
}

int swit__admin_start(swit_host_t *h, char *err, size_t errlen)
{
  const char *listen = h->cfg->server.admin.listen;

  static const char *const health[] = { "/healthz", "/readyz", NULL };
  const swit__http_opts opts = {
    .what = "admin", .max_body = 64 * 1024,
    .max_conns = (size_t)h->cfg->server.admin.max_connections,
    .reserve = ADMIN_RESERVE, .reserved_paths = health,
    .accept_errors = &h->obs->http_accept_errors[0],
    .conns_shed = &h->obs->http_conns_shed[0],
    .bad_requests = &h->obs->http_bad_requests[0],
    .tls_cert = h->cfg->server.admin.tls.cert_file,
    .tls_keyfile = h->cfg->server.admin.tls.key_file,
    .tls_key = "server.admin.tls",
    .tls_client_ca = h->cfg->server.admin.tls.client_ca_file,
  };

  if (!listen || !*listen || !strcmp(listen, "off")) return 0;
  if (!(h->obs->reload = calloc(1, sizeof *h->obs->reload)))
    return SWIT_E_NOMEM;
  h->obs->reload->h = h;
  return swit__http_start(&h->obs->admin, listen, &opts, route, h, &h->log,
                          err, errlen);
}

/* The loop first (no handler runs any more), then a reload still
 * running (it may still hand its answer to the base), then the rest. A
 * request still waiting goes with its connection. */
void swit__admin_stop(swit_host_t *h)
{
  swit__admin_reload *r = h->obs->reload;

  swit__http_halt(h->obs->admin);
  if (r && r->joinable) pthread_join(r->thread, NULL);
  swit__http_stop(h->obs->admin);
  h->obs->admin = NULL;
  free(r);
  h->obs->reload = NULL;
}
