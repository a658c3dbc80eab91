/* lock_sem.c -- the semaphore's coordination entry `<prefix>/.lock` as Consul's api.Semaphore
 * reads and writes it: {"Limit":3,"Holders":{"<session>":true}}. Every contender decodes it,
 * drops holders whose session no longer holds a key under the prefix, and writes it back with
 * a check-and-set; so the decoder must accept whatever Go's encoding/json would (another
 * contender may be `consul lock`), and the encoder must write what Go writes. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "cli/lock.h"
#include "lib/gojson.h"
#include "lib/alloc.h"
#include "lib/jsonw.h"

void cli__sem_free(struct cli__sem *s)
{
  for (size_t i = 0; i < s->n; i++) free(s->h[i].session);
  free(s->h);
  memset(s, 0, sizeof(*s));
}

/* Binary search: the index of session, or where it would go (*found false). */
static size_t sem_find(const struct cli__sem *s, const char *session, bool *found)
{
  size_t lo = 0, hi = s->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(s->h[mid].session, session);
    if (c == 0) {
      *found = true;
      return mid;
    }
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  *found = false;
  return lo;
}

bool cli__sem_has(const struct cli__sem *s, const char *session)
{
  bool found;
  sem_find(s, session, &found);
  return found;
}

/* Sets session's value, adding it when absent. */
static void sem_set(struct cli__sem *s, const char *session, bool value)
{
  bool found;
  size_t i = sem_find(s, session, &found);
  if (found) {
    s->h[i].value = value;
    return;
  }
  s->h = xrealloc(s->h, (s->n + 1) * sizeof(*s->h));
  memmove(&s->h[i + 1], &s->h[i], (s->n - i) * sizeof(*s->h));
  s->h[i].session = xstrdup(session);
  s->h[i].value = value;
  s->n++;
}

bool cli__sem_add(struct cli__sem *s, const char *session)
{
  bool had = cli__sem_has(s, session);
  sem_set(s, session, true);
  return !had;
}

bool cli__sem_remove(struct cli__sem *s, const char *session)
{
  bool found;
  size_t i = sem_find(s, session, &found);
  if (!found) return false;
  free(s->h[i].session);
  memmove(&s->h[i], &s->h[i + 1], (s->n - i - 1) * sizeof(*s->h));
  s->n--;
  return true;
}

/* Go's name for a JSON value's kind in "cannot unmarshal X into ..." errors. */
int cli__sem_decode(const char *val, size_t len, int64_t def_limit, struct cli__sem *s,
                    char *err, size_t errlen)
{
  memset(s, 0, sizeof(*s));
  if (!val || len == 0) {
    /* No entry yet (or an empty value, which the agent reports as null): a fresh one. */
    s->limit = def_limit;
    return 0;
  }
  json_error_t je;
  json_t *root = json_loadb(val, len, JSON_DECODE_ANY, &je);
  if (!root) {
    snprintf(err, errlen, "lock decoding failed: %s", je.text);
    return -1;
  }
  int rc = 0;
  if (json_is_null(root)) goto done; /* Go leaves the zero value: Limit 0, no holders */
  if (!json_is_object(root)) {
    snprintf(err, errlen, "lock decoding failed: json: cannot unmarshal %s into Go value of "
             "type api.semaphoreLock", json_go_kind(root));
    rc = -1;
    goto done;
  }
  const char *k;
  json_t *v;
  json_object_foreach(root, k, v)
  {
    if (strcasecmp(k, "Limit") == 0) {
      if (json_is_null(v)) continue;
      if (!json_is_integer(v)) {
        snprintf(err, errlen, "lock decoding failed: json: cannot unmarshal %s into Go struct "
                 "field semaphoreLock.Limit of type int", json_go_kind(v));
        rc = -1;
        goto done;
      }
      s->limit = (int64_t)json_integer_value(v);
    } else if (strcasecmp(k, "Holders") == 0) {
      if (json_is_null(v)) continue;
      if (!json_is_object(v)) {
        snprintf(err, errlen, "lock decoding failed: json: cannot unmarshal %s into Go struct "
                 "field semaphoreLock.Holders of type map[string]bool", json_go_kind(v));
        rc = -1;
        goto done;
      }
      if (json_object_size(v) > CLI__SEM_MAX_HOLDERS) {
        snprintf(err, errlen, "lock decoding failed: more than %d holders",
                 CLI__SEM_MAX_HOLDERS);
        rc = -1;
        goto done;
      }
      const char *hk;
      json_t *hv;
      json_object_foreach(v, hk, hv)
      {
        if (!json_is_boolean(hv) && !json_is_null(hv)) {
          snprintf(err, errlen, "lock decoding failed: json: cannot unmarshal %s into Go "
                   "struct field semaphoreLock.Holders of type bool", json_go_kind(hv));
          rc = -1;
          goto done;
        }
        sem_set(s, hk, json_is_true(hv));
      }
    }
  }
done:
  json_decref(root);
  return rc;
}

void cli__sem_prune(struct cli__sem *s, const struct cli__kvpair *pairs, size_t n)
{
  size_t keep = 0;
  for (size_t i = 0; i < s->n; i++) {
    bool alive = false;
    for (size_t j = 0; j < n && !alive; j++)
      alive = pairs[j].session && pairs[j].session[0] &&
              strcmp(pairs[j].session, s->h[i].session) == 0;
    if (alive) s->h[keep++] = s->h[i];
    else free(s->h[i].session);
  }
  s->n = keep;
}

void cli__sem_encode(const struct cli__sem *s, struct buf *out)
{
  struct jsonw w;
  jsonw_init(&w, out, false);
  jsonw_object_begin(&w);
  jsonw_key(&w, "Limit");
  jsonw_i64(&w, s->limit);
  jsonw_key(&w, "Holders");
  jsonw_object_begin(&w);
  for (size_t i = 0; i < s->n; i++) {
    jsonw_key(&w, s->h[i].session);
    jsonw_bool(&w, s->h[i].value);
  }
  jsonw_object_end(&w);
  jsonw_object_end(&w);
}
