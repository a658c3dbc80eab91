/* session_ttl.h -- the leader's session TTL timers (Consul's agent/consul/session_ttl.go): a
 * session with a TTL that is not renewed within TTL * 2 is destroyed through Raft, which
 * releases or deletes its locks.
 *
 * The deadlines themselves live in the state store (state/session.h: armed at create and
 * renew, memory only); this wrapper is the clockwork around them: a uv timer that, every
 * SESSION_TTL_TICK_MS, follows leadership (tracking on when this server leads, re-arming every
 * session as Consul's initializeSessionTimers does; off when it stops leading) and proposes a
 * destroy for each expired session. A destroy that fails (leadership lost, Raft busy) is
 * proposed again SESSION_TTL_RETRY_MS later while the session exists, as Consul retries
 * invalidateSession. Leadership is polled, not signalled, so the agent needs no second leader
 * callback; it costs at most one tick of delay (Consul's timers run on the leader only too).
 *
 * Wiring in agent.c (the agent owns the struct; it must outlive the loop run):
 *   after consensus starts:  session_ttl_start(&a->session_ttl, &a->loop, a->store, a->consensus);
 *   in agent_stop:           session_ttl_stop(&a->session_ttl);
 */
#ifndef CONCORD_AGENT_SESSION_TTL_H
#define CONCORD_AGENT_SESSION_TTL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "consensus/consensus.h"
#include "state/store.h"

#define SESSION_TTL_TICK_MS 250
#define SESSION_TTL_RETRY_MS 10000 /* Consul's invalidateRetryBase */
#define SESSION_TTL_BATCH 64       /* destroys proposed per tick at most */

struct session_ttl {
  uv_timer_t timer; /* owned; closed by session_ttl_stop */
  struct state_store *store;
  struct consensus *consensus;
  bool started, leader;
  uint64_t proposed; /* destroys proposed so far (tests, metrics) */
};

/* Starts the tick on loop. store and consensus are borrowed and must outlive the wrapper.
 * Returns 0 (nothing here can fail but a uv call, whose code is returned). */
int session_ttl_start(struct session_ttl *t, uv_loop_t *loop, struct state_store *store,
                      struct consensus *consensus);
/* One tick now (the timer calls it; tests too). */
void session_ttl_tick(struct session_ttl *t);
/* Stops the tick, turns tracking off, closes the timer (the struct must stay valid until the
 * loop has run the close). Safe to call when not started, and twice. */
void session_ttl_stop(struct session_ttl *t);

#endif
