/*
 * envelope.c - the sealed message formats (docs/security.md has them
 * with the threat model):
 *
 *   payload  = "SWE" | version 1 | key id length (1) | key id | nonce (12)
 *              | AES-256-GCM ciphertext of the inner text | tag (16)
 *   inner    = header count (u16 BE) | per header: name length (u16 BE),
 *              name, value length (u32 BE), value | the payload
 *   AAD      = lp(topic) | lp(key) | lp(message id) | the envelope up to
 *              the ciphertext          (lp: u32 BE length, then bytes)
 *   x-swit-sig header = "<key id>:<base64 signature>" over
 *              "swit-sig-v1" | lp(topic) | lp(key) | lp(message id) |
 *              the payload as sent (the envelope when encrypted):
 *              HMAC-SHA256 of it, or Ed25519 of its SHA-256
 *   x-swit-id header = 32 hex digits, added when the publisher gave none
 *
 * Sealing encrypts, then signs; opening verifies, then decrypts. Both
 * run on any thread: OpenSSL contexts are per thread (a pthread key
 * frees them when the thread ends); the algorithms are fetched once.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "sec/msgsec.h"
#include "swit/swit.h"

#define NONCE_LEN 12
#define TAG_LEN 16
#define SIG_MAX 64              /* Ed25519; HMAC-SHA256 is 32 */
#define SIG_B64_MAX 88
#define ID_LEN 32
#define SIG_DOMAIN "swit-sig-v1"

/* ------------------------------------------------------------------ */
/* Per-thread OpenSSL state */

typedef struct chunk {
  struct chunk *next;
  size_t size, used;
  max_align_t data[];
} chunk;

/* A context keyed once: which key it holds (the ring's serial and the
 * key), so the next message with that key only sets its nonce. */
typedef struct keyed {
  uint64_t serial;
  const swit__key *key;
} keyed;

typedef struct tl_state {
  EVP_CIPHER_CTX *cipher, *decipher;
  EVP_MAC_CTX *mac;
  keyed cipher_k, decipher_k, mac_k;
  EVP_MD_CTX *md;
  EVP_MD_CTX *sign;
  chunk *scratch;               /* publishes from non-worker threads */
  unsigned char salt[8];        /* random; nonce = salt | low 32 bits of seq */
  uint64_t seq;                 /* message ids: hex of salt | seq */
  unsigned fork_gen;            /* the salt was drawn in this process */
} tl_state;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_key_t tl_key;
static EVP_CIPHER *aes_gcm;
static EVP_MAC *hmac;
static EVP_MD *sha256;

static void tl_free(void *p)
{
  tl_state *t = p;

  if (!t) return;
  EVP_CIPHER_CTX_free(t->cipher);
  EVP_CIPHER_CTX_free(t->decipher);
  EVP_MAC_CTX_free(t->mac);
  EVP_MD_CTX_free(t->md);
  EVP_MD_CTX_free(t->sign);
  while (t->scratch) {
    chunk *next = t->scratch->next;
    free(t->scratch);
    t->scratch = next;
  }
  free(t);
}

/* A child process must not reuse its parent's nonces. */
static atomic_uint fork_gen = 1;
static void after_fork(void)
{
  atomic_fetch_add(&fork_gen, 1);
}

static void init_once(void)
{
  pthread_key_create(&tl_key, tl_free);
  pthread_atfork(NULL, NULL, after_fork);
  aes_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
  hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
  sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static tl_state *tl_get(void)
{
  tl_state *t;

  pthread_once(&once, init_once);
  if (!aes_gcm || !hmac || !sha256) return NULL;
  if ((t = pthread_getspecific(tl_key))) return t;
  if (!(t = calloc(1, sizeof *t))) return NULL;
  t->cipher = EVP_CIPHER_CTX_new();
  t->decipher = EVP_CIPHER_CTX_new();
  t->mac = EVP_MAC_CTX_new(hmac);
  t->md = EVP_MD_CTX_new();
  t->sign = EVP_MD_CTX_new();
  if (t->mac) {
    OSSL_PARAM p[] = {OSSL_PARAM_construct_utf8_string(
                          OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
                      OSSL_PARAM_construct_end()};
    if (!EVP_MAC_CTX_set_params(t->mac, p)) {
      EVP_MAC_CTX_free(t->mac);
      t->mac = NULL;
    }
  }
  if (!t->cipher || !t->decipher || !t->mac || !t->md || !t->sign ||
      pthread_setspecific(tl_key, t) != 0) {
    tl_free(t);
    return NULL;
  }
  return t;
}

static void be32(unsigned char *p, uint32_t v);

/* Scratch memory of this thread: chunks kept for reuse, all free again
 * after swit__msgsec_scratch_reset. */
#define CHUNK_MIN (64 * 1024)

void swit__msgsec_scratch_reset(void)
{
  tl_state *t = tl_get();

  for (chunk *c = t ? t->scratch : NULL; c; c = c->next) c->used = 0;
}

void *swit__msgsec_scratch_alloc(void *ud, size_t size)
{
  tl_state *t = tl_get();
  chunk *c;

  (void)ud;
  if (!t) return NULL;
  size = (size + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
  for (c = t->scratch; c; c = c->next)
    if (c->size - c->used >= size) break;
  if (!c) {
    size_t cap = size > CHUNK_MIN ? size : CHUNK_MIN;
    if (!(c = malloc(sizeof *c + cap))) return NULL;
    c->size = cap;
    c->used = 0;
    c->next = t->scratch;
    t->scratch = c;
  }
  c->used += size;
  return (char *)c->data + c->used - size;
}

/* The next nonce and message id of this thread. RAND_bytes costs
 * microseconds, so it runs once per 2^32 messages of a thread (and after
 * a fork): nonces repeat only if two threads sharing a key draw the
 * same 64-bit salt. */
static int next_nonce(tl_state *t, unsigned char nonce[NONCE_LEN],
                      char id[ID_LEN])
{
  static const char hex[] = "0123456789abcdef";
  unsigned gen = atomic_load_explicit(&fork_gen, memory_order_relaxed);
  unsigned char raw[16];

  if (t->fork_gen != gen || (uint32_t)t->seq == 0) {
    if (RAND_bytes(t->salt, sizeof t->salt) != 1) return -1;
    t->fork_gen = gen;
    if ((uint32_t)t->seq == 0) t->seq++;
  }
  memcpy(nonce, t->salt, 8);
  be32(nonce + 8, (uint32_t)t->seq);
  memcpy(raw, t->salt, 8);
  be32(raw + 8, (uint32_t)(t->seq >> 32));
  be32(raw + 12, (uint32_t)t->seq);
  for (int i = 0; i < 16; i++) {
    id[2 * i] = hex[raw[i] >> 4];
    id[2 * i + 1] = hex[raw[i] & 15];
  }
  t->seq++;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Helpers */

static const swit_header *header_find(const swit_msg_view *m, const char *name)
{
  size_t len = strlen(name);

  for (uint32_t i = 0; i < m->nheaders; i++)
    if (m->headers[i].name_len == len &&
        strncasecmp(m->headers[i].name, name, len) == 0)
      return &m->headers[i];
  return NULL;
}

static int is_named(const swit_header *h, const char *name)
{
  size_t len = strlen(name);
  return h->name_len == len && strncasecmp(h->name, name, len) == 0;
}

static int sealed_header(const swit__msgsec *s, const swit_header *h)
{
  for (size_t i = 0; i < s->enc_headers->n; i++)
    if (is_named(h, s->enc_headers->items[i])) return 1;
  return 0;
}

static void be32(unsigned char *p, uint32_t v)
{
  p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

static uint32_t rd32(const unsigned char *p)
{
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         p[3];
}

static const swit__key *active_key(const swit__msgsec_part *p)
{
  const swit__keyring *r = atomic_load_explicit(&p->ring,
                                                 memory_order_acquire);
  return r && r->active >= 0 ? &r->keys[r->active] : NULL;
}

static const swit__key *key_named(const swit__msgsec_part *p, const char *id,
                                  size_t len)
{
  return swit__keyring_find(atomic_load_explicit(&p->ring,
                                                 memory_order_acquire),
                            id, len);
}

/* Is k the key ctx was last keyed with (serials are never reused, key
 * addresses may be)? Records it. */
static int same_key(keyed *c, uint64_t serial, const swit__key *k)
{
  int same = c->serial == serial && c->key == k;
  c->serial = serial;
  c->key = k;
  return same;
}

/* The bound metadata: head | lp(topic) | lp(key) | lp(id) | tail, fed
 * to `feed`. Each update of a MAC or an AAD goes through OpenSSL's
 * dispatch (tens of ns), so the parts are copied into one buffer and
 * fed at once when they fit, which they do but for huge topics or keys. */
typedef int (*feed_fn)(void *ctx, const unsigned char *p, size_t n);

#define META_BUF 512

static int feed_meta(feed_fn feed, void *ctx, const char *head,
                     size_t headlen, const swit_msg_view *m, const char *id,
                     size_t idlen, const unsigned char *tail, size_t taillen)
{
  const char *part[3] = {m->topic, m->key, id};
  size_t len[3] = {m->topic_len, m->key_len, idlen};
  unsigned char buf[META_BUF], lp[4];
  size_t total = headlen + 12 + len[0] + len[1] + len[2] + taillen, o = 0;

  if (total <= sizeof buf) {
    memcpy(buf, head, headlen);
    o = headlen;
    for (int i = 0; i < 3; i++) {
      be32(buf + o, (uint32_t)len[i]);
      if (len[i]) memcpy(buf + o + 4, part[i], len[i]);
      o += 4 + len[i];
    }
    if (taillen) memcpy(buf + o, tail, taillen);
    return feed(ctx, buf, total);
  }
  if (headlen && !feed(ctx, (const unsigned char *)head, headlen)) return 0;
  for (int i = 0; i < 3; i++) {
    be32(lp, (uint32_t)len[i]);
    if (!feed(ctx, lp, 4) ||
        (len[i] && !feed(ctx, (const unsigned char *)part[i], len[i])))
      return 0;
  }
  return !taillen || feed(ctx, tail, taillen);
}

static int feed_aad(void *ctx, const unsigned char *p, size_t n)
{
  int outl;
  return EVP_CipherUpdate(ctx, NULL, &outl, p, (int)n);
}

static int feed_mac(void *ctx, const unsigned char *p, size_t n)
{
  return EVP_MAC_update(ctx, p, n);
}

static int feed_md(void *ctx, const unsigned char *p, size_t n)
{
  return EVP_DigestUpdate(ctx, p, n);
}

/* ------------------------------------------------------------------ */
/* Signatures */

/* SHA-256 of the signed bytes (what Ed25519 signs). */
static int signed_digest(tl_state *t, const swit_msg_view *m, const char *id,
                         size_t idlen, unsigned char dig[32],
                         unsigned int *dlen)
{
  if (!EVP_DigestInit_ex(t->md, sha256, NULL) ||
      !feed_meta(feed_md, t->md, SIG_DOMAIN, sizeof SIG_DOMAIN - 1, m, id,
                 idlen, NULL, 0) ||
      !EVP_DigestUpdate(t->md, m->payload, m->payload_len) ||
      !EVP_DigestFinal_ex(t->md, dig, dlen))
    return -1;
  return 0;
}

/* The signature of (m's metadata, id, payload) with key k into sig. */
static int sign_with(tl_state *t, int kind, const swit__key *k,
                     const swit_msg_view *m, const char *id, size_t idlen,
                     unsigned char *sig, size_t *siglen)
{
  unsigned char dig[32];
  unsigned int dlen;

  if (kind == SWIT__RING_HMAC) {
    int same = same_key(&t->mac_k, k->serial, k);
    if (!EVP_MAC_init(t->mac, same ? NULL : k->raw, same ? 0 : SWIT__KEY_LEN,
                      NULL) ||
        !feed_meta(feed_mac, t->mac, SIG_DOMAIN, sizeof SIG_DOMAIN - 1, m,
                   id, idlen, NULL, 0) ||
        !EVP_MAC_update(t->mac, (const unsigned char *)m->payload,
                        m->payload_len) ||
        !EVP_MAC_final(t->mac, sig, siglen, SIG_MAX))
      return -1;
    return 0;
  }
  if (signed_digest(t, m, id, idlen, dig, &dlen)) return -1;
  EVP_MD_CTX_reset(t->sign);
  *siglen = SIG_MAX;
  if (!k->secret) return -1;
  if (EVP_DigestSignInit(t->sign, NULL, NULL, NULL, k->pkey) != 1 ||
      EVP_DigestSign(t->sign, sig, siglen, dig, dlen) != 1)
    return -1;
  return 0;
}

static int verify_with(tl_state *t, int kind, const swit__key *k,
                       const swit_msg_view *m, const char *id, size_t idlen,
                       const unsigned char *sig, size_t siglen)
{
  unsigned char mine[SIG_MAX], dig[32];
  unsigned int dlen;
  size_t mlen;

  if (kind == SWIT__RING_HMAC) {
    if (!k->secret || sign_with(t, kind, k, m, id, idlen, mine, &mlen) != 0)
      return -1;
    return siglen == mlen && CRYPTO_memcmp(mine, sig, mlen) == 0 ? 0 : -1;
  }
  if (signed_digest(t, m, id, idlen, dig, &dlen)) return -1;
  EVP_MD_CTX_reset(t->sign);
  if (EVP_DigestVerifyInit(t->sign, NULL, NULL, NULL, k->pkey) != 1)
    return -1;
  return EVP_DigestVerify(t->sign, sig, siglen, dig, dlen) == 1 ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* Sealing */

static size_t inner_header_bytes(const swit__msgsec *s, const swit_msg_view *m,
                                 uint32_t *count)
{
  size_t n = 2;

  *count = 0;
  for (uint32_t i = 0; i < m->nheaders; i++)
    if (sealed_header(s, &m->headers[i])) {
      n += 6 + m->headers[i].name_len + m->headers[i].value_len;
      (*count)++;
    }
  return n;
}

static int enc_update(EVP_CIPHER_CTX *c, unsigned char **out,
                      const void *in, size_t n)
{
  int outl;

  if (n == 0) return 1;
  if (!EVP_EncryptUpdate(c, *out, &outl, in, (int)n)) return 0;
  *out += outl;
  return 1;
}

/* Encrypt m's payload and sealed headers into env (envlen bytes). */
static int encrypt_into(tl_state *t, const swit__msgsec *s,
                        const swit__key *k, const swit_msg_view *m,
                        const char *id, const unsigned char *nonce,
                        unsigned char *env, uint32_t nsealed)
{
  EVP_CIPHER_CTX *c = t->cipher;
  unsigned char *o = env, pre[6];

  memcpy(o, SWIT__ENV_MAGIC, 3);
  o[3] = SWIT__ENV_VERSION;
  o[4] = k->idlen;
  memcpy(o + 5, k->id, k->idlen);
  o += 5 + k->idlen;
  memcpy(o, nonce, NONCE_LEN);
  o += NONCE_LEN;
  int same = same_key(&t->cipher_k, k->serial, k);
  if (!EVP_EncryptInit_ex2(c, same ? NULL : aes_gcm, same ? NULL : k->raw,
                           o - NONCE_LEN, NULL) ||
      !feed_meta(feed_aad, c, "", 0, m, id, ID_LEN, env, (size_t)(o - env)))
    return -1;
  pre[0] = (unsigned char)(nsealed >> 8), pre[1] = (unsigned char)nsealed;
  if (!enc_update(c, &o, pre, 2)) return -1;
  for (uint32_t i = 0; i < m->nheaders; i++) {
    const swit_header *h = &m->headers[i];
    if (!sealed_header(s, h)) continue;
    pre[0] = (unsigned char)(h->name_len >> 8);
    pre[1] = (unsigned char)h->name_len;
    be32(pre + 2, h->value_len);
    if (!enc_update(c, &o, pre, 6) || !enc_update(c, &o, h->name, h->name_len) ||
        !enc_update(c, &o, h->value, h->value_len))
      return -1;
  }
  if (!enc_update(c, &o, m->payload, m->payload_len)) return -1;
  {
    int outl;
    if (!EVP_EncryptFinal_ex(c, o, &outl) ||
        !EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, o + outl))
      return -1;
  }
  return 0;
}

int swit__msgsec_seal(const swit__msgsec *s, const swit_msg_view *in,
                      swit_msg_view *out, swit__alloc_fn alloc, void *ud,
                      char *err, size_t errlen)
{
  int enc = s->enc.on && swit__msgsec_selects(&s->enc, in->topic,
                                              in->topic_len);
  int sig = s->sig.on && swit__msgsec_selects(&s->sig, in->topic,
                                              in->topic_len);
  const swit__key *ek = enc ? active_key(&s->enc) : NULL;
  const swit__key *sk = sig ? active_key(&s->sig) : NULL;
  const swit_header *idh;
  uint32_t nsealed = 0, nh = 0;
  size_t inner = 0, envlen = 0, need;
  unsigned char *p, sigbuf[SIG_MAX], nonce[NONCE_LEN];
  char fresh_id[ID_LEN];
  swit_header *hv;
  const char *id;
  tl_state *t;

  *out = *in;
  if (!enc && !sig) return 0;
  if ((enc && !ek) || (sig && !sk)) {
    snprintf(err, errlen, "publish to '%.*s': the %s keyring has no active "
             "key", (int)in->topic_len, in->topic,
             enc && !ek ? "encryption" : "signing");
    return SWIT_E_STATE;
  }
  if (!(t = tl_get())) return SWIT_E_NOMEM;
  if (next_nonce(t, nonce, fresh_id) != 0) return SWIT_E_SYS;
  idh = header_find(in, SWIT__HDR_ID);
  if (enc) {
    inner = inner_header_bytes(s, in, &nsealed) + in->payload_len;
    envlen = 5 + ek->idlen + NONCE_LEN + inner + TAG_LEN;
  }
  need = (in->nheaders + 2) * sizeof *hv + ID_LEN + envlen +
         SWIT__KEYID_MAX + 1 + SIG_B64_MAX;
  if (!(p = alloc(ud, need))) return SWIT_E_NOMEM;
  hv = (swit_header *)(void *)p;
  p += (in->nheaders + 2) * sizeof *hv;
  for (uint32_t i = 0; i < in->nheaders; i++) {
    const swit_header *h = &in->headers[i];
    if ((enc && sealed_header(s, h)) || (sig && is_named(h, SWIT__HDR_SIG)))
      continue;
    hv[nh++] = *h;
  }
  if (idh && idh->value_len == ID_LEN) {
    id = idh->value;
  } else {
    if (idh) {
      snprintf(err, errlen, "publish to '%.*s': header %s must be %d hex "
               "digits (or left to the host)", (int)in->topic_len, in->topic,
               SWIT__HDR_ID, ID_LEN);
      return SWIT_E_INVAL;
    }
    memcpy(p, fresh_id, ID_LEN);
    id = (const char *)p;
    hv[nh++] = (swit_header){SWIT__HDR_ID, id, sizeof SWIT__HDR_ID - 1, ID_LEN};
    p += ID_LEN;
  }
  if (enc) {
    if (encrypt_into(t, s, ek, in, id, nonce, p, nsealed) != 0) {
      snprintf(err, errlen, "publish to '%.*s': encryption failed",
               (int)in->topic_len, in->topic);
      return SWIT_E_SYS;
    }
    out->payload = (const char *)p;
    out->payload_len = envlen;
    p += envlen;
  }
  if (sig) {
    size_t siglen, o;
    if (sign_with(t, s->sig.kind, sk, out, id, ID_LEN, sigbuf, &siglen)) {
      snprintf(err, errlen, "publish to '%.*s': signing failed",
               (int)in->topic_len, in->topic);
      return SWIT_E_SYS;
    }
    memcpy(p, sk->id, sk->idlen);
    p[sk->idlen] = ':';
    o = sk->idlen + 1 + swit__b64_encode(sigbuf, siglen, (char *)p +
                                                         sk->idlen + 1);
    hv[nh++] = (swit_header){SWIT__HDR_SIG, (const char *)p,
                             sizeof SWIT__HDR_SIG - 1, (uint32_t)o};
  }
  out->headers = hv;
  out->nheaders = nh;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Opening */

/* An untrusted key id for a reason text: at most 64 characters, those
 * outside [A-Za-z0-9._-] shown as '?'. */
static const char *shown_id(char *buf, const char *s, size_t n)
{
  size_t i;

  if (n > SWIT__KEYID_MAX) n = SWIT__KEYID_MAX;
  for (i = 0; i < n; i++) {
    char c = s[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
             (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    buf[i] = ok ? c : '?';
  }
  buf[i] = '\0';
  return buf;
}

static int verify(tl_state *t, const swit__msgsec *s, const swit_msg_view *in,
                  const char *id, size_t idlen, char *reason, size_t rlen)
{
  const swit_header *h = header_find(in, SWIT__HDR_SIG);
  const char *colon;
  unsigned char sig[SIG_MAX];
  const swit__key *k;
  long siglen;

  if (!h) {
    snprintf(reason, rlen, "message security: signature missing (%s)",
             SWIT__HDR_SIG);
    return -1;
  }
  colon = memchr(h->value, ':', h->value_len);
  if (!colon) {
    snprintf(reason, rlen, "message security: malformed %s header",
             SWIT__HDR_SIG);
    return -1;
  }
  k = key_named(&s->sig, h->value, (size_t)(colon - h->value));
  if (!k) {
    char shown[SWIT__KEYID_MAX + 1];
    snprintf(reason, rlen, "message security: unknown signing key '%s'",
             shown_id(shown, h->value, (size_t)(colon - h->value)));
    return -1;
  }
  siglen = swit__b64_decode(colon + 1,
                            h->value_len - (size_t)(colon - h->value) - 1,
                            sig, sizeof sig);
  if (siglen <= 0 ||
      verify_with(t, s->sig.kind, k, in, id, idlen, sig, (size_t)siglen)) {
    snprintf(reason, rlen, "message security: bad signature (key '%s')",
             k->id);
    return -1;
  }
  return 0;
}

/* Decrypt in's envelope: out's payload and extra headers. */
static int decrypt(tl_state *t, const swit__msgsec *s, const swit_msg_view *in,
                   swit_msg_view *out, const char *id, size_t idlen,
                   swit__alloc_fn alloc, void *ud, char *reason, size_t rlen)
{
  const unsigned char *e = (const unsigned char *)in->payload, *ct;
  size_t len = in->payload_len, hdr, ctlen, off;
  EVP_CIPHER_CTX *c = t->decipher;
  unsigned char *pt;
  const swit__key *k;
  swit_header *hv;
  uint32_t nsealed;
  int outl, same;

  if (len < 5 || memcmp(e, SWIT__ENV_MAGIC, 3) != 0) {
    snprintf(reason, rlen, "message security: message is not encrypted");
    return -1;
  }
  if (e[3] != SWIT__ENV_VERSION) {
    snprintf(reason, rlen, "message security: envelope version %u is not "
             "supported", e[3]);
    return -1;
  }
  hdr = 5 + (size_t)e[4] + NONCE_LEN;
  if (len < hdr + 2 + TAG_LEN) {
    snprintf(reason, rlen, "message security: truncated envelope");
    return -1;
  }
  if (!(k = key_named(&s->enc, (const char *)e + 5, e[4]))) {
    char shown[SWIT__KEYID_MAX + 1];
    snprintf(reason, rlen, "message security: unknown encryption key '%s'",
             shown_id(shown, (const char *)e + 5, e[4]));
    return -1;
  }
  ct = e + hdr;
  ctlen = len - hdr - TAG_LEN;
  if (!(pt = alloc(ud, ctlen))) {
    snprintf(reason, rlen, "message security: out of memory");
    return -1;
  }
  same = same_key(&t->decipher_k, k->serial, k);
  if (!EVP_DecryptInit_ex2(c, same ? NULL : aes_gcm, same ? NULL : k->raw,
                           e + hdr - NONCE_LEN, NULL) ||
      !feed_meta(feed_aad, c, "", 0, in, id, idlen, e, hdr) ||
      !EVP_DecryptUpdate(c, pt, &outl, ct, (int)ctlen) ||
      !EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN,
                           (void *)(ct + ctlen)) ||
      EVP_DecryptFinal_ex(c, pt + outl, &outl) != 1) {
    snprintf(reason, rlen, "message security: decryption failed (key '%s'): "
             "tampered, or moved from another topic, key or id", k->id);
    return -1;
  }
  nsealed = (uint32_t)pt[0] << 8 | pt[1];
  hv = alloc(ud, (in->nheaders + nsealed) * sizeof *hv + 1);
  if (!hv) {
    snprintf(reason, rlen, "message security: out of memory");
    return -1;
  }
  memcpy(hv, in->headers, in->nheaders * sizeof *hv);
  off = 2;
  for (uint32_t i = 0; i < nsealed; i++) {
    swit_header *h = &hv[in->nheaders + i];
    if (off + 6 > ctlen) goto bad;
    h->name_len = (uint32_t)pt[off] << 8 | pt[off + 1];
    h->value_len = rd32(pt + off + 2);
    off += 6;
    if (h->name_len > ctlen - off || h->value_len > ctlen - off - h->name_len)
      goto bad;
    h->name = (const char *)pt + off;
    h->value = (const char *)pt + off + h->name_len;
    off += h->name_len + h->value_len;
  }
  out->headers = hv;
  out->nheaders = in->nheaders + nsealed;
  out->payload = (const char *)pt + off;
  out->payload_len = ctlen - off;
  return 0;
bad:
  snprintf(reason, rlen, "message security: malformed sealed headers");
  return -1;
}

int swit__msgsec_open(const swit__msgsec *s, const swit_msg_view *in,
                      swit_msg_view *out, swit__alloc_fn alloc, void *ud,
                      char *reason, size_t rlen)
{
  int enc = s->enc.on && swit__msgsec_selects(&s->enc, in->topic,
                                              in->topic_len);
  int sig = s->sig.on && swit__msgsec_selects(&s->sig, in->topic,
                                              in->topic_len);
  const swit_header *idh;
  tl_state *t;

  *out = *in;
  if (!enc && !sig) return 0;
  if (!(t = tl_get())) {
    snprintf(reason, rlen, "message security: out of memory");
    return -1;
  }
  idh = header_find(in, SWIT__HDR_ID);
  if (sig && verify(t, s, in, idh ? idh->value : "",
                    idh ? idh->value_len : 0, reason, rlen))
    return -1;
  if (enc && decrypt(t, s, in, out, idh ? idh->value : "",
                     idh ? idh->value_len : 0, alloc, ud, reason, rlen))
    return -1;
  return 0;
}
