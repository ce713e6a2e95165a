/*
 * embed.c - embedding swit in a C program, using only <swit/swit.h>.
 *
 * The host runs the Lua script greet.lua (beside this file) next to a C
 * handler registered here: C publishes "greetings", Lua handles them and
 * publishes "greetings.done", C counts those. Built and run by the tests
 * (ctest -R example.embed). Run it from anywhere: the script path is
 * resolved against this file's directory, passed in by the build.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <swit/swit.h>

#ifndef EMBED_DIR
#define EMBED_DIR "."
#endif

static const char config[] =
  "server: {name: embed, admin: {listen: \"off\"}}\n"
  "messaging:\n"
  "  broker: {type: memory}\n"
  "  resources:\n"
  "    subscribers: {worker_pool_size: 2}\n"
  "lua:\n"
  "  scripts: [greet.lua]\n";

static atomic_int done;

/* Runs on a worker thread; the message is borrowed for the call. */
static int on_done(swit_msg_t *msg, void *ud)
{
  size_t len;
  const char *text = swit_msg_payload(msg, &len);
  (void)ud;
  printf("C handler: %.*s\n", (int)len, text);
  atomic_fetch_add(&done, 1);
  return SWIT_ACK;
}

int main(void)
{
  static const char *const names[] = {"Ada", "Grace", "Edsger", "Barbara", "Ken"};
  swit_host_t *host = NULL;
  char err[512];
  int rc;

  rc = swit_host_new_from_string(&host, config, EMBED_DIR, err, sizeof err);
  if (rc == 0)
    rc = swit_host_handle(host, "greetings.done", NULL, SWIT_ORDER_KEY,
                          on_done, NULL, err, sizeof err);
  if (rc == 0) rc = swit_host_start(host, err, sizeof err);
  for (int i = 0; rc == 0 && i < 5; i++) {
    const char *headers[] = {"lang", "en", NULL};
    rc = swit_host_publish(host, "greetings", names[i], strlen(names[i]),
                           names[i], strlen(names[i]), headers, NULL, err,
                           sizeof err);
  }
  if (rc == 0) rc = swit_host_wait_idle(host, 200, 10000);
  if (rc != 0) {
    fprintf(stderr, "embed: %s (%s)\n", err, swit_strerror(rc));
    swit_host_free(host);
    return 1;
  }
  if ((rc = swit_host_stop(host, 5000)) != 0) {
    /* a handler was left behind: the host must not be freed */
    fprintf(stderr, "embed: stop: %s\n", swit_strerror(rc));
    return 1;
  }
  swit_host_free(host);
  printf("embed: 5 greetings handled in Lua, %d confirmations in C\n",
         atomic_load(&done));
  return atomic_load(&done) == 5 ? 0 : 1;
}
