/* event.h -- Consul's user events (agent/user_event.go, agent/event_endpoint.go): the event
 * record, its wire encoding inside a serf user event, the node/service/tag filters, the index
 * derived from an event's ID, and the ring of the last 256 events an agent keeps.
 *
 * Transport-free: the agent (agent/events.c) feeds the ring from gossip, the HTTP API
 * (api/event.c) fires events and reads the ring. Everything runs on one thread. */
#ifndef CONCORD_EVENT_EVENT_H
#define CONCORD_EVENT_EVENT_H

#include <jansson.h>
#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

/* The serf event name of a Consul user event is this prefix plus the event's name. */
#define EVENT_SERF_PREFIX "consul:event:"
/* The event `consul exec` fires (Consul's remoteExecName). */
#define EVENT_REXEC_NAME "_rexec"
/* The protocol version we write and understand (userEventMaxVersion). */
#define EVENT_VERSION 1
/* Caps on a decoded event's fields: serf never carries more than 9 KiB in one event. */
#define EVENT_MAX_FIELD 9216

/* Consul's UserEvent. All strings are owned and never NULL ("" when absent); payload is NULL
 * when the event has none (JSON null), which differs from an empty one only on the wire. */
struct event_user {
  char id[37];
  char *name;
  uint8_t *payload;
  size_t payload_len;
  char *node_filter, *service_filter, *tag_filter;
  int64_t version;
  uint64_t ltime; /* serf's Lamport time; not encoded (codec:"-") */
};

/* A new event with every string "" (caller frees with event_user_free). */
struct event_user *event_user_new(void);
void event_user_free(struct event_user *ev);
/* Copies src's fields (strings and payload duplicated) into a new event. */
struct event_user *event_user_dup(const struct event_user *src);

/* ---- Wire form ----
 * The serf payload is the UserEvent as msgpack, exactly as Consul's agent encodes it
 * (agent/util.go encodeMsgPack: ugorji codec, WriteExt, no type byte): a map of
 * "ID" (str), "n" name (str), "p" payload (bin, left out when empty), "nf", "sf", "tf"
 * filters (str, left out when empty) and "v" version (int), in the struct's field order. */
void event_encode(struct buf *out, const struct event_user *ev);
/* Decodes a serf payload (bounded reader: hostile input costs nothing). Accepts str or raw or
 * bin for every string, any key order, unknown keys skipped, as Go's decoder does. Returns a
 * new event (caller frees), or NULL when malformed. ltime is left 0. */
struct event_user *event_decode(const void *p, size_t len);

/* ---- Validation and filters ---- */

/* Consul's validateUserEventParams: 0, or -1 with Consul's sentence in err ("User event
 * missing name", "Cannot provide tag filter without service filter", "Invalid node filter:
 * ..."). */
int event_validate(const struct event_user *ev, char *err, size_t errlen);
/* Compiles a Go (RE2) regular expression as POSIX extended (unanchored search, as Go's
 * MatchString), translating the Perl classes \d \D (glibc knows \w \W \s \S itself). Returns
 * 0, or -1 with "error parsing regexp: <reason>" in err. */
int event_regex_compile(regex_t *re, const char *expr, char *err, size_t errlen);

/* One local service as the filters see it: its ID (Consul matches the services map key) and
 * tags. Borrowed for the call. */
struct event_service {
  const char *id;
  const char *const *tags;
  size_t ntags;
};
/* Consul's shouldProcessUserEvent: the node filter must match node; a service filter must
 * match some service and, with a tag filter, one of that service's tags. An uncompilable
 * filter never matches. */
bool event_filter_match(const struct event_user *ev, const char *node,
                        const struct event_service *svcs, size_t nsvcs);

/* ---- Index and JSON ---- */

/* Consul's uuidToUint64: the UUID's first 16 hex digits XOR its last 16. 0 when id is not a
 * UUID (Consul would panic there). */
uint64_t event_index_from_id(const char *id);
/* The event as Consul's JSON object: ID, Name, Payload (base64 or null), NodeFilter,
 * ServiceFilter, TagFilter, Version, LTime. A new tree the caller owns. */
json_t *event_user_json(const struct event_user *ev);

/* ---- The ring of recent events (Consul's eventBuf) ---- */

#define EVENT_RING_SIZE 256

struct event_waiter;

struct event_ring {
  struct event_user *slots[EVENT_RING_SIZE]; /* owned */
  size_t next;                               /* the slot the next event goes into */
  struct event_waiter *waiters;              /* one-shot notifications */
  uint64_t added;                            /* events ever added, for stats and tests */
};

void event_ring_init(struct event_ring *r);
/* Frees the events and any waiter left (without calling it). */
void event_ring_free(struct event_ring *r);
/* Takes ownership of ev. An ID already in the ring is a duplicate (gossip can deliver an event
 * twice): ev is freed and false returned. Otherwise the oldest event is dropped when the ring
 * is full, every waiter is called once (and removed), and true returned. */
bool event_ring_add(struct event_ring *r, struct event_user *ev);
/* Fills out (room for EVENT_RING_SIZE) with the events oldest first; returns how many. The
 * pointers are borrowed until the next event_ring_add. */
size_t event_ring_list(const struct event_ring *r, const struct event_user **out);
/* The newest event, or NULL. */
const struct event_user *event_ring_last(const struct event_ring *r);
/* Calls fn(arg) once, at the next event added. The waiter is freed after the call, or by
 * event_ring_unwait if it has not fired. fn may register a new waiter. */
struct event_waiter *event_ring_wait(struct event_ring *r, void (*fn)(void *arg), void *arg);
void event_ring_unwait(struct event_ring *r, struct event_waiter *w);

#endif
