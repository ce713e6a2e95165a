/*
 * bench_util.h - the clock, the nap, the median and the run bookkeeping
 * every benchmark program in bench/ uses (header-only; each program
 * includes it once).
 */
#ifndef SWIT_BENCH_UTIL_H
#define SWIT_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* CLOCK_MONOTONIC in seconds. */
static inline double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void nap_ms(long ms)
{
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
  nanosleep(&ts, NULL);
}

/* qsort order of doubles. */
static inline int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Sorts v[0..n) and returns its median (the upper one for even n). */
static inline double median_of(double *v, int n)
{
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return v[n / 2];
}

/* The runs of one side of a case: the figures of the runs that
 * completed, and how many failed (lost, duplicated or did not finish
 * their messages). A failed run never enters the median; the program
 * exits non-zero if any run failed. */
typedef struct bench_runs {
  double v[64];
  int n, failed;
} bench_runs;

static inline void runs_add(bench_runs *r, double x)
{
  if (x < 0) r->failed++;
  else if (r->n < 64) r->v[r->n++] = x;
}

/* "median [min-max]" of the completed runs (with `decimals` digits
 * after the point), with the number of failed runs if any, into buf. */
static inline const char *runs_text(bench_runs *r, int decimals, char *buf,
                                    size_t len)
{
  int k;
  if (r->n == 0) {
    snprintf(buf, len, "no run completed (%d failed)", r->failed);
    return buf;
  }
  qsort(r->v, (size_t)r->n, sizeof *r->v, cmp_double);
  k = snprintf(buf, len, "%.*f [%.*f-%.*f]", decimals, r->v[r->n / 2],
               decimals, r->v[0], decimals, r->v[r->n - 1]);
  if (r->failed && k > 0 && (size_t)k < len)
    snprintf(buf + k, len - (size_t)k, " (%d failed)", r->failed);
  return buf;
}

/* The median of the completed runs (sorted by runs_text), 0 if none. */
static inline double runs_median(const bench_runs *r)
{
  return r->n ? r->v[r->n / 2] : 0;
}

#endif /* SWIT_BENCH_UTIL_H */
