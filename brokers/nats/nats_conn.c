/*
 * nats_conn.c - the NATS connection: cnats options built from the config,
 * connect, the callbacks that feed the host's connection state machine,
 * JetStream availability, and drain/close at disconnect.
 *
 * States: connect reports connecting, then connected, or backing-off when
 * no server answers (cnats keeps trying in the background: RetryOnFailed-
 * Connect). A lost connection reports reconnecting; each pause between
 * rounds of attempts reports backing-off with the host's delay (the
 * custom reconnect delay callback asks env->backoff_ms); a successful
 * reconnect reports connected; running out of attempts closes the
 * connection and reports failed. Publishes while the connection is down
 * go to cnats' reconnect buffer (reconnect_buffer bytes) and fail with
 * SWIT_E_FULL beyond it.
 *
 * Threads: cnats calls the callbacks from its own threads; they only read
 * the broker's immutable fields and atomics, and log.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nats_int.h"

/* ---------------------------------------------------------------------
 * Callbacks */

static void url_of(natsConnection *nc, char *buf, size_t len)
{
  if (natsConnection_GetConnectedUrl(nc, buf, len) != NATS_OK || !*buf)
    snprintf(buf, len, "(no server)");
}

/* The connection is up ("connected" or "reconnected"): report it with
 * the server's URL into detail. */
static void report_up(nats_broker *b, natsConnection *nc, const char *how,
                      char *detail, size_t len)
{
  char url[256];
  url_of(nc, url, sizeof url);
  snprintf(detail, len, "%s to %s", how, url);
  atomic_store(&b->lost, 0);
  swit__nats_report(b, SWIT_CONN_CONNECTED, detail);
}

static void on_connected(natsConnection *nc, void *ud)
{
  nats_broker *b = ud;
  char detail[512];
  report_up(b, nc, "connected", detail, sizeof detail);
  if (b->st.jetstream && swit__nats_js_check(b, detail, sizeof detail))
    NATS_LOG(b, SWIT_LOG_ERROR, "messaging.broker.config.jetstream: true, "
             "but %s; JetStream subscriptions and publishes will fail",
             detail);
}

/* Why the last connect attempt failed (cnats' text, e.g. an
 * authorization violation) and the keys that decide it; "" when cnats
 * kept no reason. A failed TLS handshake reaches us only as "no server
 * available" (cnats keeps the handshake's error to itself), so with TLS
 * on that text points at the TLS keys. */
static void last_reason(const nats_broker *b, natsConnection *nc, char *buf,
                        size_t len)
{
  const char *text = NULL, *keys = "";
  natsStatus s;
  buf[0] = '\0';
  if (!nc || (s = natsConnection_GetLastError(nc, &text)) == NATS_OK ||
      !text || !*text)
    return;
  if (strstr(text, "uthoriz") || strstr(text, "uthentic"))
    keys = " (check messaging.broker.config user/password, token, nkey, "
           "creds_file or messaging.security.authentication)";
  else if (strstr(text, "SSL") || strstr(text, "TLS") ||
           strstr(text, "ertificate") ||
           (b->env.tls.enabled && s == NATS_NO_SERVER))
    keys = " (check messaging.security.transport.tls and "
           "messaging.broker.config.tls_hostname)";
  snprintf(buf, len, ": %s%s", text, keys);
}

/* Report the loss once, from whichever of the disconnected callback and
 * the first reconnect delay cnats runs first. */
static void report_lost(nats_broker *b)
{
  char detail[300];
  if (atomic_load(&b->closing) || atomic_exchange(&b->lost, 1))
    return;
  snprintf(detail, sizeof detail, "connection to %s lost", b->servers_text);
  swit__nats_report(b, SWIT_CONN_RECONNECTING, detail);
}

static void on_disconnected(natsConnection *nc, void *ud)
{
  (void)nc;
  report_lost(ud);
}

static void on_reconnected(natsConnection *nc, void *ud)
{
  char detail[300];
  report_up(ud, nc, "reconnected", detail, sizeof detail);
}

static void on_closed(natsConnection *nc, void *ud)
{
  nats_broker *b = ud;
  if (atomic_load(&b->closing)) {
    swit__nats_report(b, SWIT_CONN_DISCONNECTED, NULL);
  } else {
    char detail[800], why[400];
    last_reason(b, nc, why, sizeof why);
    snprintf(detail, sizeof detail, "connection to %s closed: reconnect "
             "attempts exhausted (messaging.broker.reconnect.max_attempts)%s",
             b->servers_text, why);
    swit__nats_report(b, SWIT_CONN_FAILED, detail);
  }
  pthread_mutex_lock(&b->closed_mu);
  atomic_store(&b->closed, 1);
  pthread_cond_broadcast(&b->closed_cv);
  pthread_mutex_unlock(&b->closed_mu);
}

static int64_t reconnect_delay(natsConnection *nc, int attempts, void *ud)
{
  nats_broker *b = ud;
  int64_t d = b->env.backoff_ms
                  ? b->env.backoff_ms(b->env.host_ud, (uint32_t)attempts)
                  : 1000;
  char detail[800], why[400];
  if (d < 0)
    return 0; /* cnats stops at MaxReconnect, then on_closed: failed */
  report_lost(b);
  last_reason(b, nc, why, sizeof why);
  snprintf(detail, sizeof detail, "cannot reach %s (attempt %d)%s; next "
           "try in %lld ms", b->servers_text, attempts, why, (long long)d);
  swit__nats_report(b, SWIT_CONN_BACKING_OFF, detail);
  return d;
}

static void on_async_error(natsConnection *nc, natsSubscription *sub,
                           natsStatus err, void *ud)
{
  nats_broker *b = ud;
  (void)nc;
  if (err == NATS_SLOW_CONSUMER && sub) {
    swit__nats_slow_consumer(b, sub);
    return;
  }
  NATS_LOG(b, SWIT_LOG_WARN, "nats: asynchronous error%s%s: %s",
           sub ? " on subscription " : "",
           sub ? natsSubscription_GetSubject(sub) : "",
           natsStatus_GetText(err));
}

static void on_pub_error(jsCtx *js, jsPubAckErr *pae, void *ud)
{
  nats_broker *b = ud;
  long long n = atomic_fetch_add(&b->async_pub_errors, 1) + 1;
  (void)js;
  NATS_LOG(b, SWIT_LOG_ERROR, "nats: JetStream publish to '%s' was not "
           "stored (%lld so far): %s",
           pae->Msg ? natsMsg_GetSubject(pae->Msg) : "?", n,
           pae->ErrText && *pae->ErrText ? pae->ErrText
                                         : natsStatus_GetText(pae->Err));
}

/* ---------------------------------------------------------------------
 * Options */

static int opt_fail(natsStatus s, const char *key, char *err, size_t errlen)
{
  return swit__fail(err, errlen, SWIT_E_CONFIG, "%s: %s", key,
                    swit__nats_errtext(s));
}

static int set_servers(nats_broker *b, char *err, size_t errlen)
{
  static const char *dflt[] = { "nats://127.0.0.1:4222" };
  const char **urls = b->env.n_endpoints ? (const char **)b->env.endpoints
                                          : dflt;
  int n = b->env.n_endpoints ? (int)b->env.n_endpoints : 1;
  size_t at = 0;
  b->servers_text[0] = '\0';
  for (int i = 0; i < n && at + 1 < sizeof b->servers_text; i++) {
    int w = snprintf(b->servers_text + at, sizeof b->servers_text - at,
                     "%s%s", i ? ", " : "", urls[i]);
    at += w < 0 ? 0 : (size_t)w;
  }
  natsStatus s = natsOptions_SetServers(b->opts, urls, n);
  return s == NATS_OK ? 0 : opt_fail(s, "messaging.broker.endpoints", err,
                                     errlen);
}

/* A credentials file named by `key` must be readable now: cnats reads it
 * only when it connects, where a typo would look like a refused login. */
static int readable(const char *path, const char *key, char *err,
                    size_t errlen)
{
  if (access(path, R_OK) == 0)
    return 0;
  return swit__fail(err, errlen, SWIT_E_CONFIG, "%s: cannot read %s: %s",
                    key, path, strerror(errno));
}

#define CFG "messaging.broker.config."
#define AUTH "messaging.security.authentication."

/* One way to log in: user/password (broker config or
 * messaging.security.authentication), token, NKEY, or a .creds file. */
static int set_auth(nats_broker *b, char *err, size_t errlen)
{
  const swit_nats_settings *st = &b->st;
  const char *user = st->user, *pass = st->password, *ukey = CFG "user";
  natsStatus s = NATS_OK;
  int ways;

  if (b->env.username && *b->env.username) {
    if (*st->user)
      return swit__fail(err, errlen, SWIT_E_CONFIG, AUTH "username and "
                        CFG "user are both set; keep one");
    user = b->env.username;
    pass = b->env.password ? b->env.password : "";
    ukey = AUTH "username";
  } else if (b->env.password && *b->env.password) {
    return swit__fail(err, errlen, SWIT_E_CONFIG, AUTH "password needs "
                      AUTH "username");
  }
  if (*pass && !*user)
    return swit__fail(err, errlen, SWIT_E_CONFIG, CFG "password needs "
                      CFG "user");
  if (!*st->nkey != !*st->nkey_seed_file)
    return swit__fail(err, errlen, SWIT_E_CONFIG, CFG "nkey and " CFG
                      "nkey_seed_file go together");
  ways = !!*user + !!*st->token + !!*st->nkey + !!*st->creds_file;
  if (ways > 1)
    return swit__fail(err, errlen, SWIT_E_CONFIG, "nats: %s, " CFG "token, "
                      CFG "nkey and " CFG "creds_file are exclusive; set "
                      "one", ukey);
  if (*user && (s = natsOptions_SetUserInfo(b->opts, user, pass)))
    return opt_fail(s, ukey, err, errlen);
  if (*st->token && (s = natsOptions_SetToken(b->opts, st->token)))
    return opt_fail(s, CFG "token", err, errlen);
  if (*st->nkey) {
    if ((ways = readable(st->nkey_seed_file, CFG "nkey_seed_file", err,
                         errlen)))
      return ways;
    if ((s = natsOptions_SetNKeyFromSeed(b->opts, st->nkey,
                                         st->nkey_seed_file)))
      return opt_fail(s, CFG "nkey", err, errlen);
  }
  if (*st->creds_file) {
    if ((ways = readable(st->creds_file, CFG "creds_file", err, errlen)))
      return ways;
    if ((s = natsOptions_SetUserCredentialsFromFiles(b->opts, st->creds_file,
                                                     NULL)))
      return opt_fail(s, CFG "creds_file", err, errlen);
  }
  const char *name = *st->name ? st->name : b->env.server_name;
  if (name && (s = natsOptions_SetName(b->opts, name)))
    return opt_fail(s, CFG "name", err, errlen);
  return 0;
}

/* The host part of a NATS URL ([scheme://][user[:pass]@]host[:port]),
 * copied into buf; brackets of an IPv6 literal are dropped. */
static void url_host(const char *url, char *buf, size_t len)
{
  const char *p = strstr(url, "://"), *at, *end;
  p = p ? p + 3 : url;
  at = strchr(p, '@');
  if (at)
    p = at + 1;
  if (*p == '[') {
    end = strchr(++p, ']');
  } else {
    end = p + strcspn(p, ":/");
  }
  size_t n = end ? (size_t)(end - p) : strlen(p);
  if (n >= len)
    n = len - 1;
  memcpy(buf, p, n);
  buf[n] = '\0';
}

/* The name the server's certificate must carry: tls_hostname, or the one
 * host every endpoint names. cnats checks no name unless it is given. */
static int set_hostname(nats_broker *b, char *err, size_t errlen)
{
  char host[256], other[256];
  natsStatus s;
  if (*b->st.tls_hostname) {
    snprintf(host, sizeof host, "%s", b->st.tls_hostname);
  } else {
    url_host(b->env.n_endpoints ? b->env.endpoints[0] : "127.0.0.1", host,
             sizeof host);
    for (size_t i = 1; i < b->env.n_endpoints; i++) {
      url_host(b->env.endpoints[i], other, sizeof other);
      if (strcmp(host, other))
        return swit__fail(err, errlen, SWIT_E_CONFIG, CFG "tls_hostname: "
                          "the endpoints name different hosts (%s, %s); "
                          "set the name their certificates carry", host,
                          other);
    }
  }
  if (!*host)
    return swit__fail(err, errlen, SWIT_E_CONFIG, "messaging.broker."
                      "endpoints: no host to check the certificate against");
  s = natsOptions_SetExpectedHostname(b->opts, host);
  return s == NATS_OK ? 0 : opt_fail(s, CFG "tls_hostname", err, errlen);
}

#define TLSK "messaging.security.transport.tls."

static int set_tls(nats_broker *b, char *err, size_t errlen)
{
  const swit_broker_tls *t = &b->env.tls;
  natsStatus s;
  if (!t->enabled) {
    if (*b->st.tls_hostname)
      return swit__fail(err, errlen, SWIT_E_CONFIG, CFG "tls_hostname needs "
                        TLSK "enabled: true");
    return 0;
  }
  if ((s = natsOptions_SetSecure(b->opts, true)))
    return opt_fail(s, TLSK "enabled", err, errlen);
  if (t->ca_file && *t->ca_file &&
      (s = natsOptions_LoadCATrustedCertificates(b->opts, t->ca_file)))
    return opt_fail(s, TLSK "ca_file", err, errlen);
  if (t->cert_file && *t->cert_file &&
      (s = natsOptions_LoadCertificatesChain(b->opts, t->cert_file,
                                             t->key_file)))
    return opt_fail(s, TLSK "cert_file", err, errlen);
  if (!t->verify_server) {
    if (*b->st.tls_hostname)
      return swit__fail(err, errlen, SWIT_E_CONFIG, CFG "tls_hostname: no "
                        "name is checked with " TLSK "verify_server: false");
    s = natsOptions_SkipServerVerification(b->opts, true);
    return s == NATS_OK ? 0 : opt_fail(s, TLSK "verify_server", err, errlen);
  }
  return set_hostname(b, err, errlen);
}

/* Reconnect, buffers and pings; every value was range-checked by the
 * config table, so a failure here is cnats refusing it. */
static int set_limits(nats_broker *b, char *err, size_t errlen)
{
  const swit_nats_settings *st = &b->st;
  int64_t max = b->env.reconnect_max_attempts;
  natsStatus s;
#define TRY(call, key)                                                 \
  if ((s = (call)) != NATS_OK)                                         \
    return opt_fail(s, key, err, errlen)
  TRY(natsOptions_SetTimeout(b->opts, st->connect_timeout_ms),
      "messaging.broker.config.connect_timeout");
  TRY(natsOptions_SetPingInterval(b->opts, st->ping_interval_ms),
      "messaging.broker.config.ping_interval");
  TRY(natsOptions_SetMaxPingsOut(b->opts, (int)st->max_pings_out),
      "messaging.broker.config.max_pings_out");
  TRY(natsOptions_SetReconnectBufSize(b->opts, (int)st->reconnect_buffer),
      "messaging.broker.config.reconnect_buffer");
  TRY(natsOptions_SetMaxPendingMsgs(b->opts, (int)st->pending_msgs),
      "messaging.broker.config.pending_msgs");
  TRY(natsOptions_SetAllowReconnect(b->opts, true),
      "messaging.broker.reconnect");
  TRY(natsOptions_SetMaxReconnect(b->opts, max > 0 && max < INT32_MAX
                                               ? (int)max : -1),
      "messaging.broker.reconnect.max_attempts");
#undef TRY
  return 0;
}

static int set_callbacks(nats_broker *b, char *err, size_t errlen)
{
  natsStatus s = natsOptions_SetCustomReconnectDelay(b->opts, reconnect_delay, b);
  if (!s) s = natsOptions_SetErrorHandler(b->opts, on_async_error, b);
  if (!s) s = natsOptions_SetClosedCB(b->opts, on_closed, b);
  if (!s) s = natsOptions_SetDisconnectedCB(b->opts, on_disconnected, b);
  if (!s) s = natsOptions_SetReconnectedCB(b->opts, on_reconnected, b);
  if (!s) s = natsOptions_SetRetryOnFailedConnect(b->opts, true, on_connected, b);
  if (!s) s = natsOptions_SetFailRequestsOnDisconnect(b->opts, true);
  return s == NATS_OK ? 0 : opt_fail(s, "nats options", err, errlen);
}

int swit__nats_options(nats_broker *b, char *err, size_t errlen)
{
  natsStatus s = natsOptions_Create(&b->opts);
  int rc;
  if (s != NATS_OK)
    return swit__fail(err, errlen, SWIT_E_NOMEM, "nats: cannot create "
                      "options: %s", swit__nats_errtext(s));
  if ((rc = set_servers(b, err, errlen)) || (rc = set_auth(b, err, errlen)) ||
      (rc = set_tls(b, err, errlen)) || (rc = set_limits(b, err, errlen)) ||
      (rc = set_callbacks(b, err, errlen)))
    return rc;
  return 0;
}

/* ---------------------------------------------------------------------
 * Connect, JetStream check, close */

int swit__nats_is_connected(nats_broker *b)
{
  return b->nc && natsConnection_Status(b->nc) == NATS_CONN_STATUS_CONNECTED;
}

int swit__nats_js_check(nats_broker *b, char *err, size_t errlen)
{
  jsAccountInfo *ai = NULL;
  jsErrCode jerr = 0;
  jsOptions jo;
  int rc = 0;
  jsOptions_Init(&jo);
  jo.Wait = b->confirm_timeout_ms > 0 ? b->confirm_timeout_ms : 5000;
  natsStatus s = js_GetAccountInfo(&ai, b->js, &jo, &jerr);
  jsAccountInfo_Destroy(ai);
  if (s == NATS_NO_RESPONDERS || jerr == JSNotEnabledErr ||
      jerr == JSNotEnabledForAccountErr)
    rc = swit__fail(err, errlen, SWIT_E_BROKER, "JetStream is not "
                    "enabled on the NATS server at %s (%s); start "
                    "nats-server with -js, or set jetstream: false",
                    b->servers_text, swit__nats_errtext(s));
  else if (s != NATS_OK)
    rc = swit__fail(err, errlen, SWIT_E_BROKER, "JetStream on %s does "
                    "not answer: %s", b->servers_text,
                    swit__nats_errtext(s));
  swit__nats_js_status(b, rc ? err : NULL);
  return rc;
}

static int js_context(nats_broker *b, char *err, size_t errlen)
{
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = b->confirm_timeout_ms > 0 ? b->confirm_timeout_ms : 5000;
  jo.PublishAsync.ErrHandler = on_pub_error;
  jo.PublishAsync.ErrHandlerClosure = b;
  natsStatus s = natsConnection_JetStream(&b->js, b->nc, &jo);
  if (s != NATS_OK)
    return swit__fail(err, errlen, SWIT_E_BROKER, "nats: cannot create "
                      "a JetStream context: %s", swit__nats_errtext(s));
  return 0;
}

int swit__nats_open(nats_broker *b, char *err, size_t errlen)
{
  char detail[800], why[400];
  swit__nats_report(b, SWIT_CONN_CONNECTING, b->servers_text);
  atomic_store(&b->lost, 1); /* until connected: backing off, not lost */
  natsStatus s = natsConnection_Connect(&b->nc, b->opts);
  if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
    b->nc = NULL;
    return swit__fail(err, errlen, SWIT_E_BROKER, "nats: cannot connect "
                      "to %s: %s", b->servers_text,
                      swit__nats_errtext(s));
  }
  if (s == NATS_NOT_YET_CONNECTED) {
    last_reason(b, b->nc, why, sizeof why);
    snprintf(detail, sizeof detail, "cannot reach %s%s; retrying in the "
             "background", b->servers_text, why);
    swit__nats_report(b, SWIT_CONN_BACKING_OFF, detail);
  } else {
    char url[256];
    atomic_store(&b->lost, 0);
    url_of(b->nc, url, sizeof url);
    snprintf(detail, sizeof detail, "connected to %s", url);
    swit__nats_report(b, SWIT_CONN_CONNECTED, detail);
  }
  int rc = js_context(b, err, errlen);
  if (!rc && s == NATS_OK && b->st.jetstream &&
      swit__nats_js_check(b, why, sizeof why))
    rc = swit__fail(err, errlen, SWIT_E_CONFIG,
                    "messaging.broker.config.jetstream: true, but %s",
                    why);
  return rc;
}

static void wait_closed(nats_broker *b, int64_t ms)
{
  swit__deadline until = swit__deadline_in(ms);
  pthread_mutex_lock(&b->closed_mu);
  while (!atomic_load(&b->closed))
    if (swit__cond_wait_until(&b->closed_cv, &b->closed_mu, until))
      break;
  pthread_mutex_unlock(&b->closed_mu);
}

void swit__nats_close(nats_broker *b)
{
  int64_t ms = b->shutdown_ms > 0 ? b->shutdown_ms : 5000;
  atomic_store(&b->closing, 1);
  if (swit__nats_is_connected(b) &&
      natsConnection_DrainTimeout(b->nc, ms) == NATS_OK)
    wait_closed(b, ms + 1000);
  if (!atomic_load(&b->closed)) {
    natsConnection_Close(b->nc);
    /* cnats queues the closed callback behind other connections' events;
     * it uses b, so destroy must not free b before it ran. */
    wait_closed(b, 30000);
    if (!atomic_load(&b->closed))
      NATS_LOG(b, SWIT_LOG_ERROR, "nats: the connection did not report "
               "closing within 30 s");
  }
  long long failed = atomic_load(&b->async_pub_errors);
  if (failed)
    NATS_LOG(b, SWIT_LOG_WARN, "nats: %lld JetStream publish(es) were not "
             "stored by the server (see the errors above)", failed);
}
