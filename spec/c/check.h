/*
 * check.h - the few macros the C unit tests share: CHECK(expr) reports
 * file:line and the expression and counts a failure; check_done() prints
 * the tally and gives the exit code.
 */
#ifndef SWIT_CHECK_H
#define SWIT_CHECK_H

#include <stdio.h>

static int check_failures, check_passes;

#define CHECK(expr)                                                     \
  do {                                                                  \
    if (expr) {                                                         \
      check_passes++;                                                   \
    } else {                                                            \
      check_failures++;                                                 \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,  \
              #expr);                                                   \
    }                                                                   \
  } while (0)

static inline int check_done(const char *suite)
{
  printf("%s: %d checks passed, %d failed\n", suite, check_passes,
         check_failures);
  return check_failures ? 1 : 0;
}

#endif /* SWIT_CHECK_H */
