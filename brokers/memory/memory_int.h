/*
 * memory_int.h - internals of the in-memory broker, shared by its three
 * files: memory_broker.c (the ops table), memory_topic.c (topics, their
 * message rings, groups and members) and memory_delivery.c (the delivery
 * thread).
 *
 * Locks: `topics_lock` guards the topic table and is held alone, briefly.
 * Otherwise, outermost first: `life` (connect/disconnect only), a topic's
 * `mu` (everything inside that topic: ring, slots, groups, members), the
 * broker's `mu` (only the delivery thread's sleep and wake-ups). No
 * adapter lock is held while a sink runs.
 *
 * Ownership: the broker owns its topics; a topic owns its slots, groups
 * and members. A member is the handle given to the core; it outlives
 * unsubscribe while deliveries made to it are unsettled ("lingering") and
 * is freed by whichever of unsubscribe, settle or the delivery thread
 * sees it last. A group is freed with its last member struct.
 */
#ifndef SWIT_MEMORY_INT_H
#define SWIT_MEMORY_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "memory_broker.h"

enum {
  MEM_BATCH = 256,        /* deliveries per sink call, at most */
  MEM_RING_START = 64,    /* first ring capacity of a topic (slots) */
  MEM_SLOT_KEEP = 65536   /* a freed slot keeps a buffer up to this size */
};

typedef struct swit_broker mem_broker;
typedef struct mem_topic mem_topic;
typedef struct mem_group mem_group;
typedef struct mem_member mem_member;

/* One retained message. `view` is what sinks receive; it points into
 * `buf` (header array, then key, payload and header bytes) and at the
 * topic's name. The slot and its buffer are reused once free. */
typedef struct mem_slot {
  swit_msg_view view;
  uint64_t seq;   /* the message's sequence in its topic; 0 = never used */
  uint32_t refs;  /* groups still holding it; 0 = free */
  char *buf;
  size_t cap;
} mem_slot;

struct mem_member {
  mem_group *group;
  swit_sink_fn sink;
  void *sink_ud;
  uint64_t inflight;   /* delivered to this member, not settled */
  int paused;
  int dead;            /* unsubscribed */
  int in_sink;         /* the delivery thread is inside its sink */
  int unsub_waiting;   /* unsubscribe waits for that sink call to end */
  mem_member *next, *prev; /* the group's list of every member struct */
};

struct mem_group {
  mem_topic *topic;
  char *name;
  mem_member **live;   /* subscribed members, in rotation order */
  size_t nlive, live_cap;
  size_t rr;           /* rotation: the member to serve next */
  mem_member *all;     /* live and lingering member structs */
  uint64_t inflight;   /* delivered to any member, not settled */
  uint64_t cursor;     /* next sequence never delivered to this group */
  uint64_t *requeue;   /* sequences to redeliver, ascending; capacity is
                          reserved before delivering, so settle never
                          allocates */
  size_t nrequeue, requeue_cap;
  int gone;            /* no live member: detached from the topic */
  mem_group *next, *prev; /* the topic's list of every group struct */
};

struct mem_topic {
  mem_broker *b;
  char *name;          /* NUL-terminated copy; views point here */
  uint32_t name_len;
  pthread_mutex_t mu;
  pthread_cond_t room;      /* publishers waiting for room (monotonic) */
  pthread_cond_t sink_done; /* unsubscribe waiting for a sink call */
  int waiters;              /* publishers waiting on `room` */
  mem_slot **ring;     /* slot of sequence s: ring[s & mask] */
  uint64_t mask;
  uint64_t head, tail; /* retained sequences: [head, tail) */
  uint64_t ring_max;   /* largest ring: queue_size rounded up to 2^k */
  uint64_t limit;      /* queue_size */
  mem_group **groups;  /* live groups: each gets every message */
  size_t ngroups, groups_cap;
  mem_group *all_groups;
  int orphans;         /* messages kept for the first group to come */
  uint64_t orphan_from;
  unsigned sync;       /* which of mu/room/sink_done are initialised */
};

struct swit_broker {
  swit_broker_env env;
  int64_t queue_size;
  unsigned sync;            /* which of the locks below are initialised */

  pthread_rwlock_t topics_lock;
  mem_topic **topics;  /* in creation order; never removed before destroy */
  size_t ntopics, topics_cap;
  uint32_t *index;     /* open addressing: topic position + 1, 0 = empty */
  size_t index_cap;

  pthread_mutex_t life;     /* serialises connect/disconnect */
  pthread_t thread;
  int running;
  pthread_mutex_t mu;       /* the delivery thread's sleep */
  pthread_cond_t wake;
  atomic_int sleeping;
  atomic_int work;
  atomic_int stop;
  atomic_int connected;
  atomic_uint_fast64_t confirm_seq;
  atomic_uint_fast64_t dropped; /* deliveries lost: their group left first */

  swit_delivery batch[MEM_BATCH]; /* the delivery thread's sink array */
};

#define MEM_SLOT(t, s) ((t)->ring[(s) & (t)->mask])

/* Log through the host, if it gave a logger. */
#define MEM_LOG(b, level, ...)                                         \
  do {                                                                 \
    if ((b)->env.log)                                                  \
      (b)->env.log((b)->env.log_ud, (level), __VA_ARGS__);             \
  } while (0)

/* --- memory_topic.c: topic table ----------------------------------- */

/* The topic named name[0..len), created if absent. 0 or SWIT_E_NOMEM. */
int swit__mem_topic_get(mem_broker *b, const char *name, size_t len,
                        mem_topic **out);
/* The topic at position i in creation order, or NULL past the end. */
mem_topic *swit__mem_topic_at(mem_broker *b, size_t i);
void swit__mem_topics_free(mem_broker *b);

/* --- memory_topic.c: inside one topic (caller holds t->mu) --------- */

/* Wait until the topic has room for one more message. `deadline` NULL
 * means do not wait. 0 or SWIT_E_FULL. */
int swit__mem_topic_wait_room(mem_topic *t, const swit__deadline *deadline);
/* Copy a message into the next slot (room already checked). Every live
 * group, or else the first group to subscribe, holds it. 0 or NOMEM. */
int swit__mem_topic_append(mem_topic *t, const swit_msg_view *m,
                           int64_t timestamp_ms);
/* Drop one group reference to sequence `seq`; frees the slot at 0 and
 * wakes publishers waiting for room. */
void swit__mem_topic_release(mem_topic *t, uint64_t seq);
void swit__mem_topic_room_signal(mem_topic *t);
/* The slot of `seq` if it is retained and held, else NULL. */
mem_slot *swit__mem_topic_held(mem_topic *t, uint64_t seq);

/* Add m to group `name` (created and joined to the topic if new). */
int swit__mem_group_join(mem_topic *t, const char *name, mem_member *m);
/* Take m out of rotation; if it was the group's last member, detach the
 * group and release what it had not been delivered yet. */
void swit__mem_group_leave(mem_topic *t, mem_member *m);
/* Messages waiting for the group: requeued plus never delivered. */
uint64_t swit__mem_group_pending(const mem_topic *t, const mem_group *g);
/* Put a delivered sequence back, ahead of newer ones. Never allocates:
 * take() reserved the room. SWIT_E_FULL only if a token was settled
 * twice. */
int swit__mem_group_requeue(mem_group *g, uint64_t seq);
/* Move up to `max` pending messages into `out` as deliveries to m.
 * Returns how many; fewer if requeue room could not be reserved. */
size_t swit__mem_group_take(mem_topic *t, mem_group *g, mem_member *m,
                            size_t max, swit_delivery *out);
/* Free m if nothing refers to it any more, and its group with it. */
void swit__mem_member_reap(mem_member *m);

/* --- memory_delivery.c --------------------------------------------- */

int swit__mem_delivery_start(mem_broker *b);
void swit__mem_delivery_stop(mem_broker *b);
/* Tell the delivery thread there may be work (cheap when it is busy). */
void swit__mem_delivery_wake(mem_broker *b);
/* Nonzero when called from b's delivery thread (inside a sink call). */
int swit__mem_on_delivery_thread(const mem_broker *b);

#endif /* SWIT_MEMORY_INT_H */
