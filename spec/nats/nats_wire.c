/*
 * nats_wire.c - an independent NATS client for the interop specs: the
 * plain-text NATS protocol over a TCP socket, no cnats.
 *
 *   nats_wire pub PORT SUBJECT COUNT [-H name:value]... [-p PREFIX]
 *       sends COUNT messages PREFIX1..PREFIXn (HPUB when headers are
 *       given, else PUB), then PING and waits for the PONG.
 *   nats_wire sub PORT SUBJECT COUNT TIMEOUT_MS [-q QUEUE] [-r READYFILE]
 *       subscribes, creates READYFILE once the server confirmed the SUB,
 *       and prints every message received as
 *         msg <subject> <payload-bytes>
 *         hdr <name>: <value>      (one line per header)
 *       until COUNT arrived (exit 0) or TIMEOUT_MS passed (exit 1).
 *
 * Connects to 127.0.0.1. One thread; blocking I/O with a poll timeout.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct conn {
  int fd;
  char buf[1 << 16];
  size_t len, at;
} conn;

static long long now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void die(const char *what)
{
  fprintf(stderr, "nats_wire: %s\n", what);
  exit(2);
}

static void send_all(conn *c, const char *p, size_t n)
{
  while (n) {
    ssize_t w = write(c->fd, p, n);
    if (w <= 0)
      die("write failed");
    p += w;
    n -= (size_t)w;
  }
}

/* Fill the buffer; 0 on timeout, -1 at EOF. */
static int fill(conn *c, long long deadline)
{
  if (c->at == c->len)
    c->at = c->len = 0;
  if (c->at > 0 && c->len == sizeof c->buf) {
    memmove(c->buf, c->buf + c->at, c->len - c->at);
    c->len -= c->at;
    c->at = 0;
  }
  long long left = deadline - now_ms();
  struct pollfd p = { c->fd, POLLIN, 0 };
  if (left <= 0 || poll(&p, 1, (int)left) <= 0)
    return 0;
  ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
  if (r <= 0)
    return -1;
  c->len += (size_t)r;
  return 1;
}

/* One protocol line (without CRLF) into out; 0 on timeout. */
static int read_line(conn *c, char *out, size_t cap, long long deadline)
{
  for (;;) {
    char *nl = memchr(c->buf + c->at, '\n', c->len - c->at);
    if (nl) {
      size_t n = (size_t)(nl - (c->buf + c->at));
      if (n && nl[-1] == '\r')
        n--;
      if (n >= cap)
        die("line too long");
      memcpy(out, c->buf + c->at, n);
      out[n] = '\0';
      c->at = (size_t)(nl - c->buf) + 1;
      return 1;
    }
    int r = fill(c, deadline);
    if (r < 0)
      die("connection closed");
    if (r == 0)
      return 0;
  }
}

/* n bytes plus the trailing CRLF; 0 on timeout. */
static int read_block(conn *c, char *out, size_t n, long long deadline)
{
  size_t got = 0;
  while (got < n + 2) {
    if (c->at == c->len) {
      int r = fill(c, deadline);
      if (r < 0)
        die("connection closed");
      if (r == 0)
        return 0;
    }
    size_t k = c->len - c->at < n + 2 - got ? c->len - c->at : n + 2 - got;
    for (size_t i = 0; i < k; i++, got++)
      if (got < n)
        out[got] = c->buf[c->at + i];
    c->at += k;
  }
  return 1;
}

static void connect_to(conn *c, int port)
{
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
  char line[4096];
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0)
    die("cannot connect");
  if (!read_line(c, line, sizeof line, now_ms() + 5000) || strncmp(line, "INFO ", 5))
    die("no INFO from the server");
  const char *hello = "CONNECT {\"verbose\":false,\"pedantic\":false,"
                      "\"headers\":true,\"protocol\":1,\"name\":\"nats_wire\"}\r\n";
  send_all(c, hello, strlen(hello));
}

/* PING, then wait for the PONG (answering the server's PINGs). */
static void sync_server(conn *c)
{
  char line[4096];
  long long deadline = now_ms() + 5000;
  send_all(c, "PING\r\n", 6);
  while (read_line(c, line, sizeof line, deadline)) {
    if (!strcmp(line, "PONG"))
      return;
    if (!strncmp(line, "-ERR", 4))
      die(line);
    if (!strcmp(line, "PING"))
      send_all(c, "PONG\r\n", 6);
  }
  die("no PONG from the server");
}

static int cmd_pub(int port, const char *subject, long count, char **hdrs,
                   int nh, const char *prefix)
{
  conn c = { 0 };
  char head[8192], cmd[2048];
  size_t hl = 0, cap = strlen(prefix) + 32;
  char *payload = malloc(cap);
  if (!payload)
    die("out of memory");
  connect_to(&c, port);
  if (nh) {
    hl = (size_t)snprintf(head, sizeof head, "NATS/1.0\r\n");
    for (int i = 0; i < nh; i++) {
      char *colon = strchr(hdrs[i], ':');
      if (!colon)
        die("-H expects name:value");
      hl += (size_t)snprintf(head + hl, sizeof head - hl, "%.*s: %s\r\n",
                             (int)(colon - hdrs[i]), hdrs[i], colon + 1);
    }
    hl += (size_t)snprintf(head + hl, sizeof head - hl, "\r\n");
  }
  for (long i = 1; i <= count; i++) {
    int pl = snprintf(payload, cap, "%s%ld", prefix, i);
    int cl = nh ? snprintf(cmd, sizeof cmd, "HPUB %s %zu %zu\r\n", subject,
                           hl, hl + (size_t)pl)
                : snprintf(cmd, sizeof cmd, "PUB %s %d\r\n", subject, pl);
    send_all(&c, cmd, (size_t)cl);
    if (nh)
      send_all(&c, head, hl);
    send_all(&c, payload, (size_t)pl);
    send_all(&c, "\r\n", 2);
  }
  sync_server(&c);
  close(c.fd);
  free(payload);
  return 0;
}

static void print_headers(const char *h, size_t n)
{
  const char *p = memchr(h, '\n', n); /* skip "NATS/1.0" */
  while (p && (size_t)(p + 1 - h) < n) {
    const char *line = p + 1;
    const char *end = memchr(line, '\r', n - (size_t)(line - h));
    if (!end || end == line)
      break;
    printf("hdr %.*s\n", (int)(end - line), line);
    p = memchr(end, '\n', n - (size_t)(end - h));
  }
}

/* One MSG or HMSG: prints it. */
static int on_message(conn *c, char *line, long long deadline)
{
  char *f[6];
  int nf = 0, hmsg = line[0] == 'H';
  for (char *t = strtok(line, " "); t && nf < 6; t = strtok(NULL, " "))
    f[nf++] = t;
  size_t total = (size_t)atol(f[nf - 1]);
  size_t hlen = hmsg ? (size_t)atol(f[nf - 2]) : 0;
  char *body = malloc(total + 1);
  if (!body || !read_block(c, body, total, deadline))
    die("truncated message");
  printf("msg %s %.*s\n", f[1], (int)(total - hlen), body + hlen);
  if (hmsg)
    print_headers(body, hlen);
  fflush(stdout);
  free(body);
  return 1;
}

static int cmd_sub(int port, const char *subject, long count, long timeout,
                   const char *queue, const char *ready)
{
  conn c = { 0 };
  char line[4096];
  long got = 0;
  connect_to(&c, port);
  int n = snprintf(line, sizeof line, "SUB %s %s 1\r\n", subject,
                   queue ? queue : "");
  send_all(&c, line, (size_t)n);
  sync_server(&c);
  if (ready) {
    FILE *f = fopen(ready, "w");
    if (f)
      fclose(f);
  }
  long long deadline = now_ms() + timeout;
  while (got < count && read_line(&c, line, sizeof line, deadline)) {
    if (!strcmp(line, "PING"))
      send_all(&c, "PONG\r\n", 6);
    else if (!strncmp(line, "MSG ", 4) || !strncmp(line, "HMSG ", 5))
      got += on_message(&c, line, deadline);
  }
  close(c.fd);
  return got >= count ? 0 : 1;
}

int main(int argc, char **argv)
{
  char *hdrs[32];
  int nh = 0;
  const char *prefix = "m", *queue = NULL, *ready = NULL;
  if (argc < 5)
    die("usage: nats_wire pub PORT SUBJECT COUNT [-H n:v].. [-p PREFIX] | "
        "sub PORT SUBJECT COUNT TIMEOUT_MS [-q QUEUE] [-r READYFILE]");
  int sub = !strcmp(argv[1], "sub");
  for (int i = sub ? 6 : 5; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "-H") && nh < 32)
      hdrs[nh++] = argv[i + 1];
    else if (!strcmp(argv[i], "-p"))
      prefix = argv[i + 1];
    else if (!strcmp(argv[i], "-q"))
      queue = argv[i + 1];
    else if (!strcmp(argv[i], "-r"))
      ready = argv[i + 1];
  }
  if (sub)
    return argc < 6 ? 2 : cmd_sub(atoi(argv[2]), argv[3], atol(argv[4]),
                                  atol(argv[5]), queue, ready);
  return cmd_pub(atoi(argv[2]), argv[3], atol(argv[4]), hdrs, nh, prefix);
}
