/*
 * tools.h - the swit command's client tools (tools.c): publish, tail and
 * bench.
 * Each takes main's argc/argv and returns the process's exit code.
 */
#ifndef SWIT_CLI_TOOLS_H
#define SWIT_CLI_TOOLS_H

#include <signal.h>
#include <stddef.h>

int swit__cli_publish(int argc, char **argv);
/* sigs: SIGINT and SIGTERM (blocked here, waited for). */
int swit__cli_tail(int argc, char **argv, const sigset_t *sigs);
int swit__cli_bench(int argc, char **argv, const sigset_t *sigs);
/* `swit dlq replay` (dlq.c) */
int swit__cli_dlq(int argc, char **argv, const sigset_t *sigs);

/* One line of `swit publish --json` (jsonl.c): pointers into the line,
 * which is decoded in place. */
#define SWIT__JSONL_MAX_HEADERS 32
typedef struct swit__jsonl_msg {
  const char *key;                  /* NULL: none */
  size_t key_len;
  const char *payload;
  size_t payload_len;
  const char *headers[2 * SWIT__JSONL_MAX_HEADERS + 1]; /* name, value, NULL */
  size_t nh;
} swit__jsonl_msg;
/* 0, or -1 with *why and the 1-based byte *at where it went wrong. */
int swit__jsonl_parse(char *line, size_t len, swit__jsonl_msg *m,
                      const char **why, size_t *at);

/* `swit test` (test.c): execs busted, or returns an exit code. */
int swit__cli_test(int argc, char **argv);

#endif /* SWIT_CLI_TOOLS_H */
