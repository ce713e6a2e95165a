/*
 * dedup.c - deduplication (idempotent consumer) by message id, in memory
 * (resil.h), as an interceptor: messages.subscribers.<name>.dedup.
 *
 * The id is the value of the configured header. A subscription keeps the
 * ids of the messages it finished (acked, or dead-lettered) for `window`
 * and at most `window_size` of them, the oldest going first. A fresh
 * delivery (attempt 1) whose id is kept is refused before its handler
 * with result ack: the core acks it, the handler never sees it, and it
 * is counted (swit_dedup_duplicates_total). Retries of a message are
 * never duplicates of it; a message given back or retried is not
 * finished, so its redelivery is handled. Two copies delivered while
 * neither is finished are both handled: the window holds finished ids.
 * Messages without the header are handled and counted (..._no_id_total).
 *
 * An id is kept as a 64-bit hash (FNV-1a); two different ids with the
 * same hash, about one chance in 2^64 / window_size, would count as one.
 *
 * The set: a ring of (hash, time) in arrival order and an open-addressing
 * index (linear probing, backward-shift deletion) of ring slots, twice
 * the ring's size rounded up to a power of two; one mutex per
 * subscription, held for a lookup or an insert (O(1) expected).
 *
 * dedup.store sqlite keeps the finished ids in a SQLite file too
 * (dedup.path; opened at start by swit__dedup_start, so `swit check`
 * creates nothing): a subscription's set is filled from it (the newest
 * window_size within the window) when its first message comes, and
 * every id added to the set is written to it in batch_after, before the
 * core acks the message: an id whose message was acked is in the file,
 * so a redelivery after a crash or restart is a duplicate. WAL journal,
 * synchronous=NORMAL: a write survives the process, not a power cut.
 * Rows older than the window are pruned every PRUNE_EVERY writes. Several
 * processes may share one file (busy_timeout). A failing write is
 * counted and logged once; the set still works in memory.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/msg_int.h"
#include "obs/obs.h"
#include "resil/resil.h"

uint64_t swit__dedup_hash(const char *s, size_t len)
{
  uint64_t h = 1469598103934665603ULL;   /* FNV-1a 64 */
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)s[i];
    h *= 1099511628211ULL;
  }
  return h;
}

int swit__dedup_set_init(swit__dedup_set *d, uint32_t cap, int64_t window_ms)
{
  uint32_t isz = 4;

  memset(d, 0, sizeof *d);
  if (cap == 0 || cap > (1u << 24)) return SWIT_E_INVAL;
  while (isz < 2 * cap) isz <<= 1;
  d->ring = calloc(cap, sizeof *d->ring);
  d->index = calloc(isz, sizeof *d->index);
  if (!d->ring || !d->index) {
    free(d->ring);
    free(d->index);
    return SWIT_E_NOMEM;
  }
  d->cap = cap;
  d->mask = isz - 1;
  d->window_ms = window_ms;
  pthread_mutex_init(&d->lock, NULL);
  return 0;
}

void swit__dedup_set_free(swit__dedup_set *d)
{
  if (!d->ring) return;
  pthread_mutex_destroy(&d->lock);
  free(d->ring);
  free(d->index);
  d->ring = NULL;
  d->index = NULL;
}

/* The index position holding `h`, or -1. */
static int64_t find(const swit__dedup_set *d, uint64_t h)
{
  for (uint32_t i = (uint32_t)h & d->mask; d->index[i]; i = (i + 1) & d->mask)
    if (d->ring[d->index[i] - 1].hash == h) return i;
  return -1;
}

/* Empty index position i, shifting later entries of its run back. */
static void unindex(swit__dedup_set *d, uint32_t i)
{
  uint32_t j = i;

  for (;;) {
    uint32_t k;
    j = (j + 1) & d->mask;
    if (!d->index[j]) break;
    k = (uint32_t)d->ring[d->index[j] - 1].hash & d->mask;  /* its home */
    /* move j back to i unless its home lies cyclically in (i, j] */
    if (i <= j ? (k <= i || k > j) : (k <= i && k > j)) {
      d->index[i] = d->index[j];
      i = j;
    }
  }
  d->index[i] = 0;
}

static void evict_oldest(swit__dedup_set *d)
{
  int64_t pos = find(d, d->ring[d->head].hash);
  if (pos >= 0) unindex(d, (uint32_t)pos);
  d->head = (d->head + 1) % d->cap;
  d->n--;
}

static void expire(swit__dedup_set *d, int64_t now_ms)
{
  while (d->n && d->ring[d->head].at_ms <= now_ms - d->window_ms)
    evict_oldest(d);
}

int swit__dedup_seen(swit__dedup_set *d, uint64_t h, int64_t now_ms)
{
  int seen;

  pthread_mutex_lock(&d->lock);
  expire(d, now_ms);
  seen = find(d, h) >= 0;
  pthread_mutex_unlock(&d->lock);
  return seen;
}

void swit__dedup_add(swit__dedup_set *d, uint64_t h, int64_t now_ms)
{
  uint32_t slot, i;

  pthread_mutex_lock(&d->lock);
  expire(d, now_ms);
  if (find(d, h) < 0) {
    if (d->n == d->cap) evict_oldest(d);
    slot = (d->head + d->n) % d->cap;
    d->ring[slot].hash = h;
    d->ring[slot].at_ms = now_ms;
    for (i = (uint32_t)h & d->mask; d->index[i]; i = (i + 1) & d->mask) {}
    d->index[i] = slot + 1;
    d->n++;
  }
  pthread_mutex_unlock(&d->lock);
}

/* ------------------------------------------------------------------ */
/* The durable store (dedup.store: sqlite) */

#define PRUNE_EVERY 1024

/* One SQLite file, shared by the subscriptions whose config names it. */
typedef struct dd_store {
  struct dd_store *next;
  const char *path;           /* the config's (resolved) */
  sqlite3 *db;
  sqlite3_stmt *put, *load, *prune;
  pthread_mutex_t mu;         /* the connection and its statements */
  uint32_t puts;              /* since the last prune */
  atomic_uint_fast64_t errors;
  atomic_int warned;
} dd_store;

static const char store_schema[] =
  "PRAGMA journal_mode=WAL;"
  "PRAGMA synchronous=NORMAL;"
  "CREATE TABLE IF NOT EXISTS swit_dedup ("
  "  topic TEXT NOT NULL, grp TEXT NOT NULL, id INTEGER NOT NULL,"
  "  at_ms INTEGER NOT NULL, PRIMARY KEY (topic, grp, id)) WITHOUT ROWID;"
  "CREATE INDEX IF NOT EXISTS swit_dedup_at ON swit_dedup (topic, grp, at_ms);";

static void store_close(dd_store *st)
{
  sqlite3_finalize(st->put);
  sqlite3_finalize(st->load);
  sqlite3_finalize(st->prune);
  sqlite3_close(st->db);
  pthread_mutex_destroy(&st->mu);
  free(st);
}

/* Open (create) the file; NULL with err naming the key and SQLite's
 * reason. */
static dd_store *store_open(const char *path, const char *name, char *err,
                            size_t errlen)
{
  dd_store *st = calloc(1, sizeof *st);
  int rc;

  if (!st) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  pthread_mutex_init(&st->mu, NULL);
  st->path = path;
  rc = sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE |
                       SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_busy_timeout(st->db, 5000);
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(st->db, store_schema, NULL, NULL, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v2(st->db, "INSERT OR REPLACE INTO swit_dedup "
                            "VALUES (?1, ?2, ?3, ?4)", -1, &st->put, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v2(st->db, "SELECT id, at_ms FROM swit_dedup "
                            "WHERE topic = ?1 AND grp = ?2 AND at_ms > ?3 "
                            "ORDER BY at_ms DESC LIMIT ?4", -1, &st->load,
                            NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v2(st->db, "DELETE FROM swit_dedup WHERE topic = ?1 "
                            "AND grp = ?2 AND at_ms <= ?3", -1, &st->prune,
                            NULL);
  if (rc != SQLITE_OK) {
    snprintf(err, errlen, "messaging.subscribers.%s.dedup.path: cannot use "
             "'%s' as a SQLite dedup store: %s", name, path,
             st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
    store_close(st);
    return NULL;
  }
  return st;
}

static void store_failed(swit_host_t *h, dd_store *st, const char *what)
{
  atomic_fetch_add(&st->errors, 1);
  if (!atomic_exchange(&st->warned, 1))
    swit__log(&h->log, SWIT_LOG_ERROR, "dedup store '%s': %s: %s (ids are "
              "kept in memory only while it fails; counted in "
              "swit_dedup_store_errors_total)", st->path, what,
              sqlite3_errmsg(st->db));
}

/* ------------------------------------------------------------------ */
/* The interceptor */

typedef struct dd_sub {
  swit__dedup_set set;
  const char *header;         /* the config's */
  size_t header_len;
  dd_store *store;            /* store sqlite: its file; else NULL */
  const char *topic, *group;  /* the subscription's, for the store */
  atomic_uint_fast64_t dups, no_id;
} dd_sub;

struct swit__dedup {
  swit__resil *r;
  pthread_mutex_t mu;         /* creation */
  dd_store *stores;           /* opened by swit__dedup_start */
  dd_sub *_Atomic by_sub[SWIT__MAX_SUBS + 1];
};

static dd_store *store_find(struct swit__dedup *d, const char *path)
{
  for (dd_store *st = d->stores; st; st = st->next)
    if (!strcmp(st->path, path)) return st;
  return NULL;
}

/* Fill s's set from its store: the newest ids within the window, at
 * most its capacity, oldest first (the ring's order). */
static void store_load(swit_host_t *h, dd_sub *s, int64_t now_ms)
{
  dd_store *st = s->store;
  size_t n = 0;
  struct { uint64_t id; int64_t at; } *rows =
      malloc(s->set.cap * sizeof *rows);
  int rc;

  if (!rows) return;
  pthread_mutex_lock(&st->mu);
  sqlite3_bind_text(st->load, 1, s->topic, -1, SQLITE_STATIC);
  sqlite3_bind_text(st->load, 2, s->group, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st->load, 3, now_ms - s->set.window_ms);
  sqlite3_bind_int64(st->load, 4, s->set.cap);
  while ((rc = sqlite3_step(st->load)) == SQLITE_ROW && n < s->set.cap) {
    rows[n].id = (uint64_t)sqlite3_column_int64(st->load, 0);
    rows[n].at = sqlite3_column_int64(st->load, 1);
    n++;
  }
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) store_failed(h, st, "reading");
  sqlite3_reset(st->load);
  pthread_mutex_unlock(&st->mu);
  while (n--) swit__dedup_add(&s->set, rows[n].id, rows[n].at);
  free(rows);
}

/* Keep id h of s in its store (and prune now and then). */
static void store_put(swit_host_t *h, dd_sub *s, uint64_t id, int64_t now_ms)
{
  dd_store *st = s->store;

  pthread_mutex_lock(&st->mu);
  sqlite3_bind_text(st->put, 1, s->topic, -1, SQLITE_STATIC);
  sqlite3_bind_text(st->put, 2, s->group, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st->put, 3, (sqlite3_int64)id);
  sqlite3_bind_int64(st->put, 4, now_ms);
  if (sqlite3_step(st->put) != SQLITE_DONE) store_failed(h, st, "writing");
  sqlite3_reset(st->put);
  if (++st->puts >= PRUNE_EVERY) {
    st->puts = 0;
    sqlite3_bind_text(st->prune, 1, s->topic, -1, SQLITE_STATIC);
    sqlite3_bind_text(st->prune, 2, s->group, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st->prune, 3, now_ms - s->set.window_ms);
    if (sqlite3_step(st->prune) != SQLITE_DONE)
      store_failed(h, st, "pruning");
    sqlite3_reset(st->prune);
  }
  pthread_mutex_unlock(&st->mu);
}

static dd_sub no_dedup;
#define NONE (&no_dedup)

typedef struct dd_ws {
  struct swit__dedup *d;
  uint64_t *hash;             /* [batch]: message i's id hash */
  uint8_t *has;               /* [batch]: it has one, not refused */
} dd_ws;

static dd_sub *dd_slow(struct swit__dedup *d, swit__sub *sub)
{
  dd_sub *s;

  pthread_mutex_lock(&d->mu);
  s = atomic_load(&d->by_sub[sub->id]);
  if (!s) {
    const swit_cfg_subscriber *c = sub->scfg;
    s = NONE;
    if (c && c->dedup.enabled) {
      dd_sub *n = calloc(1, sizeof *n);
      if (n && swit__dedup_set_init(&n->set, (uint32_t)c->dedup.window_size,
                                    c->dedup.window_ms) == 0) {
        n->header = c->dedup.header;
        n->header_len = strlen(c->dedup.header);
        n->topic = sub->topic;
        n->group = sub->group;
        if (c->dedup.store == SWIT_DEDUP_SQLITE &&
            (n->store = store_find(d, c->dedup.path)))
          store_load(d->r->host, n, swit__now_ms());
        s = n;
      } else {
        free(n);
        swit__log(&d->r->host->log, SWIT_LOG_ERROR, "out of memory for the "
                  "dedup window of '%s'; it runs without one", sub->topic);
      }
    }
    atomic_store_explicit(&d->by_sub[sub->id], s, memory_order_release);
  }
  pthread_mutex_unlock(&d->mu);
  return s;
}

static inline dd_sub *dd_of(struct swit__dedup *d, swit__sub *sub)
{
  dd_sub *s = atomic_load_explicit(&d->by_sub[sub->id], memory_order_acquire);
  return s ? s : dd_slow(d, sub);
}

static int d_worker_init(void *hs, swit__worker *w, void **ws)
{
  dd_ws *s = calloc(1, sizeof *s);
  if (!s) return -1;
  s->d = hs;
  s->hash = calloc(w->host->batch_size, sizeof *s->hash);
  s->has = calloc(w->host->batch_size, 1);
  *ws = s;
  return s->hash && s->has ? 0 : -1;
}

static void d_worker_free(void *hs, swit__worker *w, void *ws)
{
  dd_ws *s = ws;
  (void)hs;
  (void)w;
  if (!s) return;
  free(s->hash);
  free(s->has);
  free(s);
}

static void d_batch_before(void *ws, swit__worker *w, size_t n)
{
  (void)w;
  memset(((dd_ws *)ws)->has, 0, n);
}

static int d_msg_before(void *ws, swit__worker *w, uint32_t i)
{
  dd_ws *s = ws;
  const swit__item *it = &w->items[i];
  dd_sub *ds = dd_of(s->d, it->sub);
  swit_ffi_msg *m = &w->ffi.msgs[i];
  const swit_header *hd;
  uint64_t h;

  if (ds == NONE) return 0;
  if (!(hd = swit__msg_header_find(m, ds->header, ds->header_len))) {
    if (it->attempt == 1)
      atomic_fetch_add_explicit(&ds->no_id, 1, memory_order_relaxed);
    return 0;
  }
  h = swit__dedup_hash(hd->value, hd->value_len);
  /* a retry is checked by no one: its first attempt was */
  if (it->attempt == 1 && swit__dedup_seen(&ds->set, h, swit__now_ms())) {
    atomic_fetch_add_explicit(&ds->dups, 1, memory_order_relaxed);
    m->result = SWIT_ACK;          /* acked, never handled */
    return 1;
  }
  s->hash[i] = h;
  s->has[i] = 1;
  return 0;
}
SWIT__ICPT_MSGS_BEFORE(d_msgs_before, d_msg_before)

static void d_batch_after(void *ws, swit__worker *w, size_t n,
                          uint64_t now_us)
{
  dd_ws *s = ws;

  for (size_t i = 0; i < n; i++) {
    const swit_ffi_msg *m = &w->ffi.msgs[i];
    const swit__item *it = &w->items[i];
    dd_sub *ds;
    if (!s->has[i] || (m->flags & SWIT_MSG_F_REJECTED)) continue;
    /* finished: acked or to be dead-lettered; not a retry to come */
    if (m->result > SWIT_FATAL ||
        (m->result == SWIT_RETRY && it->attempt < it->sub->max_attempts))
      continue;
    ds = atomic_load(&s->d->by_sub[it->sub->id]);
    swit__dedup_add(&ds->set, s->hash[i], (int64_t)(now_us / 1000));
    if (ds->store)          /* before the core acks it */
      store_put(w->host, ds, s->hash[i], (int64_t)(now_us / 1000));
  }
}

static const swit__icpt_ops dedup_ops = {
  .name = "dedup",
  .worker_init = d_worker_init,
  .worker_free = d_worker_free,
  .batch_before = d_batch_before,
  .msgs_before = d_msgs_before,
  .batch_after = d_batch_after,
};

int swit__dedup_register(swit_host_t *h, char *err, size_t errlen)
{
  const swit_cfg_named *subs = &h->cfg->messaging.subscribers;
  const swit_cfg_subscriber *base = subs->elems;
  struct swit__dedup *d;
  int any = 0, rc;

  for (size_t i = 0; i < subs->n; i++) {
    const swit_cfg_dedup *c = &base[i].dedup;
    if (!c->enabled) continue;
    if (!c->header || !*c->header || strlen(c->header) > 256) {
      snprintf(err, errlen, "%s: messaging.subscribers.%s.dedup.header: "
               "expected a header name of 1..256 bytes", h->cfg->path,
               subs->names[i]);
      return SWIT_E_CONFIG;
    }
    any = 1;
  }
  if (!any) return 0;
  if (!(d = calloc(1, sizeof *d))) return SWIT_E_NOMEM;
  d->r = h->resil;
  pthread_mutex_init(&d->mu, NULL);
  if ((rc = swit__icpt_add(h, &dedup_ops, d)) < 0) {
    pthread_mutex_destroy(&d->mu);
    free(d);
    return rc;
  }
  h->resil->dedup = d;
  return 0;
}

/* Open every store a subscriber config names (swit_host_start, before
 * the workers): 0, or SWIT_E_CONFIG with the key and SQLite's reason. */
int swit__dedup_start(swit_host_t *h, char *err, size_t errlen)
{
  struct swit__dedup *d = h->resil ? h->resil->dedup : NULL;
  const swit_cfg_named *subs = &h->cfg->messaging.subscribers;
  const swit_cfg_subscriber *base = subs->elems;

  for (size_t i = 0; d && i < subs->n; i++) {
    const swit_cfg_dedup *c = &base[i].dedup;
    dd_store *st;
    if (!c->enabled || c->store != SWIT_DEDUP_SQLITE ||
        store_find(d, c->path))
      continue;
    if (!(st = store_open(c->path, subs->names[i], err, errlen)))
      return SWIT_E_CONFIG;
    st->next = d->stores;
    d->stores = st;
  }
  return 0;
}

void swit__dedup_free(swit__resil *r)
{
  struct swit__dedup *d = r->dedup;

  if (!d) return;
  while (d->stores) {
    dd_store *st = d->stores;
    d->stores = st->next;
    store_close(st);
  }
  for (size_t id = 1; id <= SWIT__MAX_SUBS; id++) {
    dd_sub *s = atomic_load(&d->by_sub[id]);
    if (!s || s == NONE) continue;
    swit__dedup_set_free(&s->set);
    free(s);
  }
  pthread_mutex_destroy(&d->mu);
  free(d);
  r->dedup = NULL;
}

int swit__dedup_render(swit_host_t *h, swit__buf *b)
{
  struct swit__dedup *d = h->resil ? h->resil->dedup : NULL;
  size_t n = h->subs ? __atomic_load_n(&h->nsubs, __ATOMIC_ACQUIRE) : 0;

  if (!d) return 0;
  if (d->stores)
    swit__buf_printf(b, "# HELP swit_dedup_store_errors_total Failed reads "
                     "and writes of a SQLite dedup store (dedup.path)\n"
                     "# TYPE swit_dedup_store_errors_total counter\n");
  for (dd_store *st = d->stores; st; st = st->next) {
    swit__buf_printf(b, "swit_dedup_store_errors_total{path=\"");
    swit__buf_prom(b, st->path, strlen(st->path), 1);
    swit__buf_printf(b, "\"} %llu\n",
                     (unsigned long long)atomic_load(&st->errors));
  }
  for (int k = 0; k < 2; k++) {
    swit__buf_printf(b, k == 0
        ? "# HELP swit_dedup_duplicates_total Deliveries acked unhandled: "
          "their id was handled within the dedup window\n"
          "# TYPE swit_dedup_duplicates_total counter\n"
        : "# HELP swit_dedup_no_id_total Deliveries handled without dedup: "
          "no id header\n# TYPE swit_dedup_no_id_total counter\n");
    for (size_t i = 0; i < n; i++) {
      const swit__sub *s = h->subs[i];
      dd_sub *ds = atomic_load(&d->by_sub[s->id]);
      if (!ds || ds == NONE) continue;
      swit__buf_printf(b, "%s{topic=\"", k == 0 ? "swit_dedup_duplicates_total"
                                                : "swit_dedup_no_id_total");
      swit__buf_prom(b, s->topic, strlen(s->topic), 1);
      swit__buf_add(b, "\",group=\"", 9);
      swit__buf_prom(b, s->group, strlen(s->group), 1);
      swit__buf_printf(b, "\"} %llu\n", (unsigned long long)atomic_load(
                           k == 0 ? &ds->dups : &ds->no_id));
    }
  }
  return b->data ? 0 : SWIT_E_NOMEM;
}
