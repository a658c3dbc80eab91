/* kv_data.c -- the JSON the kv commands read and write: KV answers from the agent
 * (api.KVPair, values in base64), the `kv get -detailed` table, and the export/import format
 * of Consul's command/kv/impexp ([{"key","flags","value"}], tab-indented, as Go's
 * json.MarshalIndent writes it, so an export from Concord imports into Consul and back).
 *
 * Flags and indexes are uint64. Jansson keeps integers in a signed 64-bit type and refuses
 * bigger ones, so when a document holds an integer above INT64_MAX we parse it a second time
 * after turning such literals into marked strings, and read them back exactly. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "cli/internal.h"
#include "lib/gojson.h"
#include "lib/alloc.h"
#include "lib/b64.h"
#include "lib/jsonw.h"

/* Marks a string that stands for an integer too big for jansson (see big_ints_quoted). */
#define BIG_MARK '\x01'

/* Copies json with every unsigned integer literal above INT64_MAX turned into the string
 * "\u0001<digits>". Strings are skipped over, escapes included. Caller frees. */
static char *big_ints_quoted(const char *s, size_t n, size_t *outlen)
{
  struct buf b = BUF_INIT;
  bool in_str = false;
  for (size_t i = 0; i < n;) {
    char c = s[i];
    if (in_str) {
      buf_putc(&b, c);
      if (c == '\\' && i + 1 < n) {
        buf_putc(&b, s[i + 1]);
        i += 2;
        continue;
      }
      if (c == '"') in_str = false;
      i++;
      continue;
    }
    if (c == '"') {
      in_str = true;
      buf_putc(&b, c);
      i++;
      continue;
    }
    if ((c >= '0' && c <= '9') || c == '-') {
      size_t j = i;
      bool plain = c != '-';
      while (j < n && strchr("0123456789+-.eE", s[j]) && s[j] != '\0') {
        if (!(s[j] >= '0' && s[j] <= '9')) plain = false;
        j++;
      }
      size_t len = j - i;
      bool big = plain && (len > 19 || (len == 19 && memcmp(s + i, "9223372036854775807",
                                                            19) > 0));
      if (big) {
        buf_puts(&b, "\"\\u0001");
        buf_append(&b, s + i, len);
        buf_putc(&b, '"');
      } else {
        buf_append(&b, s + i, len);
      }
      i = j;
      continue;
    }
    buf_putc(&b, c);
    i++;
  }
  if (!b.data) buf_reserve(&b, 0), b.data[0] = '\0';
  return buf_steal(&b, outlen);
}

/* Loads a JSON document (any value at the top). Returns NULL with Jansson's reason in err. */
static json_t *load(const char *s, size_t n, char *err, size_t errlen)
{
  json_error_t je;
  json_t *j = json_loadb(s, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
  if (j) return j;
  if (strstr(je.text, "too big integer")) {
    size_t qn;
    char *q = big_ints_quoted(s, n, &qn);
    j = json_loadb(q, qn, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    free(q);
    if (j) return j;
  }
  snprintf(err, errlen, "%s", je.text);
  return NULL;
}

/* A uint64 field: an integer, a marked big integer, or null (Go leaves it 0). */
static int get_u64(const json_t *v, const char *field, uint64_t *out, char *err,
                   size_t errlen)
{
  if (!v || json_is_null(v)) return 0;
  if (json_is_integer(v) && json_integer_value(v) >= 0) {
    *out = (uint64_t)json_integer_value(v);
    return 0;
  }
  if (json_is_string(v) && json_string_length(v) > 1 && json_string_value(v)[0] == BIG_MARK) {
    errno = 0;
    char *end;
    unsigned long long x = strtoull(json_string_value(v) + 1, &end, 10);
    if (errno == 0 && *end == '\0') {
      *out = x;
      return 0;
    }
    snprintf(err, errlen, "json: cannot unmarshal number %s into Go struct field %s of type "
             "uint64", json_string_value(v) + 1, field);
    return -1;
  }
  snprintf(err, errlen, "json: cannot unmarshal %s into Go struct field %s of type uint64",
           json_go_kind(v), field);
  return -1;
}

/* A string field, or null/absent (""). Caller frees *out. */
static int get_str(const json_t *v, const char *field, char **out, char *err, size_t errlen)
{
  free(*out);
  *out = NULL;
  if (!v || json_is_null(v)) {
    *out = xstrdup("");
    return 0;
  }
  if (!json_is_string(v)) {
    snprintf(err, errlen, "json: cannot unmarshal %s into Go struct field %s of type string",
             json_go_kind(v), field);
    *out = xstrdup("");
    return -1;
  }
  *out = xmemdup(json_string_value(v), json_string_length(v));
  return 0;
}

/* ---- KV answers ---- */

void cli__kv_free(struct cli__kvpair *pairs, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    free(pairs[i].key);
    free(pairs[i].session);
    free(pairs[i].ns);
    free(pairs[i].partition);
    buf_free(&pairs[i].value);
  }
  free(pairs);
}

/* Go's decoder matches names case-insensitively, the last match in the document winning. */
static const json_t *field(const json_t *obj, const char *name)
{
  const char *k;
  const json_t *v, *found = NULL;
  json_object_foreach((json_t *)obj, k, v) {
    if (strcasecmp(k, name) == 0) found = v;
  }
  return found;
}

int cli__kv_decode(const char *json, size_t len, struct cli__kvpair **pairs, size_t *n,
                   char *err, size_t errlen)
{
  *pairs = NULL;
  *n = 0;
  json_t *root = load(json, len, err, errlen);
  if (!root) return -1;
  int rc = 0;
  if (json_is_null(root)) goto done;
  if (!json_is_array(root)) {
    snprintf(err, errlen, "json: cannot unmarshal %s into Go value of type []*api.KVPair",
             json_go_kind(root));
    rc = -1;
    goto done;
  }
  size_t cnt = json_array_size(root);
  if (cnt == 0) goto done;
  struct cli__kvpair *ps = xcalloc(cnt, sizeof(*ps));
  size_t got = 0;
  for (size_t i = 0; i < cnt && rc == 0; i++) {
    const json_t *o = json_array_get(root, i);
    if (json_is_null(o)) continue;
    if (!json_is_object(o)) {
      snprintf(err, errlen, "json: cannot unmarshal %s into Go value of type api.KVPair",
               json_go_kind(o));
      rc = -1;
      break;
    }
    struct cli__kvpair *p = &ps[got++];
    char *b64 = NULL;
    if (get_str(field(o, "Key"), "KVPair.Key", &p->key, err, errlen) ||
        get_str(field(o, "Session"), "KVPair.Session", &p->session, err, errlen) ||
        get_str(field(o, "Namespace"), "KVPair.Namespace", &p->ns, err, errlen) ||
        get_str(field(o, "Partition"), "KVPair.Partition", &p->partition, err, errlen) ||
        get_u64(field(o, "Flags"), "KVPair.Flags", &p->flags, err, errlen) ||
        get_u64(field(o, "CreateIndex"), "KVPair.CreateIndex", &p->create_index, err,
                errlen) ||
        get_u64(field(o, "ModifyIndex"), "KVPair.ModifyIndex", &p->modify_index, err,
                errlen) ||
        get_u64(field(o, "LockIndex"), "KVPair.LockIndex", &p->lock_index, err, errlen) ||
        get_str(field(o, "Value"), "KVPair.Value", &b64, err, errlen)) {
      free(b64);
      rc = -1;
      break;
    }
    size_t bl = strlen(b64);
    buf_reserve(&p->value, bl / 4 * 3 + 3);
    size_t outlen = 0;
    if (b64_decode(b64, bl, (uint8_t *)p->value.data, &outlen) != 0) {
      snprintf(err, errlen, "illegal base64 data in the Value of key %s", p->key);
      free(b64);
      rc = -1;
      break;
    }
    p->value.len = outlen;
    p->value.data[outlen] = '\0';
    free(b64);
  }
  if (rc != 0 || got == 0) {
    cli__kv_free(ps, got);
  } else {
    *pairs = ps;
    *n = got;
  }
done:
  json_decref(root);
  return rc;
}

void cli__kv_pretty(struct buf *out, const struct cli__kvpair *p, bool base64, bool keys_only)
{
  /* Go's tabwriter(minwidth 0, padding 6): the name column is as wide as the widest name
   * present plus six. */
  const char *names[] = {"CreateIndex", "Flags", "Key", "LockIndex", "ModifyIndex",
                         "Session", "Partition", "Namespace", "Value"};
  int w = 11 + 6; /* "CreateIndex" and "ModifyIndex" are always there and the widest */
  buf_printf(out, "%-*s%llu\n", w, names[0], (unsigned long long)p->create_index);
  buf_printf(out, "%-*s%llu\n", w, names[1], (unsigned long long)p->flags);
  buf_printf(out, "%-*s%s\n", w, names[2], p->key);
  buf_printf(out, "%-*s%llu\n", w, names[3], (unsigned long long)p->lock_index);
  buf_printf(out, "%-*s%llu\n", w, names[4], (unsigned long long)p->modify_index);
  buf_printf(out, "%-*s%s\n", w, names[5], p->session && p->session[0] ? p->session : "-");
  if (p->partition && p->partition[0]) buf_printf(out, "%-*s%s\n", w, names[6], p->partition);
  if (p->ns && p->ns[0]) buf_printf(out, "%-*s%s\n", w, names[7], p->ns);
  if (keys_only) return;
  buf_printf(out, "%-*s", w, names[8]);
  if (base64) {
    char *enc = xmalloc(b64_encoded_len(p->value.len) + 1);
    b64_encode(p->value.data, p->value.len, enc);
    buf_puts(out, enc);
    free(enc);
  } else {
    buf_append(out, p->value.data, p->value.len);
  }
}

/* ---- Export and import ---- */

/* A JSON string as Go's encoding/json writes it, quotes included. */
static void go_string(struct buf *out, const char *s)
{
  buf_putc(out, '"');
  jsonw_escape(out, s, strlen(s));
  buf_putc(out, '"');
}

void cli__kv_export_json(struct buf *out, const struct cli__kvpair *pairs, size_t n)
{
  if (n == 0) {
    buf_puts(out, "[]");
    return;
  }
  buf_puts(out, "[\n");
  for (size_t i = 0; i < n; i++) {
    const struct cli__kvpair *p = &pairs[i];
    buf_puts(out, "\t{\n\t\t\"key\": ");
    go_string(out, p->key);
    buf_printf(out, ",\n\t\t\"flags\": %llu,\n\t\t\"value\": ", (unsigned long long)p->flags);
    char *enc = xmalloc(b64_encoded_len(p->value.len) + 1);
    b64_encode(p->value.data, p->value.len, enc);
    buf_printf(out, "\"%s\"", enc);
    free(enc);
    /* omitempty, as impexp.Entry declares them */
    if (p->ns && p->ns[0]) {
      buf_puts(out, ",\n\t\t\"namespace\": ");
      go_string(out, p->ns);
    }
    if (p->partition && p->partition[0]) {
      buf_puts(out, ",\n\t\t\"partition\": ");
      go_string(out, p->partition);
    }
    buf_puts(out, i + 1 < n ? "\n\t},\n" : "\n\t}\n");
  }
  buf_putc(out, ']');
}

void cli__kv_entries_free(struct cli__kv_entry *e, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    free(e[i].key);
    free(e[i].value);
    free(e[i].ns);
    free(e[i].partition);
  }
  free(e);
}

int cli__kv_import_parse(const char *json, size_t len, struct cli__kv_entry **entries,
                         size_t *n, char *err, size_t errlen)
{
  *entries = NULL;
  *n = 0;
  json_t *root = load(json, len, err, errlen);
  if (!root) return -1;
  int rc = 0;
  if (json_is_null(root)) goto done;
  if (!json_is_array(root)) {
    snprintf(err, errlen, "json: cannot unmarshal %s into Go value of type []*impexp.Entry",
             json_go_kind(root));
    rc = -1;
    goto done;
  }
  size_t cnt = json_array_size(root);
  if (cnt == 0) goto done;
  struct cli__kv_entry *es = xcalloc(cnt, sizeof(*es));
  size_t got = 0;
  for (size_t i = 0; i < cnt && rc == 0; i++) {
    const json_t *o = json_array_get(root, i);
    if (!json_is_object(o)) {
      /* Consul's importer would crash on a null entry; refuse it instead. */
      snprintf(err, errlen, "json: cannot unmarshal %s into Go value of type impexp.Entry",
               json_go_kind(o));
      rc = -1;
      break;
    }
    struct cli__kv_entry *e = &es[got++];
    const json_t *ns = field(o, "namespace"), *part = field(o, "partition");
    if (get_str(field(o, "key"), "Entry.key", &e->key, err, errlen) ||
        get_str(field(o, "value"), "Entry.value", &e->value, err, errlen) ||
        get_u64(field(o, "flags"), "Entry.flags", &e->flags, err, errlen) ||
        (ns && get_str(ns, "Entry.namespace", &e->ns, err, errlen)) ||
        (part && get_str(part, "Entry.partition", &e->partition, err, errlen)))
      rc = -1;
  }
  if (rc != 0 || got == 0) {
    cli__kv_entries_free(es, got);
  } else {
    *entries = es;
    *n = got;
  }
done:
  json_decref(root);
  return rc;
}
