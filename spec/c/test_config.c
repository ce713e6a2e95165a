/*
 * test_config.c - unit tests of the configuration loader (host/config*.c):
 * defaults, the seed-design example, typing of durations and sizes,
 * ${VAR} expansion, every kind of error with its file:line:col text (deep
 * nesting refused early among them), Lua script resolution, passthrough
 * maps, swit__config_apply() and the publisher/subscriber lookups. Single-threaded; file tests write into a
 * mkdtemp() directory under /tmp that is removed at the end.
 */
#if !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "config/config.h"
#include "swit/swit.h"

/* ------------------------------------------------------------------ */
/* Helpers */

static char tmpdir[64];

static void write_file(const char *rel, const char *text)
{
  char path[256];
  FILE *fp;

  snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
  fp = fopen(path, "w");
  if (!fp || fputs(text, fp) < 0 || fclose(fp) != 0) {
    perror(path);
    exit(2);
  }
}

static swit_config *load_ok(const char *yaml, const char *base_dir, int line)
{
  swit_config *cfg = NULL;
  char err[512] = "";

  if (swit__config_load_string(&cfg, yaml, base_dir, err, sizeof err) != 0) {
    fprintf(stderr, "%s:%d: unexpected load error: %s\n", __FILE__, line, err);
    exit(1);
  }
  return cfg;
}
#define LOAD_OK(yaml) load_ok((yaml), NULL, __LINE__)

/* Loading must fail with SWIT_E_CONFIG and exactly `want` in err. */
static void expect_error(const char *yaml, const char *base_dir,
                         const char *want, int line)
{
  swit_config *cfg = (swit_config *)&cfg;
  char err[512] = "";
  int rc = swit__config_load_string(&cfg, yaml, base_dir, err, sizeof err);

  CHECK(rc == SWIT_E_CONFIG);
  CHECK(cfg == NULL);
  if (strcmp(err, want) != 0) {
    check_failures++;
    fprintf(stderr, "%s:%d: error text\n  want: %s\n  got:  %s\n", __FILE__,
            line, want, err);
  }
}
#define EXPECT_ERROR(yaml, want) expect_error((yaml), NULL, (want), __LINE__)

static int64_t dur(const char *s)
{
  int64_t v = -1;
  return swit__parse_duration_ms(s, &v) == 0 ? v : -1;
}

static int64_t size(const char *s)
{
  int64_t v = -1;
  return swit__parse_size(s, &v) == 0 ? v : -1;
}

/* ------------------------------------------------------------------ */
/* Defaults */

static void it_fills_every_default_from_an_empty_string(void)
{
  swit_config *cfg = LOAD_OK("");
  const swit_cfg_publisher *p = swit__config_publisher(cfg, NULL);
  const swit_cfg_subscriber *s = swit__config_subscriber(cfg, NULL);

  CHECK(strcmp(cfg->path, "<string>") == 0);
  CHECK(strcmp(cfg->base_dir, ".") == 0);
  CHECK(strcmp(cfg->server.name, "swit") == 0);
  CHECK(strcmp(cfg->server.version, "0.0.0") == 0);
  CHECK(cfg->messaging.enabled == 1);
  CHECK(strcmp(swit__broker_types[cfg->messaging.broker.type], "memory") == 0);
  CHECK(cfg->messaging.broker.type_mark.line == 0);
  CHECK(cfg->messaging.broker.endpoints.n == 0);
  CHECK(cfg->messaging.broker.config.n == 0);
  CHECK(cfg->messaging.publishers.n == 1);
  CHECK(strcmp(cfg->messaging.publishers.names[0], "default") == 0);
  CHECK(p->retry_attempts == 3 && p->retry_delay_ms == 1000);
  CHECK(p->timeout_ms == 5000);
  CHECK(cfg->messaging.subscribers.n == 1);
  CHECK(s->prefetch == 100);
  CHECK(s->ack_deadline_ms == 30000 && s->max_attempts == 3);
  CHECK(s->retry_delay_ms == 100 && s->retry_max_delay_ms == 30000);
  CHECK(s->retry_multiplier == 2.0 && s->retry_jitter == 0.2);
  CHECK(cfg->messaging.resources.subscribers.worker_pool_size == 50);
  CHECK(cfg->messaging.resources.subscribers.max_in_flight == 1000);
  CHECK(cfg->messaging.resources.memory.max_message_size == 10 << 20);
  CHECK(cfg->messaging.security.transport.tls.enabled == 0);
  CHECK(cfg->messaging.security.transport.tls.cert_file == NULL);
  CHECK(cfg->messaging.security.transport.tls.verify_server == 1);
  CHECK(cfg->messaging.security.authentication.password == NULL);
  CHECK(cfg->lua.scripts.n == 0 && cfg->lua.package_path.n == 0);
  CHECK(cfg->lua.batch_size == 256);
  swit__config_free(cfg);
}

static void it_treats_comments_null_documents_and_null_values_as_defaults(void)
{
  swit_config *a = LOAD_OK("# nothing here\n");
  swit_config *b = LOAD_OK("~\n");
  swit_config *c = LOAD_OK("server:\n  name: ~\n  version:\n"
                           "lua:\n  batch_size: null\nmessaging:\n");

  CHECK(strcmp(a->server.name, "swit") == 0);
  CHECK(strcmp(b->server.name, "swit") == 0);
  CHECK(strcmp(c->server.name, "swit") == 0);
  CHECK(strcmp(c->server.version, "0.0.0") == 0);
  CHECK(c->lua.batch_size == 256);
  swit__config_free(a);
  swit__config_free(b);
  swit__config_free(c);
}

static void it_accepts_null_in_the_free_functions(void)
{
  swit__config_free(NULL);
  swit__config_free_fields(swit__publisher_fields, NULL);
  swit__config_free_fields(NULL, NULL);
}

/* ------------------------------------------------------------------ */
/* The seed-design example, less the keys swit refuses (see
 * it_refuses_every_key_it_does_not_implement), on NATS (the broker that
 * maps the TLS block) */

static const char seed_yaml[] =
    "server:\n"
    "  name: \"user-service\"\n"
    "  version: \"1.0.0\"\n"
    "\n"
    "messaging:\n"
    "  enabled: true\n"
    "  broker:\n"
    "    type: \"nats\"\n"
    "    endpoints:\n"
    "      - \"nats-1:4222\"\n"
    "      - \"nats-2:4222\"\n"
    "    config:\n"
    "      name: \"user-service\"\n"
    "      user: \"user-service\"\n"
    "  publishers:\n"
    "    default:\n"
    "      retry_attempts: 3\n"
    "      retry_delay: \"1s\"\n"
    "  subscribers:\n"
    "    default:\n"
    "      prefetch: 100\n"
    "      ack_deadline: \"30s\"\n"
    "  resources:\n"
    "    subscribers:\n"
    "      worker_pool_size: 50\n"
    "      max_in_flight: 1000\n"
    "    memory:\n"
    "      max_message_size: \"10MB\"\n"
    "  security:\n"
    "    transport:\n"
    "      tls:\n"
    "        enabled: true\n"
    "        cert_file: \"certs/client.crt\"\n"
    "        key_file: \"certs/client.key\"\n"
    "        ca_file: \"certs/ca.crt\"\n"
    "        verify_server: true\n"
    "lua:\n"
    "  scripts: [handlers.lua]\n"
    "  package_path: [\"lib/?.lua\"]\n"
    "  batch_size: 64\n";

#define SEC (cfg->messaging.security)

static void it_loads_the_seed_design_example_from_a_file(void)
{
  char path[256], want[256];
  swit_config *cfg = NULL;
  char err[512] = "";

  write_file("seed.yaml", seed_yaml);
  write_file("handlers.lua", "return {}\n");
  write_file("certs/client.crt", "crt\n");
  write_file("certs/client.key", "key\n");
  write_file("certs/ca.crt", "ca\n");
  snprintf(path, sizeof path, "%s/seed.yaml", tmpdir);
  CHECK(swit__config_load_file(&cfg, path, err, sizeof err) == 0);
  if (!cfg) {
    fprintf(stderr, "  %s\n", err);
    return;
  }
  CHECK(strcmp(cfg->path, path) == 0 && strcmp(cfg->base_dir, tmpdir) == 0);
  CHECK(strcmp(cfg->server.name, "user-service") == 0);
  CHECK(strcmp(cfg->server.version, "1.0.0") == 0);
  CHECK(strcmp(swit__broker_types[cfg->messaging.broker.type], "nats") == 0);
  CHECK(cfg->messaging.broker.type_mark.line == 8);
  CHECK(cfg->messaging.broker.type_mark.col == 11);
  CHECK(strcmp(cfg->messaging.broker.type_mark.file, path) == 0);
  CHECK(cfg->messaging.broker.endpoints.n == 2);
  CHECK(strcmp(cfg->messaging.broker.endpoints.items[1], "nats-2:4222") == 0);
  CHECK(cfg->messaging.broker.config.n == 2);
  CHECK(swit__config_subscriber(cfg, "x")->ack_deadline_ms == 30000);
  CHECK(SEC.transport.tls.enabled == 1);
  snprintf(want, sizeof want, "%s/certs/client.crt", tmpdir);
  CHECK(strcmp(SEC.transport.tls.cert_file, want) == 0);
  CHECK(SEC.transport.tls.verify_server == 1);
  snprintf(want, sizeof want, "%s/handlers.lua", tmpdir);
  CHECK(cfg->lua.scripts.n == 1);
  CHECK(strcmp(cfg->lua.scripts.items[0], want) == 0);
  CHECK(cfg->lua.scripts_mark.line == 38 && cfg->lua.scripts_mark.col == 12);
  CHECK(strcmp(cfg->lua.package_path.items[0], "lib/?.lua") == 0);
  CHECK(cfg->lua.batch_size == 64);
  swit__config_free(cfg);
}

/* ------------------------------------------------------------------ */
/* Durations and sizes */

static void it_parses_durations(void)
{
  int64_t v = 7;

  CHECK(dur("250ms") == 250);
  CHECK(dur("30s") == 30000);
  CHECK(dur("5m") == 300000);
  CHECK(dur("1h") == 3600000);
  CHECK(dur("1.5s") == 1500);
  CHECK(dur("0.25h") == 900000);
  CHECK(dur("42") == 42);
  CHECK(dur("0") == 0);
  CHECK(dur("2 s") == 2000);
  CHECK(swit__parse_duration_ms("", &v) == SWIT_E_INVAL && v == 7);
  CHECK(dur("abc") == -1);
  CHECK(dur("-5s") == -1);
  CHECK(dur("5x") == -1);
  CHECK(dur("5S") == -1);
  CHECK(dur("1.s") == -1);
  CHECK(dur(".5s") == -1);
  CHECK(dur("s") == -1);
  CHECK(dur("10s ") == -1);
  CHECK(dur("10 ") == -1);
  CHECK(dur("10  s") == -1);
  CHECK(dur("99999999999999999999") == -1);
  CHECK(dur("9223372036854775807h") == -1);
  CHECK(dur("9223372036854775807") == INT64_MAX);
  CHECK(swit__parse_duration_ms(NULL, &v) == SWIT_E_INVAL);
}

static void it_parses_sizes(void)
{
  CHECK(size("512") == 512);
  CHECK(size("512b") == 512);
  CHECK(size("64KB") == 65536);
  CHECK(size("64KiB") == 65536);
  CHECK(size("64K") == 65536);
  CHECK(size("64kb") == 65536);
  CHECK(size("10MB") == 10 << 20);
  CHECK(size("10 mib") == 10 << 20);
  CHECK(size("1GB") == 1 << 30);
  CHECK(size("1.5KB") == 1536);
  CHECK(size("2TB") == (int64_t)2 << 40);
  CHECK(size("") == -1);
  CHECK(size("10XB") == -1);
  CHECK(size("-1") == -1);
  CHECK(size("MB") == -1);
  CHECK(size("9999999999TB") == -1);
  CHECK(size("8589934592GB") == -1);
}

static void it_rejects_bad_durations_and_sizes_in_the_config(void)
{
  EXPECT_ERROR("messaging:\n  subscribers:\n    orders:\n"
               "      ack_deadline: 2d\n",
               "<string>:4:21: messaging.subscribers.orders.ack_deadline: "
               "expected a duration in 1ms..24h (e.g. 250ms, 30s, 5m, 1h), "
               "got \"2d\"");
  EXPECT_ERROR("messaging:\n  resources:\n    memory:\n"
               "      max_message_size: 2GB\n",
               "<string>:4:25: messaging.resources.memory.max_message_size: "
               "expected a size in 1..1GB (e.g. 512, 64KB, 10MB, 1GB), "
               "got \"2GB\"");
  EXPECT_ERROR("messaging:\n  subscribers:\n    default:\n"
               "      retry_jitter: 1.5\n",
               "<string>:4:21: messaging.subscribers.default.retry_jitter: "
               "expected a number in 0..1, got \"1.5\"");
}

/* ------------------------------------------------------------------ */
/* ${VAR} */

static void it_expands_environment_variables_before_typing(void)
{
  swit_config *cfg;

  setenv("SWIT_TEST_NAME", "svc", 1);
  setenv("SWIT_TEST_EMPTY", "", 1);
  setenv("SWIT_TEST_HOST", "kafka-9", 1);
  unsetenv("SWIT_TEST_UNSET");
  cfg = LOAD_OK("server:\n"
                "  name: \"${SWIT_TEST_NAME}-${SWIT_TEST_NAME}\"\n"
                "  version: ${SWIT_TEST_UNSET:-1.2.3}\n"
                "messaging:\n"
                "  broker:\n"
                "    endpoints: [\"${SWIT_TEST_HOST}:9092\", \"$${X}\"]\n"
                "    config:\n"
                "      group: \"${SWIT_TEST_EMPTY:-fallback}\"\n"
                "      empty: \"${SWIT_TEST_EMPTY}\"\n"
                "      price: $5 and $$\n"
                "lua:\n"
                "  batch_size: ${SWIT_TEST_UNSET:-64}\n");
  CHECK(strcmp(cfg->server.name, "svc-svc") == 0);
  CHECK(strcmp(cfg->server.version, "1.2.3") == 0);
  CHECK(strcmp(cfg->messaging.broker.endpoints.items[0], "kafka-9:9092") == 0);
  CHECK(strcmp(cfg->messaging.broker.endpoints.items[1], "${X}") == 0);
  CHECK(strcmp(cfg->messaging.broker.config.items[0].value, "fallback") == 0);
  CHECK(strcmp(cfg->messaging.broker.config.items[1].value, "") == 0);
  CHECK(strcmp(cfg->messaging.broker.config.items[2].value, "$5 and $") == 0);
  CHECK(cfg->lua.batch_size == 64);
  swit__config_free(cfg);
}

static void it_names_an_unset_variable(void)
{
  unsetenv("SWIT_TEST_KAFKA_PASSWORD");
  EXPECT_ERROR("messaging:\n  broker: {type: rabbitmq}\n  security:\n"
               "    authentication:\n"
               "      password: \"${SWIT_TEST_KAFKA_PASSWORD}\"\n",
               "<string>:5:17: messaging.security.authentication.password: "
               "environment variable SWIT_TEST_KAFKA_PASSWORD is not set");
  EXPECT_ERROR("lua:\n  scripts:\n    - a.lua\n    - ${SWIT_TEST_UNSET}\n",
               "<string>:4:7: lua.scripts[1]: environment variable "
               "SWIT_TEST_UNSET is not set");
  EXPECT_ERROR("server:\n  name: ${SWIT_TEST_NAME\n",
               "<string>:2:9: server.name: unterminated ${ in "
               "\"${SWIT_TEST_NAME\"");
  EXPECT_ERROR("server:\n  name: ${A-b}\n",
               "<string>:2:9: server.name: invalid variable reference in "
               "\"${A-b}\"");
}

/* ------------------------------------------------------------------ */
/* Errors */

static void it_rejects_unknown_keys_with_line_and_column(void)
{
  EXPECT_ERROR("messaging:\n  enabled: true\n  brokr:\n    type: kafka\n",
               "<string>:3:3: messaging.brokr: unknown key (expected one of "
               "enabled, broker, publishers, subscribers, resources, "
               "security, tracing)");
  EXPECT_ERROR("servr: {}\n",
               "<string>:1:1: servr: unknown key (expected one of server, "
               "messaging, lua)");
  EXPECT_ERROR("messaging:\n  publishers:\n    fast:\n      retries: 2\n",
               "<string>:4:7: messaging.publishers.fast.retries: unknown key "
               "(expected one of retry_attempts, retry_delay, batch_size, "
               "timeout, transactional, circuit_breaker)");
}

static void it_rejects_values_of_the_wrong_type(void)
{
  EXPECT_ERROR("messaging:\n  resources:\n    subscribers:\n"
               "      worker_pool_size: lots\n",
               "<string>:4:25: messaging.resources.subscribers."
               "worker_pool_size: expected an integer in 1..1024, got "
               "\"lots\"");
  EXPECT_ERROR("lua:\n  batch_size: 0\n",
               "<string>:2:15: lua.batch_size: expected an integer in "
               "1..65536, got \"0\"");
  EXPECT_ERROR("messaging:\n  enabled: maybe\n",
               "<string>:2:12: messaging.enabled: expected a boolean "
               "(true/false, yes/no, on/off), got \"maybe\"");
  EXPECT_ERROR("server: [a, b]\n",
               "<string>:1:9: server: expected a mapping");
  EXPECT_ERROR("server:\n  name: {first: a}\n",
               "<string>:2:9: server.name: expected a scalar");
  EXPECT_ERROR("lua:\n  scripts: {a: b}\n",
               "<string>:2:12: lua.scripts: expected a list of strings");
  EXPECT_ERROR("lua:\n  scripts:\n    - [a]\n",
               "<string>:3:7: lua.scripts[0]: expected a string");
  EXPECT_ERROR("- a\n- b\n", "<string>:1:1: expected a mapping");
}

static void it_accepts_boolean_spellings(void)
{
  swit_config *cfg = LOAD_OK("messaging:\n  enabled: Off\n"
                             "  broker: {type: nats}\n  security:\n"
                             "    transport:\n"
                             "      tls: {enabled: no, verify_server: YES}\n");

  CHECK(cfg->messaging.enabled == 0);
  CHECK(cfg->messaging.security.transport.tls.enabled == 0);
  CHECK(cfg->messaging.security.transport.tls.verify_server == 1);
  swit__config_free(cfg);
}

static void it_rejects_an_unknown_enum_value(void)
{
  EXPECT_ERROR("messaging:\n  broker:\n    type: kafak\n",
               "<string>:3:11: messaging.broker.type: expected one of "
               "kafka, memory, nats, rabbitmq, got \"kafak\"");
}

static void it_rejects_duplicate_keys(void)
{
  EXPECT_ERROR("server:\n  name: a\n  name: b\n",
               "<string>:3:3: server.name: duplicate key");
  EXPECT_ERROR("messaging:\n  broker:\n    config:\n      a: 1\n      a: 2\n",
               "<string>:5:7: messaging.broker.config.a: duplicate key");
}

static void it_reports_yaml_syntax_errors_with_their_line(void)
{
  EXPECT_ERROR("server:\n  name: a\n    version: b\n",
               "<string>:3:12: YAML syntax error: mapping values are not "
               "allowed in this context");
  EXPECT_ERROR("server:\n  name: \"abc\n",
               "<string>:3:1: YAML syntax error: found unexpected end of "
               "stream while scanning a quoted scalar");
  EXPECT_ERROR("a: 1\n---\nb: 2\n",
               "<string>:2:1: expected a single YAML document");
}

/* Deep nesting is refused where the 65th level opens, before libyaml's
 * per-token cost (which grows with depth) applies to the whole file: a
 * 200 KB run of "[" took ~20 s to reject before. */
static void it_refuses_nesting_deeper_than_64_levels(void)
{
  const char *head = "lua:\n  scripts: ";
  size_t hl = strlen(head), n = 200000;
  char *yaml = malloc(hl + 2 * n + 2), err[512] = "";
  swit_config *cfg = NULL;

  memcpy(yaml, head, hl);
  memset(yaml + hl, '[', n);
  strcpy(yaml + hl + n, "\n");
  /* root, lua and scripts are 3 levels: the 63rd "[" opens the 65th */
  EXPECT_ERROR(yaml, "<string>:2:74: YAML nested deeper than 64 levels");
  /* 64 levels pass the check and meet the schema instead */
  memset(yaml + hl + 62, ']', 62);
  strcpy(yaml + hl + 124, "\n");
  CHECK(swit__config_load_string(&cfg, yaml, NULL, err, sizeof err) ==
        SWIT_E_CONFIG);
  CHECK(strstr(err, "lua.scripts[0]: expected a string") != NULL);
  free(yaml);
}

static void it_reports_a_missing_file_without_a_line(void)
{
  swit_config *cfg = NULL;
  char path[256], want[320], err[512] = "";

  snprintf(path, sizeof path, "%s/nope.yaml", tmpdir);
  snprintf(want, sizeof want, "%s: cannot open: No such file or directory",
           path);
  CHECK(swit__config_load_file(&cfg, path, err, sizeof err) == SWIT_E_CONFIG);
  CHECK(cfg == NULL);
  CHECK(strcmp(err, want) == 0);
  CHECK(swit__config_load_file(&cfg, path, NULL, 0) == SWIT_E_CONFIG);
}

/* ------------------------------------------------------------------ */
/* Keys that are refused: not implemented, or not mapped by the broker */

/* YAML that sets the dotted `key` to `value`, one level per line: the
 * value sits on line <depth> at column 2*(depth-1) + len(leaf) + 3. */
static void nested_yaml(const char *key, const char *value, char *buf,
                        size_t len, int *line, int *col)
{
  char copy[256], *part, *save = NULL;
  size_t at = 0;
  int depth = 0;

  snprintf(copy, sizeof copy, "%s", key);
  for (part = strtok_r(copy, ".", &save); part;
       part = strtok_r(NULL, ".", &save)) {
    at += (size_t)snprintf(buf + at, len - at, "%s%*s%s:", depth ? "\n" : "",
                           2 * depth, "", part);
    *col = 2 * depth + (int)strlen(part) + 3;
    depth++;
  }
  snprintf(buf + at, len - at, " %s\n", value);
  *line = depth;
}

static void expect_refused(const char *key, const char *value,
                           const char *why, int line)
{
  char yaml[512], want[512];
  int l = 0, c = 0;

  nested_yaml(key, value, yaml, sizeof yaml, &l, &c);
  snprintf(want, sizeof want, "<string>:%d:%d: %s: %s", l, c, key, why);
  expect_error(yaml, NULL, want, line);
}

static const char not_yet[] = "not supported yet (see docs/configuration.md)";

static void it_refuses_every_key_it_does_not_implement(void)
{
  static const char *const keys[] = {
    "messaging.publishers.default.batch_size",
    "messaging.publishers.orders.batch_size",
    "messaging.resources.connections.max_per_broker",
    "messaging.resources.connections.idle_timeout",
    "messaging.resources.publishers.pool_size",
    "messaging.resources.publishers.buffer_size",
    "messaging.resources.publishers.flush_interval",
    "messaging.resources.subscribers.prefetch_count",
    "messaging.resources.memory.buffer_pool_size",
    "messaging.security.authentication.type",
    NULL
  };

  for (size_t i = 0; keys[i]; i++)
    expect_refused(keys[i], "1", not_yet, __LINE__);
  /* whatever the value: false, null, a mapping, the default itself */
  expect_refused("messaging.security.authentication.type", "none", not_yet,
                 __LINE__);
  expect_refused("messaging.resources.memory.buffer_pool_size", "~", not_yet,
                 __LINE__);
  expect_refused("messaging.publishers.default.batch_size", "10", not_yet,
                 __LINE__);
  EXPECT_ERROR("messaging:\n  resources:\n    connections: {idle_timeout: 1s}\n",
               "<string>:3:33: messaging.resources.connections.idle_timeout: "
               "not supported yet (see docs/configuration.md)");
  /* the sections that hold only such keys may stay, empty */
  swit_config *cfg = LOAD_OK("messaging:\n  resources:\n    connections: {}\n"
                             "    publishers:\n  security:\n    message:\n"
                             "      encryption: {}\n    audit: ~\n");
  swit__config_free(cfg);
  /* message security and the audit log are implemented (host/sec/):
   * their keys are read, not refused */
  cfg = LOAD_OK("messaging:\n  security:\n    audit: {enabled: false, "
                "sensitive_fields: [a.b]}\n    message:\n      signing: "
                "{enabled: false, algorithm: Ed25519}\n");
  CHECK(cfg->messaging.security.audit.sensitive_fields.n == 1);
  CHECK(strcmp(cfg->messaging.security.message.signing.algorithm,
               "Ed25519") == 0);
  swit__config_free(cfg);
}

static void it_refuses_a_key_the_broker_type_does_not_map(void)
{
  static const char *const tls[] = { "enabled", "cert_file", "key_file",
                                     "ca_file", "verify_server", NULL };
  /* nats and kafka map the TLS block */
  static const char *const others[] = { "memory", "rabbitmq", NULL };
  char yaml[512], want[512];
  swit_config *cfg;

  for (size_t t = 0; others[t]; t++)
    for (size_t i = 0; tls[i]; i++) {
      snprintf(yaml, sizeof yaml, "messaging:\n  broker: {type: %s}\n"
               "  security:\n    transport:\n      tls:\n        %s: false\n",
               others[t], tls[i]);
      snprintf(want, sizeof want, "<string>:6:%d: messaging.security."
               "transport.tls.%s: not supported by the %s broker (see "
               "docs/configuration.md)", 8 + (int)strlen(tls[i]) + 3, tls[i],
               others[t]);
      expect_error(yaml, NULL, want, __LINE__);
    }
  /* the type may come after the key: it is checked once all is read */
  EXPECT_ERROR("messaging:\n  security:\n    authentication:\n"
               "      mechanism: PLAIN\n  broker: {type: nats}\n",
               "<string>:4:18: messaging.security.authentication.mechanism: "
               "not supported by the nats broker (see docs/configuration.md)");
  EXPECT_ERROR("messaging:\n  security:\n    authentication:\n"
               "      password: p\n",
               "<string>:4:17: messaging.security.authentication.password: "
               "not supported by the memory broker (see "
               "docs/configuration.md)");
  cfg = LOAD_OK("messaging:\n  broker: {type: kafka}\n  security:\n"
                "    authentication: {mechanism: SCRAM-SHA-512, username: u}\n"
                "    transport: {tls: {enabled: true}}\n");
  CHECK(strcmp(cfg->messaging.security.authentication.mechanism,
               "SCRAM-SHA-512") == 0);
  CHECK(cfg->messaging.security.transport.tls.enabled == 1);
  swit__config_free(cfg);
  cfg = LOAD_OK("messaging:\n  broker: {type: rabbitmq}\n  security:\n"
                "    authentication: {username: u, password: p}\n");
  CHECK(strcmp(cfg->messaging.security.authentication.username, "u") == 0);
  CHECK(strcmp(cfg->messaging.security.authentication.password, "p") == 0);
  swit__config_free(cfg);
  cfg = LOAD_OK("messaging:\n  broker: {type: nats}\n  security:\n"
                "    transport: {tls: {enabled: false, ca_file: ca.pem}}\n");
  CHECK(strcmp(cfg->messaging.security.transport.tls.ca_file, "./ca.pem")
        == 0);
  swit__config_free(cfg);
}

static void it_refuses_a_publisher_key_read_from_default_only(void)
{
  static const char *const keys[] = { "retry_attempts", "retry_delay",
                                      "timeout", NULL };
  char yaml[256], want[512];
  swit_config *cfg;

  for (size_t i = 0; keys[i]; i++) {
    snprintf(yaml, sizeof yaml, "messaging:\n  publishers:\n"
             "    fast:\n      %s: 1\n", keys[i]);
    snprintf(want, sizeof want, "<string>:4:%d: messaging.publishers.fast."
             "%s: only messaging.publishers.default.%s is used (see "
             "docs/configuration.md)", 6 + (int)strlen(keys[i]) + 3, keys[i],
             keys[i]);
    expect_error(yaml, NULL, want, __LINE__);
  }
  /* in default, and transactional in any entry, they are read */
  cfg = LOAD_OK("messaging:\n  publishers:\n"
                "    default: {retry_attempts: 1, retry_delay: 2s, "
                "timeout: 3s}\n    eos: {transactional: true}\n");
  CHECK(swit__config_publisher(cfg, "eos")->transactional == 1);
  CHECK(swit__config_publisher(cfg, "eos")->timeout_ms == 3000);
  CHECK(swit__config_publisher(cfg, NULL)->retry_delay_ms == 2000);
  swit__config_free(cfg);
}

static void it_keeps_the_service_version(void)
{
  swit_config *cfg = LOAD_OK("server: {name: svc, version: 2.1.0-rc1}\n");

  CHECK(strcmp(cfg->server.version, "2.1.0-rc1") == 0);
  swit__config_free(cfg);
}

/* ------------------------------------------------------------------ */
/* Files named by the config */

static void it_resolves_scripts_against_the_config_directory(void)
{
  char path[256], want[256], err[512] = "";
  swit_config *cfg = NULL;

  write_file("conf/swit.yaml", "lua:\n  scripts:\n    - handlers.lua\n"
                               "    - /dev/null\n");
  write_file("conf/handlers.lua", "return {}\n");
  snprintf(path, sizeof path, "%s/conf/swit.yaml", tmpdir);
  CHECK(swit__config_load_file(&cfg, path, err, sizeof err) == 0);
  if (!cfg)
    return;
  snprintf(want, sizeof want, "%s/conf/handlers.lua", tmpdir);
  CHECK(strcmp(cfg->lua.scripts.items[0], want) == 0);
  CHECK(strcmp(cfg->lua.scripts.items[1], "/dev/null") == 0);
  swit__config_free(cfg);

  snprintf(want, sizeof want, "%s/conf", tmpdir);
  cfg = load_ok("lua: {scripts: handlers.lua}\n", want, __LINE__);
  snprintf(want, sizeof want, "%s/conf/handlers.lua", tmpdir);
  CHECK(cfg->lua.scripts.n == 1);
  CHECK(strcmp(cfg->lua.scripts.items[0], want) == 0);
  swit__config_free(cfg);
}

static void it_rejects_a_missing_script_at_its_list_item(void)
{
  char path[256], want[512], err[512] = "";
  swit_config *cfg = NULL;

  write_file("conf/bad.yaml", "lua:\n  scripts:\n    - handlers.lua\n"
                              "    - missing.lua\n");
  snprintf(path, sizeof path, "%s/conf/bad.yaml", tmpdir);
  snprintf(want, sizeof want, "%s:4:7: lua.scripts[1]: cannot read "
           "'missing.lua': No such file or directory", path);
  CHECK(swit__config_load_file(&cfg, path, err, sizeof err) == SWIT_E_CONFIG);
  CHECK(cfg == NULL);
  CHECK(strcmp(err, want) == 0);
  expect_error("lua: {scripts: [conf]}\n", tmpdir,
               "<string>:1:17: lua.scripts[0]: cannot read 'conf': "
               "Is a directory", __LINE__);
}

static void it_checks_tls_files_only_when_tls_is_enabled(void)
{
  swit_config *cfg = LOAD_OK("messaging:\n  broker: {type: nats}\n"
                             "  security:\n    transport:\n"
                             "      tls: {cert_file: no.crt}\n");

  CHECK(strcmp(cfg->messaging.security.transport.tls.cert_file, "./no.crt")
        == 0);
  swit__config_free(cfg);
  EXPECT_ERROR("messaging:\n  broker: {type: nats}\n  security:\n"
               "    transport:\n      tls:\n"
               "        enabled: true\n        cert_file: no.crt\n"
               "        key_file: no.key\n",
               "<string>:7:20: messaging.security.transport.tls.cert_file: "
               "cannot read 'no.crt': No such file or directory");
  EXPECT_ERROR("messaging:\n  broker: {type: nats}\n  security:\n"
               "    transport:\n      tls:\n"
               "        enabled: true\n        key_file: /dev/null\n",
               "<string>:7:19: messaging.security.transport.tls.key_file: "
               "cert_file must be set too");
}

/* ------------------------------------------------------------------ */
/* Passthrough maps and swit__config_apply() */

typedef struct mem_settings {
  int64_t queue_size;
  int64_t latency_ms;
  int mode;
  char *label;
} mem_settings;

static const char *const modes[] = { "fifo", "lifo", NULL };

static const swit_cfg_field mem_fields[] = {
  { .name = "queue_size", .type = SWIT_CFG_INT,
    .offset = offsetof(mem_settings, queue_size), .dflt = "1000", .min = 1,
    .max = 1000000, .desc = "Messages per topic" },
  { .name = "latency", .type = SWIT_CFG_DURATION,
    .offset = offsetof(mem_settings, latency_ms), .dflt = "0ms",
    .desc = "Artificial delivery delay" },
  { .name = "mode", .type = SWIT_CFG_ENUM,
    .offset = offsetof(mem_settings, mode), .dflt = "fifo", .choices = modes,
    .desc = "Delivery order" },
  { .name = "label", .type = SWIT_CFG_STR,
    .offset = offsetof(mem_settings, label), .desc = "A name" },
  { .name = NULL }
};

static void it_keeps_passthrough_values_as_strings_with_marks(void)
{
  swit_config *cfg;
  const swit_cfg_kvlist *kv;

  setenv("SWIT_TEST_HOST", "kafka-9", 1);
  cfg = LOAD_OK("messaging:\n  broker:\n    config:\n"
                "      bootstrap.servers: ${SWIT_TEST_HOST}:9092\n"
                "      linger.ms: 5\n"
                "      acks: \"all\"\n");
  kv = &cfg->messaging.broker.config;
  CHECK(kv->n == 3);
  CHECK(kv->mark.line == 4 && kv->mark.col == 7);
  CHECK(strcmp(kv->items[0].key, "bootstrap.servers") == 0);
  CHECK(strcmp(kv->items[0].value, "kafka-9:9092") == 0);
  CHECK(strcmp(kv->items[1].value, "5") == 0);
  CHECK(kv->items[1].mark.line == 5 && kv->items[1].mark.col == 18);
  CHECK(strcmp(kv->items[1].mark.file, "<string>") == 0);
  CHECK(strcmp(kv->items[2].value, "all") == 0);
  swit__config_free(cfg);
  EXPECT_ERROR("messaging:\n  broker:\n    config:\n      nested: {a: 1}\n",
               "<string>:4:15: messaging.broker.config.nested: expected a "
               "scalar value");
}

static void it_applies_a_passthrough_map_to_a_field_table(void)
{
  swit_config *cfg = LOAD_OK("messaging:\n  broker:\n    config:\n"
                             "      queue_size: 50\n      mode: lifo\n");
  mem_settings s;
  char err[512] = "";

  memset(&s, 0xff, sizeof s); /* apply must not read what was there */
  CHECK(swit__config_apply(&cfg->messaging.broker.config, mem_fields, 0, &s, err,
                           sizeof err) == 0);
  CHECK(s.queue_size == 50 && s.mode == 1);
  CHECK(s.latency_ms == 0 && s.label == NULL);
  swit__config_free_fields(mem_fields, &s);
  swit__config_free(cfg);
}

static void it_rejects_unknown_and_mistyped_adapter_settings(void)
{
  swit_config *cfg = LOAD_OK("messaging:\n  broker:\n    config:\n"
                             "      label: x\n      bogus: 1\n");
  swit_config *bad = LOAD_OK("messaging:\n  broker:\n    config:\n"
                             "      queue_size: huge\n");
  mem_settings s;
  char err[512] = "";

  CHECK(swit__config_apply(&cfg->messaging.broker.config, mem_fields, 0, &s, err,
                           sizeof err) == SWIT_E_CONFIG);
  CHECK(strcmp(err, "<string>:5:14: messaging.broker.config.bogus: unknown "
                    "key (expected one of queue_size, latency, mode, label)")
        == 0);
  CHECK(s.label == NULL); /* freed on failure */
  /* an adapter with SWIT_CAP_CONFIG_PASSTHROUGH reads unknown keys itself */
  CHECK(swit__config_apply(&cfg->messaging.broker.config, mem_fields, 1, &s, err,
                           sizeof err) == 0);
  CHECK(s.label && strcmp(s.label, "x") == 0);
  swit__config_free_fields(mem_fields, &s);
  CHECK(swit__config_apply(&bad->messaging.broker.config, mem_fields, 0, &s, err,
                           sizeof err) == SWIT_E_CONFIG);
  CHECK(strcmp(err, "<string>:4:19: messaging.broker.config.queue_size: "
                    "expected an integer in 1..1000000, got \"huge\"") == 0);
  swit__config_free_fields(mem_fields, &s);
  swit__config_free(cfg);
  swit__config_free(bad);
}

/* ------------------------------------------------------------------ */
/* Named publishers and subscribers */

static void it_falls_back_to_the_default_publisher_and_subscriber(void)
{
  swit_config *cfg = LOAD_OK("messaging:\n  publishers:\n    default:\n"
                             "      retry_attempts: 7\n"
                             "  subscribers:\n    orders: {}\n");

  CHECK(swit__config_publisher(cfg, "nope")->retry_attempts == 7);
  CHECK(swit__config_publisher(cfg, NULL)->retry_attempts == 7);
  CHECK(cfg->messaging.publishers.n == 1);
  CHECK(cfg->messaging.subscribers.n == 2);
  CHECK(strcmp(cfg->messaging.subscribers.names[0], "default") == 0);
  CHECK(strcmp(cfg->messaging.subscribers.names[1], "orders") == 0);
  CHECK(swit__config_subscriber(cfg, "orders") !=
        swit__config_subscriber(cfg, "nope"));
  CHECK(swit__config_subscriber(cfg, "nope") ==
        (const swit_cfg_subscriber *)cfg->messaging.subscribers.elems);
  swit__config_free(cfg);
}

static void it_overrides_only_the_fields_a_named_subscriber_sets(void)
{
  swit_config *cfg = LOAD_OK("messaging:\n  subscribers:\n"
                             "    orders:\n      max_attempts: 4\n"
                             "    default:\n      prefetch: 7\n"
                             "    audit:\n      retry_delay: 2s\n"
                             "      prefetch: 9\n");
  const swit_cfg_subscriber *d = swit__config_subscriber(cfg, "default");
  const swit_cfg_subscriber *o = swit__config_subscriber(cfg, "orders");
  const swit_cfg_subscriber *a = swit__config_subscriber(cfg, "audit");

  CHECK(d->max_attempts == 3 && d->prefetch == 7);
  CHECK(o->max_attempts == 4 && o->prefetch == 7);
  CHECK(o->ack_deadline_ms == 30000 && o->retry_jitter == 0.2);
  CHECK(a->max_attempts == 3 && a->prefetch == 9 && a->retry_delay_ms == 2000);
  CHECK(strcmp(cfg->messaging.subscribers.names[1], "orders") == 0);
  swit__config_free(cfg);
}

/* ------------------------------------------------------------------ */
/* Reference */

static void collect(void *ud, const char *line)
{
  size_t *n = ud;

  if (strstr(line, "| `messaging.resources.subscribers.worker_pool_size` | "
                   "integer in 1..1024 | `50` |"))
    n[0]++;
  if (strstr(line, "| `messaging.subscribers.<name>.retry_jitter` | number "
                   "in 0..1 | `0.2` |"))
    n[0]++;
  if (strstr(line, "| `messaging.broker.type` | one of kafka, memory, "
                   "nats, rabbitmq | `memory` |"))
    n[0]++;
  n[1]++;
}

static void it_prints_the_reference_as_markdown_rows(void)
{
  size_t n[2] = { 0, 0 };

  swit__config_reference(swit__config_fields, NULL, collect, n);
  CHECK(n[0] == 3);
  CHECK(n[1] > 50);
}

/* ------------------------------------------------------------------ */

static void remove_tree(void)
{
  static const char *const files[] = {
    "seed.yaml", "handlers.lua", "certs/client.crt", "certs/client.key",
    "certs/ca.crt", "conf/swit.yaml", "conf/handlers.lua", "conf/bad.yaml",
    "certs", "conf", NULL
  };
  char path[256];
  int i;

  for (i = 0; files[i]; i++) {
    snprintf(path, sizeof path, "%s/%s", tmpdir, files[i]);
    if (remove(path) != 0)
      perror(path);
  }
  rmdir(tmpdir);
}

int main(void)
{
  char path[256];

  snprintf(tmpdir, sizeof tmpdir, "/tmp/swit_test_config.XXXXXX");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 2;
  }
  snprintf(path, sizeof path, "%s/certs", tmpdir);
  mkdir(path, 0700);
  snprintf(path, sizeof path, "%s/conf", tmpdir);
  mkdir(path, 0700);

  it_fills_every_default_from_an_empty_string();
  it_treats_comments_null_documents_and_null_values_as_defaults();
  it_accepts_null_in_the_free_functions();
  it_loads_the_seed_design_example_from_a_file();
  it_parses_durations();
  it_parses_sizes();
  it_rejects_bad_durations_and_sizes_in_the_config();
  it_expands_environment_variables_before_typing();
  it_names_an_unset_variable();
  it_rejects_unknown_keys_with_line_and_column();
  it_rejects_values_of_the_wrong_type();
  it_accepts_boolean_spellings();
  it_rejects_an_unknown_enum_value();
  it_rejects_duplicate_keys();
  it_reports_yaml_syntax_errors_with_their_line();
  it_refuses_nesting_deeper_than_64_levels();
  it_reports_a_missing_file_without_a_line();
  it_refuses_every_key_it_does_not_implement();
  it_refuses_a_key_the_broker_type_does_not_map();
  it_refuses_a_publisher_key_read_from_default_only();
  it_keeps_the_service_version();
  it_resolves_scripts_against_the_config_directory();
  it_rejects_a_missing_script_at_its_list_item();
  it_checks_tls_files_only_when_tls_is_enabled();
  it_keeps_passthrough_values_as_strings_with_marks();
  it_applies_a_passthrough_map_to_a_field_table();
  it_rejects_unknown_and_mistyped_adapter_settings();
  it_falls_back_to_the_default_publisher_and_subscriber();
  it_overrides_only_the_fields_a_named_subscriber_sets();
  it_prints_the_reference_as_markdown_rows();

  remove_tree();
  return check_done("config");
}
