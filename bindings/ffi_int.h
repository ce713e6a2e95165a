/*
 * ffi_int.h - what the runtime needs from bindings/: the cdef text the
 * build makes from swit_ffi.h and swit.h's constant lists, and the table
 * of exports handed to each Lua state. Internal (hidden in libswit.so).
 */
#ifndef SWIT_FFI_INT_H
#define SWIT_FFI_INT_H

#include "swit_ffi.h"

/* The cdef for ffi.cdef, NUL-terminated (generated: swit_ffi_cdef.c). */
extern const char swit__ffi_cdef[];

/* Every export, for lua/swit/core.lua (ffi_exports.c). */
extern const swit_ffi_api swit__ffi_api;

/* The swit.metrics exports (ffi_metrics.c), gathered in swit__ffi_api. */
int swit__ffi_metric_register(swit_ffi_worker *w, int type, const char *name,
                              size_t name_len, const char *help,
                              size_t help_len, const char *labels,
                              size_t labels_len, const double *bounds,
                              uint32_t nb);
void swit__ffi_metric_add(swit_ffi_worker *w, int32_t slot, double v);
void swit__ffi_metric_gauge(swit_ffi_worker *w, int32_t slot, double v,
                            int add);
void swit__ffi_metric_observe(swit_ffi_worker *w, int32_t slot, uint32_t nb,
                              const double *bounds, double v);
/* ffi_resil.c: swit.breaker */
int swit__ffi_breaker_get(swit_ffi_worker *w, const char *name,
                          size_t name_len, int64_t failure_threshold,
                          int64_t success_threshold, int64_t recovery_ms,
                          double failure_rate, int64_t min_calls,
                          int64_t window_ms);
int swit__ffi_breaker_allow(swit_ffi_worker *w, int32_t id);
void swit__ffi_breaker_record(swit_ffi_worker *w, int32_t id, int outcome);
int swit__ffi_breaker_state(swit_ffi_worker *w, int32_t id);

#endif /* SWIT_FFI_INT_H */
