/*
 * rabbitmq_publish.c - publishing with publisher confirms.
 *
 * Any thread calls swit__rmq_publish: each message is copied into a record
 * (pooled), the records are appended to `submitted` under mu, and the I/O
 * thread is woken. The I/O thread moves them to its send queue, sends them
 * on the publish channel (confirm mode, one sequence number each) and
 * keeps them, in sequence order, until the broker's basic.ack (or
 * basic.nack, `multiple` included) arrives. Finished records are handed
 * back in one lock hold per read cycle: waiting callers are told, room is
 * made, and the records return to the pool.
 *
 * At-least-once: when the connection goes, every record sent but not
 * confirmed goes back to the front of the send queue and is sent again on
 * the next connection; records never sent wait in order behind them. A
 * record the broker nacks is sent again (up to publishers.default.
 * retry_attempts times) unless a caller waits for it, in which case the
 * caller gets SWIT_E_BROKER and decides.
 *
 * Mandatory publishes (dead letters, swit_publish_opts.mandatory) go out
 * with AMQP's mandatory flag: a message no queue takes comes back as
 * basic.return before its basic.ack, and must then fail rather than
 * count as confirmed. A return names no sequence number, only the routing
 * key; the broker sends it while it handles that publish, so the message
 * is one of the mandatory records with that routing key still waiting
 * for their confirm. All of them fail (SWIT_E_BROKER): the returned one
 * is among them, and one that did reach a queue is published again by
 * its caller, a duplicate at worst, never a loss.
 *
 * `publish_buffer` bounds the records alive (handed over, queued or
 * unconfirmed): a publish waits up to its timeout for room, then gets
 * SWIT_E_FULL. A caller asking for confirm ids waits up to
 * messaging.publishers.default.timeout for them (SWIT_E_TIMEDOUT after
 * that; its messages stay queued and are still sent).
 */
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "rabbitmq_int.h"

/* ---------------------------------------------------------------------
 * The record pool (under mu) */

static void pub_destroy(rmq_pub *r)
{
  if (!r)
    return;
  free(r->buf);
  free(r);
}

/* Give records back to the pool; mu held. */
static void pool_put_locked(rmq_broker *b, rmq_pub *r)
{
  if (b->npub_free >= RMQ_POOL_MAX) {
    pub_destroy(r);
    return;
  }
  if (r->cap > RMQ_KEEP_BUF) {
    free(r->buf);
    r->buf = NULL;
    r->cap = 0;
  }
  r->next = b->pub_free;
  b->pub_free = r;
  b->npub_free++;
}

static void pool_put_list(rmq_broker *b, rmq_pub_list *l)
{
  pthread_mutex_lock(&b->mu);
  while (l->head) {
    rmq_pub *r = l->head;
    l->head = r->next;
    pool_put_locked(b, r);
  }
  pthread_mutex_unlock(&b->mu);
  l->tail = NULL;
  l->n = 0;
}

/* n fresh records in `out`: pooled ones first, then new ones. */
static int pool_take(rmq_broker *b, size_t n, rmq_pub_list *out)
{
  pthread_mutex_lock(&b->mu);
  while (out->n < n && b->pub_free) {
    rmq_pub *r = b->pub_free;
    b->pub_free = r->next;
    b->npub_free--;
    swit__rmq_pub_append(out, r);
  }
  pthread_mutex_unlock(&b->mu);
  while (out->n < n) {
    rmq_pub *r = calloc(1, sizeof *r);
    if (!r)
      return SWIT_E_NOMEM;
    swit__rmq_pub_append(out, r);
  }
  for (rmq_pub *r = out->head; r; r = r->next) {
    r->seq = r->id = 0;
    r->ticket = NULL;
    r->nacks = 0;
    r->failed = 0;
    r->mandatory = 0;
    r->returned = 0;
  }
  return 0;
}

/* ---------------------------------------------------------------------
 * Waiting (any thread) */

/* Wait on cv until the deadline; 0, or SWIT_E_TIMEDOUT when it passed. */
static int wait_until(rmq_broker *b, swit__deadline deadline)
{
  return swit__cond_wait_until(&b->cv, &b->mu, deadline) ? SWIT_E_TIMEDOUT : 0;
}

/* Room for n more records, waiting up to timeout_ms; mu held. */
static int wait_room(rmq_broker *b, size_t n, int64_t timeout_ms)
{
  swit__deadline deadline;
  int started = 0;
  while (b->pub_count && b->pub_count + n > (size_t)b->st.publish_buffer) {
    if (timeout_ms <= 0 || !b->running || swit__rmq_on_io_thread(b))
      return SWIT_E_FULL; /* (the I/O thread is what makes room) */
    if (!started) {
      deadline = swit__deadline_in(timeout_ms);
      started = 1;
    }
    if (wait_until(b, deadline))
      return SWIT_E_FULL;
  }
  return 0;
}

/* Wait for the ticket's records; mu held. Drops the caller's reference.
 * *returned: a record failed as unroutable. */
static int wait_ticket(rmq_broker *b, rmq_ticket *t, uint64_t *ids, size_t n,
                       int *returned)
{
  swit__deadline deadline = swit__deadline_in(b->confirm_timeout_ms);
  int rc = 0;
  while (t->pending && !rc)
    rc = wait_until(b, deadline);
  memcpy(ids, t->ids, n * sizeof *ids);
  if (!t->pending)
    rc = t->rc;
  *returned = t->returned;
  if (--t->refs == 0)
    free(t);
  return rc;
}

/* ---------------------------------------------------------------------
 * Publish and flush (any thread) */

static int fill_all(rmq_broker *b, rmq_pub_list *recs, const swit_msg_view *msgs,
                    char *err, size_t errlen)
{
  size_t i = 0;
  for (rmq_pub *r = recs->head; r; r = r->next, i++) {
    int rc = swit__rmq_pub_fill(b, r, &msgs[i], err, errlen);
    if (rc)
      return rc;
    if ((int64_t)r->body.len > b->st.max_publish_size)
      return swit__fail(err, errlen, SWIT_E_TOOBIG, "publish to '%.*s': "
                        "%zu bytes is over messaging.broker.config."
                        "max_publish_size (%lld); nothing was published",
                        (int)msgs[i].topic_len, msgs[i].topic, r->body.len,
                        (long long)b->st.max_publish_size);
  }
  return 0;
}

/* Hand the records over; mu held. */
static void hand_over(rmq_broker *b, rmq_pub_list *recs, rmq_ticket *t)
{
  uint32_t i = 0;
  for (rmq_pub *r = recs->head; r; r = r->next, i++) {
    r->id = ++b->next_id;
    r->ticket = t;
    r->index = i;
  }
  b->pub_count += recs->n;
  swit__rmq_pub_splice(&b->submitted, recs, 0);
  atomic_store(&b->work, 1);
}

static int refuse_state(rmq_broker *b, char *err, size_t errlen)
{
  if (b->gave_up)
    return swit__fail(err, errlen, SWIT_E_BROKER, "publish: RabbitMQ "
                      "unreachable, reconnect attempts exhausted: %s",
                      b->last_error);
  if (!b->running)
    return swit__fail(err, errlen, SWIT_E_STATE,
                      "publish: the RabbitMQ adapter is not connected");
  return 0;
}

int swit__rmq_publish(rmq_broker *b, const swit_msg_view *msgs, size_t n,
                      const swit_publish_opts *o, uint64_t *ids,
                      char *err, size_t errlen)
{
  rmq_pub_list recs = { 0 };
  rmq_ticket *t = NULL;
  int rc;
  if (ids)
    memset(ids, 0, n * sizeof *ids);
  if (!n)
    return 0;
  if (ids && swit__rmq_on_io_thread(b))
    return swit__fail(err, errlen, SWIT_E_STATE, "publish: waiting for "
                      "a confirm inside a sink call would deadlock");
  if ((rc = pool_take(b, n, &recs))) {
    swit__fail(err, errlen, rc, "publish: out of memory");
    goto fail;
  }
  if ((rc = fill_all(b, &recs, msgs, err, errlen)))
    goto fail;
  for (rmq_pub *r = recs.head; r; r = r->next) {
    r->mandatory = o && o->mandatory;
    if (o && o->ttl_ms > 0) {      /* per-message TTL: it wins over a header */
      int k = snprintf(r->expiration, sizeof r->expiration, "%lld",
                       (long long)o->ttl_ms);
      r->props.expiration = (amqp_bytes_t){ (size_t)k, r->expiration };
      r->props._flags |= AMQP_BASIC_EXPIRATION_FLAG;
    }
  }
  if (ids && !(t = calloc(1, sizeof *t + n * sizeof *t->ids))) {
    rc = swit__fail(err, errlen, SWIT_E_NOMEM, "publish: out of memory");
    goto fail;
  }
  int64_t room_ms = !o || o->timeout_ms < 0 ? b->confirm_timeout_ms : o->timeout_ms;
  pthread_mutex_lock(&b->mu);
  rc = refuse_state(b, err, errlen);
  if (!rc && (rc = wait_room(b, n, room_ms)))
    swit__fail(err, errlen, rc, "publish to '%.*s': %zu messages wait for "
               "a confirm (messaging.broker.config.publish_buffer)",
               (int)msgs[0].topic_len, msgs[0].topic, b->pub_count);
  if (rc) {
    pthread_mutex_unlock(&b->mu);
    goto fail;
  }
  if (t) {
    t->pending = n;
    t->refs = (int)n + 1;
  }
  hand_over(b, &recs, t);
  if (atomic_load(&b->sleeping))
    swit__rmq_wake(b);
  int returned = 0;
  if (t && (rc = wait_ticket(b, t, ids, n, &returned)))
    swit__fail(err, errlen, rc, rc == SWIT_E_TIMEDOUT
               ? "publish to '%.*s': no confirm from RabbitMQ within "
                     "messaging.publishers.default.timeout (the message stays "
                     "queued and may still be published)"
               : returned
               ? "publish to '%.*s': no queue is bound for this routing "
                     "key on the exchange (basic.return of a mandatory "
                     "publish); nothing keeps the message"
               : "publish to '%.*s': RabbitMQ refused the message "
                     "(basic.nack) or the adapter stopped",
               (int)msgs[0].topic_len, msgs[0].topic);
  pthread_mutex_unlock(&b->mu);
  return rc;
fail:
  free(t);
  pool_put_list(b, &recs);
  return rc;
}

int swit__rmq_flush(rmq_broker *b, int timeout_ms)
{
  swit__deadline deadline;
  int rc = 0;
  if (swit__rmq_on_io_thread(b))
    return SWIT_E_STATE;
  deadline = swit__deadline_in(timeout_ms < 0 ? 0 : timeout_ms);
  pthread_mutex_lock(&b->mu);
  while (b->pub_count && b->running && !b->gave_up && !rc)
    rc = wait_until(b, deadline);
  if (b->pub_count)
    rc = SWIT_E_TIMEDOUT;
  pthread_mutex_unlock(&b->mu);
  return rc;
}

/* ---------------------------------------------------------------------
 * The I/O thread's side */

/* Bytes that may still go into the socket without blocking: rabbitmq-c
 * writes with no deadline, so a broker that stops reading (frozen, or a
 * zero TCP window) would otherwise stop the I/O thread, heartbeat checks
 * included. */
static size_t socket_room(const rmq_broker *b)
{
  int queued = 0;
  if (ioctl(amqp_get_sockfd(b->conn), SIOCOUTQ, &queued) < 0 || queued < 0)
    return 0;
  return (size_t)queued < b->send_limit ? b->send_limit - (size_t)queued : 0;
}

/* Hold partial TCP segments while a burst goes out (TCP_CORK): the
 * broker then reads a few large segments instead of one per frame. */
static void cork(const rmq_broker *b, int on)
{
  setsockopt(amqp_get_sockfd(b->conn), IPPROTO_TCP, TCP_CORK, &on, sizeof on);
}

int swit__rmq_pub_send(rmq_broker *b)
{
  pthread_mutex_lock(&b->mu);
  swit__rmq_pub_splice(&b->outq, &b->submitted, 0);
  pthread_mutex_unlock(&b->mu);
  amqp_bytes_t exchange = amqp_cstring_bytes(b->st.exchange);
  if (b->alarm)
    return 0;
  size_t room = b->conn && b->outq.head ? socket_room(b) : 0;
  int corked = b->conn && b->outq.n > 1;
  b->send_blocked = 0;
  if (corked)
    cork(b, 1);
  for (int k = 0; b->conn && b->outq.head && k < RMQ_SEND_BUDGET; k++) {
    rmq_pub *r = b->outq.head;
    size_t size = r->cap + 256; /* frames, properties and all */
    if (size > room && (k || room < b->send_limit)) {
      b->send_blocked = 1; /* (one message always goes into an empty socket) */
      break;
    }
    room = room > size ? room - size : 0;
    int rc = amqp_basic_publish(b->conn, RMQ_CH_PUB, exchange, r->rkey,
                                r->mandatory, 0, &r->props, r->body);
    if (rc < 0) {
      swit__rmq_conn_lost(b, amqp_error_string2(rc));
      return SWIT_E_BROKER;
    }
    swit__rmq_pub_unlink(&b->outq, r);
    r->seq = ++b->pub_seq;
    r->returned = 0; /* (a return on an older connection is moot) */
    swit__rmq_pub_append(&b->unconfirmed, r);
  }
  if (corked && b->conn)
    cork(b, 0);
  return 0;
}

/* One record's fate after an ack or a nack. */
static void finish(rmq_broker *b, rmq_pub *r, int ok)
{
  swit__rmq_pub_unlink(&b->unconfirmed, r);
  if (r->returned) { /* unroutable: the ack confirms nothing */
    r->failed = 1;
    if (!r->ticket)
      RMQ_LOG(b, SWIT_LOG_ERROR, "rabbitmq: no queue took a mandatory "
              "message to '%.*s' (basic.return) and nobody waits for it; "
              "dropped", (int)r->rkey.len, (const char *)r->rkey.bytes);
    swit__rmq_pub_append(&b->done, r);
    return;
  }
  if (!ok && !r->ticket && r->nacks < (uint32_t)b->publish_retries) {
    r->nacks++;
    r->seq = 0;
    swit__rmq_pub_append(&b->outq, r);
    RMQ_LOG(b, SWIT_LOG_WARN, "rabbitmq: broker refused a message to '%.*s' "
            "(basic.nack); sending it again (%u of %lld)", (int)r->rkey.len,
            (const char *)r->rkey.bytes, r->nacks, (long long)b->publish_retries);
    return;
  }
  if (!ok) {
    r->failed = 1;
    if (!r->ticket)
      RMQ_LOG(b, SWIT_LOG_ERROR, "rabbitmq: broker refused a message to "
              "'%.*s' %u times (basic.nack); dropped", (int)r->rkey.len,
              (const char *)r->rkey.bytes, r->nacks + 1);
  }
  swit__rmq_pub_append(&b->done, r);
}

void swit__rmq_pub_confirm(rmq_broker *b, uint64_t tag, int multiple, int ok)
{
  if (multiple && tag == 0)
    tag = UINT64_MAX; /* 0 with multiple: everything outstanding */
  rmq_pub *r = b->unconfirmed.head;
  while (r && r->seq <= tag) {
    rmq_pub *next = r->next;
    if (multiple || r->seq == tag) {
      finish(b, r, ok);
      if (!multiple)
        break;
    }
    r = next;
  }
}

void swit__rmq_pub_returned(rmq_broker *b, const amqp_basic_return_t *ret)
{
  size_t n = 0;
  for (rmq_pub *r = b->unconfirmed.head; r; r = r->next)
    if (r->mandatory && !r->returned && r->rkey.len == ret->routing_key.len &&
        memcmp(r->rkey.bytes, ret->routing_key.bytes, r->rkey.len) == 0) {
      r->returned = 1;
      n++;
    }
  RMQ_LOG(b, SWIT_LOG_WARN, "rabbitmq: the broker returned a mandatory "
          "message to '%.*s': %u %.*s (no queue is bound for it); %zu "
          "publish(es) to it fail", (int)ret->routing_key.len,
          (const char *)ret->routing_key.bytes, ret->reply_code,
          (int)ret->reply_text.len, (const char *)ret->reply_text.bytes, n);
}

/* A record is done: tell its ticket; mu held. */
static void ticket_done(rmq_pub *r)
{
  rmq_ticket *t = r->ticket;
  if (!t)
    return;
  t->ids[r->index] = r->failed ? 0 : r->id;
  if (r->failed && !t->rc)
    t->rc = SWIT_E_BROKER;
  if (r->returned)
    t->returned = 1;
  t->pending--;
  if (--t->refs == 0)
    free(t);
  r->ticket = NULL;
}

void swit__rmq_pub_complete(rmq_broker *b)
{
  if (!b->done.head)
    return;
  pthread_mutex_lock(&b->mu);
  b->pub_count -= b->done.n;
  while (b->done.head) {
    rmq_pub *r = b->done.head;
    b->done.head = r->next;
    ticket_done(r);
    pool_put_locked(b, r);
  }
  b->done.tail = NULL;
  b->done.n = 0;
  pthread_cond_broadcast(&b->cv);
  pthread_mutex_unlock(&b->mu);
}

void swit__rmq_pub_requeue(rmq_broker *b)
{
  for (rmq_pub *r = b->unconfirmed.head; r; r = r->next)
    r->seq = 0;
  if (b->unconfirmed.n)
    RMQ_LOG(b, SWIT_LOG_WARN, "rabbitmq: %zu published message(s) were not "
            "confirmed before the connection went; they will be sent again",
            b->unconfirmed.n);
  swit__rmq_pub_splice(&b->outq, &b->unconfirmed, 1);
  b->pub_seq = 0;
}

void swit__rmq_pub_fail_all(rmq_broker *b, int rc)
{
  pthread_mutex_lock(&b->mu);
  swit__rmq_pub_splice(&b->outq, &b->submitted, 0);
  pthread_mutex_unlock(&b->mu);
  swit__rmq_pub_splice(&b->outq, &b->unconfirmed, 1);
  size_t lost = 0;
  for (rmq_pub *r = b->outq.head; r; r = r->next) {
    r->failed = 1;
    lost += r->ticket == NULL;
  }
  if (lost)
    RMQ_LOG(b, SWIT_LOG_ERROR, "rabbitmq: %zu message(s) could not be "
            "published (%s)", lost, swit_strerror(rc));
  swit__rmq_pub_splice(&b->done, &b->outq, 0);
  swit__rmq_pub_complete(b);
}

static void list_destroy(rmq_pub_list *l)
{
  while (l->head) {
    rmq_pub *r = l->head;
    l->head = r->next;
    pub_destroy(r);
  }
  l->tail = NULL;
  l->n = 0;
}

void swit__rmq_pubs_free(rmq_broker *b)
{
  list_destroy(&b->submitted);
  list_destroy(&b->outq);
  list_destroy(&b->unconfirmed);
  list_destroy(&b->done);
  while (b->pub_free) {
    rmq_pub *r = b->pub_free;
    b->pub_free = r->next;
    pub_destroy(r);
  }
  b->npub_free = 0;
}
