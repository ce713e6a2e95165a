/*
 * buf.c - a growable text buffer (buf.h): HTTP bodies, the metrics
 * exposition, JSON, serialized Lua values. One owner at a time.
 */
#include "base/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "swit/swit.h"


int swit__buf_add(swit__buf *b, const char *s, size_t len)
{
  if (b->cap - b->len < len + 1) {
    size_t cap = b->cap ? b->cap : 4096;
    char *d;
    while (cap - b->len < len + 1) cap *= 2;
    if (!(d = realloc(b->data, cap))) return SWIT_E_NOMEM;
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, s, len);
  b->len += len;
  b->data[b->len] = '\0';
  return 0;
}

int swit__buf_printf(swit__buf *b, const char *fmt, ...)
{
  char small[512];
  va_list ap;
  int n;

  va_start(ap, fmt);
  n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0) return SWIT_E_INVAL;
  if ((size_t)n < sizeof small) return swit__buf_add(b, small, (size_t)n);
  {
    char *big = malloc((size_t)n + 1);
    int rc;
    if (!big) return SWIT_E_NOMEM;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    rc = swit__buf_add(b, big, (size_t)n);
    free(big);
    return rc;
  }
}

int swit__buf_json(swit__buf *b, const char *s, size_t len)
{
  int rc = swit__buf_add(b, "\"", 1);
  for (size_t i = 0; rc == 0 && i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      rc = swit__buf_add(b, e, 2);
    } else if (c < 0x20) {
      rc = swit__buf_printf(b, "\\u%04x", c);
    } else {
      rc = swit__buf_add(b, (const char *)&s[i], 1);
    }
  }
  return rc ? rc : swit__buf_add(b, "\"", 1);
}

