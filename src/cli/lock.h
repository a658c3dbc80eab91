/* lock.h -- what `concord lock` (cmd_lock.c) shares with its helpers: the semaphore's
 * coordination entry (lock_sem.c) and the blocking acquire / monitor / release / cleanup
 * steps of a lock or semaphore in KV (lock_kv.c), laid out as Consul's api.Lock and
 * api.Semaphore lay them out so that `consul lock` and `concord lock` contend correctly on the
 * same prefix. Private to cli/. */
#ifndef CONCORD_CLI_LOCK_H
#define CONCORD_CLI_LOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli/internal.h"
#include "lib/buf.h"

/* Consul's magic Flags values: a lock key and a semaphore's keys carry them so that a lock
 * and a semaphore on one prefix are detected as a conflict. */
#define CLI__LOCK_FLAG 0x2ddccbc058a50c18ULL
#define CLI__SEM_FLAG 0xe0f69a2baa414de0ULL
/* The key under the prefix: the lock itself (-n 1) or the semaphore's holder list. */
#define CLI__LOCK_KEY ".lock"
/* Caps: a holder list longer than this is refused as corrupt (no -n is that large in
 * practice, and the list is rewritten on every acquisition). */
#define CLI__SEM_MAX_HOLDERS 4096

/* ---- The semaphore's `.lock` entry: {"Limit":N,"Holders":{"<session>":true,...}} ---- */

struct cli__sem_holder {
  char *session; /* owned */
  bool value;    /* what the map says (Consul writes true; a false entry still counts) */
};
struct cli__sem {
  int64_t limit;
  struct cli__sem_holder *h; /* owned, sorted by session */
  size_t n;
};
/* Decodes the entry's value as Go's json.Unmarshal into struct{Limit int; Holders
 * map[string]bool} does (field names case-insensitive, unknown fields ignored). An absent or
 * empty value is a fresh entry with def_limit and no holders. Returns 0, or -1 with the
 * reason in err ("lock decoding failed: ..."). s is filled either way; cli__sem_free it. */
int cli__sem_decode(const char *val, size_t len, int64_t def_limit, struct cli__sem *s,
                    char *err, size_t errlen);
void cli__sem_free(struct cli__sem *s);
/* Drops holders that no live session holds a key under the prefix for (pruneDeadHolders). */
void cli__sem_prune(struct cli__sem *s, const struct cli__kvpair *pairs, size_t n);
bool cli__sem_has(const struct cli__sem *s, const char *session);
/* Adds (true) or removes a holder. Returns whether the set changed. */
bool cli__sem_add(struct cli__sem *s, const char *session);
bool cli__sem_remove(struct cli__sem *s, const char *session);
/* json.Marshal of the entry: Limit first, Holders with keys sorted, no spaces. */
void cli__sem_encode(const struct cli__sem *s, struct buf *out);

/* ---- The KV steps (blocking HTTP calls) ---- */

struct cli__lock {
  struct cli__ctx *ctx;
  const struct cli__client *client;
  const char *prefix;  /* the prefix argument without one leading "/" (borrowed) */
  char *key;           /* path.Join(prefix, ".lock") (owned) */
  int64_t limit;       /* 1: a lock; more: a semaphore */
  char *session;       /* our session ID (owned) */
  bool oneshot;        /* -timeout given: one bounded attempt */
  int64_t wait_ns;     /* -timeout */
  int64_t monitor_retries;
  int64_t monitor_retry_ns;
  int64_t retry_ns;    /* wait after a refused acquire during lock-delay (Consul: 5 s) */
};
void cli__lock_free(struct cli__lock *l);

enum cli__lock_result {
  CLI__LOCK_ACQUIRED = 0,
  CLI__LOCK_TIMEOUT = 1, /* -timeout passed first */
  CLI__LOCK_FAILED = -1, /* reason in err */
};
/* Blocks until the lock (or a semaphore slot) is ours, using blocking queries. For a
 * semaphore it first writes our contender key. */
enum cli__lock_result cli__lock_acquire(struct cli__lock *l, char *err, size_t errlen);
/* Blocks while we still hold it; returns when it is lost (the key taken or released, our
 * session gone, or the agent unreachable past the monitor retries). */
void cli__lock_monitor(struct cli__lock *l);
/* Gives it up: releases the lock key, or takes us off the holder list and deletes our
 * contender key. Returns 0, or -1 with the reason in err. */
int cli__lock_release(struct cli__lock *l, char *err, size_t errlen);
/* Deletes the key (or the semaphore entry) when nobody holds it. Returns 0 (removed or
 * absent), 1 when it is in use, or -1 with the reason in err. */
int cli__lock_cleanup(struct cli__lock *l, char *err, size_t errlen);

#endif
