/*
 * obs.c - the life of a host's observability parts (obs.h): created with
 * the host, servers started once the host runs, everything stopped and
 * freed by swit_host_free before the workers and subscriptions the
 * servers read are freed.
 */
#include <stdlib.h>

#include "api/api.h"
#include "net/http.h"

int swit__obs_new(swit_host_t *h, char *err, size_t errlen)
{
  swit__obs *o = calloc(1, sizeof *o);

  (void)err, (void)errlen;
  if (!o) return SWIT_E_NOMEM;
  pthread_mutex_init(&o->pub_lock, NULL);
  pthread_mutex_init(&o->lag_lock, NULL);
  o->metrics_on = h->cfg->server.metrics.enabled;
  h->obs = o;
  h->log.level = h->cfg->server.log.level;
  h->log.format = h->cfg->server.log.format;
  return swit__umetrics_new(h);
}

/* A server that cannot bind is logged and left off: the host keeps
 * handling messages (a busy port must not take the service down). */
void swit__obs_start(swit_host_t *h)
{
  char err[256];

  if (swit__admin_start(h, err, sizeof err) != 0)
    swit__log(&h->log, SWIT_LOG_ERROR, "%s; the admin server is off", err);
  if (swit__ingress_start(h, err, sizeof err) != 0)
    swit__log(&h->log, SWIT_LOG_ERROR, "%s; the HTTP ingress is off", err);
}

void swit__obs_free(swit_host_t *h)
{
  swit__obs *o = h->obs;

  if (!o) return;
  swit__admin_stop(h);
  swit__http_stop(o->ingress);
  o->ingress = NULL;
  swit__umetrics_free(h);
  for (size_t i = 0; i < SWIT__PUB_TOPICS; i++) {
    swit__pub_entry *e = atomic_load(&o->pub.e[i]);
    if (e) free(e->topic);
    free(e);
  }
  for (size_t i = 0; i < o->nlags; i++) {
    free(o->lags[i].topic);
    free(o->lags[i].group);
  }
  free(o->lags);
  pthread_mutex_destroy(&o->pub_lock);
  pthread_mutex_destroy(&o->lag_lock);
  free(o);
  h->obs = NULL;
}
