/*
 * log.c - the host's log lines on stderr, and the monotonic clock.
 *
 * Format: "2026-11-27T09:30:00.123Z info  message". Each line is built in
 * a stack buffer and written with one write(2), so concurrent workers
 * never interleave within a line. Long lines are truncated with "...".
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "swit_ffi.h"

static const char *const level_names[] = {"debug", "info ", "warn ", "error"};

static void vlog(const swit__logger *lg, int level, const char *fmt,
                 va_list ap)
{
  char line[2048];
  struct timespec ts;
  struct tm tm;
  size_t n;
  int w;

  if (level < SWIT_LOG_DEBUG) level = SWIT_LOG_DEBUG;
  if (level > SWIT_LOG_ERROR) level = SWIT_LOG_ERROR;
  if (lg && level < lg->level) return;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
  n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ %s ",
                        ts.tv_nsec / 1000000L, level_names[level]);
  w = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
  if (w < 0) w = 0;
  if ((size_t)w >= sizeof line - n - 1) {
    n = sizeof line - 5;
    memcpy(line + n, "...", 3);
    n += 3;
  } else {
    n += (size_t)w;
  }
  line[n++] = '\n';
  if (write(STDERR_FILENO, line, n) < 0) { /* nowhere left to report */ }
}

void swit__log(const swit__logger *lg, int level, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vlog(lg, level, fmt, ap);
  va_end(ap);
}

void swit__log_cb(void *ud, int level, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vlog(ud, level, fmt, ap);
  va_end(ap);
}

int64_t swit__now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
