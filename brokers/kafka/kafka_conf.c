/*
 * kafka_conf.c - messaging.broker.config for Kafka: swit's own keys and
 * the librdkafka properties, validated when the host creates the adapter.
 *
 * Keys are read in this order:
 *  - swit's keys (not librdkafka properties, swit__kafka_config_fields,
 *    validated by the host into swit_kafka_settings): consumer_group,
 *    client_id (alias of client.id), subscribe_timeout, revoke_timeout,
 *    transactional_id (prefix of the transactional producers' ids;
 *    default "<server.name>-<hostname>");
 *  - "producer.<property>" goes to the producer only, "consumer.<property>"
 *    to the consumers only;
 *  - any other key goes to both; librdkafka's warnings that a property
 *    does not apply to one of the roles are logged at debug level.
 * Every property goes through rd_kafka_conf_set; its error text is
 * returned as "file:line:col: messaging.broker.config.<key>: <text>".
 *
 * swit's defaults, set before the user's keys (so the user wins):
 * bootstrap.servers from messaging.broker.endpoints, client.id =
 * server.name, reconnect.backoff.ms / reconnect.backoff.max.ms from
 * messaging.broker.reconnect, statistics.interval.ms=1000 (health from
 * the producer's, consumer lag from the consumers'); producer:
 * enable.idempotence=true; consumers: auto.offset.reset=
 * earliest, allow.auto.create.topics=true, auto.commit.interval.ms=1000
 * (swit's commit period). swit manages offsets: group.id,
 * enable.auto.commit and enable.auto.offset.store are refused.
 *
 * messaging.security (set after these defaults, before the user's keys):
 * tls.* -> security.protocol SSL, ssl.ca.location, ssl.certificate.location,
 * ssl.key.location (verify_server: false turns off certificate and name
 * checks); authentication.username -> SASL_PLAINTEXT (SASL_SSL with TLS),
 * sasl.mechanisms (PLAIN, SCRAM-SHA-256/512), sasl.username/password.
 *
 * Runs on the thread that creates the host; the confs it builds are
 * templates the other files copy (rd_kafka_conf_dup) and never modify.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kafka_int.h"

#define KAFKA_TIMEOUT_MAX_MS 3600000

#define F(n, t, m, d) .name = n, .type = t, \
  .offset = offsetof(swit_kafka_settings, m), .dflt = d

const swit_cfg_field swit__kafka_config_fields[] = {
  { F("consumer_group", SWIT_CFG_STR, consumer_group, ""),
    .desc = "Kafka group of every subscription that names no group of its "
            "own (default: each handler's group, server.name)" },
  { F("client_id", SWIT_CFG_STR, client_id, ""),
    .desc = "client.id of the producer and consumers (default: "
            "server.name)" },
  { F("subscribe_timeout", SWIT_CFG_DURATION, subscribe_timeout_ms, "30s"),
    .min = 0, .max = KAFKA_TIMEOUT_MAX_MS,
    .desc = "how long a subscribe waits for the group's assignment" },
  { F("revoke_timeout", SWIT_CFG_DURATION, revoke_timeout_ms, "10s"),
    .min = 0, .max = KAFKA_TIMEOUT_MAX_MS,
    .desc = "how long a rebalance waits for in-flight messages of revoked "
            "partitions" },
  { F("transactional_id", SWIT_CFG_STR, transactional_id, ""),
    .desc = "prefix of the transactional producers' ids (exactly_once; "
            "default: <server.name>-<hostname>)" },
  { .name = NULL }
};
#undef F

typedef struct kv_ctx {
  const swit_cfg_kv *kv; /* the entry being applied, NULL for defaults */
  char *err;
  size_t errlen;
} kv_ctx;

static int where(const kv_ctx *c, char *buf, size_t len)
{
  const swit_cfg_mark *m = &c->kv->mark;
  if (m->file && m->line)
    return snprintf(buf, len, "%s:%d:%d: ", m->file, m->line, m->col);
  buf[0] = '\0';
  return 0;
}

/* Set `name` on conf; on failure describe it as messaging.broker.config.
 * <key> (the user's entry) or as a swit default. */
static int conf_set(rd_kafka_conf_t *conf, const kv_ctx *c, const char *name,
                    const char *value)
{
  char text[512], at[300];
  if (rd_kafka_conf_set(conf, name, value, text, sizeof text) ==
      RD_KAFKA_CONF_OK)
    return 0;
  if (!c->kv)
    return swit__fail(c->err, c->errlen, SWIT_E_CONFIG, "kafka: "
                      "cannot set %s=%s: %s", name, value, text);
  where(c, at, sizeof at);
  return swit__fail(c->err, c->errlen, SWIT_E_CONFIG,
                    "%smessaging.broker.config.%s: %s", at,
                    c->kv->key, text);
}

static int set_both(kconf *kc, const kv_ctx *c, const char *name,
                    const char *value)
{
  int rc = conf_set(kc->producer, c, name, value);
  return rc ? rc : conf_set(kc->consumer, c, name, value);
}

static int key_error(const kv_ctx *c, const char *why)
{
  char at[300];
  where(c, at, sizeof at);
  return swit__fail(c->err, c->errlen, SWIT_E_CONFIG,
                    "%smessaging.broker.config.%s: %s", at, c->kv->key,
                    why);
}

/* ---------------------------------------------------------------------
 * Defaults */

static int bootstrap_from_endpoints(kconf *kc, const swit_broker_env *env,
                                    const kv_ctx *c)
{
  size_t len = 1;
  char *s;
  int rc;

  if (env->n_endpoints == 0)
    return 0;
  for (size_t i = 0; i < env->n_endpoints; i++)
    len += strlen(env->endpoints[i]) + 1;
  if (!(s = malloc(len)))
    return swit__fail(c->err, c->errlen, SWIT_E_NOMEM, "kafka: out of "
                      "memory");
  s[0] = '\0';
  for (size_t i = 0; i < env->n_endpoints; i++) {
    if (i)
      strcat(s, ",");
    strcat(s, env->endpoints[i]);
  }
  rc = set_both(kc, c, "bootstrap.servers", s);
  free(s);
  return rc;
}

static int set_defaults(kconf *kc, const swit_broker_env *env,
                        const kv_ctx *c)
{
  int64_t d = env->reconnect_delay_ms, m = env->reconnect_max_delay_ms;
  char delay[32], max[32];
  int e;

  /* librdkafka's bounds are 0..1h for both */
  snprintf(delay, sizeof delay, "%lld",
           (long long)(d < KAFKA_TIMEOUT_MAX_MS ? d : KAFKA_TIMEOUT_MAX_MS));
  snprintf(max, sizeof max, "%lld",
           (long long)(m < KAFKA_TIMEOUT_MAX_MS ? m : KAFKA_TIMEOUT_MAX_MS));
  if ((e = bootstrap_from_endpoints(kc, env, c)) ||
      (e = set_both(kc, c, "client.id", env->server_name)) ||
      (e = set_both(kc, c, "reconnect.backoff.ms", delay)) ||
      (e = set_both(kc, c, "reconnect.backoff.max.ms", max)) ||
      (e = conf_set(kc->producer, c, "enable.idempotence", "true")) ||
      (e = set_both(kc, c, "statistics.interval.ms", "1000")) ||
      (e = conf_set(kc->consumer, c, "enable.auto.commit", "false")) ||
      (e = conf_set(kc->consumer, c, "enable.auto.offset.store", "false")) ||
      (e = conf_set(kc->consumer, c, "auto.offset.reset", "earliest")) ||
      (e = conf_set(kc->consumer, c, "allow.auto.create.topics", "true")) ||
      (e = conf_set(kc->consumer, c, "auto.commit.interval.ms", "1000")))
    return e;
  return 0;
}

/* ---------------------------------------------------------------------
 * messaging.security: TLS and SASL, set after the defaults and before the
 * user's keys (a librdkafka property in messaging.broker.config still
 * wins). librdkafka's refusal is reported with the swit key. */

#define TLSK "messaging.security.transport.tls."
#define AUTHK "messaging.security.authentication."

static int sec_set(kconf *kc, const kv_ctx *c, const char *key,
                   const char *name, const char *value)
{
  char text[512];
  rd_kafka_conf_t *confs[] = { kc->producer, kc->consumer };
  for (int i = 0; i < 2; i++)
    if (rd_kafka_conf_set(confs[i], name, value, text, sizeof text) !=
        RD_KAFKA_CONF_OK)
      return swit__fail(c->err, c->errlen, SWIT_E_CONFIG, "%s: %s (%s)",
                        key, text, name);
  return 0;
}

static int set_security(kconf *kc, const swit_broker_env *env,
                        const kv_ctx *c)
{
  static const char *const mechs[] = { "PLAIN", "SCRAM-SHA-256",
                                       "SCRAM-SHA-512" };
  const swit_broker_tls *t = &env->tls;
  const char *mech = env->mechanism ? env->mechanism : "";
  int sasl = env->username && *env->username;
  int rc = 0, known = 0;

  if (!sasl && ((env->password && *env->password) || *mech))
    return swit__fail(c->err, c->errlen, SWIT_E_CONFIG, AUTHK "%s needs "
                      AUTHK "username", *mech ? "mechanism" : "password");
  if (sasl) {
    for (size_t i = 0; i < sizeof mechs / sizeof *mechs; i++)
      known |= strcmp(mech, mechs[i]) == 0;
    if (!known)
      return swit__fail(c->err, c->errlen, SWIT_E_CONFIG, AUTHK "mechanism: "
                        "\"%s\" is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 "
                        "(required with " AUTHK "username)", mech);
  }
  if (!t->enabled && !sasl)
    return 0;
  rc = sec_set(kc, c, t->enabled ? TLSK "enabled" : AUTHK "username",
               "security.protocol",
               sasl ? (t->enabled ? "SASL_SSL" : "SASL_PLAINTEXT") : "SSL");
  if (!rc && sasl)
    rc = sec_set(kc, c, AUTHK "mechanism", "sasl.mechanisms", mech);
  if (!rc && sasl)
    rc = sec_set(kc, c, AUTHK "username", "sasl.username", env->username);
  if (!rc && sasl)
    rc = sec_set(kc, c, AUTHK "password", "sasl.password",
                 env->password ? env->password : "");
  if (!t->enabled)
    return rc;
  if (!rc && t->ca_file && *t->ca_file)
    rc = sec_set(kc, c, TLSK "ca_file", "ssl.ca.location", t->ca_file);
  if (!rc && t->cert_file && *t->cert_file)
    rc = sec_set(kc, c, TLSK "cert_file", "ssl.certificate.location",
                 t->cert_file);
  if (!rc && t->key_file && *t->key_file)
    rc = sec_set(kc, c, TLSK "key_file", "ssl.key.location", t->key_file);
  if (!rc && !t->verify_server)
    rc = sec_set(kc, c, TLSK "verify_server",
                 "enable.ssl.certificate.verification", "false");
  if (!rc && !t->verify_server)
    rc = sec_set(kc, c, TLSK "verify_server",
                 "ssl.endpoint.identification.algorithm", "none");
  return rc;
}

/* rd_kafka_new's refusal ("ssl.ca.location failed: ...") as an error
 * naming the swit key that sets the property it names; other text names
 * messaging.broker.config, where the rest of the properties come from. */
int swit__kafka_new_fail(const char *text, char *err, size_t errlen)
{
  static const struct { const char *prop, *key; } map[] = {
    { "ssl.ca.location", TLSK "ca_file" },
    { "ssl.certificate.location", TLSK "cert_file" },
    { "ssl.key.location", TLSK "key_file" },
    { "ssl", TLSK "enabled" },
    { "sasl", AUTHK "mechanism" },
    { "security.protocol", TLSK "enabled" },
  };
  for (size_t i = 0; i < sizeof map / sizeof *map; i++)
    if (strncmp(text, map[i].prop, strlen(map[i].prop)) == 0)
      return swit__fail(err, errlen, SWIT_E_CONFIG, "%s (or messaging.broker."
                        "config.%s): %s", map[i].key, map[i].prop, text);
  return swit__fail(err, errlen, SWIT_E_CONFIG, "messaging.broker.config: %s",
                    text);
}

/* ---------------------------------------------------------------------
 * The user's keys */

/* Properties swit owns; 0 if `name` is not one of them. */
static int refused(const kv_ctx *c, const char *name, const char *value)
{
  if (!strcmp(name, "transactional.id"))
    return key_error(c, "swit gives each worker its own transactional "
                        "producer: use transactional_id (a prefix)");
  if (!strcmp(name, "group.id"))
    return key_error(c, "swit sets the group of each subscription (the "
                        "handler's group, or consumer_group): use "
                        "consumer_group");
  if ((!strcmp(name, "enable.auto.commit") ||
       !strcmp(name, "enable.auto.offset.store")) &&
      strcmp(value, "false"))
    return key_error(c, "swit commits offsets itself, only for messages "
                        "its handlers finished; this must stay false");
  return 0;
}

static int apply_kv(kconf *kc, const kv_ctx *c)
{
  const char *k = c->kv->key;
  int rc;

  if (swit__config_field(swit__kafka_config_fields, k))
    return 0; /* swit's own key: the host validated it into the settings */
  if (!strncmp(k, "producer.", 9)) {
    if (!(rc = refused(c, k + 9, c->kv->value)))
      rc = conf_set(kc->producer, c, k + 9, c->kv->value);
    return rc;
  }
  if (!strncmp(k, "consumer.", 9)) {
    if (!(rc = refused(c, k + 9, c->kv->value)))
      rc = conf_set(kc->consumer, c, k + 9, c->kv->value);
    return rc;
  }
  if ((rc = refused(c, k, c->kv->value)))
    return rc;
  return set_both(kc, c, k, c->kv->value);
}

/* Read back an integer property of a conf. */
static int64_t conf_int(rd_kafka_conf_t *conf, const char *name)
{
  char buf[64];
  size_t len = sizeof buf;
  if (rd_kafka_conf_get(conf, name, buf, &len) != RD_KAFKA_CONF_OK)
    return 0;
  return strtoll(buf, NULL, 10);
}

static int check_bootstrap(kconf *kc, const kv_ctx *c)
{
  size_t len = 0;
  if (rd_kafka_conf_get(kc->producer, "bootstrap.servers", NULL, &len) ==
          RD_KAFKA_CONF_OK && len > 1)
    return 0;
  return swit__fail(c->err, c->errlen, SWIT_E_CONFIG,
                    "messaging.broker.endpoints: Kafka needs at least "
                    "one bootstrap server (host:port), in endpoints or "
                    "in messaging.broker.config.bootstrap.servers");
}

/* transactional_id unless set: "<server.name>-<hostname>", stable across
 * restarts of one instance, distinct between instances on other hosts. */
static int default_txn_prefix(kconf *kc, const char *server_name,
                              const kv_ctx *c)
{
  char host[256] = "localhost";
  size_t len;

  if (kc->txn_prefix)
    return 0;
  if (gethostname(host, sizeof host) != 0)
    snprintf(host, sizeof host, "localhost");
  host[sizeof host - 1] = '\0';
  len = strlen(server_name) + strlen(host) + 2;
  if (!(kc->txn_prefix = malloc(len)))
    return swit__fail(c->err, c->errlen, SWIT_E_NOMEM, "out of memory");
  snprintf(kc->txn_prefix, len, "%s-%s", server_name, host);
  return 0;
}

/* swit's own keys, from the settings the host filled. */
static int apply_settings(kconf *kc, const swit_kafka_settings *st,
                          const kv_ctx *c)
{
  kc->subscribe_timeout_ms = st->subscribe_timeout_ms;
  kc->revoke_timeout_ms = st->revoke_timeout_ms;
  if ((*st->consumer_group && !(kc->default_group = strdup(st->consumer_group))) ||
      (*st->transactional_id && !(kc->txn_prefix = strdup(st->transactional_id))))
    return swit__fail(c->err, c->errlen, SWIT_E_NOMEM, "out of memory");
  return *st->client_id ? set_both(kc, c, "client.id", st->client_id) : 0;
}

int swit__kafka_conf_build(kconf *kc, const swit_broker_env *env, char *err,
                           size_t errlen)
{
  static const swit_cfg_kvlist none = { NULL, 0, { NULL, 0, 0 } };
  const swit_cfg_kvlist *kv = env->config ? env->config : &none;
  const swit_kafka_settings *st = env->settings;
  kv_ctx c = {.kv = NULL, .err = err, .errlen = errlen};
  swit_kafka_settings own;
  int rc;

  memset(kc, 0, sizeof *kc);
  if (!st) {
    if ((rc = swit__config_apply(&none, swit__kafka_config_fields, 0, &own,
                                 err, errlen)))
      return rc;
  }
  kc->producer = rd_kafka_conf_new();
  kc->consumer = rd_kafka_conf_new();
  if (!kc->producer || !kc->consumer) {
    rc = swit__fail(err, errlen, SWIT_E_NOMEM, "kafka: out of memory");
    goto fail;
  }
  if ((rc = set_defaults(kc, env, &c)) || (rc = set_security(kc, env, &c)))
    goto fail;
  for (size_t i = 0; i < kv->n; i++) {
    c.kv = &kv->items[i];
    if ((rc = apply_kv(kc, &c)))
      goto fail;
  }
  c.kv = NULL;
  if ((rc = apply_settings(kc, st ? st : &own, &c)))
    goto fail;
  if ((rc = check_bootstrap(kc, &c)) || (rc = default_txn_prefix(kc, env->server_name, &c)))
    goto fail;
  kc->commit_interval_ms = conf_int(kc->consumer, "auto.commit.interval.ms");
  if (kc->commit_interval_ms <= 0)
    kc->commit_interval_ms = 1000;
  kc->stats = conf_int(kc->producer, "statistics.interval.ms") > 0;
fail:
  if (!st)
    swit__config_free_fields(swit__kafka_config_fields, &own);
  if (rc)
    swit__kafka_conf_free(kc);
  return rc;
}

void swit__kafka_conf_free(kconf *kc)
{
  if (!kc)
    return;
  if (kc->producer)
    rd_kafka_conf_destroy(kc->producer);
  if (kc->consumer)
    rd_kafka_conf_destroy(kc->consumer);
  free(kc->default_group);
  free(kc->txn_prefix);
  memset(kc, 0, sizeof *kc);
}
