/*
 * msgsec.h - message encryption (AES-256-GCM) and signing (HMAC-SHA256,
 * Ed25519) on the interception layer: sealed in publish_before, opened
 * in msgs_before (envelope.c: the formats; msgsec.c: the interceptor,
 * the config, reload). docs/security.md describes both. Not API.
 *
 * Threads: seal and open run on any thread at once; they read the
 * current rings (keyring.h) and keep their OpenSSL contexts per thread.
 * swit__msgsec_reload runs on the reloading thread.
 */
#ifndef SWIT_SEC_MSGSEC_H
#define SWIT_SEC_MSGSEC_H

#include <stdatomic.h>
#include <stddef.h>

#include "config/config.h"
#include "sec/keyring.h"
#include "swit_ffi.h"

struct swit_host_s;

#define SWIT__HDR_ID "x-swit-id"     /* message id: AAD and signed */
#define SWIT__HDR_SIG "x-swit-sig"   /* "<key id>:<base64 signature>" */
#define SWIT__ENV_MAGIC "SWE"        /* envelope: magic, then version 1 */
#define SWIT__ENV_VERSION 1

/* One of encryption or signing. */
typedef struct swit__msgsec_part {
  int on;
  int kind;                          /* SWIT__RING_* */
  const swit__key_provider *provider;
  const char *location;              /* the config's `keyring` */
  _Atomic(swit__keyring *) ring;
  const swit_cfg_list *topics;       /* empty: every topic */
} swit__msgsec_part;

typedef struct swit__msgsec {
  swit__msgsec_part enc, sig;
  const swit_cfg_list *enc_headers;  /* headers sealed with the payload */
  atomic_uint_fast64_t rejected;     /* messages refused by msgs_before */
} swit__msgsec;

/* Memory for sealed / opened views (a worker's arena, a scratch). */
typedef void *(*swit__alloc_fn)(void *ud, size_t size);

/* From the config (keys loaded). Refuses what it cannot do with
 * "file:line:col: key: ..." in err (SWIT_E_CONFIG). *out NULL when
 * neither encryption nor signing is on. */
int swit__msgsec_new(swit__msgsec **out, const swit_config *cfg, char *err,
                     size_t errlen);
void swit__msgsec_free(swit__msgsec *s);
/* Load every ring again; on error the old rings stay. */
int swit__msgsec_reload(swit__msgsec *s, char *err, size_t errlen);

/* Does part p apply to topic? */
int swit__msgsec_selects(const swit__msgsec_part *p, const char *topic,
                         size_t len);

/* envelope.c. Seal `in` (the parts that select its topic) into *out,
 * all memory from one alloc call. 0, or SWIT_E_* with err (no active
 * key, out of memory). */
int swit__msgsec_seal(const swit__msgsec *s, const swit_msg_view *in,
                      swit_msg_view *out, swit__alloc_fn alloc, void *ud,
                      char *err, size_t errlen);
/* Open: verify, then decrypt. 0 (out set, maybe == *in), or -1 with the
 * reason in `reason` (the message must not reach a handler). */
int swit__msgsec_open(const swit__msgsec *s, const swit_msg_view *in,
                      swit_msg_view *out, swit__alloc_fn alloc, void *ud,
                      char *reason, size_t rlen);

/* Memory of the calling thread for views sealed off a worker: valid
 * until the thread's next reset (an alloc fn; ud unused). */
void *swit__msgsec_scratch_alloc(void *ud, size_t size);
void swit__msgsec_scratch_reset(void);

/* The interceptor (api/host.c, when configured). */
int swit__msgsec_register(struct swit_host_s *h, swit__msgsec *s);

#endif /* SWIT_SEC_MSGSEC_H */
