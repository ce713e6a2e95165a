/*
 * rabbitmq_io.c - the I/O thread of the RabbitMQ adapter: the only thread
 * that touches the rabbitmq-c connection.
 *
 * Its loop, while connected: run handed-over commands (subscribe,
 * unsubscribe), apply settles (acks coalesced with `multiple`), apply
 * pause/resume (basic.cancel / basic.consume), send handed-over publishes,
 * then read every frame already available without blocking: deliveries
 * are assembled into slots and passed to the sink in runs of up to
 * RMQ_BATCH per subscription; publisher confirms finish records. With
 * nothing to do it sleeps in poll() on the socket and an eventfd that
 * other threads write after handing work over (only when `sleeping` is
 * set: both flags are seq_cst, so a hand-over is never missed).
 *
 * Heartbeats: rabbitmq-c sends ours whenever a read is attempted and one
 * is due, and the loop reads at least every heartbeat/4. The broker's are
 * checked here: no input for two heartbeat intervals means the
 * connection is dead. A watchdog thread (the end of this file) makes the
 * same check for when the I/O thread is stuck inside a rabbitmq-c write.
 *
 * Delivery tags belong to the channel they came on: a slot remembers the
 * connection generation; settles of slots from an older generation are
 * dropped (the broker has requeued those messages already), never sent
 * on the new channel.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "rabbitmq_int.h"

static _Thread_local const rmq_broker *io_self;

int swit__rmq_on_io_thread(const rmq_broker *b)
{
  return io_self == b;
}

void swit__rmq_wake(rmq_broker *b)
{
  uint64_t one = 1;
  ssize_t w = write(b->efd, &one, sizeof one);
  (void)w; /* a full counter still wakes the thread */
}

/* ---------------------------------------------------------------------
 * Commands */

static rmq_sub **sub_link_of(rmq_broker *b, rmq_sub *s)
{
  rmq_sub **pp = &b->subs;
  while (*pp && *pp != s)
    pp = &(*pp)->next;
  return pp;
}

static void run_subscribe(rmq_broker *b, rmq_cmd *c)
{
  rmq_sub *s = c->sub;
  *sub_link_of(b, NULL) = s; /* append */
  s->next = NULL;
  if (!b->conn)
    return; /* declared when the connection comes */
  int rc = swit__rmq_sub_declare(b, s, c->err, sizeof c->err);
  if (rc == SWIT_E_CONFIG) {
    *sub_link_of(b, s) = NULL;
    c->rc = rc;
    return;
  }
  if (rc == 0)
    swit__rmq_sub_sync(b, s);
}

static void run_unsubscribe(rmq_broker *b, rmq_cmd *c)
{
  rmq_sub *s = c->sub, **pp = sub_link_of(b, s);
  if (b->conn && s->consuming)
    swit__rmq_sub_cancel(b, s);
  if (*pp)
    *pp = s->next;
  if (b->assembling && b->assembling->sub == s)
    b->assembling->sub = NULL;
}

static void run_command(rmq_broker *b, rmq_cmd *c)
{
  c->rc = 0;
  if (c->type == RMQ_CMD_SUBSCRIBE)
    run_subscribe(b, c);
  else
    run_unsubscribe(b, c);
}

static void take_commands(rmq_broker *b)
{
  pthread_mutex_lock(&b->mu);
  rmq_cmd *c = b->cmds;
  b->cmds = b->cmds_tail = NULL;
  pthread_mutex_unlock(&b->mu);
  if (!c)
    return;
  for (rmq_cmd *it = c; it; it = it->next)
    run_command(b, it);
  pthread_mutex_lock(&b->mu);
  for (; c; c = c->next)
    c->done = 1;
  pthread_cond_broadcast(&b->cv);
  pthread_mutex_unlock(&b->mu);
}

int swit__rmq_command(rmq_broker *b, rmq_cmd *cmd)
{
  if (swit__rmq_on_io_thread(b)) {
    run_command(b, cmd);
    return cmd->rc;
  }
  cmd->done = 0;
  cmd->next = NULL;
  pthread_mutex_lock(&b->mu);
  if (!b->running) {
    pthread_mutex_unlock(&b->mu);
    return SWIT_E_STATE;
  }
  if (b->cmds_tail)
    b->cmds_tail->next = cmd;
  else
    b->cmds = cmd;
  b->cmds_tail = cmd;
  atomic_store(&b->work, 1);
  swit__rmq_wake(b);
  while (!cmd->done)
    pthread_cond_wait(&b->cv, &b->mu);
  pthread_mutex_unlock(&b->mu);
  return cmd->rc;
}

/* ---------------------------------------------------------------------
 * Settles */

static void put_stale(rmq_broker *b, rmq_slot *s)
{
  swit__rmq_slot_unlink(&b->stale, s);
  swit__rmq_slot_put(b, s);
}

static void put_current(rmq_broker *b, rmq_slot *s)
{
  swit__rmq_slot_unlink(&b->outstanding, s);
  swit__rmq_slot_put(b, s);
}

/* Ack the run of acked slots at the head of the outstanding list with
 * one `multiple` ack, then the acked slots behind an unsettled one one
 * by one. */
static void send_acks(rmq_broker *b, rmq_slot **acked, size_t n)
{
  rmq_slot *last = NULL;
  size_t run = 0;
  for (rmq_slot *s = b->outstanding.head; s && s->state == RMQ_SLOT_ACKED;
       s = s->next, run++)
    last = s;
  if (last) {
    int rc = amqp_basic_ack(b->conn, RMQ_CH_SUB, last->tag, run > 1);
    for (size_t i = 0; i < run; i++)
      put_current(b, b->outstanding.head);
    if (rc < 0) {
      swit__rmq_conn_lost(b, amqp_error_string2(rc));
      return;
    }
  }
  for (size_t i = 0; i < n && b->conn; i++) {
    rmq_slot *s = acked[i];
    if (s->state != RMQ_SLOT_ACKED)
      continue; /* went with the run above */
    int rc = amqp_basic_ack(b->conn, RMQ_CH_SUB, s->tag, 0);
    put_current(b, s);
    if (rc < 0)
      swit__rmq_conn_lost(b, amqp_error_string2(rc));
  }
}

static int reserve_acked(rmq_broker *b, size_t n)
{
  if (n <= b->acked_cap)
    return 0;
  rmq_slot **v = realloc(b->acked, n * sizeof *v);
  if (!v)
    return SWIT_E_NOMEM;
  b->acked = v;
  b->acked_cap = n;
  return 0;
}

static size_t swap_settles(rmq_broker *b)
{
  pthread_mutex_lock(&b->mu);
  rmq_settle_req *v = b->settles;
  size_t cap = b->settles_cap, n = b->nsettles;
  b->settles = b->io_settles;
  b->settles_cap = b->io_settles_cap;
  b->nsettles = 0;
  pthread_mutex_unlock(&b->mu);
  b->io_settles = v;
  b->io_settles_cap = cap;
  return n;
}

static void apply_settle(rmq_broker *b, rmq_slot *s, int action, size_t *nacked)
{
  if (s->state != RMQ_SLOT_OUT) {
    b->bad_settles++; /* settled twice (a host bug): acking it again would */
    return;           /* close the channel ("unknown delivery tag") */
  }
  if (s->gen != b->gen) {
    put_stale(b, s); /* its channel is gone: the broker redelivers it */
    return;
  }
  if (action == SWIT_SETTLE_REQUEUE) {
    int rc = amqp_basic_nack(b->conn, RMQ_CH_SUB, s->tag, 0, 1);
    put_current(b, s);
    if (rc < 0)
      swit__rmq_conn_lost(b, amqp_error_string2(rc));
    return;
  }
  s->state = RMQ_SLOT_ACKED; /* ACK, and DROP: the core dead-lettered it */
  if (b->acked_cap > *nacked)
    b->acked[(*nacked)++] = s;
  else
    send_acks(b, &s, 1);
}

static void process_settles(rmq_broker *b)
{
  size_t n = swap_settles(b), nacked = 0;
  if (!n)
    return;
  reserve_acked(b, n); /* without room, acks go one at a time */
  for (size_t i = 0; i < n; i++)
    apply_settle(b, b->io_settles[i].slot, b->io_settles[i].action, &nacked);
  if (b->bad_settles) {
    RMQ_LOG(b, SWIT_LOG_ERROR, "rabbitmq: %zu settle(s) of deliveries already "
            "settled were ignored", b->bad_settles);
    b->bad_settles = 0;
  }
  if (b->conn)
    send_acks(b, b->acked, nacked);
  if (b->conn)
    return;
  for (size_t i = 0; i < nacked; i++) /* lost meanwhile: now stale */
    if (b->acked[i]->state == RMQ_SLOT_ACKED)
      put_stale(b, b->acked[i]);
}

/* ---------------------------------------------------------------------
 * Deliveries */

static void flush_batch(rmq_broker *b)
{
  size_t n = b->nbatch;
  rmq_sub *s = b->batch_sub;
  if (!n)
    return;
  b->nbatch = 0;
  b->batch_sub = NULL;
  s->sink(s->sink_ud, b->batch, n);
}

void swit__rmq_io_drop_deliveries(rmq_broker *b)
{
  for (size_t i = 0; i < b->nbatch; i++)
    put_current(b, (rmq_slot *)(uintptr_t)b->batch[i].token);
  b->nbatch = 0;
  b->batch_sub = NULL;
  if (b->assembling)
    put_current(b, b->assembling);
  b->assembling = NULL;
  rmq_slot *s = b->outstanding.head;
  while (s) {
    rmq_slot *next = s->next;
    swit__rmq_slot_link(&b->stale, s);
    s = next;
  }
  b->outstanding.head = b->outstanding.tail = NULL;
}

static rmq_sub *find_sub(rmq_broker *b, amqp_bytes_t tag)
{
  for (rmq_sub *s = b->subs; s; s = s->next)
    if (strlen(s->tag) == tag.len && memcmp(s->tag, tag.bytes, tag.len) == 0)
      return s;
  return NULL;
}

static void complete(rmq_broker *b, rmq_slot *s)
{
  b->assembling = NULL;
  s->state = RMQ_SLOT_OUT;
  if (!s->sub) { /* its subscription is gone: give it back at once */
    int rc = amqp_basic_nack(b->conn, RMQ_CH_SUB, s->tag, 0, 1);
    put_current(b, s);
    if (rc < 0)
      swit__rmq_conn_lost(b, amqp_error_string2(rc));
    return;
  }
  if (b->batch_sub != s->sub || b->nbatch == RMQ_BATCH)
    flush_batch(b);
  b->batch[b->nbatch++] = (swit_delivery){ .msg = &s->view,
                                           .token = (uint64_t)(uintptr_t)s,
                                           .reject = s->reject };
  b->batch_sub = s->sub;
}

static void on_deliver(rmq_broker *b, const amqp_basic_deliver_t *d)
{
  rmq_slot *s;
  if (b->assembling) {
    swit__rmq_conn_lost(b, "protocol error: a delivery started before the "
                           "previous one was complete");
    return;
  }
  if (!(s = swit__rmq_slot_get(b))) {
    swit__rmq_conn_lost(b, "out of memory for a delivery");
    return;
  }
  s->tag = d->delivery_tag;
  s->gen = b->gen;
  s->redelivered = d->redelivered;
  s->sub = (b->batch_sub && strlen(b->batch_sub->tag) == d->consumer_tag.len &&
            memcmp(b->batch_sub->tag, d->consumer_tag.bytes,
                   d->consumer_tag.len) == 0)
               ? b->batch_sub : find_sub(b, d->consumer_tag);
  s->rkey_len = (uint32_t)(d->routing_key.len < 255 ? d->routing_key.len : 255);
  memcpy(s->rkey, d->routing_key.bytes, s->rkey_len);
  swit__rmq_slot_link(&b->outstanding, s);
  b->assembling = s;
}

static void on_header(rmq_broker *b, const amqp_frame_t *f)
{
  rmq_slot *s = b->assembling;
  if (!s || f->channel != RMQ_CH_SUB)
    return;
  if (swit__rmq_slot_header(b, s, f->payload.properties.decoded,
                            f->payload.properties.body_size)) {
    swit__rmq_conn_lost(b, "out of memory for a delivery");
    return;
  }
  if (s->body_size == 0)
    complete(b, s);
}

static void on_body(rmq_broker *b, const amqp_frame_t *f)
{
  rmq_slot *s = b->assembling;
  if (!s || f->channel != RMQ_CH_SUB || !s->body)
    return;
  size_t len = f->payload.body_fragment.len;
  if (len > s->body_size - s->body_got) {
    swit__rmq_conn_lost(b, "protocol error: more body than announced");
    return;
  }
  memcpy(s->body + s->body_got, f->payload.body_fragment.bytes, len);
  s->body_got += len;
  if (s->body_got == s->body_size)
    complete(b, s);
}

/* ---------------------------------------------------------------------
 * Methods */

static void on_server_cancel(rmq_broker *b, const amqp_basic_cancel_t *c)
{
  rmq_sub *s = find_sub(b, c->consumer_tag);
  if (!s)
    return;
  flush_batch(b);
  s->consuming = 0;
  s->declared = 0; /* its queue may be gone: declare it again */
  atomic_store(&b->reconcile, 1);
  RMQ_LOG(b, SWIT_LOG_WARN, "rabbitmq: the broker cancelled the consumer of "
          "queue '%s'; declaring and consuming again", s->queue);
}

static void on_close(rmq_broker *b, amqp_channel_t ch, const amqp_method_t *m)
{
  char why[RMQ_ERRLEN];
  amqp_rpc_reply_t r = { .reply_type = AMQP_RESPONSE_SERVER_EXCEPTION,
                         .reply = *m };
  swit__rmq_reply_text(r, why, sizeof why);
  if (m->id == AMQP_CONNECTION_CLOSE_METHOD) {
    amqp_connection_close_ok_t ok = { 0 };
    amqp_send_method(b->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
  }
  char msg[RMQ_ERRLEN + 48];
  snprintf(msg, sizeof msg, "%s closed by the broker: %s",
           ch ? "channel" : "connection", why);
  swit__rmq_conn_lost(b, msg);
}

static void on_method(rmq_broker *b, amqp_channel_t ch, const amqp_method_t *m)
{
  const amqp_basic_ack_t *ack;
  const amqp_basic_nack_t *nack;
  switch (m->id) {
  case AMQP_BASIC_DELIVER_METHOD:
    on_deliver(b, m->decoded);
    break;
  case AMQP_BASIC_ACK_METHOD:
    ack = m->decoded;
    swit__rmq_pub_confirm(b, ack->delivery_tag, ack->multiple, 1);
    break;
  case AMQP_BASIC_NACK_METHOD:
    nack = m->decoded;
    swit__rmq_pub_confirm(b, nack->delivery_tag, nack->multiple, 0);
    break;
  case AMQP_BASIC_RETURN_METHOD: /* its content frames follow: ignored */
    swit__rmq_pub_returned(b, m->decoded);
    break;
  case AMQP_BASIC_CANCEL_METHOD:
    on_server_cancel(b, m->decoded);
    break;
  case AMQP_CHANNEL_CLOSE_METHOD:
  case AMQP_CONNECTION_CLOSE_METHOD:
    on_close(b, ch, m);
    break;
  case AMQP_CONNECTION_BLOCKED_METHOD:
    b->alarm = 1; /* it stops reading from us: keep consuming, hold publishes */
    RMQ_LOG(b, SWIT_LOG_WARN, "rabbitmq: the broker blocked publishing "
            "(resource alarm); publishes wait");
    break;
  case AMQP_CONNECTION_UNBLOCKED_METHOD:
    b->alarm = 0;
    RMQ_LOG(b, SWIT_LOG_INFO, "rabbitmq: the broker unblocked publishing");
    break;
  default:
    break;
  }
}

/* Read every frame available now (up to the budget). Returns how many. */
static size_t read_frames(rmq_broker *b)
{
  struct timeval zero = { 0, 0 };
  size_t n = 0;
  while (b->conn && n < RMQ_FRAME_BUDGET) {
    amqp_frame_t f;
    int rc = amqp_simple_wait_frame_noblock(b->conn, &f, &zero);
    if (rc == AMQP_STATUS_TIMEOUT)
      break;
    if (rc != AMQP_STATUS_OK) {
      swit__rmq_conn_lost(b, amqp_error_string2(rc));
      break;
    }
    n++;
    if (f.frame_type == AMQP_FRAME_METHOD)
      on_method(b, f.channel, &f.payload.method);
    else if (f.frame_type == AMQP_FRAME_HEADER)
      on_header(b, &f);
    else if (f.frame_type == AMQP_FRAME_BODY)
      on_body(b, &f);
  }
  if (n)
    atomic_store(&b->last_rx_ms, swit__now_ms());
  flush_batch(b);
  if (b->conn)
    amqp_maybe_release_buffers(b->conn);
  return n;
}

/* ---------------------------------------------------------------------
 * Sleeping */

static int poll_timeout_ms(const rmq_broker *b, int64_t limit_ms)
{
  int64_t t = 1000;
  if (b->conn && b->st.heartbeat_ms > 0 && b->st.heartbeat_ms / 4 < t)
    t = b->st.heartbeat_ms / 4;
  if (limit_ms < t)
    t = limit_ms < 0 ? 0 : limit_ms;
  return (int)t;
}

/* Sleep in poll() until woken, the socket has input or timeout_ms. */
static void sleep_poll(rmq_broker *b, int64_t timeout_ms)
{
  struct pollfd p[2] = { { .fd = b->efd, .events = POLLIN },
                         { .fd = -1, .events = POLLIN } };
  if (b->conn)
    p[1].fd = amqp_get_sockfd(b->conn);
  atomic_store(&b->sleeping, 1);
  int busy = atomic_load(&b->work) || atomic_load(&b->stop) ||
             (b->conn && (amqp_frames_enqueued(b->conn) ||
                          amqp_data_in_buffer(b->conn)));
  if (!busy && poll(p, p[1].fd >= 0 ? 2 : 1, poll_timeout_ms(b, timeout_ms)) > 0) {
    if (p[0].revents) {
      uint64_t v;
      ssize_t r = read(b->efd, &v, sizeof v);
      (void)r;
    }
    if (p[1].revents)
      atomic_store(&b->last_rx_ms, swit__now_ms());
  }
  atomic_store(&b->sleeping, 0);
}

/* How long the broker may stay silent: two heartbeat intervals (whole
 * seconds, as negotiated) plus `slack_ms`; 0 without heartbeats. */
static int64_t silence_limit_ms(const rmq_broker *b, int64_t slack_ms)
{
  int64_t hb = b->st.heartbeat_ms;
  return hb > 0 ? 2 * ((hb + 999) / 1000 * 1000) + slack_ms : 0;
}

static void check_heartbeat(rmq_broker *b)
{
  int64_t limit = silence_limit_ms(b, 1000);
  if (b->conn && limit &&
      swit__now_ms() - atomic_load(&b->last_rx_ms) > limit)
    swit__rmq_conn_lost(b, "missed heartbeats from the broker");
}

/* ---------------------------------------------------------------------
 * The watchdog
 *
 * rabbitmq-c writes with no deadline: a broker that stops reading (frozen
 * process, zero TCP window) keeps the I/O thread inside a send, where it
 * cannot check heartbeats. The watchdog thread checks them too, a second
 * later than the I/O thread would, and shuts the socket down: the send
 * fails, and the I/O thread reconnects as for any lost connection. The
 * socket is only touched under mu, and the I/O thread clears wd_fd under
 * mu before it closes it. */

void swit__rmq_watch_fd(rmq_broker *b, int fd)
{
  pthread_mutex_lock(&b->mu);
  b->wd_fd = fd;
  pthread_mutex_unlock(&b->mu);
}

static void *watchdog_main(void *arg)
{
  rmq_broker *b = arg;
  int64_t limit = silence_limit_ms(b, 2000);
  pthread_mutex_lock(&b->mu);
  while (!b->wd_stop) {
    swit__cond_wait_until(&b->wd_cv, &b->mu, swit__deadline_in(500));
    if (b->wd_fd < 0 || !limit ||
        swit__now_ms() - atomic_load(&b->last_rx_ms) <= limit)
      continue;
    atomic_store(&b->wd_fired, 1);
    shutdown(b->wd_fd, SHUT_RDWR);
    b->wd_fd = -1;
  }
  pthread_mutex_unlock(&b->mu);
  return NULL;
}

void swit__rmq_io_idle_until(rmq_broker *b, int64_t until_ms)
{
  while (!atomic_load(&b->stop)) {
    int64_t left = until_ms - swit__now_ms();
    if (left <= 0)
      break;
    atomic_store(&b->work, 0);
    take_commands(b);
    process_settles(b);
    if (b->gave_up)
      swit__rmq_pub_fail_all(b, SWIT_E_BROKER);
    sleep_poll(b, left);
  }
}

/* ---------------------------------------------------------------------
 * The loop */

static void reconcile(rmq_broker *b)
{
  if (!atomic_exchange(&b->reconcile, 0))
    return;
  for (rmq_sub *s = b->subs; s && b->conn; s = s->next) {
    char err[RMQ_ERRLEN];
    if (!s->declared && swit__rmq_sub_declare(b, s, err, sizeof err) == SWIT_E_CONFIG)
      RMQ_LOG(b, SWIT_LOG_ERROR, "rabbitmq: %s", err);
    if (s->declared)
      swit__rmq_sub_sync(b, s);
  }
}

static void cycle(rmq_broker *b)
{
  atomic_store(&b->work, 0);
  take_commands(b);
  process_settles(b);
  reconcile(b);
  if (b->conn)
    swit__rmq_pub_send(b);
  size_t frames = b->conn ? read_frames(b) : 0;
  swit__rmq_pub_complete(b);
  check_heartbeat(b);
  if (b->conn && !frames && (!b->outq.head || b->send_blocked || b->alarm))
    sleep_poll(b, b->send_blocked ? 2 : INT64_MAX);
}

static void *io_main(void *arg)
{
  rmq_broker *b = arg;
  io_self = b;
  while (!atomic_load(&b->stop)) {
    if (b->conn)
      cycle(b);
    else if (b->gave_up)
      swit__rmq_io_idle_until(b, INT64_MAX);
    else
      swit__rmq_conn_establish(b);
  }
  take_commands(b);
  process_settles(b);
  swit__rmq_conn_close(b);
  swit__rmq_pub_fail_all(b, SWIT_E_STATE);
  swit__rmq_set_state(b, SWIT_CONN_DISCONNECTED, NULL);
  return NULL;
}

static void watchdog_stop(rmq_broker *b)
{
  pthread_mutex_lock(&b->mu);
  b->wd_stop = 1;
  pthread_cond_signal(&b->wd_cv);
  pthread_mutex_unlock(&b->mu);
  pthread_join(b->wd_thread, NULL);
}

int swit__rmq_io_start(rmq_broker *b)
{
  atomic_store(&b->stop, 0);
  atomic_store(&b->work, 1);
  b->wd_stop = 0;
  int rc = pthread_create(&b->wd_thread, NULL, watchdog_main, b);
  if (rc)
    return rc;
  if ((rc = pthread_create(&b->thread, NULL, io_main, b)))
    watchdog_stop(b);
  return rc;
}

void swit__rmq_io_stop(rmq_broker *b)
{
  atomic_store(&b->stop, 1);
  swit__rmq_wake(b);
  pthread_join(b->thread, NULL);
  watchdog_stop(b);
}
