/*
 * jsonl.c - one line of `swit publish --json` input: the JSON object
 * `swit tail --json` prints, read back, so `tail --json | publish --json`
 * carries messages byte for byte.
 *
 *   {"topic": "...", "key": "..." | null, "headers": {"n": "v", ...},
 *    "payload": "..."}
 *
 * "payload" is required; "topic" is accepted and ignored (the command's
 * TOPIC decides); any other member is an error. Strings are decoded in
 * place (never longer than written) and NUL-terminated: the escapes of
 * JSON, where \u0000..\u00ff stand for one byte each (the form tail uses
 * for control bytes and bytes above 0x7f) and a code point above 0xff
 * (surrogate pairs joined) is written as UTF-8; raw bytes above 0x7f are
 * copied as they are. Strict otherwise: no control byte unescaped, no
 * trailing text. The parsed message points into the line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/tools.h"

typedef struct jp {
  char *s, *end;
  const char *why;
} jp;

static void ws(jp *p)
{
  while (p->s < p->end && (*p->s == ' ' || *p->s == '\t' || *p->s == '\r'))
    p->s++;
}

static int expect(jp *p, char c, const char *why)
{
  ws(p);
  if (p->s >= p->end || *p->s != c) {
    p->why = why;
    return -1;
  }
  p->s++;
  return 0;
}

static int hex4(const char *s, unsigned *out)
{
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = s[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return -1;
  }
  *out = v;
  return 0;
}

static char *put_utf8(char *o, unsigned cp)
{
  if (cp < 0x800) {
    *o++ = (char)(0xc0 | cp >> 6);
  } else if (cp < 0x10000) {
    *o++ = (char)(0xe0 | cp >> 12);
    *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
  } else {
    *o++ = (char)(0xf0 | cp >> 18);
    *o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
    *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
  }
  *o++ = (char)(0x80 | (cp & 0x3f));
  return o;
}

/* A string at p->s: decoded in place, NUL-terminated; *len its bytes. */
static int str(jp *p, char **out, size_t *len)
{
  char *o;

  if (expect(p, '"', "expected a string")) return -1;
  *out = o = p->s;
  while (p->s < p->end && *p->s != '"') {
    unsigned char c = (unsigned char)*p->s;
    unsigned cp, lo;
    if (c < 0x20) {
      p->why = "a control byte in a string (escape it)";
      return -1;
    }
    if (c != '\\') {
      *o++ = *p->s++;
      continue;
    }
    if (p->end - p->s < 2) break;
    switch (p->s[1]) {
    case '"': case '\\': case '/': *o++ = p->s[1]; p->s += 2; continue;
    case 'b': *o++ = '\b'; p->s += 2; continue;
    case 'f': *o++ = '\f'; p->s += 2; continue;
    case 'n': *o++ = '\n'; p->s += 2; continue;
    case 'r': *o++ = '\r'; p->s += 2; continue;
    case 't': *o++ = '\t'; p->s += 2; continue;
    case 'u': break;
    default:
      p->why = "an unknown escape";
      return -1;
    }
    if (p->end - p->s < 6 || hex4(p->s + 2, &cp)) {
      p->why = "expected 4 hex digits after \\u";
      return -1;
    }
    p->s += 6;
    if (cp >= 0xd800 && cp < 0xdc00) {             /* a surrogate pair */
      if (p->end - p->s < 6 || p->s[0] != '\\' || p->s[1] != 'u' ||
          hex4(p->s + 2, &lo) || lo < 0xdc00 || lo > 0xdfff) {
        p->why = "a lone surrogate";
        return -1;
      }
      p->s += 6;
      cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    } else if (cp >= 0xdc00 && cp <= 0xdfff) {
      p->why = "a lone surrogate";
      return -1;
    }
    if (cp <= 0xff) *o++ = (char)cp;               /* one byte, as tail writes */
    else o = put_utf8(o, cp);
  }
  if (p->s >= p->end) {
    p->why = "a string without its closing quote";
    return -1;
  }
  p->s++;                                          /* the quote */
  *len = (size_t)(o - *out);
  *o = '\0';                                       /* within the old span */
  return 0;
}

static int is_null(jp *p)
{
  ws(p);
  if (p->end - p->s >= 4 && !memcmp(p->s, "null", 4)) {
    p->s += 4;
    return 1;
  }
  return 0;
}

static int headers(jp *p, swit__jsonl_msg *m)
{
  if (expect(p, '{', "\"headers\": expected an object")) return -1;
  ws(p);
  if (p->s < p->end && *p->s == '}') {
    p->s++;
    return 0;
  }
  for (;;) {
    char *name, *value;
    size_t nl, vl;
    if (str(p, &name, &nl) || expect(p, ':', "expected ':'") ||
        str(p, &value, &vl))
      return -1;
    if (nl == 0 || memchr(name, '\0', nl) || memchr(value, '\0', vl)) {
      p->why = "a header name that is empty, or a NUL byte in a header "
               "(headers are C strings)";
      return -1;
    }
    if (m->nh == SWIT__JSONL_MAX_HEADERS) {
      p->why = "more than 32 headers";
      return -1;
    }
    m->headers[2 * m->nh] = name;
    m->headers[2 * m->nh + 1] = value;
    m->nh++;
    ws(p);
    if (p->s < p->end && *p->s == ',') {
      p->s++;
      continue;
    }
    return expect(p, '}', "expected ',' or '}' in \"headers\"");
  }
}

int swit__jsonl_parse(char *line, size_t len, swit__jsonl_msg *m,
                      const char **why, size_t *at)
{
  jp p = {line, line + len, NULL};
  int got_payload = 0, got_key = 0, got_headers = 0;

  memset(m, 0, sizeof *m);
  if (expect(&p, '{', "expected a JSON object")) goto fail;
  for (;;) {
    char *name, *v;
    size_t nl, vl;
    if (str(&p, &name, &nl) || expect(&p, ':', "expected ':'")) goto fail;
    if (memchr(name, '\0', nl)) name = "";        /* no member of ours */
    if ((!strcmp(name, "payload") && got_payload) ||
        (!strcmp(name, "key") && got_key) ||
        (!strcmp(name, "headers") && got_headers)) {
      p.why = "a member given twice";
      goto fail;
    }
    if (!strcmp(name, "payload")) {
      if (str(&p, &v, &vl)) goto fail;
      m->payload = v;
      m->payload_len = vl;
      got_payload = 1;
    } else if (!strcmp(name, "key")) {
      got_key = 1;
      if (!is_null(&p)) {
        if (str(&p, &v, &vl)) goto fail;
        m->key = v;
        m->key_len = vl;
      }
    } else if (!strcmp(name, "topic")) {
      if (str(&p, &v, &vl)) goto fail;             /* TOPIC decides */
    } else if (!strcmp(name, "headers")) {
      got_headers = 1;
      if (headers(&p, m)) goto fail;
    } else {
      p.why = "an unknown member (expected topic, key, headers, payload)";
      goto fail;
    }
    ws(&p);
    if (p.s < p.end && *p.s == ',') {
      p.s++;
      continue;
    }
    if (expect(&p, '}', "expected ',' or '}'")) goto fail;
    break;
  }
  ws(&p);
  if (p.s != p.end) {
    p.why = "text after the object";
    goto fail;
  }
  if (!got_payload) {
    p.why = "no \"payload\"";
    goto fail;
  }
  m->headers[2 * m->nh] = NULL;
  return 0;
fail:
  *why = p.why;
  *at = (size_t)(p.s - line) + 1;
  return -1;
}
