/*
 * config_fields.c - the machinery behind a field table.
 *
 * Typing one scalar's text into the member a field describes (integers,
 * numbers, booleans, enums, durations, sizes, strings, one-item lists),
 * setting every member of a table to its default, freeing what the
 * members own, and printing a table as the Markdown reference. Used by
 * the YAML walker and by swit__config_apply(); pure functions of their
 * arguments, callable from any thread.
 */
#if !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"
#include "config/config_int.h"
#include "swit/swit.h"

/* ---------------------------------------------------------------------
 * Names */

/* "a, b, c" from a NULL-terminated list of names (truncated to fit). */
void swit__config_join_names(const char *const *names, char *buf, size_t len)
{
  size_t at = 0;
  int w;

  buf[0] = '\0';
  for (; *names && at + 1 < len; names++) {
    w = snprintf(buf + at, len - at, "%s%s", at ? ", " : "", *names);
    at += w < 0 ? 0 : (size_t)w;
  }
}

/* ---------------------------------------------------------------------
 * Numbers, durations and sizes */

typedef struct unit {
  const char *name;
  int64_t mult;
} unit;

#define MIB ((int64_t)1024 * 1024)
#define GIB (MIB * 1024)

static const unit duration_units[] = {
  { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 }, { "", 1 },
  { NULL, 0 }
};

static const unit size_units[] = {
  { "", 1 }, { "b", 1 },
  { "k", 1024 }, { "kb", 1024 }, { "kib", 1024 },
  { "m", MIB }, { "mb", MIB }, { "mib", MIB },
  { "g", GIB }, { "gb", GIB }, { "gib", GIB },
  { "t", GIB * 1024 }, { "tb", GIB * 1024 }, { "tib", GIB * 1024 },
  { NULL, 0 }
};

static int is_digit(char c)
{
  return c >= '0' && c <= '9';
}

/* "<digits>[.<digits>]" at *sp; the integer part must fit in int64_t. */
static int scan_decimal(const char **sp, uint64_t *ip, double *frac)
{
  const char *s = *sp;
  double scale = 1;

  *ip = 0;
  *frac = 0;
  if (!is_digit(*s))
    return -1;
  for (; is_digit(*s); s++) {
    uint64_t d = (uint64_t)(*s - '0');
    if (*ip > ((uint64_t)INT64_MAX - d) / 10)
      return -1;
    *ip = *ip * 10 + d;
  }
  if (*s == '.') {
    if (!is_digit(*++s))
      return -1;
    for (; is_digit(*s); s++)
      *frac += (scale /= 10) * (*s - '0');
  }
  *sp = s;
  return 0;
}

/* A decimal with a unit from `units`, rounded to an integer. */
static int parse_scaled(const char *s, const unit *units, int nocase,
                        int64_t *out)
{
  uint64_t ip;
  double frac;
  int64_t whole, part;

  if (!s || scan_decimal(&s, &ip, &frac) < 0)
    return SWIT_E_INVAL;
  if (s[0] == ' ' && s[1] != '\0') /* "10 MB" */
    s++;
  for (; units->name; units++)
    if ((nocase ? strcasecmp(s, units->name) : strcmp(s, units->name)) == 0)
      break;
  if (!units->name || ip > (uint64_t)(INT64_MAX / units->mult))
    return SWIT_E_INVAL;
  whole = (int64_t)ip * units->mult;
  part = (int64_t)(frac * (double)units->mult + 0.5);
  if (part > INT64_MAX - whole)
    return SWIT_E_INVAL;
  *out = whole + part;
  return 0;
}

int swit__parse_duration_ms(const char *s, int64_t *out)
{
  return parse_scaled(s, duration_units, 0, out);
}

int swit__parse_size(const char *s, int64_t *out)
{
  return parse_scaled(s, size_units, 1, out);
}

static int parse_int(const char *s, int64_t *out)
{
  char *end;
  long long v;

  if (!is_digit(s[0]) && !(s[0] == '-' && is_digit(s[1])))
    return -1;
  errno = 0;
  v = strtoll(s, &end, 10);
  if (errno != 0 || *end != '\0')
    return -1;
  *out = (int64_t)v;
  return 0;
}

/* "[-]<digits>[.<digits>]", independent of the locale. */
static int parse_double(const char *s, double *out)
{
  int neg = (*s == '-');
  uint64_t ip;
  double frac;

  s += neg;
  if (scan_decimal(&s, &ip, &frac) < 0 || *s != '\0')
    return -1;
  *out = ((double)ip + frac) * (neg ? -1 : 1);
  return 0;
}

/* ---------------------------------------------------------------------
 * Typing one scalar into a field */

static int has_bounds(const swit_cfg_field *f)
{
  return f->min != 0 || f->max != 0;
}

/* 3600000 -> "1h", 1536 -> "1536", 10485760 -> "10MB". */
static void format_value(swit_cfg_type type, int64_t v, char *buf,
                         size_t len)
{
  static const unit dur[] = { { "h", 3600000 }, { "m", 60000 },
                              { "s", 1000 }, { "ms", 1 }, { NULL, 0 } };
  static const unit size[] = { { "GB", GIB }, { "MB", MIB }, { "KB", 1024 },
                               { "", 1 }, { NULL, 0 } };
  static const unit plain[] = { { "", 1 }, { NULL, 0 } };
  const unit *u = type == SWIT_CFG_DURATION ? dur
                  : type == SWIT_CFG_SIZE   ? size
                                            : plain;

  while (u[1].name && (v == 0 || v % u->mult != 0))
    u++;
  snprintf(buf, len, "%lld%s", (long long)(v / u->mult), u->name);
}

/* " in 1..1024", " >= 1" or "". */
static void range_text(const swit_cfg_field *f, char *buf, size_t len)
{
  char lo[32], hi[32];

  buf[0] = '\0';
  if (!has_bounds(f))
    return;
  format_value(f->type, f->min, lo, sizeof lo);
  format_value(f->type, f->max, hi, sizeof hi);
  if (f->max == INT64_MAX)
    snprintf(buf, len, " >= %s", lo);
  else
    snprintf(buf, len, " in %s..%s", lo, hi);
}

static int set_str(swit_cfg_ctx *ctx, char **p, const char *text)
{
  char *s = strdup(text);

  if (!s)
    return swit__config_nomem(ctx);
  free(*p);
  *p = s;
  return 0;
}

static int set_list1(swit_cfg_ctx *ctx, swit_cfg_list *p, const char *text)
{
  swit_cfg_list l = { calloc(1, sizeof(char *)), 1 };

  if (!l.items || !(l.items[0] = strdup(text))) {
    free(l.items);
    return swit__config_nomem(ctx);
  }
  swit__config_list_clear(p);
  *p = l;
  return 0;
}

static int set_bool(swit_cfg_ctx *ctx, int *p, const char *text,
                    swit_cfg_mark mark, const char *key)
{
  static const char *const yes[] = { "true", "yes", "on", NULL };
  static const char *const no[] = { "false", "no", "off", NULL };
  int i;

  for (i = 0; yes[i]; i++) {
    if (strcasecmp(text, yes[i]) == 0 || strcasecmp(text, no[i]) == 0) {
      *p = strcasecmp(text, yes[i]) == 0;
      return 0;
    }
  }
  return swit__config_fail(ctx, mark, key,
                           "expected a boolean (true/false, yes/no, on/off), "
                           "got \"%s\"", text);
}

static int set_enum(swit_cfg_ctx *ctx, const swit_cfg_field *f, int *p,
                    const char *text, swit_cfg_mark mark, const char *key)
{
  char names[256];
  int i;

  for (i = 0; f->choices[i]; i++) {
    if (strcmp(text, f->choices[i]) == 0) {
      *p = i;
      return 0;
    }
  }
  swit__config_join_names(f->choices, names, sizeof names);
  return swit__config_fail(ctx, mark, key, "expected one of %s, got \"%s\"",
                           names, text);
}

static int set_int(swit_cfg_ctx *ctx, const swit_cfg_field *f, int64_t *p,
                   const char *text, swit_cfg_mark mark, const char *key)
{
  char range[96];
  int64_t v = 0;
  int bad;

  if (f->type == SWIT_CFG_DURATION)
    bad = swit__parse_duration_ms(text, &v) < 0;
  else if (f->type == SWIT_CFG_SIZE)
    bad = swit__parse_size(text, &v) < 0;
  else
    bad = parse_int(text, &v) < 0;
  if (!bad && (!has_bounds(f) || (v >= f->min && v <= f->max))) {
    *p = v;
    return 0;
  }
  range_text(f, range, sizeof range);
  if (f->type == SWIT_CFG_DURATION)
    return swit__config_fail(ctx, mark, key, "expected a duration%s (e.g. "
                             "250ms, 30s, 5m, 1h), got \"%s\"", range, text);
  if (f->type == SWIT_CFG_SIZE)
    return swit__config_fail(ctx, mark, key, "expected a size%s (e.g. 512, "
                             "64KB, 10MB, 1GB), got \"%s\"", range, text);
  return swit__config_fail(ctx, mark, key, "expected an integer%s, got \"%s\"",
                           range, text);
}

static int set_double(swit_cfg_ctx *ctx, const swit_cfg_field *f, double *p,
                      const char *text, swit_cfg_mark mark, const char *key)
{
  char range[96];
  double v = 0;

  if (parse_double(text, &v) == 0 &&
      (!has_bounds(f) || (v >= (double)f->min && v <= (double)f->max))) {
    *p = v;
    return 0;
  }
  range_text(f, range, sizeof range);
  return swit__config_fail(ctx, mark, key, "expected a number%s, got \"%s\"",
                           range, text);
}

int swit__config_set_scalar(swit_cfg_ctx *ctx, const swit_cfg_field *f,
                            void *obj, const char *text, swit_cfg_mark mark,
                            const char *key)
{
  void *p = (char *)obj + f->offset;

  switch (f->type) {
  case SWIT_CFG_STR:
    return set_str(ctx, p, text);
  case SWIT_CFG_BOOL:
    return set_bool(ctx, p, text, mark, key);
  case SWIT_CFG_INT:
  case SWIT_CFG_DURATION:
  case SWIT_CFG_SIZE:
    return set_int(ctx, f, p, text, mark, key);
  case SWIT_CFG_DOUBLE:
    return set_double(ctx, f, p, text, mark, key);
  case SWIT_CFG_ENUM:
    return set_enum(ctx, f, p, text, mark, key);
  case SWIT_CFG_LIST:
    return set_list1(ctx, p, text);
  case SWIT_CFG_UNSUPPORTED:
    return swit__config_unsupported(ctx, mark, key);
  default: /* SECTION, NAMED, PASSTHROUGH */
    return swit__config_fail(ctx, mark, key, "expected a mapping");
  }
}

/* ---------------------------------------------------------------------
 * Defaults and freeing */

static size_t member_size(swit_cfg_type type)
{
  switch (type) {
  case SWIT_CFG_STR: return sizeof(char *);
  case SWIT_CFG_BOOL:
  case SWIT_CFG_ENUM: return sizeof(int);
  case SWIT_CFG_DOUBLE: return sizeof(double);
  case SWIT_CFG_LIST: return sizeof(swit_cfg_list);
  case SWIT_CFG_NAMED: return sizeof(swit_cfg_named);
  case SWIT_CFG_PASSTHROUGH: return sizeof(swit_cfg_kvlist);
  case SWIT_CFG_SECTION:
  case SWIT_CFG_UNSUPPORTED: return 0;
  default: return sizeof(int64_t); /* INT, DURATION, SIZE */
  }
}

static void zero_fields(const swit_cfg_field *fields, void *obj)
{
  for (; fields->name; fields++) {
    void *p = (char *)obj + fields->offset;
    if (fields->type == SWIT_CFG_SECTION)
      zero_fields(fields->fields, p);
    else
      memset(p, 0, member_size(fields->type));
  }
}

/* A NAMED member starts with one element, "default". */
static int named_default(swit_cfg_ctx *ctx, const swit_cfg_field *f,
                         swit_cfg_named *nm)
{
  nm->names = calloc(1, sizeof(char *));
  nm->elems = calloc(1, f->elem_size);
  if (!nm->names || !nm->elems || !(nm->names[0] = strdup("default"))) {
    swit__config_named_clear(f, nm);
    return swit__config_nomem(ctx);
  }
  nm->n = 1;
  return swit__config_defaults(ctx, f->fields, nm->elems);
}

static int set_defaults(swit_cfg_ctx *ctx, const swit_cfg_field *fields,
                        void *obj)
{
  swit_cfg_mark none = { ctx->file, 0, 0 };
  int rc = 0;

  for (; rc == 0 && fields->name; fields++) {
    void *p = (char *)obj + fields->offset;
    if (fields->type == SWIT_CFG_SECTION)
      rc = set_defaults(ctx, fields->fields, p);
    else if (fields->type == SWIT_CFG_NAMED)
      rc = named_default(ctx, fields, p);
    else if (fields->type == SWIT_CFG_PASSTHROUGH)
      ((swit_cfg_kvlist *)p)->mark = none;
    else if (fields->dflt)
      rc = swit__config_set_scalar(ctx, fields, obj, fields->dflt, none,
                                   fields->name);
  }
  return rc;
}

int swit__config_defaults(swit_cfg_ctx *ctx, const swit_cfg_field *fields,
                          void *obj)
{
  zero_fields(fields, obj);
  return set_defaults(ctx, fields, obj);
}

void swit__config_list_clear(swit_cfg_list *l)
{
  size_t i;

  for (i = 0; l->items && i < l->n; i++)
    free(l->items[i]);
  free(l->items);
  l->items = NULL;
  l->n = 0;
}

void swit__config_kvlist_clear(swit_cfg_kvlist *kv)
{
  size_t i;

  for (i = 0; kv->items && i < kv->n; i++) {
    free(kv->items[i].key);
    free(kv->items[i].value);
  }
  free(kv->items);
  kv->items = NULL;
  kv->n = 0;
}

void swit__config_named_clear(const swit_cfg_field *f, swit_cfg_named *nm)
{
  size_t i;

  for (i = 0; i < nm->n; i++) {
    if (nm->names)
      free(nm->names[i]);
    if (nm->elems)
      swit__config_free_fields(f->fields, (char *)nm->elems + i * f->elem_size);
  }
  free(nm->names);
  free(nm->elems);
  nm->names = NULL;
  nm->elems = NULL;
  nm->n = 0;
}

void swit__config_free_fields(const swit_cfg_field *fields, void *obj)
{
  for (; fields && obj && fields->name; fields++) {
    void *p = (char *)obj + fields->offset;
    if (fields->type == SWIT_CFG_STR) {
      free(*(char **)p);
      *(char **)p = NULL;
    } else if (fields->type == SWIT_CFG_LIST) {
      swit__config_list_clear(p);
    } else if (fields->type == SWIT_CFG_SECTION) {
      swit__config_free_fields(fields->fields, p);
    } else if (fields->type == SWIT_CFG_NAMED) {
      swit__config_named_clear(fields, p);
    } else if (fields->type == SWIT_CFG_PASSTHROUGH) {
      swit__config_kvlist_clear(p);
    }
  }
}

/* ---------------------------------------------------------------------
 * Reference (Markdown) */

static void type_text(const swit_cfg_field *f, char *buf, size_t len)
{
  static const char *const names[] = {
    [SWIT_CFG_STR] = "string", [SWIT_CFG_BOOL] = "boolean",
    [SWIT_CFG_INT] = "integer", [SWIT_CFG_DOUBLE] = "number",
    [SWIT_CFG_DURATION] = "duration", [SWIT_CFG_SIZE] = "size",
    [SWIT_CFG_ENUM] = "one of", [SWIT_CFG_LIST] = "list of strings",
    [SWIT_CFG_SECTION] = "section", [SWIT_CFG_NAMED] = "map of sections",
    [SWIT_CFG_PASSTHROUGH] = "map of strings",
    [SWIT_CFG_UNSUPPORTED] = "**not supported yet**: refused when set"
  };
  char more[192];

  if (f->type == SWIT_CFG_ENUM)
    swit__config_join_names(f->choices, more, sizeof more);
  else
    range_text(f, more, sizeof more);
  snprintf(buf, len, "%s%s%s", names[f->type],
           f->type == SWIT_CFG_ENUM ? " " : "", more);
}

/* 1 when `word` is one of the space-separated words of `list`. */
int swit__config_word_in(const char *list, const char *word)
{
  size_t n = strlen(word);

  for (const char *p = list; (p = strstr(p, word)) != NULL; p += n)
    if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
      return 1;
  return 0;
}

/* " Only with broker type nats; refused with the others." or "". */
static void brokers_text(const swit_cfg_field *f, char *buf, size_t len)
{
  buf[0] = '\0';
  if (f->brokers)
    snprintf(buf, len, ". Only with broker type %s; refused with the others",
             f->brokers);
}

static void ref_row(const swit_cfg_field *f, const char *key,
                    void (*emit)(void *, const char *), void *ud)
{
  char type[256], dflt[128], only[128], line[1024];

  type_text(f, type, sizeof type);
  brokers_text(f, only, sizeof only);
  if (!f->dflt)
    dflt[0] = '\0';
  else
    snprintf(dflt, sizeof dflt, "`%s`", f->dflt[0] ? f->dflt : "\"\"");
  snprintf(line, sizeof line, "| `%s` | %s | %s | %s%s%s |", key, type,
           dflt, f->desc ? f->desc : "", only,
           f->default_only ? ". Read from the `default` entry only; "
                             "refused in the others" : "");
  emit(ud, line);
}

static void ref_rows(const swit_cfg_field *fields, const char *prefix,
                     void (*emit)(void *, const char *), void *ud)
{
  char key[SWIT__CONFIG_KEYMAX];

  for (; fields->name; fields++) {
    snprintf(key, sizeof key, "%s%s%s", prefix, prefix[0] ? "." : "",
             fields->name);
    if (fields->type == SWIT_CFG_SECTION) {
      ref_rows(fields->fields, key, emit, ud);
      continue;
    }
    if (fields->type == SWIT_CFG_NAMED)
      strncat(key, ".<name>", sizeof key - strlen(key) - 1);
    ref_row(fields, key, emit, ud);
    if (fields->type == SWIT_CFG_NAMED)
      ref_rows(fields->fields, key, emit, ud);
  }
}

void swit__config_reference(const swit_cfg_field *fields, const char *prefix,
                            void (*emit)(void *ud, const char *line), void *ud)
{
  emit(ud, "| Key | Type | Default | Description |");
  emit(ud, "|-----|------|---------|-------------|");
  ref_rows(fields, prefix ? prefix : "", emit, ud);
}
