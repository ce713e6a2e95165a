/*
 * subs.c - the host's subscription table.
 *
 * A subscription is one (topic, group) with its handler kind, ordering
 * and retry policy. Its id (1-based index) is stable for the life of the
 * host and never reused, so Lua handler tables of different code
 * generations agree on ids; a subscription a reload removed stays in the
 * table, inactive. The table has a fixed capacity (SWIT__MAX_SUBS), so
 * workers may index it while a reload adds entries. Entries are created
 * and (un)subscribed by the thread that starts or reloads the host.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/host_int.h"

int swit__subs_init(swit_host_t *h)
{
  h->subs = calloc(SWIT__MAX_SUBS, sizeof *h->subs);
  return h->subs ? 0 : SWIT_E_NOMEM;
}

static void sub_free(swit__sub *s)
{
  if (!s) return;
  pthread_mutex_destroy(&s->pause_lock);
  free(s->topic);
  free(s->group);
  free(s->dead_letter);
  free(s);
}

/* Forget the subscriptions created after the first `keep` (a reload that
 * could not finish adding them; no worker has seen their ids yet). */
void swit__subs_truncate(swit_host_t *h, size_t keep)
{
  while (h->nsubs > keep) {
    sub_free(h->subs[h->nsubs - 1]);
    h->subs[--h->nsubs] = NULL;
  }
}

typedef struct swit__name {
  struct swit__name *next;
  char s[];
} swit__name;

/* A list that only grows (one entry per script name ever seen, so a
 * handful): a racing duplicate entry is harmless. */
const char *swit__subs_script(swit_host_t *h, const char *chunkname)
{
  const char *name = chunkname[0] == '@' || chunkname[0] == '='
                     ? chunkname + 1 : chunkname;
  swit__name *head = atomic_load(&h->script_names), *n;
  size_t len = strlen(name);

  for (n = head; n; n = n->next)
    if (!strcmp(n->s, name)) return n->s;
  if (!(n = malloc(sizeof *n + len + 1))) return NULL;
  memcpy(n->s, name, len + 1);
  do n->next = head;
  while (!atomic_compare_exchange_weak(&h->script_names, &head, n));
  return n->s;
}

void swit__subs_free(swit_host_t *h)
{
  for (swit__name *n = atomic_exchange(&h->script_names, NULL), *next; n;
       n = next) {
    next = n->next;
    free(n);
  }
  if (!h->subs) return;
  for (size_t i = 0; i < h->nsubs; i++) sub_free(h->subs[i]);
  free(h->subs);
  h->subs = NULL;
  h->nsubs = 0;
}

void swit__subdefs_free(swit__subdef *defs, size_t n)
{
  if (!defs) return;
  for (size_t i = 0; i < n; i++) {
    free(defs[i].topic);
    free(defs[i].group);
    free(defs[i].dead_letter);
    free(defs[i].script);
  }
  free(defs);
}

/* ------------------------------------------------------------------ */

int swit__subdef_defaults(swit_host_t *h, swit__subdef *d)
{
  if (!d->group && !(d->group = strdup(h->cfg->server.name)))
    return SWIT_E_NOMEM;
  if (!d->dead_letter) {
    size_t len = strlen(d->topic) + 5;
    if (!(d->dead_letter = malloc(len))) return SWIT_E_NOMEM;
    snprintf(d->dead_letter, len, "%s.dlq", d->topic);
  }
  if (!d->max_attempts)
    d->max_attempts =
        (uint32_t)swit__config_subscriber(h->cfg, d->group)->max_attempts;
  /* messaging.publishers.<group>.transactional (else default) makes every
   * subscription of the group exactly_once; exactly_once runs a
   * partition's messages on one worker, so that its transactions commit
   * in offset order (txn.c). */
  if (swit__config_publisher(h->cfg, d->group)->transactional)
    d->exactly_once = 1;
  if (d->exactly_once) d->ordering = SWIT_ORDER_PARTITION;
  return 0;
}

static swit__sub *find_active(swit_host_t *h, const char *topic,
                              const char *group)
{
  for (size_t i = 0; i < h->nsubs; i++) {
    swit__sub *s = h->subs[i];
    if (s->active && !strcmp(s->topic, topic) && !strcmp(s->group, group))
      return s;
  }
  return NULL;
}

static const char *changed_option(const swit__sub *s, const swit__subdef *d)
{
  if (s->ordering != d->ordering) return "ordering";
  if (s->max_attempts != d->max_attempts) return "max_attempts";
  if (strcmp(s->dead_letter, d->dead_letter)) return "dead_letter";
  if (s->exactly_once != d->exactly_once) return "exactly_once";
  if (s->jetstream != d->jetstream) return "jetstream";
  return NULL;
}

int swit__subs_resolve(swit_host_t *h, const swit__subdef *defs, size_t n,
                       uint32_t *ids, char *err, size_t errlen)
{
  for (size_t i = 0; i < n; i++) {
    const swit__subdef *d = &defs[i];
    swit__sub *s = find_active(h, d->topic, d->group);
    const char *opt;

    for (size_t j = 0; j < i; j++) {
      if (strcmp(defs[j].topic, d->topic) || strcmp(defs[j].group, d->group))
        continue;
      snprintf(err, errlen, "topic '%s' has two handlers for group '%s'",
               d->topic, d->group);
      return SWIT_E_EXISTS;
    }
    ids[i] = s ? s->id : 0;
    if (!s) continue;
    if (s->ccb) {
      snprintf(err, errlen, "topic '%s' has two handlers for group '%s' (a C "
               "handler and a Lua handler)", d->topic, d->group);
      return SWIT_E_EXISTS;
    }
    if ((opt = changed_option(s, d))) {
      snprintf(err, errlen, "swit.on('%s', {group = '%s'}): a reload cannot "
               "change the option '%s' of a running subscription (restart, "
               "or subscribe under another group)", d->topic, d->group, opt);
      return SWIT_E_SCRIPT;
    }
  }
  return 0;
}

int swit__subs_add(swit_host_t *h, const swit__subdef *d, swit_handler_cb cb,
                   void *ud, uint32_t *id)
{
  swit__sub *s;

  if (h->nsubs == SWIT__MAX_SUBS) return SWIT_E_FULL;
  if (!(s = calloc(1, sizeof *s))) return SWIT_E_NOMEM;
  pthread_mutex_init(&s->pause_lock, NULL);
  s->topic = strdup(d->topic);
  s->group = strdup(d->group);
  s->dead_letter = strdup(d->dead_letter);
  if (!s->topic || !s->group || !s->dead_letter) {
    sub_free(s);
    return SWIT_E_NOMEM;
  }
  s->id = (uint32_t)h->nsubs + 1;
  s->host = h;
  s->ordering = d->ordering;
  s->exactly_once = d->exactly_once;
  s->jetstream = d->jetstream;
  s->from = d->from;
  s->max_attempts = d->max_attempts;
  s->scfg = swit__config_subscriber(h->cfg, s->group);
  s->ccb = cb;
  s->cud = ud;
  s->active = 1;
  if (s->exactly_once) atomic_store(&h->has_txn, 1);
  h->subs[h->nsubs++] = s;
  if (cb) h->has_chandlers = 1;
  *id = s->id;
  return 0;
}

/* ------------------------------------------------------------------ */

/* Whether `topic` is a dead-letter topic: the default "<topic>.dlq"
 * form, or the dead_letter of an active subscription. At start every
 * subscription is in the table before the first is subscribed, so the
 * answer does not depend on the order of the swit.on calls. */
static int is_dead_letter_topic(const swit_host_t *h, const char *topic)
{
  size_t n = strlen(topic);

  if (n >= 4 && strcmp(topic + n - 4, ".dlq") == 0) return 1;
  for (size_t i = 0; i < h->nsubs; i++)
    if (h->subs[i]->active && strcmp(h->subs[i]->dead_letter, topic) == 0)
      return 1;
  return 0;
}

int swit__subs_subscribe(swit_host_t *h, swit__sub *s, char *err,
                         size_t errlen)
{
  swit_sub_spec spec = {
    .topic = s->topic, .group = s->group, .ordering = s->ordering,
    .prefetch = (uint32_t)s->scfg->prefetch,
    .ack_deadline_ms = s->scfg->ack_deadline_ms,
    .exactly_once = s->exactly_once, .jetstream = s->jetstream,
    .dead_letter = s->dead_letter,
    .parking = is_dead_letter_topic(h, s->topic),
    .from = s->from,
  };
  int rc;

  if (s->exactly_once && (!h->ops->txn_begin || !h->ops->txn_end)) {
    snprintf(err, errlen, "subscribe '%s' (group '%s'): exactly_once needs "
             "transactions, and broker '%s' has none (exactly_once = true, "
             "or messaging.publishers.<group or default>.transactional)",
             s->topic, s->group, h->ops->name);
    return SWIT_E_CONFIG;
  }
  if (s->scfg->dead_letter.ttl_ms > 0 && !(h->ops->caps & SWIT_CAP_TTL)) {
    snprintf(err, errlen, "subscribe '%s' (group '%s'): messaging.subscribers."
             "<group or default>.dead_letter.ttl: broker '%s' cannot expire "
             "single messages: remove the key, and expire the dead-letter "
             "topic by the broker's own means (docs/resilience.md, "
             "'Dead letters')", s->topic, s->group, h->ops->name);
    return SWIT_E_CONFIG;
  }
  rc = h->ops->subscribe(h->broker, &spec, swit__dispatch_sink, s,
                         &s->handle, err, errlen);
  if (rc == 0) atomic_store(&s->subscribed, 1);
  return rc;
}

void swit__subs_unsubscribe(swit_host_t *h, swit__sub *s)
{
  if (!atomic_exchange(&s->subscribed, 0)) return;
  pthread_mutex_lock(&s->pause_lock);   /* no pause/resume in flight */
  h->ops->unsubscribe(h->broker, s->handle);
  pthread_mutex_unlock(&s->pause_lock);
}
