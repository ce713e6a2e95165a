/*
 * tools.h - the swit command's client tools (tools.c): publish, tail and
 * bench.
 * Each takes main's argc/argv and returns the process's exit code.
 */
#ifndef SWIT_CLI_TOOLS_H
#define SWIT_CLI_TOOLS_H

#include <signal.h>

int swit__cli_publish(int argc, char **argv);
/* sigs: SIGINT and SIGTERM (blocked here, waited for). */
int swit__cli_tail(int argc, char **argv, const sigset_t *sigs);
int swit__cli_bench(int argc, char **argv, const sigset_t *sigs);
/* `swit dlq replay` (dlq.c) */
int swit__cli_dlq(int argc, char **argv, const sigset_t *sigs);

/* `swit test` (test.c): execs busted, or returns an exit code. */
int swit__cli_test(int argc, char **argv);

#endif /* SWIT_CLI_TOOLS_H */
