/*
 * watch.c - lua.hot_reload.watch: reload when the code changes on disk.
 *
 * One thread per host watches, with inotify, the directories holding the
 * scripts and the modules the running generation required (directories,
 * not files, so editors that save by writing a temporary file and
 * renaming it over the original are seen). A change to a .lua file arms
 * a timer; once no further change came for lua.hot_reload.debounce, the
 * thread calls swit_host_reload. Directories of modules that a new
 * generation requires are added after each reload. An eventfd wakes the
 * thread to stop.
 */
#include <errno.h>
#include <libgen.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "api/api.h"

struct swit__watch {
  swit_host_t *h;
  pthread_t thread;
  int ifd, stopfd;
};

#define WATCH_MASK (IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | \
                    IN_MOVED_FROM)

static void watch_dir_of(struct swit__watch *wt, const char *path)
{
  char buf[4096];
  const char *dir;

  snprintf(buf, sizeof buf, "%s", path);
  dir = dirname(buf);
  if (inotify_add_watch(wt->ifd, dir, WATCH_MASK) < 0)
    swit__log(&wt->h->log, SWIT_LOG_WARN, "hot reload: cannot watch %s: %s",
              dir, strerror(errno));
}

/* Watch where the current generation's code came from (under the
 * reload lock: another thread's reload may replace the code set). */
static void watch_code(struct swit__watch *wt)
{
  swit_host_t *h = wt->h;
  pthread_mutex_lock(&h->reload_lock);
  for (size_t i = 0; i < h->code->nscripts; i++)
    watch_dir_of(wt, h->code->scripts[i].path);
  for (size_t i = 0; i < h->code->nmodules; i++)
    watch_dir_of(wt, h->code->modules[i].path);
  pthread_mutex_unlock(&h->reload_lock);
}

/* Read pending events; 1 if one was about a .lua file. */
static int lua_changed(struct swit__watch *wt)
{
  char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
  int changed = 0;
  ssize_t len;

  while ((len = read(wt->ifd, buf, sizeof buf)) > 0) {
    for (char *p = buf; p < buf + len;) {
      const struct inotify_event *ev = (const struct inotify_event *)p;
      size_t nl = ev->len ? strlen(ev->name) : 0;
      if (nl > 4 && strcmp(ev->name + nl - 4, ".lua") == 0) changed = 1;
      p += sizeof *ev + ev->len;
    }
  }
  return changed;
}

static void *watch_main(void *arg)
{
  struct swit__watch *wt = arg;
  swit_host_t *h = wt->h;
  int armed = 0;

  for (;;) {
    struct pollfd fds[2] = {{wt->ifd, POLLIN, 0}, {wt->stopfd, POLLIN, 0}};
    int timeout = armed ? (int)h->cfg->lua.hot_reload.debounce_ms : -1;
    int n = poll(fds, 2, timeout);

    if (n < 0 && errno != EINTR) break;
    if (fds[1].revents) break;
    if (n > 0 && (fds[0].revents & POLLIN)) {
      armed |= lua_changed(wt);
      continue;               /* quiet time restarts with every change */
    }
    if (n == 0 && armed) {
      char err[1024];
      armed = 0;
      swit__log(&h->log, SWIT_LOG_INFO, "hot reload: scripts changed");
      if (swit_host_reload(h, 0, NULL, err, sizeof err) == 0)
        watch_code(wt);
    }
  }
  return NULL;
}

int swit__watch_start(swit_host_t *h, char *err, size_t errlen)
{
  struct swit__watch *wt = calloc(1, sizeof *wt);

  if (!wt) return SWIT_E_NOMEM;
  wt->h = h;
  wt->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  wt->stopfd = eventfd(0, EFD_CLOEXEC);
  if (wt->ifd < 0 || wt->stopfd < 0) goto fail;
  watch_code(wt);
  if ((errno = pthread_create(&wt->thread, NULL, watch_main, wt)) != 0)
    goto fail;
  h->watch = wt;
  return 0;
fail:
  snprintf(err, errlen, "hot reload: cannot watch the scripts: %s",
           strerror(errno));
  if (wt->ifd >= 0) close(wt->ifd);
  if (wt->stopfd >= 0) close(wt->stopfd);
  free(wt);
  return SWIT_E_SYS;
}

void swit__watch_stop(swit_host_t *h)
{
  struct swit__watch *wt = h->watch;
  uint64_t one = 1;
  ssize_t wr;

  if (!wt) return;
  wr = write(wt->stopfd, &one, sizeof one); /* cannot fail: fresh counter */

  (void)wr;
  pthread_join(wt->thread, NULL);
  close(wt->ifd);
  close(wt->stopfd);
  free(wt);
  h->watch = NULL;
}
