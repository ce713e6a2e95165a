/*
 * api.h - the top of the host: what host.c, reload.c, watch.c, admin.c
 * and obs.c share. Not API (the public API is swit/swit.h). This layer
 * wires the others together: it picks the runner (runtime/), registers
 * the interceptors (obs/) and starts the servers (net/, admin.c).
 */
#ifndef SWIT_API_H
#define SWIT_API_H

#include "obs/obs.h"
#include "resil/resil.h"
#include "runtime/runtime.h"
#include "sec/sec.h"

/* watch.c: lua.hot_reload.watch */
int swit__watch_start(struct swit_host_s *h, char *err, size_t errlen);
void swit__watch_stop(struct swit_host_s *h);

/* testrec.c: the recorder of swit_host_test_mode, freed with the host */
void swit__testrec_free(struct swit_host_s *h);

#endif /* SWIT_API_H */
