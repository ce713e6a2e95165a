/*
 * redact.c - copy a JSON document with the values at chosen paths
 * replaced by "[REDACTED]" (audit.h). Paths are member names joined by
 * '.', matched with '*' (any run, dots included) and '?'; array
 * elements have their array's path, so "items.cvv" masks the cvv of
 * every element. Runs on the caller's thread; no state.
 *
 * The input is untrusted: a syntax error, nesting deeper than 64 or a
 * path longer than 512 bytes makes the copy fail (the caller logs no
 * payload), at a cost bounded by the input's length.
 */
#include <string.h>

#include "sec/audit.h"
#include "sec/sec.h"

#define DEPTH_MAX 64
#define PATH_MAX_LEN 512

typedef struct rd {
  const char *s;
  size_t n, i;
  const swit_cfg_list *fields;
  swit__buf *out;
  char path[PATH_MAX_LEN];
  size_t plen;
  int depth;
} rd;


static void ws(rd *r)
{
  while (r->i < r->n && strchr(" \t\r\n", r->s[r->i]) && r->s[r->i]) r->i++;
}

/* Skip a string at r->i (the opening quote); its end + 1, or 0. */
static size_t string_end(const rd *r)
{
  for (size_t i = r->i + 1; i < r->n; i++) {
    unsigned char c = (unsigned char)r->s[i];
    if (c == '\\') i++;
    else if (c == '"') return i + 1;
    else if (c < 0x20) return 0;
  }
  return 0;
}

static int value(rd *r, int masked);

static int emit(rd *r, size_t from)
{
  return swit__buf_add(r->out, r->s + from, r->i - from) == 0;
}

static int member_value(rd *r, const char *key, size_t klen, int masked)
{
  size_t saved = r->plen;
  int hit = 0, ok;

  if (r->plen + klen + 1 >= PATH_MAX_LEN) return 0;
  if (r->plen) r->path[r->plen++] = '.';
  memcpy(r->path + r->plen, key, klen);
  r->plen += klen;
  for (size_t f = 0; !masked && f < r->fields->n; f++)
    hit |= swit__sec_glob(r->fields->items[f], r->path, r->plen);
  if (hit && swit__buf_add(r->out, "\"[REDACTED]\"", 12) != 0) return 0;
  ok = value(r, masked || hit);
  r->plen = saved;
  return ok;
}

static int object(rd *r, int masked)
{
  int first = 1;

  r->i++;
  if (!masked && swit__buf_add(r->out, "{", 1)) return 0;
  for (;;) {
    size_t k, e;
    ws(r);
    if (r->i < r->n && r->s[r->i] == '}' && first) break;
    if (r->i >= r->n || r->s[r->i] != '"' || !(e = string_end(r))) return 0;
    k = r->i;
    r->i = e;
    if (!masked && ((!first && swit__buf_add(r->out, ",", 1)) ||
                    swit__buf_add(r->out, r->s + k, e - k) ||
                    swit__buf_add(r->out, ":", 1)))
      return 0;
    ws(r);
    if (r->i >= r->n || r->s[r->i++] != ':') return 0;
    if (!member_value(r, r->s + k + 1, e - k - 2, masked)) return 0;
    first = 0;
    ws(r);
    if (r->i < r->n && r->s[r->i] == ',') {
      r->i++;
      continue;
    }
    if (r->i < r->n && r->s[r->i] == '}') break;
    return 0;
  }
  r->i++;
  return masked || swit__buf_add(r->out, "}", 1) == 0;
}

static int array(rd *r, int masked)
{
  int first = 1;

  r->i++;
  if (!masked && swit__buf_add(r->out, "[", 1)) return 0;
  for (;;) {
    ws(r);
    if (r->i < r->n && r->s[r->i] == ']' && first) break;
    if (!masked && !first && swit__buf_add(r->out, ",", 1)) return 0;
    if (!value(r, masked)) return 0;
    first = 0;
    ws(r);
    if (r->i < r->n && r->s[r->i] == ',') {
      r->i++;
      continue;
    }
    if (r->i < r->n && r->s[r->i] == ']') break;
    return 0;
  }
  r->i++;
  return masked || swit__buf_add(r->out, "]", 1) == 0;
}

static int scalar(rd *r, int masked)
{
  size_t from = r->i;
  static const char *const lits[] = {"true", "false", "null"};

  if (r->s[r->i] == '"') {
    size_t e = string_end(r);
    if (!e) return 0;
    r->i = e;
    return masked || emit(r, from);
  }
  for (int l = 0; l < 3; l++) {
    size_t len = strlen(lits[l]);
    if (r->n - r->i >= len && memcmp(r->s + r->i, lits[l], len) == 0) {
      r->i += len;
      return masked || emit(r, from);
    }
  }
  while (r->i < r->n && r->s[r->i] && strchr("+-0123456789.eE", r->s[r->i]))
    r->i++;
  if (r->i == from) return 0;
  return masked || emit(r, from);
}

static int value(rd *r, int masked)
{
  int ok;

  ws(r);
  if (r->i >= r->n || ++r->depth > DEPTH_MAX) return 0;
  if (r->s[r->i] == '{') ok = object(r, masked);
  else if (r->s[r->i] == '[') ok = array(r, masked);
  else ok = scalar(r, masked);
  r->depth--;
  return ok;
}

int swit__redact_json(const char *s, size_t n, const swit_cfg_list *fields,
                      swit__buf *out)
{
  rd r = {.s = s, .n = n, .fields = fields, .out = out};
  size_t start = out->len;

  if (value(&r, 0)) {
    ws(&r);
    if (r.i == n) return 0;
  }
  out->len = start;
  if (out->data) out->data[start] = '\0';
  return -1;
}
