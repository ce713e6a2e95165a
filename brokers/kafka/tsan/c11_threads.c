/*
 * c11_threads.c - built only under ThreadSanitizer (-DSWIT_SANITIZE=
 * thread), into the programs that load librdkafka (swit, bench_kafka).
 *
 * librdkafka (Debian 2.0.2) makes its threads, mutexes and condition
 * variables with C11 <threads.h>. GCC 12's TSan runtime does not
 * intercept thrd_create: a librdkafka thread then has no TSan state and
 * crashes in its first malloc (SEGV in SizeClassAllocator64LocalCache::
 * Allocate under getaddrinfo in rdk:broker-1). glibc's mtx_ and cnd_
 * call its internal pthread functions, which TSan does not see either,
 * so librdkafka's locking would be invisible to it. These definitions,
 * in the executable, take precedence over glibc's for librdkafka and
 * forward to the pthread functions TSan intercepts. glibc implements
 * them the same way (mtx_t and cnd_t are its pthread types). Owned by
 * the Kafka adapter.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

static int c11_rc(int rc)
{
  switch (rc) {
  case 0: return thrd_success;
  case EBUSY: return thrd_busy;
  case ETIMEDOUT: return thrd_timedout;
  case ENOMEM: return thrd_nomem;
  default: return thrd_error;
  }
}

typedef struct start { thrd_start_t fn; void *arg; } start;

static void *trampoline(void *p)
{
  start s = *(start *)p;
  free(p);
  return (void *)(intptr_t)s.fn(s.arg);
}

int thrd_create(thrd_t *t, thrd_start_t fn, void *arg)
{
  start *s = malloc(sizeof *s);
  int rc;

  if (!s) return thrd_nomem;
  *s = (start){fn, arg};
  if ((rc = pthread_create((pthread_t *)t, NULL, trampoline, s)) != 0)
    free(s);
  return c11_rc(rc);
}

int thrd_join(thrd_t t, int *res)
{
  void *r;
  int rc = pthread_join((pthread_t)t, &r);

  if (rc == 0 && res) *res = (int)(intptr_t)r;
  return c11_rc(rc);
}

int thrd_detach(thrd_t t)
{
  return c11_rc(pthread_detach((pthread_t)t));
}

int mtx_init(mtx_t *m, int type)
{
  pthread_mutexattr_t a;
  int rc;

  pthread_mutexattr_init(&a);
  if (type & mtx_recursive)
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
  rc = pthread_mutex_init((pthread_mutex_t *)m, &a);
  pthread_mutexattr_destroy(&a);
  return c11_rc(rc);
}

int mtx_lock(mtx_t *m) { return c11_rc(pthread_mutex_lock((pthread_mutex_t *)m)); }
int mtx_trylock(mtx_t *m) { return c11_rc(pthread_mutex_trylock((pthread_mutex_t *)m)); }
int mtx_unlock(mtx_t *m) { return c11_rc(pthread_mutex_unlock((pthread_mutex_t *)m)); }
void mtx_destroy(mtx_t *m) { pthread_mutex_destroy((pthread_mutex_t *)m); }

int mtx_timedlock(mtx_t *restrict m, const struct timespec *restrict ts)
{
  return c11_rc(pthread_mutex_timedlock((pthread_mutex_t *)m, ts));
}

int cnd_init(cnd_t *c) { return c11_rc(pthread_cond_init((pthread_cond_t *)c, NULL)); }
int cnd_signal(cnd_t *c) { return c11_rc(pthread_cond_signal((pthread_cond_t *)c)); }
int cnd_broadcast(cnd_t *c) { return c11_rc(pthread_cond_broadcast((pthread_cond_t *)c)); }
void cnd_destroy(cnd_t *c) { pthread_cond_destroy((pthread_cond_t *)c); }

int cnd_wait(cnd_t *c, mtx_t *m)
{
  return c11_rc(pthread_cond_wait((pthread_cond_t *)c, (pthread_mutex_t *)m));
}

/* TIME_UTC deadline: the realtime clock, pthread_cond_init's default */
int cnd_timedwait(cnd_t *restrict c, mtx_t *restrict m,
                  const struct timespec *restrict ts)
{
  return c11_rc(pthread_cond_timedwait((pthread_cond_t *)c,
                                       (pthread_mutex_t *)m, ts));
}

void call_once(once_flag *f, void (*fn)(void))
{
  pthread_once((pthread_once_t *)f, fn);
}
