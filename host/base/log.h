/*
 * log.h - the host's log (stderr) and the error
 * text helper every part of the host and every adapter uses.
 *
 * One line per call, written with a single write so lines from different
 * threads never interleave. Safe from any thread. Handler output (print)
 * goes to stdout and never through here.
 */
#ifndef SWIT_LOG_H
#define SWIT_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef struct swit__logger {
  int level;       /* SWIT_LOG_*: lines below it are dropped */
  int format;      /* SWIT_LOG_FMT_TEXT or _JSON (server.log.format) */
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

#include "base/clock.h" /* swit__now_ms and deadlines */

/* Format an error into buf (when buf and len are set) and return code:
 *   return swit__fail(err, errlen, SWIT_E_CONFIG, "bad '%s'", name); */
int swit__fail(char *buf, size_t len, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

#endif /* SWIT_LOG_H */
