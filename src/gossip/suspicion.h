/* suspicion.h -- Lifeguard's suspicion timer and memberlist's timing formulas (suspicion.go,
 * util.go), kept apart from the state machine so the math can be tested on its own.
 *
 * When a member is suspected, the timer starts at max (SuspicionMaxTimeoutMult * min) if we
 * expect confirmations (k > 0), and each independent confirmation from another member shrinks
 * it toward min along a log curve: after n of k confirmations the total timeout is
 *   max - (log(n + 1) / log(k + 1)) * (max - min),   floored to the millisecond, at least min.
 * Many members independently suspecting a node is strong evidence it is dead, so we act fast;
 * a lone accuser (perhaps the one that is unhealthy) has to wait the long timeout, giving the
 * accused time to refute. */
#ifndef CONCORD_GOSSIP_SUSPICION_H
#define CONCORD_GOSSIP_SUSPICION_H

#include <stdbool.h>
#include <stdint.h>

#include "gossip/timer.h"

/* Who has confirmed: at most k + 1 names (k is small: SuspicionMult - 2). */
#define SUSPICION_MAX_CONFIRM 16

struct suspicion {
  uint32_t n, k;
  uint64_t min, max, start; /* ms */
  char *confirmations[SUSPICION_MAX_CONFIRM];
  uint32_t nconfirm;
  struct gtimer timer; /* owned by the caller's timer heap */
  void *owner;         /* the suspected member (swim.c's struct ml_node) */
};

/* Starts a suspicion raised by `from` (copied; suspicion_free releases the copies). Returns
 * the first deadline to arm. */
uint64_t suspicion_start(struct suspicion *s, const char *from, uint32_t k, uint64_t min,
                         uint64_t max, uint64_t now);
/* Records a confirmation (from is copied). Returns true if it was new (and should be re-gossiped); then
 * *new_due is the new deadline (may be <= now: fire at once). */
bool suspicion_confirm(struct suspicion *s, const char *from, uint64_t now, uint64_t *new_due);
void suspicion_free(struct suspicion *s);

/* The remaining time (may be negative) after `elapsed` ms with n of k confirmations. */
int64_t suspicion_remaining(uint32_t n, uint32_t k, uint64_t elapsed, uint64_t min, uint64_t max);
/* memberlist suspicionTimeout: mult * max(1, log10(max(1, n))) * interval. */
uint64_t suspicion_timeout(int mult, int n, uint64_t interval);
/* memberlist pushPullScale: the push-pull interval grows with log2(n) past 32 members. */
uint64_t push_pull_scale(uint64_t interval, int n);

#endif
