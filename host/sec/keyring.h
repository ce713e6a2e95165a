/*
 * keyring.h - keys for message encryption and signing (keyring.c): the
 * keyring text format, the key providers that fetch it, and the ring a
 * reload swaps in. Not API.
 *
 * A provider turns a location (the config's `keyring` value) into
 * keyring text; the text format is the same whatever the provider:
 *
 *   # comment; lines end with a newline or ';'
 *   key    <id> <base64 of 32 bytes>   a secret: AES-256 key, HMAC key,
 *                                      or Ed25519 private key (seed)
 *   public <id> <base64 of 32 bytes>   Ed25519 public key: verify only
 *   active <id>                        the key new messages use
 *
 * Ids are 1..64 of [A-Za-z0-9._-], unique in a ring. Built in: "file"
 * (a file that must be a regular file, not readable or writable by group
 * or others) and "env" (an environment variable). Another provider (e.g.
 * vault) is a swit__key_provider registered before the host is made.
 *
 * Threads: a ring is immutable once made and read by any thread; a
 * reload (swit__keyring_load on the reloading thread) makes a new one
 * and the owner swaps a pointer; old rings are kept until the owner is
 * freed, so a reader never sees one freed under it.
 */
#ifndef SWIT_SEC_KEYRING_H
#define SWIT_SEC_KEYRING_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#define SWIT__KEY_LEN 32
#define SWIT__KEYID_MAX 64

typedef struct swit__key {
  char id[SWIT__KEYID_MAX + 1];
  uint8_t idlen;
  uint8_t secret;                 /* 1: `key` line, 0: `public` line */
  unsigned char raw[SWIT__KEY_LEN];
  EVP_PKEY *pkey;                 /* Ed25519 rings only */
  uint64_t serial;                /* unique in the process: contexts keyed
                                     with it are reused (envelope.c) */
} swit__key;

enum { SWIT__RING_AES, SWIT__RING_HMAC, SWIT__RING_ED25519 };

typedef struct swit__keyring {
  swit__key *keys;
  size_t n;
  int active;                     /* index into keys, or -1 */
  int kind;                       /* SWIT__RING_* */
  struct swit__keyring *older;    /* the rings this one replaced */
} swit__keyring;

/* A key provider. fetch: the keyring text for `location` in *text
 * (malloc'd, NUL-terminated; the caller wipes and frees it), or a
 * SWIT_E_* code with the reason in err. Runs at start and on every
 * reload, on the thread that asks; it may block (a network call). */
typedef struct swit__key_provider {
  const char *name;
  int (*fetch)(const char *location, char **text, char *err, size_t errlen);
} swit__key_provider;

/* Add a provider (before swit_host_new). SWIT_E_EXISTS, SWIT_E_FULL. */
int swit__key_provider_add(const swit__key_provider *p);
const swit__key_provider *swit__key_provider_find(const char *name);
/* "file, env, ..." into buf. */
void swit__key_provider_names(char *buf, size_t len);

/* Parse keyring text for a ring of `kind`. 0 and *out, or SWIT_E_CONFIG
 * (err: "line N: ...") / SWIT_E_NOMEM. */
int swit__keyring_parse(const char *text, int kind, swit__keyring **out,
                        char *err, size_t errlen);
/* Fetch with provider p from location and parse. */
int swit__keyring_load(const swit__key_provider *p, const char *location,
                       int kind, swit__keyring **out, char *err,
                       size_t errlen);
/* Free a ring and every older one. NULL is fine. */
void swit__keyring_free(swit__keyring *r);

/* The key called id (len bytes), or NULL. */
const swit__key *swit__keyring_find(const swit__keyring *r, const char *id,
                                    size_t len);

/* Base64 (RFC 4648, padded). encode writes 4*ceil(n/3) bytes and
 * returns that count; decode returns the byte count or -1. */
size_t swit__b64_encode(const unsigned char *in, size_t n, char *out);
long swit__b64_decode(const char *in, size_t n, unsigned char *out,
                      size_t cap);

#endif /* SWIT_SEC_KEYRING_H */
