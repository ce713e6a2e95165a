/*
 * timer.c - the one timer loop of the resilience layer (resil.h): a
 * thread that calls its owner's scan function, then sleeps until the
 * earliest time it returned, or until kicked, or until stopped. circuit.c
 * (half-opening circuits) and limit.c (admitting held messages) each own
 * one; the owner's state and locks stay its own, this file only waits.
 *
 * A kick made while a scan runs is not lost: the thread compares the kick
 * count before the scan with the count after it and scans again at once.
 * The scan runs without t->mu held, so it may take any lock of its owner
 * and may itself kick.
 */
#include <time.h>

#include "base/clock.h"
#include "resil/resil.h"

void swit__rtimer_init(swit__rtimer *t)
{
  pthread_condattr_t ca;

  t->started = 0;
  t->stop = 0;
  atomic_init(&t->kicks, 0);
  pthread_mutex_init(&t->mu, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&t->cv, &ca);
  pthread_condattr_destroy(&ca);
}

static void *rtimer_main(void *arg)
{
  swit__rtimer *t = arg;

  for (;;) {
    unsigned seen = atomic_load(&t->kicks);
    int64_t next = t->scan(t->ud, (int64_t)swit__now_us());

    pthread_mutex_lock(&t->mu);
    if (!t->stop && atomic_load(&t->kicks) == seen) {
      if (next < 0) {
        pthread_cond_wait(&t->cv, &t->mu);
      } else {
        struct timespec ts = {(time_t)(next / 1000000),
                              (long)(next % 1000000) * 1000L};
        pthread_cond_timedwait(&t->cv, &t->mu, &ts);
      }
    }
    if (t->stop) {
      pthread_mutex_unlock(&t->mu);
      return NULL;
    }
    pthread_mutex_unlock(&t->mu);
  }
}

int swit__rtimer_start(swit__rtimer *t, swit__rtimer_scan scan, void *ud)
{
  t->scan = scan;
  t->ud = ud;
  if (pthread_create(&t->thread, NULL, rtimer_main, t) != 0) return -1;
  t->started = 1;
  return 0;
}

void swit__rtimer_kick(swit__rtimer *t)
{
  atomic_fetch_add(&t->kicks, 1);
  pthread_mutex_lock(&t->mu);
  pthread_cond_signal(&t->cv);
  pthread_mutex_unlock(&t->mu);
}

void swit__rtimer_destroy(swit__rtimer *t)
{
  if (t->started) {
    pthread_mutex_lock(&t->mu);
    t->stop = 1;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->thread, NULL);
    t->started = 0;
  }
  pthread_cond_destroy(&t->cv);
  pthread_mutex_destroy(&t->mu);
}
