/*
 * ffi_exports.c - the C functions Lua calls, gathered in the one const
 * table swit__ffi_api (swit_ffi_api in swit_ffi.h) that the runtime hands
 * to each Lua state. Each is a thin, lua_State-free wrapper over the
 * core: it checks its arguments, calls the core, and reports through an
 * int code and out-parameters. Called on the worker thread that owns the
 * state. All static: libswit.so exports none of them.
 */
#include <stdio.h>
#include <string.h>

#include "ffi_int.h"
#include "core/host_int.h"
#include "core/msg_int.h"
#include "obs/obs.h"

/* A worker with no host, for states that only load scripts (swit check). */
static swit__worker placeholder;

static swit_ffi_worker *swit_ffi_worker_current(void)
{
  return swit__current_worker ? &swit__current_worker->ffi
                              : &placeholder.ffi;
}

static int swit_ffi_msg_header(const swit_ffi_msg *m, const char *name,
                               size_t name_len, const char **val,
                               size_t *vlen)
{
  const swit_header *h = swit__msg_header_find(m, name, name_len);
  if (!h) return SWIT_E_NOTFOUND;
  *val = h->value;
  *vlen = h->value_len;
  return 0;
}

static int swit_ffi_msg_header_at(const swit_ffi_msg *m, uint32_t i,
                                  const char **name, size_t *name_len,
                                  const char **val, size_t *vlen)
{
  const swit_header *h = swit__msg_header_at(m, i);
  if (!h) return SWIT_E_NOTFOUND;
  *name = h->name;
  *name_len = h->name_len;
  *val = h->value;
  *vlen = h->value_len;
  return 0;
}

static int swit_ffi_msg_set_header(swit_ffi_worker *w, swit_ffi_msg *m,
                                   const char *name, size_t name_len,
                                   const char *val, size_t vlen)
{
  return swit__msg_set_header((swit__worker *)w, m, name, name_len, val, vlen);
}

static int swit_ffi_msg_set_result(swit_ffi_worker *w, swit_ffi_msg *m,
                                   int code, const char *reason,
                                   size_t reason_len)
{
  return swit__msg_set_result((swit__worker *)w, m, code, reason, reason_len);
}

static int swit_ffi_publish(swit_ffi_worker *fw, const char *topic,
                            size_t topic_len, const char *key,
                            size_t key_len, const char *payload,
                            size_t payload_len, const swit_header *headers,
                            uint32_t nheaders, char *err, size_t errlen)
{
  swit__worker *w = (swit__worker *)fw;
  swit_msg_view v = {
    .topic = topic, .topic_len = (uint32_t)topic_len,
    .key = key, .key_len = (uint32_t)key_len,
    .payload = payload, .payload_len = payload_len,
    .headers = headers, .nheaders = nheaders, .partition = -1,
  };

  if (!w->host) {
    snprintf(err, errlen, "swit.publish: the host is not running "
             "(scripts are only being checked)");
    return SWIT_E_STATE;
  }
  for (size_t i = 0; i < topic_len; i++)
    if ((unsigned char)topic[i] < 0x20 || topic[i] == 0x7f) {
      snprintf(err, errlen, "swit.publish: the topic has a NUL or control "
               "character");
      return SWIT_E_INVAL;
    }
  return swit__publish(w->host, &v, 0, NULL, err, errlen);
}

/* tracing (host/obs/trace.c) */
static int swit_ffi_msg_trace_id(swit_ffi_worker *fw, const swit_ffi_msg *m,
                                 char *out)
{
  swit__worker *w = (swit__worker *)fw;
  return swit__trace_id_hex(w->host ? w : NULL, m, out);
}

/* Handler start/end of a message an interceptor flagged for timing. */
static void swit_ffi_span_mark(swit_ffi_worker *fw, uint32_t i, int end)
{
  swit__worker *w = (swit__worker *)fw;
  if (w->host) swit__icpt_mark(w, i, end);
}

static void swit_ffi_log(swit_ffi_worker *fw, int level, const char *text,
                         size_t len)
{
  swit__worker *w = (swit__worker *)fw;
  const swit__logger *lg = w->host ? &w->host->log : NULL;

  if (len > 1900) len = 1900;
  if (w->host)
    swit__log(lg, level, "[worker %u] %.*s", w->id, (int)len, text);
  else
    swit__log(lg, level, "%.*s", (int)len, text);
}

/* ------------------------------------------------------------------ */

const swit_ffi_api swit__ffi_api = {
  .abi = SWIT_FFI_ABI,
  .worker_current = swit_ffi_worker_current,
  .msg_header = swit_ffi_msg_header,
  .msg_header_at = swit_ffi_msg_header_at,
  .msg_set_header = swit_ffi_msg_set_header,
  .msg_set_result = swit_ffi_msg_set_result,
  .publish = swit_ffi_publish,
  .msg_trace_id = swit_ffi_msg_trace_id,
  .span_mark = swit_ffi_span_mark,
  .log = swit_ffi_log,
  .metric_register = swit__ffi_metric_register,
  .metric_add = swit__ffi_metric_add,
  .metric_gauge = swit__ffi_metric_gauge,
  .metric_observe = swit__ffi_metric_observe,
  .breaker_get = swit__ffi_breaker_get,
  .breaker_allow = swit__ffi_breaker_allow,
  .breaker_record = swit__ffi_breaker_record,
  .breaker_state = swit__ffi_breaker_state,
};
