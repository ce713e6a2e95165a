/*
 * swit_kafka_mock.c - swit-kafka-mock: a Kafka cluster for tests and for
 * trying scripts, built on librdkafka's mock cluster (rdkafka_mock.h).
 *
 *   swit-kafka-mock [--brokers N] [--bootstrap-file PATH]
 *                   [--topic NAME[:PARTITIONS]]...
 *
 * Starts N mock brokers on 127.0.0.1 (random ports: the mock has no port
 * option), creates the topics given (the mock does not answer the Admin
 * CreateTopics request; topics it auto-creates get 4 partitions), prints
 * the bootstrap string on stdout and writes it to PATH (atomically, with
 * a final newline). Signals: SIGUSR1 takes broker 1 down, SIGUSR2 brings
 * it back up, SIGTERM or SIGINT stops the cluster and exits 0.
 *
 * The mock API is experimental (no ABI guarantee), so it lives only in
 * this tool, never in the host. One thread: main blocks the signals and
 * waits for them with sigwait; librdkafka runs the cluster on its own
 * threads. The tool owns the producer handle that hosts the cluster.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MOCK_MAX_BROKERS 16

static const char usage[] =
  "usage: swit-kafka-mock [--brokers N] [--bootstrap-file PATH]\n"
  "                       [--topic NAME[:PARTITIONS]]...\n"
  "Starts N (default 3, at most 16) mock Kafka brokers on 127.0.0.1, creates\n"
  "the topics (default 4 partitions each), prints the bootstrap servers and\n"
  "writes them to PATH. SIGUSR1: broker 1 down, SIGUSR2: broker 1 up,\n"
  "SIGTERM/SIGINT: exit.\n";

typedef struct mock_opts {
  int brokers;
  const char *bootstrap_file;
  char **topics; /* argv entries, NAME[:PARTITIONS] */
  int ntopics;
} mock_opts;

/* ---------------------------------------------------------------------
 * Arguments */

static int parse_args(int argc, char **argv, mock_opts *o)
{
  o->brokers = 3;
  o->topics = calloc((size_t)argc, sizeof *o->topics);
  if (!o->topics)
    return -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h"))
      return 1;
    if (i + 1 >= argc)
      return -1;
    if (!strcmp(a, "--brokers")) {
      char *end;
      long n = strtol(argv[++i], &end, 10);
      if (*end || n < 1 || n > MOCK_MAX_BROKERS)
        return -1;
      o->brokers = (int)n;
    } else if (!strcmp(a, "--bootstrap-file")) {
      o->bootstrap_file = argv[++i];
    } else if (!strcmp(a, "--topic")) {
      o->topics[o->ntopics++] = argv[++i];
    } else {
      return -1;
    }
  }
  return 0;
}

/* ---------------------------------------------------------------------
 * The cluster */

static rd_kafka_t *host_handle(char *err, size_t errlen)
{
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_t *rk;
  /* The hosting handle never talks to the cluster itself. */
  if (rd_kafka_conf_set(conf, "log_level", "3", err, errlen) != RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
  if (!rk)
    rd_kafka_conf_destroy(conf);
  return rk; /* conf owned by rk on success */
}

static int create_topic(rd_kafka_mock_cluster_t *mc, const char *spec)
{
  char name[512];
  const char *colon = strrchr(spec, ':');
  long parts = 4;
  size_t len = colon ? (size_t)(colon - spec) : strlen(spec);

  if (colon) {
    char *end;
    parts = strtol(colon + 1, &end, 10);
    if (*end || parts < 1 || parts > 10000) {
      fprintf(stderr, "swit-kafka-mock: --topic %s: bad partition count\n", spec);
      return -1;
    }
  }
  if (len == 0 || len >= sizeof name) {
    fprintf(stderr, "swit-kafka-mock: --topic %s: bad topic name\n", spec);
    return -1;
  }
  memcpy(name, spec, len);
  name[len] = '\0';
  rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mc, name, (int)parts, 1);
  if (e) {
    fprintf(stderr, "swit-kafka-mock: cannot create topic %s: %s\n", name,
            rd_kafka_err2str(e));
    return -1;
  }
  return 0;
}

/* Write the bootstrap string to path via a temporary file and rename, so
 * that a reader never sees a partial line. */
static int write_bootstrap(const char *path, const char *bootstraps)
{
  size_t len = strlen(path) + 8;
  char *tmp = malloc(len);
  FILE *f = NULL;
  int rc = -1;

  if (!tmp)
    goto fail;
  snprintf(tmp, len, "%s.tmp", path);
  if (!(f = fopen(tmp, "w")))
    goto fail;
  if (fprintf(f, "%s\n", bootstraps) < 0)
    goto fail;
  if (fclose(f)) {
    f = NULL;
    goto fail;
  }
  f = NULL;
  if (rename(tmp, path))
    goto fail;
  rc = 0;
fail:
  if (f)
    fclose(f);
  if (rc)
    perror("swit-kafka-mock: cannot write the bootstrap file");
  free(tmp);
  return rc;
}

/* Serve signals until SIGTERM or SIGINT. */
static void serve_signals(rd_kafka_mock_cluster_t *mc, const sigset_t *sigs)
{
  for (;;) {
    int sig;
    if (sigwait(sigs, &sig))
      continue;
    if (sig == SIGTERM || sig == SIGINT)
      return;
    int down = sig == SIGUSR1;
    rd_kafka_resp_err_t e = down ? rd_kafka_mock_broker_set_down(mc, 1)
                                 : rd_kafka_mock_broker_set_up(mc, 1);
    fprintf(stderr, "swit-kafka-mock: broker 1 %s%s%s\n", down ? "down" : "up",
            e ? ": " : "", e ? rd_kafka_err2str(e) : "");
  }
}

int main(int argc, char **argv)
{
  mock_opts o = {0};
  rd_kafka_t *rk = NULL;
  rd_kafka_mock_cluster_t *mc = NULL;
  sigset_t sigs;
  char err[512];
  int rc = parse_args(argc, argv, &o), code = 2;

  if (rc) {
    fputs(usage, rc > 0 ? stdout : stderr);
    code = rc > 0 ? 0 : 2;
    goto done;
  }
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGUSR1);
  sigaddset(&sigs, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* librdkafka threads inherit it */
  code = 1;
  if (!(rk = host_handle(err, sizeof err))) {
    fprintf(stderr, "swit-kafka-mock: %s\n", err);
    goto done;
  }
  if (!(mc = rd_kafka_mock_cluster_new(rk, o.brokers))) {
    fprintf(stderr, "swit-kafka-mock: cannot create the mock cluster\n");
    goto done;
  }
  for (int i = 0; i < o.ntopics; i++)
    if (create_topic(mc, o.topics[i]))
      goto done;
  const char *bs = rd_kafka_mock_cluster_bootstraps(mc);
  if (o.bootstrap_file && write_bootstrap(o.bootstrap_file, bs))
    goto done;
  printf("%s\n", bs);
  fflush(stdout);
  serve_signals(mc, &sigs);
  code = 0;
done:
  if (mc)
    rd_kafka_mock_cluster_destroy(mc);
  if (rk)
    rd_kafka_destroy(rk);
  free(o.topics);
  return code;
}
