/*
 * nats_publish.c - publishing: core NATS, or JetStream when
 * messaging.broker.config.jetstream is true.
 *
 * Core NATS: natsConnection_Publish (no headers, no key: no natsMsg is
 * built) or natsConnection_PublishMsg. With confirm_ids, the batch is
 * followed by a PING/PONG round trip (natsConnection_FlushTimeout): once
 * it returns the server has received every message; the confirm ids are a
 * local sequence. There is nothing more durable in core NATS.
 *
 * JetStream: the first publish to a subject makes sure a stream captures
 * it (swit__nats_stream_for, creating one if create_streams) and remembers
 * the subject (a bounded set, cleared when full). With confirm_ids each
 * message goes through js_PublishMsg and waits for its PubAck (the confirm
 * id is the stream sequence); without, js_PublishMsgAsync, whose failures
 * the async error handler logs and counts. A Nats-Msg-Id header, when the
 * message has one, lets the stream drop duplicates within its
 * duplicate_window.
 *
 * While the connection is down, cnats keeps publishes in its reconnect
 * buffer (reconnect_buffer bytes); beyond it a publish fails with
 * SWIT_E_FULL and says so. Any thread may publish.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nats_int.h"

/* ---------------------------------------------------------------------
 * Errors */

static int pub_error(nats_broker *b, natsStatus s, const char *subj,
                     size_t size, char *err, size_t errlen)
{
  switch (s) {
  case NATS_INSUFFICIENT_BUFFER:
    return swit__fail(err, errlen, SWIT_E_FULL, "publish to '%s': the "
                      "connection to %s is down and the reconnect "
                      "buffer (messaging.broker.config.reconnect_buffer"
                      ", %lld bytes) is full; message not published",
                      subj, b->servers_text,
                      (long long)b->st.reconnect_buffer);
  case NATS_MAX_PAYLOAD:
    return swit__fail(err, errlen, SWIT_E_TOOBIG, "publish to '%s': "
                      "%zu bytes exceed the server's max_payload (%lld)",
                      subj, size,
                      (long long)natsConnection_GetMaxPayload(b->nc));
  case NATS_CONNECTION_CLOSED:
    return swit__fail(err, errlen, SWIT_E_STATE, "publish to '%s': the "
                      "NATS connection is closed", subj);
  case NATS_TIMEOUT:
    return swit__fail(err, errlen, SWIT_E_TIMEDOUT, "publish to '%s': "
                      "no confirmation from %s within %lld ms", subj,
                      b->servers_text, (long long)b->confirm_timeout_ms);
  case NATS_NO_RESPONDERS:
    return swit__fail(err, errlen, SWIT_E_BROKER, "publish to '%s': no "
                      "JetStream stream captures the subject", subj);
  default:
    return swit__fail(err, errlen, SWIT_E_BROKER, "publish to '%s': %s",
                      subj, swit__nats_errtext(s));
  }
}

/* ---------------------------------------------------------------------
 * Subjects known to be captured by a stream */

static size_t slot_of(const char *subj, size_t cap)
{
  uint32_t h = 2166136261u;
  for (; *subj; subj++) {
    h ^= (unsigned char)*subj;
    h *= 16777619u;
  }
  return h & (cap - 1);
}

enum { KNOWN_CAP = NATS_KNOWN_SUBJECTS * 2 };

static int known(nats_broker *b, const char *subj)
{
  int found = 0;
  pthread_rwlock_rdlock(&b->subj_mu);
  if (b->subjects)
    for (size_t i = slot_of(subj, KNOWN_CAP); b->subjects[i];
         i = (i + 1) & (KNOWN_CAP - 1))
      if (!strcmp(b->subjects[i], subj)) {
        found = 1;
        break;
      }
  pthread_rwlock_unlock(&b->subj_mu);
  return found;
}

static void clear_known(nats_broker *b)
{
  for (size_t i = 0; b->subjects && i < KNOWN_CAP; i++) {
    free(b->subjects[i]);
    b->subjects[i] = NULL;
  }
  b->nsubjects = 0;
}

static void remember(nats_broker *b, const char *subj)
{
  pthread_rwlock_wrlock(&b->subj_mu);
  if (!b->subjects)
    b->subjects = calloc(KNOWN_CAP, sizeof *b->subjects);
  if (b->subjects && b->nsubjects >= NATS_KNOWN_SUBJECTS)
    clear_known(b);
  if (b->subjects) {
    size_t i = slot_of(subj, KNOWN_CAP);
    while (b->subjects[i] && strcmp(b->subjects[i], subj))
      i = (i + 1) & (KNOWN_CAP - 1);
    if (!b->subjects[i] && (b->subjects[i] = strdup(subj)))
      b->nsubjects++;
  }
  pthread_rwlock_unlock(&b->subj_mu);
}

void swit__nats_subjects_free(nats_broker *b)
{
  clear_known(b);
  free(b->subjects);
  b->subjects = NULL;
}

static int ensure_stream(nats_broker *b, const char *subj, char *err,
                         size_t errlen)
{
  char name[256];
  if (known(b, subj))
    return 0;
  int rc = swit__nats_stream_for(b, subj, name, sizeof name, 1, err, errlen);
  if (!rc)
    remember(b, subj);
  return rc;
}

/* ---------------------------------------------------------------------
 * One message */

static int publish_core(nats_broker *b, const swit_msg_view *v,
                        const char *subj, char *err, size_t errlen)
{
  natsStatus s;
  if (!v->nheaders && !v->key_len) {
    s = natsConnection_Publish(b->nc, subj, v->payload, (int)v->payload_len);
  } else {
    natsMsg *m;
    int rc = swit__nats_msg_build(v, subj, &m, err, errlen);
    if (rc)
      return rc;
    s = natsConnection_PublishMsg(b->nc, m);
    natsMsg_Destroy(m);
  }
  return s == NATS_OK ? 0 : pub_error(b, s, subj, v->payload_len, err, errlen);
}

static int publish_js(nats_broker *b, const swit_msg_view *v,
                      const char *subj, uint64_t *confirm, char *err,
                      size_t errlen)
{
  natsMsg *m = NULL;
  jsPubOptions po;
  jsErrCode jerr = 0;
  natsStatus s;
  int rc = ensure_stream(b, subj, err, errlen);
  if (!rc)
    rc = swit__nats_msg_build(v, subj, &m, err, errlen);
  if (rc)
    return rc;
  jsPubOptions_Init(&po);
  po.MaxWait = b->confirm_timeout_ms;
  if (confirm) {
    jsPubAck *pa = NULL;
    s = js_PublishMsg(&pa, b->js, m, &po, &jerr);
    if (s == NATS_OK)
      *confirm = pa->Sequence ? pa->Sequence : 1;
    jsPubAck_Destroy(pa);
  } else {
    s = js_PublishMsgAsync(b->js, &m, NULL); /* m is NULL once owned */
  }
  natsMsg_Destroy(m);
  if (s == NATS_TIMEOUT && !confirm)
    return swit__fail(err, errlen, SWIT_E_FULL, "publish to '%s': too "
                      "many JetStream publishes wait for their PubAck",
                      subj);
  return s == NATS_OK ? 0 : pub_error(b, s, subj, v->payload_len, err, errlen);
}

int swit__nats_publish(nats_broker *b, const swit_msg_view *msgs, size_t n,
                       const swit_publish_opts *o, uint64_t *confirm_ids,
                       char *err, size_t errlen)
{
  char subj[NATS_SUBJECT_MAX];
  int js = b->st.jetstream, rc = 0;
  size_t done = 0;
  (void)o; /* cnats never waits for room: it buffers or fails */
  for (; !rc && done < n; done++) {
    rc = swit__nats_subject(&msgs[done], subj, sizeof subj, err, errlen);
    if (rc)
      break;
    rc = js ? publish_js(b, &msgs[done], subj,
                         confirm_ids ? &confirm_ids[done] : NULL, err, errlen)
            : publish_core(b, &msgs[done], subj, err, errlen);
    if (rc)
      break;
  }
  if (js || !confirm_ids || !done)
    return rc;
  natsStatus s = natsConnection_FlushTimeout(b->nc, b->confirm_timeout_ms);
  if (s != NATS_OK)
    return pub_error(b, s, subj, 0, err, errlen);
  for (size_t i = 0; i < done; i++)
    confirm_ids[i] = atomic_fetch_add(&b->confirm_seq, 1) + 1;
  return rc;
}
