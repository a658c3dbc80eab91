/* defs.c -- service and check definitions: decoding them from JSON as Consul does (API
 * bodies and config files), validating them with Consul's messages, and printing them back
 * (the data dir, the catalog's HealthCheckDefinition).
 *
 * Decoding follows Go's encoding/json, which Consul's decodeBody uses: object keys match struct
 * fields case-insensitively (so python-consul's {"http": ..., "interval": ...} and config
 * files' snake_case "name"/"port" work), the last matching key wins, null leaves a field zero,
 * and a value of the wrong type fails with "json: cannot unmarshal <kind> into Go struct field
 * <Type>.<Field> of type <type>". The snake_case spellings Consul translates by hand
 * (CheckType.UnmarshalJSON: args, script_args, deregister_critical_service_after,
 * tls_skip_verify...; ServiceDefinition: enable_tag_override, tagged_addresses, socket_path)
 * are accepted too. Durations are Go duration strings or numbers of nanoseconds. Unknown keys
 * are ignored. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/gojson.h"
#include "lib/alloc.h"
#include "lib/duration.h"
#include "local/internal.h"

char *local__strdup0(const char *s)
{
  return xstrdup(s ? s : "");
}

void local__set(char **dst, const char *s)
{
  char *copy = local__strdup0(s);
  free(*dst);
  *dst = copy;
}

/* ---- a small Go-like decoder ---- */

struct dec {
  char *err;
  size_t errlen;
  bool failed;
  const char *type; /* Go struct name for messages */
};

static void dec_fail(struct dec *d, const char *fmt, const char *a, const char *b, const char *c)
{
  if (d->failed) return;
  d->failed = true;
  snprintf(d->err, d->errlen, fmt, a, b, c);
}

static void type_error(struct dec *d, const json_t *v, const char *field, const char *gotype)
{
  if (d->failed) return;
  d->failed = true;
  snprintf(d->err, d->errlen, "json: cannot unmarshal %s into Go struct field %s.%s of type %s",
           json_go_kind(v), d->type, field, gotype);
}

/* The value of the last key matching any of the names case-insensitively (Go assigns each
 * matching key in turn), or NULL. names is NULL-terminated. */
static json_t *fld_any(const json_t *o, const char *const *names)
{
  json_t *hit = NULL, *v;
  const char *k;
  json_object_foreach((json_t *)o, k, v) {
    for (const char *const *n = names; *n; n++)
      if (strcasecmp(k, *n) == 0) hit = v;
  }
  return hit;
}

static json_t *fld(const json_t *o, const char *name)
{
  const char *names[] = {name, NULL};
  return fld_any(o, names);
}

/* A string field (first non-empty of name, then alias). Returns an owned string, "" when
 * absent. */
static char *d_str(struct dec *d, const json_t *o, const char *name, const char *alias,
                   size_t cap)
{
  const char *names[] = {name, alias};
  for (int i = 0; i < 2; i++) {
    if (!names[i]) continue;
    json_t *v = fld(o, names[i]);
    if (!v || json_is_null(v)) continue;
    if (!json_is_string(v)) {
      type_error(d, v, name, "string");
      return xstrdup("");
    }
    if (json_string_length(v) > cap) {
      char n[32];
      snprintf(n, sizeof n, "%zu", cap);
      dec_fail(d, "%s.%s is longer than %s bytes", d->type, name, n);
      return xstrdup("");
    }
    if (*json_string_value(v)) return xstrndup(json_string_value(v), json_string_length(v));
  }
  return xstrdup("");
}

static int64_t d_int(struct dec *d, const json_t *o, const char *name, const char *alias)
{
  const char *names[] = {name, alias ? alias : name, NULL};
  json_t *v = fld_any(o, names);
  if (!v || json_is_null(v)) return 0;
  if (json_is_integer(v)) return json_integer_value(v);
  if (json_is_real(v) && json_real_value(v) == (double)(int64_t)json_real_value(v))
    return (int64_t)json_real_value(v);
  type_error(d, v, name, "int");
  return 0;
}

static bool d_bool(struct dec *d, const json_t *o, const char *name, const char *alias)
{
  const char *names[] = {name, alias ? alias : name, NULL};
  json_t *v = fld_any(o, names);
  if (!v || json_is_null(v)) return false;
  if (json_is_boolean(v)) return json_is_true(v);
  type_error(d, v, name, "bool");
  return false;
}

/* CheckType.UnmarshalJSON's durations: a Go duration string or a number of nanoseconds;
 * other JSON types are ignored, as its type switch ignores them. */
static int64_t d_dur(struct dec *d, const json_t *o, const char *name, const char *alias)
{
  const char *names[] = {name, alias ? alias : name, NULL};
  json_t *v = fld_any(o, names);
  if (!v) return 0;
  if (json_is_integer(v)) return json_integer_value(v);
  if (json_is_real(v)) return (int64_t)json_real_value(v);
  if (json_is_string(v)) {
    int64_t ns = 0;
    const char *s = json_string_value(v);
    if (duration_parse(s, json_string_length(v), &ns) != 0)
      dec_fail(d, "time: invalid duration \"%s\"%s%s", s, "", "");
    return ns;
  }
  return 0;
}

/* A []string: owned array of owned strings (NULL when absent or null). */
static char **d_strs(struct dec *d, const json_t *o, const char *name, size_t *n, bool *null)
{
  *n = 0;
  if (null) *null = true;
  json_t *v = fld(o, name);
  if (!v || json_is_null(v)) return NULL;
  if (!json_is_array(v)) {
    type_error(d, v, name, "[]string");
    return NULL;
  }
  size_t len = json_array_size(v);
  if (len > LOCAL_MAX_LIST) {
    char cap[32];
    snprintf(cap, sizeof cap, "%d", LOCAL_MAX_LIST);
    dec_fail(d, "%s.%s has more than %s entries", d->type, name, cap);
    return NULL;
  }
  char **out = xcalloc(len + 1, sizeof *out);
  for (size_t i = 0; i < len; i++) {
    json_t *e = json_array_get(v, i);
    if (!json_is_string(e) && !json_is_null(e)) type_error(d, e, name, "string");
    out[i] = xstrdup(json_is_string(e) ? json_string_value(e) : "");
  }
  *n = len;
  if (null) *null = false;
  return out;
}

static void strs_free(char **v, size_t n)
{
  for (size_t i = 0; i < n; i++) free(v[i]);
  free(v);
}

static int pair_cmp(const void *a, const void *b)
{
  return strcmp(((const struct state_pair *)a)->key, ((const struct state_pair *)b)->key);
}

static int addr_cmp(const void *a, const void *b)
{
  return strcmp(((const struct state_svc_addr *)a)->key, ((const struct state_svc_addr *)b)->key);
}

/* A non-empty JSON object kept as compact text (Proxy, Connect), or NULL. */
static char *d_blob(struct dec *d, const json_t *o, const char *name, const char *gotype)
{
  json_t *v = fld(o, name);
  if (!v || json_is_null(v)) return NULL;
  if (!json_is_object(v)) {
    type_error(d, v, name, gotype);
    return NULL;
  }
  if (json_object_size(v) == 0) return NULL;
  char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
  if (text && strlen(text) > STATE_CAT_MAX_JSON) {
    dec_fail(d, "%s.%s is too large%s", d->type, name, "");
    free(text);
    return NULL;
  }
  return text;
}

/* ---- checks ---- */

void local__check_def_free(struct local_check_def *c)
{
  if (!c) return;
  char **strs[] = {&c->id, &c->name, &c->status, &c->notes, &c->service_id, &c->token, &c->http,
                   &c->method, &c->body, &c->tcp, &c->udp, &c->h2ping, &c->grpc, &c->os_service,
                   &c->docker_id, &c->shell, &c->tls_server_name, &c->alias_node,
                   &c->alias_service};
  for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) free(*strs[i]);
  strs_free(c->args, c->n_args);
  json_decref(c->header);
  free(c);
}

struct local_check_def *local__check_def_decode(const json_t *v, const char *what, char *err,
                                                size_t errlen)
{
  struct dec d = {err, errlen, false, what};
  if (!json_is_object(v)) {
    snprintf(err, errlen, "json: cannot unmarshal %s into Go value of type structs.%s",
             json_go_kind(v), what);
    return NULL;
  }
  struct local_check_def *c = xcalloc(1, sizeof *c);
  /* CheckDefinition says ID, CheckType says CheckID; either names the check. */
  c->id = d_str(&d, v, "CheckID", "check_id", LOCAL_MAX_ID);
  if (!*c->id) local__set(&c->id, "");
  {
    char *id2 = d_str(&d, v, "ID", NULL, LOCAL_MAX_ID);
    if (*id2) {
      free(c->id);
      c->id = id2;
    } else {
      free(id2);
    }
  }
  c->name = d_str(&d, v, "Name", NULL, LOCAL_MAX_ID);
  c->status = d_str(&d, v, "Status", NULL, 64);
  c->notes = d_str(&d, v, "Notes", NULL, LOCAL_MAX_STRING);
  c->service_id = d_str(&d, v, "ServiceID", "service_id", LOCAL_MAX_ID);
  c->token = d_str(&d, v, "Token", NULL, 256);
  /* ScriptArgs, then "args", then "script_args" (CheckType.UnmarshalJSON's order). */
  c->args = d_strs(&d, v, "ScriptArgs", &c->n_args, NULL);
  if (c->n_args == 0) {
    strs_free(c->args, c->n_args);
    c->args = d_strs(&d, v, "args", &c->n_args, NULL);
  }
  if (c->n_args == 0) {
    strs_free(c->args, c->n_args);
    c->args = d_strs(&d, v, "script_args", &c->n_args, NULL);
  }
  c->http = d_str(&d, v, "HTTP", NULL, LOCAL_MAX_STRING);
  c->method = d_str(&d, v, "Method", NULL, 64);
  c->body = d_str(&d, v, "Body", NULL, LOCAL_MAX_STRING);
  c->tcp = d_str(&d, v, "TCP", NULL, LOCAL_MAX_STRING);
  c->udp = d_str(&d, v, "UDP", NULL, LOCAL_MAX_STRING);
  c->h2ping = d_str(&d, v, "H2PING", NULL, LOCAL_MAX_STRING);
  c->grpc = d_str(&d, v, "GRPC", NULL, LOCAL_MAX_STRING);
  c->os_service = d_str(&d, v, "OSService", "os_service", LOCAL_MAX_STRING);
  c->docker_id = d_str(&d, v, "DockerContainerID", "docker_container_id", LOCAL_MAX_STRING);
  c->shell = d_str(&d, v, "Shell", NULL, LOCAL_MAX_STRING);
  c->tls_server_name = d_str(&d, v, "TLSServerName", "tls_server_name", LOCAL_MAX_STRING);
  c->alias_node = d_str(&d, v, "AliasNode", "alias_node", LOCAL_MAX_ID);
  c->alias_service = d_str(&d, v, "AliasService", "alias_service", LOCAL_MAX_ID);
  c->tls_skip_verify = d_bool(&d, v, "TLSSkipVerify", "tls_skip_verify");
  c->disable_redirects = d_bool(&d, v, "DisableRedirects", "disable_redirects");
  c->grpc_use_tls = d_bool(&d, v, "GRPCUseTLS", "grpc_use_tls");
  c->h2ping_use_tls = *c->h2ping ? true : false;
  if (fld(v, "H2PingUseTLS") || fld(v, "h2ping_use_tls"))
    c->h2ping_use_tls = d_bool(&d, v, "H2PingUseTLS", "h2ping_use_tls");
  c->interval = d_dur(&d, v, "Interval", NULL);
  c->timeout = d_dur(&d, v, "Timeout", NULL);
  c->ttl = d_dur(&d, v, "TTL", NULL);
  c->dcsa = d_dur(&d, v, "DeregisterCriticalServiceAfter", "deregister_critical_service_after");
  c->success_before_passing = d_int(&d, v, "SuccessBeforePassing", "success_before_passing");
  c->failures_before_warning = d_int(&d, v, "FailuresBeforeWarning", "failures_before_warning");
  c->failures_before_critical =
      d_int(&d, v, "FailuresBeforeCritical", "failures_before_critical");
  c->output_max_size = d_int(&d, v, "OutputMaxSize", "output_max_size");
  json_t *h = fld(v, "Header");
  if (h && !json_is_null(h)) {
    if (!json_is_object(h)) {
      type_error(&d, h, "Header", "map[string][]string");
    } else if (json_object_size(h) > LOCAL_MAX_LIST) {
      dec_fail(&d, "%s.Header has too many entries%s%s", what, "", "");
    } else {
      const char *k;
      json_t *vals;
      json_object_foreach(h, k, vals) {
        if (json_is_null(vals)) continue;
        if (!json_is_array(vals) || json_array_size(vals) > LOCAL_MAX_LIST) {
          type_error(&d, vals, "Header", "[]string");
          break;
        }
        for (size_t i = 0; i < json_array_size(vals); i++)
          if (!json_is_string(json_array_get(vals, i))) type_error(&d, vals, "Header", "string");
      }
      if (!d.failed && json_object_size(h)) c->header = json_deep_copy(h);
    }
  }
  if (d.failed) {
    local__check_def_free(c);
    return NULL;
  }
  return c;
}

struct local_check_def *local__check_def_copy(const struct local_check_def *d)
{
  json_t *j = local__check_def_json(d);
  char err[256];
  struct local_check_def *c = local__check_def_decode(j, "CheckType", err, sizeof err);
  json_decref(j);
  if (c) local__set(&c->token, d->token);
  return c;
}

bool local__check_def_is_script(const struct local_check_def *d)
{
  return d->n_args > 0;
}

static bool is_alias(const struct local_check_def *d)
{
  return *d->alias_node || *d->alias_service;
}

bool local__check_def_empty(const struct local_check_def *d)
{
  return !*d->id && !*d->name && !*d->status && !*d->notes && !d->n_args && !*d->http &&
         !*d->method && !*d->body && !*d->tcp && !*d->udp && !*d->h2ping && !*d->grpc &&
         !*d->os_service && !*d->docker_id && !*d->shell && !*d->tls_server_name &&
         !is_alias(d) && !d->header && !d->tls_skip_verify && !d->disable_redirects &&
         !d->grpc_use_tls && !d->interval && !d->timeout && !d->ttl && !d->dcsa &&
         !d->success_before_passing && !d->failures_before_warning &&
         !d->failures_before_critical && !d->output_max_size;
}

/* CheckType.Validate (agent/structs/check_type.go). */
int local__check_def_validate(const struct local_check_def *c, char *err, size_t errlen)
{
  bool interval_check = c->n_args > 0 || *c->http || *c->tcp || *c->udp || *c->grpc ||
                        *c->h2ping || *c->os_service;
  const char *msg = NULL;
  if (c->interval > 0 && c->ttl > 0) msg = "Interval and TTL cannot both be specified";
  else if (interval_check && c->interval <= 0)
    msg = "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks";
  else if (interval_check && is_alias(c)) msg = "Interval cannot be set for Alias checks";
  else if (is_alias(c) && c->ttl > 0) msg = "TTL must be not be set for Alias checks";
  else if (!interval_check && !is_alias(c) && c->ttl <= 0) msg = "TTL must be > 0 for TTL checks";
  else if (c->output_max_size < 0) msg = "MaxOutputMaxSize must be positive";
  else if (c->failures_before_warning > c->failures_before_critical)
    msg = "FailuresBeforeWarning can't be higher than FailuresBeforeCritical";
  if (!msg) return 0;
  snprintf(err, errlen, "%s", msg);
  return -1;
}

const char *local__check_def_type(const struct local_check_def *c)
{
  bool iv = c->interval > 0;
  if (*c->grpc && iv) return "grpc";
  if (*c->http && iv) return "http";
  if (c->ttl > 0) return "ttl";
  if (*c->tcp && iv) return "tcp";
  if (*c->udp && iv) return "udp";
  if (is_alias(c)) return "alias";
  if (c->n_args && *c->docker_id && iv) return "docker";
  if (c->n_args && iv) return "script";
  if (*c->h2ping && iv) return "h2ping";
  if (*c->os_service && iv) return "os_service";
  return "";
}

bool local__status_valid(const char *s)
{
  return strcmp(s, LOCAL_PASSING) == 0 || strcmp(s, LOCAL_WARNING) == 0 ||
         strcmp(s, LOCAL_CRITICAL) == 0;
}

static void put_str(json_t *o, const char *k, const char *v)
{
  if (v && *v) json_object_set_new(o, k, json_string(v));
}

static void put_dur(json_t *o, const char *k, int64_t ns)
{
  char buf[32];
  if (ns) json_object_set_new(o, k, json_string(duration_format(ns, buf, sizeof buf)));
}

static json_t *sorted_header(const json_t *h)
{
  size_t n = json_object_size(h), i = 0;
  const char **keys = xcalloc(n + 1, sizeof *keys);
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)h, k, v) keys[i++] = k;
  for (size_t a = 1; a < n; a++) /* insertion sort: few keys */
    for (size_t b = a; b > 0 && strcmp(keys[b - 1], keys[b]) > 0; b--) {
      const char *t = keys[b];
      keys[b] = keys[b - 1];
      keys[b - 1] = t;
    }
  json_t *o = json_object();
  for (i = 0; i < n; i++) {
    json_t *vals = json_object_get(h, keys[i]);
    json_object_set_new(o, keys[i], json_is_array(vals) ? json_deep_copy(vals) : json_array());
  }
  free(keys);
  return o;
}

json_t *local__check_def_json(const struct local_check_def *c)
{
  json_t *o = json_object();
  put_str(o, "ID", c->id);
  put_str(o, "Name", c->name);
  put_str(o, "Status", c->status);
  put_str(o, "Notes", c->notes);
  put_str(o, "ServiceID", c->service_id);
  if (c->n_args) {
    json_t *a = json_array();
    for (size_t i = 0; i < c->n_args; i++) json_array_append_new(a, json_string(c->args[i]));
    json_object_set_new(o, "ScriptArgs", a);
  }
  put_str(o, "HTTP", c->http);
  if (c->header) json_object_set_new(o, "Header", sorted_header(c->header));
  put_str(o, "Method", c->method);
  put_str(o, "Body", c->body);
  if (c->disable_redirects) json_object_set_new(o, "DisableRedirects", json_true());
  put_str(o, "TCP", c->tcp);
  put_str(o, "UDP", c->udp);
  put_str(o, "H2PING", c->h2ping);
  if (*c->h2ping) json_object_set_new(o, "H2PingUseTLS", json_boolean(c->h2ping_use_tls));
  put_str(o, "GRPC", c->grpc);
  if (c->grpc_use_tls) json_object_set_new(o, "GRPCUseTLS", json_true());
  put_str(o, "OSService", c->os_service);
  put_str(o, "DockerContainerID", c->docker_id);
  put_str(o, "Shell", c->shell);
  put_str(o, "TLSServerName", c->tls_server_name);
  if (c->tls_skip_verify) json_object_set_new(o, "TLSSkipVerify", json_true());
  put_str(o, "AliasNode", c->alias_node);
  put_str(o, "AliasService", c->alias_service);
  put_dur(o, "Interval", c->interval);
  put_dur(o, "Timeout", c->timeout);
  put_dur(o, "TTL", c->ttl);
  put_dur(o, "DeregisterCriticalServiceAfter", c->dcsa);
  if (c->success_before_passing)
    json_object_set_new(o, "SuccessBeforePassing", json_integer(c->success_before_passing));
  if (c->failures_before_warning)
    json_object_set_new(o, "FailuresBeforeWarning", json_integer(c->failures_before_warning));
  if (c->failures_before_critical)
    json_object_set_new(o, "FailuresBeforeCritical", json_integer(c->failures_before_critical));
  if (c->output_max_size)
    json_object_set_new(o, "OutputMaxSize", json_integer(c->output_max_size));
  return o;
}

/* structs.HealthCheckDefinition through its MarshalJSON, in the key order and with the
 * omissions api/catalog.c uses for catalog registrations, so both produce the same text. */
char *local__definition_text(const struct local_check_def *c)
{
  json_t *o = json_object();
  put_dur(o, "Interval", c->interval);
  if (c->output_max_size > 0)
    json_object_set_new(o, "OutputMaxSize", json_integer(c->output_max_size));
  put_dur(o, "Timeout", c->timeout);
  put_dur(o, "DeregisterCriticalServiceAfter", c->dcsa);
  put_str(o, "HTTP", c->http);
  put_str(o, "TLSServerName", c->tls_server_name);
  if (c->tls_skip_verify) json_object_set_new(o, "TLSSkipVerify", json_true());
  if (c->header) json_object_set_new(o, "Header", sorted_header(c->header));
  put_str(o, "Method", c->method);
  put_str(o, "Body", c->body);
  if (c->disable_redirects) json_object_set_new(o, "DisableRedirects", json_true());
  put_str(o, "TCP", c->tcp);
  put_str(o, "UDP", c->udp);
  put_str(o, "H2PING", c->h2ping);
  put_str(o, "OSService", c->os_service);
  if (c->h2ping_use_tls && *c->h2ping) json_object_set_new(o, "H2PingUseTLS", json_true());
  if (c->n_args) {
    json_t *a = json_array();
    for (size_t i = 0; i < c->n_args; i++) json_array_append_new(a, json_string(c->args[i]));
    json_object_set_new(o, "ScriptArgs", a);
  }
  put_str(o, "DockerContainerID", c->docker_id);
  put_str(o, "Shell", c->shell);
  put_str(o, "GRPC", c->grpc);
  if (c->grpc_use_tls) json_object_set_new(o, "GRPCUseTLS", json_true());
  put_str(o, "AliasNode", c->alias_node);
  put_str(o, "AliasService", c->alias_service);
  if (c->ttl) json_object_set_new(o, "TTL", json_integer(c->ttl));
  char *text = json_object_size(o) ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  return text;
}

/* ---- services ---- */

void local__service_def_free(struct local_service_def *s)
{
  if (!s) return;
  free(s->kind);
  free(s->id);
  free(s->name);
  free(s->address);
  free(s->socket_path);
  free(s->token);
  strs_free(s->tags, s->n_tags);
  for (size_t i = 0; i < s->n_tagged; i++) {
    free((char *)s->tagged[i].key);
    free((char *)s->tagged[i].address);
  }
  free(s->tagged);
  for (size_t i = 0; i < s->n_meta; i++) {
    free((char *)s->meta[i].key);
    free((char *)s->meta[i].value);
  }
  free(s->meta);
  free(s->proxy);
  free(s->connect);
  for (size_t i = 0; i < s->n_checks; i++) local__check_def_free(s->checks[i]);
  free(s->checks);
  free(s);
}

static void add_check(struct local_service_def *s, struct local_check_def *c)
{
  s->checks = xrealloc(s->checks, (s->n_checks + 1) * sizeof *s->checks);
  s->checks[s->n_checks++] = c;
}

struct local_service_def *local__service_def_decode(const json_t *v, char *err, size_t errlen)
{
  struct dec d = {err, errlen, false, "ServiceDefinition"};
  if (!json_is_object(v)) {
    snprintf(err, errlen,
             "json: cannot unmarshal %s into Go value of type structs.ServiceDefinition",
             json_go_kind(v));
    return NULL;
  }
  struct local_service_def *s = xcalloc(1, sizeof *s);
  s->kind = d_str(&d, v, "Kind", NULL, LOCAL_MAX_ID);
  s->id = d_str(&d, v, "ID", NULL, LOCAL_MAX_ID);
  s->name = d_str(&d, v, "Name", NULL, LOCAL_MAX_ID);
  s->address = d_str(&d, v, "Address", NULL, LOCAL_MAX_STRING);
  s->socket_path = d_str(&d, v, "SocketPath", "socket_path", LOCAL_MAX_STRING);
  s->token = d_str(&d, v, "Token", NULL, 256);
  s->tags = d_strs(&d, v, "Tags", &s->n_tags, &s->tags_null);
  s->port = d_int(&d, v, "Port", NULL);
  s->enable_tag_override = d_bool(&d, v, "EnableTagOverride", "enable_tag_override");
  const char *ta_names[] = {"TaggedAddresses", "tagged_addresses", NULL};
  json_t *ta = fld_any(v, ta_names);
  if (ta && !json_is_null(ta)) {
    if (!json_is_object(ta) || json_object_size(ta) > LOCAL_MAX_LIST) {
      type_error(&d, ta, "TaggedAddresses", "map[string]structs.ServiceAddress");
    } else {
      s->tagged = xcalloc(json_object_size(ta) + 1, sizeof *s->tagged);
      const char *k;
      json_t *e;
      struct dec sub = {err, errlen, false, "ServiceAddress"};
      json_object_foreach(ta, k, e) {
        if (!json_is_object(e) && !json_is_null(e)) {
          type_error(&d, e, "TaggedAddresses", "structs.ServiceAddress");
          break;
        }
        char *addr = json_is_object(e) ? d_str(&sub, e, "Address", NULL, LOCAL_MAX_STRING)
                                        : xstrdup("");
        int64_t port = json_is_object(e) ? d_int(&sub, e, "Port", NULL) : 0;
        s->tagged[s->n_tagged++] = (struct state_svc_addr){xstrdup(k), addr, port};
      }
      if (sub.failed) d.failed = true;
      qsort(s->tagged, s->n_tagged, sizeof *s->tagged, addr_cmp);
    }
  }
  json_t *meta = fld(v, "Meta");
  s->meta_null = true;
  if (meta && !json_is_null(meta)) {
    if (!json_is_object(meta)) {
      type_error(&d, meta, "Meta", "map[string]string");
    } else if (json_object_size(meta) > LOCAL_MAX_META) {
      /* Consul's own cap (metaMaxKeyPairs); said here so a huge map is never copied. */
      dec_fail(&d, "Node metadata cannot contain more than %s key/value pairs%s%s", "64", "", "");
    } else {
      s->meta_null = false;
      s->meta = xcalloc(json_object_size(meta) + 1, sizeof *s->meta);
      const char *k;
      json_t *e;
      json_object_foreach(meta, k, e) {
        if (!json_is_string(e) && !json_is_null(e)) {
          type_error(&d, e, "Meta", "string");
          break;
        }
        s->meta[s->n_meta++] =
            (struct state_pair){xstrdup(k), xstrdup(json_is_string(e) ? json_string_value(e) : "")};
      }
      qsort(s->meta, s->n_meta, sizeof *s->meta, pair_cmp);
    }
  }
  json_t *w = fld(v, "Weights");
  if (w && !json_is_null(w)) {
    if (!json_is_object(w)) {
      type_error(&d, w, "Weights", "structs.Weights");
    } else {
      struct dec sub = {err, errlen, false, "Weights"};
      s->has_weights = true;
      s->weight_passing = d_int(&sub, w, "Passing", NULL);
      s->weight_warning = d_int(&sub, w, "Warning", NULL);
      if (sub.failed) d.failed = true;
    }
  }
  s->proxy = d_blob(&d, v, "Proxy", "structs.ConnectProxyConfig");
  s->connect = d_blob(&d, v, "Connect", "structs.ServiceConnect");
  /* Check, then Checks (ServiceDefinition.CheckTypes: the single one first). */
  json_t *check = fld(v, "Check");
  if (!d.failed && check && !json_is_null(check)) {
    struct local_check_def *c = local__check_def_decode(check, "CheckType", err, errlen);
    if (!c) d.failed = true;
    else if (local__check_def_empty(c)) local__check_def_free(c);
    else add_check(s, c);
  }
  json_t *checks = fld(v, "Checks");
  if (!d.failed && checks && !json_is_null(checks)) {
    if (!json_is_array(checks)) {
      type_error(&d, checks, "Checks", "structs.CheckTypes");
    } else if (json_array_size(checks) > LOCAL_MAX_LIST) {
      dec_fail(&d, "ServiceDefinition.Checks has more than %s entries%s%s", "256", "", "");
    } else {
      for (size_t i = 0; i < json_array_size(checks) && !d.failed; i++) {
        json_t *e = json_array_get(checks, i);
        if (json_is_null(e)) continue;
        struct local_check_def *c = local__check_def_decode(e, "CheckType", err, errlen);
        if (!c) d.failed = true;
        else add_check(s, c);
      }
    }
  }
  if (d.failed) {
    local__service_def_free(s);
    return NULL;
  }
  return s;
}

json_t *local__service_def_json(const struct local_service_def *s)
{
  json_t *o = json_object();
  put_str(o, "Kind", s->kind);
  put_str(o, "ID", s->id);
  put_str(o, "Name", s->name);
  if (!s->tags_null) {
    json_t *a = json_array();
    for (size_t i = 0; i < s->n_tags; i++) json_array_append_new(a, json_string(s->tags[i]));
    json_object_set_new(o, "Tags", a);
  }
  put_str(o, "Address", s->address);
  if (s->n_tagged) {
    json_t *ta = json_object();
    for (size_t i = 0; i < s->n_tagged; i++) {
      json_t *a = json_object();
      json_object_set_new(a, "Address", json_string(s->tagged[i].address));
      json_object_set_new(a, "Port", json_integer(s->tagged[i].port));
      json_object_set_new(ta, s->tagged[i].key, a);
    }
    json_object_set_new(o, "TaggedAddresses", ta);
  }
  if (!s->meta_null) {
    json_t *m = json_object();
    for (size_t i = 0; i < s->n_meta; i++)
      json_object_set_new(m, s->meta[i].key, json_string(s->meta[i].value));
    json_object_set_new(o, "Meta", m);
  }
  if (s->port) json_object_set_new(o, "Port", json_integer(s->port));
  put_str(o, "SocketPath", s->socket_path);
  if (s->has_weights) {
    json_t *w = json_object();
    json_object_set_new(w, "Passing", json_integer(s->weight_passing));
    json_object_set_new(w, "Warning", json_integer(s->weight_warning));
    json_object_set_new(o, "Weights", w);
  }
  if (s->enable_tag_override) json_object_set_new(o, "EnableTagOverride", json_true());
  if (s->proxy) json_object_set_new(o, "Proxy", json_loads(s->proxy, 0, NULL));
  if (s->connect) json_object_set_new(o, "Connect", json_loads(s->connect, 0, NULL));
  return o;
}

/* ValidateServiceMetadata (agent/structs/structs.go validateMetaPair). */
int local__meta_validate(const struct state_pair *meta, size_t n, char *err, size_t errlen)
{
  if (n > LOCAL_MAX_META) {
    snprintf(err, errlen, "Node metadata cannot contain more than %d key/value pairs",
             LOCAL_MAX_META);
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    const char *k = meta[i].key, *v = meta[i].value, *why = NULL;
    bool format = *k != '\0';
    for (const char *p = k; *p && format; p++)
      format = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
               *p == '_' || *p == '-';
    if (!*k) why = "Key cannot be blank";
    else if (!format) why = "Key contains invalid characters";
    else if (strlen(k) > 128) why = "Key is too long (limit: 128 characters)";
    else if (strncmp(k, "consul-", 7) == 0) why = "Key prefix 'consul-' is reserved for internal use";
    else if (strlen(v) > 512) why = "Value is too long (limit: 512 characters)";
    if (why) {
      snprintf(err, errlen, "Couldn't load metadata pair ('%.200s', '%.200s'): %s", k, v, why);
      return -1;
    }
  }
  return 0;
}

/* ---- config files ---- */

struct local_defs *local_defs_new(void)
{
  return xcalloc(1, sizeof(struct local_defs));
}

void local_defs_free(struct local_defs *d)
{
  if (!d) return;
  for (size_t i = 0; i < d->n_services; i++) local__service_def_free(d->services[i]);
  for (size_t i = 0; i < d->n_checks; i++) local__check_def_free(d->checks[i]);
  free(d->services);
  free(d->checks);
  free(d);
}

size_t local_defs_count(const struct local_defs *d)
{
  return d ? d->n_services + d->n_checks : 0;
}

/* The documents' definitions of one key: an object ("service"), or an array ("services"). */
struct refs {
  const json_t **v;
  size_t n, cap;
};

static void refs_push(struct refs *r, const json_t *v)
{
  if (r->n == r->cap) {
    r->cap = r->cap ? r->cap * 2 : 8;
    r->v = xrealloc(r->v, r->cap * sizeof *r->v);
  }
  r->v[r->n++] = v;
}

#define LOCAL_MAX_DEFS_PER_DOC 65536

static int defs_collect(const json_t *doc, const char *key, bool plural, struct refs *out,
                        const char *source, char *err, size_t errlen)
{
  json_t *v = json_object_get(doc, key);
  if (!v) return 0;
  if (!plural) {
    if (!json_is_object(v)) {
      snprintf(err, errlen, "%s: %s: expected an object, got %s", source, key, json_go_kind(v));
      return -1;
    }
    refs_push(out, v);
    return 0;
  }
  if (!json_is_array(v)) {
    snprintf(err, errlen, "%s: %s: expected a list of objects, got %s", source, key, json_go_kind(v));
    return -1;
  }
  if (json_array_size(v) + out->n > LOCAL_MAX_DEFS_PER_DOC) {
    snprintf(err, errlen, "%s: %s: more than %d definitions", source, key, LOCAL_MAX_DEFS_PER_DOC);
    return -1;
  }
  for (size_t i = 0; i < json_array_size(v); i++) refs_push(out, json_array_get(v, i));
  return 0;
}

int local_defs_add_config(struct local_defs *d, const json_t *doc, const char *source,
                          char *err, size_t errlen)
{
  if (!json_is_object(doc)) return 0;
  const char *src = source ? source : "config";
  struct refs svcs = {0}, chks = {0};
  struct local_defs tmp = {0};
  int rv = -1;
  char why[512];
  if (defs_collect(doc, "service", false, &svcs, src, err, errlen) ||
      defs_collect(doc, "services", true, &svcs, src, err, errlen) ||
      defs_collect(doc, "check", false, &chks, src, err, errlen) ||
      defs_collect(doc, "checks", true, &chks, src, err, errlen))
    goto out;
  size_t ns = svcs.n, nc = chks.n;
  tmp.services = xcalloc(ns + 1, sizeof *tmp.services);
  tmp.checks = xcalloc(nc + 1, sizeof *tmp.checks);
  for (size_t i = 0; i < ns; i++) {
    struct local_service_def *s = local__service_def_decode(svcs.v[i], why, sizeof why);
    if (!s) {
      snprintf(err, errlen, "%s: service: %s", src, why);
      goto out;
    }
    tmp.services[tmp.n_services++] = s;
    if (!*s->name) {
      snprintf(err, errlen, "%s: service: missing name", src);
      goto out;
    }
    for (size_t c = 0; c < s->n_checks; c++) {
      if (local__check_def_validate(s->checks[c], why, sizeof why) != 0) {
        snprintf(err, errlen, "%s: Failed to validate checks for service \"%s\": %s", src,
                 s->name, why);
        goto out;
      }
    }
  }
  for (size_t i = 0; i < nc; i++) {
    struct local_check_def *c = local__check_def_decode(chks.v[i], "CheckDefinition", why, sizeof why);
    if (!c) {
      snprintf(err, errlen, "%s: check: %s", src, why);
      goto out;
    }
    tmp.checks[tmp.n_checks++] = c;
    if (!*c->name) {
      snprintf(err, errlen, "%s: check: missing name", src);
      goto out;
    }
    if (local__check_def_validate(c, why, sizeof why) != 0) {
      snprintf(err, errlen, "%s: check \"%s\": %s", src, c->name, why);
      goto out;
    }
  }
  /* All good: move them over. */
  d->services = xrealloc(d->services, (d->n_services + tmp.n_services + 1) * sizeof *d->services);
  memcpy(d->services + d->n_services, tmp.services, tmp.n_services * sizeof *tmp.services);
  d->n_services += tmp.n_services;
  d->checks = xrealloc(d->checks, (d->n_checks + tmp.n_checks + 1) * sizeof *d->checks);
  memcpy(d->checks + d->n_checks, tmp.checks, tmp.n_checks * sizeof *tmp.checks);
  d->n_checks += tmp.n_checks;
  tmp.n_services = tmp.n_checks = 0;
  rv = 0;
out:
  for (size_t i = 0; i < tmp.n_services; i++) local__service_def_free(tmp.services[i]);
  for (size_t i = 0; i < tmp.n_checks; i++) local__check_def_free(tmp.checks[i]);
  free(tmp.services);
  free(tmp.checks);
  free(svcs.v);
  free(chks.v);
  return rv;
}
