/*
 * log.h - the host's log (stderr, or the embedder's swit_log_cb) and the
 * error text helper every part of the host and every adapter uses.
 *
 * One line per call, written with a single write so lines from different
 * threads never interleave; with a callback, one call per line. Safe from
 * any thread. Handler output (print) goes to stdout and never through here.
 */
#ifndef SWIT_LOG_H
#define SWIT_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <swit/swit.h>

enum { SWIT_LOG_FMT_TEXT, SWIT_LOG_FMT_JSON }; /* server.log.format */

typedef struct swit__logger {
  int level;       /* SWIT_LOG_*: lines below it are dropped */
  int format;      /* SWIT_LOG_FMT_TEXT or _JSON (server.log.format) */
  swit_log_cb cb;  /* NULL: stderr; else every line goes to cb(ud, ...) */
  void *ud;
  /* JSON lines: append the calling thread's context as JSON members
   * (",\"worker\":1,..."), at most cap bytes; returns the bytes written.
   * Set by the layer that knows what a thread is doing (obs/); NULL:
   * none. */
  size_t (*context)(char *out, size_t cap);
} swit__logger;

void swit__log(const swit__logger *lg, int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

void swit__vlog(const swit__logger *lg, int level, const char *fmt,
                va_list ap);

/* The same, for adapters (swit_log_fn shape: ud is a swit__logger). */
void swit__log_cb(void *ud, int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* s[0..len) as the inside of a JSON string, into out (stops early rather
 * than overflow cap - 7); the bytes written. */
size_t swit__json_escape(char *out, size_t cap, const char *s, size_t len);

#include "base/clock.h" /* swit__now_ms, swit__now_us and deadlines */

/* Format an error into buf (when buf and len are set) and return code:
 *   return swit__fail(err, errlen, SWIT_E_CONFIG, "bad '%s'", name); */
int swit__fail(char *buf, size_t len, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

#endif /* SWIT_LOG_H */
