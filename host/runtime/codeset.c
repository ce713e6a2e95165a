/*
 * codeset.c - a generation's Lua code, held in memory.
 *
 * A code set is the text of every script in lua.scripts plus every module
 * the scripts `require`d while loading (captured by the loader of
 * lua/swit/loader.lua in the validation state). Worker states are built
 * from it, never from the files, so all workers of a generation run the
 * same code even if files change under them, and a rollback to the
 * previous generation reads no file. Immutable once built; owned by the
 * host (current and previous generation), freed by the reload that
 * replaces it after every worker has moved on.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"

void swit__codeset_free(swit__codeset *cs)
{
  if (!cs) return;
  for (size_t i = 0; i < cs->nscripts; i++) {
    free(cs->scripts[i].path);
    free(cs->scripts[i].src);
  }
  for (size_t i = 0; i < cs->nmodules; i++) {
    free(cs->modules[i].name);
    free(cs->modules[i].path);
    free(cs->modules[i].src);
  }
  free(cs->scripts);
  free(cs->modules);
  free(cs);
}

static int read_file(const char *path, char **out, size_t *len, char *err,
                     size_t errlen)
{
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  long size;

  if (!f) goto fail;
  if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 ||
      fseek(f, 0, SEEK_SET) != 0)
    goto fail;
  if (!(buf = malloc((size_t)size + 1))) goto fail;
  if (fread(buf, 1, (size_t)size, f) != (size_t)size) goto fail;
  buf[size] = '\0';
  fclose(f);
  *out = buf;
  *len = (size_t)size;
  return 0;
fail:
  snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno ? errno : EIO));
  free(buf);
  if (f) fclose(f);
  return SWIT_E_SCRIPT;
}

/* Read every lua.scripts file. Modules are added by swit__codeset_add. */
int swit__codeset_read(const swit_config *cfg, swit__codeset **out, char *err,
                       size_t errlen)
{
  swit__codeset *cs = calloc(1, sizeof *cs);
  size_t n = cfg->lua.scripts.n;
  int rc = SWIT_E_NOMEM;

  if (!cs || !(cs->scripts = calloc(n ? n : 1, sizeof *cs->scripts))) goto fail;
  for (size_t i = 0; i < n; i++) {
    swit__chunk *c = &cs->scripts[i];
    const char *path = cfg->lua.scripts.items[i];
    if (!(c->path = strdup(path))) goto fail;
    cs->nscripts++;
    if ((rc = read_file(path, &c->src, &c->len, err, errlen))) goto fail;
  }
  *out = cs;
  return 0;
fail:
  if (rc == SWIT_E_NOMEM) snprintf(err, errlen, "out of memory reading scripts");
  swit__codeset_free(cs);
  return rc;
}

int swit__codeset_add_module(swit__codeset *cs, const char *name,
                             const char *path, const char *src, size_t len)
{
  swit__chunk *v = realloc(cs->modules, (cs->nmodules + 1) * sizeof *v);
  swit__chunk *c;

  if (!v) return SWIT_E_NOMEM;
  cs->modules = v;
  c = &v[cs->nmodules];
  *c = (swit__chunk){strdup(name), strdup(path), malloc(len + 1), len};
  if (!c->name || !c->path || !c->src) {
    free(c->name);
    free(c->path);
    free(c->src);
    return SWIT_E_NOMEM;
  }
  memcpy(c->src, src, len);
  c->src[len] = '\0';
  cs->nmodules++;
  return 0;
}
