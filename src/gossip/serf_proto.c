/* serf_proto.c -- serf message encoding and decoding (see serf_proto.h). Key order in every
 * encoder is Go's sorted field order, so the bytes equal serf's. */
#include "gossip/serf_proto.h"

#include <stdlib.h>
#include <string.h>

#include "gossip/mp.h"
#include "lib/alloc.h"
#include "lib/err.h"

#define NAME_MAX_LEN PROTO_NAME_MAX
#define EVENT_MAX 9216 /* serf UserEventSizeLimit (9 KiB): no event is bigger */
#define QUERY_MAX 65535

static void key(struct buf *b, const char *k) { mp_put_str(b, k); }
static void str(struct buf *b, struct proto_bytes v) { mp_put_raw(b, v.p, v.len); }
static void bytes(struct buf *b, struct proto_bytes v) { mp_put_bytes_or_nil(b, v.p, v.len); }

void serf_encode_join(struct buf *out, const struct serf_join_msg *m) {
  buf_putc(out, SERF_MSG_JOIN);
  mp_put_map(out, 2);
  key(out, "LTime");
  mp_put_uint(out, m->ltime);
  key(out, "Node");
  str(out, m->node);
}

void serf_encode_leave(struct buf *out, const struct serf_leave_msg *m) {
  buf_putc(out, SERF_MSG_LEAVE);
  mp_put_map(out, 3);
  key(out, "LTime");
  mp_put_uint(out, m->ltime);
  key(out, "Node");
  str(out, m->node);
  key(out, "Prune");
  mp_put_bool(out, m->prune);
}

void serf_encode_user_event(struct buf *out, const struct serf_user_event_msg *m) {
  buf_putc(out, SERF_MSG_USER_EVENT);
  mp_put_map(out, 4);
  key(out, "CC");
  mp_put_bool(out, m->cc);
  key(out, "LTime");
  mp_put_uint(out, m->ltime);
  key(out, "Name");
  str(out, m->name);
  key(out, "Payload");
  bytes(out, m->payload);
}

void serf_encode_query(struct buf *out, const struct serf_query_msg *m) {
  buf_putc(out, SERF_MSG_QUERY);
  mp_put_map(out, 11);
  key(out, "Addr");
  bytes(out, m->addr);
  key(out, "Filters");
  if (m->nfilters == 0) {
    mp_put_nil(out);
  } else {
    mp_put_array(out, (uint32_t)m->nfilters);
    for (size_t i = 0; i < m->nfilters; i++) bytes(out, m->filters[i]);
  }
  key(out, "Flags");
  mp_put_uint(out, m->flags);
  key(out, "ID");
  mp_put_uint(out, m->id);
  key(out, "LTime");
  mp_put_uint(out, m->ltime);
  key(out, "Name");
  str(out, m->name);
  key(out, "Payload");
  bytes(out, m->payload);
  key(out, "Port");
  mp_put_uint(out, m->port);
  key(out, "RelayFactor");
  mp_put_uint(out, m->relay_factor);
  key(out, "SourceNode");
  str(out, m->source_node);
  key(out, "Timeout");
  mp_put_int(out, m->timeout);
}

void serf_encode_query_response(struct buf *out, const struct serf_query_response_msg *m) {
  buf_putc(out, SERF_MSG_QUERY_RESPONSE);
  mp_put_map(out, 5);
  key(out, "Flags");
  mp_put_uint(out, m->flags);
  key(out, "From");
  str(out, m->from);
  key(out, "ID");
  mp_put_uint(out, m->id);
  key(out, "LTime");
  mp_put_uint(out, m->ltime);
  key(out, "Payload");
  bytes(out, m->payload);
}

void serf_encode_push_pull(struct buf *out, uint64_t ltime, const struct serf_pp_status *status,
                           size_t nstatus, const struct proto_bytes *left, size_t nleft,
                           uint64_t event_ltime, const struct serf_pp_bucket *buckets,
                           size_t nbuckets, uint64_t query_ltime) {
  buf_putc(out, SERF_MSG_PUSH_PULL);
  mp_put_map(out, 6);
  key(out, "EventLTime");
  mp_put_uint(out, event_ltime);
  key(out, "Events");
  mp_put_array(out, (uint32_t)nbuckets);
  for (size_t i = 0; i < nbuckets; i++) {
    const struct serf_pp_bucket *bk = &buckets[i];
    if (bk->nil) {
      mp_put_nil(out);
      continue;
    }
    mp_put_map(out, 2);
    key(out, "Events");
    mp_put_array(out, (uint32_t)bk->nevents);
    for (size_t j = 0; j < bk->nevents; j++) {
      mp_put_map(out, 2);
      key(out, "Name");
      str(out, bk->events[j].name);
      key(out, "Payload");
      bytes(out, bk->events[j].payload);
    }
    key(out, "LTime");
    mp_put_uint(out, bk->ltime);
  }
  key(out, "LTime");
  mp_put_uint(out, ltime);
  key(out, "LeftMembers");
  mp_put_array(out, (uint32_t)nleft);
  for (size_t i = 0; i < nleft; i++) str(out, left[i]);
  key(out, "QueryLTime");
  mp_put_uint(out, query_ltime);
  key(out, "StatusLTimes");
  mp_put_map(out, (uint32_t)nstatus);
  for (size_t i = 0; i < nstatus; i++) {
    str(out, status[i].name);
    mp_put_uint(out, status[i].ltime);
  }
}

/* ---- decoding ---- */

static int begin(struct mp_r *r, const uint8_t *p, size_t len, uint32_t *n) {
  mp_r_init(r, p, len);
  return mp_read_map(r, n) ? CC_EINVAL : 0;
}

static int rkey(struct mp_r *r, const uint8_t **k, uint32_t *klen) {
  return mp_read_raw(r, 64, k, klen);
}

static int rbytes(struct mp_r *r, uint32_t max, struct proto_bytes *out) {
  return mp_read_raw(r, max, &out->p, &out->len);
}

static int ru32(struct mp_r *r, uint32_t *out) {
  uint64_t v;
  int rc = mp_read_uint(r, UINT32_MAX, &v);
  if (!rc) *out = (uint32_t)v;
  return rc;
}

#define FIELDS(r, n, body)                                      \
  for (uint32_t i_ = 0; i_ < (n); i_++) {                       \
    const uint8_t *k;                                           \
    uint32_t klen;                                              \
    int rc_ = rkey(r, &k, &klen);                               \
    if (rc_) return CC_EINVAL;                                  \
    body else rc_ = mp_skip(r);                                 \
    if (rc_) return CC_EINVAL;                                  \
  }
#define F(name, expr) if (mp_key_is(k, klen, name)) rc_ = (expr);

int serf_decode_join(const uint8_t *p, size_t len, struct serf_join_msg *m) {
  struct mp_r r;
  uint32_t n;
  memset(m, 0, sizeof *m);
  if (begin(&r, p, len, &n)) return CC_EINVAL;
  FIELDS(&r, n, F("LTime", mp_read_uint(&r, UINT64_MAX, &m->ltime))
                else F("Node", rbytes(&r, NAME_MAX_LEN, &m->node)))
  return 0;
}

int serf_decode_leave(const uint8_t *p, size_t len, struct serf_leave_msg *m) {
  struct mp_r r;
  uint32_t n;
  memset(m, 0, sizeof *m);
  if (begin(&r, p, len, &n)) return CC_EINVAL;
  FIELDS(&r, n, F("LTime", mp_read_uint(&r, UINT64_MAX, &m->ltime))
                else F("Node", rbytes(&r, NAME_MAX_LEN, &m->node))
                else F("Prune", mp_read_bool(&r, &m->prune)))
  return 0;
}

int serf_decode_user_event(const uint8_t *p, size_t len, struct serf_user_event_msg *m) {
  struct mp_r r;
  uint32_t n;
  memset(m, 0, sizeof *m);
  if (begin(&r, p, len, &n)) return CC_EINVAL;
  FIELDS(&r, n, F("LTime", mp_read_uint(&r, UINT64_MAX, &m->ltime))
                else F("Name", rbytes(&r, EVENT_MAX, &m->name))
                else F("Payload", rbytes(&r, EVENT_MAX, &m->payload))
                else F("CC", mp_read_bool(&r, &m->cc)))
  return 0;
}

static int read_filters(struct mp_r *r, struct serf_query_msg *m) {
  uint32_t n;
  int rc = mp_read_array(r, &n);
  if (rc) return rc;
  if (n > SERF_MAX_FILTERS) return CC_EINVAL;
  for (uint32_t i = 0; i < n; i++) {
    if ((rc = rbytes(r, QUERY_MAX, &m->filters[i]))) return rc;
    if (m->filters[i].len == 0) return CC_EINVAL; /* serf reads filter[0] unconditionally */
  }
  m->nfilters = n;
  return 0;
}

int serf_decode_query(const uint8_t *p, size_t len, struct serf_query_msg *m) {
  struct mp_r r;
  uint32_t n;
  memset(m, 0, sizeof *m);
  if (begin(&r, p, len, &n)) return CC_EINVAL;
  uint64_t rf = 0, port = 0;
  FIELDS(&r, n, F("LTime", mp_read_uint(&r, UINT64_MAX, &m->ltime))
                else F("ID", ru32(&r, &m->id))
                else F("Addr", rbytes(&r, 16, &m->addr))
                else F("Port", mp_read_uint(&r, UINT16_MAX, &port))
                else F("SourceNode", rbytes(&r, NAME_MAX_LEN, &m->source_node))
                else F("Filters", read_filters(&r, m))
                else F("Flags", ru32(&r, &m->flags))
                else F("RelayFactor", mp_read_uint(&r, UINT8_MAX, &rf))
                else F("Timeout", mp_read_int(&r, &m->timeout))
                else F("Name", rbytes(&r, QUERY_MAX, &m->name))
                else F("Payload", rbytes(&r, QUERY_MAX, &m->payload)))
  m->port = (uint16_t)port;
  m->relay_factor = (uint8_t)rf;
  return 0;
}

int serf_decode_query_response(const uint8_t *p, size_t len, struct serf_query_response_msg *m) {
  struct mp_r r;
  uint32_t n;
  memset(m, 0, sizeof *m);
  if (begin(&r, p, len, &n)) return CC_EINVAL;
  FIELDS(&r, n, F("LTime", mp_read_uint(&r, UINT64_MAX, &m->ltime))
                else F("ID", ru32(&r, &m->id))
                else F("From", rbytes(&r, NAME_MAX_LEN, &m->from))
                else F("Flags", ru32(&r, &m->flags))
                else F("Payload", rbytes(&r, QUERY_MAX, &m->payload)))
  return 0;
}

static int read_status(struct mp_r *r, struct serf_push_pull_msg *m) {
  uint32_t n;
  int rc = mp_read_map(r, &n);
  if (rc) return rc;
  free(m->status);
  m->status = n ? xcalloc(n, sizeof *m->status) : NULL;
  m->nstatus = 0;
  for (uint32_t i = 0; i < n; i++) {
    struct serf_pp_status *s = &m->status[m->nstatus];
    if ((rc = rbytes(r, NAME_MAX_LEN, &s->name))) return rc;
    if ((rc = mp_read_uint(r, UINT64_MAX, &s->ltime))) return rc;
    m->nstatus++;
  }
  return 0;
}

static int read_left(struct mp_r *r, struct serf_push_pull_msg *m) {
  uint32_t n;
  int rc = mp_read_array(r, &n);
  if (rc) return rc;
  free(m->left);
  m->left = n ? xcalloc(n, sizeof *m->left) : NULL;
  m->nleft = 0;
  for (uint32_t i = 0; i < n; i++) {
    if ((rc = rbytes(r, NAME_MAX_LEN, &m->left[i]))) return rc;
    m->nleft++;
  }
  return 0;
}

/* Events: an array of nil or {LTime, Events: [{Name, Payload}]}. Flattened into m->events,
 * grown as we go (the count of inner events is bounded by the bytes they occupy). */
static int read_events(struct mp_r *r, struct serf_push_pull_msg *m) {
  uint32_t nb;
  int rc = mp_read_array(r, &nb);
  if (rc) return rc;
  size_t cap = 0;
  for (uint32_t b = 0; b < nb; b++) {
    uint32_t nf;
    if ((rc = mp_read_map(r, &nf))) return rc; /* nil reads as an empty map */
    uint64_t ltime = 0;
    size_t first = m->nevents;
    for (uint32_t f = 0; f < nf; f++) {
      const uint8_t *k;
      uint32_t klen;
      if ((rc = rkey(r, &k, &klen))) return rc;
      if (mp_key_is(k, klen, "LTime")) {
        if ((rc = mp_read_uint(r, UINT64_MAX, &ltime))) return rc;
      } else if (mp_key_is(k, klen, "Events")) {
        uint32_t ne;
        if ((rc = mp_read_array(r, &ne))) return rc;
        for (uint32_t e = 0; e < ne; e++) {
          if (m->nevents == cap) {
            cap = cap ? 2 * cap : 16;
            m->events = xrealloc(m->events, cap * sizeof *m->events);
          }
          struct serf_pp_event *ev = &m->events[m->nevents];
          memset(ev, 0, sizeof *ev);
          uint32_t ef;
          if ((rc = mp_read_map(r, &ef))) return rc;
          for (uint32_t x = 0; x < ef; x++) {
            const uint8_t *k2;
            uint32_t k2len;
            if ((rc = rkey(r, &k2, &k2len))) return rc;
            if (mp_key_is(k2, k2len, "Name"))
              rc = rbytes(r, EVENT_MAX, &ev->name);
            else if (mp_key_is(k2, k2len, "Payload"))
              rc = rbytes(r, EVENT_MAX, &ev->payload);
            else
              rc = mp_skip(r);
            if (rc) return rc;
          }
          m->nevents++;
        }
      } else if ((rc = mp_skip(r))) {
        return rc;
      }
    }
    for (size_t i = first; i < m->nevents; i++) m->events[i].ltime = ltime;
  }
  return 0;
}

int serf_decode_push_pull(const uint8_t *p, size_t len, struct serf_push_pull_msg *m) {
  struct mp_r r;
  uint32_t n;
  memset(m, 0, sizeof *m);
  if (begin(&r, p, len, &n)) return CC_EINVAL;
  for (uint32_t i = 0; i < n; i++) {
    const uint8_t *k;
    uint32_t klen;
    int rc = rkey(&r, &k, &klen);
    if (!rc) {
      if (mp_key_is(k, klen, "LTime"))
        rc = mp_read_uint(&r, UINT64_MAX, &m->ltime);
      else if (mp_key_is(k, klen, "EventLTime"))
        rc = mp_read_uint(&r, UINT64_MAX, &m->event_ltime);
      else if (mp_key_is(k, klen, "QueryLTime"))
        rc = mp_read_uint(&r, UINT64_MAX, &m->query_ltime);
      else if (mp_key_is(k, klen, "StatusLTimes"))
        rc = read_status(&r, m);
      else if (mp_key_is(k, klen, "LeftMembers"))
        rc = read_left(&r, m);
      else if (mp_key_is(k, klen, "Events"))
        rc = read_events(&r, m);
      else
        rc = mp_skip(&r);
    }
    if (rc) {
      serf_push_pull_free(m);
      return CC_EINVAL;
    }
  }
  return 0;
}

void serf_push_pull_free(struct serf_push_pull_msg *m) {
  free(m->status);
  free(m->left);
  free(m->events);
  m->status = NULL;
  m->left = NULL;
  m->events = NULL;
  m->nstatus = m->nleft = m->nevents = 0;
}

void serf_encode_tags(struct buf *out, const char *const *keys, const char *const *values, size_t n) {
  buf_putc(out, (char)SERF_TAG_MAGIC);
  mp_put_map(out, (uint32_t)n);
  for (size_t i = 0; i < n; i++) {
    mp_put_str(out, keys[i]);
    mp_put_str(out, values[i]);
  }
}

int serf_decode_tags(const uint8_t *p, size_t len, struct proto_bytes *keys,
                     struct proto_bytes *values, size_t max, size_t *n) {
  *n = 0;
  if (len == 0 || p[0] != SERF_TAG_MAGIC) {
    /* Protocol 2: the whole meta is the role. */
    if (max == 0) return CC_EINVAL;
    keys[0] = proto_str("role");
    values[0] = (struct proto_bytes){len ? p : (const uint8_t *)"", (uint32_t)len};
    *n = 1;
    return 0;
  }
  struct mp_r r;
  uint32_t cnt;
  mp_r_init(&r, p + 1, len - 1);
  if (mp_read_map(&r, &cnt) || cnt > max) return CC_EINVAL;
  for (uint32_t i = 0; i < cnt; i++) {
    if (rbytes(&r, PROTO_META_MAX, &keys[i]) || rbytes(&r, PROTO_META_MAX, &values[i]))
      return CC_EINVAL;
    if (!keys[i].p) return CC_EINVAL;
    if (!values[i].p) values[i] = (struct proto_bytes){(const uint8_t *)"", 0};
  }
  *n = cnt;
  return 0;
}
