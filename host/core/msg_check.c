/*
 * msg_check.c - what the core decides about a message before an adapter
 * sees it (publish) or a handler sees it (delivery): well-formed views
 * and the size limit messaging.resources.memory.max_message_size, with
 * one wording. Adapters call swit__msg_oversize on delivery (they own
 * the reason's buffer until the settle); the core calls swit__msg_check
 * on every publish. Pure functions, any thread.
 */
#include <stdio.h>

#include "core/broker.h"

size_t swit__msg_size(const swit_msg_view *m)
{
  size_t size = (size_t)m->key_len + m->payload_len;

  for (uint32_t i = 0; m->headers && i < m->nheaders; i++)
    size += (size_t)m->headers[i].name_len + m->headers[i].value_len;
  return size;
}

const char *swit__msg_oversize(const swit_msg_view *m, int64_t max,
                               char *buf, size_t len)
{
  size_t size;

  if (max <= 0 || (size = swit__msg_size(m)) <= (uint64_t)max) return NULL;
  snprintf(buf, len, "message of %zu bytes (payload+key+headers) exceeds "
           "messaging.resources.memory.max_message_size (%lld)", size,
           (long long)max);
  return buf;
}

int swit__msg_check(const swit_msg_view *msgs, size_t n, int64_t max,
                    char *err, size_t errlen)
{
  for (size_t i = 0; i < n; i++) {
    const swit_msg_view *m = &msgs[i];
    int bad = (m->key_len && !m->key) || (m->payload_len && !m->payload) ||
              (m->nheaders && !m->headers);
    char why[160];

    if (!m->topic || !m->topic_len)
      return swit__fail(err, errlen, SWIT_E_INVAL,
                        "publish: message %zu of %zu has no topic", i + 1, n);
    for (uint32_t h = 0; !bad && h < m->nheaders; h++)
      bad = (m->headers[h].name_len && !m->headers[h].name) ||
            (m->headers[h].value_len && !m->headers[h].value);
    if (bad)
      return swit__fail(err, errlen, SWIT_E_INVAL, "publish to '%.*s': message "
                        "%zu of %zu has a NULL pointer with a nonzero length",
                        (int)m->topic_len, m->topic, i + 1, n);
    if (swit__msg_oversize(m, max, why, sizeof why))
      return swit__fail(err, errlen, SWIT_E_TOOBIG, "publish to '%.*s': "
                        "message %zu of %zu: %s; nothing was published",
                        (int)m->topic_len, m->topic, i + 1, n, why);
  }
  return 0;
}
