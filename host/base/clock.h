/*
 * clock.h - the one monotonic clock and deadline helper of the host and
 * every adapter. Nothing else computes deadlines or timespecs by hand.
 *
 *   swit__deadline d = swit__deadline_in(timeout_ms);   (< 0: never)
 *   while (!ready && !swit__deadline_passed(d))
 *     swit__cond_wait_until(&cv, &mu, d);               (cv: monotonic)
 *
 * Condition variables waited on with a deadline are made with
 * swit__cond_init_monotonic, so a wall-clock step never stretches or cuts
 * a wait. Safe from any thread; no state.
 */
#ifndef SWIT_CLOCK_H
#define SWIT_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

typedef struct swit__deadline {
  int64_t at_ms;   /* CLOCK_MONOTONIC milliseconds; INT64_MAX: never */
} swit__deadline;

int64_t swit__now_ms(void);  /* CLOCK_MONOTONIC, milliseconds */
uint64_t swit__now_us(void); /* CLOCK_MONOTONIC, microseconds */

/* A deadline `timeout_ms` from now; a negative timeout never passes. */
swit__deadline swit__deadline_in(int64_t timeout_ms);
/* Milliseconds left (0 once passed; INT64_MAX for never). */
int64_t swit__deadline_remaining_ms(swit__deadline d);
int swit__deadline_passed(swit__deadline d);
/* The earlier of `d` and `step_ms` from now (a bounded wait slice). */
swit__deadline swit__deadline_min(swit__deadline d, int64_t step_ms);
/* The absolute CLOCK_MONOTONIC time of `d`, for pthread_cond_timedwait
 * on a condition variable made with swit__cond_init_monotonic. */
struct timespec swit__deadline_timespec(swit__deadline d);

/* Sleep `ms` milliseconds (<= 0: return at once). */
void swit__sleep_ms(int64_t ms);

/* pthread_cond_init with a CLOCK_MONOTONIC condattr; 0 or an errno. */
int swit__cond_init_monotonic(pthread_cond_t *cv);
/* pthread_cond_timedwait until `d` (never passes: pthread_cond_wait);
 * 0, or ETIMEDOUT once `d` passed. */
int swit__cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu,
                          swit__deadline d);

#endif /* SWIT_CLOCK_H */
