/*
 * log.c - the host's log lines on stderr (or to the embedder's callback,
 * swit_host_set_log).
 *
 * Format: "2026-11-27T09:30:00.123Z info  message", or with
 * server.log.format: json one JSON object per line (time, level, the
 * thread's context from the logger's `context` function, msg).
 * With a callback the text alone (no time, level or JSON) goes to it,
 * one call per line, on the thread that logs.
 * Each line is built in a stack buffer and written with one write(2), so
 * concurrent workers never interleave within a line. Long lines are
 * truncated with "...". Control bytes of the message are escaped in
 * both formats (text: \n \r \t \xNN; JSON: \uXXXX): one event is one
 * line, and a newline in a message, topic or Lua string cannot forge
 * another event.
 */
#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "swit/swit.h"  /* swit_strerror, SWIT_LOG_* */

#define LEVEL_NAME(name, value, text) [value] = text,
static const char *const level_names[] = {SWIT_LOG_LEVEL_MAP(LEVEL_NAME)};
#undef LEVEL_NAME

/* ------------------------------------------------------------------ */
/* JSON lines (server.log.format: json) */

size_t swit__json_escape(char *out, size_t cap, const char *s, size_t len)
{
  size_t o = 0;
  for (size_t i = 0; i < len && o + 7 < cap; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      out[o++] = '\\';
      out[o++] = (char)c;
    } else if (c < 0x20) {
      o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
    } else {
      out[o++] = (char)c;
    }
  }
  return o;
}

static void vlog_json(const swit__logger *lg, int level, const char *fmt,
                      va_list ap)
{
  char line[4096], text[2048];
  struct timespec ts;
  struct tm tm;
  size_t n;
  int w;

  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  n = strftime(line, sizeof line, "{\"time\":\"%Y-%m-%dT%H:%M:%S", &tm);
  n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ\",\"level\":"
                        "\"%s\"", ts.tv_nsec / 1000000L, level_names[level]);
  if (lg->context) n += lg->context(line + n, sizeof line - n - 2048);
  w = vsnprintf(text, sizeof text, fmt, ap);
  if (w < 0) w = 0;
  if ((size_t)w >= sizeof text) w = sizeof text - 1;
  memcpy(line + n, ",\"msg\":\"", 8);
  n += 8;
  n += swit__json_escape(line + n, sizeof line - n - 4, text, (size_t)w);
  memcpy(line + n, "\"}\n", 3);
  n += 3;
  if (write(STDERR_FILENO, line, n) < 0) { /* nowhere left to report */ }
}

/* s (len bytes) into out at *n (cap bytes in all) with control bytes
 * escaped (\n \r \t, else \xNN), so one event is one line and text
 * from a message or topic cannot forge another: the bytes of s used. */
static size_t text_escape(char *out, size_t cap, size_t *n, const char *s,
                          size_t len)
{
  static const char hex[] = "0123456789abcdef";
  size_t i;

  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != 0x7f) {
      if (*n + 1 > cap) break;
      out[(*n)++] = (char)c;
    } else if (c == '\n' || c == '\r' || c == '\t') {
      if (*n + 2 > cap) break;
      out[(*n)++] = '\\';
      out[(*n)++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
    } else {
      if (*n + 4 > cap) break;
      out[(*n)++] = '\\';
      out[(*n)++] = 'x';
      out[(*n)++] = hex[c >> 4];
      out[(*n)++] = hex[c & 15];
    }
  }
  return i;
}

void swit__vlog(const swit__logger *lg, int level, const char *fmt,
                va_list ap)
{
  char line[2048], text[2048];
  struct timespec ts;
  struct tm tm;
  size_t n, len;
  int w;

  if (level < SWIT_LOG_DEBUG) level = SWIT_LOG_DEBUG;
  if (level > SWIT_LOG_ERROR) level = SWIT_LOG_ERROR;
  if (lg && level < lg->level) return;
  if (lg && lg->cb) {
    w = vsnprintf(line, sizeof line, fmt, ap);
    if (w < 0) w = 0;
    if ((size_t)w >= sizeof line) w = sizeof line - 1;
    lg->cb(lg->ud, level, line, (size_t)w);
    return;
  }
  if (lg && lg->format == SWIT_LOG_FMT_JSON) {
    vlog_json(lg, level, fmt, ap);
    return;
  }
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
  n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ %-5s ",
                        ts.tv_nsec / 1000000L, level_names[level]);
  w = vsnprintf(text, sizeof text, fmt, ap);
  if (w < 0) w = 0;
  len = (size_t)w < sizeof text ? (size_t)w : sizeof text - 1;
  if (text_escape(line, sizeof line - 1, &n, text, len) != len ||
      (size_t)w >= sizeof text) {
    n = n > sizeof line - 5 ? sizeof line - 5 : n;
    memcpy(line + n, "...", 3);
    n += 3;
  }
  line[n++] = '\n';
  if (write(STDERR_FILENO, line, n) < 0) { /* nowhere left to report */ }
}

void swit__log(const swit__logger *lg, int level, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  swit__vlog(lg, level, fmt, ap);
  va_end(ap);
}

void swit__log_cb(void *ud, int level, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  swit__vlog(ud, level, fmt, ap);
  va_end(ap);
}

const char *swit_strerror(int code)
{
  switch (code) {
  case SWIT_OK: return "ok";
#define SWIT__ERR_CASE(name, c, text) case name: return text;
  SWIT_ERRNO_MAP(SWIT__ERR_CASE)
#undef SWIT__ERR_CASE
  }
  return "unknown error";
}

int swit__fail(char *buf, size_t len, int code, const char *fmt, ...)
{
  if (buf && len) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
  }
  return code;
}
