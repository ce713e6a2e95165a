/*
 * resil.h - the resilience layer (host/resil/): circuit breakers, as
 * interceptors on the interception layer (core/intercept.h). Not API.
 *
 * The layer sits between obs and the runtime: it includes and calls the
 * core, config and base, never above; api/host.c registers it, api/admin.c
 * adds its part of /metrics and /admin/status, bindings/ exports the named
 * breakers to Lua (swit.breaker).
 *
 *   breaker.c  the state machine of one breaker (closed, open, half-open),
 *              the named breakers handlers use for their own dependencies
 *   circuit.c  one breaker per subscription that configures one: pauses it
 *              at the broker while open, gives back what was already queued,
 *              half-opens on its own timer thread
 *   pubcirc.c  one breaker per publish target (topic): while open, its
 *              publishes fail at once without reaching the broker
 *   dedup.c    deduplication by message id within a window (count and
 *              time), in memory: a duplicate is acked, never handled
 *   limit.c    intake limits: a token-bucket rate and a concurrency cap
 *              (bulkhead) per subscription: what is over a limit is held
 *              (not routed to a worker) and the subscription paused at
 *              the broker, never a worker made to wait
 *   timer.c    the timer thread circuit.c and limit.c each run
 *   classify.c error classification: rules map a handler's failure to
 *              retryable, non_retryable (dead-lettered at once) or
 *              critical (fatal: dead-lettered, alerted, opens the circuit)
 *
 * Nothing is registered and no thread runs unless some subscriber config
 * enables a breaker or a handler names one: a host without breakers pays
 * nothing on its message path.
 */
#ifndef SWIT_RESIL_H
#define SWIT_RESIL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "base/buf.h"
#include "config/config.h"
#include "core/host_int.h"

struct swit_host_s;

enum { SWIT__CB_CLOSED = 0, SWIT__CB_OPEN = 1, SWIT__CB_HALF_OPEN = 2 };
/* an outcome recorded with a breaker */
enum { SWIT__CB_OK = 0, SWIT__CB_FAIL = 1, SWIT__CB_CRITICAL = 2 };

#define SWIT__CB_SLICES 10    /* the failure-rate window, in slices */
#define SWIT__NAMED_MAX 256   /* named breakers per host */

typedef struct swit__breaker swit__breaker;

/* Called under the breaker's lock after any change of state or of the
 * half-open trial (the subscription's circuit pauses or resumes there);
 * `from` is the state before (equal to the state when only the trial
 * changed). */
typedef void (*swit__breaker_sync)(swit__breaker *b, int from, void *ud);

struct swit__breaker {
  _Atomic int state;          /* SWIT__CB_*: read without the lock */
  pthread_mutex_t lock;       /* everything below */
  swit_cfg_breaker cfg;
  uint32_t consecutive;       /* closed: failures in a row */
  uint32_t trial_left;        /* half-open: trial calls still allowed */
  uint32_t trial_ok;          /* half-open: trial successes so far */
  int64_t open_until_ms;      /* open: when it half-opens (monotonic) */
  int64_t trial_at_ms;        /* half-open: when the trial began */
  struct { int64_t start_ms; uint32_t calls, fails; } win[SWIT__CB_SLICES];
  swit__breaker_sync sync;
  void *sync_ud;
  atomic_uint_fast64_t opened, half_opened, closed; /* transitions (metrics) */
  atomic_uint_fast64_t refused;                     /* calls not allowed */
};

/* The name of a state: "closed", "open", "half_open". */
const char *swit__breaker_state_name(int state);

/* Check a breaker config: 0, or SWIT_E_CONFIG with err ("...: never
 * opens" when both thresholds are 0). */
int swit__breaker_check(const swit_cfg_breaker *cfg, char *err, size_t errlen);
void swit__breaker_init(swit__breaker *b, const swit_cfg_breaker *cfg,
                        swit__breaker_sync sync, void *ud);
void swit__breaker_destroy(swit__breaker *b);

/* May a call go ahead? Closed: yes (one atomic load). Open: no, unless
 * recovery_timeout has passed: then it half-opens. Half-open: yes for
 * the first success_threshold calls (the trial), then no until their
 * outcomes are in (or recovery_timeout passes without them: then the
 * missing calls again). Returns 1 or 0. */
int swit__breaker_allow(swit__breaker *b, int64_t now_ms);
/* A trial call that was allowed but produced no outcome gives its slot
 * back. */
void swit__breaker_release(swit__breaker *b);
/* Record n outcomes (SWIT__CB_*) in order, under one lock. */
void swit__breaker_record(swit__breaker *b, int64_t now_ms,
                          const uint8_t *outcomes, size_t n);
/* Open now, whatever the state (a critical error; swit.fatal). */
void swit__breaker_trip(swit__breaker *b, int64_t now_ms);
/* Half-open if open and due. Returns the time it is due (monotonic ms)
 * when still open, else -1. */
int64_t swit__breaker_tick(swit__breaker *b, int64_t now_ms);

/* ---------------------------------------------------------------------
 * The timer loop (timer.c): a thread that calls scan(ud, now_us) and
 * sleeps until the time it returns (monotonic us; -1: until kicked). */

typedef int64_t (*swit__rtimer_scan)(void *ud, int64_t now_us);

typedef struct swit__rtimer {
  pthread_mutex_t mu;         /* the wait */
  pthread_cond_t cv;
  atomic_uint kicks;          /* something changed: scan again */
  int stop;                   /* under mu */
  int started;
  pthread_t thread;
  swit__rtimer_scan scan;
  void *ud;
} swit__rtimer;

void swit__rtimer_init(swit__rtimer *t);
/* Start the thread; 0 or -1. */
int swit__rtimer_start(swit__rtimer *t, swit__rtimer_scan scan, void *ud);
void swit__rtimer_kick(swit__rtimer *t);
/* Stop and join the thread if started, then free t's lock. */
void swit__rtimer_destroy(swit__rtimer *t);

/* ---------------------------------------------------------------------
 * The token bucket of a rate limit (limit.c): `burst` tokens, refilled
 * at `rate` per second; one token per message admitted. */

typedef struct swit__bucket {
  double rate, burst;         /* > 0, >= 1 */
  double tokens;              /* 0..burst */
  int64_t last_us;            /* tokens were counted at this time */
} swit__bucket;

/* A full bucket. SWIT_E_INVAL unless rate is in SWIT_CFG_RATE_MIN..1e6
 * and burst in 1..1e6 (NaN and infinities refused). */
int swit__bucket_init(swit__bucket *b, double rate, double burst,
                      int64_t now_us);
/* Take up to `want` whole tokens at now_us; returns how many. A clock
 * that goes back refills nothing. */
size_t swit__bucket_take(swit__bucket *b, int64_t now_us, size_t want);
/* When the bucket holds one whole token again: now_us if it does, at
 * most 1 / SWIT_CFG_RATE_MIN s later. */
int64_t swit__bucket_due(const swit__bucket *b, int64_t now_us);

/* How many of n delivered messages may be routed now: at most `tokens`
 * (SIZE_MAX: no rate limit) and at most cap - admitted (cap 0: none). */
size_t swit__limit_room(size_t n, size_t tokens, int64_t cap,
                        int64_t admitted);

/* ---------------------------------------------------------------------
 * The host's resilience state (h->resil). */

typedef struct swit__circuit swit__circuit;
typedef struct swit__classify swit__classify;
struct swit__dedup;
struct swit__pubcirc;

enum { SWIT__ERR_RETRYABLE = 0, SWIT__ERR_NON_RETRYABLE = 1,
       SWIT__ERR_CRITICAL = 2 };
typedef struct swit__named_breaker swit__named_breaker;

typedef struct swit__resil {
  struct swit_host_s *host;
  int circuit_k;              /* the circuit interceptor's index, or -1 */
  /* circuits by subscription id (1-based); NULL: not looked at yet */
  swit__circuit *_Atomic circ[SWIT__MAX_SUBS + 1];
  pthread_mutex_t mu;         /* creation, named breakers */
  swit__rtimer timer;         /* half-opens circuits; kicked when one opens */
  /* swit.breaker(name), by id; set once under mu, read without it */
  swit__named_breaker *_Atomic named[SWIT__NAMED_MAX];
  atomic_uint nnamed;
  atomic_uint maxsub;         /* highest subscription id with a circuit */
  swit__classify *classify;   /* the error rules, or NULL */
  struct swit__dedup *dedup;  /* dedup windows, or NULL */
  struct swit__pubcirc *pubcirc; /* publish targets' breakers, or NULL */
  struct swit__limits *limits; /* intake limits, or NULL */
} swit__resil;

/* The host's resilience state, with no breaker yet (api/host.c). */
int swit__resil_new(struct swit_host_s *h);
/* Register the circuit interceptor when any subscriber config enables a
 * breaker (api/host.c, before the workers). 0 or SWIT_E_*, err set. */
int swit__circuit_register(struct swit_host_s *h, char *err, size_t errlen);
/* Register the error classifier when any subscriber config enables it
 * (classify.c). 0 or SWIT_E_CONFIG (a bad rule, err with its key). */
int swit__classify_register(struct swit_host_s *h, char *err, size_t errlen);
void swit__classify_free(swit__resil *r);
/* Its counters for GET /metrics. */
int swit__classify_render(struct swit_host_s *h, swit__buf *out);

/* Publish targets' breakers (pubcirc.c): register when
 * messaging.publishers.default.circuit_breaker is enabled; 0 or
 * SWIT_E_CONFIG. State of a topic's breaker (SWIT__CB_*), -1 for none. */
int swit__pubcirc_register(struct swit_host_s *h, char *err, size_t errlen);
void swit__pubcirc_free(swit__resil *r);
int swit__pubcirc_state(struct swit_host_s *h, const char *topic);
int swit__pubcirc_render(struct swit_host_s *h, swit__buf *out);
/* ,"publish_circuits":[{"topic":..,"state":..,"opened":..,"refused":..}] */
void swit__pubcirc_status_json(struct swit_host_s *h, swit__buf *b);

/* Deduplication (dedup.c). A set of id hashes: a ring in arrival order
 * and an index; the oldest go first past `cap`, and any older than
 * window_ms. Thread-safe (a mutex each). */
typedef struct swit__dedup_set {
  pthread_mutex_t lock;
  struct { uint64_t hash; int64_t at_ms; } *ring;
  uint32_t cap, head, n;      /* n entries from head, oldest first */
  uint32_t *index;            /* ring slot + 1, 0 empty; mask + 1 long */
  uint32_t mask;
  int64_t window_ms;
} swit__dedup_set;

uint64_t swit__dedup_hash(const char *s, size_t len);
int swit__dedup_set_init(swit__dedup_set *d, uint32_t cap, int64_t window_ms);
void swit__dedup_set_free(swit__dedup_set *d);
/* 1 when h is in the set (and not older than the window). */
int swit__dedup_seen(swit__dedup_set *d, uint64_t h, int64_t now_ms);
void swit__dedup_add(swit__dedup_set *d, uint64_t h, int64_t now_ms);
/* Register when any subscriber config enables dedup; 0 or SWIT_E_*. */
int swit__dedup_register(struct swit_host_s *h, char *err, size_t errlen);
/* Open the SQLite files of dedup.store: sqlite (api/host.c, at start);
 * 0 or SWIT_E_CONFIG with err naming the key. */
int swit__dedup_start(struct swit_host_s *h, char *err, size_t errlen);
void swit__dedup_free(swit__resil *r);
int swit__dedup_render(struct swit_host_s *h, swit__buf *out);

/* Intake limits (limit.c): rate_limit and concurrency per subscription.
 * Register when any subscriber config sets one; 0 or SWIT_E_*. */
int swit__limit_register(struct swit_host_s *h, char *err, size_t errlen);
/* Messages of `sub` taken from the broker and held by its limits (not
 * routed to a worker yet); 0 without limits. */
size_t swit__limit_held(struct swit_host_s *h, const swit__sub *sub);
void swit__limit_free(swit__resil *r);
int swit__limit_render(struct swit_host_s *h, swit__buf *out);

/* Stop the timer thread and free everything (api/host.c). */
void swit__resil_free(struct swit_host_s *h);

/* The named breakers (swit.breaker): the same name gives the same
 * breaker; with other options SWIT_E_EXISTS. Returns the breaker's id
 * (>= 0) or SWIT_E_INVAL / SWIT_E_EXISTS / SWIT_E_FULL / SWIT_E_NOMEM. */
int swit__breaker_named(struct swit_host_s *h, const char *name, size_t len,
                        const swit_cfg_breaker *cfg);
swit__breaker *swit__named_breaker_get(struct swit_host_s *h, int32_t id);
const char *swit__named_breaker_name(const swit__breaker *b);
void swit__named_breakers_free(swit__resil *r);

/* {topic="...",group="..." of a subscription's metric line (the caller
 * closes the brace). */
void swit__resil_labels(swit__buf *b, const swit__sub *s);
/* Their parts of GET /metrics and GET /admin/status (api/admin.c). */
int swit__resil_metrics_render(struct swit_host_s *h, swit__buf *out);
/* ,"circuits":[...],"breakers":[...] (appended inside the status object) */
int swit__resil_status_json(struct swit_host_s *h, swit__buf *out);

#endif /* SWIT_RESIL_H */
