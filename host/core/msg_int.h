/*
 * msg_int.h - message helpers shared by the core and the FFI exports in
 * bindings/ (which call these rather than reach into the batch).
 */
#ifndef SWIT_MSG_INT_H
#define SWIT_MSG_INT_H

#include "core/host_int.h"

const swit_header *swit__msg_header_find(const swit_ffi_msg *m,
                                         const char *name, size_t len);
const swit_header *swit__msg_header_at(const swit_ffi_msg *m, uint32_t i);
int swit__msg_set_header(swit__worker *w, swit_ffi_msg *m, const char *name,
                         size_t nlen, const char *val, size_t vlen);
int swit__msg_set_result(swit__worker *w, swit_ffi_msg *m, int code,
                         const char *reason, size_t len);

/* The worker whose batch holds `m` (the calling thread's worker). */
swit__worker *swit__worker_of(const swit_ffi_msg *m);

/* The calling thread's worker (set while a worker runs or loads Lua). */
extern _Thread_local swit__worker *swit__current_worker;
/* The peer ("address:port") of the HTTP request the calling thread is
 * publishing for (the ingress sets it around its publish), or NULL; the
 * audit log reads it in publish hooks. */
extern _Thread_local const char *swit__publish_remote;

#endif /* SWIT_MSG_INT_H */
