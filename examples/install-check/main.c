/*
 * main.c - the smallest program built against an installed libswit, the
 * way an embedder outside this tree builds one:
 *
 *   cc main.c -o install-check $(pkg-config --cflags --libs libswit)
 *   or, with CMake: find_package(swit) and link swit::swit (CMakeLists.txt)
 *
 * It checks that the headers and the library loaded at run time are the
 * same version, runs a host on the in-process memory broker with one C
 * handler, publishes three messages, and sends the host's log lines
 * through its own callback. The install.check test builds and runs it
 * against a staged `make install`.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <swit/swit.h>

static atomic_int handled;

static int on_msg(swit_msg_t *msg, void *ud)
{
  size_t len;
  (void)ud;
  (void)swit_msg_payload(msg, &len);
  atomic_fetch_add(&handled, 1);
  return SWIT_ACK;
}

static void on_log(void *ud, int level, const char *text, size_t len)
{
  (void)len;
  if (level >= SWIT_LOG_WARN) fprintf(ud, "install-check: swit says: %s\n", text);
}

int main(void)
{
  static const char yaml[] =
    "server: {name: install-check}\n"
    "messaging:\n"
    "  broker: {type: memory}\n";
  char err[512];
  swit_host_t *h = NULL;
  int rc;

  if (swit_version_number() != SWIT_VERSION_NUMBER) {
    fprintf(stderr, "install-check: headers %s, library %s\n",
            SWIT_VERSION_STRING, swit_version());
    return 1;
  }
  rc = swit_host_new_from_string(&h, yaml, NULL, err, sizeof err);
  if (rc == 0) rc = swit_host_set_log(h, on_log, stderr);
  if (rc == 0)
    rc = swit_host_handle(h, "checks", NULL, SWIT_ORDER_KEY, on_msg, NULL,
                          err, sizeof err);
  if (rc == 0) rc = swit_host_start(h, err, sizeof err);
  for (int i = 0; rc == 0 && i < 3; i++)
    rc = swit_host_publish(h, "checks", "k", 1, "hello", 5, NULL, NULL, err,
                           sizeof err);
  if (rc == 0) rc = swit_host_wait_idle(h, 50, 10000);
  swit_host_free(h);
  if (rc != 0) {
    fprintf(stderr, "install-check: %s (%s)\n", swit_strerror(rc), err);
    return 1;
  }
  printf("install-check: %d messages handled by libswit %s\n",
         atomic_load(&handled), swit_version());
  return atomic_load(&handled) == 3 ? 0 : 1;
}
