/*
 * keyring.c - keyring text, the built-in key providers (file, env) and
 * the provider registry (keyring.h has the format and the threading).
 *
 * Secrets are wiped (OPENSSL_cleanse) from every buffer this file fills
 * once they are parsed or freed.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "sec/keyring.h"
#include "swit/swit.h"

/* ------------------------------------------------------------------ */
/* Base64 */

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t swit__b64_encode(const unsigned char *in, size_t n, char *out)
{
  size_t o = 0, i;

  for (i = 0; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[o++] = b64[v >> 18];
    out[o++] = b64[(v >> 12) & 63];
    out[o++] = b64[(v >> 6) & 63];
    out[o++] = b64[v & 63];
  }
  if (i < n) {
    uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
    out[o++] = b64[v >> 18];
    out[o++] = b64[(v >> 12) & 63];
    out[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
    out[o++] = '=';
  }
  return o;
}

/* Digit values + 1 (0: not a digit), by byte: a table, because a chain
 * of range tests mispredicts on every random character of a signature
 * (about 0.3 us per 44-character header, bench_sec). */
static unsigned char b64_vals[256];
static pthread_once_t b64_once = PTHREAD_ONCE_INIT;

static void b64_init(void)
{
  for (int i = 0; i < 64; i++)
    b64_vals[(unsigned char)b64[i]] = (unsigned char)(i + 1);
}

long swit__b64_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;

  pthread_once(&b64_once, b64_init);
  if (n % 4) return -1;
  while (n > 0 && in[n - 1] == '=') n--;
  for (size_t i = 0; i < n; i++) {
    int v = b64_vals[(unsigned char)in[i]] - 1;
    if (v < 0) return -1;
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (o == cap) return -1;
      out[o++] = (unsigned char)(acc >> bits);
    }
  }
  return (long)o;
}

/* ------------------------------------------------------------------ */
/* Parsing */

static int valid_id(const char *s, size_t n)
{
  if (n == 0 || n > SWIT__KEYID_MAX) return 0;
  for (size_t i = 0; i < n; i++)
    if (!(s[i] >= 'a' && s[i] <= 'z') && !(s[i] >= 'A' && s[i] <= 'Z') &&
        !(s[i] >= '0' && s[i] <= '9') && !strchr("._-", s[i]))
      return 0;
  return 1;
}

const swit__key *swit__keyring_find(const swit__keyring *r, const char *id,
                                    size_t len)
{
  for (size_t i = 0; r && i < r->n; i++)
    if (r->keys[i].idlen == len && memcmp(r->keys[i].id, id, len) == 0)
      return &r->keys[i];
  return NULL;
}

/* Split a line into at most 3 words; returns the count (4: too many). */
static int words(char *line, char **w)
{
  int n = 0;
  char *save = NULL;

  for (char *t = strtok_r(line, " \t\r", &save); t;
       t = strtok_r(NULL, " \t\r", &save)) {
    if (n == 3) return 4;
    w[n++] = t;
  }
  return n;
}

static atomic_uint_fast64_t serials;

static int add_key(swit__keyring *r, char **w, int secret, int lineno,
                   char *err, size_t errlen)
{
  swit__key *k = &r->keys[r->n];
  size_t idlen = strlen(w[1]);
  long got;

  if (!valid_id(w[1], idlen)) {
    snprintf(err, errlen, "line %d: key id '%.*s' must be 1..64 of "
             "[A-Za-z0-9._-]", lineno, 64, w[1]);
    return SWIT_E_CONFIG;
  }
  if (swit__keyring_find(r, w[1], idlen)) {
    snprintf(err, errlen, "line %d: key id '%s' appears twice", lineno, w[1]);
    return SWIT_E_CONFIG;
  }
  if (!secret && r->kind != SWIT__RING_ED25519) {
    snprintf(err, errlen, "line %d: 'public' keys are for Ed25519 signing "
             "only", lineno);
    return SWIT_E_CONFIG;
  }
  memset(k, 0, sizeof *k);
  got = swit__b64_decode(w[2], strlen(w[2]), k->raw, sizeof k->raw);
  if (got != SWIT__KEY_LEN) {
    OPENSSL_cleanse(k->raw, sizeof k->raw);
    snprintf(err, errlen, "line %d: key '%s' must be the base64 of exactly "
             "%d bytes (e.g. openssl rand -base64 32)", lineno, w[1],
             SWIT__KEY_LEN);
    return SWIT_E_CONFIG;
  }
  memcpy(k->id, w[1], idlen + 1);
  k->serial = atomic_fetch_add(&serials, 1) + 1;
  k->idlen = (uint8_t)idlen;
  k->secret = (uint8_t)secret;
  if (r->kind == SWIT__RING_ED25519) {
    k->pkey = secret ? EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL,
                                                    k->raw, SWIT__KEY_LEN)
                     : EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL,
                                                   k->raw, SWIT__KEY_LEN);
    if (!k->pkey) {
      snprintf(err, errlen, "line %d: key '%s' is not a valid Ed25519 key",
               lineno, w[1]);
      return SWIT_E_CONFIG;
    }
  }
  r->n++;
  return 0;
}

static int parse_line(swit__keyring *r, char *line, int lineno,
                      char **active, char *err, size_t errlen)
{
  char *w[3];
  int n;

  if (line[strspn(line, " \t\r")] == '#') return 0;
  n = words(line, w);
  if (n == 0) return 0;
  if (strcmp(w[0], "key") == 0 && n == 3)
    return add_key(r, w, 1, lineno, err, errlen);
  if (strcmp(w[0], "public") == 0 && n == 3)
    return add_key(r, w, 0, lineno, err, errlen);
  if (strcmp(w[0], "active") == 0 && n == 2) {
    if (*active) {
      snprintf(err, errlen, "line %d: a second 'active' line", lineno);
      return SWIT_E_CONFIG;
    }
    *active = w[1];
    return 0;
  }
  snprintf(err, errlen, "line %d: expected 'key ID BASE64', 'public ID "
           "BASE64' or 'active ID'", lineno);
  return SWIT_E_CONFIG;
}

int swit__keyring_parse(const char *text, int kind, swit__keyring **out,
                        char *err, size_t errlen)
{
  size_t len = strlen(text), cap = 1;
  char *copy = strdup(text), *line, *next, *active = NULL;
  swit__keyring *r = calloc(1, sizeof *r);
  int rc = SWIT_E_NOMEM, lineno = 1;

  for (size_t i = 0; i < len; i++) cap += text[i] == '\n' || text[i] == ';';
  if (!copy || !r || !(r->keys = calloc(cap, sizeof *r->keys))) goto fail;
  r->kind = kind;
  r->active = -1;
  for (line = copy; line; line = next, lineno++) {
    next = line + strcspn(line, "\n;");
    if (*next == '\0') next = NULL;
    else *next++ = '\0';
    if ((rc = parse_line(r, line, lineno, &active, err, errlen))) goto fail;
  }
  if (active) {
    const swit__key *k = swit__keyring_find(r, active, strlen(active));
    if (!k || !k->secret) {
      snprintf(err, errlen, "active key '%.*s' is not a 'key' of the ring",
               64, active);
      rc = SWIT_E_CONFIG;
      goto fail;
    }
    r->active = (int)(k - r->keys);
  }
  if (r->n == 0) {
    snprintf(err, errlen, "no keys");
    rc = SWIT_E_CONFIG;
    goto fail;
  }
  OPENSSL_cleanse(copy, len);
  free(copy);
  *out = r;
  return 0;
fail:
  if (copy) OPENSSL_cleanse(copy, len);
  free(copy);
  swit__keyring_free(r);
  return rc;
}

void swit__keyring_free(swit__keyring *r)
{
  while (r) {
    swit__keyring *older = r->older;
    for (size_t i = 0; r->keys && i < r->n; i++)
      EVP_PKEY_free(r->keys[i].pkey);
    if (r->keys) OPENSSL_cleanse(r->keys, r->n * sizeof *r->keys);
    free(r->keys);
    free(r);
    r = older;
  }
}

/* ------------------------------------------------------------------ */
/* Providers */

#define KEYRING_MAX (1 << 20) /* bytes of keyring text */

static int fetch_file(const char *path, char **text, char *err, size_t errlen)
{
  struct stat st;
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  char *buf = NULL;
  ssize_t got;
  int rc = SWIT_E_CONFIG;

  if (fd < 0 || fstat(fd, &st) != 0) {
    snprintf(err, errlen, "cannot read '%s': %s", path, strerror(errno));
    goto fail;
  }
  if (!S_ISREG(st.st_mode) || st.st_size > KEYRING_MAX) {
    snprintf(err, errlen, "'%s' is not a regular file of at most 1MB", path);
    goto fail;
  }
  if (st.st_mode & 077) {
    snprintf(err, errlen, "'%s' has mode %04o: a keyring must not be "
             "readable or writable by group or others (chmod 600)", path,
             (unsigned)(st.st_mode & 07777));
    goto fail;
  }
  if (st.st_uid != geteuid()) {
    snprintf(err, errlen, "'%s' belongs to uid %u, not to this process "
             "(uid %u)", path, (unsigned)st.st_uid, (unsigned)geteuid());
    goto fail;
  }
  if (!(buf = malloc((size_t)st.st_size + 1))) {
    rc = SWIT_E_NOMEM;
    goto fail;
  }
  got = read(fd, buf, (size_t)st.st_size);
  if (got != st.st_size) {
    snprintf(err, errlen, "cannot read '%s': %s", path,
             got < 0 ? strerror(errno) : "short read");
    goto fail;
  }
  buf[got] = '\0';
  close(fd);
  *text = buf;
  return 0;
fail:
  if (fd >= 0) close(fd);
  free(buf);
  return rc;
}

static int fetch_env(const char *name, char **text, char *err, size_t errlen)
{
  const char *v = getenv(name);

  if (!v || !*v) {
    snprintf(err, errlen, "environment variable '%s' is not set", name);
    return SWIT_E_CONFIG;
  }
  if (strlen(v) > KEYRING_MAX) {
    snprintf(err, errlen, "environment variable '%s' is over 1MB", name);
    return SWIT_E_CONFIG;
  }
  return (*text = strdup(v)) ? 0 : SWIT_E_NOMEM;
}

static const swit__key_provider provider_file = {"file", fetch_file};
static const swit__key_provider provider_env = {"env", fetch_env};

#define PROVIDERS_MAX 8
static const swit__key_provider *providers[PROVIDERS_MAX] = {&provider_file,
                                                              &provider_env};

int swit__key_provider_add(const swit__key_provider *p)
{
  size_t i;

  if (!p || !p->name || !p->fetch) return SWIT_E_INVAL;
  for (i = 0; i < PROVIDERS_MAX && providers[i]; i++)
    if (strcmp(providers[i]->name, p->name) == 0) return SWIT_E_EXISTS;
  if (i == PROVIDERS_MAX) return SWIT_E_FULL;
  providers[i] = p;
  return 0;
}

const swit__key_provider *swit__key_provider_find(const char *name)
{
  for (size_t i = 0; name && i < PROVIDERS_MAX && providers[i]; i++)
    if (strcmp(providers[i]->name, name) == 0) return providers[i];
  return NULL;
}

void swit__key_provider_names(char *buf, size_t len)
{
  size_t o = 0;

  buf[0] = '\0';
  for (size_t i = 0; i < PROVIDERS_MAX && providers[i] && o < len; i++)
    o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? ", " : "",
                          providers[i]->name);
}

int swit__keyring_load(const swit__key_provider *p, const char *location,
                       int kind, swit__keyring **out, char *err,
                       size_t errlen)
{
  char *text = NULL;
  int rc = p->fetch(location, &text, err, errlen);

  if (rc == 0) {
    rc = swit__keyring_parse(text, kind, out, err, errlen);
    OPENSSL_cleanse(text, strlen(text));
  }
  free(text);
  return rc;
}
