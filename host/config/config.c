/*
 * config.c - loading, validation and lifetime of swit_config.
 *
 * A load reads the YAML text, sets every member to its default from the
 * field tables (config_fields.c), lets config_yaml.c walk the document
 * over them, then checks what the tables cannot express (keys that only
 * some broker types map, TLS files, Lua scripts) and resolves relative
 * file names against base_dir. It runs on the caller's thread; the result is immutable and
 * owned by the caller. swit__config_apply() types a broker's passthrough
 * map with the same code, for adapters. Every error is written as
 * "file:line:col: key.path: expected ..." by swit__config_fail().
 */
#if !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "config/config_int.h"
#include "swit/swit.h"

/* ---------------------------------------------------------------------
 * Error text */

static size_t vput(char *buf, size_t len, size_t at, const char *fmt,
                   va_list ap)
{
  int w = vsnprintf(buf + at, len - at, fmt, ap);
  size_t room = len - at - 1;

  return at + (w < 0 ? 0 : (size_t)w > room ? room : (size_t)w);
}

static size_t put(char *buf, size_t len, size_t at, const char *fmt, ...)
{
  va_list ap;

  va_start(ap, fmt);
  at = vput(buf, len, at, fmt, ap);
  va_end(ap);
  return at;
}

int swit__config_fail(swit_cfg_ctx *ctx, swit_cfg_mark mark, const char *key,
                      const char *fmt, ...)
{
  const char *file = mark.file ? mark.file : ctx->file;
  size_t at = 0;
  va_list ap;

  if (!ctx->err || ctx->errlen == 0)
    return SWIT_E_CONFIG;
  if (mark.line > 0)
    at = put(ctx->err, ctx->errlen, at, "%s:%d:%d: ", file, mark.line,
             mark.col);
  else
    at = put(ctx->err, ctx->errlen, at, "%s: ", file);
  if (key)
    at = put(ctx->err, ctx->errlen, at, "%s: ", key);
  va_start(ap, fmt);
  vput(ctx->err, ctx->errlen, at, fmt, ap);
  va_end(ap);
  return SWIT_E_CONFIG;
}

int swit__config_nomem(swit_cfg_ctx *ctx)
{
  if (ctx->err && ctx->errlen > 0)
    snprintf(ctx->err, ctx->errlen, "out of memory");
  return SWIT_E_NOMEM;
}

int swit__config_unsupported(swit_cfg_ctx *ctx, swit_cfg_mark mark,
                             const char *key)
{
  return swit__config_fail(ctx, mark, key, "not supported yet (see "
                           "docs/configuration.md)");
}

int swit__config_unknown(swit_cfg_ctx *ctx, swit_cfg_mark mark,
                         const char *key, const swit_cfg_field *fields)
{
  char names[512];
  size_t at = 0;

  names[0] = '\0';
  for (; fields->name; fields++)
    at = put(names, sizeof names, at, "%s%s", at ? ", " : "", fields->name);
  return swit__config_fail(ctx, mark, key, "unknown key (expected one of %s)",
                           names);
}

const swit_cfg_field *swit__config_field(const swit_cfg_field *fields,
                                         const char *name)
{
  for (; fields->name; fields++)
    if (strcmp(fields->name, name) == 0)
      return fields;
  return NULL;
}

/* ---------------------------------------------------------------------
 * Marks recorded while walking */

int swit__config_mark_put(swit_cfg_ctx *ctx, const char *key,
                          swit_cfg_mark mark)
{
  swit_cfg_markrec *recs = ctx->marks;
  size_t cap = ctx->capmarks;

  if (ctx->nmarks == cap) {
    cap = cap ? cap * 2 : 32;
    recs = realloc(ctx->marks, cap * sizeof *recs);
    if (!recs)
      return swit__config_nomem(ctx);
    ctx->marks = recs;
    ctx->capmarks = cap;
  }
  recs[ctx->nmarks].key = strdup(key);
  if (!recs[ctx->nmarks].key)
    return swit__config_nomem(ctx);
  recs[ctx->nmarks++].mark = mark;
  return 0;
}

swit_cfg_mark swit__config_mark_get(const swit_cfg_ctx *ctx, const char *key)
{
  swit_cfg_mark none = { ctx->file, 0, 0 };
  size_t i;

  for (i = ctx->nmarks; i > 0; i--)
    if (strcmp(ctx->marks[i - 1].key, key) == 0)
      return ctx->marks[i - 1].mark;
  return none;
}

static void marks_free(swit_cfg_ctx *ctx)
{
  size_t i;

  for (i = 0; i < ctx->nmarks; i++)
    free(ctx->marks[i].key);
  free(ctx->marks);
  ctx->marks = NULL;
  ctx->nmarks = ctx->capmarks = 0;
}

/* ---------------------------------------------------------------------
 * Checks after loading, and file names resolved against base_dir */

/* A key that only some broker types map, set with another type. Walks
 * the sections (not the named maps, whose keys carry no broker mask). */
static int check_brokers(swit_cfg_ctx *ctx, const swit_cfg_field *fields,
                         const char *prefix, int type)
{
  char key[SWIT__CONFIG_KEYMAX];
  swit_cfg_mark mark;
  int rc = 0;

  for (; rc == 0 && fields->name; fields++) {
    snprintf(key, sizeof key, "%s%s%s", prefix, prefix[0] ? "." : "",
             fields->name);
    if (fields->type == SWIT_CFG_SECTION) {
      rc = check_brokers(ctx, fields->fields, key, type);
      continue;
    }
    if (!fields->brokers ||
        swit__config_word_in(fields->brokers, swit__broker_types[type]))
      continue;
    mark = swit__config_mark_get(ctx, key);
    if (mark.line > 0)
      rc = swit__config_fail(ctx, mark, key, "not supported by the %s "
                             "broker (see docs/configuration.md)",
                             swit__broker_types[type]);
  }
  return rc;
}

static int check_readable(swit_cfg_ctx *ctx, const char *key,
                          const char *shown, const char *path)
{
  swit_cfg_mark mark = swit__config_mark_get(ctx, key);
  struct stat st;
  int fd = open(path, O_RDONLY | O_NONBLOCK);
  int dir;

  if (fd < 0)
    return swit__config_fail(ctx, mark, key, "cannot read '%s': %s", shown,
                             strerror(errno));
  dir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
  close(fd);
  if (dir)
    return swit__config_fail(ctx, mark, key, "cannot read '%s': %s", shown,
                             strerror(EISDIR));
  return 0;
}

/* Replace *path by base_dir/<*path> unless absolute; if `check`, it
 * must be readable (the error quotes the name as written). */
static int resolve_file(swit_cfg_ctx *ctx, const char *base_dir, char **path,
                        const char *key, int check)
{
  size_t len = strlen(base_dir) + strlen(*path) + 2;
  char *full = (*path)[0] == '/' ? strdup(*path) : malloc(len);
  int rc;

  if (!full)
    return swit__config_nomem(ctx);
  if ((*path)[0] != '/')
    snprintf(full, len, "%s/%s", base_dir, *path);
  rc = check ? check_readable(ctx, key, *path, full) : 0;
  if (rc == 0) {
    free(*path);
    *path = full;
    full = NULL; /* owned by the config now */
  }
  free(full);
  return rc;
}

static int is_set(const char *s)
{
  return s && s[0] != '\0';
}

#define TLS(cfg) ((cfg)->messaging.security.transport.tls)

static int check_tls(swit_cfg_ctx *ctx, swit_config *cfg)
{
  static const char *const names[] = { "cert_file", "key_file", "ca_file" };
  char **files[] = { &TLS(cfg).cert_file, &TLS(cfg).key_file,
                     &TLS(cfg).ca_file };
  int enabled = TLS(cfg).enabled;
  char key[SWIT__CONFIG_KEYMAX];
  size_t i;
  int rc;

  for (i = 0; i < sizeof names / sizeof *names; i++) {
    snprintf(key, sizeof key, "messaging.security.transport.tls.%s",
             names[i]);
    if (!is_set(*files[i]))
      continue;
    rc = resolve_file(ctx, cfg->base_dir, files[i], key, enabled);
    if (rc < 0)
      return rc;
  }
  if (!enabled || is_set(*files[0]) == is_set(*files[1]))
    return 0;
  i = is_set(*files[0]) ? 0 : 1;
  snprintf(key, sizeof key, "messaging.security.transport.tls.%s", names[i]);
  return swit__config_fail(ctx, swit__config_mark_get(ctx, key), key,
                           "%s must be set too", names[1 - i]);
}

/* server.<srv>.tls: both files or neither, each resolved and readable;
 * client_ca_file (resolved, readable) only with them. */
static int check_server_tls(swit_cfg_ctx *ctx, swit_config *cfg,
                            const char *srv, swit_cfg_server_tls *tls)
{
  static const char *const names[] = { "cert_file", "key_file",
                                       "client_ca_file" };
  char **files[] = { &tls->cert_file, &tls->key_file, &tls->client_ca_file };
  char key[SWIT__CONFIG_KEYMAX];
  size_t i;
  int rc;

  for (i = 0; i < 3; i++) {
    snprintf(key, sizeof key, "server.%s.tls.%s", srv, names[i]);
    if (is_set(*files[i]) &&
        (rc = resolve_file(ctx, cfg->base_dir, files[i], key, 1)) < 0)
      return rc;
  }
  if (is_set(*files[2]) && !is_set(*files[0])) {
    snprintf(key, sizeof key, "server.%s.tls.client_ca_file", srv);
    return swit__config_fail(ctx, swit__config_mark_get(ctx, key), key,
                             "needs cert_file and key_file (mutual TLS is "
                             "HTTPS first)");
  }
  if (is_set(*files[0]) == is_set(*files[1]))
    return 0;
  i = is_set(*files[0]) ? 0 : 1;
  snprintf(key, sizeof key, "server.%s.tls.%s", srv, names[i]);
  return swit__config_fail(ctx, swit__config_mark_get(ctx, key), key,
                           "%s must be set too", names[1 - i]);
}

static int check_scripts(swit_cfg_ctx *ctx, swit_config *cfg)
{
  swit_cfg_list *scripts = &cfg->lua.scripts;
  char key[SWIT__CONFIG_KEYMAX];
  size_t i;
  int rc = 0;

  for (i = 0; rc == 0 && i < scripts->n; i++) {
    snprintf(key, sizeof key, "lua.scripts[%zu]", i);
    rc = resolve_file(ctx, cfg->base_dir, &scripts->items[i], key, 1);
  }
  return rc;
}

int swit__listen_split(const char *listen, char *host, size_t hlen,
                       int *port)
{
  const char *colon = strrchr(listen, ':');
  const char *h = listen;
  size_t n;
  char *end;
  long p;

  if (!colon) return -1;
  n = (size_t)(colon - listen);
  if (n >= 2 && h[0] == '[' && h[n - 1] == ']') h++, n -= 2;
  if (n == 0 || n >= hlen) return -1;
  memcpy(host, h, n);
  host[n] = '\0';
  if (colon[1] < '0' || colon[1] > '9') return -1;    /* no sign, no space */
  p = strtol(colon + 1, &end, 10);
  if (*end || p < 0 || p > 65535) return -1;
  *port = (int)p;
  return 0;
}

/* A listen key that is set must be host:port (or off): `swit check`
 * refuses what could never be bound, with the key's file:line. */
static int check_listen(swit_cfg_ctx *ctx, const char *key, const char *v)
{
  char host[256];
  int port;

  if (!v || !*v || strcmp(v, "off") == 0 ||
      swit__listen_split(v, host, sizeof host, &port) == 0)
    return 0;
  return swit__config_fail(ctx, swit__config_mark_get(ctx, key), key,
                           "expected host:port with a port in 0..65535 "
                           "([v6]:port for IPv6), or off, got \"%s\"", v);
}

#define MSGSEC(cfg) ((cfg)->messaging.security.message)

/* Message security and the audit log are checked where they are built
 * (host/sec/); here their marks are kept and their files resolved. */
static int keep_security(swit_cfg_ctx *ctx, swit_config *cfg)
{
  static const char enc[] = "messaging.security.message.encryption.";
  static const char sig[] = "messaging.security.message.signing.";
  static const char aud[] = "messaging.security.audit.";
  char key[SWIT__CONFIG_KEYMAX];
  struct {
    const char *prefix;
    const char *provider;
    char **keyring;
    swit_cfg_mark *marks[3];
  } ms[] = {
    { enc, MSGSEC(cfg).encryption.key_provider, &MSGSEC(cfg).encryption.keyring,
      { &MSGSEC(cfg).encryption.algorithm_mark,
        &MSGSEC(cfg).encryption.provider_mark,
        &MSGSEC(cfg).encryption.keyring_mark } },
    { sig, MSGSEC(cfg).signing.key_provider, &MSGSEC(cfg).signing.keyring,
      { &MSGSEC(cfg).signing.algorithm_mark, &MSGSEC(cfg).signing.provider_mark,
        &MSGSEC(cfg).signing.keyring_mark } },
  };
  static const char *const names[] = { "algorithm", "key_provider",
                                       "keyring" };
  char **out = &cfg->messaging.security.audit.output;
  int rc;

  for (size_t i = 0; i < 2; i++) {
    for (size_t k = 0; k < 3; k++) {
      snprintf(key, sizeof key, "%s%s", ms[i].prefix, names[k]);
      *ms[i].marks[k] = swit__config_mark_get(ctx, key);
    }
    if (ms[i].provider && strcmp(ms[i].provider, "file") == 0 &&
        is_set(*ms[i].keyring) &&
        (rc = resolve_file(ctx, cfg->base_dir, ms[i].keyring, key, 0)))
      return rc;
  }
  snprintf(key, sizeof key, "%ssensitive_fields", aud);
  cfg->messaging.security.audit.sensitive_mark = swit__config_mark_get(ctx, key);
  snprintf(key, sizeof key, "%soutput", aud);
  cfg->messaging.security.audit.output_mark = swit__config_mark_get(ctx, key);
  if (is_set(*out) && strcmp(*out, "stderr") != 0)
    return resolve_file(ctx, cfg->base_dir, out, key, 0);
  return 0;
}

/* messaging.subscribers.<name>.concurrency and .rate_limit.rate: 0 is
 * their default (no limit); written in the file, 0 would read as "take
 * nothing", so it is refused with its file:line, as is a rate too small
 * to mean anything (below one message in 1000 s). */
static int check_limits(swit_cfg_ctx *ctx, swit_config *cfg)
{
  const swit_cfg_named *nm = &cfg->messaging.subscribers;
  char key[SWIT__CONFIG_KEYMAX];
  swit_cfg_mark mark;

  for (size_t i = 0; i < nm->n; i++) {
    const swit_cfg_subscriber *s =
        (const swit_cfg_subscriber *)nm->elems + i;
    snprintf(key, sizeof key, "messaging.subscribers.%s.concurrency",
             nm->names[i]);
    mark = swit__config_mark_get(ctx, key);
    if (mark.line > 0 && s->concurrency == 0)
      return swit__config_fail(ctx, mark, key, "expected an integer in "
                               "1..1000000 (leave the key out for no cap), "
                               "got 0");
    snprintf(key, sizeof key, "messaging.subscribers.%s.rate_limit.rate",
             nm->names[i]);
    mark = swit__config_mark_get(ctx, key);
    if (mark.line > 0 && !(s->rate_limit.rate >= SWIT_CFG_RATE_MIN))
      return swit__config_fail(ctx, mark, key, "expected a number in "
                               "0.001..1000000 (messages per second; leave "
                               "the key out for no limit), got %g",
                               s->rate_limit.rate);
  }
  return 0;
}

/* messaging.subscribers.<name>.dedup: store sqlite needs a path (made
 * absolute against base_dir; created at start), store memory takes
 * none. */
static int check_dedup(swit_cfg_ctx *ctx, swit_config *cfg)
{
  const swit_cfg_named *nm = &cfg->messaging.subscribers;
  char key[SWIT__CONFIG_KEYMAX];

  for (size_t i = 0; i < nm->n; i++) {
    swit_cfg_dedup *d = &((swit_cfg_subscriber *)nm->elems + i)->dedup;
    int sqlite = d->store == SWIT_DEDUP_SQLITE;
    snprintf(key, sizeof key, "messaging.subscribers.%s.dedup.%s",
             nm->names[i], sqlite && !is_set(d->path) ? "store" : "path");
    if (sqlite && !is_set(d->path))
      return swit__config_fail(ctx, swit__config_mark_get(ctx, key), key,
                               "store sqlite needs dedup.path (the SQLite "
                               "file)");
    if (!sqlite && is_set(d->path))
      return swit__config_fail(ctx, swit__config_mark_get(ctx, key), key,
                               "only with dedup.store: sqlite");
    if (sqlite) {
      int rc = resolve_file(ctx, cfg->base_dir, &d->path, key, 0);
      if (rc < 0) return rc;
    }
  }
  return 0;
}

static int validate(swit_cfg_ctx *ctx, swit_config *cfg)
{
  int rc = check_brokers(ctx, swit__config_fields, "",
                         cfg->messaging.broker.type);

  if (rc == 0)
    rc = check_listen(ctx, "server.admin.listen", cfg->server.admin.listen);
  if (rc == 0)
    rc = check_listen(ctx, "server.http.listen", cfg->server.http.listen);
  if (rc == 0)
    rc = check_tls(ctx, cfg);
  if (rc == 0)
    rc = check_server_tls(ctx, cfg, "admin", &cfg->server.admin.tls);
  if (rc == 0)
    rc = check_server_tls(ctx, cfg, "http", &cfg->server.http.tls);
  if (rc == 0)
    rc = check_scripts(ctx, cfg);
  if (rc == 0)
    rc = check_limits(ctx, cfg);
  if (rc == 0)
    rc = check_dedup(ctx, cfg);
  if (rc == 0)
    rc = keep_security(ctx, cfg);
  cfg->messaging.broker.type_mark =
      swit__config_mark_get(ctx, "messaging.broker.type");
  cfg->lua.scripts_mark = swit__config_mark_get(ctx, "lua.scripts");
  return rc;
}

/* ---------------------------------------------------------------------
 * Loading */

static int read_all(swit_cfg_ctx *ctx, const char *path, char **out,
                    size_t *len)
{
  swit_cfg_mark none = { path, 0, 0 };
  FILE *fp = fopen(path, "rb");
  size_t cap = 0, got;
  char *buf = NULL, *grown;
  int rc = 0;

  if (!fp)
    return swit__config_fail(ctx, none, NULL, "cannot open: %s",
                             strerror(errno));
  *len = 0;
  do {
    if (*len + 1 >= cap) {
      cap = cap ? cap * 2 : 4096;
      if (!(grown = realloc(buf, cap))) {
        rc = swit__config_nomem(ctx);
        goto fail;
      }
      buf = grown;
    }
    got = fread(buf + *len, 1, cap - *len - 1, fp);
    *len += got;
  } while (got > 0);
  if (ferror(fp)) {
    rc = swit__config_fail(ctx, none, NULL, "cannot read: %s",
                           strerror(errno));
    goto fail;
  }
  buf[*len] = '\0';
  *out = buf;
  buf = NULL;
fail:
  free(buf);
  fclose(fp);
  return rc;
}

static int load(swit_config **out, const char *text, size_t len,
                const char *path, const char *base_dir, char *err,
                size_t errlen)
{
  swit_cfg_ctx ctx = { .file = path, .err = err, .errlen = errlen };
  swit_config *cfg = calloc(1, sizeof *cfg);
  int rc;

  *out = NULL;
  if (!cfg || !(cfg->path = strdup(path)) ||
      !(cfg->base_dir = strdup(base_dir))) {
    rc = swit__config_nomem(&ctx);
    goto fail;
  }
  ctx.file = cfg->path; /* marks point into the config */
  rc = swit__config_defaults(&ctx, swit__config_fields, cfg);
  if (rc == 0)
    rc = swit__config_yaml_walk(&ctx, text, len, swit__config_fields, cfg);
  if (rc == 0)
    rc = validate(&ctx, cfg);
  if (rc < 0)
    goto fail;
  *out = cfg;
  cfg = NULL; /* owned by the caller now */
fail:
  marks_free(&ctx);
  swit__config_free(cfg);
  return rc;
}

/* "conf/swit.yaml" -> "conf", "swit.yaml" -> ".", "/swit.yaml" -> "/". */
static char *dir_of(const char *path)
{
  const char *slash = strrchr(path, '/');
  size_t len = !slash ? 1 : slash == path ? 1 : (size_t)(slash - path);
  char *dir = malloc(len + 1);

  if (dir) {
    memcpy(dir, slash ? path : ".", len);
    dir[len] = '\0';
  }
  return dir;
}

int swit__config_load_file(swit_config **out, const char *path, char *err,
                           size_t errlen)
{
  swit_cfg_ctx ctx = { .file = path, .err = err, .errlen = errlen };
  char *text = NULL, *dir = NULL;
  size_t len = 0;
  int rc;

  *out = NULL;
  rc = read_all(&ctx, path, &text, &len);
  if (rc < 0)
    goto fail;
  if (!(dir = dir_of(path))) {
    rc = swit__config_nomem(&ctx);
    goto fail;
  }
  rc = load(out, text, len, path, dir, err, errlen);
fail:
  free(text);
  free(dir);
  return rc;
}

int swit__config_load_string(swit_config **out, const char *yaml,
                             const char *base_dir, char *err, size_t errlen)
{
  return load(out, yaml, strlen(yaml), "<string>", base_dir ? base_dir : ".",
              err, errlen);
}

void swit__config_free(swit_config *cfg)
{
  if (!cfg)
    return;
  swit__config_free_fields(swit__config_fields, cfg);
  free(cfg->path);
  free(cfg->base_dir);
  free(cfg);
}

/* ---------------------------------------------------------------------
 * Adapter settings and lookups */

int swit__config_apply(const swit_cfg_kvlist *kv, const swit_cfg_field *fields,
                       int keep_unknown, void *out, char *err, size_t errlen)
{
  swit_cfg_ctx ctx = { .file = kv->mark.file ? kv->mark.file : "<config>",
                       .err = err, .errlen = errlen };
  char key[SWIT__CONFIG_KEYMAX];
  const swit_cfg_field *f;
  size_t i;
  int rc = swit__config_defaults(&ctx, fields, out);

  for (i = 0; rc == 0 && i < kv->n; i++) {
    const swit_cfg_kv *it = &kv->items[i];
    snprintf(key, sizeof key, "messaging.broker.config.%s", it->key);
    f = swit__config_field(fields, it->key);
    rc = f ? swit__config_set_scalar(&ctx, f, out, it->value, it->mark, key)
           : keep_unknown ? 0 : swit__config_unknown(&ctx, it->mark, key, fields);
  }
  if (rc < 0)
    swit__config_free_fields(fields, out);
  return rc;
}

static const void *named_find(const swit_cfg_named *nm, size_t elem_size,
                              const char *name)
{
  size_t i;

  for (i = 0; name && i < nm->n; i++)
    if (strcmp(nm->names[i], name) == 0)
      return (const char *)nm->elems + i * elem_size;
  return NULL;
}

const swit_cfg_publisher *swit__config_publisher(const swit_config *cfg,
                                                 const char *name)
{
  const swit_cfg_named *nm = &cfg->messaging.publishers;
  const void *p = named_find(nm, sizeof(swit_cfg_publisher), name);

  return p ? p : named_find(nm, sizeof(swit_cfg_publisher), "default");
}

const swit_cfg_subscriber *swit__config_subscriber(const swit_config *cfg,
                                                   const char *name)
{
  const swit_cfg_named *nm = &cfg->messaging.subscribers;
  const void *p = named_find(nm, sizeof(swit_cfg_subscriber), name);

  return p ? p : named_find(nm, sizeof(swit_cfg_subscriber), "default");
}
