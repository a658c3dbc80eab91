/* timer.h -- the protocol's own timers: a binary min-heap of deadlines, so the io needs only a
 * single "wake me at" (io.h). Timers are embedded in their owners (probe, suspicion, stream);
 * the callback gets the timer and finds its owner with container_of. */
#ifndef CONCORD_GOSSIP_TIMER_H
#define CONCORD_GOSSIP_TIMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GTIMER_IDLE SIZE_MAX

struct gtimer {
  uint64_t due;
  size_t idx; /* position in the heap, GTIMER_IDLE when not armed */
  void (*cb)(struct gtimer *t);
};

struct gtimers {
  struct gtimer **heap;
  size_t n, cap;
};

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))
#endif

static inline void gtimer_init(struct gtimer *t, void (*cb)(struct gtimer *t)) {
  t->due = 0;
  t->idx = GTIMER_IDLE;
  t->cb = cb;
}
static inline bool gtimer_armed(const struct gtimer *t) { return t->idx != GTIMER_IDLE; }

void gtimers_free(struct gtimers *h);
/* (Re)arms t to fire at due. */
void gtimers_arm(struct gtimers *h, struct gtimer *t, uint64_t due);
void gtimers_cancel(struct gtimers *h, struct gtimer *t);
/* The earliest deadline, or UINT64_MAX. */
uint64_t gtimers_next(const struct gtimers *h);
/* Removes and returns one timer due at or before now, or NULL. The caller runs its cb. */
struct gtimer *gtimers_pop_due(struct gtimers *h, uint64_t now);

#endif
