/* spec.c -- parses a watch's parameters (the `concord watch` flags gathered into a JSON
 * object, or one element of the agent config's "watches") into a struct watch_spec.
 *
 * The rules and sentences are Consul's (api/watch/watch.go Parse, funcs.go's per-type
 * factories, agent.go's makeWatchPlan): each known key is taken out of a copy of the object
 * as it is read, and whatever is left at the end is an "Invalid parameters" error, so a typo
 * such as "prefx" is refused at load time instead of silently watching nothing. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/alloc.h"
#include "lib/duration.h"
#include "watch/watch.h"

/* Caps on what a spec may hold: the CLI and config files are trusted less than they look. */
#define SPEC_MAX_TAGS 64
#define SPEC_MAX_ARGS 256

static const char *const spec_type_names[] = {
    [WATCH_KEY] = "key",         [WATCH_KEYPREFIX] = "keyprefix", [WATCH_SERVICES] = "services",
    [WATCH_NODES] = "nodes",     [WATCH_SERVICE] = "service",     [WATCH_CHECKS] = "checks",
    [WATCH_EVENT] = "event",
};

const char *watch_type_name(enum watch_type t)
{
  return (size_t)t < sizeof spec_type_names / sizeof *spec_type_names ? spec_type_names[t] : "?";
}

static int spec_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int spec_err(char *err, size_t errlen, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

static void spec_list_free(char **l)
{
  if (!l) return;
  for (char **p = l; *p; p++) free(*p);
  free(l);
}

void watch_spec_free(struct watch_spec *s)
{
  free(s->datacenter);
  free(s->token);
  free(s->key);
  free(s->prefix);
  free(s->service);
  free(s->state);
  free(s->name);
  spec_list_free(s->tags);
  free(s->handler);
  spec_list_free(s->args);
  free(s->http.path);
  free(s->http.method);
  json_decref(s->http.header);
  memset(s, 0, sizeof *s);
}

/* Consul's assignValue: takes a string parameter out of params. */
static int take_str(json_t *params, const char *name, char **out, char *err, size_t errlen)
{
  json_t *v = json_object_get(params, name);
  if (!v) return 0;
  if (!json_is_string(v)) return spec_err(err, errlen, "Expecting %s to be a string", name);
  free(*out);
  *out = xstrdup(json_string_value(v));
  json_object_del(params, name);
  return 0;
}

static int take_bool(json_t *params, const char *name, bool *out, char *err, size_t errlen)
{
  json_t *v = json_object_get(params, name);
  if (!v) return 0;
  if (!json_is_boolean(v)) return spec_err(err, errlen, "Expecting %s to be a boolean", name);
  *out = json_is_true(v);
  json_object_del(params, name);
  return 0;
}

/* Consul's assignValueStringSlice: a string or a list of strings. */
static int take_list(json_t *params, const char *name, char ***out, size_t max, char *err,
                     size_t errlen)
{
  json_t *v = json_object_get(params, name);
  if (!v) return 0;
  char **l;
  if (json_is_string(v)) {
    l = xcalloc(2, sizeof *l);
    l[0] = xstrdup(json_string_value(v));
  } else if (json_is_array(v)) {
    size_t n = json_array_size(v);
    if (n > max) return spec_err(err, errlen, "Too many values in %s (at most %zu)", name, max);
    l = xcalloc(n + 1, sizeof *l);
    for (size_t i = 0; i < n; i++) {
      json_t *e = json_array_get(v, i);
      if (!json_is_string(e)) {
        spec_list_free(l);
        return spec_err(err, errlen, "Index %zu of %s expected to be string", i, name);
      }
      l[i] = xstrdup(json_string_value(e));
    }
  } else {
    return spec_err(err, errlen, "Expecting %s to be a string or []string", name);
  }
  spec_list_free(*out);
  *out = l;
  json_object_del(params, name);
  return 0;
}

/* Consul's parseHttpHandlerConfig (mapstructure's weak decoding: the keys are matched
 * case-insensitively). */
static int parse_http_config(const json_t *c, struct watch_http_handler *h, char *err,
                             size_t errlen)
{
  if (!json_is_object(c))
    return spec_err(err, errlen, "Failed to parse 'http_handler_config': expected a map, got '%s'",
                    json_is_array(c) ? "slice" : "string");
  const char *k;
  json_t *v;
  char *timeout = NULL;
  int rv = 0;
  json_object_foreach((json_t *)c, k, v) {
    if (strcasecmp(k, "path") == 0 || strcasecmp(k, "method") == 0 ||
        strcasecmp(k, "timeout") == 0) {
      if (!json_is_string(v)) {
        rv = spec_err(err, errlen, "Failed to parse 'http_handler_config': '%s' expected type 'string'", k);
        break;
      }
      char **slot = strcasecmp(k, "path") == 0 ? &h->path
                    : strcasecmp(k, "method") == 0 ? &h->method : &timeout;
      free(*slot);
      *slot = xstrdup(json_string_value(v));
    } else if (strcasecmp(k, "tls_skip_verify") == 0) {
      if (!json_is_boolean(v)) {
        rv = spec_err(err, errlen, "Failed to parse 'http_handler_config': 'tls_skip_verify' expected type 'bool'");
        break;
      }
      h->tls_skip_verify = json_is_true(v);
    } else if (strcasecmp(k, "header") == 0) {
      /* map[string][]string: each value a list of strings (a lone string is one value). */
      if (!json_is_object(v)) {
        rv = spec_err(err, errlen, "Failed to parse 'http_handler_config': 'header' expected a map");
        break;
      }
      json_t *hdr = json_object();
      const char *hk;
      json_t *hv;
      json_object_foreach(v, hk, hv) {
        json_t *vals = json_array();
        if (json_is_string(hv)) json_array_append(vals, hv);
        else if (json_is_array(hv)) {
          size_t i;
          json_t *e;
          json_array_foreach(hv, i, e) {
            if (json_is_string(e)) json_array_append(vals, e);
            else rv = -1;
          }
        } else {
          rv = -1;
        }
        json_object_set_new(hdr, hk, vals);
        if (rv != 0) break;
      }
      json_decref(h->header);
      h->header = hdr;
      if (rv != 0) {
        spec_err(err, errlen, "Failed to parse 'http_handler_config': header '%s' must be a list of strings", hk);
        break;
      }
    } else {
      rv = spec_err(err, errlen, "Failed to parse 'http_handler_config': invalid key '%s'", k);
      break;
    }
  }
  if (rv == 0 && (!h->path || !h->path[0]))
    rv = spec_err(err, errlen, "Failed to parse 'http_handler_config': Requires 'path' to be set");
  if (rv == 0 && (!h->method || !h->method[0])) {
    free(h->method);
    h->method = xstrdup("POST");
  }
  h->timeout_ns = 10 * DURATION_S; /* watch.DefaultTimeout */
  if (rv == 0 && timeout && timeout[0] &&
      duration_parse(timeout, strlen(timeout), &h->timeout_ns) != 0)
    rv = spec_err(err, errlen, "Failed to parse 'http_handler_config': Failed to parse timeout: time: invalid duration \"%s\"", timeout);
  if (rv == 0 && h->timeout_ns <= 0) h->timeout_ns = 10 * DURATION_S;
  free(timeout);
  return rv;
}

/* The per-type factories of funcs.go. */
static int parse_type_params(json_t *p, struct watch_spec *s, char *err, size_t errlen)
{
  if (s->type != WATCH_EVENT && take_bool(p, "stale", &s->stale, err, errlen) != 0) return -1;
  switch (s->type) {
  case WATCH_KEY:
    if (take_str(p, "key", &s->key, err, errlen) != 0) return -1;
    if (!s->key || !s->key[0]) return spec_err(err, errlen, "Must specify a single key to watch");
    return 0;
  case WATCH_KEYPREFIX:
    if (take_str(p, "prefix", &s->prefix, err, errlen) != 0) return -1;
    if (!s->prefix || !s->prefix[0])
      return spec_err(err, errlen, "Must specify a single prefix to watch");
    return 0;
  case WATCH_SERVICES:
  case WATCH_NODES:
    return 0;
  case WATCH_SERVICE:
    if (take_str(p, "service", &s->service, err, errlen) != 0) return -1;
    if (!s->service || !s->service[0])
      return spec_err(err, errlen, "Must specify a single service to watch");
    if (take_list(p, "tag", &s->tags, SPEC_MAX_TAGS, err, errlen) != 0) return -1;
    return take_bool(p, "passingonly", &s->passingonly, err, errlen);
  case WATCH_CHECKS:
    if (take_str(p, "service", &s->service, err, errlen) != 0) return -1;
    if (take_str(p, "state", &s->state, err, errlen) != 0) return -1;
    if (s->service && s->service[0] && s->state && s->state[0])
      return spec_err(err, errlen, "Cannot specify service and state");
    if ((!s->service || !s->service[0]) && (!s->state || !s->state[0])) {
      free(s->state);
      s->state = xstrdup("any");
    }
    return take_list(p, "tag", &s->tags, SPEC_MAX_TAGS, err, errlen);
  case WATCH_EVENT:
    /* Consul: "The stale setting doesn't apply to events", so "stale" is left over. */
    return take_str(p, "name", &s->name, err, errlen);
  }
  return 0;
}

/* The agent's handler keys (agent.go makeWatchPlan and reloadWatches). */
static int parse_handler(json_t *p, struct watch_spec *s, char *err, size_t errlen)
{
  char *ht = NULL;
  if (take_str(p, "handler_type", &ht, err, errlen) != 0) return -1;
  if (!ht || strcmp(ht, "script") == 0) {
    s->handler_type = WATCH_HANDLER_SCRIPT;
  } else if (strcmp(ht, "http") == 0) {
    s->handler_type = WATCH_HANDLER_HTTP;
  } else {
    spec_err(err, errlen, "Handler type '%s' not recognized", ht);
    free(ht);
    return -1;
  }
  free(ht);
  if (s->handler_type == WATCH_HANDLER_HTTP) {
    json_t *c = json_object_get(p, "http_handler_config");
    if (!c)
      return spec_err(err, errlen, "Handler type 'http' requires 'http_handler_config' to be set");
    if (parse_http_config(c, &s->http, err, errlen) != 0) return -1;
    json_object_del(p, "http_handler_config");
  }
  json_t *h = json_object_get(p, "handler");
  bool has_handler = h != NULL, has_args = json_object_get(p, "args") != NULL;
  if (h) {
    if (!json_is_string(h)) return spec_err(err, errlen, "Watch handler must be a string");
    s->handler = xstrdup(json_string_value(h));
    json_object_del(p, "handler");
  }
  if (has_args) {
    json_t *a = json_object_get(p, "args");
    if (!json_is_array(a)) return spec_err(err, errlen, "Watch args must be a list of strings");
    if (take_list(p, "args", &s->args, SPEC_MAX_ARGS, err, errlen) != 0)
      return spec_err(err, errlen, "Watch args must be a list of strings");
  }
  if (has_handler && has_args) return spec_err(err, errlen, "Only one watch handler allowed");
  if (s->handler_type == WATCH_HANDLER_SCRIPT) {
    if (!has_handler && !has_args) return spec_err(err, errlen, "Must define a watch handler");
    if ((has_handler && !s->handler[0]) || (has_args && !s->args[0]))
      return spec_err(err, errlen, "Must define a watch handler");
  }
  return 0;
}

int watch_spec_parse(const json_t *params, bool agent, struct watch_spec *s, char *err,
                     size_t errlen)
{
  memset(s, 0, sizeof *s);
  if (!json_is_object(params)) return spec_err(err, errlen, "A watch must be a JSON object");
  json_t *p = json_copy((json_t *)params); /* shallow: keys are deleted as they are read */
  int rv = -1;
  char *type = NULL;
  if (take_str(p, "datacenter", &s->datacenter, err, errlen) != 0) goto out;
  if (take_str(p, "token", &s->token, err, errlen) != 0) goto out;
  if (take_str(p, "type", &type, err, errlen) != 0) goto out;
  if (!type || !type[0]) {
    spec_err(err, errlen, "Watch type must be specified");
    goto out;
  }
  if (agent && strncmp(type, "connect_", 8) == 0) {
    spec_err(err, errlen, "Watch type %s is not allowed in agent config", type);
    goto out;
  }
  if (agent && parse_handler(p, s, err, errlen) != 0) goto out;
  bool found = false;
  for (size_t i = 0; i < sizeof spec_type_names / sizeof *spec_type_names; i++)
    if (strcmp(type, spec_type_names[i]) == 0) {
      s->type = (enum watch_type)i;
      found = true;
    }
  if (!found) {
    spec_err(err, errlen, "Unsupported watch type: %s", type);
    goto out;
  }
  if (parse_type_params(p, s, err, errlen) != 0) goto out;
  if (json_object_size(p) != 0) {
    /* Go prints the leftover names as a slice: "[a b]". */
    struct buf b = BUF_INIT;
    const char *k;
    json_t *v;
    json_object_foreach(p, k, v) buf_printf(&b, "%s%s", b.len ? " " : "", k);
    spec_err(err, errlen, "Invalid parameters: [%s]", b.data);
    buf_free(&b);
    goto out;
  }
  rv = 0;
out:
  free(type);
  json_decref(p);
  return rv;
}
