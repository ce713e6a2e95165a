/*
 * clock.c - the monotonic clock and deadlines (see clock.h). Owned by
 * the base layer; the host and the adapters only call it.
 */
#include "base/clock.h"

#include <errno.h>

uint64_t swit__now_us(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int64_t swit__now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void swit__sleep_ms(int64_t ms)
{
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

  if (ms > 0) nanosleep(&ts, NULL);
}

swit__deadline swit__deadline_in(int64_t timeout_ms)
{
  int64_t now = swit__now_ms();
  swit__deadline d = {INT64_MAX};

  if (timeout_ms >= 0 && timeout_ms < INT64_MAX - now) d.at_ms = now + timeout_ms;
  return d;
}

int64_t swit__deadline_remaining_ms(swit__deadline d)
{
  int64_t now;

  if (d.at_ms == INT64_MAX) return INT64_MAX;
  now = swit__now_ms();
  return d.at_ms > now ? d.at_ms - now : 0;
}

int swit__deadline_passed(swit__deadline d)
{
  return d.at_ms != INT64_MAX && swit__now_ms() >= d.at_ms;
}

swit__deadline swit__deadline_min(swit__deadline d, int64_t step_ms)
{
  swit__deadline s = swit__deadline_in(step_ms);
  return s.at_ms < d.at_ms ? s : d;
}

struct timespec swit__deadline_timespec(swit__deadline d)
{
  struct timespec ts;
  ts.tv_sec = (time_t)(d.at_ms / 1000);
  ts.tv_nsec = (long)(d.at_ms % 1000) * 1000000L;
  return ts;
}

int swit__cond_init_monotonic(pthread_cond_t *cv)
{
  pthread_condattr_t a;
  int rc = pthread_condattr_init(&a);

  if (rc) return rc;
  rc = pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  if (rc == 0) rc = pthread_cond_init(cv, &a);
  pthread_condattr_destroy(&a);
  return rc;
}

int swit__cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu,
                          swit__deadline d)
{
  struct timespec ts;

  if (d.at_ms == INT64_MAX) return pthread_cond_wait(cv, mu);
  ts = swit__deadline_timespec(d);
  return pthread_cond_timedwait(cv, mu, &ts) == ETIMEDOUT ? ETIMEDOUT : 0;
}
