/* config.c -- agent configuration from defaults, JSON files and flags (see config.h).
 *
 * Flags and JSON keys share one table of settings: a flag is `-name value`, `-name=value` or
 * (for booleans) `-name`, as Go's flag package takes them; the JSON key is Consul's snake_case
 * name, possibly nested ("ports.http", "limits.kv_max_value_size"). Files are read first and
 * flags applied after, whatever their order on the command line, because that is Consul's
 * precedence (flags win). */
#include "config/config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/alloc.h"
#include "lib/b64.h"
#include "lib/buf.h"
#include "lib/duration.h"
#include "lib/log.h"
#include "lib/rand.h"
#include "watch/watch.h"

#define CONFIG_MAX_FILE_BYTES (16u << 20) /* a config file larger than this is a mistake */
#define CONFIG_MAX_WATCHES 256 /* each is a blocking query held open on the agent */

/* CK_ARRAY: a JSON array of strings, or a repeatable flag that appends (recursors).
 * CK_DURATION: a Go duration string, stored as int64 nanoseconds.
 * CK_DURMAP: a JSON object of name -> Go duration (dns_config.service_ttl), kept as json_t. */
enum config_kind { CK_STR, CK_BOOL, CK_UINT, CK_PORT, CK_U64, CK_LIST, CK_META, CK_ARRAY,
                   CK_DURATION, CK_DURMAP };

struct config_setting {
  const char *flag;     /* command-line name without the dash, or NULL */
  const char *key;      /* JSON key path ("ports.http"), or NULL */
  enum config_kind kind;
  size_t offset;        /* into struct config */
  uint64_t min, max;    /* bounds for numbers */
  const char *help;
};

#define OFF(field) offsetof(struct config, field)

static const struct config_setting config_settings[] = {
    {"dev", NULL, CK_BOOL, OFF(dev), 0, 0, "Start a single in-memory server for development (binds 127.0.0.1)."},
    {"server", "server", CK_BOOL, OFF(server), 0, 0, "Run as a server (holds state, takes part in Raft)."},
    {"bootstrap", "bootstrap", CK_BOOL, OFF(bootstrap), 0, 0, "Bootstrap a single-server cluster (same as -bootstrap-expect=1)."},
    {"bootstrap-expect", "bootstrap_expect", CK_UINT, OFF(bootstrap_expect), 0, 9, "Servers to wait for before bootstrapping Raft."},
    {"datacenter", "datacenter", CK_STR, OFF(datacenter), 0, 0, "Datacenter name (default dc1)."},
    {"node", "node_name", CK_STR, OFF(node_name), 0, 0, "Node name (default: the hostname)."},
    {"node-id", "node_id", CK_STR, OFF(node_id), 0, 0, "Node ID, a UUID (default: generated and kept in the data dir)."},
    {"data-dir", "data_dir", CK_STR, OFF(data_dir), 0, 0, "Directory for Raft data and agent state (required unless -dev)."},
    {"bind", "bind_addr", CK_STR, OFF(bind_addr), 0, 0, "Address for cluster traffic (Raft, gossip) (default 0.0.0.0; -dev 127.0.0.1)."},
    {"client", "client_addr", CK_LIST, OFF(client_addrs), 0, 0, "Addresses (space-separated) for HTTP and DNS (default 127.0.0.1)."},
    {"domain", "domain", CK_STR, OFF(domain), 0, 0, "DNS domain (default consul.)."},
    {"alt-domain", "alt_domain", CK_STR, OFF(alt_domain), 0, 0, "Alternate DNS domain."},
    {"log-level", "log_level", CK_STR, OFF(log_level), 0, 0, "trace, debug, info, warn or err (default info)."},
    {"http-port", "ports.http", CK_PORT, OFF(port_http), 0, 0, "HTTP API port (default 8500, -1 disables)."},
    {"dns-port", "ports.dns", CK_PORT, OFF(port_dns), 0, 0, "DNS port (default 8600, -1 disables)."},
    {"server-port", "ports.server", CK_PORT, OFF(port_server), 0, 0, "Server RPC/Raft port (default 8300)."},
    {"serf-lan-port", "ports.serf_lan", CK_PORT, OFF(port_serf_lan), 0, 0, "LAN gossip port (default 8301)."},
    {"serf-wan-port", "ports.serf_wan", CK_PORT, OFF(port_serf_wan), 0, 0, "WAN gossip port (default 8302)."},
    {NULL, "limits.kv_max_value_size", CK_U64, OFF(kv_max_value_size), 1, 1ull << 30, NULL},
    {NULL, "limits.txn_max_req_len", CK_U64, OFF(txn_max_req_len), 1, 1ull << 30, NULL},
    {NULL, "limits.http_max_conns_per_client", CK_UINT, OFF(http_max_conns), 1, 1000000, NULL},
    {NULL, "raft_snapshot_threshold", CK_UINT, OFF(raft_snapshot_threshold), 1, 1u << 30, NULL},
    {NULL, "raft_trailing_logs", CK_UINT, OFF(raft_trailing_logs), 0, 1u << 30, NULL},
    {NULL, "performance.raft_multiplier", CK_UINT, OFF(raft_multiplier), 1, 10, NULL},
    {"ui", "ui", CK_BOOL, OFF(ui), 0, 0, "Serve the web UI at /ui/ (on with -dev; config ui_config.enabled or \"ui\")."},
    {"join", "start_join", CK_ARRAY, OFF(start_join), 0, 0, "Address of an agent to join at start (repeatable)."},
    {"retry-join", "retry_join", CK_ARRAY, OFF(retry_join), 0, 0, "Address of an agent to join, retried until it succeeds (repeatable)."},
    {"retry-interval", "retry_interval", CK_DURATION, OFF(retry_interval_ns), 0, 0, "Time between -retry-join attempts (default 30s)."},
    {"join-wan", "start_join_wan", CK_ARRAY, OFF(start_join_wan), 0, 0, "Address of a server of another datacenter to join over the WAN at start (servers; repeatable)."},
    {"retry-join-wan", "retry_join_wan", CK_ARRAY, OFF(retry_join_wan), 0, 0, "Address of a WAN server to join, retried until it succeeds (servers; repeatable)."},
    {"retry-interval-wan", "retry_interval_wan", CK_DURATION, OFF(retry_interval_wan_ns), 0, 0, "Time between -retry-join-wan attempts (default 30s)."},
    {"retry-max", "retry_max", CK_UINT, OFF(retry_max), 0, 0, "Attempts before -retry-join gives up (default 0: forever)."},
    {"enable-script-checks", "enable_script_checks", CK_BOOL, OFF(enable_script_checks), 0, 0, "Allow script checks from the API and config files (remote code execution risk)."},
    {"enable-local-script-checks", "enable_local_script_checks", CK_BOOL, OFF(enable_local_script_checks), 0, 0, "Allow script checks from config files only."},
    {NULL, "disable_remote_exec", CK_BOOL, OFF(disable_remote_exec), 0, 0, NULL},
    {NULL, "check_update_interval", CK_DURATION, OFF(check_update_interval_ns), 0, 0, NULL},
    {"recursor", "recursors", CK_ARRAY, OFF(recursors), 0, 0, "Upstream DNS server for names outside the domain (repeatable)."},
    {NULL, "dns_config.node_ttl", CK_DURATION, OFF(dns_node_ttl_ns), 0, 0, NULL},
    {NULL, "dns_config.service_ttl", CK_DURMAP, OFF(dns_service_ttl), 0, 0, NULL},
    {NULL, "dns_config.only_passing", CK_BOOL, OFF(dns_only_passing), 0, 0, NULL},
    {NULL, "dns_config.enable_truncate", CK_BOOL, OFF(dns_enable_truncate), 0, 0, NULL},
    {NULL, "dns_config.udp_answer_limit", CK_UINT, OFF(dns_udp_answer_limit), 1, 1000, NULL},
    {NULL, "dns_config.a_record_limit", CK_UINT, OFF(dns_a_record_limit), 0, 100000, NULL},
    {NULL, "dns_config.allow_stale", CK_BOOL, OFF(dns_allow_stale), 0, 0, NULL},
    {NULL, "dns_config.max_stale", CK_DURATION, OFF(dns_max_stale_ns), 0, 0, NULL},
    {NULL, "dns_config.recursor_timeout", CK_DURATION, OFF(dns_recursor_timeout_ns), 0, 0, NULL},
    {NULL, "dns_config.enable_additional_node_meta_txt", CK_BOOL, OFF(dns_node_meta_txt), 0, 0, NULL},
    {NULL, "dns_config.soa.refresh", CK_UINT, OFF(dns_soa_refresh), 0, 0, NULL},
    {NULL, "dns_config.soa.retry", CK_UINT, OFF(dns_soa_retry), 0, 0, NULL},
    {NULL, "dns_config.soa.expire", CK_UINT, OFF(dns_soa_expire), 0, 0, NULL},
    {NULL, "dns_config.soa.min_ttl", CK_UINT, OFF(dns_soa_min_ttl), 0, 0, NULL},
    {NULL, "translate_wan_addrs", CK_BOOL, OFF(translate_wan_addrs), 0, 0, NULL},
    {NULL, "ui_config.enabled", CK_BOOL, OFF(ui), 0, 0, NULL},
    {"encrypt", "encrypt", CK_STR, OFF(encrypt_key), 0, 0, "Gossip encryption key: base64 of 16, 24 or 32 bytes (see keygen)."},
    {NULL, "encrypt_verify_incoming", CK_BOOL, OFF(encrypt_verify_incoming), 0, 0, NULL},
    {NULL, "encrypt_verify_outgoing", CK_BOOL, OFF(encrypt_verify_outgoing), 0, 0, NULL},
    {"disable-keyring-file", "disable_keyring_file", CK_BOOL, OFF(disable_keyring_file), 0, 0, "Do not keep the gossip keyring in <data-dir>/serf/local.keyring."},
    {"node-meta", "node_meta", CK_META, OFF(node_meta), 0, 0, "Node metadata key:value (repeatable)."},
};

/* Keys Consul accepts that Concord does not act on yet: a warning, not an error. */
static const char *const config_consul_only_keys[] = {
    "acl", "addresses", "advertise_addr", "advertise_addr_wan", "auto_encrypt", "autopilot",
    "ca_file", "cert_file", "connect",
    "disable_update_check", "enable_agent_tls_for_checks", "enable_syslog", "http_config", "key_file", "leave_on_terminate",
    "log_file",
    "log_json", "primary_datacenter", "reconnect_timeout", "rejoin_after_leave",
    "skip_leave_on_interrupt", "telemetry", "tls",
    "verify_incoming", "verify_outgoing", "verify_server_hostname", "limits",
    "performance", "ports", "ui_config", "raft_protocol", "segment",
};

static void config_err(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void config_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errbuf, errlen, fmt, ap);
  va_end(ap);
}

static void config_set_str(char **slot, const char *v)
{
  free(*slot);
  *slot = xstrdup(v);
}

static void config_list_free(char **list)
{
  if (!list) return;
  for (char **p = list; *p; p++) free(*p);
  free(list);
}

static char **config_list_split(const char *v)
{
  size_t n = 0, cap = 4;
  char **list = xcalloc(cap + 1, sizeof *list);
  const char *p = v;
  while (*p) {
    while (*p && isspace((unsigned char)*p)) p++;
    const char *start = p;
    while (*p && !isspace((unsigned char)*p)) p++;
    if (p == start) break;
    if (n == cap) {
      cap *= 2;
      list = xrealloc(list, (cap + 1) * sizeof *list);
    }
    list[n++] = xstrndup(start, (size_t)(p - start));
  }
  list[n] = NULL;
  return list;
}

static int config_parse_u64(const char *v, uint64_t *out)
{
  if (!*v || !isdigit((unsigned char)*v)) return -1;
  errno = 0;
  char *end;
  unsigned long long n = strtoull(v, &end, 10);
  if (errno || *end) return -1;
  *out = n;
  return 0;
}

static int config_parse_bool(const char *v, bool *out)
{
  /* Go's strconv.ParseBool. */
  static const char *const yes[] = {"1", "t", "T", "TRUE", "true", "True"};
  static const char *const no[] = {"0", "f", "F", "FALSE", "false", "False"};
  for (size_t i = 0; i < 6; i++) {
    if (strcmp(v, yes[i]) == 0) return *out = true, 0;
    if (strcmp(v, no[i]) == 0) return *out = false, 0;
  }
  return -1;
}

/* Applies a text value (from a flag) to a setting. */
static int config_set_text(struct config *cfg, const struct config_setting *s, const char *v,
                           const char *source, char *errbuf, size_t errlen)
{
  char *base = (char *)cfg;
  uint64_t n;
  switch (s->kind) {
    case CK_STR:
      config_set_str((char **)(base + s->offset), v);
      return 0;
    case CK_BOOL:
      if (config_parse_bool(v, (bool *)(base + s->offset)) != 0) {
        config_err(errbuf, errlen, "%s: invalid boolean value \"%s\" for %s", source, v, s->flag);
        return -1;
      }
      return 0;
    case CK_LIST:
      config_list_free(*(char ***)(base + s->offset));
      *(char ***)(base + s->offset) = config_list_split(v);
      return 0;
    case CK_PORT:
      if (strcmp(v, "-1") == 0) {
        *(int *)(base + s->offset) = -1;
        return 0;
      }
      if (config_parse_u64(v, &n) != 0 || n > 65535) {
        config_err(errbuf, errlen, "%s: invalid port \"%s\" for %s (0-65535, or -1 to disable)",
                   source, v, s->flag);
        return -1;
      }
      *(int *)(base + s->offset) = (int)n;
      return 0;
    case CK_UINT:
    case CK_U64:
      if (config_parse_u64(v, &n) != 0 || n < s->min || (s->max && n > s->max)) {
        config_err(errbuf, errlen, "%s: invalid value \"%s\" for %s (a whole number %llu-%llu)",
                   source, v, s->flag, (unsigned long long)s->min, (unsigned long long)s->max);
        return -1;
      }
      if (s->kind == CK_UINT) *(unsigned *)(base + s->offset) = (unsigned)n;
      else *(uint64_t *)(base + s->offset) = n;
      return 0;
    case CK_ARRAY: {
      char ***slot = (char ***)(base + s->offset);
      size_t count = 0;
      while (*slot && (*slot)[count]) count++;
      *slot = xrealloc(*slot, (count + 2) * sizeof **slot);
      (*slot)[count] = xstrdup(v);
      (*slot)[count + 1] = NULL;
      return 0;
    }
    case CK_DURATION:
      if (duration_parse(v, strlen(v), (int64_t *)(base + s->offset)) != 0 ||
          *(int64_t *)(base + s->offset) < 0) {
        config_err(errbuf, errlen, "%s: invalid duration \"%s\" for %s", source, v, s->flag);
        return -1;
      }
      return 0;
    case CK_DURMAP:
      config_err(errbuf, errlen, "%s: %s can only be set in a config file", source, s->flag);
      return -1;
    case CK_META: {
      const char *colon = strchr(v, ':');
      if (!colon || colon == v) {
        config_err(errbuf, errlen, "%s: -node-meta wants key:value, got \"%s\"", source, v);
        return -1;
      }
      char *k = xstrndup(v, (size_t)(colon - v));
      json_object_set_new(cfg->node_meta, k, json_string(colon + 1));
      free(k);
      return 0;
    }
  }
  return -1;
}

/* Applies a JSON value to a setting; `path` is the full key for messages. */
static int config_set_json(struct config *cfg, const struct config_setting *s, json_t *v,
                           const char *path, const char *source, char *errbuf, size_t errlen)
{
  char *base = (char *)cfg;
  switch (s->kind) {
    case CK_STR:
    case CK_LIST:
      if (!json_is_string(v)) goto bad_type;
      if (s->kind == CK_STR) config_set_str((char **)(base + s->offset), json_string_value(v));
      else {
        config_list_free(*(char ***)(base + s->offset));
        *(char ***)(base + s->offset) = config_list_split(json_string_value(v));
      }
      return 0;
    case CK_BOOL:
      if (!json_is_boolean(v)) goto bad_type;
      *(bool *)(base + s->offset) = json_is_true(v);
      return 0;
    case CK_PORT:
    case CK_UINT:
    case CK_U64: {
      if (!json_is_integer(v)) goto bad_type;
      json_int_t n = json_integer_value(v);
      if (s->kind == CK_PORT) {
        if (n < -1 || n > 65535) goto bad_range;
        *(int *)(base + s->offset) = (int)n;
        return 0;
      }
      if (n < 0 || (uint64_t)n < s->min || (s->max && (uint64_t)n > s->max)) goto bad_range;
      if (s->kind == CK_UINT) *(unsigned *)(base + s->offset) = (unsigned)n;
      else *(uint64_t *)(base + s->offset) = (uint64_t)n;
      return 0;
    }
    case CK_ARRAY: {
      if (!json_is_array(v)) goto bad_type;
      char ***slot = (char ***)(base + s->offset);
      config_list_free(*slot);
      *slot = xcalloc(json_array_size(v) + 1, sizeof **slot);
      size_t i;
      json_t *item;
      json_array_foreach(v, i, item) {
        if (!json_is_string(item)) goto bad_type;
        (*slot)[i] = xstrdup(json_string_value(item));
      }
      return 0;
    }
    case CK_DURATION: {
      if (!json_is_string(v)) goto bad_type;
      int64_t ns;
      if (duration_parse(json_string_value(v), json_string_length(v), &ns) != 0 || ns < 0) {
        config_err(errbuf, errlen, "%s: %s: invalid duration \"%s\"", source, path,
                   json_string_value(v));
        return -1;
      }
      *(int64_t *)(base + s->offset) = ns;
      return 0;
    }
    case CK_DURMAP: {
      if (!json_is_object(v)) goto bad_type;
      const char *k;
      json_t *mv;
      json_object_foreach(v, k, mv) {
        int64_t ns;
        if (!json_is_string(mv) ||
            duration_parse(json_string_value(mv), json_string_length(mv), &ns) != 0 || ns < 0) {
          config_err(errbuf, errlen, "%s: %s[\"%s\"] must be a duration such as \"10s\"", source,
                     path, k);
          return -1;
        }
      }
      json_decref(cfg->dns_service_ttl);
      cfg->dns_service_ttl = json_deep_copy(v);
      return 0;
    }
    case CK_META: {
      if (!json_is_object(v)) goto bad_type;
      const char *k;
      json_t *mv;
      json_object_foreach(v, k, mv) {
        if (!json_is_string(mv)) {
          config_err(errbuf, errlen, "%s: node_meta value for \"%s\" must be a string", source, k);
          return -1;
        }
        json_object_set(cfg->node_meta, k, mv);
      }
      return 0;
    }
  }
bad_type:
  config_err(errbuf, errlen, "%s: %s has the wrong type", source, path);
  return -1;
bad_range:
  config_err(errbuf, errlen, "%s: %s is out of range", source, path);
  return -1;
}

static bool config_is_consul_only(const char *key)
{
  for (size_t i = 0; i < sizeof config_consul_only_keys / sizeof *config_consul_only_keys; i++)
    if (strcmp(key, config_consul_only_keys[i]) == 0) return true;
  return false;
}

/* "watches": a list of watch objects; each must parse as the agent will run it (Consul's
 * makeWatchPlan rules), so a bad watch stops the agent at start and a reload keeps the
 * running set. Watches of several files add up, as Consul appends them. */
static int config_add_watches(struct config *cfg, json_t *v, const char *source, char *errbuf,
                              size_t errlen)
{
  if (!json_is_array(v)) {
    config_err(errbuf, errlen, "%s: watches must be a list of objects", source);
    return -1;
  }
  if (json_array_size(cfg->watches) + json_array_size(v) > CONFIG_MAX_WATCHES) {
    config_err(errbuf, errlen, "%s: too many watches (at most %d)", source, CONFIG_MAX_WATCHES);
    return -1;
  }
  size_t i;
  json_t *w;
  json_array_foreach(v, i, w) {
    struct watch_spec spec;
    char e[512];
    int rv = watch_spec_parse(w, true, &spec, e, sizeof e);
    watch_spec_free(&spec);
    if (rv != 0) {
      config_err(errbuf, errlen, "%s: watches[%zu]: Failed to parse watch: %s", source, i, e);
      return -1;
    }
    json_array_append_new(cfg->watches,
                          json_pack("{s:s, s:I, s:O}", "source", source, "index", (json_int_t)i, "watch", w));
  }
  return 0;
}

/* Walks an object; `prefix` is "" at the top or "ports." etc. inside. */
static int config_apply_object(struct config *cfg, json_t *obj, const char *prefix,
                               const char *source, char *errbuf, size_t errlen)
{
  const char *k;
  json_t *v;
  json_object_foreach(obj, k, v) {
    char path[256];
    snprintf(path, sizeof path, "%s%s", prefix, k);
    const struct config_setting *match = NULL;
    bool is_parent = false;
    size_t plen = strlen(path);
    for (size_t i = 0; i < sizeof config_settings / sizeof *config_settings; i++) {
      const char *key = config_settings[i].key;
      if (!key) continue;
      if (strcmp(key, path) == 0) match = &config_settings[i];
      else if (strncmp(key, path, plen) == 0 && key[plen] == '.') is_parent = true;
    }
    if (!prefix[0] && (strcmp(k, "service") == 0 || strcmp(k, "services") == 0 ||
                       strcmp(k, "check") == 0 || strcmp(k, "checks") == 0)) {
      continue; /* read by the agent's local state from cfg->local_docs */
    } else if (!prefix[0] && strcmp(k, "watches") == 0) {
      if (config_add_watches(cfg, v, source, errbuf, errlen) != 0) return -1;
    } else if (match) {
      if (config_set_json(cfg, match, v, path, source, errbuf, errlen) != 0) return -1;
    } else if (is_parent && json_is_object(v)) {
      char sub[260];
      snprintf(sub, sizeof sub, "%s.", path);
      if (config_apply_object(cfg, v, sub, source, errbuf, errlen) != 0) return -1;
    } else if (prefix[0] || config_is_consul_only(k)) {
      /* Top-level keys Consul has, and any key inside a section we know (ports.grpc,
       * dns_config.prefer_namespace, ...): Consul has it, Concord does not act on it yet. */
      log_warn("agent.config", "%s: %s is not supported by Concord yet and is ignored", source,
               path);
    } else {
      config_err(errbuf, errlen, "%s: invalid config key %s", source, path);
      return -1;
    }
  }
  return 0;
}

int config_apply_json(struct config *cfg, const char *text, size_t len, const char *source,
                      char *errbuf, size_t errlen)
{
  json_error_t jerr;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) {
    config_err(errbuf, errlen, "%s: invalid JSON at line %d column %d: %s", source, jerr.line,
               jerr.column, jerr.text);
    return -1;
  }
  int rv = -1;
  if (!json_is_object(root)) {
    config_err(errbuf, errlen, "%s: the top level must be a JSON object", source);
  } else {
    rv = config_apply_object(cfg, root, "", source, errbuf, errlen);
    if (rv == 0 && (json_object_get(root, "service") || json_object_get(root, "services") ||
                    json_object_get(root, "check") || json_object_get(root, "checks")))
      json_array_append_new(cfg->local_docs, json_pack("{s:s, s:O}", "source", source, "doc", root));
  }
  json_decref(root);
  return rv;
}

static int config_load_file(struct config *cfg, const char *path, char *errbuf, size_t errlen)
{
  size_t n = strlen(path);
  if (n >= 4 && strcmp(path + n - 4, ".hcl") == 0) {
    config_err(errbuf, errlen, "%s: HCL config files are not supported by Concord; use JSON", path);
    return -1;
  }
  FILE *f = fopen(path, "rb");
  if (!f) {
    config_err(errbuf, errlen, "cannot read config file %s: %s", path, strerror(errno));
    return -1;
  }
  struct buf b = BUF_INIT;
  char chunk[65536];
  size_t got;
  while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
    buf_append(&b, chunk, got);
    if (b.len > CONFIG_MAX_FILE_BYTES) break;
  }
  bool read_err = ferror(f);
  fclose(f);
  int rv = -1;
  if (read_err) config_err(errbuf, errlen, "cannot read config file %s", path);
  else if (b.len > CONFIG_MAX_FILE_BYTES) config_err(errbuf, errlen, "%s: file too large", path);
  else rv = config_apply_json(cfg, b.data ? b.data : "", b.len, path, errbuf, errlen);
  buf_free(&b);
  return rv;
}

static int config_name_cmp(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A -config-dir: every *.json file in lexical order, as Consul; *.hcl is an error. */
static int config_load_dir(struct config *cfg, const char *dir, char *errbuf, size_t errlen)
{
  DIR *d = opendir(dir);
  if (!d) {
    config_err(errbuf, errlen, "cannot read config dir %s: %s", dir, strerror(errno));
    return -1;
  }
  char **names = NULL;
  size_t count = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t n = strlen(e->d_name);
    bool json = n > 5 && strcmp(e->d_name + n - 5, ".json") == 0;
    bool hcl = n > 4 && strcmp(e->d_name + n - 4, ".hcl") == 0;
    if (!json && !hcl) continue;
    names = xrealloc(names, (count + 1) * sizeof *names);
    names[count++] = xstrdup(e->d_name);
  }
  closedir(d);
  qsort(names, count, sizeof *names, config_name_cmp);
  int rv = 0;
  for (size_t i = 0; i < count; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    struct stat st;
    if (rv == 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode))
      rv = config_load_file(cfg, path, errbuf, errlen);
    free(names[i]);
  }
  free(names);
  return rv;
}

static void config_defaults(struct config *cfg)
{
  memset(cfg, 0, sizeof *cfg);
  cfg->datacenter = xstrdup("dc1");
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  cfg->node_name = xstrdup(host);
  cfg->node_id = xstrdup("");
  cfg->bind_addr = xstrdup("0.0.0.0");
  cfg->client_addrs = config_list_split("127.0.0.1");
  cfg->domain = xstrdup("consul.");
  cfg->log_level = xstrdup("info");
  cfg->port_http = 8500;
  cfg->port_dns = 8600;
  cfg->port_server = 8300;
  cfg->port_serf_lan = 8301;
  cfg->port_serf_wan = 8302;
  cfg->kv_max_value_size = 512 * 1024;
  cfg->txn_max_req_len = 512 * 1024;
  cfg->http_max_conns = 200000; /* Consul's default is 200 per client IP; see docs */
  cfg->raft_snapshot_threshold = 16384;
  cfg->raft_trailing_logs = 10240;
  /* Consul defaults to 5 (tuned for t2.micro); ours is 1 so failover stays under 2 s. */
  cfg->raft_multiplier = 1;
  cfg->node_meta = json_object();
  cfg->recursors = xcalloc(1, sizeof(char *));
  cfg->start_join = xcalloc(1, sizeof(char *));
  cfg->local_docs = json_array();
  cfg->watches = json_array();
  cfg->check_update_interval_ns = 5LL * 60 * 1000000000LL;
  cfg->disable_remote_exec = true; /* Consul 0.8+: exec is opt-in */
  cfg->retry_join = xcalloc(1, sizeof(char *));
  cfg->retry_interval_ns = 30000000000LL;
  cfg->start_join_wan = xcalloc(1, sizeof(char *));
  cfg->retry_join_wan = xcalloc(1, sizeof(char *));
  cfg->retry_interval_wan_ns = 30000000000LL;
  cfg->dns_service_ttl = json_object();
  cfg->dns_udp_answer_limit = 3;
  cfg->dns_node_meta_txt = true;
  cfg->dns_allow_stale = true;
  cfg->dns_max_stale_ns = 10LL * 365 * 24 * 3600 * 1000000000LL; /* Consul: 87600h */
  cfg->dns_recursor_timeout_ns = 2000000000LL;
  cfg->dns_soa_refresh = 3600;
  cfg->dns_soa_retry = 600;
  cfg->dns_soa_expire = 86400;
  cfg->dns_soa_min_ttl = 0;
  cfg->config_sources = xcalloc(1, sizeof(char *));
  cfg->encrypt_verify_incoming = cfg->encrypt_verify_outgoing = true;
}

void config_free(struct config *cfg)
{
  free(cfg->datacenter);
  free(cfg->node_name);
  free(cfg->node_id);
  free(cfg->data_dir);
  free(cfg->bind_addr);
  config_list_free(cfg->client_addrs);
  free(cfg->domain);
  free(cfg->alt_domain);
  free(cfg->log_level);
  free(cfg->encrypt_key);
  json_decref(cfg->node_meta);
  config_list_free(cfg->recursors);
  config_list_free(cfg->start_join);
  json_decref(cfg->local_docs);
  json_decref(cfg->watches);
  config_list_free(cfg->retry_join);
  config_list_free(cfg->start_join_wan);
  config_list_free(cfg->retry_join_wan);
  json_decref(cfg->dns_service_ttl);
  config_list_free(cfg->config_sources);
  config_list_free(cfg->argv);
  memset(cfg, 0, sizeof *cfg);
}

static const struct config_setting *config_find_flag(const char *name, size_t len)
{
  for (size_t i = 0; i < sizeof config_settings / sizeof *config_settings; i++) {
    const char *f = config_settings[i].flag;
    if (f && strlen(f) == len && strncmp(f, name, len) == 0) return &config_settings[i];
  }
  return NULL;
}

void config_usage(void)
{
  fprintf(stderr, "Usage: concord agent [options]\n\n"
                  "  Starts a Concord agent (Consul-compatible): a server with -server or -dev,\n"
                  "  otherwise a client. Runs until interrupted (SIGINT/SIGTERM); SIGHUP reloads.\n\n"
                  "Options:\n\n");
  for (size_t i = 0; i < sizeof config_settings / sizeof *config_settings; i++) {
    const struct config_setting *s = &config_settings[i];
    if (!s->flag) continue;
    fprintf(stderr, "  -%s%s\n      %s\n\n", s->flag, s->kind == CK_BOOL ? "" : "=<value>", s->help);
  }
  fprintf(stderr, "  -config-file=<path>\n      A JSON config file (repeatable; Consul's keys).\n\n"
                  "  -config-dir=<dir>\n      A directory of *.json config files, read in lexical order (repeatable).\n\n");
}

/* One parsed command-line flag, kept until the files are loaded. */
struct config_flag {
  const struct config_setting *setting;
  const char *value;
};

int config_reload(const struct config *running, struct config *fresh, char *errbuf,
                  size_t errlen)
{
  return config_load(running->argc, running->argv, fresh, errbuf, errlen);
}

int config_load(int argc, char **argv, struct config *cfg, char *errbuf, size_t errlen)
{
  config_defaults(cfg);
  cfg->argc = argc;
  cfg->argv = xcalloc((size_t)argc + 1, sizeof(char *));
  for (int i = 0; i < argc; i++) cfg->argv[i] = xstrdup(argv[i]);
  struct config_flag *flags = xcalloc((size_t)argc + 1, sizeof *flags);
  size_t nflags = 0, nsources = 0;
  int rv = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-' || a[1] == '\0') {
      config_err(errbuf, errlen, "unexpected argument \"%s\" (see concord agent -h)", a);
      goto out;
    }
    a += a[1] == '-' ? 2 : 1;
    const char *eq = strchr(a, '=');
    size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
    if ((nlen == 1 && a[0] == 'h') || (nlen == 4 && strncmp(a, "help", 4) == 0)) {
      config_usage();
      rv = 1;
      goto out;
    }
    bool is_source = (nlen == 11 && strncmp(a, "config-file", 11) == 0) ||
                     (nlen == 10 && strncmp(a, "config-dir", 10) == 0);
    const struct config_setting *s = is_source ? NULL : config_find_flag(a, nlen);
    if (!is_source && !s) {
      config_err(errbuf, errlen, "flag provided but not defined: -%.*s", (int)nlen, a);
      goto out;
    }
    const char *value = eq ? eq + 1 : NULL;
    if (!value && (is_source || s->kind != CK_BOOL)) {
      if (i + 1 >= argc) {
        config_err(errbuf, errlen, "flag needs an argument: -%.*s", (int)nlen, a);
        goto out;
      }
      value = argv[++i];
    }
    if (is_source) {
      /* Sources are kept with a "f:" or "d:" tag so reload knows file from directory. */
      cfg->config_sources = xrealloc(cfg->config_sources, (nsources + 2) * sizeof(char *));
      struct buf b = BUF_INIT;
      buf_printf(&b, "%c:%s", a[7] == 'f' ? 'f' : 'd', value);
      cfg->config_sources[nsources++] = buf_steal(&b, NULL);
      cfg->config_sources[nsources] = NULL;
    } else {
      flags[nflags].setting = s;
      flags[nflags++].value = value ? value : "true";
    }
  }
  /* -dev changes defaults before files and flags apply. */
  for (size_t i = 0; i < nflags; i++) {
    if (strcmp(flags[i].setting->flag, "dev") == 0 &&
        config_set_text(cfg, flags[i].setting, flags[i].value, "command line", errbuf, errlen) != 0)
      goto out;
  }
  if (cfg->dev) {
    cfg->server = true;
    cfg->bootstrap = true;
    cfg->ui = true;
    config_set_str(&cfg->bind_addr, "127.0.0.1");
    config_set_str(&cfg->log_level, "debug");
    cfg->raft_multiplier = 1;
    cfg->disable_keyring_file = true; /* Consul's dev defaults: nothing on disk */
  }
  for (char **src = cfg->config_sources; *src; src++) {
    int r = (*src)[0] == 'f' ? config_load_file(cfg, *src + 2, errbuf, errlen)
                             : config_load_dir(cfg, *src + 2, errbuf, errlen);
    if (r != 0) goto out;
  }
  for (size_t i = 0; i < nflags; i++) {
    if (config_set_text(cfg, flags[i].setting, flags[i].value, "command line", errbuf, errlen) != 0)
      goto out;
  }
  /* Validation across settings, as Consul's builder does. */
  for (char *p = cfg->datacenter; *p; p++) *p = (char)tolower((unsigned char)*p);
  if (!cfg->datacenter[0] || strspn(cfg->datacenter, "abcdefghijklmnopqrstuvwxyz0123456789-_") !=
                                 strlen(cfg->datacenter)) {
    config_err(errbuf, errlen, "datacenter \"%s\" must be alphanumeric with - and _ only",
               cfg->datacenter);
    goto out;
  }
  if (!cfg->node_name[0]) {
    config_err(errbuf, errlen, "node name must not be empty");
    goto out;
  }
  enum log_level lvl;
  if (log_parse_level(cfg->log_level, &lvl) != 0) {
    config_err(errbuf, errlen, "invalid log level \"%s\" (trace, debug, info, warn, err)",
               cfg->log_level);
    goto out;
  }
  if (cfg->bootstrap && cfg->bootstrap_expect > 1) {
    config_err(errbuf, errlen, "bootstrap and bootstrap_expect are mutually exclusive");
    goto out;
  }
  if (cfg->bootstrap) cfg->bootstrap_expect = 1;
  if (cfg->bootstrap_expect && !cfg->server) {
    config_err(errbuf, errlen, "bootstrap_expect requires server mode (-server)");
    goto out;
  }
  if (!cfg->dev && !cfg->data_dir) {
    config_err(errbuf, errlen, "data_dir cannot be empty (use -data-dir, or -dev)");
    goto out;
  }
  if (cfg->dev && cfg->data_dir) {
    free(cfg->data_dir);
    cfg->data_dir = NULL; /* -dev is always in memory, as in Consul */
  }
  if (!cfg->client_addrs[0]) {
    config_err(errbuf, errlen, "client_addr must name at least one address");
    goto out;
  }
  if (json_array_size(cfg->watches) > 0 && cfg->port_http < 0) {
    /* Watches query this agent's own HTTP API (Consul's reloadWatches). */
    config_err(errbuf, errlen, "watch plans require an HTTP or HTTPS endpoint");
    goto out;
  }
  if (cfg->node_id[0] && !uuid_is_valid(cfg->node_id)) {
    config_err(errbuf, errlen, "node_id \"%s\" is not a UUID", cfg->node_id);
    goto out;
  }
  if (cfg->encrypt_key && cfg->encrypt_key[0]) {
    /* Consul checks the base64 here; memberlist checks the size when the agent starts. */
    size_t n = strlen(cfg->encrypt_key), klen;
    uint8_t key[64];
    if (n > 64 || b64_decode(cfg->encrypt_key, n, key, &klen) != 0) {
      config_err(errbuf, errlen, "encrypt has invalid key: illegal base64 data");
      goto out;
    }
    if (klen != 16 && klen != 24 && klen != 32) {
      config_err(errbuf, errlen, "encrypt has invalid key: key size must be 16, 24 or 32 bytes");
      goto out;
    }
  }
  rv = 0;
out:
  free(flags);
  return rv;
}
