/* lock_kv.c -- the KV side of `concord lock`, step by step as Consul's api.Lock and
 * api.Semaphore do it, with blocking HTTP calls (cmd_lock.c runs the blocking steps in a
 * worker process so that it can wait on the child and on signals at the same time):
 *
 *   lock (-n 1): key <prefix>/.lock with Flags 0x2ddccbc058a50c18. Wait with blocking queries
 *     until it has no session, then PUT ?acquire=<session>; a refused acquire on a free key
 *     means a lock-delay is running, so wait 5 s. Held while the key names our session.
 *   semaphore (-n N): our contender key <prefix>/<session> (acquired with our session, whose
 *     behavior is "delete"), and <prefix>/.lock holding {"Limit":N,"Holders":{...}}, both
 *     with Flags 0xe0f69a2baa414de0. Read the prefix; drop holders whose session holds no key
 *     there; if there is room, add ourselves with a check-and-set. Held while we are on the
 *     holder list.
 *
 * Requests, parameters and error texts are the api package's ("failed to read lock: ..."),
 * since `consul lock` and `concord lock` may contend for one prefix. */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/lock.h"
#include "lib/alloc.h"

void cli__lock_free(struct cli__lock *l)
{
  free(l->key);
  free(l->session);
  l->key = l->session = NULL;
}

static int64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ns(int64_t ns)
{
  struct timespec ts = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static void set_u64(struct cli__query *q, const char *name, uint64_t v)
{
  char n[24];
  snprintf(n, sizeof(n), "%llu", (unsigned long long)v);
  cli__query_set(q, name, n);
}

/* A KV read: one key, or a prefix with recurse. 404 is no pairs, not an error. On failure
 * *retryable says whether it was a transport error or a 500 (api.IsRetryableError). */
struct kv_read {
  const char *path; /* key or prefix */
  bool recurse, consistent;
  uint64_t index;
  int64_t wait_ns; /* 0: the agent's default */
};
static int kv_get(struct cli__lock *l, const struct kv_read *r, struct cli__kvpair **pairs,
                  size_t *n, uint64_t *last_index, bool *retryable, char *err, size_t errlen)
{
  *pairs = NULL;
  *n = 0;
  if (retryable) *retryable = false;
  struct cli__query q;
  cli__query_init(&q);
  if (r->recurse) cli__query_set(&q, "recurse", "");
  if (r->consistent) cli__query_set(&q, "consistent", "");
  if (r->index) set_u64(&q, "index", r->index);
  if (r->wait_ns > 0) {
    /* durToMsec: whole milliseconds, at least 1. */
    char w[32];
    int64_t ms = r->wait_ns / 1000000;
    snprintf(w, sizeof(w), "%lldms", (long long)(ms ? ms : 1));
    cli__query_set(&q, "wait", w);
  }
  char *path = NULL;
  struct buf pb = BUF_INIT;
  buf_printf(&pb, "/v1/kv/%s", r->path);
  path = buf_steal(&pb, NULL);
  struct cli__http_resp resp;
  memset(&resp, 0, sizeof(resp));
  int rc = cli__client_call(l->ctx, l->client, "GET", path, &q, NULL, 0, false, &resp, err,
                            errlen);
  free(path);
  cli__query_free(&q);
  if (rc != 0) {
    if (retryable) *retryable = true;
    return -1;
  }
  *last_index = resp.index;
  if (resp.status == 404) {
    cli__http_resp_free(&resp);
    return 0;
  }
  if (resp.status != 200) {
    if (retryable) *retryable = resp.status == 500;
    cli__status_error(&resp, err, errlen);
    cli__http_resp_free(&resp);
    return -1;
  }
  rc = cli__kv_decode(resp.body.data ? resp.body.data : "", resp.body.len, pairs, n, err,
                      errlen);
  cli__http_resp_free(&resp);
  return rc;
}

/* A KV write answering true or false: ?acquire=, ?release=, ?cas= (PUT) or DELETE ?cas=.
 * Returns 1 (true), 0 (false) or -1 with the reason in err. */
static int kv_write(struct cli__lock *l, const char *method, const char *key, const char *op,
                    const char *opval, uint64_t flags, const char *body, size_t body_len,
                    char *err, size_t errlen)
{
  struct cli__query q;
  cli__query_init(&q);
  cli__query_set(&q, op, opval);
  if (flags) set_u64(&q, "flags", flags);
  struct buf pb = BUF_INIT;
  buf_printf(&pb, "/v1/kv/%s", key);
  struct cli__http_resp resp;
  memset(&resp, 0, sizeof(resp));
  bool put = strcmp(method, "PUT") == 0;
  int rc = cli__client_call(l->ctx, l->client, method, pb.data, &q, body, body_len, put, &resp,
                            err, errlen);
  buf_free(&pb);
  cli__query_free(&q);
  if (rc != 0) return -1;
  if (resp.status != 200) {
    cli__status_error(&resp, err, errlen);
    cli__http_resp_free(&resp);
    return -1;
  }
  /* The api package looks for "true" in the body. */
  rc = resp.body.data && memmem(resp.body.data, resp.body.len, "true", 4) ? 1 : 0;
  cli__http_resp_free(&resp);
  return rc;
}

static const struct cli__kvpair *find_pair(const struct cli__kvpair *pairs, size_t n,
                                           const char *key)
{
  for (size_t i = 0; i < n; i++)
    if (strcmp(pairs[i].key, key) == 0) return &pairs[i];
  return NULL;
}

/* One-shot mode (-timeout): before each query after the first, give up once the time is
 * spent, and let no query wait past it. Returns false when the time is up. */
static bool oneshot_wait(const struct cli__lock *l, int64_t start, int attempts, int64_t *wait)
{
  if (!l->oneshot || attempts == 0) return true;
  int64_t elapsed = now_ns() - start;
  if (elapsed > l->wait_ns) return false;
  *wait = l->wait_ns - elapsed;
  return true;
}

static enum cli__lock_result lock_acquire(struct cli__lock *l, char *err, size_t errlen)
{
  char e[CLI__ERRLEN];
  struct kv_read r = {.path = l->key,
                      .wait_ns = l->oneshot ? l->wait_ns : 15 * (int64_t)1000000000};
  int64_t start = now_ns();
  for (int attempts = 0;; attempts++) {
    if (!oneshot_wait(l, start, attempts, &r.wait_ns)) return CLI__LOCK_TIMEOUT;
    struct cli__kvpair *pairs;
    size_t n;
    uint64_t last;
    if (kv_get(l, &r, &pairs, &n, &last, NULL, e, sizeof(e)) != 0) {
      snprintf(err, errlen, "failed to read lock: %s", e);
      return CLI__LOCK_FAILED;
    }
    const struct cli__kvpair *p = find_pair(pairs, n, l->key);
    if (p && p->flags != CLI__LOCK_FLAG) {
      cli__kv_free(pairs, n);
      snprintf(err, errlen, "Existing key does not match lock use");
      return CLI__LOCK_FAILED;
    }
    bool ours = p && strcmp(p->session, l->session) == 0;
    bool taken = p && p->session[0];
    cli__kv_free(pairs, n);
    if (ours) return CLI__LOCK_ACQUIRED;
    if (taken) {
      r.index = last;
      continue;
    }
    int got = kv_write(l, "PUT", l->key, "acquire", l->session, CLI__LOCK_FLAG, "", 0, e,
                       sizeof(e));
    if (got < 0) {
      snprintf(err, errlen, "failed to acquire lock: %s", e);
      return CLI__LOCK_FAILED;
    }
    if (got == 1) return CLI__LOCK_ACQUIRED;
    /* Refused: someone took it first (wait on the key), or a lock-delay runs (wait 5 s). */
    struct kv_read now = r;
    now.index = 0;
    if (kv_get(l, &now, &pairs, &n, &last, NULL, err, errlen) != 0) return CLI__LOCK_FAILED;
    p = find_pair(pairs, n, l->key);
    taken = p && p->session[0];
    cli__kv_free(pairs, n);
    if (taken) {
      r.index = last;
      continue;
    }
    r.index = 0;
    sleep_ns(l->retry_ns);
  }
}

/* Reads the prefix and decodes the holder list (pruned). Returns 0, or -1 with err. */
static int sem_read(struct cli__lock *l, const struct kv_read *r, struct cli__sem *sem,
                    uint64_t *modify, uint64_t *last, bool *retryable, const char *what,
                    char *err, size_t errlen)
{
  char e[CLI__ERRLEN];
  struct cli__kvpair *pairs;
  size_t n;
  memset(sem, 0, sizeof(*sem));
  if (kv_get(l, r, &pairs, &n, last, retryable, e, sizeof(e)) != 0) {
    if (what) snprintf(err, errlen, "%s: %s", what, e);
    else snprintf(err, errlen, "%s", e);
    return -1;
  }
  const struct cli__kvpair *p = find_pair(pairs, n, l->key);
  int rc = -1;
  if (p && p->flags != CLI__SEM_FLAG) {
    snprintf(err, errlen, "Existing key does not match semaphore use");
    goto out;
  }
  if (cli__sem_decode(p ? p->value.data : NULL, p ? p->value.len : 0, l->limit, sem, err,
                      errlen) != 0)
    goto out;
  cli__sem_prune(sem, pairs, n);
  *modify = p ? p->modify_index : 0;
  rc = 0;
out:
  cli__kv_free(pairs, n);
  return rc;
}

static enum cli__lock_result sem_acquire(struct cli__lock *l, char *err, size_t errlen)
{
  char e[CLI__ERRLEN];
  char *contender = cli__path_join(l->prefix, l->session);
  int made = kv_write(l, "PUT", contender, "acquire", l->session, CLI__SEM_FLAG, "", 0, e,
                      sizeof(e));
  free(contender);
  if (made != 1) {
    /* Go prints a nil error as "<nil>" when the agent merely said false. */
    snprintf(err, errlen, "failed to make contender entry: %s", made < 0 ? e : "<nil>");
    return CLI__LOCK_FAILED;
  }
  struct kv_read r = {.path = l->prefix, .recurse = true,
                      .wait_ns = l->oneshot ? l->wait_ns : 15 * (int64_t)1000000000};
  int64_t start = now_ns();
  for (int attempts = 0;; attempts++) {
    if (!oneshot_wait(l, start, attempts, &r.wait_ns)) return CLI__LOCK_TIMEOUT;
    struct cli__sem sem;
    uint64_t modify, last;
    if (sem_read(l, &r, &sem, &modify, &last, NULL, "failed to read prefix", err, errlen) != 0) {
      cli__sem_free(&sem);
      return CLI__LOCK_FAILED;
    }
    if (sem.limit != l->limit) {
      snprintf(err, errlen, "semaphore limit conflict (lock: %lld, local: %lld)",
               (long long)sem.limit, (long long)l->limit);
      cli__sem_free(&sem);
      return CLI__LOCK_FAILED;
    }
    if ((int64_t)sem.n >= sem.limit) {
      cli__sem_free(&sem);
      r.index = last;
      continue;
    }
    cli__sem_add(&sem, l->session);
    struct buf body = BUF_INIT;
    cli__sem_encode(&sem, &body);
    cli__sem_free(&sem);
    char cas[24];
    snprintf(cas, sizeof(cas), "%llu", (unsigned long long)modify);
    int set = kv_write(l, "PUT", l->key, "cas", cas, CLI__SEM_FLAG, body.data, body.len, e,
                       sizeof(e));
    buf_free(&body);
    if (set < 0) {
      snprintf(err, errlen, "failed to update lock: %s", e);
      return CLI__LOCK_FAILED;
    }
    if (set == 1) return CLI__LOCK_ACQUIRED;
    /* Another contender wrote first: read again (the index moved, so no wait). */
  }
}

enum cli__lock_result cli__lock_acquire(struct cli__lock *l, char *err, size_t errlen)
{
  return l->limit == 1 ? lock_acquire(l, err, errlen) : sem_acquire(l, err, errlen);
}

void cli__lock_monitor(struct cli__lock *l)
{
  char e[CLI__ERRLEN];
  struct kv_read r = {.path = l->limit == 1 ? l->key : l->prefix, .recurse = l->limit != 1,
                      .consistent = true};
  for (;;) {
    int64_t retries = l->monitor_retries;
    bool held = false;
    for (;;) {
      bool retryable = false;
      uint64_t last = 0;
      int rc;
      if (l->limit == 1) {
        struct cli__kvpair *pairs;
        size_t n;
        rc = kv_get(l, &r, &pairs, &n, &last, &retryable, e, sizeof(e));
        if (rc == 0) {
          const struct cli__kvpair *p = find_pair(pairs, n, l->key);
          held = p && strcmp(p->session, l->session) == 0;
          cli__kv_free(pairs, n);
        }
      } else {
        struct cli__sem sem;
        uint64_t modify;
        rc = sem_read(l, &r, &sem, &modify, &last, &retryable, NULL, e, sizeof(e));
        if (rc == 0) held = cli__sem_has(&sem, l->session);
        cli__sem_free(&sem);
      }
      if (rc == 0) {
        r.index = last;
        break;
      }
      /* Ride out a short outage: retry without blocking, so that a success resets the
       * count. A conflict or a bad entry is not retried. */
      if (retries > 0 && retryable) {
        sleep_ns(l->monitor_retry_ns);
        retries--;
        r.index = 0;
        continue;
      }
      return;
    }
    if (!held) return;
  }
}

int cli__lock_release(struct cli__lock *l, char *err, size_t errlen)
{
  char e[CLI__ERRLEN];
  if (l->limit == 1) {
    if (kv_write(l, "PUT", l->key, "release", l->session, CLI__LOCK_FLAG, "", 0, e,
                 sizeof(e)) < 0) {
      snprintf(err, errlen, "failed to release lock: %s", e);
      return -1;
    }
    return 0;
  }
  /* Take ourselves off the holder list (check-and-set, again on a race), then delete our
   * contender key. Unlike the acquire path this reads without pruning the dead, as Consul. */
  for (int tries = 0;; tries++) {
    struct cli__kvpair *pairs;
    size_t n;
    uint64_t last;
    struct kv_read r = {.path = l->key};
    if (kv_get(l, &r, &pairs, &n, &last, NULL, err, errlen) != 0) return -1;
    const struct cli__kvpair *p = find_pair(pairs, n, l->key);
    struct cli__sem sem;
    if (cli__sem_decode(p ? p->value.data : NULL, p ? p->value.len : 0, l->limit, &sem, err,
                        errlen) != 0) {
      cli__sem_free(&sem);
      cli__kv_free(pairs, n);
      return -1;
    }
    uint64_t modify = p ? p->modify_index : 0;
    cli__kv_free(pairs, n);
    if (!cli__sem_remove(&sem, l->session)) {
      cli__sem_free(&sem);
      break;
    }
    struct buf body = BUF_INIT;
    cli__sem_encode(&sem, &body);
    cli__sem_free(&sem);
    char cas[24];
    snprintf(cas, sizeof(cas), "%llu", (unsigned long long)modify);
    int set = kv_write(l, "PUT", l->key, "cas", cas, CLI__SEM_FLAG, body.data, body.len, e,
                       sizeof(e));
    buf_free(&body);
    if (set < 0) {
      snprintf(err, errlen, "failed to update lock: %s", e);
      return -1;
    }
    if (set == 1) break;
    if (tries >= 1000) { /* a bound Consul lacks: never spin forever against a busy entry */
      snprintf(err, errlen, "failed to update lock: too many conflicting updates");
      return -1;
    }
  }
  char *contender = cli__path_join(l->prefix, l->session);
  struct buf pb = BUF_INIT;
  buf_printf(&pb, "/v1/kv/%s", contender);
  free(contender);
  struct cli__http_resp resp;
  memset(&resp, 0, sizeof(resp));
  int rc = cli__client_call(l->ctx, l->client, "DELETE", pb.data, NULL, NULL, 0, false, &resp,
                            err, errlen);
  buf_free(&pb);
  if (rc == 0 && resp.status != 200) {
    cli__status_error(&resp, err, errlen);
    rc = -1;
  }
  cli__http_resp_free(&resp);
  return rc;
}

int cli__lock_cleanup(struct cli__lock *l, char *err, size_t errlen)
{
  char e[CLI__ERRLEN];
  uint64_t modify, last;
  if (l->limit == 1) {
    struct cli__kvpair *pairs;
    size_t n;
    struct kv_read r = {.path = l->key};
    if (kv_get(l, &r, &pairs, &n, &last, NULL, e, sizeof(e)) != 0) {
      snprintf(err, errlen, "failed to read lock: %s", e);
      return -1;
    }
    const struct cli__kvpair *p = find_pair(pairs, n, l->key);
    if (!p) {
      cli__kv_free(pairs, n);
      return 0;
    }
    uint64_t flags = p->flags;
    bool in_use = p->session[0] != '\0';
    modify = p->modify_index;
    cli__kv_free(pairs, n);
    if (flags != CLI__LOCK_FLAG) {
      snprintf(err, errlen, "Existing key does not match lock use");
      return -1;
    }
    if (in_use) return 1;
  } else {
    struct cli__sem sem;
    struct kv_read r = {.path = l->prefix, .recurse = true};
    if (sem_read(l, &r, &sem, &modify, &last, NULL, "failed to read prefix", err, errlen) != 0) {
      cli__sem_free(&sem);
      return -1;
    }
    size_t holders = sem.n;
    cli__sem_free(&sem);
    if (modify == 0) return 0; /* no entry */
    if (holders > 0) return 1;
  }
  char cas[24];
  snprintf(cas, sizeof(cas), "%llu", (unsigned long long)modify);
  int gone = kv_write(l, "DELETE", l->key, "cas", cas, 0, NULL, 0, e, sizeof(e));
  if (gone < 0) {
    snprintf(err, errlen, "failed to remove %s: %s", l->limit == 1 ? "lock" : "semaphore", e);
    return -1;
  }
  return gone == 1 ? 0 : 1;
}
