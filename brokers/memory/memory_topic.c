/*
 * memory_topic.c - the in-memory broker's topics: the topic table, each
 * topic's ring of message slots, and the groups and members reading it.
 *
 * A topic is a bounded log. Messages get consecutive sequence numbers;
 * [head, tail) are retained and live in a ring of slot pointers
 * (ring[seq & mask]) that starts small and doubles up to queue_size
 * rounded to a power of two. A slot is allocated once and keeps its
 * buffer for the next message, so after warm-up publishing allocates
 * nothing. A slot's `refs` counts the groups that still hold it; when it
 * reaches 0 the slot is free, and head moves past free slots, which makes
 * room (room = queue_size minus the span from the oldest held message to
 * the newest). Each group reads the log with its own cursor plus a sorted
 * list of requeued sequences, delivered first.
 *
 * Threads: everything below the topic table runs under the topic's `mu`,
 * held by publishers, settlers, subscribe/pause/resume/unsubscribe and the
 * delivery thread (which drops it around every sink call). The table is
 * guarded by the broker's `topics_lock`; topics live until destroy.
 */
#include <stdlib.h>
#include <string.h>

#include "memory_int.h"

enum { TS_MU = 1, TS_ROOM = 2, TS_SINK_DONE = 4 };

/* The array `arr` grown to hold `need` elements (`*cap` updated), or NULL
 * with `arr` untouched when memory runs out. */
static void *reserve(void *arr, size_t *cap, size_t need, size_t elem)
{
  if (need <= *cap)
    return arr;
  size_t n = *cap ? *cap * 2 : 4;
  while (n < need)
    n *= 2;
  void *p = realloc(arr, n * elem);
  if (p)
    *cap = n;
  return p;
}

/* ---------------------------------------------------------------------
 * Groups and members: lifetime */

static void group_free(mem_group *g)
{
  if (!g)
    return;
  free(g->live);
  free(g->requeue);
  free(g->name);
  free(g);
}

static void group_unlink(mem_topic *t, mem_group *g)
{
  if (g->prev)
    g->prev->next = g->next;
  else
    t->all_groups = g->next;
  if (g->next)
    g->next->prev = g->prev;
}

void swit__mem_member_reap(mem_member *m)
{
  if (!m->dead || m->inflight || m->in_sink || m->unsub_waiting)
    return;
  mem_group *g = m->group;
  if (m->prev)
    m->prev->next = m->next;
  else
    g->all = m->next;
  if (m->next)
    m->next->prev = m->prev;
  free(m);
  if (g->all)
    return;
  /* No member struct left: the group was detached when its last live
   * member left, and nothing can reach it any more. */
  group_unlink(g->topic, g);
  group_free(g);
}

/* ---------------------------------------------------------------------
 * Topic lifetime */

static void slot_free(mem_slot *s)
{
  if (!s)
    return;
  free(s->buf);
  free(s);
}

static void topic_free(mem_topic *t)
{
  if (!t)
    return;
  for (uint64_t i = 0; t->ring && i <= t->mask; i++)
    slot_free(t->ring[i]);
  free(t->ring);
  while (t->all_groups) {
    mem_group *g = t->all_groups;
    t->all_groups = g->next;
    while (g->all) {
      mem_member *m = g->all;
      g->all = m->next;
      free(m);
    }
    group_free(g);
  }
  free(t->groups);
  free(t->name);
  if (t->sync & TS_MU)
    pthread_mutex_destroy(&t->mu);
  if (t->sync & TS_ROOM)
    pthread_cond_destroy(&t->room);
  if (t->sync & TS_SINK_DONE)
    pthread_cond_destroy(&t->sink_done);
  free(t);
}

static int topic_new(mem_broker *b, const char *name, size_t len,
                     mem_topic **out)
{
  int rc = SWIT_E_NOMEM;
  mem_topic *t = calloc(1, sizeof *t);
  if (!t || !(t->name = malloc(len + 1)))
    goto fail;
  memcpy(t->name, name, len);
  t->name[len] = '\0';
  t->name_len = (uint32_t)len;
  t->b = b;
  t->limit = (uint64_t)b->queue_size;
  t->ring_max = 1;
  while (t->ring_max < t->limit)
    t->ring_max *= 2;
  uint64_t cap = t->ring_max < MEM_RING_START ? t->ring_max : MEM_RING_START;
  if (!(t->ring = calloc(cap, sizeof *t->ring)))
    goto fail;
  t->mask = cap - 1;
  t->head = t->tail = 1; /* sequence 0 means "never used" */
  rc = SWIT_E_SYS;
  if (pthread_mutex_init(&t->mu, NULL))
    goto fail;
  t->sync |= TS_MU;
  if (swit__cond_init_monotonic(&t->room))
    goto fail;
  t->sync |= TS_ROOM;
  if (pthread_cond_init(&t->sink_done, NULL))
    goto fail;
  t->sync |= TS_SINK_DONE;
  *out = t;
  return 0;
fail:
  topic_free(t);
  return rc;
}

/* ---------------------------------------------------------------------
 * The topic table: an array in creation order plus an open-addressing
 * index over it (FNV-1a of the name). */

static size_t name_hash(const char *s, size_t len)
{
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; i++)
    h = (h ^ (unsigned char)s[i]) * 16777619u;
  return h;
}

static mem_topic *table_find(const mem_broker *b, const char *name,
                             size_t len)
{
  if (!b->index_cap)
    return NULL;
  size_t mask = b->index_cap - 1;
  for (size_t i = name_hash(name, len) & mask;; i = (i + 1) & mask) {
    uint32_t pos = b->index[i];
    if (!pos)
      return NULL;
    mem_topic *t = b->topics[pos - 1];
    if (t->name_len == len && memcmp(t->name, name, len) == 0)
      return t;
  }
}

static void index_put(uint32_t *index, size_t cap, const mem_topic *t,
                      uint32_t pos)
{
  size_t i = name_hash(t->name, t->name_len) & (cap - 1);
  while (index[i])
    i = (i + 1) & (cap - 1);
  index[i] = pos;
}

static int table_insert(mem_broker *b, mem_topic *t)
{
  if (b->ntopics >= UINT32_MAX / 2)
    return SWIT_E_NOMEM;
  mem_topic **topics = reserve(b->topics, &b->topics_cap, b->ntopics + 1,
                               sizeof *topics);
  if (!topics)
    return SWIT_E_NOMEM;
  b->topics = topics;
  if ((b->ntopics + 1) * 2 > b->index_cap) {
    size_t cap = b->index_cap ? b->index_cap * 2 : 16;
    uint32_t *index = calloc(cap, sizeof *index);
    if (!index)
      return SWIT_E_NOMEM;
    for (size_t k = 0; k < b->ntopics; k++)
      index_put(index, cap, b->topics[k], (uint32_t)(k + 1));
    free(b->index);
    b->index = index;
    b->index_cap = cap;
  }
  b->topics[b->ntopics++] = t;
  index_put(b->index, b->index_cap, t, (uint32_t)b->ntopics);
  return 0;
}

int swit__mem_topic_get(mem_broker *b, const char *name, size_t len,
                        mem_topic **out)
{
  pthread_rwlock_rdlock(&b->topics_lock);
  mem_topic *t = table_find(b, name, len);
  pthread_rwlock_unlock(&b->topics_lock);
  if (t) {
    *out = t;
    return 0;
  }
  mem_topic *fresh = NULL; /* built outside the write lock */
  int rc = topic_new(b, name, len, &fresh);
  if (rc)
    return rc;
  pthread_rwlock_wrlock(&b->topics_lock);
  t = table_find(b, name, len); /* another thread may have won */
  if (!t && (rc = table_insert(b, fresh)) == 0) {
    t = fresh;
    fresh = NULL; /* owned by the table now */
  }
  pthread_rwlock_unlock(&b->topics_lock);
  topic_free(fresh);
  *out = t;
  return rc;
}

mem_topic *swit__mem_topic_at(mem_broker *b, size_t i)
{
  pthread_rwlock_rdlock(&b->topics_lock);
  mem_topic *t = i < b->ntopics ? b->topics[i] : NULL;
  pthread_rwlock_unlock(&b->topics_lock);
  return t;
}

void swit__mem_topics_free(mem_broker *b)
{
  for (size_t i = 0; i < b->ntopics; i++)
    topic_free(b->topics[i]);
  free(b->topics);
  free(b->index);
  b->topics = NULL;
  b->index = NULL;
  b->ntopics = b->topics_cap = b->index_cap = 0;
}

/* ---------------------------------------------------------------------
 * The ring: room, append, release */

int swit__mem_topic_wait_room(mem_topic *t, const swit__deadline *deadline)
{
  while (t->tail - t->head >= t->limit) {
    if (!deadline)
      return SWIT_E_FULL;
    t->waiters++;
    int rc = swit__cond_wait_until(&t->room, &t->mu, *deadline);
    t->waiters--;
    if (rc && t->tail - t->head >= t->limit)
      return SWIT_E_FULL; /* timed out */
  }
  return 0;
}

/* Double the ring. Called only when every position holds a retained
 * sequence, so no spare slot needs carrying over. */
static int ring_grow(mem_topic *t)
{
  uint64_t cap = (t->mask + 1) * 2;
  mem_slot **ring = calloc(cap, sizeof *ring);
  if (!ring)
    return SWIT_E_NOMEM;
  for (uint64_t s = t->head; s < t->tail; s++)
    ring[s & (cap - 1)] = t->ring[s & t->mask];
  free(t->ring);
  t->ring = ring;
  t->mask = cap - 1;
  return 0;
}

static char *put_bytes(char **p, const char *src, size_t len)
{
  char *at = *p;
  if (len)
    memcpy(at, src, len);
  *p += len;
  return at;
}

/* Copy m into s: header array first (aligned by malloc), then key,
 * payload and header bytes. */
static int slot_fill(mem_slot *s, const mem_topic *t, const swit_msg_view *m,
                     int64_t timestamp_ms)
{
  size_t harr = (size_t)m->nheaders * sizeof(swit_header);
  size_t need = harr + m->key_len + m->payload_len;
  for (uint32_t i = 0; i < m->nheaders; i++)
    need += (size_t)m->headers[i].name_len + m->headers[i].value_len;
  if (need > s->cap) {
    char *buf = malloc(need);
    if (!buf)
      return SWIT_E_NOMEM;
    free(s->buf);
    s->buf = buf;
    s->cap = need;
  }
  swit_header *h = m->nheaders ? (swit_header *)(void *)s->buf : NULL;
  /* an empty message (no key, payload or headers) in a new slot has no
   * buffer: no pointer arithmetic on NULL (found by fuzz_http) */
  char *p = need ? s->buf + harr : NULL;
  swit_msg_view *v = &s->view;
  v->topic = t->name;
  v->topic_len = t->name_len;
  v->key_len = m->key_len;
  v->key = m->key_len ? put_bytes(&p, m->key, m->key_len) : NULL;
  v->payload_len = m->payload_len;
  v->payload = m->payload_len ? put_bytes(&p, m->payload, m->payload_len) : "";
  for (uint32_t i = 0; i < m->nheaders; i++) {
    const swit_header *src = &m->headers[i];
    h[i].name_len = src->name_len;
    h[i].value_len = src->value_len;
    h[i].name = put_bytes(&p, src->name, src->name_len);
    h[i].value = put_bytes(&p, src->value, src->value_len);
  }
  v->headers = h;
  v->nheaders = m->nheaders;
  v->partition = -1;
  v->timestamp_ms = timestamp_ms;
  return 0;
}

int swit__mem_topic_append(mem_topic *t, const swit_msg_view *m,
                           int64_t timestamp_ms)
{
  if (t->tail - t->head > t->mask && ring_grow(t))
    return SWIT_E_NOMEM;
  mem_slot **at = &MEM_SLOT(t, t->tail);
  if (!*at && !(*at = calloc(1, sizeof **at)))
    return SWIT_E_NOMEM;
  mem_slot *s = *at;
  int rc = slot_fill(s, t, m, timestamp_ms);
  if (rc)
    return rc;
  s->seq = t->tail++;
  if (t->ngroups) {
    s->refs = (uint32_t)t->ngroups;
  } else {
    s->refs = 1; /* held for the first group to subscribe */
    if (!t->orphans) {
      t->orphans = 1;
      t->orphan_from = s->seq;
    }
  }
  return 0;
}

void swit__mem_topic_release(mem_topic *t, uint64_t seq)
{
  mem_slot *s = MEM_SLOT(t, seq);
  if (--s->refs)
    return;
  if (s->cap > MEM_SLOT_KEEP) {
    free(s->buf);
    s->buf = NULL;
    s->cap = 0;
  }
  if (seq != t->head)
    return;
  while (t->head < t->tail && MEM_SLOT(t, t->head)->refs == 0)
    t->head++;
}

/* Wake waiting publishers once a useful amount of room exists (a quarter
 * of the topic, at most 1024 slots): waking them for every freed slot
 * makes publisher and consumer take turns one message at a time. Called
 * once per batch of releases, t->mu held. */
void swit__mem_topic_room_signal(mem_topic *t)
{
  uint64_t want = t->limit / 4 < 1024 ? t->limit / 4 : 1024;
  if (!t->waiters)
    return;
  if (want == 0 || t->limit - (t->tail - t->head) >= want)
    pthread_cond_broadcast(&t->room);
}

mem_slot *swit__mem_topic_held(mem_topic *t, uint64_t seq)
{
  if (seq < t->head || seq >= t->tail)
    return NULL;
  mem_slot *s = MEM_SLOT(t, seq);
  return s->seq == seq && s->refs ? s : NULL;
}

/* ---------------------------------------------------------------------
 * Groups: join, leave, requeue, take */

static mem_group *group_find(const mem_topic *t, const char *name)
{
  for (size_t i = 0; i < t->ngroups; i++)
    if (strcmp(t->groups[i]->name, name) == 0)
      return t->groups[i];
  return NULL;
}

int swit__mem_group_join(mem_topic *t, const char *name, mem_member *m)
{
  mem_group *g = group_find(t, name);
  mem_group *fresh = NULL;
  if (!g) {
    size_t len = strlen(name);
    if (!(fresh = calloc(1, sizeof *fresh)) || !(fresh->name = malloc(len + 1)))
      goto fail;
    memcpy(fresh->name, name, len + 1);
    fresh->topic = t;
    mem_group **groups = reserve(t->groups, &t->groups_cap, t->ngroups + 1,
                                 sizeof *groups);
    if (!groups)
      goto fail;
    t->groups = groups;
    g = fresh;
  }
  mem_member **live = reserve(g->live, &g->live_cap, g->nlive + 1,
                              sizeof *live);
  if (!live)
    goto fail;
  g->live = live;
  g->live[g->nlive++] = m;
  m->group = g;
  m->next = g->all;
  if (g->all)
    g->all->prev = m;
  g->all = m;
  if (fresh) {
    /* Messages kept while the topic had no group go to this one. */
    g->cursor = t->orphans ? t->orphan_from : t->tail;
    t->orphans = 0;
    t->groups[t->ngroups++] = g;
    g->next = t->all_groups;
    if (t->all_groups)
      t->all_groups->prev = g;
    t->all_groups = g;
  }
  return 0;
fail:
  group_free(fresh);
  return SWIT_E_NOMEM;
}

void swit__mem_group_leave(mem_topic *t, mem_member *m)
{
  mem_group *g = m->group;
  size_t i = 0;
  while (i < g->nlive && g->live[i] != m)
    i++;
  m->dead = 1;
  if (i == g->nlive)
    return;
  memmove(&g->live[i], &g->live[i + 1], (g->nlive - i - 1) * sizeof *g->live);
  g->nlive--;
  if (g->rr > i)
    g->rr--;
  if (g->nlive)
    return;
  /* The last member left: the group is gone. What it was never delivered
   * (or had requeued) is released now; what is in flight is released as
   * it is settled. */
  size_t k = 0;
  while (t->groups[k] != g)
    k++;
  memmove(&t->groups[k], &t->groups[k + 1],
          (t->ngroups - k - 1) * sizeof *t->groups);
  t->ngroups--;
  g->gone = 1;
  atomic_fetch_add(&t->b->dropped, swit__mem_group_pending(t, g));
  for (size_t r = 0; r < g->nrequeue; r++)
    swit__mem_topic_release(t, g->requeue[r]);
  g->nrequeue = 0;
  while (g->cursor < t->tail)
    swit__mem_topic_release(t, g->cursor++);
  if (t->waiters)
    pthread_cond_broadcast(&t->room);
}

uint64_t swit__mem_group_pending(const mem_topic *t, const mem_group *g)
{
  return g->nrequeue + (t->tail - g->cursor);
}

int swit__mem_group_requeue(mem_group *g, uint64_t seq)
{
  if (g->nrequeue == g->requeue_cap)
    return SWIT_E_FULL; /* only after a token was settled twice */
  size_t i = g->nrequeue;
  while (i > 0 && g->requeue[i - 1] > seq)
    i--;
  memmove(&g->requeue[i + 1], &g->requeue[i],
          (g->nrequeue - i) * sizeof *g->requeue);
  g->requeue[i] = seq;
  g->nrequeue++;
  return 0;
}

size_t swit__mem_group_take(mem_topic *t, mem_group *g, mem_member *m,
                            size_t max, swit_delivery *out)
{
  size_t again = g->nrequeue < max ? g->nrequeue : max;
  uint64_t unseen = t->tail - g->cursor;
  size_t fresh = max - again < unseen ? max - again : (size_t)unseen;
  /* Every delivery may come back as a requeue: keep room for all. */
  size_t held = g->nrequeue + (size_t)g->inflight;
  if (held + fresh > g->requeue_cap) {
    uint64_t *rq = reserve(g->requeue, &g->requeue_cap, held + fresh,
                           sizeof *rq);
    if (rq)
      g->requeue = rq;
    else
      fresh = g->requeue_cap > held ? g->requeue_cap - held : 0;
  }
  size_t k = 0;
  for (; k < again; k++)
    out[k] = (swit_delivery){ .msg = &MEM_SLOT(t, g->requeue[k])->view,
                              .token = g->requeue[k] };
  if (again) {
    memmove(g->requeue, g->requeue + again,
            (g->nrequeue - again) * sizeof *g->requeue);
    g->nrequeue -= again;
  }
  for (size_t f = 0; f < fresh; f++, k++, g->cursor++)
    out[k] = (swit_delivery){ .msg = &MEM_SLOT(t, g->cursor)->view,
                              .token = g->cursor };
  g->inflight += k;
  m->inflight += k;
  return k;
}
