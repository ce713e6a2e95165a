/*
 * main.c - the swit binary: a thin command line over swit.h.
 *
 *   swit run CONFIG [--exit-when-idle[=DURATION]]
 *   swit check CONFIG
 *   swit test [--config CONFIG] [BUSTED-OPTION]... [PATH]...  (test.c)
 *   swit --version | --help
 *
 * The main thread blocks SIGINT/SIGTERM/SIGHUP/SIGUSR2 before the host
 * starts its threads (so they inherit the mask) and takes them with
 * sigtimedwait: SIGINT/SIGTERM start the graceful stop, SIGHUP reloads
 * the scripts, SIGUSR2 rolls back to the previous generation. Exit codes: 0 ok, 1 runtime
 * failure, 2 config, script or usage error.
 *
 * The command's own messages are "swit: ..." lines on stderr, or, once
 * the config is loaded and says server.log.format: json, JSON lines of
 * the host's log (say()), so that every line is JSON then.
 */
#include <signal.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "swit/swit.h"
#include "cli/tools.h"

#define EXIT_RUNTIME 1
#define EXIT_CONFIG 2
#define EXIT_USAGE 2
#define EXIT_UNCLEAN 3    /* the stop left work behind, or was forced */

static const char usage[] =
  "usage: swit run CONFIG [--exit-when-idle[=DURATION]]\n"
  "       swit check CONFIG\n"
  "       swit publish CONFIG TOPIC [--key K] [--header N=V]... PAYLOAD|--file F|-\n"
  "       swit tail CONFIG TOPIC [--group G] [--from beginning|latest]\n"
  "                 [--count N] [--json]\n"
  "       swit bench CONFIG TOPIC [--rate R] [--messages N] [--size B]\n"
  "                  [--timeout SECONDS]\n"
  "       swit dlq replay CONFIG DLQ_TOPIC [--group G] [--to TOPIC] [--max N]\n"
  "                 [--idle S] [--timeout S]\n"
  "       swit test [--config CONFIG] [BUSTED-OPTION]... [PATH]...\n"
  "       swit config-reference\n"
  "       swit --version | --help\n";

static const char help[] =
  "swit - an event-processing host: broker connections and worker threads\n"
  "in C, message handlers and middleware in LuaJIT.\n"
  "\n"
  "Commands:\n"
  "  run CONFIG      connect to the broker in CONFIG (YAML), load the Lua\n"
  "                  scripts of lua.scripts, subscribe and handle messages\n"
  "                  until SIGINT or SIGTERM; then stop intake, drain the\n"
  "                  messages in flight, and exit 0.\n"
  "    --exit-when-idle[=DURATION]\n"
  "                  exit 0 once on_start has finished, every subscription\n"
  "                  is active and for DURATION (default 1s; e.g. 500ms, 2s)\n"
  "                  no message arrived, none is in flight and none waits\n"
  "                  for a retry. For tests, demos and batch jobs.\n"
  "  check CONFIG    validate CONFIG and the broker client settings, and\n"
  "                  compile and load its scripts, without connecting;\n"
  "                  print the handlers they register.\n"
  "  publish CONFIG TOPIC [--key K] [--header N=V]... PAYLOAD | --file F|-\n"
  "                  publish to CONFIG's broker (its scripts are not\n"
  "                  loaded): PAYLOAD, or one message per line of F (- =\n"
  "                  stdin); each is confirmed before the next; exit 1 at\n"
  "                  the first failure. Not with the memory broker (it\n"
  "                  lives inside one process).\n"
  "  tail CONFIG TOPIC [--group G] [--from beginning|latest] [--count N]\n"
  "       [--json]\n"
  "                  print what arrives on TOPIC, one line per message\n"
  "                  (topic, key=, headers name=value, | payload; \\n and\n"
  "                  control bytes escaped), or JSON lines with --json,\n"
  "                  until SIGINT/SIGTERM or N messages. The group defaults\n"
  "                  to swit-tail-<pid>, so a running service's consumers\n"
  "                  lose nothing to it. --from: where a new group starts\n"
  "                  (beginning: the oldest message kept, on Kafka and\n"
  "                  JetStream only; latest: what arrives from now on).\n"
  "  bench CONFIG TOPIC [--rate R] [--messages N] [--size B] [--timeout S]\n"
  "                  measure CONFIG's broker end to end: publish N\n"
  "                  messages (default 10000) of B bytes (default 100, at\n"
  "                  least 20) at R per second (default 1000, 0 = as fast\n"
  "                  as possible) to TOPIC and receive them in a new group\n"
  "                  of its own; print lost, duplicated, msg/s and latency\n"
  "                  percentiles. Exit 1 if any was lost or duplicated or\n"
  "                  S seconds (default 30) after the last send.\n"
  "  dlq replay CONFIG DLQ_TOPIC [--group G] [--to TOPIC] [--max N]\n"
  "             [--idle S] [--timeout S]\n"
  "                  publish each dead letter of DLQ_TOPIC again to its\n"
  "                  x-swit-origin-topic (or TOPIC), without the headers\n"
  "                  the dead-lettering added, so it starts at attempt 1;\n"
  "                  ack it once that publish is accepted. One it cannot\n"
  "                  replay is rejected to DLQ_TOPIC.dlq with the reason.\n"
  "                  Stops after N messages, S seconds (default 10) with\n"
  "                  none arriving, or --timeout (default 300, exit 1).\n"
  "                  Group: default swit-dlq-replay; on RabbitMQ give the\n"
  "                  group that dead-lettered them (its parking queue).\n"
  "  test [--config CONFIG] [BUSTED-OPTION]... [PATH]...\n"
  "                  run busted specs (PATH: files or directories, default\n"
  "                  ./spec) that drive CONFIG's handlers in-process with\n"
  "                  require \"swit.test\" (memory broker, retries without\n"
  "                  backoff; docs/testing.md). CONFIG defaults to\n"
  "                  ./swit.yaml; it is loaded and its scripts compiled\n"
  "                  first (exit 2 on an error). busted (on PATH) runs the\n"
  "                  specs under LuaJIT: its options (-o TAP, -o junit,\n"
  "                  --filter, ...), output and exit code are busted's.\n"
  "  config-reference\n"
  "                  print every config key with its type, default and\n"
  "                  meaning (Markdown).\n"
  "\n"
  "Signals: SIGINT/SIGTERM stop gracefully (drain, then exit 0); SIGHUP\n"
  "reloads the Lua scripts without stopping (a failed reload keeps the\n"
  "running code); SIGUSR2 rolls back to the previous code generation.\n"
  "\n"
  "Output: print() and io.write() in handlers go to stdout; the host's own\n"
  "log goes to stderr.\n"
  "A second SIGINT/SIGTERM during the stop exits at once (code 3); one that\n"
  "comes within 0.5 s of the first is taken as the same signal delivered\n"
  "twice (as timeout(1) and group kills do) and ignored. A\n"
  "script's os.exit(code) stops gracefully, like SIGTERM, and the process\n"
  "exits with that code (or with the stop's own code when it is 0).\n"
  "Exit codes: 0 ok, 1 runtime failure, 2 config, script or usage error,\n"
  "3 the stop was not clean (a handler still ran after server.shutdown_timeout\n"
  "plus 2 s and was left behind, or a second signal forced the exit).\n"
  "Documentation: docs/ (configuration.md, lua-api.md, embedding.md,\n"
  "testing.md).\n";

static int exit_code_for(int rc)
{
  switch (rc) {
  case SWIT_OK: return 0;
  case SWIT_E_CONFIG:
  case SWIT_E_SCRIPT:
  case SWIT_E_EXISTS: return EXIT_CONFIG;
  default: return EXIT_RUNTIME;
  }
}

/* A message of the swit command: through the host's log when it writes
 * JSON lines, else "swit: ..." on stderr (h NULL: the config is not
 * loaded, its format unknown). */
static void say(swit_host_t *h, int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void say(swit_host_t *h, int level, const char *fmt, ...)
{
  char text[1536];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  if (swit_host_log_json(h))
    swit_host_log(h, level, "%s", text);
  else
    fprintf(stderr, "swit: %s\n", text);
}

static int open_host(swit_host_t **h, const char *path)
{
  char err[1024];
  int rc = swit_host_new(h, path, err, sizeof err);
  if (rc) say(NULL, SWIT_LOG_ERROR, "%s", err);
  return rc;
}

static int cmd_check(const char *path)
{
  swit_host_t *h;
  char err[1024];
  int rc = open_host(&h, path);

  if (rc) return exit_code_for(rc);
  rc = swit_host_check(h, err, sizeof err);
  if (rc)
    say(h, SWIT_LOG_ERROR, "%s", err);
  else
    printf("%s: ok\n", path);
  swit_host_free(h);
  return exit_code_for(rc);
}

/* When the first SIGINT/SIGTERM arrived (CLOCK_MONOTONIC, ms). A copy of
 * the same signal that arrives within SECOND_SIGNAL_MS of it is the same
 * request delivered twice (timeout(1) and process-group kills send the
 * signal to the child and to its group), not an operator insisting. */
#define SECOND_SIGNAL_MS 500
static int64_t first_signal_ms = -1;

static int64_t mono_ms(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for SIGINT/SIGTERM, or (idle_ms >= 0) for the host to go idle;
 * SIGHUP reloads, SIGUSR2 rolls back (results are in the host's log). */
static int wait_for_end(swit_host_t *h, const sigset_t *sigs, int idle_ms)
{
  struct timespec tick = {0, 50 * 1000000L};
  char err[1024];

  for (;;) {
    int sig = sigtimedwait(sigs, NULL, &tick);
    if (swit_host_stop_requested(h, NULL)) return 0;
    if (sig == SIGINT || sig == SIGTERM) {
      first_signal_ms = mono_ms();
      say(h, SWIT_LOG_INFO, "%s received, stopping", strsignal(sig));
      return 0;
    }
    if (sig == SIGHUP || sig == SIGUSR2) {
      swit_host_reload(h, sig == SIGUSR2 ? SWIT_RELOAD_ROLLBACK : 0, NULL,
                       err, sizeof err);
      continue;
    }
    if (idle_ms >= 0) {
      int rc = swit_host_wait_idle(h, idle_ms, 0);
      if (rc != SWIT_E_TIMEDOUT) return rc;
    }
  }
}

/* During the stop: a second SIGINT/SIGTERM ends the process at once, unless
 * it is the first one delivered again (see SECOND_SIGNAL_MS). */
static void *second_signal(void *arg)
{
  const sigset_t *sigs = arg;
  int sig = 0;

  while (sigwait(sigs, &sig) == 0) {
    if (sig != SIGINT && sig != SIGTERM) continue;
    if (first_signal_ms >= 0 && mono_ms() - first_signal_ms < SECOND_SIGNAL_MS)
      continue;
    fprintf(stderr, "swit: second %s during the stop: exiting now\n",
            strsignal(sig));
    _exit(EXIT_UNCLEAN);
  }
  return NULL;
}

static int cmd_run(const char *path, int idle_ms)
{
  swit_host_t *h;
  sigset_t sigs;
  char err[1024];
  int rc, start_failed = 0, code = 0;
  pthread_t watcher;

  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  sigaddset(&sigs, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);

  if ((rc = open_host(&h, path))) return exit_code_for(rc);
  rc = swit_host_start(h, err, sizeof err);
  if (rc) {
    say(h, SWIT_LOG_ERROR, "%s", err);
  } else {
    rc = wait_for_end(h, &sigs, idle_ms);
    if (rc == SWIT_E_SCRIPT) {
      say(h, SWIT_LOG_ERROR, "on_start failed (see the log above)");
      start_failed = 1;
    }
    pthread_create(&watcher, NULL, second_signal, &sigs);
    if (swit_host_stop(h, -1) == SWIT_E_TIMEDOUT) {
      fflush(stdout);
      _exit(EXIT_UNCLEAN);   /* a worker still runs Lua: do not free */
    }
    if (swit_host_stop_requested(h, &code) && code != 0 && !start_failed) {
      swit_host_free(h);
      fflush(stdout);
      return code & 0xff;
    }
  }
  swit_host_free(h);
  fflush(stdout);
  return start_failed ? EXIT_RUNTIME : exit_code_for(rc);
}

static int parse_idle(const char *arg, int *idle_ms)
{
  int64_t ms;

  if (strcmp(arg, "--exit-when-idle") == 0) {
    *idle_ms = 1000;
    return 0;
  }
  if (strncmp(arg, "--exit-when-idle=", 17) != 0) return -1;
  if (swit_parse_duration_ms(arg + 17, &ms) != 0 || ms > 86400000) {
    say(NULL, SWIT_LOG_ERROR, "--exit-when-idle: expected a duration such "
        "as 500ms or 2s, got '%s'", arg + 17);
    return -2;
  }
  *idle_ms = (int)ms;
  return 0;
}

static void print_line(void *ud, const char *line)
{
  (void)ud;
  puts(line);
}

int main(int argc, char **argv)
{
  int idle_ms = -1;

  if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    fputs(usage, stdout);
    fputs("\n", stdout);
    fputs(help, stdout);
    return 0;
  }
  if (argc == 2 && !strcmp(argv[1], "--version")) {
    printf("swit %s\n", swit_version());
    return 0;
  }
  if (argc == 3 && !strcmp(argv[1], "check")) return cmd_check(argv[2]);
  if (argc >= 2 && !strcmp(argv[1], "publish")) {
    signal(SIGPIPE, SIG_IGN);
    return swit__cli_publish(argc, argv);
  }
  if (argc >= 2 && (!strcmp(argv[1], "tail") || !strcmp(argv[1], "bench") ||
                    !strcmp(argv[1], "dlq"))) {
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    signal(SIGPIPE, SIG_IGN);
    return argv[1][0] == 't'   ? swit__cli_tail(argc, argv, &sigs)
           : argv[1][0] == 'b' ? swit__cli_bench(argc, argv, &sigs)
                               : swit__cli_dlq(argc, argv, &sigs);
  }
  if (argc >= 2 && !strcmp(argv[1], "test")) return swit__cli_test(argc, argv);
  if (argc == 2 && !strcmp(argv[1], "config-reference")) {
    swit_config_reference(print_line, NULL);
    return 0;
  }
  if ((argc == 3 || argc == 4) && !strcmp(argv[1], "run")) {
    if (argc == 4) {
      int rc = parse_idle(argv[3], &idle_ms);
      if (rc == -2) return EXIT_USAGE;
      if (rc) goto bad;
    }
    return cmd_run(argv[2], idle_ms);
  }
bad:
  fputs(usage, stderr);
  return EXIT_USAGE;
}
