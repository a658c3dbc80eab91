/* plan.c -- the watch plan's loop logic (see watch.h), after Consul's api/watch/plan.go:
 * which query to send next, and what an answer means (fire, nothing, or retry).
 *
 * Consul's quirks kept on purpose, since handlers written for Consul count on them:
 *   - an error forgets the index (lastParamVal = nil), so the first answer after an error
 *     fires the handler again even if nothing changed: a handler sees the current state after
 *     every outage (agent restart, lost leader);
 *   - the event type's answer is pruned to the events after the one whose ID maps to the
 *     index we blocked on, and event indexes are hashes, not a clock, so "backwards" there is
 *     frequent and harmless (the next query simply does not block). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/jsonw.h"
#include "watch/watch.h"

void watch_plan_init(struct watch_plan *p, const struct watch_spec *spec)
{
  memset(p, 0, sizeof *p);
  p->spec = spec;
}

void watch_plan_free(struct watch_plan *p)
{
  json_decref(p->last_result);
  p->last_result = NULL;
}

/* Go's url.PathEscape rules for a path (EscapedPath keeps '/' and the sub-delims). */
static void esc_path(struct buf *out, const char *s)
{
  static const char keep[] = "-_.~$&+,/:;=@";
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
        strchr(keep, *c))
      buf_putc(out, (char)*c);
    else
      buf_printf(out, "%%%02X", *c);
  }
}

/* url.QueryEscape, with %20 for a space (both decode the same). */
static void esc_query(struct buf *out, const char *s)
{
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
        *c == '-' || *c == '_' || *c == '.' || *c == '~')
      buf_putc(out, (char)*c);
    else
      buf_printf(out, "%%%02X", *c);
  }
}

/* Appends "?name=value" or "&name=value"; parameters must come sorted by name, as Go's
 * Values.Encode sends them. */
static void param(struct buf *out, bool *first, const char *name, const char *value)
{
  buf_putc(out, *first ? '?' : '&');
  *first = false;
  buf_puts(out, name);
  buf_putc(out, '=');
  esc_query(out, value);
}

void watch_plan_target(const struct watch_plan *p, struct buf *out)
{
  const struct watch_spec *s = p->spec;
  bool first = true;
  char idx[32];
  snprintf(idx, sizeof idx, "%llu", (unsigned long long)p->last_index);
  bool send_index = p->have_last && p->last_index != 0; /* api: WaitIndex 0 is not sent */
  const char *dc = s->datacenter && s->datacenter[0] ? s->datacenter : NULL;
  switch (s->type) {
  case WATCH_KEY:
  case WATCH_KEYPREFIX:
    buf_puts(out, "/v1/kv/");
    esc_path(out, s->type == WATCH_KEY ? s->key : s->prefix);
    break;
  case WATCH_SERVICES:
    buf_puts(out, "/v1/catalog/services");
    break;
  case WATCH_NODES:
    buf_puts(out, "/v1/catalog/nodes");
    break;
  case WATCH_SERVICE:
    buf_puts(out, "/v1/health/service/");
    esc_path(out, s->service);
    break;
  case WATCH_CHECKS:
    if (s->state && s->state[0]) {
      buf_puts(out, "/v1/health/state/");
      esc_path(out, s->state);
    } else {
      buf_puts(out, "/v1/health/checks/");
      esc_path(out, s->service);
    }
    break;
  case WATCH_EVENT:
    buf_puts(out, "/v1/event/list");
    break;
  }
  /* Sorted: dc, index, name, passing, recurse, stale, tag. */
  if (dc) param(out, &first, "dc", dc);
  if (send_index) param(out, &first, "index", idx);
  if (s->type == WATCH_EVENT && s->name && s->name[0]) param(out, &first, "name", s->name);
  if (s->type == WATCH_SERVICE && s->passingonly) param(out, &first, "passing", "1");
  if (s->type == WATCH_KEYPREFIX) param(out, &first, "recurse", "");
  if (s->stale && s->type != WATCH_EVENT) param(out, &first, "stale", "");
  bool tags = s->type == WATCH_SERVICE || (s->type == WATCH_CHECKS && s->state && s->state[0]);
  if (tags && s->tags)
    for (char **t = s->tags; *t; t++) param(out, &first, "tag", *t);
}

uint64_t watch_event_index(const char *id)
{
  /* lower: the first three groups (8+4+4 hex), upper: the last two (4+12). */
  if (!id || strlen(id) != 36 || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-')
    return 0;
  char lo[17], hi[17];
  memcpy(lo, id, 8);
  memcpy(lo + 8, id + 9, 4);
  memcpy(lo + 12, id + 14, 4);
  lo[16] = '\0';
  memcpy(hi, id + 19, 4);
  memcpy(hi + 4, id + 24, 12);
  hi[16] = '\0';
  for (int i = 0; i < 16; i++)
    if (!strchr("0123456789abcdefABCDEF", lo[i]) || !strchr("0123456789abcdefABCDEF", hi[i]))
      return 0;
  return strtoull(lo, NULL, 16) ^ strtoull(hi, NULL, 16);
}

static enum watch_step retry(struct watch_plan *p, uint64_t *retry_ms, char *msg, size_t msglen,
                             const char *why)
{
  /* Consul: the watcher returns no index on error, so the plan forgets its index. */
  p->failures++;
  p->have_last = false;
  p->last_index = 0;
  uint64_t f = p->failures;
  uint64_t ms = f > 100 ? WATCH_RETRY_MAX_MS : WATCH_RETRY_BASE_MS * f * f;
  if (ms > WATCH_RETRY_MAX_MS) ms = WATCH_RETRY_MAX_MS;
  *retry_ms = ms;
  snprintf(msg, msglen, "%s", why);
  return WATCH_STEP_RETRY;
}

/* api.KVPair's field order (Key, CreateIndex, ModifyIndex, LockIndex, Flags, Value, then
 * the omitempty Session, Namespace, Partition), which is what Consul's handlers receive: the
 * api package decodes the agent's answer and encodes its own struct. */
static json_t *kv_api_order(json_t *pair)
{
  static const char *const order[] = {"Key", "CreateIndex", "ModifyIndex", "LockIndex",
                                      "Flags", "Value", "Session", "Namespace", "Partition"};
  if (!json_is_object(pair)) return json_incref(pair);
  json_t *o = json_object();
  for (size_t i = 0; i < sizeof order / sizeof *order; i++) {
    json_t *v = json_object_get(pair, order[i]);
    if (!v) continue;
    if (i >= 6 && json_is_string(v) && json_string_length(v) == 0) continue; /* omitempty */
    json_object_set(o, order[i], v);
  }
  return o;
}

/* Integers above INT64_MAX (KV Flags are uint64: Consul's semaphore flag is
 * 0xe0f69a2baa414de0) do not fit jansson's json_int_t. They are carried through as strings
 * holding this marker and the digits, and watch_encode prints them back as bare numbers. */
#define BIG_MARK "\0u64:"
#define BIG_MARK_LEN 5

static bool big_digits(const char *p, size_t n)
{
  /* More than 19 digits, or 19 that compare above INT64_MAX. */
  static const char max[] = "9223372036854775807";
  if (n > 1 && p[0] == '0') return false; /* not a JSON number; let jansson refuse it */
  return n > 19 || (n == 19 && memcmp(p, max, 19) > 0);
}

/* Copies body into out, quoting (with the marker) every unsigned integer token that is too
 * big for jansson. Returns false when there was none (out untouched). */
static bool wrap_big_ints(const char *body, size_t len, struct buf *out)
{
  bool any = false, in_str = false;
  size_t copied = 0;
  for (size_t i = 0; i < len; i++) {
    char c = body[i];
    if (in_str) {
      if (c == '\\') i++;
      else if (c == '"') in_str = false;
      continue;
    }
    if (c == '"') {
      in_str = true;
      continue;
    }
    /* A token starts here unless this digit continues a number (sign, fraction, exponent). */
    if (c < '0' || c > '9' || (i > 0 && (strchr("-+.eE", body[i - 1]) ||
                                        (body[i - 1] >= '0' && body[i - 1] <= '9'))))
      continue;
    size_t j = i;
    while (j < len && body[j] >= '0' && body[j] <= '9') j++;
    bool plain = j == len || (body[j] != '.' && body[j] != 'e' && body[j] != 'E');
    if (plain && big_digits(body + i, j - i)) {
      buf_append(out, body + copied, i - copied);
      buf_puts(out, "\"\\u0000u64:");
      buf_append(out, body + i, j - i);
      buf_putc(out, '"');
      copied = j;
      any = true;
    }
    i = j - 1;
  }
  if (any) buf_append(out, body + copied, len - copied);
  return any;
}

/* Decodes the answer into the value handed to the handler. Returns NULL with a reason. */
static json_t *decode(const struct watch_plan *p, int status, const char *body, size_t len,
                      char *msg, size_t msglen)
{
  const struct watch_spec *s = p->spec;
  bool kv = s->type == WATCH_KEY || s->type == WATCH_KEYPREFIX;
  if (kv && status == 404) return json_null(); /* a missing key (prefix): nil, no error */
  if (status != 200) {
    /* The api package's StatusError, body trimmed. */
    const char *b = body ? body : "";
    size_t n = len;
    while (n > 0 && (b[n - 1] == '\n' || b[n - 1] == ' ' || b[n - 1] == '\r')) n--;
    snprintf(msg, msglen, "Unexpected response code: %d (%.*s)", status, (int)(n > 512 ? 512 : n), b);
    return NULL;
  }
  json_error_t je;
  struct buf wrapped = BUF_INIT;
  if (body && wrap_big_ints(body, len, &wrapped)) {
    body = wrapped.data;
    len = wrapped.len;
  }
  json_t *v = json_loadb(body ? body : "", len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
  buf_free(&wrapped);
  if (!v) {
    snprintf(msg, msglen, "cannot decode the answer: %s", len ? je.text : "EOF");
    return NULL;
  }
  if (s->type == WATCH_KEY) {
    /* kv.Get hands out the first pair, not the list. */
    json_t *first = json_is_array(v) && json_array_size(v) ? kv_api_order(json_array_get(v, 0))
                                                            : json_null();
    json_decref(v);
    return first;
  }
  if (s->type == WATCH_KEYPREFIX && json_is_array(v)) {
    json_t *list = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) json_array_append_new(list, kv_api_order(e));
    json_decref(v);
    return list;
  }
  if (s->type == WATCH_EVENT && json_is_array(v) && p->have_last) {
    /* Only the events after the one we last reported. */
    for (size_t i = 0; i < json_array_size(v); i++) {
      const char *id = json_string_value(json_object_get(json_array_get(v, i), "ID"));
      if (watch_event_index(id) == p->last_index) {
        json_t *rest = json_array();
        for (size_t j = i + 1; j < json_array_size(v); j++)
          json_array_append(rest, json_array_get(v, j));
        json_decref(v);
        return rest;
      }
    }
  }
  return v;
}

enum watch_step watch_plan_feed(struct watch_plan *p, int status, const char *err_in,
                                bool has_index, uint64_t index, const char *body, size_t len,
                                const json_t **result, uint64_t *out_index, uint64_t *retry_ms,
                                char *msg, size_t msglen)
{
  *result = NULL;
  *out_index = 0;
  *retry_ms = 0;
  if (msglen) msg[0] = '\0';
  if (status == 0) return retry(p, retry_ms, msg, msglen, err_in ? err_in : "request failed");
  char why[768];
  json_t *v = decode(p, status, body, len, why, sizeof why);
  if (!v) return retry(p, retry_ms, msg, msglen, why);
  p->failures = 0;
  (void)has_index; /* an answer without the header is index 0, as in the api package */
  if (p->have_last && p->last_index == index) {
    json_decref(v);
    return WATCH_STEP_NONE;
  }
  bool had_last = p->have_last;
  /* WaitIndexVal.Next: an index that went backwards restarts from 0. */
  p->last_index = had_last && p->last_index > index ? 0 : index;
  p->have_last = true;
  if (had_last && p->last_result && json_equal(p->last_result, v)) {
    json_decref(v);
    return WATCH_STEP_NONE;
  }
  json_decref(p->last_result);
  p->last_result = v;
  *result = v;
  *out_index = index;
  return WATCH_STEP_FIRE;
}

/* ---- Go's encoding/json over a jansson tree ---- */

static void enc(struct jsonw *w, const json_t *v)
{
  switch (json_typeof(v)) {
  case JSON_OBJECT: {
    jsonw_object_begin(w);
    const char *k;
    json_t *e;
    json_object_foreach((json_t *)v, k, e) {
      jsonw_key(w, k);
      enc(w, e);
    }
    jsonw_object_end(w);
    break;
  }
  case JSON_ARRAY: {
    jsonw_array_begin(w);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) enc(w, e);
    jsonw_array_end(w);
    break;
  }
  case JSON_STRING: {
    const char *str = json_string_value(v);
    size_t n = json_string_length(v);
    if (n > BIG_MARK_LEN && memcmp(str, BIG_MARK, BIG_MARK_LEN) == 0)
      jsonw_raw(w, str + BIG_MARK_LEN, n - BIG_MARK_LEN); /* a uint64 above INT64_MAX */
    else
      jsonw_stringn(w, str, n);
    break;
  }
  case JSON_INTEGER:
    jsonw_i64(w, (int64_t)json_integer_value(v));
    break;
  case JSON_REAL: {
    char num[64];
    snprintf(num, sizeof num, "%.17g", json_real_value(v));
    jsonw_raw(w, num, strlen(num));
    break;
  }
  case JSON_TRUE:
    jsonw_bool(w, true);
    break;
  case JSON_FALSE:
    jsonw_bool(w, false);
    break;
  case JSON_NULL:
    jsonw_null(w);
    break;
  }
}

void watch_encode(const json_t *v, bool pretty, struct buf *out)
{
  struct jsonw w;
  jsonw_init(&w, out, pretty);
  enc(&w, v);
  if (!pretty) buf_putc(out, '\n');
}
