/*
 * msgsec.c - message encryption and signing from the config, and the
 * interceptor that applies them (msgsec.h; the formats: envelope.c).
 *
 * publish_before seals every view whose topic a part selects (dead
 * letters pass untouched: they keep the bytes the broker delivered);
 * msgs_before opens every received message whose topic a part selects
 * and refuses, with SWIT_REJECT and the reason, one that fails: it
 * is dead-lettered, never retried and never seen by a handler.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/host_int.h"
#include "core/intercept.h"
#include "core/msg_int.h"
#include "sec/msgsec.h"
#include "sec/sec.h"

/* ------------------------------------------------------------------ */
/* Topic patterns */


int swit__msgsec_selects(const swit__msgsec_part *p, const char *topic,
                         size_t len)
{
  if (p->topics->n == 0) return 1;
  for (size_t i = 0; i < p->topics->n; i++)
    if (swit__sec_glob(p->topics->items[i], topic, len)) return 1;
  return 0;
}

/* ------------------------------------------------------------------ */
/* From the config */

static int fail(char *err, size_t errlen, swit_cfg_mark mk, const char *key,
                const char *fmt, ...)
{
  size_t o = 0;
  va_list ap;

  if (mk.line > 0)
    o = (size_t)snprintf(err, errlen, "%s:%d:%d: %s: ", mk.file, mk.line,
                         mk.col, key);
  else
    o = (size_t)snprintf(err, errlen, "%s: %s: ", mk.file ? mk.file : "",
                         key);
  if (o < errlen) {
    va_start(ap, fmt);
    vsnprintf(err + o, errlen - o, fmt, ap);
    va_end(ap);
  }
  return SWIT_E_CONFIG;
}

typedef struct part_cfg {
  const char *prefix;           /* "messaging.security.message.signing" */
  const char *algorithm, *provider, *keyring;
  swit_cfg_mark algorithm_mark, provider_mark, keyring_mark;
} part_cfg;

static int part_new(swit__msgsec_part *p, const part_cfg *c, char *err,
                    size_t errlen)
{
  char key[160], names[128], why[512];
  swit__keyring *ring = NULL;
  int rc;

  snprintf(key, sizeof key, "%s.key_provider", c->prefix);
  if (!c->provider || !*c->provider) {
    swit__key_provider_names(names, sizeof names);
    return fail(err, errlen, c->provider_mark, key, "must be set when "
                "enabled (one of %s)", names);
  }
  if (!(p->provider = swit__key_provider_find(c->provider))) {
    swit__key_provider_names(names, sizeof names);
    return fail(err, errlen, c->provider_mark, key, "unknown key provider "
                "\"%s\" (this build has %s; docs/security.md says how to "
                "add one)", c->provider, names);
  }
  snprintf(key, sizeof key, "%s.keyring", c->prefix);
  if (!c->keyring || !*c->keyring)
    return fail(err, errlen, c->keyring_mark, key, "must be set when "
                "enabled (%s)", strcmp(c->provider, "env") == 0
                ? "the variable holding the keyring" : "the keyring's place");
  p->location = c->keyring;
  rc = swit__keyring_load(p->provider, p->location, p->kind, &ring, why,
                          sizeof why);
  if (rc == SWIT_E_NOMEM) {
    snprintf(err, errlen, "out of memory");
    return rc;
  }
  if (rc) return fail(err, errlen, c->keyring_mark, key, "%s", why);
  atomic_store(&p->ring, ring);
  p->on = 1;
  return 0;
}

void swit__msgsec_free(swit__msgsec *s)
{
  if (!s) return;
  swit__keyring_free(atomic_load(&s->enc.ring));
  swit__keyring_free(atomic_load(&s->sig.ring));
  free(s);
}

#define MSG(cfg) ((cfg)->messaging.security.message)

int swit__msgsec_new(swit__msgsec **out, const swit_config *cfg, char *err,
                     size_t errlen)
{
  static const char enc_key[] = "messaging.security.message.encryption";
  static const char sig_key[] = "messaging.security.message.signing";
  const char *ea = MSG(cfg).encryption.algorithm;
  const char *sa = MSG(cfg).signing.algorithm;
  char key[160];
  swit__msgsec *s;
  int rc;

  *out = NULL;
  if (ea && strcmp(ea, "AES-256-GCM") != 0) {
    snprintf(key, sizeof key, "%s.algorithm", enc_key);
    return fail(err, errlen, MSG(cfg).encryption.algorithm_mark, key,
                "\"%s\" is not supported (expected AES-256-GCM)", ea);
  }
  if (sa && strcmp(sa, "HMAC-SHA256") != 0 && strcmp(sa, "Ed25519") != 0) {
    snprintf(key, sizeof key, "%s.algorithm", sig_key);
    return fail(err, errlen, MSG(cfg).signing.algorithm_mark, key,
                "\"%s\" is not supported (expected HMAC-SHA256 or Ed25519)",
                sa);
  }
  if (!MSG(cfg).encryption.enabled && !MSG(cfg).signing.enabled) return 0;
  if (!(s = calloc(1, sizeof *s))) return SWIT_E_NOMEM;
  s->enc.kind = SWIT__RING_AES;
  s->enc.topics = &MSG(cfg).encryption.topics;
  s->enc_headers = &MSG(cfg).encryption.headers;
  s->sig.kind = sa && strcmp(sa, "Ed25519") == 0 ? SWIT__RING_ED25519
                                                 : SWIT__RING_HMAC;
  s->sig.topics = &MSG(cfg).signing.topics;
  if (MSG(cfg).encryption.enabled) {
    part_cfg c = {enc_key, ea, MSG(cfg).encryption.key_provider,
                  MSG(cfg).encryption.keyring,
                  MSG(cfg).encryption.algorithm_mark,
                  MSG(cfg).encryption.provider_mark,
                  MSG(cfg).encryption.keyring_mark};
    if ((rc = part_new(&s->enc, &c, err, errlen))) goto fail;
  }
  if (MSG(cfg).signing.enabled) {
    part_cfg c = {sig_key, sa, MSG(cfg).signing.key_provider,
                  MSG(cfg).signing.keyring, MSG(cfg).signing.algorithm_mark,
                  MSG(cfg).signing.provider_mark,
                  MSG(cfg).signing.keyring_mark};
    if ((rc = part_new(&s->sig, &c, err, errlen))) goto fail;
  }
  *out = s;
  return 0;
fail:
  swit__msgsec_free(s);
  return rc;
}

/* Load both rings, then swap both: a failure changes nothing. The
 * replaced ring stays readable (a worker may be using it) and is freed
 * with the newest. */
int swit__msgsec_reload(swit__msgsec *s, char *err, size_t errlen)
{
  swit__msgsec_part *parts[2] = {&s->enc, &s->sig};
  swit__keyring *fresh[2] = {NULL, NULL};
  char why[512];
  int rc = 0;

  for (int i = 0; i < 2 && rc == 0; i++) {
    if (!parts[i]->on) continue;
    rc = swit__keyring_load(parts[i]->provider, parts[i]->location,
                            parts[i]->kind, &fresh[i], why, sizeof why);
    if (rc)
      snprintf(err, errlen, "%s keyring '%s': %s", i ? "signing"
               : "encryption", parts[i]->location, why);
  }
  for (int i = 0; i < 2; i++) {
    if (!fresh[i]) continue;
    if (rc) {
      swit__keyring_free(fresh[i]);
      continue;
    }
    fresh[i]->older = atomic_load(&parts[i]->ring);
    atomic_store_explicit(&parts[i]->ring, fresh[i], memory_order_release);
  }
  return rc;
}

/* ------------------------------------------------------------------ */
/* The interceptor */

static void *arena(void *ud, size_t size)
{
  return swit__arena_alloc(ud, size);
}

static int msg_before(void *ws, swit__worker *w, uint32_t i)
{
  swit__msgsec *s = ws;
  swit_ffi_msg *m = &w->ffi.msgs[i];
  char reason[256];
  swit_msg_view v;

  if (swit__msgsec_open(s, &m->v, &v, arena, w, reason, sizeof reason) == 0) {
    m->v = v;
    return 0;
  }
  atomic_fetch_add_explicit(&s->rejected, 1, memory_order_relaxed);
  swit__msg_set_result(w, m, SWIT_REJECT, reason, strlen(reason));
  return 1;
}
SWIT__ICPT_MSGS_BEFORE(msgs_before, msg_before)

static int worker_init(void *hs, swit__worker *w, void **ws)
{
  (void)w;
  *ws = hs;
  return 0;
}

static const swit_msg_view *publish_before(void *hs, const swit_msg_view *m,
                                           size_t n, const swit__pub_info *pi,
                                           int *rc, char *err, size_t errlen)
{
  swit__msgsec *s = hs;
  swit__alloc_fn alloc = pi->w ? arena : swit__msgsec_scratch_alloc;
  void *ud = pi->w;
  swit_msg_view *out;

  if (pi->dead_letter) return m; /* the delivered bytes, as they came */
  if (!pi->w) swit__msgsec_scratch_reset();
  if (!(out = alloc(ud, n * sizeof *out))) {
    *rc = SWIT_E_NOMEM;
    snprintf(err, errlen, "message security: out of memory");
    return NULL;
  }
  for (size_t i = 0; i < n; i++)
    if ((*rc = swit__msgsec_seal(s, &m[i], &out[i], alloc, ud, err, errlen)))
      return NULL;
  return out;
}

static const swit__icpt_ops msgsec_ops = {
  .name = "msgsec",
  .worker_init = worker_init,
  .msgs_before = msgs_before,
  .publish_before = publish_before,
};

int swit__msgsec_register(swit_host_t *h, swit__msgsec *s)
{
  int k = swit__icpt_add(h, &msgsec_ops, s);
  return k < 0 ? k : 0;
}
