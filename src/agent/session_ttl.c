/* session_ttl.c -- the leader's session TTL clockwork (see session_ttl.h). */
#include "agent/session_ttl.h"

#include <string.h>

#include "lib/buf.h"
#include "lib/err.h"
#include "lib/log.h"
#include "state/cmd.h"
#include "state/session.h"

static void destroyed(void *arg, int status, const struct state_cmd_result *res, uint64_t index)
{
  (void)arg;
  (void)res;
  if (status == 0)
    log_debug("session", "expired session destroyed at index %llu", (unsigned long long)index);
  else
    log_debug("session", "expired session not destroyed (%s); will retry", cc_strerror(status));
}

void session_ttl_tick(struct session_ttl *t)
{
  bool leader = t->consensus && consensus_is_leader(t->consensus);
  if (leader != t->leader) {
    /* Gaining leadership arms every TTL session afresh at now + TTL*2, as Consul's
     * initializeSessionTimers; losing it forgets them (clearAllSessionTimers). */
    state_session_ttl_track(t->store, leader);
    t->leader = leader;
  }
  if (!leader) return;
  char ids[SESSION_TTL_BATCH][STATE_SESSION_ID_LEN + 1];
  size_t n = state_session_ttl_expired(t->store, ids, SESSION_TTL_BATCH, SESSION_TTL_RETRY_MS);
  for (size_t i = 0; i < n; i++) {
    struct buf cmd = BUF_INIT;
    state_cmd_encode_session_destroy(&cmd, ids[i]);
    int rv = consensus_apply(t->consensus, &cmd, destroyed, NULL);
    buf_free(&cmd);
    if (rv != 0) {
      log_debug("session", "cannot propose the destroy of expired session %s: %s", ids[i],
                cc_strerror(rv));
      continue; /* its deadline moved SESSION_TTL_RETRY_MS ahead: retried then */
    }
    t->proposed++;
    log_info("session", "session %s expired (TTL * %d without a renew): destroying", ids[i],
             STATE_SESSION_TTL_MULTIPLIER);
  }
}

static void on_timer(uv_timer_t *timer) { session_ttl_tick(timer->data); }

int session_ttl_start(struct session_ttl *t, uv_loop_t *loop, struct state_store *store,
                      struct consensus *consensus)
{
  memset(t, 0, sizeof *t);
  t->store = store;
  t->consensus = consensus;
  int rv = uv_timer_init(loop, &t->timer);
  if (rv != 0) return rv;
  t->timer.data = t;
  t->started = true;
  return uv_timer_start(&t->timer, on_timer, SESSION_TTL_TICK_MS, SESSION_TTL_TICK_MS);
}

void session_ttl_stop(struct session_ttl *t)
{
  if (!t->started) return;
  t->started = false;
  if (t->leader) state_session_ttl_track(t->store, false);
  t->leader = false;
  uv_timer_stop(&t->timer);
  uv_close((uv_handle_t *)&t->timer, NULL);
}
