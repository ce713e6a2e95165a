/*
 * rabbitmq_conn.c - the connection of the RabbitMQ adapter: connecting,
 * the topology, consumers, and what happens when the connection goes.
 * Runs on the I/O thread only.
 *
 * A connection attempt tries every endpoint in turn (starting with the
 * one that worked last); each gets a TCP connect, a login (heartbeat
 * negotiated), three channels (publish in confirm mode, consume,
 * declarations), the exchange, every subscription's queues and bindings,
 * and a consumer for every subscription the core has not paused. Only
 * then is the state Connected; publishes waiting (never sent, or sent and
 * not confirmed on the old connection) go out after that, in order.
 * A failed round is reported as BackingOff with the reason and retried
 * after env->backoff_ms, until that says stop (Failed).
 *
 * Topology (docs/brokers/rabbitmq.md): a durable topic exchange
 * (`exchange`); per subscription a durable queue "<group>.<topic>" bound
 * with the topic as binding key, whose dead letters (TTL, max length,
 * rejects by the broker) go to the same exchange with the subscription's
 * dead-letter topic D as routing key ("<topic>.dlq" unless the handler
 * named one); and a parking queue "<group>.<D>" bound to D, which also
 * receives the copies the core dead-letters. A subscription's own queue
 * is declared as a parking queue (no TTL, length limit or dead-lettering)
 * when the core says its topic is a dead-letter topic (spec->parking: it
 * ends in ".dlq" or another subscription names it), so both ways of
 * declaring that queue agree.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <amqp_tcp_socket.h>

#include "rabbitmq_int.h"

static struct timeval tv_of(int64_t ms)
{
  struct timeval tv = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000 };
  return tv;
}

/* ---------------------------------------------------------------------
 * Losing the connection */

/* Forget the connection; what was in flight on it is redone later. */
static void drop_conn(rmq_broker *b)
{
  if (!b->conn)
    return;
  swit__rmq_watch_fd(b, -1);
  amqp_destroy_connection(b->conn);
  b->conn = NULL;
  atomic_store(&b->connected, 0);
  swit__rmq_io_drop_deliveries(b);
  b->gen++;
  swit__rmq_pub_requeue(b);
  for (rmq_sub *s = b->subs; s; s = s->next)
    s->consuming = s->declared = 0;
}

static void set_error(rmq_broker *b, const char *why)
{
  pthread_mutex_lock(&b->mu);
  snprintf(b->last_error, sizeof b->last_error, "%s", why);
  pthread_mutex_unlock(&b->mu);
}

void swit__rmq_conn_lost(rmq_broker *b, const char *why)
{
  int was_up = atomic_load(&b->connected);
  if (!b->conn)
    return;
  if (atomic_exchange(&b->wd_fired, 0)) /* the send failed because of it */
    why = "missed heartbeats from the broker (it stopped reading, the "
          "watchdog closed the socket)";
  set_error(b, why);
  drop_conn(b);
  if (!was_up)
    return; /* still connecting: the attempt reports it */
  RMQ_LOG(b, SWIT_LOG_WARN, "rabbitmq: connection to %s lost: %s", b->where,
          why);
  swit__rmq_set_state(b, SWIT_CONN_RECONNECTING, why);
}

void swit__rmq_conn_close(rmq_broker *b)
{
  if (!b->conn)
    return;
  amqp_connection_close(b->conn, AMQP_REPLY_SUCCESS);
  drop_conn(b);
}

int swit__rmq_rpc_check(rmq_broker *b, amqp_channel_t ch, const char *what,
                        char *err, size_t errlen)
{
  amqp_rpc_reply_t r = amqp_get_rpc_reply(b->conn);
  char why[RMQ_ERRLEN];
  if (r.reply_type == AMQP_RESPONSE_NORMAL)
    return 0;
  swit__rmq_reply_text(r, why, sizeof why);
  swit__fail(err, errlen, SWIT_E_BROKER, "%s: %s", what, why);
  int channel_closed = r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
                       r.reply.id == AMQP_CHANNEL_CLOSE_METHOD;
  if (channel_closed && ch == RMQ_CH_TOPO) {
    amqp_channel_close_ok_t ok = { 0 };
    if (amqp_send_method(b->conn, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok) == 0 &&
        amqp_channel_open(b->conn, ch))
      return SWIT_E_CONFIG;
  }
  if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
      r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
    amqp_connection_close_ok_t ok = { 0 };
    amqp_send_method(b->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
  }
  char msg[RMQ_ERRLEN + 64];
  snprintf(msg, sizeof msg, "%s: %s", what, why);
  swit__rmq_conn_lost(b, msg);
  return SWIT_E_BROKER;
}

/* ---------------------------------------------------------------------
 * Topology */

static void arg_long(amqp_table_entry_t *e, const char *key, int64_t v)
{
  e->key = amqp_cstring_bytes(key);
  e->value.kind = AMQP_FIELD_KIND_I64;
  e->value.value.i64 = v;
}

static void arg_str(amqp_table_entry_t *e, const char *key, const char *v)
{
  e->key = amqp_cstring_bytes(key);
  e->value.kind = AMQP_FIELD_KIND_UTF8;
  e->value.value.bytes = amqp_cstring_bytes(v);
}

static amqp_table_entry_t bool_entry(const char *key)
{
  amqp_table_entry_t e = { .key = amqp_cstring_bytes(key) };
  e.value.kind = AMQP_FIELD_KIND_BOOLEAN;
  e.value.value.boolean = 1;
  return e;
}

static const char *const overflow_names[] = { "drop-head", "reject-publish",
                                              "reject-publish-dlx" };

/* The arguments of a queue (see the file comment): a parking queue gets
 * only its type; a group queue its limits and, with dead_letter_queues,
 * dead-lettering to the exchange with routing key `dlk`. */
static int queue_args(const rmq_broker *b, int parking, const char *dlk,
                      amqp_table_entry_t *e)
{
  const swit_rabbitmq_settings *st = &b->st;
  int n = 0;
  if (st->queue_type == RMQ_QUEUE_QUORUM)
    arg_str(&e[n++], "x-queue-type", "quorum");
  if (parking)
    return n;
  if (st->message_ttl_ms > 0)
    arg_long(&e[n++], "x-message-ttl", st->message_ttl_ms);
  if (st->max_length > 0)
    arg_long(&e[n++], "x-max-length", st->max_length);
  if (st->max_length_bytes > 0)
    arg_long(&e[n++], "x-max-length-bytes", st->max_length_bytes);
  if ((st->max_length > 0 || st->max_length_bytes > 0) &&
      st->overflow != RMQ_OVERFLOW_DROP_HEAD)
    arg_str(&e[n++], "x-overflow", overflow_names[st->overflow]);
  if (st->dead_letter_queues) {
    arg_str(&e[n++], "x-dead-letter-exchange", st->exchange);
    arg_str(&e[n++], "x-dead-letter-routing-key", dlk);
  }
  return n;
}

static int declare_queue(rmq_broker *b, const char *queue, const char *key,
                         int parking, const char *dlk, char *err, size_t errlen)
{
  amqp_table_entry_t e[8];
  char what[300];
  amqp_table_t args = { .num_entries = queue_args(b, parking, dlk, e),
                        .entries = e };
  amqp_queue_declare(b->conn, RMQ_CH_TOPO, amqp_cstring_bytes(queue), 0, 1, 0,
                     0, args);
  snprintf(what, sizeof what, "queue.declare '%s'", queue);
  int rc = swit__rmq_rpc_check(b, RMQ_CH_TOPO, what, err, errlen);
  if (rc)
    return rc;
  amqp_queue_bind(b->conn, RMQ_CH_TOPO, amqp_cstring_bytes(queue),
                  amqp_cstring_bytes(b->st.exchange), amqp_cstring_bytes(key),
                  amqp_empty_table);
  snprintf(what, sizeof what, "queue.bind '%s' to '%s' with key '%s'", queue,
           b->st.exchange, key);
  return swit__rmq_rpc_check(b, RMQ_CH_TOPO, what, err, errlen);
}

int swit__rmq_sub_declare(rmq_broker *b, rmq_sub *s, char *err, size_t errlen)
{
  int rc = declare_queue(b, s->queue, s->topic, s->parking, s->dlq_key, err,
                         errlen);
  if (!rc && s->dlq_queue)
    rc = declare_queue(b, s->dlq_queue, s->dlq_key, 1, NULL, err, errlen);
  s->declared = rc == 0;
  return rc;
}

static int declare_exchange(rmq_broker *b, char *err, size_t errlen)
{
  amqp_table_entry_t e[1];
  amqp_table_t args = { 0, e };
  char what[300];
  if (b->st.alternate_exchange && *b->st.alternate_exchange)
    arg_str(&e[args.num_entries++], "alternate-exchange",
            b->st.alternate_exchange);
  amqp_exchange_declare(b->conn, RMQ_CH_TOPO, amqp_cstring_bytes(b->st.exchange),
                        amqp_cstring_bytes("topic"), 0, 1, 0, 0, args);
  snprintf(what, sizeof what, "exchange.declare '%s'", b->st.exchange);
  return swit__rmq_rpc_check(b, RMQ_CH_TOPO, what, err, errlen);
}

/* ---------------------------------------------------------------------
 * Consumers */

int swit__rmq_sub_cancel(rmq_broker *b, rmq_sub *s)
{
  amqp_basic_cancel(b->conn, RMQ_CH_SUB, amqp_cstring_bytes(s->tag));
  s->consuming = 0;
  return swit__rmq_rpc_check(b, RMQ_CH_SUB, "basic.cancel", NULL, 0);
}

static int consume(rmq_broker *b, rmq_sub *s)
{
  char what[300];
  uint16_t prefetch = s->prefetch > 65535 ? 65535 : (uint16_t)s->prefetch;
  amqp_basic_qos(b->conn, RMQ_CH_SUB, 0, prefetch, 0);
  if (swit__rmq_rpc_check(b, RMQ_CH_SUB, "basic.qos", NULL, 0))
    return SWIT_E_BROKER;
  amqp_basic_consume(b->conn, RMQ_CH_SUB, amqp_cstring_bytes(s->queue),
                     amqp_cstring_bytes(s->tag), 0, 0, 0, amqp_empty_table);
  snprintf(what, sizeof what, "basic.consume from '%s'", s->queue);
  if (swit__rmq_rpc_check(b, RMQ_CH_SUB, what, NULL, 0))
    return SWIT_E_BROKER;
  s->consuming = 1;
  return 0;
}

int swit__rmq_sub_sync(rmq_broker *b, rmq_sub *s)
{
  int want = !atomic_load(&s->paused);
  if (!b->conn || !s->declared || want == s->consuming)
    return b->conn ? 0 : SWIT_E_BROKER;
  return want ? consume(b, s) : swit__rmq_sub_cancel(b, s);
}

/* ---------------------------------------------------------------------
 * Connecting */

/* Wait for a non-blocking connect; 0 or an errno value. */
static int connect_wait(int fd, int64_t timeout_ms)
{
  struct pollfd p = { .fd = fd, .events = POLLOUT };
  int e = 0;
  socklen_t len = sizeof e;
  int r = poll(&p, 1, (int)timeout_ms);
  if (r == 0)
    return ETIMEDOUT;
  if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
    return errno;
  return e;
}

/* A TCP connection to host:port within timeout_ms (each address tried),
 * as a non-blocking socket, or -1 with the reason in err. rabbitmq-c's own
 * connect loses the reason ("a socket error occurred"). */
static int tcp_connect(const char *host, int port, int64_t timeout_ms,
                       char *err, size_t errlen)
{
  struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
  struct addrinfo *res = NULL;
  char sport[16];
  int fd = -1, e = 0;
  snprintf(sport, sizeof sport, "%d", port);
  int gai = getaddrinfo(host, sport, &hints, &res);
  if (gai) {
    swit__fail(err, errlen, -1, "%s", gai_strerror(gai));
    return -1;
  }
  for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                a->ai_protocol);
    if (fd < 0) {
      e = errno;
      continue;
    }
    e = connect(fd, a->ai_addr, a->ai_addrlen) == 0 ? 0
        : errno == EINPROGRESS ? connect_wait(fd, timeout_ms) : errno;
    if (e) {
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  if (fd < 0) {
    swit__fail(err, errlen, -1, "cannot connect: %s", strerror(e));
    return -1;
  }
  int one = 1; /* rabbitmq-c wants it non-blocking, as it is */
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

/* How much may wait in the socket (a quarter of its send buffer), and
 * a TCP user timeout so that data the broker never acknowledges (or a
 * window that stays shut) ends the connection after three heartbeats. */
static void tune_socket(rmq_broker *b, int fd)
{
  int sndbuf = 0;
  socklen_t len = sizeof sndbuf;
  getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len);
  b->send_limit = sndbuf > 0 ? (size_t)sndbuf / 4 : 0;
  if (b->send_limit < 16384)
    b->send_limit = 16384;
  if (b->send_limit > 1048576)
    b->send_limit = 1048576;
  unsigned user_timeout = (unsigned)(3 * b->st.heartbeat_ms);
  if (user_timeout)
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout,
               sizeof user_timeout);
}

static int login(rmq_broker *b, const rmq_endpoint *ep, char *err, size_t errlen)
{
  const struct amqp_connection_info *in = &ep->info;
  struct timeval tv = tv_of(b->st.connect_timeout_ms);
  amqp_socket_t *sock;
  if (!(b->conn = amqp_new_connection()) || !(sock = amqp_tcp_socket_new(b->conn)))
    return swit__fail(err, errlen, SWIT_E_NOMEM, "out of memory");
  int fd = tcp_connect(in->host, in->port, b->st.connect_timeout_ms, err, errlen);
  if (fd < 0)
    return SWIT_E_BROKER;
  amqp_tcp_socket_set_sockfd(sock, fd); /* owned by the socket now */
  tune_socket(b, fd);
  amqp_set_handshake_timeout(b->conn, &tv);
  amqp_set_rpc_timeout(b->conn, &tv);
  const char *vhost = *in->vhost && strcmp(in->vhost, "/") ? in->vhost : b->st.vhost;
  int hb = b->st.heartbeat_ms > 0 ? (int)((b->st.heartbeat_ms + 999) / 1000) : 0;
  amqp_table_entry_t caps[2], props[2];
  char name[160];
  caps[0] = bool_entry("consumer_cancel_notify"); /* basic.cancel from the broker */
  caps[1] = bool_entry("connection.blocked");     /* resource alarm notices */
  props[0].key = amqp_cstring_bytes("capabilities");
  props[0].value.kind = AMQP_FIELD_KIND_TABLE;
  props[0].value.value.table = (amqp_table_t){ 2, caps };
  snprintf(name, sizeof name, "swit %s", b->env.server_name);
  arg_str(&props[1], "connection_name", name);
  amqp_table_t client = { 2, props };
  amqp_rpc_reply_t r = amqp_login_with_properties(
      b->conn, vhost, 0, AMQP_DEFAULT_FRAME_SIZE, hb, &client,
      AMQP_SASL_METHOD_PLAIN, in->user, in->password);
  if (r.reply_type == AMQP_RESPONSE_NORMAL)
    return 0;
  char why[RMQ_ERRLEN];
  swit__rmq_reply_text(r, why, sizeof why);
  return swit__fail(err, errlen, SWIT_E_BROKER, "login as '%s' to vhost "
                    "'%s' failed: %s", in->user, vhost, why);
}

static int open_channels(rmq_broker *b, char *err, size_t errlen)
{
  for (amqp_channel_t ch = RMQ_CH_PUB; ch <= RMQ_CH_TOPO; ch++) {
    amqp_channel_open(b->conn, ch);
    if (swit__rmq_rpc_check(b, ch, "channel.open", err, errlen))
      return SWIT_E_BROKER;
  }
  amqp_confirm_select(b->conn, RMQ_CH_PUB);
  return swit__rmq_rpc_check(b, RMQ_CH_PUB, "confirm.select", err, errlen)
             ? SWIT_E_BROKER : 0;
}

/* Declare every subscription and start its consumer. A declaration the
 * server refuses is logged and skipped (the subscription stays
 * undeclared); anything else fails the attempt. */
static int restore_subs(rmq_broker *b, char *err, size_t errlen)
{
  for (rmq_sub *s = b->subs; s; s = s->next) {
    int rc = swit__rmq_sub_declare(b, s, err, errlen);
    if (rc == SWIT_E_CONFIG)
      RMQ_LOG(b, SWIT_LOG_ERROR, "rabbitmq: subscription to '%s': %s",
              s->topic, err);
    else if (rc || (rc = swit__rmq_sub_sync(b, s)))
      return rc;
  }
  return 0;
}

static int open_endpoint(rmq_broker *b, const rmq_endpoint *ep, char *err,
                         size_t errlen)
{
  int rc = login(b, ep, err, errlen);
  if (!rc)
    rc = open_channels(b, err, errlen);
  if (!rc && (rc = declare_exchange(b, err, errlen)) == SWIT_E_CONFIG)
    rc = SWIT_E_BROKER; /* publishing needs it: no use going on */
  if (!rc)
    rc = restore_subs(b, err, errlen);
  if (!rc && !b->conn)
    rc = swit__fail(err, errlen, SWIT_E_BROKER, "connection lost");
  if (rc)
    drop_conn(b);
  return rc;
}

/* One round over the endpoints. 0 when one of them is up. */
static int try_endpoints(rmq_broker *b, char *err, size_t errlen)
{
  char why[RMQ_ERRLEN];
  int rc = SWIT_E_BROKER;
  for (size_t k = 0; k < b->neps && !atomic_load(&b->stop); k++) {
    size_t i = (b->ep_next + k) % b->neps;
    const struct amqp_connection_info *in = &b->eps[i].info;
    rc = open_endpoint(b, &b->eps[i], why, sizeof why);
    if (!rc) {
      b->ep_next = i;
      pthread_mutex_lock(&b->mu);
      snprintf(b->where, sizeof b->where, "%s:%d", in->host, in->port);
      pthread_mutex_unlock(&b->mu);
      return 0;
    }
    swit__fail(err, errlen, rc, "%s:%d: %s", in->host, in->port, why);
  }
  return rc;
}

static void first_try_done(rmq_broker *b)
{
  pthread_mutex_lock(&b->mu);
  b->first_try_done = 1;
  pthread_cond_broadcast(&b->cv);
  pthread_mutex_unlock(&b->mu);
}

static void give_up(rmq_broker *b, const char *why)
{
  pthread_mutex_lock(&b->mu);
  b->gave_up = 1;
  pthread_cond_broadcast(&b->cv);
  pthread_mutex_unlock(&b->mu);
  swit__rmq_set_state(b, SWIT_CONN_FAILED, why);
  swit__rmq_pub_fail_all(b, SWIT_E_BROKER);
}

static void connected(rmq_broker *b)
{
  atomic_store(&b->last_rx_ms, swit__now_ms());
  atomic_store(&b->wd_fired, 0);
  b->alarm = 0;
  swit__rmq_watch_fd(b, amqp_get_sockfd(b->conn));
  atomic_store(&b->connected, 1);
  b->ever_connected = 1;
  first_try_done(b);
  swit__rmq_set_state(b, SWIT_CONN_CONNECTED, b->where);
}

int swit__rmq_conn_establish(rmq_broker *b)
{
  char err[RMQ_ERRLEN];
  for (uint32_t attempt = 1; !atomic_load(&b->stop); attempt++) {
    swit__rmq_set_state(b, b->ever_connected ? SWIT_CONN_RECONNECTING
                                             : SWIT_CONN_CONNECTING, NULL);
    if (try_endpoints(b, err, sizeof err) == 0) {
      connected(b);
      return 0;
    }
    set_error(b, err);
    first_try_done(b);
    int64_t wait = b->env.backoff_ms ? b->env.backoff_ms(b->env.host_ud, attempt)
                                     : 1000;
    if (wait < 0) {
      give_up(b, err);
      return SWIT_E_BROKER;
    }
    swit__rmq_set_state(b, SWIT_CONN_BACKING_OFF, err);
    swit__rmq_io_idle_until(b, swit__now_ms() + wait);
  }
  return SWIT_E_STATE;
}
