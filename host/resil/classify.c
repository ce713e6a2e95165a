/*
 * classify.c - error classification (resil.h), as an interceptor:
 * messages.subscribers.<name>.errors.
 *
 * A failed message (the handler's result is retry, reject or fatal, or it
 * raised an error: retry with the error text) is matched against the
 * rules of its subscriber config, critical first, then non_retryable, then
 * retryable; the first class with a matching rule decides and its
 * msgs_after hook rewrites the result:
 *
 *   retryable      retry (within max_attempts, with backoff)
 *   non_retryable  reject: dead-lettered at once, the reason kept
 *   critical       fatal: dead-lettered at once, logged at error level,
 *                  counted (swit_errors_critical_total), and, being a
 *                  fatal result, it opens the subscription's circuit
 *                  breaker when it has one
 *
 * A rule is a plain substring of the failure's reason (the error text;
 * case-sensitive, no patterns), or "result:retry", "result:reject",
 * "result:fatal" to match the result itself. default_rules adds
 * "msg:json(): invalid JSON payload" to non_retryable. A failure no rule
 * matches keeps its result. Messages refused before their handler and
 * acks are never looked at.
 *
 * Rules are compiled once per subscriber entry at registration; matching
 * runs only for failures, so a subscription whose handler succeeds pays
 * one load and one compare per message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obs/obs.h"
#include "resil/resil.h"

#define RULE_MAX_LEN 256
#define DECODE_RULE "msg:json(): invalid JSON payload"

static const char *const class_names[] = {"retryable", "non_retryable",
                                          "critical"};

typedef struct rule {
  const char *text;           /* the config's string */
  size_t len;
  int result;                 /* result:X: its SWIT_RES_*, else -1 */
} rule;

typedef struct rules {
  int enabled;
  rule *v[3];                 /* by SWIT__ERR_* */
  size_t n[3];
} rules;

struct swit__classify {
  const swit_cfg_subscriber *base; /* the config's subscriber entries */
  size_t nentries;
  rules *by_entry;            /* [nentries] */
  /* [SWIT__MAX_SUBS + 1][3]: failures classified, by subscription id */
  atomic_uint_fast64_t (*count)[3];
};

static int parse_rule(rule *r, const char *s, char *why, size_t whylen)
{
  size_t len = strlen(s);

  r->text = s;
  r->len = len;
  r->result = -1;
  if (len == 0 || len > RULE_MAX_LEN) {
    snprintf(why, whylen, "a rule must be 1..%d bytes", RULE_MAX_LEN);
    return -1;
  }
  if (strncmp(s, "result:", 7) == 0) {
    if (!strcmp(s + 7, "retry")) r->result = SWIT_RETRY;
    else if (!strcmp(s + 7, "reject")) r->result = SWIT_REJECT;
    else if (!strcmp(s + 7, "fatal")) r->result = SWIT_FATAL;
    else {
      snprintf(why, whylen, "'%.40s': expected result:retry, result:reject "
               "or result:fatal", s);
      return -1;
    }
  }
  return 0;
}

static const swit_cfg_list *cfg_list(const swit_cfg_errors *e, int cls)
{
  return cls == SWIT__ERR_RETRYABLE ? &e->retryable
         : cls == SWIT__ERR_NON_RETRYABLE ? &e->non_retryable : &e->critical;
}

static int compile(rules *rs, const swit_cfg_errors *e, const char *entry,
                   const char *path, char *err, size_t errlen)
{
  rs->enabled = e->enabled;
  if (!e->enabled) return 0;
  for (int c = 0; c < 3; c++) {
    const swit_cfg_list *l = cfg_list(e, c);
    size_t extra = c == SWIT__ERR_NON_RETRYABLE && e->default_rules;
    if (!(rs->v[c] = calloc(l->n + extra + 1, sizeof *rs->v[c])))
      return SWIT_E_NOMEM;
    for (size_t i = 0; i < l->n; i++) {
      char why[120];
      if (parse_rule(&rs->v[c][rs->n[c]++], l->items[i], why, sizeof why)) {
        snprintf(err, errlen, "%s: messaging.subscribers.%s.errors.%s[%zu]: "
                 "%s", path, entry, class_names[c], i, why);
        return SWIT_E_CONFIG;
      }
    }
    if (extra)
      rs->v[c][rs->n[c]++] = (rule){DECODE_RULE, sizeof DECODE_RULE - 1, -1};
  }
  return 0;
}

static int matches(const rules *rs, int cls, const swit_ffi_msg *m)
{
  for (size_t i = 0; i < rs->n[cls]; i++) {
    const rule *r = &rs->v[cls][i];
    if (r->result >= 0 ? m->result == r->result
                       : m->reason && memmem(m->reason, m->reason_len,
                                             r->text, r->len) != NULL)
      return 1;
  }
  return 0;
}

/* The class of a failure, or -1 when no rule matches. */
static int classify(const rules *rs, const swit_ffi_msg *m)
{
  if (matches(rs, SWIT__ERR_CRITICAL, m)) return SWIT__ERR_CRITICAL;
  if (matches(rs, SWIT__ERR_NON_RETRYABLE, m)) return SWIT__ERR_NON_RETRYABLE;
  if (matches(rs, SWIT__ERR_RETRYABLE, m)) return SWIT__ERR_RETRYABLE;
  return -1;
}

static void k_msg_after(void *ws, swit__worker *w, uint32_t i)
{
  swit_ffi_msg *m = &w->ffi.msgs[i];
  swit__classify *k = ws;
  const swit__sub *sub;
  const rules *rs;
  int cls;

  if (m->result == SWIT_ACK || (m->flags & SWIT_MSG_F_REJECTED) ||
      m->result > SWIT_FATAL)
    return;
  sub = w->items[i].sub;
  if (!sub->scfg || sub->scfg < k->base || sub->scfg >= k->base + k->nentries)
    return;
  rs = &k->by_entry[sub->scfg - k->base];
  if (!rs->enabled || (cls = classify(rs, m)) < 0) return;
  atomic_fetch_add_explicit(&k->count[sub->id][cls], 1, memory_order_relaxed);
  switch (cls) {
  case SWIT__ERR_RETRYABLE:
    m->result = SWIT_RETRY;
    break;
  case SWIT__ERR_NON_RETRYABLE:
    m->result = SWIT_REJECT;
    break;
  default:
    m->result = SWIT_FATAL;
    swit__log(&w->host->log, SWIT_LOG_ERROR, "[worker %u] critical error in "
              "the handler of '%s' (group %s): %.*s", w->id, sub->topic,
              sub->group, (int)(m->reason_len > 512 ? 512 : m->reason_len),
              m->reason ? m->reason : "");
    break;
  }
}
SWIT__ICPT_MSGS_AFTER(k_msgs_after, k_msg_after)

static int k_worker_init(void *hs, swit__worker *w, void **ws)
{
  (void)w;
  *ws = hs;
  return 0;
}

static const swit__icpt_ops classify_ops = {
  .name = "classify",
  .worker_init = k_worker_init,
  .msgs_after = k_msgs_after,
};

/* ------------------------------------------------------------------ */
/* Lifecycle */

static void classify_free(swit__classify *k)
{
  if (!k) return;
  for (size_t e = 0; k->by_entry && e < k->nentries; e++)
    for (int c = 0; c < 3; c++) free(k->by_entry[e].v[c]);
  free(k->by_entry);
  free(k->count);
  free(k);
}

int swit__classify_register(swit_host_t *h, char *err, size_t errlen)
{
  const swit_cfg_named *subs = &h->cfg->messaging.subscribers;
  const swit_cfg_subscriber *base = subs->elems;
  swit__classify *k;
  int any = 0, rc;

  for (size_t i = 0; i < subs->n; i++) any |= base[i].errors.enabled;
  if (!any) return 0;
  if (!(k = calloc(1, sizeof *k)) ||
      !(k->by_entry = calloc(subs->n, sizeof *k->by_entry)) ||
      !(k->count = calloc(SWIT__MAX_SUBS + 1, sizeof *k->count))) {
    classify_free(k);
    return SWIT_E_NOMEM;
  }
  k->base = base;
  k->nentries = subs->n;
  for (size_t i = 0; i < subs->n; i++)
    if ((rc = compile(&k->by_entry[i], &base[i].errors, subs->names[i],
                      h->cfg->path, err, errlen))) {
      classify_free(k);
      return rc;
    }
  if ((rc = swit__icpt_add(h, &classify_ops, k)) < 0) {
    classify_free(k);
    return rc;
  }
  h->resil->classify = k;
  return 0;
}

void swit__classify_free(swit__resil *r)
{
  classify_free(r->classify);
  r->classify = NULL;
}

int swit__classify_render(swit_host_t *h, swit__buf *b)
{
  swit__classify *k = h->resil ? h->resil->classify : NULL;
  size_t n = h->subs ? __atomic_load_n(&h->nsubs, __ATOMIC_ACQUIRE) : 0;

  if (!k) return 0;
  swit__buf_printf(b, "# HELP swit_errors_classified_total Handler failures "
                   "classified by the error rules, by class\n"
                   "# TYPE swit_errors_classified_total counter\n");
  for (size_t i = 0; i < n; i++) {
    const swit__sub *s = h->subs[i];
    for (int c = 0; c < 3; c++) {
      swit__buf_add(b, "swit_errors_classified_total{topic=\"", 36);
      swit__buf_prom(b, s->topic, strlen(s->topic), 1);
      swit__buf_add(b, "\",group=\"", 9);
      swit__buf_prom(b, s->group, strlen(s->group), 1);
      swit__buf_printf(b, "\",class=\"%s\"} %llu\n", class_names[c],
                       (unsigned long long)atomic_load(&k->count[s->id][c]));
    }
  }
  swit__buf_printf(b, "# HELP swit_errors_critical_total Critical handler "
                   "failures (alerts)\n# TYPE swit_errors_critical_total "
                   "counter\n");
  for (size_t i = 0; i < n; i++) {
    const swit__sub *s = h->subs[i];
    swit__buf_add(b, "swit_errors_critical_total{topic=\"", 34);
    swit__buf_prom(b, s->topic, strlen(s->topic), 1);
    swit__buf_add(b, "\",group=\"", 9);
    swit__buf_prom(b, s->group, strlen(s->group), 1);
    swit__buf_printf(b, "\"} %llu\n", (unsigned long long)atomic_load(
                         &k->count[s->id][SWIT__ERR_CRITICAL]));
  }
  return b->data ? 0 : SWIT_E_NOMEM;
}
