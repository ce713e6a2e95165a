/*
 * host.c - the public host API: create from config, register C handlers,
 * check, start, wait for idle, stop, free.
 *
 * Wires config -> broker adapter -> workers and their Lua states ->
 * subscriptions. Startup order (DESIGN.md, "Lifecycle"): connect,
 * validate the scripts (first code generation) and build every worker's
 * state, subscribe, start the workers (worker 0 runs on_start first).
 * Shutdown: pause intake, drain in-flight work up to the deadline, flush,
 * unsubscribe, stop the workers (which give back what they still hold),
 * disconnect.
 *
 * The embedder's thread calls these; start and stop are serialised by
 * h->lock. The host owns its config, adapter, workers and subscriptions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "net/http.h"

void swit_host_log(swit_host_t *h, int level, const char *fmt, ...)
{
  va_list ap;

  if (!h) return;
  va_start(ap, fmt);
  swit__vlog(&h->log, level, fmt, ap);
  va_end(ap);
}

int swit_host_set_log(swit_host_t *h, swit_log_cb cb, void *ud)
{
  if (!h) return SWIT_E_INVAL;
  if (atomic_load(&h->state) != SWIT__NEW) return SWIT_E_STATE;
  h->log.cb = cb;
  h->log.ud = cb ? ud : NULL;
  return 0;
}

int swit_host_log_json(const swit_host_t *h)
{
  return h && h->log.format == SWIT_LOG_FMT_JSON;
}

const char *swit_version(void)
{
  return SWIT_VERSION_STRING;
}

int swit_version_number(void)
{
  return SWIT_VERSION_NUMBER;
}

int swit_parse_duration_ms(const char *text, int64_t *ms)
{
  return swit__parse_duration_ms(text, ms) == 0 ? 0 : SWIT_E_INVAL;
}

/* Rows a field prints in the reference (a section: its keys'). */
static size_t ref_count(const swit_cfg_field *fields)
{
  size_t n = 0;
  for (; fields->name; fields++)
    n += fields->type == SWIT_CFG_SECTION ? ref_count(fields->fields)
         : fields->type == SWIT_CFG_NAMED ? 1 + ref_count(fields->fields)
                                          : 1;
  return n;
}

static void ref_table(const char *title, const swit_cfg_field *fields,
                      const char *prefix,
                      void (*emit)(void *ud, const char *line), void *ud)
{
  emit(ud, title);
  emit(ud, "");
  swit__config_reference(fields, prefix, emit, ud);
  emit(ud, "");
}

/* One table per top-level section; a large one (messaging) gets one for
 * its own keys and one per sub-section. Then each compiled-in broker's
 * keys. This is docs/configuration.md's reference part, byte for byte. */
void swit_config_reference(void (*emit)(void *ud, const char *line),
                           void *ud)
{
  char title[160];

  for (const swit_cfg_field *t = swit__config_fields; t->name; t++) {
    swit_cfg_field own[32] = {{0}};
    size_t n = 0;
    snprintf(title, sizeof title, "## %s", t->name);
    if (ref_count(t->fields) <= 25) {
      ref_table(title, t->fields, t->name, emit, ud);
      continue;
    }
    for (const swit_cfg_field *f = t->fields; f->name && n < 31; f++)
      if (f->type != SWIT_CFG_SECTION && f->type != SWIT_CFG_NAMED)
        own[n++] = *f;
    ref_table(title, own, t->name, emit, ud);
    for (const swit_cfg_field *f = t->fields; f->name; f++) {
      swit_cfg_field one[2] = { *f, {0} };
      if (f->type != SWIT_CFG_SECTION && f->type != SWIT_CFG_NAMED) continue;
      snprintf(title, sizeof title, "### %s.%s%s", t->name, f->name,
               f->type == SWIT_CFG_NAMED ? ".\\<name>" : "");
      ref_table(title, one, t->name, emit, ud);
    }
  }
  emit(ud, "## messaging.broker.config, by broker type");
  emit(ud, "");
  for (size_t i = 0; swit__broker_types[i]; i++) {
    const swit_broker_ops *ops = swit__broker_find(swit__broker_types[i]);
    if (!ops || !ops->config_fields) continue;
    snprintf(title, sizeof title, "### type: %s", ops->name);
    ref_table(title, ops->config_fields, "messaging.broker.config", emit, ud);
  }
}

/* ------------------------------------------------------------------ */
/* Creation */

/* A server's TLS files (server.<srv>.tls) must make a TLS context now:
 * a bad one refuses the start (and swit check), not a server left off. */
static int check_server_tls(const char *listen, const swit_cfg_server_tls *t,
                            const char *key, char *err, size_t errlen)
{
  const swit__http_opts o = {.tls_cert = t->cert_file,
                             .tls_keyfile = t->key_file, .tls_key = key,
                             .tls_client_ca = t->client_ca_file};

  if (!listen || !*listen || strcmp(listen, "off") == 0) return 0;
  return swit__http_tls_check(&o, err, errlen);
}

static int host_create(swit_host_t **out, swit_config *cfg, char *err,
                       size_t errlen)
{
  const char *type = swit__broker_types[cfg->messaging.broker.type];
  swit_host_t *h = calloc(1, sizeof *h);
  int rc;

  if (!h) {
    swit__config_free(cfg);
    snprintf(err, errlen, "out of memory");
    return SWIT_E_NOMEM;
  }
  swit__guard_init();          /* the handler-interrupt signal, once */
  h->cfg = cfg;
  h->log.level = SWIT_LOG_INFO;
  h->log.context = swit__trace_log_context;
  h->runner = &swit__lua_runner;
  h->batch_size = (uint32_t)cfg->lua.batch_size;
  pthread_mutex_init(&h->lock, NULL);
  pthread_mutex_init(&h->reload_lock, NULL);
  pthread_mutex_init(&h->swap_lock, NULL);
  swit__cond_init_monotonic(&h->swap_cv);
  if ((rc = check_server_tls(cfg->server.admin.listen, &cfg->server.admin.tls,
                             "server.admin.tls", err, errlen)) ||
      (rc = check_server_tls(cfg->server.http.listen, &cfg->server.http.tls,
                             "server.http.tls", err, errlen)))
    goto fail;
  if ((rc = swit__obs_new(h, err, errlen))) goto fail;   /* observability */
  if ((rc = swit__trace_new(h, err, errlen))) goto fail; /* tracing */
  /* the interceptors, outermost first: metrics sees every message and
   * publish as the chain's result; tracing wraps the handlers */
  if ((rc = swit__resil_new(h))) goto fail;             /* resilience */
  if ((rc = swit__metrics_register(h))) goto fail;
  /* a circuit gives messages back before tracing starts their spans */
  if ((rc = swit__limit_register(h, err, errlen))) goto fail;
  if ((rc = swit__dedup_register(h, err, errlen))) goto fail;
  if ((rc = swit__circuit_register(h, err, errlen))) goto fail;
  if ((rc = swit__pubcirc_register(h, err, errlen))) goto fail;
  if ((rc = swit__classify_register(h, err, errlen))) goto fail;
  if ((rc = swit__trace_register(h))) goto fail;
  if ((rc = swit__sec_new(h, err, errlen))) goto fail; /* when configured */
  h->ops = swit__broker_find(type); /* the schema allows only these */
  if (h->ops->config_fields) {
    h->broker_settings = calloc(1, h->ops->settings_size);
    if (!h->broker_settings) {
      rc = SWIT_E_NOMEM;
      goto fail;
    }
    rc = swit__config_apply(&cfg->messaging.broker.config,
                            h->ops->config_fields,
                            (h->ops->caps & SWIT_CAP_CONFIG_PASSTHROUGH) != 0,
                            h->broker_settings, err, errlen);
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
  return swit_host_handle_from(h, topic, group, ordering, SWIT_FROM_DEFAULT,
                               cb, ud, err, errlen);
}

int swit_host_handle_from(swit_host_t *h, const char *topic,
                          const char *group, int ordering, int from,
                          swit_handler_cb cb, void *ud, char *err,
                          size_t errlen)
{
  swit__chandler *v, *c;

  if (!topic || !*topic || !cb || ordering < SWIT_ORDER_KEY ||
      ordering > SWIT_ORDER_PARTITION || from < SWIT_FROM_DEFAULT ||
      from > SWIT_FROM_LATEST) {
    snprintf(err, errlen, "swit_host_handle: need a topic, a callback, "
             "an ordering (SWIT_ORDER_KEY, _NONE or _PARTITION) and a start "
             "(SWIT_FROM_DEFAULT, _BEGINNING or _LATEST)");
    return SWIT_E_INVAL;
  }
  if (atomic_load(&h->state) != SWIT__NEW) {
    snprintf(err, errlen, "swit_host_handle: the host is already started");
    return SWIT_E_STATE;
  }
  for (size_t i = 0; i < h->nchandlers; i++) {
    const swit__chandler *o = &h->chandlers[i];
    const char *g1 = o->group ? o->group : h->cfg->server.name;
    const char *g2 = group ? group : h->cfg->server.name;
    if (strcmp(o->topic, topic) || strcmp(g1, g2)) continue;
    snprintf(err, errlen, "topic '%s' has two handlers for group '%s'", topic,
             g2);
    return SWIT_E_EXISTS;
  }
  v = realloc(h->chandlers, (h->nchandlers + 1) * sizeof *v);
  if (!v) {
    snprintf(err, errlen, "swit_host_handle: out of memory");
    return SWIT_E_NOMEM;
  }
  h->chandlers = v;
  c = &v[h->nchandlers];
  *c = (swit__chandler){strdup(topic), group ? strdup(group) : NULL,
                        ordering, from, cb, ud};
  if (!c->topic || (group && !c->group)) {
    free(c->topic);
    free(c->group);
    snprintf(err, errlen, "swit_host_handle: out of memory");
    return SWIT_E_NOMEM;
  }
  h->nchandlers++;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Check and start */

/* The C handlers registered with swit_host_handle, as subscriptions. */
static int add_chandlers(swit_host_t *h, char *err, size_t errlen)
{
  for (size_t i = 0; i < h->nchandlers; i++) {
    const swit__chandler *c = &h->chandlers[i];
    swit__subdef d = {.topic = c->topic, .group = c->group,
                      .ordering = c->ordering, .jetstream = -1,
                      .from = c->from};
    uint32_t id = 0;
    int rc = swit__subdef_defaults(h, &d);
    if (rc == 0) rc = swit__subs_resolve(h, &d, 1, &id, err, errlen);
    if (rc == 0 && id) {
      snprintf(err, errlen, "topic '%s' has two handlers for group '%s'",
               d.topic, d.group);
      rc = SWIT_E_EXISTS;
    }
    if (rc == 0) rc = swit__subs_add(h, &d, c->cb, c->ud, &id);
    if (d.group != c->group) free(d.group);
    free(d.dead_letter);
    if (rc) return rc;
  }
  return 0;
}

int swit_host_client_only(swit_host_t *h, char *err, size_t errlen)
{
  char ebuf[256];

  if (!err) err = ebuf, errlen = sizeof ebuf;
  if (!h) return swit__fail(err, errlen, SWIT_E_INVAL, "no host");
  if (atomic_load(&h->state) != SWIT__NEW)
    return swit__fail(err, errlen, SWIT_E_STATE, "swit_host_client_only: "
                      "the host was already started");
  if (h->ops->undelivered)     /* keeps its messages in this process only */
    return swit__fail(err, errlen, SWIT_E_CONFIG, "%s: messaging.broker."
                      "type: the %s broker lives inside one process: no "
                      "other process can reach it (use kafka, rabbitmq or "
                      "nats)", h->cfg->path, h->ops->name);
  h->client_only = 1;
  h->cfg->messaging.resources.subscribers.worker_pool_size = 1;
  return 0;
}

/* Validate the scripts (first generation) and create the subscription
 * table: Lua registrations first, then the C handlers. */
static int first_generation(swit_host_t *h, char *err, size_t errlen)
{
  swit__subdef *defs = NULL;
  uint32_t *ids = NULL;
  size_t n = 0;
  int rc;

  if ((rc = swit__subs_init(h))) return rc;
  if (h->cfg->lua.scripts.n && !h->client_only) {
    if ((rc = swit__codeset_read(h->cfg, &h->code, err, errlen))) return rc;
    rc = swit__generation_validate(h, h->code, &defs, &n, err, errlen);
  }
  if (rc == 0 && !(ids = calloc(n ? n : 1, sizeof *ids))) rc = SWIT_E_NOMEM;
  if (rc == 0) rc = swit__subs_resolve(h, defs, n, ids, err, errlen);
  for (size_t i = 0; rc == 0 && i < n; i++)
    rc = swit__subs_add(h, &defs[i], NULL, NULL, &ids[i]);
  swit__subdefs_free(defs, n);
  free(ids);
  if (rc == 0) rc = add_chandlers(h, err, errlen);
  if (rc == SWIT_E_FULL)
    snprintf(err, errlen, "more than %d subscriptions", SWIT__MAX_SUBS);
  atomic_store(&h->generation, 1);
  return rc;
}

static int messaging_enabled(swit_host_t *h, char *err, size_t errlen)
{
  if (h->cfg->messaging.enabled) return 0;
  snprintf(err, errlen, "%s: messaging.enabled is false: there is nothing "
           "for swit to run", h->cfg->path);
  return SWIT_E_CONFIG;
}

static void log_handlers(swit_host_t *h)
{
  static const char *const orders[] = {"key", "none", "partition"};
  for (size_t i = 0; i < h->nsubs; i++) {
    const swit__sub *s = h->subs[i];
    swit__log(&h->log, SWIT_LOG_INFO, "handler: topic '%s' group '%s' (%s, "
              "ordering %s, %smax_attempts %u, dead letter '%s')", s->topic,
              s->group, s->ccb ? "C" : "Lua", orders[s->ordering],
              s->exactly_once ? "exactly_once, " : "", s->max_attempts,
              s->dead_letter);
  }
}

/* What an adapter instance gets from this host. */
static swit_broker_env broker_env(swit_host_t *h)
{
  swit_broker_env env = {
    .settings = h->broker_settings,
    .log = swit__log_cb, .log_ud = &h->log,
    .report_lag = swit__stats_report_lag,
  };

  swit__broker_env_config(&env, h->cfg);
  swit__conn_env(h, &env);
  return env;
}

/* The broker's client settings (librdkafka properties, credentials
 * format, ...) are checked by its create op, which connects nowhere: build
 * an adapter instance and throw it away. */
static int check_broker(swit_host_t *h, char *err, size_t errlen)
{
  swit_broker_env env = broker_env(h);
  swit_broker *b = NULL;
  int rc = h->ops->create(&b, &env, err, errlen);

  h->ops->destroy(b);
  return rc;
}

int swit_host_check(swit_host_t *h, char *err, size_t errlen)
{
  int rc;

  if (atomic_load(&h->state) != SWIT__NEW || h->subs) {
    snprintf(err, errlen, "swit_host_check: only once, before start");
    return SWIT_E_STATE;
  }
  if ((rc = messaging_enabled(h, err, errlen))) return rc;
  rc = first_generation(h, err, errlen);
  if (rc == 0) rc = check_broker(h, err, errlen);
  if (rc == 0) log_handlers(h);
  swit__subs_free(h);
  swit__codeset_free(h->code);
  h->code = NULL;
  return rc;
}

static int connect_broker(swit_host_t *h, char *err, size_t errlen)
{
  swit_broker_env env = broker_env(h);
  int rc;

  rc = h->ops->create(&h->broker, &env, err, errlen);
  if (rc == 0) rc = h->ops->connect(h->broker, err, errlen);
  if (rc == 0) atomic_store(&h->connected, 1);
  return rc;
}

static int build_states(swit_host_t *h, char *err, size_t errlen)
{
  size_t nlua = 0;

  for (size_t i = 0; i < h->nsubs; i++)
    nlua += !h->subs[i]->ccb && atomic_load(&h->subs[i]->active);
  for (size_t i = 0; i < h->nworkers; i++) {
    swit__worker *w = &h->workers[i];
    w->ffi.generation = 1;
    atomic_store(&w->seen_gen, 1);
    if (!h->code) continue;
    lua_State *L = NULL;
    int rc = swit__generation_build(h, w, h->code, nlua, &L, err, errlen);
    if (rc) return rc;
    swit__lua_adopt(w, L);
  }
  return 0;
}

static int subscribe_all(swit_host_t *h, char *err, size_t errlen)
{
  for (size_t i = 0; i < h->nsubs; i++) {
    int rc = swit__subs_subscribe(h, h->subs[i], err, errlen);
    if (rc) return rc;
  }
  return 0;
}

static void unsubscribe_all(swit_host_t *h)
{
  for (size_t i = 0; i < h->nsubs; i++) swit__subs_unsubscribe(h, h->subs[i]);
}

static int start_locked(swit_host_t *h, char *err, size_t errlen)
{
  int rc;

  if ((rc = messaging_enabled(h, err, errlen))) return rc;
  if ((rc = swit__dedup_start(h, err, errlen))) return rc; /* its files */
  if ((rc = swit__workers_create(h, err, errlen))) return rc;
  if ((rc = connect_broker(h, err, errlen))) return rc;
  if ((rc = first_generation(h, err, errlen))) return rc;
  if ((rc = build_states(h, err, errlen))) return rc;
  if ((rc = swit__workers_init_queues(h, err, errlen))) return rc;
  atomic_store(&h->last_activity_ms, swit__now_ms());
  if ((rc = subscribe_all(h, err, errlen))) return rc;
  if ((rc = swit__trace_start(h, err, errlen))) return rc; /* tracing */
  if ((rc = swit__workers_start(h, err, errlen))) return rc;
  if (h->cfg->lua.hot_reload.watch && h->code)
    return swit__watch_start(h, err, errlen);
  return 0;
}

/* Stop order (DESIGN.md, "Lifecycle"): intake was paused and in-flight
 * work drained by the caller; flush publishers, unsubscribe, stop the
 * workers (they give back what they still hold), disconnect. */
static size_t teardown(swit_host_t *h, swit__deadline end)
{
  size_t left;

  swit__watch_stop(h);
  if (h->subs) unsubscribe_all(h);
  left = swit__workers_stop(h, end);
  /* After the workers: what the last handlers and timers published is
   * sent too. What the broker has not confirmed by then the adapter logs
   * as not published when it disconnects. */
  if (atomic_load(&h->connected)) {
    int rc = h->ops->flush(h->broker, 5000);
    if (rc)
      swit__log(&h->log, SWIT_LOG_WARN, "stop: publishes not confirmed by "
                "the broker within 5 s (%s)", swit_strerror(rc));
  }
  swit__trace_stop(h);        /* tracing: export what the workers left */
  if (!left && atomic_exchange(&h->connected, 0))
    h->ops->disconnect(h->broker);
  h->abandoned = left;        /* a worker still runs: keep what it uses */
  return left;
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
    teardown(h, swit__deadline_in(h->cfg->server.shutdown_timeout_ms));
    atomic_store(&h->state, SWIT__STOPPED);
  } else {
    atomic_store(&h->state, SWIT__RUNNING);
    swit__log(&h->log, SWIT_LOG_INFO, "swit %s running: service %s %s, "
              "broker %s, %zu workers, %zu handlers", SWIT_VERSION_STRING,
              h->cfg->server.name, h->cfg->server.version, h->ops->name,
              h->nworkers, h->nsubs);
    if (!h->client_only) swit__obs_start(h);  /* admin server, ingress */
  }
  pthread_mutex_unlock(&h->lock);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Idle, stop, free */

static int any_paused(swit_host_t *h)
{
  size_t n = h->subs ? __atomic_load_n(&h->nsubs, __ATOMIC_ACQUIRE) : 0;

  for (size_t i = 0; i < n; i++)
    if (atomic_load(&h->subs[i]->paused_by) > 0) return 1;
  return 0;
}

int swit_host_wait_idle(swit_host_t *h, int idle_ms, int timeout_ms)
{
  int64_t start = swit__now_ms();

  for (;;) {
    int64_t now = swit__now_ms();
    int os = atomic_load(&h->on_start_done);

    if (atomic_load(&h->state) != SWIT__RUNNING) return SWIT_E_STATE;
    /* a broker that lives in this process may hold accepted messages it
     * has not handed over yet: they are not idle time either, unless a
     * subscription is paused (an open circuit: they wait for it) */
    if (os != 0 && atomic_load(&h->inflight) == 0 &&
        now - atomic_load(&h->last_activity_ms) >= idle_ms &&
        (!h->ops->undelivered || any_paused(h) ||
         h->ops->undelivered(h->broker) == 0))
      return os < 0 ? SWIT_E_SCRIPT : 0;
    if (timeout_ms >= 0 && now - start >= timeout_ms) return SWIT_E_TIMEDOUT;
    swit__sleep_ms(5);
  }
}

static void pause_all(swit_host_t *h)
{
  for (size_t i = 0; h->subs && i < h->nsubs; i++) {
    atomic_fetch_add(&h->subs[i]->paused_by, 1);
    swit__sub_reconcile_pause(h->subs[i]);
  }
}

int swit_host_stop(swit_host_t *h, int deadline_ms)
{
  swit__deadline end = swit__deadline_in(
      deadline_ms < 0 ? h->cfg->server.shutdown_timeout_ms : deadline_ms);
  int_fast64_t left;
  size_t stuck;

  pthread_mutex_lock(&h->lock);
  if (atomic_load(&h->state) != SWIT__RUNNING) {
    pthread_mutex_unlock(&h->lock);
    return 0;
  }
  atomic_store(&h->state, SWIT__DRAINING);  /* ingress 503, no timers */
  while (atomic_load(&h->intake_busy) > 0 && !swit__deadline_passed(end))
    swit__sleep_ms(1);                        /* requests already past it */
  /* A broker that keeps messages only in this process: what it accepted
   * is handled before the subscriptions pause (within the deadline). */
  while (h->ops->undelivered && !swit__deadline_passed(end) &&
         (atomic_load(&h->inflight) > 0 ||
          h->ops->undelivered(h->broker) > 0))
    swit__sleep_ms(2);
  pause_all(h);
  while ((left = atomic_load(&h->inflight)) > 0 && !swit__deadline_passed(end))
    swit__sleep_ms(2);
  if (left > 0) {
    swit__log(&h->log, SWIT_LOG_WARN, "shutdown deadline reached: %ld "
              "message(s) not finished are given back to the broker",
              (long)left);
    swit__workers_halt(h);
  }
  stuck = teardown(h, end);
  atomic_store(&h->state, SWIT__STOPPED);
  pthread_mutex_unlock(&h->lock);
  if (stuck) {
    swit__log(&h->log, SWIT_LOG_ERROR, "stopped, not cleanly: %zu worker(s) "
              "left running in Lua", stuck);
    return SWIT_E_TIMEDOUT;
  }
  swit__log(&h->log, SWIT_LOG_INFO, "stopped");
  return 0;
}

int swit_host_stop_requested(const swit_host_t *h, int *exit_code)
{
  int req = atomic_load(&((swit_host_t *)h)->stop_requested);
  if (req && exit_code) *exit_code = atomic_load(&((swit_host_t *)h)->stop_code);
  return req;
}

void swit_host_free(swit_host_t *h)
{
  if (!h) return;
  swit_host_stop(h, -1);
  if (h->abandoned) {         /* a worker thread still runs in the host */
    swit__log(&h->log, SWIT_LOG_ERROR, "swit_host_free: %zu worker(s) still "
              "run Lua code: the host is left allocated", h->abandoned);
    return;
  }
  swit__obs_free(h);          /* servers stop before what they read goes */
  swit__trace_free(h);        /* the exporter reads workers and subs */
  swit__resil_free(h);        /* its timer reads subs */
  swit__workers_free(h);
  swit__sec_free(h);          /* after every hook that could write to it */
  swit__testrec_free(h);      /* its hooks ran on the workers, now gone */
  swit__subs_free(h);
  swit__codeset_free(h->code);
  swit__codeset_free(h->prev_code);
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
  pthread_mutex_destroy(&h->reload_lock);
  pthread_mutex_destroy(&h->swap_lock);
  pthread_cond_destroy(&h->swap_cv);
  free(h);
}
