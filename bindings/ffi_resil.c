/*
 * ffi_resil.c - the swit.breaker exports (swit_ffi_breaker_*): thin
 * wrappers over the named breakers of host/resil/breaker.c. Called on
 * the worker thread that owns the Lua state; never touch a lua_State.
 * A state with no host (swit check) gets id 0 and a breaker that is
 * always closed.
 */
#include "swit_ffi.h"
#include "core/host_int.h"
#include "resil/resil.h"

static swit__breaker *get(swit_ffi_worker *fw, int32_t id)
{
  swit__worker *w = (swit__worker *)fw;
  return w->host ? swit__named_breaker_get(w->host, id) : NULL;
}

int swit_ffi_breaker_get(swit_ffi_worker *fw, const char *name,
                         size_t name_len, int64_t failure_threshold,
                         int64_t success_threshold, int64_t recovery_ms,
                         double failure_rate, int64_t min_calls,
                         int64_t window_ms)
{
  swit__worker *w = (swit__worker *)fw;
  swit_cfg_breaker cfg = {
    .enabled = 1, .failure_threshold = failure_threshold,
    .success_threshold = success_threshold, .recovery_ms = recovery_ms,
    .failure_rate = failure_rate, .min_calls = min_calls,
    .window_ms = window_ms,
  };

  if (failure_threshold < 0 || failure_threshold > 1000000 ||
      success_threshold > 10000 || min_calls > 1000000 ||
      !(failure_rate == failure_rate))                /* NaN */
    return SWIT_E_INVAL;
  if (!w->host) return 0;
  return swit__breaker_named(w->host, name, name_len, &cfg);
}

int swit_ffi_breaker_allow(swit_ffi_worker *fw, int32_t id)
{
  swit__breaker *b = get(fw, id);
  return b ? swit__breaker_allow(b, swit__now_ms()) : 1;
}

void swit_ffi_breaker_record(swit_ffi_worker *fw, int32_t id, int outcome)
{
  swit__breaker *b = get(fw, id);
  uint8_t o = (uint8_t)outcome;

  if (!b || outcome < SWIT_BREAKER_SUCCESS || outcome > SWIT_BREAKER_CRITICAL)
    return;
  swit__breaker_record(b, swit__now_ms(), &o, 1);
}

int swit_ffi_breaker_state(swit_ffi_worker *fw, int32_t id)
{
  swit__breaker *b = get(fw, id);

  if (!b) return SWIT_BREAKER_CLOSED;
  swit__breaker_tick(b, swit__now_ms());      /* half-open when due */
  return atomic_load(&b->state);
}
