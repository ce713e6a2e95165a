/*
 * config_yaml.c - walking a YAML document against the field tables.
 *
 * The only file that knows libyaml. It loads the text with the document
 * API (yaml_parser_load), then descends the node tree and the field
 * tables together: mappings must hold known, unique keys; every scalar
 * value has ${VAR} / ${VAR:-default} expanded and is typed by
 * swit__config_set_scalar(); null values keep the default. The mark of
 * every value is recorded in the ctx under its key path so checks after
 * the walk can point at it. Runs on the loading thread; the document is
 * freed before returning.
 *
 * Before that, an event-only pass refuses nesting deeper than
 * SWIT__CONFIG_MAX_DEPTH (check_depth): libyaml's cost grows with depth.
 *
 * NAMED maps (messaging.publishers / .subscribers) get "default" at index
 * 0; every other element starts from the table defaults, then the
 * "default" entry's keys, then its own keys.
 */
#if !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "config/config.h"
#include "config/config_int.h"

typedef struct walker {
  swit_cfg_ctx *ctx;
  yaml_document_t *doc;
} walker;

static int walk_section(walker *w, const swit_cfg_field *fields, void *obj,
                        yaml_node_t *n, const char *path);

/* ---------------------------------------------------------------------
 * Nodes */

static swit_cfg_mark mark_of(const walker *w, const yaml_node_t *n)
{
  swit_cfg_mark m = { w->ctx->file, (int)n->start_mark.line + 1,
                      (int)n->start_mark.column + 1 };
  return m;
}

static yaml_node_t *node(const walker *w, int id)
{
  return yaml_document_get_node(w->doc, id);
}

static const char *text(const yaml_node_t *n)
{
  return (const char *)n->data.scalar.value;
}

static size_t npairs(const yaml_node_t *map)
{
  return (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
}

/* `key:`, `key: ~` and `key: null` (plain, not quoted). */
static int is_null(const yaml_node_t *n)
{
  const char *s;

  if (n->type != YAML_SCALAR_NODE ||
      n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
    return 0;
  s = text(n);
  return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
         strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

/* "parent.name" (or "name" at the top), truncated to fit. */
static void join(char *buf, size_t len, const char *parent, const char *name)
{
  size_t a = strlen(parent), b = strlen(name);

  a = a < len - 2 ? a : len - 2;
  memcpy(buf, parent, a);
  if (a > 0)
    buf[a++] = '.';
  b = b < len - 1 - a ? b : len - 1 - a;
  memcpy(buf + a, name, b);
  buf[a + b] = '\0';
}

/* Keys are scalars and unique. */
static int check_keys(walker *w, const yaml_node_t *map, const char *path)
{
  yaml_node_pair_t *a, *b;
  char key[SWIT__CONFIG_KEYMAX];

  for (a = map->data.mapping.pairs.start; a < map->data.mapping.pairs.top;
       a++) {
    yaml_node_t *k = node(w, a->key);
    if (k->type != YAML_SCALAR_NODE)
      return swit__config_fail(w->ctx, mark_of(w, k), path[0] ? path : NULL,
                               "expected a string key");
    for (b = map->data.mapping.pairs.start; b < a; b++) {
      if (strcmp(text(node(w, b->key)), text(k)) == 0) {
        join(key, sizeof key, path, text(k));
        return swit__config_fail(w->ctx, mark_of(w, k), key, "duplicate key");
      }
    }
  }
  return 0;
}

/* ---------------------------------------------------------------------
 * ${VAR}, ${VAR:-default} and $$ */

typedef struct sbuf {
  char *p;
  size_t n, cap;
} sbuf;

static int sb_put(walker *w, sbuf *b, const char *s, size_t n)
{
  char *p;

  if (b->n + n + 1 > b->cap) {
    size_t cap = (b->n + n + 1) * 2;
    if (!(p = realloc(b->p, cap)))
      return swit__config_nomem(w->ctx);
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
  return 0;
}

/* *sp points at "${"; append the value and move past the "}". */
static int expand_var(walker *w, const yaml_node_t *v, const char *key,
                      const char **sp, sbuf *b)
{
  static const char namechars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "abcdefghijklmnopqrstuvwxyz_0123456789";
  const char *s = *sp + 2, *end = strchr(s, '}'), *dflt = NULL, *val;
  size_t len = strspn(s, namechars);
  char name[128];

  if (!end)
    return swit__config_fail(w->ctx, mark_of(w, v), key,
                             "unterminated ${ in \"%s\"", text(v));
  if (len == 0 || len >= sizeof name || (s[0] >= '0' && s[0] <= '9') ||
      (s + len != end && strncmp(s + len, ":-", 2) != 0))
    return swit__config_fail(w->ctx, mark_of(w, v), key,
                             "invalid variable reference in \"%s\"", text(v));
  memcpy(name, s, len);
  name[len] = '\0';
  if (s + len != end)
    dflt = s + len + 2;
  *sp = end + 1;
  val = getenv(name);
  if (val && (val[0] != '\0' || !dflt))
    return sb_put(w, b, val, strlen(val));
  if (dflt)
    return sb_put(w, b, dflt, (size_t)(end - dflt));
  return swit__config_fail(w->ctx, mark_of(w, v), key,
                           "environment variable %s is not set", name);
}

/* The scalar's text with variables expanded, in a new string. */
static int expand(walker *w, const yaml_node_t *v, const char *key,
                  char **out)
{
  const char *s = text(v);
  sbuf b = { NULL, 0, 0 };
  size_t n;
  int rc = sb_put(w, &b, "", 0);

  while (rc == 0 && *s) {
    if (s[0] == '$' && s[1] == '$') {
      rc = sb_put(w, &b, "$", 1);
      s += 2;
    } else if (s[0] == '$' && s[1] == '{') {
      rc = expand_var(w, v, key, &s, &b);
    } else {
      n = strcspn(s + 1, "$") + 1;
      rc = sb_put(w, &b, s, n);
      s += n;
    }
  }
  if (rc < 0)
    goto fail;
  *out = b.p;
  return 0;
fail:
  free(b.p);
  return rc;
}

/* ---------------------------------------------------------------------
 * Values by field type */

static int walk_scalar(walker *w, const swit_cfg_field *f, void *obj,
                       const yaml_node_t *v, const char *key)
{
  char *s = NULL;
  int rc;

  if (is_null(v))
    return 0;
  if (v->type != YAML_SCALAR_NODE)
    return swit__config_fail(w->ctx, mark_of(w, v), key, "expected a scalar");
  if (strlen(text(v)) != v->data.scalar.length)  /* "\0" would cut it */
    return swit__config_fail(w->ctx, mark_of(w, v), key,
                             "a NUL byte in the value");
  rc = expand(w, v, key, &s);
  if (rc == 0)
    rc = swit__config_set_scalar(w->ctx, f, obj, s, mark_of(w, v), key);
  free(s);
  return rc;
}

static int walk_list(walker *w, const swit_cfg_field *f, void *obj,
                     const yaml_node_t *v, const char *key)
{
  swit_cfg_list l = { NULL, 0 }, *out = (void *)((char *)obj + f->offset);
  char ik[SWIT__CONFIG_KEYMAX + 24];
  yaml_node_item_t *it;
  int rc = 0;

  if (is_null(v))
    return 0;
  if (v->type == YAML_SCALAR_NODE) { /* a one-item list */
    snprintf(ik, sizeof ik, "%s[0]", key);
    rc = swit__config_mark_put(w->ctx, ik, mark_of(w, v));
    return rc < 0 ? rc : walk_scalar(w, f, obj, v, key);
  }
  if (v->type != YAML_SEQUENCE_NODE)
    return swit__config_fail(w->ctx, mark_of(w, v), key,
                             "expected a list of strings");
  l.items = calloc((size_t)(v->data.sequence.items.top -
                            v->data.sequence.items.start) + 1,
                   sizeof(char *));
  if (!l.items)
    return swit__config_nomem(w->ctx);
  for (it = v->data.sequence.items.start; it < v->data.sequence.items.top;
       it++) {
    yaml_node_t *item = node(w, *it);
    snprintf(ik, sizeof ik, "%s[%zu]", key, l.n);
    if ((rc = swit__config_mark_put(w->ctx, ik, mark_of(w, item))) < 0)
      goto fail;
    if (item->type != YAML_SCALAR_NODE) {
      rc = swit__config_fail(w->ctx, mark_of(w, item), ik, "expected a string");
      goto fail;
    }
    if ((rc = expand(w, item, ik, &l.items[l.n])) < 0)
      goto fail;
    l.n++;
  }
  swit__config_list_clear(out);
  *out = l;
  return 0;
fail:
  swit__config_list_clear(&l);
  return rc;
}

static int walk_passthrough(walker *w, swit_cfg_kvlist *out,
                            const yaml_node_t *v, const char *key)
{
  swit_cfg_kvlist kv = { NULL, 0, mark_of(w, v) };
  char ik[SWIT__CONFIG_KEYMAX];
  yaml_node_pair_t *p;
  int rc;

  if (is_null(v))
    return 0;
  if (v->type != YAML_MAPPING_NODE)
    return swit__config_fail(w->ctx, mark_of(w, v), key, "expected a mapping");
  if ((rc = check_keys(w, v, key)) < 0)
    return rc;
  if (!(kv.items = calloc(npairs(v) + 1, sizeof *kv.items)))
    return swit__config_nomem(w->ctx);
  for (p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
    yaml_node_t *k = node(w, p->key), *val = node(w, p->value);
    swit_cfg_kv *item = &kv.items[kv.n++];
    join(ik, sizeof ik, key, text(k));
    if (val->type != YAML_SCALAR_NODE) {
      rc = swit__config_fail(w->ctx, mark_of(w, val), ik,
                             "expected a scalar value");
      goto fail;
    }
    item->mark = mark_of(w, val);
    if (!(item->key = strdup(text(k)))) {
      rc = swit__config_nomem(w->ctx);
      goto fail;
    }
    if ((rc = expand(w, val, ik, &item->value)) < 0)
      goto fail;
  }
  swit__config_kvlist_clear(out);
  *out = kv;
  return 0;
fail:
  swit__config_kvlist_clear(&kv);
  return rc;
}

/* A key that only the "default" entry of a NAMED map may set, set in
 * entry `key` (its value's mark), or 0. */
static int check_default_only(walker *w, const swit_cfg_field *fields,
                              const yaml_node_t *own, const char *key,
                              const char *parent)
{
  char k[SWIT__CONFIG_KEYMAX];
  yaml_node_pair_t *p;

  if (own->type != YAML_MAPPING_NODE)
    return 0; /* walk_section says what is wrong */
  for (p = own->data.mapping.pairs.start; p < own->data.mapping.pairs.top;
       p++) {
    const yaml_node_t *kn = node(w, p->key);
    const swit_cfg_field *f;
    if (kn->type != YAML_SCALAR_NODE)
      continue;
    f = swit__config_field(fields, text(kn));
    if (!f || !f->default_only)
      continue;
    join(k, sizeof k, key, f->name);
    return swit__config_fail(w->ctx, mark_of(w, node(w, p->value)), k,
                             "only %s.default.%s is used (see "
                             "docs/configuration.md)", parent, f->name);
  }
  return 0;
}

/* Element `i` of a NAMED map: defaults, then `dflt`'s keys, then `own`. */
static int named_elem(walker *w, const swit_cfg_field *f, swit_cfg_named *nm,
                      size_t i, const char *name, yaml_node_t *dflt,
                      yaml_node_t *own, const char *parent)
{
  void *elem = (char *)nm->elems + i * f->elem_size;
  char key[SWIT__CONFIG_KEYMAX];
  int rc;

  join(key, sizeof key, parent, name);
  if (!(nm->names[i] = strdup(name)))
    return swit__config_nomem(w->ctx);
  rc = swit__config_defaults(w->ctx, f->fields, elem);
  if (rc == 0 && dflt)
    rc = walk_section(w, f->fields, elem, dflt, key);
  if (rc == 0 && own && i > 0)
    rc = check_default_only(w, f->fields, own, key, parent);
  if (rc == 0 && own)
    rc = walk_section(w, f->fields, elem, own, key);
  return rc;
}

static int walk_named(walker *w, const swit_cfg_field *f, swit_cfg_named *out,
                      const yaml_node_t *v, const char *key)
{
  swit_cfg_named nm = { NULL, NULL, 0 };
  yaml_node_t *dflt = NULL;
  yaml_node_pair_t *p;
  size_t i = 1;
  int rc;

  if (is_null(v))
    return 0;
  if (v->type != YAML_MAPPING_NODE)
    return swit__config_fail(w->ctx, mark_of(w, v), key, "expected a mapping");
  if ((rc = check_keys(w, v, key)) < 0)
    return rc;
  for (p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++)
    if (strcmp(text(node(w, p->key)), "default") == 0)
      dflt = node(w, p->value);
  nm.n = npairs(v) + (dflt ? 0 : 1);
  nm.names = calloc(nm.n, sizeof(char *));
  nm.elems = calloc(nm.n, f->elem_size);
  rc = nm.names && nm.elems ? 0 : swit__config_nomem(w->ctx);
  if (rc == 0)
    rc = named_elem(w, f, &nm, 0, "default", NULL, dflt, key);
  for (p = v->data.mapping.pairs.start;
       rc == 0 && p < v->data.mapping.pairs.top; p++) {
    const char *name = text(node(w, p->key));
    if (strcmp(name, "default") != 0)
      rc = named_elem(w, f, &nm, i++, name, dflt, node(w, p->value), key);
  }
  if (rc < 0)
    goto fail;
  swit__config_named_clear(f, out);
  *out = nm;
  return 0;
fail:
  swit__config_named_clear(f, &nm);
  return rc;
}

static int walk_value(walker *w, const swit_cfg_field *f, void *obj,
                      yaml_node_t *v, const char *key)
{
  void *p = (char *)obj + f->offset;
  int rc = swit__config_mark_put(w->ctx, key, mark_of(w, v));

  if (rc < 0)
    return rc;
  switch (f->type) {
  case SWIT_CFG_UNSUPPORTED: /* whatever the value, even null or a map */
    return swit__config_unsupported(w->ctx, mark_of(w, v), key);
  case SWIT_CFG_SECTION:
    return walk_section(w, f->fields, p, v, key);
  case SWIT_CFG_NAMED:
    return walk_named(w, f, p, v, key);
  case SWIT_CFG_PASSTHROUGH:
    return walk_passthrough(w, p, v, key);
  case SWIT_CFG_LIST:
    return walk_list(w, f, obj, v, key);
  default:
    return walk_scalar(w, f, obj, v, key);
  }
}

static int walk_section(walker *w, const swit_cfg_field *fields, void *obj,
                        yaml_node_t *n, const char *path)
{
  yaml_node_pair_t *p;
  char key[SWIT__CONFIG_KEYMAX];
  int rc;

  if (is_null(n))
    return 0;
  if (n->type != YAML_MAPPING_NODE)
    return swit__config_fail(w->ctx, mark_of(w, n), path[0] ? path : NULL,
                             "expected a mapping");
  if ((rc = check_keys(w, n, path)) < 0)
    return rc;
  for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
    yaml_node_t *k = node(w, p->key);
    const swit_cfg_field *f = swit__config_field(fields, text(k));
    join(key, sizeof key, path, text(k));
    if (!f)
      return swit__config_unknown(w->ctx, mark_of(w, k), key, fields);
    if ((rc = walk_value(w, f, obj, node(w, p->value), key)) < 0)
      return rc;
  }
  return 0;
}

/* ---------------------------------------------------------------------
 * The document */

static int syntax_error(swit_cfg_ctx *ctx, const yaml_parser_t *p)
{
  swit_cfg_mark m = { ctx->file, (int)p->problem_mark.line + 1,
                      (int)p->problem_mark.column + 1 };
  const char *problem = p->problem ? p->problem : "unknown problem";

  /* libyaml's composer fails without setting an error when its own
   * strdup fails: that is out of memory too. */
  if (p->error == YAML_MEMORY_ERROR || p->error == YAML_NO_ERROR)
    return swit__config_nomem(ctx);
  if (p->error == YAML_READER_ERROR) {
    m.line = 0;
    return swit__config_fail(ctx, m, NULL, "YAML syntax error: %s at byte %zu",
                             problem, p->problem_offset);
  }
  return swit__config_fail(ctx, m, NULL, "YAML syntax error: %s%s%s", problem,
                           p->context ? " " : "",
                           p->context ? p->context : "");
}

/* Events only, before the document is built: a mapping or sequence nested
 * deeper than SWIT__CONFIG_MAX_DEPTH is refused where it opens. libyaml's
 * scanner costs O(depth) per token (it revisits every open flow level),
 * so a 200 KB run of "[" took ~20 s to reject; stopped at the limit, it
 * reads a bounded prefix. A syntax error found here is reported as the
 * load would report it. */
static int check_depth(swit_cfg_ctx *ctx, const char *text, size_t len)
{
  yaml_parser_t parser;
  yaml_event_t ev;
  int depth = 0, rc = 0, done = 0;

  if (!yaml_parser_initialize(&parser))
    return swit__config_nomem(ctx);
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  while (rc == 0 && !done) {
    if (!yaml_parser_parse(&parser, &ev)) {
      rc = syntax_error(ctx, &parser);
      break;
    }
    if (ev.type == YAML_SEQUENCE_START_EVENT ||
        ev.type == YAML_MAPPING_START_EVENT) {
      if (++depth > SWIT__CONFIG_MAX_DEPTH) {
        swit_cfg_mark m = { ctx->file, (int)ev.start_mark.line + 1,
                            (int)ev.start_mark.column + 1 };
        rc = swit__config_fail(ctx, m, NULL,
                               "YAML nested deeper than %d levels",
                               SWIT__CONFIG_MAX_DEPTH);
      }
    } else if (ev.type == YAML_SEQUENCE_END_EVENT ||
               ev.type == YAML_MAPPING_END_EVENT) {
      depth--;
    }
    done = ev.type == YAML_STREAM_END_EVENT;
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&parser);
  return rc;
}

int swit__config_yaml_walk(swit_cfg_ctx *ctx, const char *text, size_t len,
                           const swit_cfg_field *fields, void *obj)
{
  yaml_parser_t parser;
  yaml_document_t doc, extra;
  walker w = { ctx, &doc };
  int have_doc = 0, have_extra = 0, rc = 0;
  yaml_node_t *root;

  if ((rc = check_depth(ctx, text, len)) < 0)
    return rc;
  if (!yaml_parser_initialize(&parser))
    return swit__config_nomem(ctx);
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  if (!(have_doc = yaml_parser_load(&parser, &doc)) ||
      !(have_extra = yaml_parser_load(&parser, &extra))) {
    rc = syntax_error(ctx, &parser);
    goto fail;
  }
  if (yaml_document_get_root_node(&extra)) {
    swit_cfg_mark m = { ctx->file, (int)extra.start_mark.line + 1,
                        (int)extra.start_mark.column + 1 };
    rc = swit__config_fail(ctx, m, NULL, "expected a single YAML document");
    goto fail;
  }
  root = yaml_document_get_root_node(&doc);
  if (root)
    rc = walk_section(&w, fields, obj, root, "");
fail:
  if (have_extra)
    yaml_document_delete(&extra);
  if (have_doc)
    yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  return rc;
}
