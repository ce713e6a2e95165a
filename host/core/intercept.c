/*
 * intercept.c - the interception layer's registry and the calls the core
 * makes into it (intercept.h).
 *
 * The chain is filled before the workers exist and read-only afterwards,
 * so the hot path reads it without a lock. Each call site in the core
 * tests one `any_*` byte before looping over the chain: with nothing
 * registered a batch pays a handful of predictable branches.
 */
#include <stdlib.h>
#include <string.h>

#include "core/host_int.h"

/* ------------------------------------------------------------------ */
/* Registration */

int swit__icpt_add(swit_host_t *h, const swit__icpt_ops *ops, void *hs)
{
  swit__icpt_chain *c = &h->icpt;
  swit__icpt *e;

  if (!ops || !ops->name) return SWIT_E_INVAL;
  if (c->n == SWIT__ICPT_MAX ||
      c->carry_size + ops->carry_size > SWIT__CARRY_MAX)
    return SWIT_E_FULL;
  e = &c->v[c->n];
  e->ops = ops;
  e->hs = hs;
  e->carry_off = c->carry_size;
  c->carry_size += ops->carry_size;
  c->any_batch |= ops->batch_before || ops->batch_after || ops->mark;
  c->any_msg |= ops->msgs_before || ops->msgs_after;
  c->any_settled |= ops->settled != NULL;
  c->any_publish |= ops->publish_before || ops->publish_after;
  c->any_carry |= ops->carry_size > 0;
  c->time_publish |= (ops->flags & SWIT__ICPT_F_TIME_PUBLISH) != 0;
  c->recv_time |= (ops->flags & SWIT__ICPT_F_RECV_TIME) != 0;
  c->settled_acks |= ops->settled && (ops->flags & SWIT__ICPT_F_SETTLED_ACKS);
  c->any_intake |= ops->intake != NULL;
  c->any_released |= ops->released != NULL;
  return (int)c->n++;
}

/* ------------------------------------------------------------------ */
/* Per worker */

int swit__icpt_worker_init(swit__worker *w)
{
  const swit__icpt_chain *c = &w->host->icpt;

  if (c->any_carry) {
    w->carry = calloc(w->host->batch_size, SWIT__CARRY_MAX);
    w->carried = calloc(w->host->batch_size, 1);
    if (!w->carry || !w->carried) return SWIT_E_NOMEM;
  }
  for (uint32_t k = 0; k < c->n; k++) {
    const swit__icpt *e = &c->v[k];
    if (e->ops->worker_init &&
        e->ops->worker_init(e->hs, w, &w->icpt_ws[k]) != 0)
      return SWIT_E_NOMEM;
  }
  return 0;
}

void swit__icpt_worker_free(swit__worker *w)
{
  const swit__icpt_chain *c = &w->host->icpt;

  for (uint32_t k = c->n; k-- > 0;) {
    const swit__icpt *e = &c->v[k];
    if (e->ops->worker_free) e->ops->worker_free(e->hs, w, w->icpt_ws[k]);
    w->icpt_ws[k] = NULL;
  }
  free(w->carry);
  free(w->carried);
  w->carry = NULL;
  w->carried = NULL;
}

void *swit__icpt_ws(const swit__worker *w, int k)
{
  return k >= 0 && (uint32_t)k < w->host->icpt.n ? w->icpt_ws[k] : NULL;
}

/* ------------------------------------------------------------------ */
/* The message path */

void swit__icpt_batch_before(swit__worker *w, size_t n)
{
  const swit__icpt_chain *c = &w->host->icpt;

  for (uint32_t k = 0; k < c->n; k++) {
    const swit__icpt *e = &c->v[k];
    if (e->ops->batch_before) e->ops->batch_before(w->icpt_ws[k], w, n);
  }
  if (!c->any_msg) return;
  for (uint32_t k = 0; k < c->n; k++) {
    const swit__icpt *e = &c->v[k];
    if (e->ops->msgs_before) e->ops->msgs_before(w->icpt_ws[k], w, n);
  }
}

void swit__icpt_batch_after(swit__worker *w, size_t n, uint64_t now_us)
{
  const swit__icpt_chain *c = &w->host->icpt;

  if (c->any_msg)
    for (uint32_t k = c->n; k-- > 0;) {
      const swit__icpt *e = &c->v[k];
      if (e->ops->msgs_after) e->ops->msgs_after(w->icpt_ws[k], w, n);
    }
  for (uint32_t k = c->n; k-- > 0;) {
    const swit__icpt *e = &c->v[k];
    if (e->ops->batch_after) e->ops->batch_after(w->icpt_ws[k], w, n, now_us);
  }
}

void swit__icpt_mark(swit__worker *w, uint32_t i, int end)
{
  const swit__icpt_chain *c = &w->host->icpt;

  if (i >= w->ffi.n) return;
  for (uint32_t k = 0; k < c->n; k++) {
    const swit__icpt *e = &c->v[k];
    if (e->ops->mark) e->ops->mark(w->icpt_ws[k], w, i, end);
  }
}

void swit__icpt_settled(swit__worker *w, const swit__item *it, int outcome)
{
  const swit__icpt_chain *c = &w->host->icpt;

  if (!c->any_settled || (outcome == SWIT__OUT_ACK && !c->settled_acks))
    return;
  for (uint32_t k = 0; k < c->n; k++) {
    const swit__icpt *e = &c->v[k];
    if (!e->ops->settled || (outcome == SWIT__OUT_ACK &&
                             !(e->ops->flags & SWIT__ICPT_F_SETTLED_ACKS)))
      continue;
    e->ops->settled(w->icpt_ws[k], w, it, outcome);
  }
}

int swit__icpt_intake(swit_host_t *h, swit__sub *sub, const swit_delivery *d,
                      size_t n)
{
  const swit__icpt_chain *c = &h->icpt;

  for (uint32_t k = 0; k < c->n; k++)
    if (c->v[k].ops->intake && c->v[k].ops->intake(c->v[k].hs, sub, d, n))
      return 1;
  return 0;
}

void swit__icpt_released(swit_host_t *h, swit__sub *sub, size_t n)
{
  const swit__icpt_chain *c = &h->icpt;

  for (uint32_t k = c->n; k-- > 0;)
    if (c->v[k].ops->released) c->v[k].ops->released(c->v[k].hs, sub, n);
}

/* ------------------------------------------------------------------ */
/* Carry */

void swit__icpt_carry_save(swit__worker *w, uint32_t i, unsigned char *carry)
{
  const swit__icpt_chain *c = &w->host->icpt;

  memset(carry, 0, SWIT__CARRY_MAX);
  if (!c->any_carry) return;
  for (uint32_t k = 0; k < c->n; k++) {
    const swit__icpt *e = &c->v[k];
    if (e->ops->carry_save)
      e->ops->carry_save(w->icpt_ws[k], w, i, carry + e->carry_off);
  }
}

const unsigned char *swit__icpt_carry(const swit__worker *w, uint32_t i, int k)
{
  if (!w->carried || !w->carried[i]) return NULL;
  return w->carry + (size_t)i * SWIT__CARRY_MAX + w->host->icpt.v[k].carry_off;
}

void swit__icpt_carry_load(swit__worker *w, uint32_t i,
                           const unsigned char *carry)
{
  if (!w->carried) return;
  w->carried[i] = carry != NULL;
  if (carry) memcpy(w->carry + (size_t)i * SWIT__CARRY_MAX, carry,
                    SWIT__CARRY_MAX);
}

void swit__icpt_carry_move(swit__worker *w, uint32_t from, uint32_t to)
{
  if (!w->carried || from == to) return;
  w->carried[to] = w->carried[from];
  if (w->carried[from])
    memcpy(w->carry + (size_t)to * SWIT__CARRY_MAX,
           w->carry + (size_t)from * SWIT__CARRY_MAX, SWIT__CARRY_MAX);
}

/* ------------------------------------------------------------------ */
/* Publishing */

const swit_msg_view *swit__icpt_publish_before(swit_host_t *h,
                                               const swit_msg_view *m,
                                               size_t n,
                                               const swit__pub_info *pi,
                                               int *rc, char *err,
                                               size_t errlen)
{
  const swit__icpt_chain *c = &h->icpt;

  for (uint32_t k = 0; k < c->n && m; k++) {
    const swit__icpt *e = &c->v[k];
    swit__pub_info p = *pi;
    if (!e->ops->publish_before) continue;
    if (p.carry) p.carry += e->carry_off;       /* its own part */
    m = e->ops->publish_before(e->hs, m, n, &p, rc, err, errlen);
  }
  return m;
}

void swit__icpt_publish_after(swit_host_t *h, const swit_msg_view *m, size_t n,
                              int rc, uint64_t us)
{
  const swit__icpt_chain *c = &h->icpt;

  for (uint32_t k = c->n; k-- > 0;) {
    const swit__icpt *e = &c->v[k];
    if (e->ops->publish_after) e->ops->publish_after(e->hs, m, n, rc, us);
  }
}
