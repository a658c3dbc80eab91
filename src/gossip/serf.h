/* serf.h -- serf's layer over memberlist (hashicorp/serf serf/serf.go, delegate.go): member
 * status with Lamport-clocked join/leave intents, tags in node meta, user events, queries
 * (sent, acknowledged, answered), reaping and reconnecting. Runs on any io (io.h); gossip.c
 * puts it on libuv, the simulation on io_fake.c. Internal to the module. */
#ifndef CONCORD_GOSSIP_SERF_H
#define CONCORD_GOSSIP_SERF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gossip/gossip.h"
#include "gossip/io.h"
#include "lib/buf.h"

struct serf;
struct ml;

/* Copies cfg. The advertise address must be resolved (an IP) by the caller. NULL and a
 * sentence in errbuf on a bad config (oversized tags, bad limits). */
struct serf *serf_new(const struct gossip_config *cfg, const struct gossip_addr *advertise,
                      struct gossip_io *io, char *errbuf, size_t errlen);
void serf_start(struct serf *s);
/* Stops at once (no leave): pending join and leave callbacks run inside this call with
 * CC_ECANCELED, nothing else runs after it. The last call that touches the io; safe from
 * inside any callback. Memory stays until serf_free. */
void serf_shutdown(struct serf *s);
/* serf_shutdown if needed, then frees everything. Not from inside a callback of s. */
void serf_free(struct serf *s);

int serf_join(struct serf *s, const char *const *addrs, size_t n, uint16_t default_port,
              void (*cb)(void *arg, int nsuccess, int err), void *arg);
int serf_leave(struct serf *s, void (*cb)(void *arg, int err), void *arg);
int serf_force_leave(struct serf *s, const char *node, bool prune);
int serf_set_tags(struct serf *s, const struct gossip_tag *tags, size_t n);
int serf_user_event(struct serf *s, const char *name, const void *payload, size_t len,
                    bool coalesce);
int serf_query(struct serf *s, const char *name, const void *payload, size_t len,
               const struct gossip_query_params *params, gossip_query_cb cb, void *arg);
int serf_query_respond(struct serf *s, const struct gossip_query_token *t, const void *payload,
                       size_t len);
int serf_members(struct serf *s, struct gossip_member **out, size_t *n);
int serf_local_member(struct serf *s, struct gossip_member *out);
/* A member's status, GOSSIP_STATUS_NONE if unknown (cheap; for tests and the simulation). */
enum gossip_status serf_member_status(struct serf *s, const char *name);
size_t serf_num_members(struct serf *s);
struct ml *serf_ml(struct serf *s);
int serf_health_score(struct serf *s);

/* serf_keys.c: a key query for us (name without "_serf_"); true with the answer ([8][...],
 * a key list cut to fit limit bytes) appended to out when it is one, false for any other
 * internal query. Applies the change to ml's keyring and saves keyring_file (may be NULL). */
bool serf_keys_answer(struct ml *ml, const char *keyring_file, const char *name,
                      const uint8_t *payload, size_t len, size_t limit, struct buf *out);
/* Counts one member's answer into r (serf's streamKeyResp); r's memory is freed with
 * serf_keys_response_free. Exposed for the fuzzer and tests. */
void serf_keys_tally(struct gossip_key_response *r, const char *from, const uint8_t *p,
                     size_t len);
void serf_keys_response_free(struct gossip_key_response *r);
int serf_keys_op(struct serf *s, enum gossip_key_op op, const char *key, gossip_key_cb cb,
                 void *arg, char *errbuf, size_t errlen);

/* Encodes tags as serf node meta; CC_ETOOBIG past memberlist's 512 bytes. */
int serf__encode_tags(const struct gossip_tag *tags, size_t n, void *buf_out);

#endif
