/*
 * sec.c - the security layer's life in a host (sec.h): made with the
 * host (after metrics and tracing are on the interception layer, so
 * they see a refused message as the chain's result), reloaded on the
 * reloading thread, freed after the workers stop.
 */
#include <stdio.h>
#include <stdlib.h>

#include "core/host_int.h"
#include "obs/obs.h"
#include "sec/audit.h"
#include "sec/msgsec.h"
#include "sec/sec.h"

int swit__sec_glob(const char *p, const char *s, size_t n)
{
  const char *star = NULL;
  size_t i = 0, mark = 0;

  while (i < n) {
    if (*p == '*') {
      star = ++p;
      mark = i;
    } else if (*p && (*p == '?' || *p == s[i])) {
      p++, i++;
    } else if (star) {
      p = star;
      i = ++mark;
    } else {
      return 0;
    }
  }
  while (*p == '*') p++;
  return *p == '\0';
}

int swit__sec_new(swit_host_t *h, char *err, size_t errlen)
{
  swit__msgsec *msg = NULL;
  swit__audit *audit = NULL;
  swit__sec *s;
  int rc;

  if ((rc = swit__msgsec_new(&msg, h->cfg, err, errlen))) return rc;
  if ((rc = swit__audit_new(&audit, h->cfg, err, errlen))) goto fail;
  if (!msg && !audit) return 0;              /* nothing on the hot path */
  rc = SWIT_E_NOMEM;
  if (!(s = calloc(1, sizeof *s))) goto fail;
  s->msg = msg;
  s->audit = audit;
  h->sec = s;                                /* owned by the host now */
  /* encryption first: the audit sees a consumed message decrypted and
   * a refused one with its reason */
  if (msg && (rc = swit__msgsec_register(h, msg))) return rc;
  if (audit && (rc = swit__audit_register(h, audit))) return rc;
  h->obs->render_more = swit__sec_metrics;
  return 0;
fail:
  swit__msgsec_free(msg);
  swit__audit_free(audit);
  return rc;
}

void swit__sec_free(swit_host_t *h)
{
  swit__sec *s = h->sec;

  if (!s) return;
  swit__audit_free(s->audit);
  swit__msgsec_free(s->msg);
  free(s);
  h->sec = NULL;
}

int swit__sec_reload(swit_host_t *h, char *err, size_t errlen)
{
  if (!h->sec || !h->sec->msg) return 0;
  return swit__msgsec_reload(h->sec->msg, err, errlen);
}

void swit__sec_admin(swit_host_t *h, const char *action, const char *target,
                     const char *remote, int rc, const char *detail)
{
  if (h->sec) swit__audit_admin(h->sec->audit, action, target, remote, rc,
                                detail);
}

void swit__sec_metrics(swit_host_t *h, swit__buf *out)
{
  swit__audit_stats st;

  if (!h->sec) return;
  if (h->sec->msg)
    swit__buf_printf(out, "# HELP swit_msgsec_rejected_total Messages "
                     "refused before their handler (signature, "
                     "decryption)\n# TYPE swit_msgsec_rejected_total "
                     "counter\nswit_msgsec_rejected_total %llu\n",
                     (unsigned long long)atomic_load(&h->sec->msg->rejected));
  if (!h->sec->audit) return;
  swit__audit_stats_get(h->sec->audit, &st);
  swit__buf_printf(out, "# HELP swit_audit_lines_total Audit lines "
                   "buffered\n# TYPE swit_audit_lines_total counter\n"
                   "swit_audit_lines_total %llu\n"
                   "# HELP swit_audit_dropped_total Audit lines lost to a "
                   "full buffer\n# TYPE swit_audit_dropped_total counter\n"
                   "swit_audit_dropped_total %llu\n"
                   "# HELP swit_audit_blocked_total Callers that waited "
                   "for room in the audit buffer\n"
                   "# TYPE swit_audit_blocked_total counter\n"
                   "swit_audit_blocked_total %llu\n",
                   (unsigned long long)st.lines,
                   (unsigned long long)st.dropped,
                   (unsigned long long)st.blocked);
}
