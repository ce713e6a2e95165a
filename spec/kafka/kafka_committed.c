/*
 * kafka_committed.c - a test tool: print a consumer group's committed
 * offsets, read with a second librdkafka client that does not join the
 * group (rd_kafka_committed). Used by spec/kafka to check what swit
 * commits.
 *
 *   kafka_committed BOOTSTRAP GROUP TOPIC PARTITIONS
 *
 * Prints one line per partition, "<partition> <offset>", where offset is
 * -1001 when the group has committed nothing for it. Exit 0, or 1 with
 * the reason on stderr. Single-threaded; owns its handle.
 */
#include <stdio.h>
#include <stdlib.h>

#include <librdkafka/rdkafka.h>

static rd_kafka_t *client(const char *bootstrap, const char *group)
{
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_t *rk;

  if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof err) ||
      rd_kafka_conf_set(conf, "group.id", group, err, sizeof err) ||
      rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err)) {
    fprintf(stderr, "kafka_committed: %s\n", err);
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  if (!(rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err))) {
    fprintf(stderr, "kafka_committed: %s\n", err);
    rd_kafka_conf_destroy(conf);
  }
  return rk; /* conf owned by rk */
}

int main(int argc, char **argv)
{
  rd_kafka_topic_partition_list_t *l = NULL;
  rd_kafka_t *rk = NULL;
  int code = 1;

  if (argc != 5) {
    fprintf(stderr, "usage: kafka_committed BOOTSTRAP GROUP TOPIC PARTITIONS\n");
    return 2;
  }
  int n = atoi(argv[4]);
  if (n < 1 || !(rk = client(argv[1], argv[2])))
    goto done;
  l = rd_kafka_topic_partition_list_new(n);
  for (int i = 0; i < n; i++)
    rd_kafka_topic_partition_list_add(l, argv[3], i);
  rd_kafka_resp_err_t e = rd_kafka_committed(rk, l, 10000);
  if (e) {
    fprintf(stderr, "kafka_committed: %s\n", rd_kafka_err2str(e));
    goto done;
  }
  for (int i = 0; i < l->cnt; i++)
    printf("%d %lld\n", (int)l->elems[i].partition,
           (long long)l->elems[i].offset);
  code = 0;
done:
  if (l)
    rd_kafka_topic_partition_list_destroy(l);
  if (rk)
    rd_kafka_destroy(rk);
  return code;
}
