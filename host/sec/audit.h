/*
 * audit.h - the audit log (audit.c): publishes, consumes and admin
 * actions as JSON lines to stderr or a file of its own, through a
 * bounded ring a writer thread drains. Not API.
 *
 * Threads: swit__audit_line and the interceptor's hooks run on any
 * thread (workers, publishers, the admin server); they copy the line
 * into the ring under a lock held for the copy only. A full ring drops
 * the line (counted) or, with on_full: block, waits for the writer.
 * The writer thread is the only one that writes the output.
 */
#ifndef SWIT_SEC_AUDIT_H
#define SWIT_SEC_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "config/config.h"

struct swit_host_s;
typedef struct swit__audit swit__audit;

/* From the config; *out NULL when the audit is off. SWIT_E_CONFIG with
 * "file:line:col: key: ..." (the output cannot be opened), SWIT_E_NOMEM,
 * SWIT_E_SYS (no thread). */
int swit__audit_new(swit__audit **out, const swit_config *cfg, char *err,
                    size_t errlen);
/* Drain what is buffered, stop the writer, close. NULL is fine. */
void swit__audit_free(swit__audit *a);
/* The interceptor (api/host.c, when on). */
int swit__audit_register(struct swit_host_s *h, swit__audit *a);

/* An admin action: {"event":"admin","action":...,"target":...,
 * "remote":...,"result":...}. target, remote may be NULL. */
void swit__audit_admin(swit__audit *a, const char *action, const char *target,
                       const char *remote, int rc, const char *detail);

/* Counters for /metrics. */
typedef struct swit__audit_stats {
  uint64_t lines, dropped, blocked;
} swit__audit_stats;
void swit__audit_stats_get(swit__audit *a, swit__audit_stats *st);

/* Copy JSON text s[0..n) to out with the values at `fields` paths
 * replaced by "[REDACTED]" (redact.c). 0, or -1 (not JSON; out as it
 * was). */
int swit__redact_json(const char *s, size_t n, const swit_cfg_list *fields,
                      swit__buf *out);

#endif /* SWIT_SEC_AUDIT_H */
