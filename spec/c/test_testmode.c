/*
 * test_testmode.c - the test-mode API of swit.h (api/testrec.c), through
 * the public functions only: argument and state errors, the record
 * format (bytes with NUL and ':' kept), SWIT_E_TOOBIG with the size a
 * record needs, retries without backoff, and the advanceable timer
 * clock. The Lua side (swit.test) is covered by spec/swit_test.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "swit/swit.h"
#include "check.h"

/* A handler that fails its first two attempts, then acks. */
static int flaky(swit_msg_t *m, void *ud)
{
  (void)ud;
  if (swit_msg_attempt(m) < 3) {
    swit_msg_set_error(m, "not yet");
    return SWIT_RETRY;
  }
  return SWIT_ACK;
}

/* The kinds of the records in buf[0..len), space-separated, and the
 * first record's payload field into *payload (its length in *plen). */
static void kinds(const char *buf, size_t len, char *out, size_t cap,
                  const char **payload, size_t *plen)
{
  const char *p = buf, *end = buf + len;
  size_t o = 0;

  out[0] = '\0';
  while (p < end) {
    size_t nf = strtoul(p, NULL, 10);
    p = memchr(p, ':', (size_t)(end - p)) + 1;
    for (size_t f = 0; f < nf; f++) {
      size_t fl = strtoul(p, NULL, 10);
      p = (const char *)memchr(p, ':', (size_t)(end - p)) + 1;
      if (f == 0) o += (size_t)snprintf(out + o, cap - o, "%s%.*s", o ? " " : "",
                                        (int)fl, p);
      if (f == 3 && payload && !*payload) {
        *payload = p;
        *plen = fl;
      }
      p += fl;
    }
  }
}

int main(void)
{
  static const char yaml[] =
    "server: {name: t, admin: {listen: \"127.0.0.1:0\"}}\n"
    "messaging:\n"
    "  broker: {type: memory}\n"
    "  subscribers:\n"
    "    default: {max_attempts: 3, retry_delay: 1h, retry_max_delay: 1h}\n";
  char err[256], buf[4096], k[256];
  const char *payload = NULL;
  size_t len = 0, plen = 0;
  swit_host_t *h = NULL;
  int n;

  CHECK(swit_host_new_from_string(&h, yaml, NULL, err, sizeof err) == 0);
  CHECK(swit_host_test_take(h, buf, sizeof buf, &len) == SWIT_E_STATE);
  CHECK(swit_host_test_mode(NULL, 0, err, sizeof err) == SWIT_E_INVAL);
  CHECK(swit_host_test_mode(h, 64, err, sizeof err) == SWIT_E_INVAL);
  CHECK(strstr(err, "unknown flag") != NULL);
  CHECK(swit_host_test_mode(h, SWIT_TEST_RECORD | SWIT_TEST_NO_BACKOFF |
                            SWIT_TEST_NO_SERVERS, err, sizeof err) == 0);
  CHECK(swit_host_test_mode(h, SWIT_TEST_RECORD, err, sizeof err) ==
        SWIT_E_EXISTS);
  CHECK(swit_host_test_advance(h, 1000, 100) == SWIT_E_STATE); /* not running */
  CHECK(swit_host_handle(h, "in", NULL, SWIT_ORDER_KEY, flaky, NULL, err,
                         sizeof err) == 0);
  CHECK(swit_host_start(h, err, sizeof err) == 0);
  CHECK(swit_host_test_mode(h, SWIT_TEST_RECORD, err, sizeof err) ==
        SWIT_E_STATE);
  CHECK(swit_host_test_take(h, NULL, 1, &len) == SWIT_E_INVAL);
  CHECK(swit_host_test_take(h, buf, sizeof buf, &len) == 0);  /* none yet */

  /* a payload with NUL and ':' bytes; the retry_delay of 1h is skipped */
  CHECK(swit_host_publish(h, "in", "k", 1, "a\0:b", 4, NULL, NULL, err,
                          sizeof err) == 0);
  CHECK(swit_host_wait_idle(h, 20, 30000) == 0);
  CHECK(swit_host_test_take(h, buf, 1, &len) == SWIT_E_TOOBIG);
  CHECK(len > 1 && len < sizeof buf);
  n = swit_host_test_take(h, buf, sizeof buf, &len);
  CHECK(n == 4);          /* publish, retry, retry, ack */
  kinds(buf, len, k, sizeof k, &payload, &plen);
  CHECK(strcmp(k, "publish retry retry ack") == 0);
  CHECK(plen == 4 && payload && memcmp(payload, "a\0:b", 4) == 0);
  CHECK(memmem(buf, len, "7:not yet", 9) != NULL);
  CHECK(swit_host_test_take(h, buf, sizeof buf, &len) == 0 && len == 0);

  /* a delivery may settle before its publish returns: the publish is
   * still recorded first (it once came after, now and then) */
  for (int i = 0; i < 300; i++) {
    char key[16];
    int kl = snprintf(key, sizeof key, "k%d", i);
    const char *pl = NULL;
    size_t pll = 0;
    if (swit_host_publish(h, "in", key, (size_t)kl, "x", 1, NULL, NULL, err,
                          sizeof err) != 0 ||
        swit_host_wait_idle(h, 1, 30000) != 0 ||
        swit_host_test_take(h, buf, sizeof buf, &len) != 4) {
      CHECK(!"publish, wait, take of 4 records");
      break;
    }
    kinds(buf, len, k, sizeof k, &pl, &pll);
    if (strcmp(k, "publish retry retry ack") != 0) {
      fprintf(stderr, "round %d: records in the order %s\n", i, k);
      CHECK(strcmp(k, "publish retry retry ack") == 0);
      break;
    }
  }

  CHECK(swit_host_test_advance(h, 0, 100) == SWIT_E_INVAL);
  CHECK(swit_host_test_advance(h, 86400001, 100) == SWIT_E_INVAL);
  CHECK(swit_host_test_advance(h, 60000, 5000) == 0);   /* no timers: ok */
  CHECK(swit_host_stop(h, -1) == 0);
  CHECK(swit_host_test_advance(h, 1000, 100) == SWIT_E_STATE);
  swit_host_free(h);
  return check_done("testmode");
}
