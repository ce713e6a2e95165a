/*
 * test.c - `swit test [--config CONFIG] [BUSTED-OPTION]... [PATH]...`:
 * runs a user's busted specs, which drive an in-process host through the
 * Lua module swit.test (lua/swit/test.lua, loaded by busted's LuaJIT,
 * which reaches libswit.so through the FFI).
 *
 * This file only prepares the run and then replaces itself with busted,
 * so the exit code and output are busted's own (-o TAP, -o junit, ...):
 *   - checks CONFIG (default ./swit.yaml when present) loads and its
 *     scripts compile (swit_host_new + swit_host_check): a broken config
 *     stops here with exit 2 and the loader's file:line message;
 *   - checks every PATH exists (busted's own message for a missing one
 *     is a passing run with no test in some versions);
 *   - finds busted on PATH, libswit.so and the swit.test module beside
 *     the binary (build tree, or the installed layout), and passes them
 *     to the specs in SWIT_TEST_LIB, SWIT_TEST_CONFIG and LUA_PATH.
 * Owns nothing past the exec.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "swit/swit.h"
#include "cli/tools.h"

#define EXIT_USAGE 2

/* busted options that take a value as the next argument */
static const char *const value_opts[] = {
  "-o", "--output", "-p", "--pattern", "-t", "--tags", "--exclude-tags",
  "-r", "--run", "-f", "--config-file", "-m", "--lpath", "--cpath",
  "--helper", "--loaders", "--lua", "-Xoutput", "-Xhelper", "--repeat",
  "--seed", "--filter", "--filter-out", "--exclude-pattern", "--name",
  "-C", "--directory", "-e", "--exclude-names-file", NULL};

static int takes_value(const char *a)
{
  for (size_t i = 0; value_opts[i]; i++)
    if (!strcmp(a, value_opts[i])) return 1;
  return 0;
}

/* Path of an executable `name` on PATH into out, or -1. */
static int on_path(const char *name, char *out, size_t cap)
{
  const char *path = getenv("PATH");

  while (path && *path) {
    const char *end = strchr(path, ':');
    size_t n = end ? (size_t)(end - path) : strlen(path);
    if (n && (size_t)snprintf(out, cap, "%.*s/%s", (int)n, path, name) < cap &&
        access(out, X_OK) == 0)
      return 0;
    path += n + (end ? 1 : 0);
  }
  return -1;
}

/* The first of <exedir>/<rel...> that exists, into out; or -1. */
static int beside_exe(const char *const *rels, char *out, size_t cap)
{
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  char *slash;

  if (n <= 0) return -1;
  exe[n] = '\0';
  if (!(slash = strrchr(exe, '/'))) return -1;
  *slash = '\0';
  for (size_t i = 0; rels[i]; i++)
    if ((size_t)snprintf(out, cap, "%s/%s", exe, rels[i]) < cap &&
        access(out, R_OK) == 0)
      return 0;
  return -1;
}

static int check_config(const char *path)
{
  swit_host_t *h = NULL;
  char err[1024];
  int rc = swit_host_new(&h, path, err, sizeof err);

  if (rc == 0) rc = swit_host_check(h, err, sizeof err);
  if (rc) fprintf(stderr, "swit test: %s\n", err);
  swit_host_free(h);
  return rc;
}

int swit__cli_test(int argc, char **argv)
{
  static const char *const libs[] = {
    "libswit.so." SWIT_SOVERSION, "../" SWIT_LIBDIR "/libswit.so." SWIT_SOVERSION,
    NULL};
  static const char *const luadirs[] = {
    "share/swit/lua/swit/test.lua", "../share/swit/lua/swit/test.lua", NULL};
  char busted[PATH_MAX], lib[PATH_MAX], mod[PATH_MAX], cfg[PATH_MAX];
  const char *config = NULL;
  char **args = calloc((size_t)argc + 2, sizeof *args);
  int n = 0, has_lua = 0;
  struct stat st;

  if (!args) return 1;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--config")) {
      if (i + 1 == argc) {
        fprintf(stderr, "swit test: --config needs a file\n");
        return EXIT_USAGE;
      }
      config = argv[++i];
      continue;
    }
    if (!strncmp(a, "--config=", 9)) {
      config = a + 9;
      continue;
    }
    if (!strcmp(a, "--lua") || !strncmp(a, "--lua=", 6)) has_lua = 1;
    if (a[0] == '-' && takes_value(a) && i + 1 < argc) {
      args[++n] = (char *)a;
      args[++n] = argv[++i];
      continue;
    }
    if (a[0] != '-' && stat(a, &st) != 0) {
      fprintf(stderr, "swit test: %s: %s\n", a, strerror(errno));
      return EXIT_USAGE;
    }
    args[++n] = (char *)a;
  }
  if (!config && stat("swit.yaml", &st) == 0) config = "swit.yaml";
  if (config) {
    if (!realpath(config, cfg)) {
      fprintf(stderr, "swit test: %s: %s\n", config, strerror(errno));
      return EXIT_USAGE;
    }
    if (check_config(cfg)) return EXIT_USAGE;
    setenv("SWIT_TEST_CONFIG", cfg, 1);
  }
  if (on_path("busted", busted, sizeof busted)) {
    fprintf(stderr, "swit test: busted not found on PATH: install it (Debian: "
            "apt install lua-busted; LuaRocks: luarocks install busted)\n");
    return EXIT_USAGE;
  }
  if (beside_exe(libs, lib, sizeof lib) || beside_exe(luadirs, mod, sizeof mod)) {
    fprintf(stderr, "swit test: libswit.so.%s or share/swit/lua/swit/test.lua "
            "not found beside the swit binary (install swit with both)\n",
            SWIT_SOVERSION);
    return EXIT_USAGE;
  }
  setenv("SWIT_TEST_LIB", lib, 1);
  {
    /* mod is <dir>/swit/test.lua: LUA_PATH gets <dir>/?.lua first */
    const char *old = getenv("LUA_PATH");
    char lp[PATH_MAX * 2];
    mod[strlen(mod) - strlen("swit/test.lua")] = '\0';
    snprintf(lp, sizeof lp, "%s?.lua;%s", mod, old ? old : ";");
    setenv("LUA_PATH", lp, 1);
  }
  args[0] = "busted";
  if (!has_lua) {           /* busted's FFI needs LuaJIT: first, so a */
    memmove(args + 2, args + 1, (size_t)n * sizeof *args);   /* user's */
    args[1] = "--lua=luajit";                                /* wins   */
    n++;
  }
  args[n + 1] = NULL;
  fflush(stdout);
  execv(busted, args);
  fprintf(stderr, "swit test: cannot run %s: %s\n", busted, strerror(errno));
  return 1;
}
