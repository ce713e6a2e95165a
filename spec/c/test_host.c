/*
 * test_host.c - the public C API (swit.h only, linked against libswit.so)
 * on the memory broker: C handlers, results and retries, dead-lettering
 * with its headers, per-key order, backpressure without loss, draining
 * stop, Lua and C handlers side by side, errors from bad input, the
 * embedder's log callback and the version macros.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "swit/swit.h"

#define NKEYS 16

typedef struct counter {
  atomic_int calls;
  atomic_int last_seq[NKEYS]; /* per key: last sequence seen */
  atomic_int out_of_order;
  int mode;                   /* what the handler returns, see below */
  int sleep_us;
} counter;

enum { MODE_ACK, MODE_RETRY_TWICE, MODE_REJECT, MODE_RETRY_ALWAYS };

static int count_handler(swit_msg_t *m, void *ud)
{
  counter *c = ud;
  size_t len;
  const char *p = swit_msg_payload(m, &len);
  char text[32];
  int key = 0, seq = 0;

  atomic_fetch_add(&c->calls, 1);
  if (len >= sizeof text) len = sizeof text - 1;
  memcpy(text, p, len); /* payloads are not NUL-terminated */
  text[len] = '\0';
  if (sscanf(text, "%d:%d", &key, &seq) == 2 && key >= 0 && key < NKEYS) {
    if (seq <= atomic_load(&c->last_seq[key])) atomic_fetch_add(&c->out_of_order, 1);
    atomic_store(&c->last_seq[key], seq);
  }
  if (c->sleep_us) usleep((useconds_t)c->sleep_us);
  switch (c->mode) {
  case MODE_RETRY_TWICE:
    return swit_msg_attempt(m) < 3 ? SWIT_RETRY : SWIT_ACK;
  case MODE_REJECT:
    swit_msg_set_error(m, "no thanks");
    return SWIT_REJECT;
  case MODE_RETRY_ALWAYS:
    return SWIT_RETRY;
  default:
    return SWIT_ACK;
  }
}

/* Dead letters reach dlq_handler on any worker: the copies are made under
 * `lock` (ThreadSanitizer showed two workers writing `error` at once). */
typedef struct dlq_seen {
  atomic_int calls;
  pthread_mutex_t lock;
  char error[64], attempts[8], origin[64];
} dlq_seen;

static void copy_header(const swit_msg_t *m, const char *name, char *out,
                        size_t cap)
{
  size_t len;
  const char *v = swit_msg_header(m, name, &len);
  if (!v) return;
  if (len >= cap) len = cap - 1;
  memcpy(out, v, len);
  out[len] = '\0';
}

static int dlq_handler(swit_msg_t *m, void *ud)
{
  dlq_seen *d = ud;
  pthread_mutex_lock(&d->lock);
  copy_header(m, "x-swit-error", d->error, sizeof d->error);
  copy_header(m, "X-Swit-Attempts", d->attempts, sizeof d->attempts);
  copy_header(m, "x-swit-origin-topic", d->origin, sizeof d->origin);
  pthread_mutex_unlock(&d->lock);
  atomic_fetch_add(&d->calls, 1);
  return SWIT_ACK;
}

static const char base_yaml[] =
  "server: {name: test, admin: {listen: \"off\"}}\n"
  "messaging:\n"
  "  subscribers:\n"
  "    default: {max_attempts: 3, retry_delay: 5ms, retry_max_delay: 20ms}\n"
  "  resources:\n"
  "    subscribers: {worker_pool_size: 3, max_in_flight: %d}\n"
  "lua:\n"
  "  batch_size: 32\n"
  "%s";

static swit_host_t *new_host(int max_in_flight, const char *extra)
{
  char yaml[2048], err[512];
  swit_host_t *h = NULL;

  snprintf(yaml, sizeof yaml, base_yaml, max_in_flight, extra);
  if (swit_host_new_from_string(&h, yaml, NULL, err, sizeof err) != 0)
    fprintf(stderr, "new_host: %s\n", err);
  return h;
}

static void publish_keyed(swit_host_t *h, const char *topic, int n)
{
  char payload[32], key[8];
  char err[256];

  for (int i = 0; i < n; i++) {
    int k = i % NKEYS;
    snprintf(key, sizeof key, "k%d", k);
    snprintf(payload, sizeof payload, "%d:%d", k, i / NKEYS + 1);
    if (swit_host_publish(h, topic, key, strlen(key), payload, strlen(payload),
                          NULL, NULL, err, sizeof err) != 0) {
      fprintf(stderr, "publish: %s\n", err);
      CHECK(0);
      return;
    }
  }
}

/* ------------------------------------------------------------------ */

static void test_c_handler_gets_everything_in_key_order(void)
{
  counter c = {.mode = MODE_ACK};
  swit_host_t *h = new_host(1000, "");
  char err[256];

  CHECK(h != NULL);
  CHECK(swit_host_handle(h, "orders", NULL, SWIT_ORDER_KEY, count_handler, &c,
                         err, sizeof err) == 0);
  CHECK(swit_host_start(h, err, sizeof err) == 0);
  publish_keyed(h, "orders", 20000);
  CHECK(swit_host_wait_idle(h, 100, 30000) == 0);
  CHECK(atomic_load(&c.calls) == 20000);
  CHECK(atomic_load(&c.out_of_order) == 0);
  CHECK(swit_host_stop(h, 5000) == 0);
  CHECK(swit_host_stop(h, 5000) == 0);  /* idempotent */
  swit_host_free(h);
}

/* Runs n keyed messages on "jobs" through count_handler, with a
 * dead-letter handler on "jobs.dlq", until idle. */
static void run_jobs(counter *c, dlq_seen *d, int n)
{
  swit_host_t *h = new_host(1000, "");
  char err[256];

  swit_host_handle(h, "jobs", NULL, SWIT_ORDER_KEY, count_handler, c, err, sizeof err);
  swit_host_handle(h, "jobs.dlq", NULL, SWIT_ORDER_KEY, dlq_handler, d, err, sizeof err);
  CHECK(swit_host_start(h, err, sizeof err) == 0);
  publish_keyed(h, "jobs", n);
  CHECK(swit_host_wait_idle(h, 100, 30000) == 0);
  swit_host_free(h);
}

static void test_retry_then_ack(void)
{
  counter c = {.mode = MODE_RETRY_TWICE};
  dlq_seen d = {.lock = PTHREAD_MUTEX_INITIALIZER};

  run_jobs(&c, &d, 10);
  CHECK(atomic_load(&c.calls) == 30);    /* 3 attempts each */
  CHECK(atomic_load(&d.calls) == 0);
}

static void test_exhausted_retries_dead_letter_with_headers(void)
{
  counter c = {.mode = MODE_RETRY_ALWAYS};
  dlq_seen d = {.lock = PTHREAD_MUTEX_INITIALIZER};

  run_jobs(&c, &d, 4);
  CHECK(atomic_load(&c.calls) == 12);
  CHECK(atomic_load(&d.calls) == 4);
  CHECK(strcmp(d.error, "retry") == 0);
  CHECK(strcmp(d.attempts, "3") == 0);
  CHECK(strcmp(d.origin, "jobs") == 0);
}

static void test_reject_dead_letters_at_once(void)
{
  counter c = {.mode = MODE_REJECT};
  dlq_seen d = {.lock = PTHREAD_MUTEX_INITIALIZER};

  run_jobs(&c, &d, 5);
  CHECK(atomic_load(&c.calls) == 5);
  CHECK(atomic_load(&d.calls) == 5);
  CHECK(strcmp(d.error, "no thanks") == 0);
  CHECK(strcmp(d.attempts, "1") == 0);
}

/* A message dead-lettered a second time carries only the newest x-swit-*
 * headers (the older copies used to shadow them). */
static int reject_again(swit_msg_t *m, void *ud)
{
  (void)m, (void)ud;
  swit_msg_set_error(m, "second opinion");
  return SWIT_REJECT;
}

static void test_second_dead_lettering_replaces_headers(void)
{
  counter c = {.mode = MODE_REJECT};
  dlq_seen d = {.lock = PTHREAD_MUTEX_INITIALIZER};
  swit_host_t *h = new_host(1000, "");
  char err[256];

  swit_host_handle(h, "jobs", NULL, SWIT_ORDER_KEY, count_handler, &c, err, sizeof err);
  swit_host_handle(h, "jobs.dlq", NULL, SWIT_ORDER_KEY, reject_again, NULL, err, sizeof err);
  swit_host_handle(h, "jobs.dlq.dlq", NULL, SWIT_ORDER_KEY, dlq_handler, &d, err, sizeof err);
  CHECK(swit_host_start(h, err, sizeof err) == 0);
  publish_keyed(h, "jobs", 1);
  CHECK(swit_host_wait_idle(h, 100, 30000) == 0);
  CHECK(atomic_load(&d.calls) == 1);
  CHECK(strcmp(d.error, "second opinion") == 0);
  CHECK(strcmp(d.origin, "jobs.dlq") == 0);
  swit_host_free(h);
}

/* The dead-letter topic is full and retry_delay is 0: the refused
 * publishes are parked and tried again later, and the worker neither
 * spins nor blocks a stop (it used to loop on them forever). */
static void test_full_dead_letter_topic_parks_without_spinning(void)
{
  counter c = {.mode = MODE_REJECT};
  swit_host_t *h = NULL;
  char err[256];
  static const char yaml[] =
    "server: {admin: {listen: \"off\"}}\n"
    "messaging:\n"
    "  broker: {type: memory, config: {queue_size: 4}}\n"
    "  subscribers:\n"
    "    default: {max_attempts: 1, retry_delay: 0ms}\n"
    "  resources:\n"
    "    subscribers: {worker_pool_size: 1}\n";

  CHECK(swit_host_new_from_string(&h, yaml, NULL, err, sizeof err) == 0);
  swit_host_handle(h, "jobs", NULL, SWIT_ORDER_KEY, count_handler, &c, err, sizeof err);
  CHECK(swit_host_start(h, err, sizeof err) == 0);
  publish_keyed(h, "jobs", 3);     /* room for 4 on each topic */
  while (atomic_load(&c.calls) < 3) usleep(1000);
  publish_keyed(h, "jobs", 3);     /* the dead-letter topic fills up */
  CHECK(swit_host_wait_idle(h, 100, 300) == SWIT_E_TIMEDOUT); /* parked */
  CHECK(swit_host_stop(h, 200) == 0);                          /* returns */
  swit_host_free(h);
}

static int count_dlq(swit_msg_t *m, void *ud)
{
  (void)m;
  atomic_fetch_add((atomic_int *)ud, 1);
  return SWIT_ACK;
}

/* The core checks every publish against max_message_size (payload, key
 * and header names and values), once for every broker, and refuses a
 * batch as a whole; a dead-letter copy, which the host's headers push
 * over the limit, still goes out (as on every broker). */
static void test_max_message_size_is_checked_by_the_core(void)
{
  counter c = {.mode = MODE_REJECT};
  atomic_int dlq = 0;
  swit_host_t *h;
  char yaml[512], err[256], big[80];
  const char *hv[] = {"h", "0123456789", NULL, NULL};
  swit_pub_t batch[3] = {{NULL, 0, "0:1", 3}, {NULL, 0, big, 65},
                         {NULL, 0, "0:2", 3}};
  size_t accepted = 9;

  memset(big, 'p', sizeof big);
  memcpy(big, "0:1 ", 4);
  snprintf(yaml, sizeof yaml,
           "server: {admin: {listen: \"off\"}}\n"
           "messaging:\n"
           "  resources:\n"
           "    memory: {max_message_size: 64}\n"
           "    subscribers: {worker_pool_size: 1}\n");
  CHECK(swit_host_new_from_string(&h, yaml, NULL, err, sizeof err) == 0);
  swit_host_handle(h, "jobs", NULL, SWIT_ORDER_KEY, count_handler, &c, err, sizeof err);
  swit_host_handle(h, "jobs.dlq", NULL, SWIT_ORDER_KEY, count_dlq, &dlq, err, sizeof err);
  CHECK(swit_host_start(h, err, sizeof err) == 0);
  CHECK(swit_host_publish(h, "jobs", NULL, 0, big, 65, NULL, NULL, err,
                          sizeof err) == SWIT_E_TOOBIG);
  CHECK(strstr(err, "message of 65 bytes (payload+key+headers) exceeds "
                    "messaging.resources.memory.max_message_size (64)") != NULL);
  CHECK(swit_host_publish(h, "jobs", "k0", 2, big, 52, hv, NULL, err,
                          sizeof err) == SWIT_E_TOOBIG);    /* 2 + 52 + 11 */
  CHECK(swit_host_publish_batch(h, "jobs", batch, 3, &accepted, err,
                                sizeof err) == SWIT_E_TOOBIG);
  CHECK(accepted == 0 && strstr(err, "message 2 of 3") != NULL);
  CHECK(swit_host_publish(h, "jobs", "k0", 2, big, 51, hv, NULL, err,
                          sizeof err) == 0);                /* exactly 64 */
  CHECK(swit_host_wait_idle(h, 100, 10000) == 0);
  CHECK(atomic_load(&c.calls) == 1);
  CHECK(atomic_load(&dlq) == 1);   /* its dead-letter copy went out */
  swit_host_free(h);
}

static void test_backpressure_loses_nothing(void)
{
  counter c = {.mode = MODE_ACK, .sleep_us = 20};
  swit_host_t *h = new_host(64, "");
  char err[256];

  swit_host_handle(h, "slow", NULL, SWIT_ORDER_NONE, count_handler, &c, err, sizeof err);
  CHECK(swit_host_start(h, err, sizeof err) == 0);
  publish_keyed(h, "slow", 5000);
  CHECK(swit_host_wait_idle(h, 100, 60000) == 0);
  CHECK(atomic_load(&c.calls) == 5000);
  swit_host_free(h);
}

/* Stop pauses intake, lets every delivered message finish, and returns
 * only when no handler runs any more. (What the memory broker had not yet
 * delivered stays in it; see docs/brokers/memory.md.) */
static void test_stop_drains_in_flight(void)
{
  counter c = {.mode = MODE_ACK, .sleep_us = 100};
  swit_host_t *h = new_host(100000, "");
  char err[256];
  int after_stop;

  swit_host_handle(h, "work", NULL, SWIT_ORDER_KEY, count_handler, &c, err, sizeof err);
  CHECK(swit_host_start(h, err, sizeof err) == 0);
  publish_keyed(h, "work", 2000);
  while (atomic_load(&c.calls) < 100) usleep(1000);
  CHECK(swit_host_stop(h, 30000) == 0);
  after_stop = atomic_load(&c.calls);
  usleep(50000);
  CHECK(atomic_load(&c.calls) == after_stop);
  CHECK(after_stop >= 100);
  swit_host_free(h);
}

static void test_duplicate_handler_is_refused(void)
{
  counter c = {0};
  swit_host_t *h = new_host(1000, "");
  char err[256] = "";

  CHECK(swit_host_handle(h, "t", "g", SWIT_ORDER_KEY, count_handler, &c, err,
                         sizeof err) == 0);
  CHECK(swit_host_handle(h, "t", "g", SWIT_ORDER_KEY, count_handler, &c, err,
                         sizeof err) == SWIT_E_EXISTS);
  CHECK(strstr(err, "topic 't' has two handlers for group 'g'") != NULL);
  CHECK(swit_host_start(h, err, sizeof err) == 0);
  swit_host_free(h);
}

/* swit_host_handle_from: a start outside SWIT_FROM_* is refused at once;
 * the memory broker, which keeps no history, refuses to start a new
 * group at the beginning (the start fails, nothing runs); latest and the
 * default start. */
static void test_handle_from(void)
{
  counter c = {0};
  char err[256] = "";
  swit_host_t *h = new_host(1000, "");

  CHECK(swit_host_handle_from(h, "t", NULL, SWIT_ORDER_KEY, 3, count_handler,
                              &c, err, sizeof err) == SWIT_E_INVAL);
  CHECK(swit_host_handle_from(h, "t", NULL, SWIT_ORDER_KEY, -1, count_handler,
                              &c, err, sizeof err) == SWIT_E_INVAL);
  CHECK(strstr(err, "SWIT_FROM_DEFAULT") != NULL);
  CHECK(swit_host_handle_from(h, "t", NULL, SWIT_ORDER_KEY,
                              SWIT_FROM_BEGINNING, count_handler, &c, err,
                              sizeof err) == 0);
  CHECK(swit_host_start(h, err, sizeof err) == SWIT_E_CONFIG);
  CHECK(strstr(err, "keeps no history") != NULL);
  swit_host_free(h);

  h = new_host(1000, "");
  CHECK(swit_host_handle_from(h, "t", NULL, SWIT_ORDER_KEY, SWIT_FROM_LATEST,
                              count_handler, &c, err, sizeof err) == 0);
  CHECK(swit_host_start(h, err, sizeof err) == 0);
  publish_keyed(h, "t", 10);
  for (int i = 0; i < 5000 && atomic_load(&c.calls) < 10; i++) usleep(1000);
  CHECK(atomic_load(&c.calls) == 10);
  CHECK(swit_host_stop(h, 30000) == 0);
  swit_host_free(h);
}

/* A host running the Lua script `src`, written as dir/name (dir is a
 * mkdtemp template, path receives the script's path). */
static swit_host_t *host_with_script(char *dir, char *path, size_t pathlen,
                                     const char *name, const char *src)
{
  char extra[256];
  FILE *f;

  CHECK(mkdtemp(dir) != NULL);
  snprintf(path, pathlen, "%s/%s", dir, name);
  f = fopen(path, "w");
  CHECK(f != NULL);
  if (!f) return NULL;
  fputs(src, f);
  fclose(f);
  snprintf(extra, sizeof extra, "  scripts: [%s]\n", path);
  return new_host(1000, extra);
}

static void test_lua_and_c_handlers_side_by_side(void)
{
  char dir[] = "/tmp/swit-test-XXXXXX", path[128], err[512];
  counter c = {.mode = MODE_ACK};
  swit_host_t *h;

  h = host_with_script(dir, path, sizeof path, "relay.lua",
    "local swit = require 'swit'\n"
    "swit.on('in', function(msg)\n"
    "  assert(swit.publish('out', msg:payload(), {key = msg:key()}))\n"
    "end)\n");
  CHECK(h != NULL);
  swit_host_handle(h, "out", NULL, SWIT_ORDER_KEY, count_handler, &c, err, sizeof err);
  CHECK(swit_host_start(h, err, sizeof err) == 0);
  publish_keyed(h, "in", 3000);
  CHECK(swit_host_wait_idle(h, 100, 30000) == 0);
  CHECK(atomic_load(&c.calls) == 3000);
  CHECK(atomic_load(&c.out_of_order) == 0);
  swit_host_free(h);
  unlink(path);
  rmdir(dir);
}

static void test_config_errors_name_the_place(void)
{
  swit_host_t *h = NULL;
  char err[512] = "";

  CHECK(swit_host_new_from_string(&h, "messaging:\n  brokr: {}\n", NULL, err,
                                  sizeof err) == SWIT_E_CONFIG);
  CHECK(h == NULL);
  CHECK(strstr(err, "<string>:2:3: messaging.brokr: unknown key") != NULL);
  CHECK(swit_host_new(&h, "/nonexistent/swit.yaml", err, sizeof err) == SWIT_E_CONFIG);
  CHECK(strstr(err, "/nonexistent/swit.yaml") != NULL);
  CHECK(strcmp(swit_strerror(SWIT_E_FULL), "queue full") == 0);
  CHECK(strcmp(swit_strerror(12345), "unknown error") == 0);
  swit_host_free(NULL);
}

/* The log callback: lines collected under a lock (workers log too). */
typedef struct log_seen {
  pthread_mutex_t lock;
  int n, bad_len;
  int level[64];
  char text[64][160];
} log_seen;

static void collect_log(void *ud, int level, const char *text, size_t len)
{
  log_seen *s = ud;
  pthread_mutex_lock(&s->lock);
  if (strlen(text) != len) s->bad_len++;
  if (s->n < 64) {
    s->level[s->n] = level;
    snprintf(s->text[s->n], sizeof s->text[0], "%s", text);
    s->n++;
  }
  pthread_mutex_unlock(&s->lock);
}

/* The level of the first collected line containing `part`, or -1. */
static int logged(log_seen *s, const char *part)
{
  int level = -1;
  pthread_mutex_lock(&s->lock);
  for (int i = 0; i < s->n && level < 0; i++)
    if (strstr(s->text[i], part)) level = s->level[i];
  pthread_mutex_unlock(&s->lock);
  return level;
}

static void test_log_callback_gets_every_line_instead_of_stderr(void)
{
  char dir[] = "/tmp/swit-test-XXXXXX", path[128], err[512];
  char errfile[160], big[3000];
  log_seen seen = {.lock = PTHREAD_MUTEX_INITIALIZER};
  int saved, fd;
  swit_host_t *h;
  FILE *f;

  h = host_with_script(dir, path, sizeof path, "log.lua",
    "local swit = require 'swit'\n"
    "swit.on_start(function()\n"
    "  swit.log('warn', 'from lua %d', 7)\n"
    "  swit.log('debug', 'below the level')\n"
    "end)\n");
  CHECK(h != NULL);
  CHECK(swit_host_set_log(NULL, collect_log, &seen) == SWIT_E_INVAL);
  CHECK(swit_host_set_log(h, collect_log, &seen) == 0);

  /* Nothing of the host may reach stderr meanwhile. */
  snprintf(errfile, sizeof errfile, "%s/stderr", dir);
  fflush(stderr);
  saved = dup(STDERR_FILENO);
  fd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  dup2(fd, STDERR_FILENO);
  close(fd);
  CHECK(swit_host_start(h, err, sizeof err) == 0);
  CHECK(swit_host_set_log(h, NULL, NULL) == SWIT_E_STATE);
  CHECK(swit_host_wait_idle(h, 50, 30000) == 0);
  swit_host_log(h, SWIT_LOG_ERROR, "from C %s", "x");
  memset(big, 'b', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  swit_host_log(h, SWIT_LOG_INFO, "%s", big);          /* cut, still one line */
  swit_host_free(h);
  fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);

  CHECK(logged(&seen, ", broker memory, ") == SWIT_LOG_INFO);
  CHECK(logged(&seen, "[worker 0] from lua 7") == SWIT_LOG_WARN);
  CHECK(logged(&seen, "below the level") == -1);
  CHECK(logged(&seen, "from C x") == SWIT_LOG_ERROR);
  CHECK(logged(&seen, "bbbbbbbb") == SWIT_LOG_INFO);
  CHECK(logged(&seen, "stopped") == SWIT_LOG_INFO);
  CHECK(seen.bad_len == 0);
  for (int i = 0; i < seen.n; i++)            /* the text alone: no time */
    CHECK(strncmp(seen.text[i], "20", 2) != 0);
  f = fopen(errfile, "r");
  CHECK(f != NULL);
  if (f) {
    CHECK(fgetc(f) == EOF);
    fclose(f);
  }
  unlink(errfile);
  unlink(path);
  rmdir(dir);
}

static void test_version_macros_match_the_library(void)
{
  char text[32];

  snprintf(text, sizeof text, "%d.%d.%d", SWIT_VERSION_MAJOR,
           SWIT_VERSION_MINOR, SWIT_VERSION_PATCH);
  CHECK(strcmp(text, SWIT_VERSION_STRING) == 0);
  CHECK(strcmp(swit_version(), SWIT_VERSION_STRING) == 0);
  CHECK(swit_version_number() == SWIT_VERSION_NUMBER);
  CHECK(SWIT_VERSION_NUMBER == SWIT_VERSION_MAJOR * 10000 +
                               SWIT_VERSION_MINOR * 100 + SWIT_VERSION_PATCH);
}

int main(void)
{
  test_version_macros_match_the_library();
  test_log_callback_gets_every_line_instead_of_stderr();
  test_config_errors_name_the_place();
  test_c_handler_gets_everything_in_key_order();
  test_retry_then_ack();
  test_exhausted_retries_dead_letter_with_headers();
  test_reject_dead_letters_at_once();
  test_second_dead_lettering_replaces_headers();
  test_full_dead_letter_topic_parks_without_spinning();
  test_max_message_size_is_checked_by_the_core();
  test_backpressure_loses_nothing();
  test_stop_drains_in_flight();
  test_duplicate_handler_is_refused();
  test_handle_from();
  test_lua_and_c_handlers_side_by_side();
  return check_done("host");
}
