/*
 * config_int.h - what the config loader's files share; not API.
 *
 * config.c loads, validates and owns error text and marks; config_fields.c
 * types a scalar's text into the member a field describes, sets defaults
 * and frees; config_yaml.c is the only file that knows libyaml: it walks a
 * document against the field tables and hands every scalar to
 * swit__config_set_scalar(). A load runs on the caller's thread with one
 * swit_cfg_ctx on its stack; nothing here is shared between threads.
 */
#ifndef SWIT_CONFIG_INT_H
#define SWIT_CONFIG_INT_H

#include <stddef.h>

#include "config/config.h"

/* Longest key path kept for messages ("messaging.subscribers.x.y"). */
#define SWIT__CONFIG_KEYMAX 256
/* Mappings and sequences nest at most this deep in a config (a valid one
 * needs 5 levels; docs/configuration.md). */
#define SWIT__CONFIG_MAX_DEPTH 64

/* Where each key path's value was found ("lua.scripts[1]" for list
 * items), recorded while walking so validation can point at it later. */
typedef struct swit_cfg_markrec {
  char *key;
  swit_cfg_mark mark;
} swit_cfg_markrec;

typedef struct swit_cfg_ctx {
  const char *file; /* owned by the config being loaded */
  char *err;        /* caller's buffer, may be NULL */
  size_t errlen;
  swit_cfg_markrec *marks;
  size_t nmarks, capmarks;
} swit_cfg_ctx;

/* ---------------------------------------------------------------------
 * config.c: errors and marks */

/* Write "file:line:col: key: <fmt>" (no line part when mark.line is 0,
 * no key part when key is NULL) and return SWIT_E_CONFIG. */
/* 1 when `word` is one of the space-separated words of `list`. */
int swit__config_word_in(const char *list, const char *word);

int swit__config_fail(swit_cfg_ctx *ctx, swit_cfg_mark mark, const char *key,
                      const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
int swit__config_nomem(swit_cfg_ctx *ctx); /* SWIT_E_NOMEM */
/* "key: not supported yet (see docs/configuration.md)" */
int swit__config_unsupported(swit_cfg_ctx *ctx, swit_cfg_mark mark,
                             const char *key);
/* "key: unknown key (expected one of a, b, c)" */
int swit__config_unknown(swit_cfg_ctx *ctx, swit_cfg_mark mark,
                         const char *key, const swit_cfg_field *fields);
int swit__config_mark_put(swit_cfg_ctx *ctx, const char *key,
                          swit_cfg_mark mark);
/* The recorded mark, or {ctx->file, 0, 0} when the key was defaulted. */
swit_cfg_mark swit__config_mark_get(const swit_cfg_ctx *ctx, const char *key);

/* ---------------------------------------------------------------------
 * config_fields.c: typing, defaults, freeing */

/* "a, b, c" from a NULL-terminated list. */
void swit__config_join_names(const char *const *names, char *buf, size_t len);

/* Reset every member described by `fields` to its default. Members are
 * overwritten, not freed: call on zeroed or already-freed memory. */
int swit__config_defaults(swit_cfg_ctx *ctx, const swit_cfg_field *fields,
                          void *obj);

/* Type `text` into field `f` of `obj`, replacing (and freeing) what was
 * there. Non-scalar types fail with "expected a mapping". */
int swit__config_set_scalar(swit_cfg_ctx *ctx, const swit_cfg_field *f,
                            void *obj, const char *text, swit_cfg_mark mark,
                            const char *key);

/* Free what a member owns and leave it empty (safe on empty members). */
void swit__config_list_clear(swit_cfg_list *l);
void swit__config_kvlist_clear(swit_cfg_kvlist *kv);
void swit__config_named_clear(const swit_cfg_field *f, swit_cfg_named *nm);

/* ---------------------------------------------------------------------
 * config_yaml.c */

/* Parse `len` bytes of YAML and walk the (single) document into `obj`,
 * whose members already hold their defaults. */
int swit__config_yaml_walk(swit_cfg_ctx *ctx, const char *text, size_t len,
                           const swit_cfg_field *fields, void *obj);

#endif /* SWIT_CONFIG_INT_H */
