/* serf_proto.h -- serf's messages (hashicorp/serf serf/messages.go), carried as memberlist user
 * messages: [serf type][msgpack struct], encoded as go-msgpack does (sorted keys, old spec;
 * see mp.h). Decoded messages borrow from the input buffer, like proto.h. */
#ifndef CONCORD_GOSSIP_SERF_PROTO_H
#define CONCORD_GOSSIP_SERF_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gossip/proto.h"
#include "lib/buf.h"

enum serf_msg_type {
  SERF_MSG_LEAVE = 0,
  SERF_MSG_JOIN = 1,
  SERF_MSG_PUSH_PULL = 2,
  SERF_MSG_USER_EVENT = 3,
  SERF_MSG_QUERY = 4,
  SERF_MSG_QUERY_RESPONSE = 5,
  SERF_MSG_CONFLICT_RESPONSE = 6,
  SERF_MSG_KEY_REQUEST = 7,
  SERF_MSG_KEY_RESPONSE = 8,
  SERF_MSG_RELAY = 9,
};

#define SERF_QUERY_FLAG_ACK 1u
#define SERF_QUERY_FLAG_NO_BROADCAST 2u
#define SERF_TAG_MAGIC 0xff
#define SERF_MAX_FILTERS 16
#define SERF_MAX_TAGS 64

struct serf_join_msg {
  uint64_t ltime;
  struct proto_bytes node;
};

struct serf_leave_msg {
  uint64_t ltime;
  struct proto_bytes node;
  bool prune;
};

struct serf_user_event_msg {
  uint64_t ltime;
  struct proto_bytes name;
  struct proto_bytes payload;
  bool cc;
};

struct serf_query_msg {
  uint64_t ltime;
  uint32_t id;
  struct proto_bytes addr;
  uint16_t port;
  struct proto_bytes source_node;
  struct proto_bytes filters[SERF_MAX_FILTERS];
  size_t nfilters;
  uint32_t flags;
  uint8_t relay_factor;
  int64_t timeout; /* ns (Go time.Duration) */
  struct proto_bytes name;
  struct proto_bytes payload;
};

struct serf_query_response_msg {
  uint64_t ltime;
  uint32_t id;
  struct proto_bytes from;
  uint32_t flags;
  struct proto_bytes payload;
};

struct serf_pp_status {
  struct proto_bytes name;
  uint64_t ltime;
};

/* One remembered event (serf keeps them in ltime buckets; flattened here). */
struct serf_pp_event {
  uint64_t ltime;
  struct proto_bytes name;
  struct proto_bytes payload;
};

/* The delegate state serf exchanges in a push-pull. Arrays are owned (serf_push_pull_free). */
struct serf_push_pull_msg {
  uint64_t ltime, event_ltime, query_ltime;
  struct serf_pp_status *status;
  size_t nstatus;
  struct proto_bytes *left;
  size_t nleft;
  struct serf_pp_event *events;
  size_t nevents;
};

void serf_encode_join(struct buf *out, const struct serf_join_msg *m);
void serf_encode_leave(struct buf *out, const struct serf_leave_msg *m);
void serf_encode_user_event(struct buf *out, const struct serf_user_event_msg *m);
void serf_encode_query(struct buf *out, const struct serf_query_msg *m);
void serf_encode_query_response(struct buf *out, const struct serf_query_response_msg *m);
/* events are grouped by ltime in buckets; nil buckets (ltime 0 with no events) are written as
 * msgpack nil, as serf's fixed-size event buffer is. */
struct serf_pp_bucket {
  uint64_t ltime;
  const struct serf_pp_event *events;
  size_t nevents;
  bool nil;
};
void serf_encode_push_pull(struct buf *out, uint64_t ltime, const struct serf_pp_status *status,
                           size_t nstatus, const struct proto_bytes *left, size_t nleft,
                           uint64_t event_ltime, const struct serf_pp_bucket *buckets,
                           size_t nbuckets, uint64_t query_ltime);

/* Decoders take the bytes after the serf type byte. 0 or CC_EINVAL. */
int serf_decode_join(const uint8_t *p, size_t len, struct serf_join_msg *m);
int serf_decode_leave(const uint8_t *p, size_t len, struct serf_leave_msg *m);
int serf_decode_user_event(const uint8_t *p, size_t len, struct serf_user_event_msg *m);
int serf_decode_query(const uint8_t *p, size_t len, struct serf_query_msg *m);
int serf_decode_query_response(const uint8_t *p, size_t len, struct serf_query_response_msg *m);
int serf_decode_push_pull(const uint8_t *p, size_t len, struct serf_push_pull_msg *m);
void serf_push_pull_free(struct serf_push_pull_msg *m);

/* Tags in node meta: [0xff][msgpack map string->string] (keys sorted here; Go's map order is
 * random). Meta without the magic byte is a protocol-2 "role" string. */
void serf_encode_tags(struct buf *out, const char *const *keys, const char *const *values, size_t n);
/* Decodes into parallel arrays of borrowed bytes; at most max pairs. */
int serf_decode_tags(const uint8_t *p, size_t len, struct proto_bytes *keys,
                     struct proto_bytes *values, size_t max, size_t *n);

#endif
