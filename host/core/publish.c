/*
 * publish.c - publishing through the host's broker, from any thread.
 *
 * swit__publish is the one path every publish takes (Lua handlers, C
 * handlers, the C API, dead-lettering): it checks the messages
 * (swit__msg_check: topic, pointers, max_message_size - adapters do not
 * re-check) and that the host is connected, hands the messages to the
 * adapter and counts them as activity for the idle detector. A dead
 * letter is not held to max_message_size: the copy of an oversized
 * message, with the host's headers, must still reach its topic. Dead letters are published `mandatory`: the host acks
 * their originals once they are confirmed, so a copy the broker would
 * drop as unroutable must fail instead. Workers publish with timeout 0 so a full queue never
 * blocks a worker; swit_host_publish (embedders) waits for room and
 * retries transient failures with the default publisher's settings.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/host_int.h"
#include "core/msg_int.h"

/* The one path: the interceptors' publish hooks (in the chain's order,
 * then the reverse), the core's checks (well-formed views, the size
 * limit: after the hooks, which may rewrite), the connection, the adapter. */
static int publish_n(swit_host_t *h, const swit_msg_view *m, size_t n,
                     const swit_publish_opts *o, const swit__pub_info *pi,
                     uint64_t *confirm, char *err, size_t errlen)
{
  const swit__icpt_chain *c = &h->icpt;
  int64_t max = o->mandatory
                    ? 0 : h->cfg->messaging.resources.memory.max_message_size;
  uint64_t t0 = 0;
  int rc = SWIT_E_INVAL;

  if (c->any_publish) {
    const swit_msg_view *v = swit__icpt_publish_before(h, m, n, pi, &rc, err,
                                                       errlen);
    if (!v) {
      swit__icpt_publish_after(h, m, n, rc, 0);
      return rc;
    }
    m = v;
  }
  rc = swit__msg_check(m, n, max, err, errlen);
  if (rc == 0 && !atomic_load(&h->connected)) {
    snprintf(err, errlen, "publish to '%.*s': the broker is not connected",
             (int)m->topic_len, m->topic);
    rc = SWIT_E_STATE;
  } else if (rc == 0) {
    if (c->time_publish) t0 = swit__now_us();
    rc = h->ops->publish(h->broker, m, n, o, confirm, err, errlen);
    if (t0) t0 = swit__now_us() - t0;
    if (rc == 0) atomic_store(&h->last_activity_ms, swit__now_ms());
  }
  if (c->any_publish) swit__icpt_publish_after(h, m, n, rc, t0);
  return rc;
}

_Thread_local const char *swit__publish_remote;

/* What the interceptors are told of a publish from this thread. */
static swit__pub_info pub_info(swit_host_t *h)
{
  swit__worker *w = swit__current_worker;
  swit__pub_info pi = {NULL, 0, 0, NULL};

  if (w && w->host == h) {
    pi.w = w;
    pi.in_handler = atomic_load_explicit(&w->busy_since_us,
                                         memory_order_relaxed) != 0;
  }
  return pi;
}

int swit__publish(swit_host_t *h, const swit_msg_view *m, int timeout_ms,
                  uint64_t *confirm, char *err, size_t errlen)
{
  swit_publish_opts o = {.timeout_ms = timeout_ms};
  swit__pub_info pi = pub_info(h);
  return publish_n(h, m, 1, &o, &pi, confirm, err, errlen);
}

int swit__publish_dead_letter(swit__worker *w, const swit_msg_view *m,
                              const unsigned char *carry, int64_t ttl_ms,
                              uint64_t *confirm, char *err, size_t errlen)
{
  swit_publish_opts o = {.timeout_ms = 0, .mandatory = 1, .ttl_ms = ttl_ms};
  swit__pub_info pi = {w, 0, 1, carry};
  return publish_n(w->host, m, 1, &o, &pi, confirm, err, errlen);
}

/* Publish with the default publisher's waiting and retry policy. */
static int publish_retrying(swit_host_t *h, const swit_msg_view *m, size_t n,
                            uint64_t *confirm, char *err, size_t errlen)
{
  const swit_cfg_publisher *pc = swit__config_publisher(h->cfg, "default");
  int64_t delay = pc->retry_delay_ms;
  swit__pub_info pi = pub_info(h);
  int rc;

  for (int64_t retry = 0;; retry++) {
    swit_publish_opts o = {.timeout_ms = (int)pc->timeout_ms};
    rc = publish_n(h, m, n, &o, &pi, confirm, err, errlen);
    if ((rc != SWIT_E_FULL && rc != SWIT_E_BROKER) ||
        retry == pc->retry_attempts)
      break;
    swit__sleep_ms(delay);
    delay *= 2;
  }
  return rc;
}

static size_t count_headers(const char *const *hv)
{
  size_t n = 0;
  while (hv && hv[2 * n] && hv[2 * n + 1]) n++;
  return n;
}

int swit_host_publish(swit_host_t *h, const char *topic,
                      const void *key, size_t key_len,
                      const void *payload, size_t payload_len,
                      const char *const *headers, uint64_t *confirm_id,
                      char *err, size_t errlen)
{
  size_t nh = count_headers(headers);
  swit_header hv[nh ? nh : 1];
  swit_msg_view m = {
    .topic = topic, .topic_len = (uint32_t)strlen(topic),
    .key = key, .key_len = (uint32_t)key_len,
    .payload = payload, .payload_len = payload_len,
    .headers = hv, .nheaders = (uint32_t)nh, .partition = -1,
  };
  char ebuf[256];

  if (!err) err = ebuf, errlen = sizeof ebuf;
  for (size_t i = 0; i < nh; i++)
    hv[i] = (swit_header){headers[2 * i], headers[2 * i + 1],
                          (uint32_t)strlen(headers[2 * i]),
                          (uint32_t)strlen(headers[2 * i + 1])};
  return publish_retrying(h, &m, 1, confirm_id, err, errlen);
}

#define PUB_CHUNK 256

int swit_host_publish_batch(swit_host_t *h, const char *topic,
                            const swit_pub_t *msgs, size_t n,
                            size_t *accepted, char *err, size_t errlen)
{
  swit_msg_view v[PUB_CHUNK];
  uint32_t tlen = (uint32_t)strlen(topic);
  char ebuf[256];
  size_t done = 0;
  int rc = 0;

  if (!err) err = ebuf, errlen = sizeof ebuf;
  while (rc == 0 && done < n) {
    size_t k = n - done < PUB_CHUNK ? n - done : PUB_CHUNK;
    for (size_t i = 0; i < k; i++) {
      const swit_pub_t *p = &msgs[done + i];
      v[i] = (swit_msg_view){.topic = topic, .topic_len = tlen,
                             .key = p->key, .key_len = (uint32_t)p->key_len,
                             .payload = p->payload,
                             .payload_len = p->payload_len,
                             .partition = -1};
    }
    rc = publish_retrying(h, v, k, NULL, err, errlen);
    if (rc == 0) done += k;
  }
  if (accepted) *accepted = done;
  return rc;
}

int swit_host_flush(swit_host_t *h, int timeout_ms, char *err, size_t errlen)
{
  char ebuf[256];
  int rc;

  if (!err) err = ebuf, errlen = sizeof ebuf;
  if (atomic_load(&h->state) != SWIT__RUNNING || !atomic_load(&h->connected))
    return swit__fail(err, errlen, SWIT_E_STATE, "flush: the host is not "
                      "running with a connected broker");
  rc = h->ops->flush(h->broker, timeout_ms < 0 ? 0 : timeout_ms);
  if (rc)
    swit__fail(err, errlen, rc, "flush: the broker did not confirm every "
               "publish%s (%s)", rc == SWIT_E_TIMEDOUT ? " in time" : "",
               swit_strerror(rc));
  return rc;
}
