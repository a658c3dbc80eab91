/* gossip.h -- Concord's LAN/WAN membership: SWIM + Lifeguard gossip wire-compatible with
 * hashicorp/memberlist, and serf's layer above it (tags, Lamport clocks, join/leave intents,
 * user events), so real serf and Consul agents can share a pool with Concord.
 *
 * One struct gossip is one pool member on one libuv loop. All calls are made on the loop's
 * thread; callbacks run on it too. Design and wire notes: docs/gossip.md. */
#ifndef CONCORD_GOSSIP_GOSSIP_H
#define CONCORD_GOSSIP_GOSSIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* serf's MemberStatus numbers, which Consul's /v1/agent/members "Status" reports as is. */
enum gossip_status {
  GOSSIP_STATUS_NONE = 0,
  GOSSIP_STATUS_ALIVE = 1,
  GOSSIP_STATUS_LEAVING = 2,
  GOSSIP_STATUS_LEFT = 3,
  GOSSIP_STATUS_FAILED = 4,
};

/* serf's member events. */
enum gossip_event {
  GOSSIP_EVENT_JOIN,
  GOSSIP_EVENT_LEAVE,  /* left gracefully (or force-left) */
  GOSSIP_EVENT_FAILED,
  GOSSIP_EVENT_UPDATE, /* tags changed */
  GOSSIP_EVENT_REAP,   /* forgotten: reaped after reconnect/tombstone timeout, or pruned */
};

struct gossip_tag {
  char *key;
  char *value;
};

/* A member as serf reports it (Consul's AgentMember). In callbacks the struct is lent for the
 * call; from gossip_members the caller owns it (gossip_members_free). */
struct gossip_member {
  char *name;
  char addr[46]; /* textual IP */
  uint16_t port;
  struct gossip_tag *tags; /* sorted by key */
  size_t ntags;
  enum gossip_status status;
  uint8_t protocol_min, protocol_max, protocol_cur;
  uint8_t delegate_min, delegate_max, delegate_cur;
};

struct gossip_user_event {
  uint64_t ltime;
  const char *name;
  const uint8_t *payload; /* lent for the call; may be NULL with len 0 */
  size_t payload_len;
  bool coalesce;
};

/* What answering a query needs (copy it to answer later, before the deadline). */
struct gossip_query_token {
  uint64_t ltime;
  uint32_t id;
  uint8_t addr[16];
  uint8_t addr_len;
  uint16_t port;
  uint64_t deadline; /* loop time, ms */
  char source_node[257];
};

/* A query someone sent (serf's Query event). Lent for the callback. */
struct gossip_query {
  uint64_t ltime;
  const char *name;
  const uint8_t *payload;
  size_t payload_len;
  struct gossip_query_token token;
};

/* Asking: who must answer and how long to wait. */
struct gossip_query_params {
  uint32_t timeout; /* ms; 0: serf's default, GossipInterval * 16 * ceil(log10(n + 1)) */
  bool request_ack;
  const char *const *filter_nodes; /* only these members answer */
  size_t nfilter_nodes;
  const struct gossip_tag *filter_tags; /* key = tag, value = regular expression its value matches */
  size_t nfilter_tags;
};

enum gossip_query_result { GOSSIP_QUERY_ACK, GOSSIP_QUERY_RESPONSE, GOSSIP_QUERY_DONE };

/* from/payload are lent for the call; DONE comes exactly once, last (at the timeout). */
typedef void (*gossip_query_cb)(void *arg, enum gossip_query_result what, const char *from,
                                const uint8_t *payload, size_t len);

/* Timings of memberlist's profiles; all milliseconds. */
struct gossip_timing {
  uint32_t probe_interval, probe_timeout, gossip_interval, push_pull_interval;
  uint32_t gossip_to_the_dead, tcp_timeout;
  uint32_t indirect_checks, gossip_nodes, retransmit_mult, suspicion_mult;
  uint32_t suspicion_max_timeout_mult, awareness_max_multiplier;
  uint32_t udp_buffer_size;
};

/* memberlist DefaultLANConfig: probe 1 s / timeout 500 ms, 3 indirect checks, gossip every
 * 200 ms to 3 members, push-pull every 30 s, retransmit x4, suspicion x4 (max x6). */
void gossip_timing_lan(struct gossip_timing *t);
/* DefaultWANConfig: probe 5 s / 3 s, gossip 500 ms to 4, suspicion x6, push-pull 60 s. */
void gossip_timing_wan(struct gossip_timing *t);

struct gossip_config {
  const char *node_name;
  const char *bind_addr; /* an IP literal; 0.0.0.0 needs advertise_addr */
  uint16_t bind_port;
  const char *advertise_addr; /* NULL: bind_addr */
  uint16_t advertise_port;    /* 0: bind_port */
  const struct gossip_tag *tags;
  size_t ntags;
  struct gossip_timing timing;
  /* serf's timers (ms). Consul's defaults: reconnect_timeout 72 h on the LAN. */
  uint64_t reconnect_timeout, tombstone_timeout, reap_interval, reconnect_interval;
  uint64_t recent_intent_timeout, broadcast_timeout, leave_propagate_delay;
  /* Largest user event, name + payload, before and after encoding (serf UserEventSizeLimit,
   * 512 in Consul); never above 9 KiB. */
  size_t user_event_size_limit;
  /* serf delegate protocol we speak: Consul speaks 4 (its protocolVersionMap), range 2..5. */
  uint8_t protocol_version;
  bool disable_compression;
  /* Gossip encryption (memberlist's keyring): base64 AES keys of 16, 24 or 32 bytes, the first
   * primary (it encrypts; all are tried to decrypt). None: no encryption. */
  const char *const *encrypt_keys;
  size_t nencrypt_keys;
  /* Consul's encrypt_verify_incoming/outgoing (default true): false lets plaintext in, or
   * sends plaintext, while a pool is being switched to encryption. */
  bool encrypt_verify_incoming, encrypt_verify_outgoing;
  /* The keyring file (Consul's <data_dir>/serf/local.keyring); NULL: none. When set, keys come
   * from it: the first start writes encrypt_keys[0] there, later starts read it (the file
   * wins). Key queries save their changes to it, as serf's KeyringFile. */
  const char *keyring_file;

  void (*on_member)(void *ctx, enum gossip_event ev, const struct gossip_member *m);
  void (*on_user_event)(void *ctx, const struct gossip_user_event *ev);
  /* Queries from others (and our own), except serf's internal "_serf_*" ones. */
  void (*on_query)(void *ctx, const struct gossip_query *q);
  void *cb_ctx;
};

/* LAN timing, serf/Consul defaults, no tags, no callbacks. */
void gossip_config_default(struct gossip_config *c);

struct gossip;

/* Binds UDP and TCP on bind_addr:bind_port and starts gossiping alone. Copies cfg. Returns 0
 * and *out, or a negative CC_E* with a sentence in errbuf. */
int gossip_start(uv_loop_t *loop, const struct gossip_config *cfg, struct gossip **out,
                 char *errbuf, size_t errlen);
/* Stops at once (no leave message: use gossip_leave first to leave gracefully). Pending join
 * and leave callbacks run inside this call with CC_ECANCELED; no other callback runs after it.
 * The sockets close on the loop, then done (may be NULL) runs; g is invalid on return. */
void gossip_stop(struct gossip *g, void (*done)(void *arg), void *arg);

/* Joins through each "ip[:port]" (default port: our bind port); cb (may be NULL) gets how many
 * answered. Returns 0 (cb will run) or a negative CC_E* (it will not), like libuv. */
int gossip_join(struct gossip *g, const char *const *addrs, size_t n,
                void (*cb)(void *arg, int nsuccess, int err), void *arg);
/* Graceful leave: broadcasts the intent, then our death as "left"; cb once it has spread or
 * timed out (broadcast_timeout each step), after leave_propagate_delay. */
int gossip_leave(struct gossip *g, void (*cb)(void *arg, int err), void *arg);
/* Marks a failed member as left (Consul's force-leave); prune also forgets it at once. */
int gossip_force_leave(struct gossip *g, const char *node, bool prune);
/* Replaces our tags and re-announces them. CC_ETOOBIG if they encode past 512 bytes. */
int gossip_set_tags(struct gossip *g, const struct gossip_tag *tags, size_t n);
/* Fires a user event. It is delivered to our own on_user_event too (as serf does), from the
 * loop after this call returns. CC_ETOOBIG past the size limit. */
int gossip_user_event(struct gossip *g, const char *name, const void *payload, size_t len,
                      bool coalesce);

/* Sends a query to the members the params select (NULL: everyone, no ack); cb gets their acks
 * and responses, then DONE at the timeout (or with gossip_stop). Our own member receives it
 * too, as in serf. Returns 0, or CC_ETOOBIG past serf's 1 KiB query limit (cb never runs). */
int gossip_query(struct gossip *g, const char *name, const void *payload, size_t len,
                 const struct gossip_query_params *params, gossip_query_cb cb, void *arg);
/* Answers a query (once, before its deadline; at most 1 KiB encoded). CC_ETIMEOUT past the
 * deadline, CC_ETOOBIG when too large. */
int gossip_query_respond(struct gossip *g, const struct gossip_query_token *t, const void *payload,
                         size_t len);

/* serf's KeyManager: a key operation run as an internal query ("_serf_list-keys",
 * "_serf_install-key", "_serf_use-key", "_serf_remove-key") on every member, ourselves
 * included, and the tally of their answers (serf's KeyResponse). */
enum gossip_key_op { GOSSIP_KEY_LIST, GOSSIP_KEY_INSTALL, GOSSIP_KEY_USE, GOSSIP_KEY_REMOVE };

struct gossip_key_count {
  char key[48]; /* base64 */
  int count;
};

struct gossip_key_response {
  int num_nodes, num_resp, num_err;
  struct gossip_key_count *keys, *primary_keys; /* in first-seen order */
  size_t nkeys, nprimary_keys;
  char **msg_nodes, **msg_texts; /* per-node messages (errors, warnings) */
  size_t nmessages;
  char error[96]; /* "" when every member answered with success; else serf's sentence */
};

/* r is lent for the call. */
typedef void (*gossip_key_cb)(void *arg, const struct gossip_key_response *r);

/* Starts a key operation (key: base64, ignored for LIST). cb runs once, from the loop: when
 * every live member has answered, at the query timeout, or inside gossip_stop. Returns 0, or
 * CC_EINVAL with a sentence in errbuf for a key that is not base64 (cb never runs then). */
int gossip_key_op(struct gossip *g, enum gossip_key_op op, const char *key, gossip_key_cb cb,
                  void *arg, char *errbuf, size_t errlen);
/* Our own keyring as base64 strings, primary first, into out (up to max entries of 48 bytes).
 * Returns the count (0: encryption off). */
size_t gossip_local_keys(struct gossip *g, char (*out)[48], size_t max);

/* Snapshot of every known member (any status); the caller frees it. */
int gossip_members(struct gossip *g, struct gossip_member **out, size_t *n);
/* How many members gossip knows (what gossip_members would list), without copying them. */
size_t gossip_member_count(struct gossip *g);
void gossip_members_free(struct gossip_member *m, size_t n);
/* Our own member entry, copied into *out (free with gossip_member_free). */
int gossip_local_member(struct gossip *g, struct gossip_member *out);
void gossip_member_free(struct gossip_member *m);
/* The value of tag key on m, or NULL. */
const char *gossip_member_tag(const struct gossip_member *m, const char *key);
/* Lifeguard's health score (0 is healthy); for /v1/agent/self Stats. */
int gossip_health_score(struct gossip *g);

#endif
