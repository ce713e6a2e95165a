/*
 * nats_jspub.c - a JetStream publisher for the fault specs (cnats, not
 * swit): publishes COUNT messages "1".."COUNT" to SUBJECT with js_Publish,
 * retrying each until the stream acknowledged it (Nats-Msg-Id makes the
 * retries safe), optionally running a shell command once RESTART_AFTER
 * messages were acknowledged (the spec restarts nats-server there).
 *
 *   nats_jspub URL SUBJECT COUNT [RESTART_AFTER COMMAND]
 *
 * Prints "acked N" and exits 0 when every message was acknowledged (and
 * the command, if any, succeeded).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>

static void nap(long ms)
{
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
  nanosleep(&ts, NULL);
}

/* Publish message i until acknowledged (up to ~60 s). */
static int publish_one(jsCtx *js, const char *subject, long i)
{
  char data[32], id[300];
  jsPubOptions po;
  snprintf(data, sizeof data, "%ld", i);
  snprintf(id, sizeof id, "%s-%ld", subject, i);
  jsPubOptions_Init(&po);
  po.MsgId = id;
  po.MaxWait = 2000;
  for (int attempt = 0; attempt < 600; attempt++) {
    jsPubAck *pa = NULL;
    natsStatus s = js_Publish(&pa, js, subject, data, (int)strlen(data), &po,
                              NULL);
    jsPubAck_Destroy(pa);
    if (s == NATS_OK)
      return 0;
    nap(100);
  }
  return -1;
}

int main(int argc, char **argv)
{
  natsConnection *nc = NULL;
  natsOptions *o = NULL;
  jsCtx *js = NULL;
  long acked = 0;
  int restart_failed = 0;
  if (argc != 4 && argc != 6) {
    fprintf(stderr, "usage: nats_jspub URL SUBJECT COUNT [RESTART_AFTER CMD]\n");
    return 2;
  }
  long count = atol(argv[3]), restart_after = argc == 6 ? atol(argv[4]) : -1;
  if (natsOptions_Create(&o) || natsOptions_SetURL(o, argv[1]) ||
      natsOptions_SetMaxReconnect(o, -1) ||
      natsOptions_SetReconnectWait(o, 50) ||
      natsOptions_SetFailRequestsOnDisconnect(o, true) ||
      natsConnection_Connect(&nc, o) ||
      natsConnection_JetStream(&js, nc, NULL)) {
    fprintf(stderr, "nats_jspub: cannot connect to %s: %s\n", argv[1],
            nats_GetLastError(NULL));
    return 2;
  }
  for (long i = 1; i <= count; i++) {
    if (publish_one(js, argv[2], i)) {
      fprintf(stderr, "nats_jspub: message %ld never acknowledged\n", i);
      break;
    }
    acked++;
    if (acked == restart_after && system(argv[5]) != 0) {
      fprintf(stderr, "nats_jspub: restart command failed: %s\n", argv[5]);
      restart_failed = 1;
    }
  }
  printf("acked %ld\n", acked);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  natsOptions_Destroy(o);
  return acked == count && !restart_failed ? 0 : 1;
}
