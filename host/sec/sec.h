/*
 * sec.h - the security layer of the host (between obs and runtime):
 * message encryption and signing (msgsec.h) and the audit log
 * (audit.h), built from messaging.security and put on the interception
 * layer only when configured. sec.c is what the host (api/) calls.
 * Not API. docs/security.md describes the keys and the threat model.
 */
#ifndef SWIT_SEC_H
#define SWIT_SEC_H

#include <stddef.h>

#include "base/buf.h"

struct swit_host_s;
struct swit__msgsec;
struct swit__audit;

typedef struct swit__sec {
  struct swit__msgsec *msg;     /* NULL: no encryption or signing */
  struct swit__audit *audit;    /* NULL: no audit log */
} swit__sec;

/* Build from h->cfg and register the interceptors (before the workers
 * are made). h->sec stays NULL when nothing is configured. 0, or
 * SWIT_E_CONFIG ("file:line:col: key: ...") / SWIT_E_NOMEM / SWIT_E_SYS. */
int swit__sec_new(struct swit_host_s *h, char *err, size_t errlen);
/* Drain the audit log, free the keys. */
void swit__sec_free(struct swit_host_s *h);
/* Reload the keyrings (SIGHUP, POST /admin/reload): 0 (also when there
 * are none) or SWIT_E_CONFIG with err; the old keys stay on error. */
int swit__sec_reload(struct swit_host_s *h, char *err, size_t errlen);
/* An admin action for the audit log (nothing when it is off). */
void swit__sec_admin(struct swit_host_s *h, const char *action,
                     const char *target, const char *remote, int rc,
                     const char *detail);
/* Its metrics, appended to /metrics (obs calls it through a hook). */
void swit__sec_metrics(struct swit_host_s *h, swit__buf *out);

/* Does glob pattern p ('*' any run, '?' one character) match s[0..n)? */
int swit__sec_glob(const char *p, const char *s, size_t n);

#endif /* SWIT_SEC_H */
