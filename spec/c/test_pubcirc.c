/*
 * test_pubcirc.c - the publish targets' circuit breakers (resil/pubcirc.c):
 * messaging.publishers.default.circuit_breaker. Outcomes are fed through
 * the interception chain as the core's publish path does (before, the
 * broker's result, after), so the breaker's rules are checked without a
 * failing broker; then a real publish through swit_host_publish is
 * refused at once while its topic's circuit is open. Also: a bad config
 * is refused, and a host without the key registers nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "api/api.h"
#include "resil/resil.h"

static const char yaml[] =
  "server: {name: t, log: {level: error}}\n"
  "messaging:\n"
  "  broker: {type: memory}\n"
  "  publishers:\n"
  "    default:\n"
  "      retry_attempts: 0\n"
  "      circuit_breaker: {enabled: true, failure_threshold: 2,\n"
  "                        recovery_timeout: 500ms, success_threshold: 1}\n";

/* One publish of `topic` through the chain with the broker's result rc:
 * the chain's own refusal (SWIT_E_*) or rc. */
static int publish(swit_host_t *h, const char *topic, int rc, int dead)
{
  swit_msg_view v;
  swit__pub_info pi = {NULL, 0, dead, NULL};
  char err[256] = "";
  int refused = 0;

  memset(&v, 0, sizeof v);
  v.topic = topic;
  v.topic_len = (uint32_t)strlen(topic);
  v.payload = "x";
  v.payload_len = 1;
  if (!swit__icpt_publish_before(h, &v, 1, &pi, &refused, err, sizeof err)) {
    CHECK(strstr(err, "its circuit is open") != NULL);
    swit__icpt_publish_after(h, &v, 1, refused, 0);
    return refused;
  }
  swit__icpt_publish_after(h, &v, 1, rc, 0);
  return rc;
}

int main(void)
{
  swit_host_t *h = NULL;
  char err[512];

  CHECK(swit_host_new_from_string(&h, yaml, NULL, err, sizeof err) == 0);
  CHECK(swit_host_start(h, err, sizeof err) == 0);
  CHECK(swit__pubcirc_state(h, "orders") == -1);       /* made on first use */

  /* two broker failures in a row open it; the caller's faults count not */
  CHECK(publish(h, "orders", SWIT_E_BROKER, 0) == SWIT_E_BROKER);
  CHECK(publish(h, "orders", SWIT_E_INVAL, 0) == SWIT_E_INVAL);
  CHECK(publish(h, "orders", SWIT_E_TOOBIG, 0) == SWIT_E_TOOBIG);
  CHECK(swit__pubcirc_state(h, "orders") == SWIT__CB_CLOSED);
  CHECK(publish(h, "orders", SWIT_E_TIMEDOUT, 0) == SWIT_E_TIMEDOUT);
  CHECK(swit__pubcirc_state(h, "orders") == SWIT__CB_OPEN);

  /* open: refused before the broker; other topics and dead letters pass */
  CHECK(publish(h, "orders", 0, 0) == SWIT_E_BROKER);
  CHECK(publish(h, "payments", 0, 0) == 0);
  CHECK(swit__pubcirc_state(h, "payments") == SWIT__CB_CLOSED);
  CHECK(publish(h, "orders", 0, 1) == 0);

  /* after recovery_timeout one trial publish; its success closes it */
  usleep(600 * 1000);
  CHECK(publish(h, "orders", 0, 0) == 0);
  CHECK(swit__pubcirc_state(h, "orders") == SWIT__CB_CLOSED);

  /* a failed trial opens it again */
  CHECK(publish(h, "orders", SWIT_E_STATE, 0) == SWIT_E_STATE);
  CHECK(publish(h, "orders", SWIT_E_FULL, 0) == SWIT_E_FULL);
  CHECK(swit__pubcirc_state(h, "orders") == SWIT__CB_OPEN);
  usleep(600 * 1000);
  CHECK(publish(h, "orders", SWIT_E_BROKER, 0) == SWIT_E_BROKER);
  CHECK(swit__pubcirc_state(h, "orders") == SWIT__CB_OPEN);

  /* a real publish while open fails at once with the reason (the
   * checks that it is still open run well within recovery_timeout) */
  CHECK(swit_host_publish(h, "orders", NULL, 0, "x", 1, NULL, NULL, err,
                          sizeof err) == SWIT_E_BROKER);
  CHECK(strstr(err, "publish to 'orders': its circuit is open") != NULL);
  CHECK(swit_host_publish(h, "payments", NULL, 0, "x", 1, NULL, NULL, err,
                          sizeof err) == 0);
  usleep(600 * 1000);                   /* the trial goes to the broker */
  CHECK(swit_host_publish(h, "orders", NULL, 0, "x", 1, NULL, NULL, err,
                          sizeof err) == 0);
  CHECK(swit__pubcirc_state(h, "orders") == SWIT__CB_CLOSED);

  /* in /metrics and /admin/status */
  {
    swit__buf b = {0};
    CHECK(swit__resil_metrics_render(h, &b) == 0);
    CHECK(strstr(b.data, "swit_publish_circuit_state{topic=\"orders\"} 0\n"));
    CHECK(strstr(b.data, "swit_publish_circuit_transitions_total{topic=\"orders\""
                         ",to=\"open\"} 3\n"));
    CHECK(strstr(b.data, "swit_publish_circuit_refused_total{topic=\"orders\"} 2\n"));
    b.len = 0;
    CHECK(swit__resil_status_json(h, &b) == 0);
    swit__buf_add(&b, "", 1);
    CHECK(strstr(b.data, "\"publish_circuits\":[") != NULL);
    CHECK(strstr(b.data, "{\"topic\":\"orders\",\"state\":\"closed\",\"opened\":3,"
                         "\"refused\":2}") != NULL);
    free(b.data);
  }
  CHECK(swit_host_stop(h, -1) == 0);
  swit_host_free(h);

  /* a breaker that can never open is refused; none registered without */
  h = NULL;
  CHECK(swit_host_new_from_string(&h,
        "messaging:\n  broker: {type: memory}\n  publishers:\n    default:\n"
        "      circuit_breaker: {enabled: true, failure_threshold: 0}\n",
        NULL, err, sizeof err) == SWIT_E_CONFIG);
  CHECK(strstr(err, "messaging.publishers.default.circuit_breaker") != NULL);
  CHECK(h == NULL);
  CHECK(swit_host_new_from_string(&h, "messaging:\n  broker: {type: memory}\n",
                                  NULL, err, sizeof err) == 0);
  CHECK(h->resil->pubcirc == NULL);
  swit_host_free(h);
  return check_done("pubcirc");
}
