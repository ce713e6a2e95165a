/*
 * buf.h - a growable byte buffer with text helpers (buf.c). Not API.
 * A swit__buf is owned by one thread at a time; zero-initialised is
 * empty; free(b->data) releases it. The helpers return 0 or SWIT_E_NOMEM
 * and keep data NUL-terminated.
 */
#ifndef SWIT_BUF_H
#define SWIT_BUF_H

#include <stddef.h>

typedef struct swit__buf {
  char *data;
  size_t len, cap;
} swit__buf;

int swit__buf_add(swit__buf *b, const char *s, size_t len);
int swit__buf_printf(swit__buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* A JSON string literal (quotes included) of s[0..len). */
int swit__buf_json(swit__buf *b, const char *s, size_t len);

#endif /* SWIT_BUF_H */
