/*
 * conn.c - the connection state machine the adapters report through, and
 * the host's reconnect backoff policy (messaging.broker.reconnect).
 *
 * Adapters own their connections and threads; they call set_state on
 * every transition (from any thread) and ask backoff_ms how long to wait
 * before the next attempt. The host keeps the last state for health,
 * counts reconnect attempts and logs each transition once.
 */
#include <math.h>

#include "core/host_int.h"

static const char *const state_names[] = {
  "disconnected", "connecting", "connected", "reconnecting", "backing-off",
  "failed",
};

const char *swit__conn_state_name(int state)
{
  if (state < SWIT_CONN_DISCONNECTED || state > SWIT_CONN_FAILED)
    return "unknown";
  return state_names[state];
}

static void set_state(void *ud, swit_conn_state state, const char *detail)
{
  swit_host_t *h = ud;
  int old = atomic_exchange(&h->conn_state, (int)state);
  int level = SWIT_LOG_INFO;

  if (old == (int)state && !detail) return;
  if (state == SWIT_CONN_RECONNECTING || state == SWIT_CONN_CONNECTING)
    if (old != SWIT_CONN_DISCONNECTED) atomic_fetch_add(&h->reconnects, 1);
  if (state == SWIT_CONN_BACKING_OFF || state == SWIT_CONN_RECONNECTING)
    level = SWIT_LOG_WARN;
  if (state == SWIT_CONN_FAILED) level = SWIT_LOG_ERROR;
  swit__log(&h->log, level, "broker %s: %s -> %s%s%s", h->ops->name,
            swit__conn_state_name(old), swit__conn_state_name((int)state),
            detail ? ": " : "", detail ? detail : "");
}

/* delay * 2^(attempt-1), capped at max_delay, spread by +/-20%. */
static int64_t backoff_ms(void *ud, uint32_t attempt)
{
  swit_host_t *h = ud;
  const swit_cfg_reconnect *rc = &h->cfg->messaging.broker.reconnect;
  double d = (double)rc->delay_ms;
  uint64_t x;

  if (rc->max_attempts > 0 && attempt > (uint64_t)rc->max_attempts) return -1;
  for (uint32_t i = 1; i < attempt && d < (double)rc->max_delay_ms; i++) d *= 2;
  if (d > (double)rc->max_delay_ms) d = (double)rc->max_delay_ms;
  x = atomic_fetch_add(&h->jitter_seed, 0x9E3779B97F4A7C15ULL);
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 29;
  d *= 0.8 + 0.4 * (double)(x >> 11) / 9007199254740992.0;
  return (int64_t)llround(d);
}

void swit__conn_env(swit_host_t *h, swit_broker_env *env)
{
  env->set_state = set_state;
  env->backoff_ms = backoff_ms;
  env->host_ud = h;
}
