/*
 * fuzz_trace.c - libFuzzer harness of W3C trace-context parsing
 * (host/obs/trace.c) and the header lookups around it (core/msg.c).
 * The input is a header list, one "name:value" a line (a line without a
 * colon is a name with an empty value; values may hold any byte but
 * LF). Checked on every input:
 *   - swit__trace_from_headers: on success the ids are non-zero, the
 *     tracestate is printable ASCII of 1..512 bytes from the input; the
 *     context written back (swit__trace_format) parses to the same trace;
 *   - swit__trace_id_hex agrees with it (no tracer: from the header);
 *   - swit__msg_header_find finds the first header of each name;
 *   - swit__buf_json (how a tracestate reaches OTLP) escapes every value
 *     to a JSON string without control bytes.
 * Built with -DSWIT_FUZZ=ON (spec/fuzz/CMakeLists.txt).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/host_int.h"
#include "core/msg_int.h"
#include "obs/trace.h"
#include "base/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_HEADERS = 64 };

static uint32_t split(const char *s, size_t n, swit_header *hv)
{
  uint32_t nh = 0;
  size_t i = 0;

  while (i < n && nh < MAX_HEADERS) {
    const char *line = s + i, *nl = memchr(line, '\n', n - i);
    size_t len = nl ? (size_t)(nl - line) : n - i;
    const char *colon = memchr(line, ':', len);
    size_t nlen = colon ? (size_t)(colon - line) : len;
    hv[nh++] = (swit_header){line, colon ? colon + 1 : line + len,
                             (uint32_t)nlen,
                             (uint32_t)(colon ? len - nlen - 1 : 0)};
    i += len + 1;
  }
  return nh;
}

static void check_context(const swit_msg_view *v, const char *lo_bound,
                          const char *hi_bound)
{
  swit__trace_ctx c, back;
  char tp[56], hex[33], want[33];
  swit_header h1;
  swit_msg_view v1 = {.headers = &h1, .nheaders = 1};
  swit_ffi_msg m = {.v = *v};

  if (swit__trace_from_headers(v, &c) != 0) {
    if (c.hi || c.lo || c.parent || c.state) abort();
    return;
  }
  if ((c.hi == 0 && c.lo == 0) || c.parent == 0 || c.sampled > 1) abort();
  if (c.state) {
    if (c.state_len == 0 || c.state_len > SWIT__TRACE_STATE_MAX ||
        c.state < lo_bound || c.state + c.state_len > hi_bound)
      abort();
    for (uint32_t i = 0; i < c.state_len; i++)
      if ((unsigned char)c.state[i] < 0x20 || (unsigned char)c.state[i] > 0x7e)
        abort();
  }
  /* the child traceparent we would publish parses back to the trace */
  c.span = c.parent;
  swit__trace_format(&c, tp);
  h1 = (swit_header){"traceparent", tp, 11, 55};
  if (strlen(tp) != 55 || swit__trace_from_headers(&v1, &back) != 0 ||
      back.hi != c.hi || back.lo != c.lo || back.parent != c.parent ||
      back.sampled != c.sampled)
    abort();
  /* msg:trace_id() without a tracer reads the same header */
  if (swit__trace_id_hex(NULL, &m, hex) != 0) abort();
  memcpy(want, tp + 3, 32);
  want[32] = '\0';
  if (strcmp(hex, want) != 0) abort();
}

/* One buffer for the process: a 4 KB allocation per header made ASan's
 * allocator the bottleneck (and its madvise calls looked like hangs). */
static swit__buf b;

static void check_json(const char *s, size_t n)
{
  b.len = 0;
  if (swit__buf_json(&b, s, n) != 0) abort();
  if (b.len < 2 || b.data[0] != '"' || b.data[b.len - 1] != '"') abort();
  for (size_t i = 1; i + 1 < b.len; i++) {
    unsigned char c = (unsigned char)b.data[i];
    if (c < 0x20 || c == '"') abort();
    if (c == '\\') {
      if (i + 2 >= b.len) abort();
      i++;
      if (b.data[i] == 'u') i += 4;
      else if (b.data[i] != '"' && b.data[i] != '\\') abort();
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  swit_header hv[MAX_HEADERS];
  const char *s = (const char *)data;
  swit_msg_view v = {0};
  swit_ffi_msg m;

  v.headers = hv;
  v.nheaders = split(s, size, hv);
  check_context(&v, s, s + size);
  m = (swit_ffi_msg){.v = v};
  for (uint32_t i = 0; i < v.nheaders; i++) {
    const swit_header *f =
        swit__msg_header_find(&m, hv[i].name, hv[i].name_len);
    if (!f || f > &hv[i] || f->name_len != hv[i].name_len ||
        strncasecmp(f->name, hv[i].name, hv[i].name_len) != 0)
      abort();
    if (swit__trace_is_header(&hv[i]) !=
        ((hv[i].name_len == 11 && !strncasecmp(hv[i].name, "traceparent", 11)) ||
         (hv[i].name_len == 10 && !strncasecmp(hv[i].name, "tracestate", 10))))
      abort();
    check_json(hv[i].value, hv[i].value_len);
  }
  return 0;
}
