/*
 * host.c - the public host API: create from config, register C handlers,
 * check, start, wait for idle, stop, free.
 *
 * Wires config -> broker adapter -> workers and their Lua states ->
 * subscriptions. Startup order (DESIGN.md, "Lifecycle"): connect, load
 * scripts into every worker's state, subscribe, start the workers (worker
 * 0 runs on_start first). Shutdown: pause intake, drain in-flight work up
 * to the deadline, unsubscribe, stop the workers (which requeue what they
 * still hold), flush, disconnect.
 *
 * The embedder's thread calls these; start and stop are serialised by
 * h->lock. The host owns its config, adapter, workers and subscriptions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "host_int.h"

const char *swit_version(void)
{
  return SWIT_VERSION_STRING;
}

const char *swit_strerror(int code)
{
  switch (code) {
  case SWIT_OK: return "ok";
#define SWIT__ERR_CASE(name, c, text) case SWIT_E_##name: return text;
  SWIT_ERRNO_MAP(SWIT__ERR_CASE)
#undef SWIT__ERR_CASE
  }
  return "unknown error";
}

/* ------------------------------------------------------------------ */
/* Creation */

static const char *const broker_names[] = {"memory", "kafka", "rabbitmq",
                                           "nats"};

static int host_create(swit_host_t **out, swit_config *cfg, char *err,
                       size_t errlen)
{
  const char *type = broker_names[cfg->messaging.broker.type];
  const swit_cfg_mark *mk = &cfg->messaging.broker.type_mark;
  swit_host_t *h = calloc(1, sizeof *h);
  int rc;

  if (!h) {
    swit__config_free(cfg);
    snprintf(err, errlen, "out of memory");
    return SWIT_E_NOMEM;
  }
  h->cfg = cfg;
  h->log.level = SWIT_LOG_INFO;
  h->batch_size = (uint32_t)cfg->lua.batch_size;
  pthread_mutex_init(&h->lock, NULL);
  h->ops = swit__broker_find(type);
  if (!h->ops) {
    snprintf(err, errlen, "%s:%d:%d: messaging.broker.type: broker '%s' is "
             "not compiled into this build", mk->file ? mk->file : cfg->path,
             mk->line, mk->col, type);
    rc = SWIT_E_CONFIG;
    goto fail;
  }
  if (h->ops->config_fields) {
    h->broker_settings = calloc(1, h->ops->settings_size);
    if (!h->broker_settings) {
      rc = SWIT_E_NOMEM;
      goto fail;
    }
    rc = swit__config_apply(&cfg->messaging.broker.config,
                            h->ops->config_fields, h->broker_settings, err,
                            errlen);
    if (rc) goto fail;
  }
  *out = h;
  return 0;
fail:
  swit_host_free(h);
  return rc;
}

int swit_host_new(swit_host_t **out, const char *config_path, char *err,
                  size_t errlen)
{
  swit_config *cfg;
  int rc = swit__config_load_file(&cfg, config_path, err, errlen);
  return rc ? rc : host_create(out, cfg, err, errlen);
}

int swit_host_new_from_string(swit_host_t **out, const char *yaml,
                              const char *base_dir, char *err, size_t errlen)
{
  swit_config *cfg;
  int rc = swit__config_load_string(&cfg, yaml, base_dir, err, errlen);
  return rc ? rc : host_create(out, cfg, err, errlen);
}

int swit_host_handle(swit_host_t *h, const char *topic, const char *group,
                     int ordering, swit_handler_cb cb, void *ud, char *err,
                     size_t errlen)
{
  swit__chandler *v, *c;

  if (!topic || !*topic || !cb || ordering < SWIT_ORDER_KEY ||
      ordering > SWIT_ORDER_PARTITION) {
    snprintf(err, errlen, "swit_host_handle: need a topic, a callback and "
             "an ordering (SWIT_ORDER_KEY, _NONE or _PARTITION)");
    return SWIT_E_INVAL;
  }
  if (atomic_load(&h->state) != SWIT__NEW) {
    snprintf(err, errlen, "swit_host_handle: the host is already started");
    return SWIT_E_STATE;
  }
  v = realloc(h->chandlers, (h->nchandlers + 1) * sizeof *v);
  if (!v) return SWIT_E_NOMEM;
  h->chandlers = v;
  c = &v[h->nchandlers];
  *c = (swit__chandler){strdup(topic), group ? strdup(group) : NULL,
                        ordering, cb, ud};
  if (!c->topic || (group && !c->group)) {
    free(c->topic);
    free(c->group);
    return SWIT_E_NOMEM;
  }
  h->nchandlers++;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Subscriptions */

static void sub_free(swit__sub *s)
{
  if (!s) return;
  pthread_mutex_destroy(&s->pause_lock);
  free(s->topic);
  free(s->group);
  free(s->dead_letter);
  free(s);
}

static void subs_free(swit_host_t *h)
{
  for (size_t i = 0; i < h->nsubs; i++) sub_free(h->subs[i]);
  free(h->subs);
  h->subs = NULL;
  h->nsubs = h->nlua_subs = 0;
}

int swit__subs_create(swit_host_t *h, size_t nlua)
{
  size_t n = nlua + h->nchandlers;

  h->subs = calloc(n ? n : 1, sizeof *h->subs);
  if (!h->subs) return SWIT_E_NOMEM;
  h->nlua_subs = nlua;
  for (size_t i = 0; i < n; i++) {
    swit__sub *s = calloc(1, sizeof *s);
    if (!s) return SWIT_E_NOMEM;
    pthread_mutex_init(&s->pause_lock, NULL);
    s->id = (uint32_t)i + 1;
    s->host = h;
    s->jetstream = -1;
    h->subs[i] = s;
    h->nsubs = i + 1;
    if (i < nlua) continue;
    const swit__chandler *c = &h->chandlers[i - nlua];
    s->topic = strdup(c->topic);
    s->group = c->group ? strdup(c->group) : NULL;
    s->ordering = c->ordering;
    s->ccb = c->cb;
    s->cud = c->ud;
    if (!s->topic || (c->group && !s->group)) return SWIT_E_NOMEM;
  }
  return 0;
}

/* Fill defaults (group, dead letter, retry policy) and reject a topic and
 * group registered twice (by scripts and C handlers together). */
static int subs_finish(swit_host_t *h, char *err, size_t errlen)
{
  for (size_t i = 0; i < h->nsubs; i++) {
    swit__sub *s = h->subs[i];
    if (!s->group && !(s->group = strdup(h->cfg->server.name)))
      return SWIT_E_NOMEM;
    if (!s->dead_letter) {
      size_t len = strlen(s->topic) + 5;
      if (!(s->dead_letter = malloc(len))) return SWIT_E_NOMEM;
      snprintf(s->dead_letter, len, "%s.dlq", s->topic);
    }
    s->scfg = swit__config_subscriber(h->cfg, s->group);
    if (!s->max_attempts) s->max_attempts = (uint32_t)s->scfg->max_attempts;
    for (size_t j = 0; j < i; j++) {
      if (strcmp(h->subs[j]->topic, s->topic) ||
          strcmp(h->subs[j]->group, s->group))
        continue;
      snprintf(err, errlen, "topic '%s' has two handlers for group '%s' "
               "(%s and %s)", s->topic, s->group,
               h->subs[j]->ccb ? "a C handler" : "a Lua handler",
               s->ccb ? "a C handler" : "a Lua handler");
      return SWIT_E_EXISTS;
    }
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* Scripts */

static int load_scripts(swit_host_t *h, char *err, size_t errlen)
{
  int rc;

  if (h->cfg->lua.scripts.n == 0) return swit__subs_create(h, 0);
  for (size_t i = 0; i < h->nworkers; i++) {
    swit__worker *w = &h->workers[i];
    if (!(w->L = swit__lua_new_state(h, w, err, errlen))) return SWIT_E_SCRIPT;
    if ((rc = swit__lua_registrations(h, w->L, err, errlen))) return rc;
    if ((rc = swit__lua_bind_dispatch(w))) {
      snprintf(err, errlen, "swit module has no _dispatch");
      return rc;
    }
  }
  return 0;
}

int swit_host_check(swit_host_t *h, char *err, size_t errlen)
{
  lua_State *L = NULL;
  swit__worker w;
  int rc = 0;

  if (atomic_load(&h->state) != SWIT__NEW || h->subs) {
    snprintf(err, errlen, "swit_host_check: only before start");
    return SWIT_E_STATE;
  }
  memset(&w, 0, sizeof w);
  if (h->cfg->lua.scripts.n) {
    /* no host pointer in w: publishing from a checked script fails */
    if (!(L = swit__lua_new_state(h, NULL, err, errlen))) return SWIT_E_SCRIPT;
    rc = swit__lua_registrations(h, L, err, errlen);
  } else {
    rc = swit__subs_create(h, 0);
  }
  if (rc == 0) rc = subs_finish(h, err, errlen);
  for (size_t i = 0; rc == 0 && i < h->nsubs; i++)
    swit__log(&h->log, SWIT_LOG_INFO, "handler: topic '%s' group '%s' "
              "(%s, ordering %s, max_attempts %u, dead letter '%s')",
              h->subs[i]->topic, h->subs[i]->group,
              h->subs[i]->ccb ? "C" : "Lua",
              h->subs[i]->ordering == SWIT_ORDER_KEY ? "key"
              : h->subs[i]->ordering == SWIT_ORDER_NONE ? "none" : "partition",
              h->subs[i]->max_attempts, h->subs[i]->dead_letter);
  if (L) {
    w.L = L;
    swit__lua_close(&w);
  }
  subs_free(h);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Start */

static int connect_broker(swit_host_t *h, char *err, size_t errlen)
{
  swit_broker_env env = {
    .cfg = h->cfg, .settings = h->broker_settings,
    .log = swit__log_cb, .log_ud = &h->log,
  };
  int rc;

  swit__conn_env(h, &env);
  rc = h->ops->create(&h->broker, &env, err, errlen);
  if (rc == 0) rc = h->ops->connect(h->broker, err, errlen);
  if (rc == 0) h->connected = 1;
  return rc;
}

static int subscribe_all(swit_host_t *h, char *err, size_t errlen)
{
  for (size_t i = 0; i < h->nsubs; i++) {
    swit__sub *s = h->subs[i];
    swit_sub_spec spec = {
      .topic = s->topic, .group = s->group, .ordering = s->ordering,
      .prefetch = (uint32_t)s->scfg->prefetch,
      .ack_deadline_ms = s->scfg->ack_deadline_ms,
      .exactly_once = s->exactly_once, .jetstream = s->jetstream,
    };
    int rc = h->ops->subscribe(h->broker, &spec, swit__dispatch_sink, s,
                               &s->handle, err, errlen);
    if (rc) return rc;
  }
  return 0;
}

static void unsubscribe_all(swit_host_t *h)
{
  for (size_t i = 0; i < h->nsubs; i++) {
    swit__sub *s = h->subs[i];
    if (!s->handle) continue;
    h->ops->unsubscribe(h->broker, s->handle);
  }
}

static int start_locked(swit_host_t *h, char *err, size_t errlen)
{
  int rc;

  if ((rc = swit__workers_create(h, err, errlen))) return rc;
  if ((rc = connect_broker(h, err, errlen))) return rc;
  if ((rc = load_scripts(h, err, errlen))) return rc;
  if ((rc = subs_finish(h, err, errlen))) return rc;
  if ((rc = swit__workers_init_queues(h, err, errlen))) return rc;
  atomic_store(&h->last_activity_ms, swit__now_ms());
  if ((rc = subscribe_all(h, err, errlen))) return rc;
  return swit__workers_start(h, err, errlen);
}

static void teardown(swit_host_t *h)
{
  if (h->connected) h->ops->flush(h->broker, 5000);
  unsubscribe_all(h);
  swit__workers_stop(h);
  if (h->connected) {
    h->ops->disconnect(h->broker);
    h->connected = 0;
  }
}

int swit_host_start(swit_host_t *h, char *err, size_t errlen)
{
  char ebuf[256];
  int rc;

  if (!err) err = ebuf, errlen = sizeof ebuf;
  pthread_mutex_lock(&h->lock);
  if (atomic_load(&h->state) != SWIT__NEW) {
    pthread_mutex_unlock(&h->lock);
    snprintf(err, errlen, "swit_host_start: the host was already started");
    return SWIT_E_STATE;
  }
  rc = start_locked(h, err, errlen);
  if (rc) {
    teardown(h);
    atomic_store(&h->state, SWIT__STOPPED);
  } else {
    atomic_store(&h->state, SWIT__RUNNING);
    swit__log(&h->log, SWIT_LOG_INFO, "swit %s running: broker %s, %zu "
              "workers, %zu handlers", SWIT_VERSION_STRING, h->ops->name,
              h->nworkers, h->nsubs);
  }
  pthread_mutex_unlock(&h->lock);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Idle, stop, free */

static void sleep_ms(long ms)
{
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

int swit_host_wait_idle(swit_host_t *h, int idle_ms, int timeout_ms)
{
  int64_t start = swit__now_ms();

  for (;;) {
    int64_t now = swit__now_ms();
    int os = atomic_load(&h->on_start_done);

    if (atomic_load(&h->state) != SWIT__RUNNING) return SWIT_E_STATE;
    if (os != 0 && atomic_load(&h->inflight) == 0 &&
        now - atomic_load(&h->last_activity_ms) >= idle_ms)
      return os < 0 ? SWIT_E_SCRIPT : 0;
    if (timeout_ms >= 0 && now - start >= timeout_ms) return SWIT_E_TIMEDOUT;
    sleep_ms(5);
  }
}

static void pause_all(swit_host_t *h)
{
  for (size_t i = 0; i < h->nsubs; i++) {
    atomic_fetch_add(&h->subs[i]->paused_by, 1);
    swit__sub_reconcile_pause(h->subs[i]);
  }
}

int swit_host_stop(swit_host_t *h, int deadline_ms)
{
  int64_t end = swit__now_ms() + (deadline_ms < 0
                                  ? h->cfg->server.shutdown_timeout_ms
                                  : deadline_ms);
  int_fast64_t left;

  pthread_mutex_lock(&h->lock);
  if (atomic_load(&h->state) != SWIT__RUNNING) {
    pthread_mutex_unlock(&h->lock);
    return 0;
  }
  atomic_store(&h->state, SWIT__DRAINING);
  pause_all(h);
  while ((left = atomic_load(&h->inflight)) > 0 && swit__now_ms() < end)
    sleep_ms(2);
  if (left > 0)
    swit__log(&h->log, SWIT_LOG_WARN, "shutdown deadline reached: %ld "
              "message(s) not finished are given back to the broker",
              (long)left);
  teardown(h);
  atomic_store(&h->state, SWIT__STOPPED);
  pthread_mutex_unlock(&h->lock);
  swit__log(&h->log, SWIT_LOG_INFO, "stopped");
  return 0;
}

void swit_host_free(swit_host_t *h)
{
  if (!h) return;
  swit_host_stop(h, -1);
  swit__workers_free(h);
  subs_free(h);
  if (h->ops) h->ops->destroy(h->broker);
  if (h->broker_settings) {
    swit__config_free_fields(h->ops->config_fields, h->broker_settings);
    free(h->broker_settings);
  }
  for (size_t i = 0; i < h->nchandlers; i++) {
    free(h->chandlers[i].topic);
    free(h->chandlers[i].group);
  }
  free(h->chandlers);
  swit__config_free(h->cfg);
  pthread_mutex_destroy(&h->lock);
  free(h);
}
