/* svcdef.c -- service definitions in Consul's config-file format, for `services register` and
 * `services deregister` FILE...: the files are first loaded as agent configuration (the same
 * config_load the agent runs, in -dev mode as Consul's command does, so a file the agent would
 * refuse is refused here with the agent's message), then their "service" objects and
 * "services" arrays are turned into /v1/agent/service/register bodies.
 *
 * What Consul's builder does on the way, and so do we: keys match whatever their case and
 * underscores ("enable_tag_override", "EnableTagOverride"), with Consul's aliases (check "id"
 * or "check_id", "args" or "script_args"); an unknown key is an error; each file gives its
 * "services" then its "service", files in the order given and a directory's *.json files in
 * lexical order; a service's "checks" then its "check" all become Checks; Weights default to
 * {Passing: 1, Warning: 1}; an unknown Kind means a typical service; durations are checked and
 * written back in Go's form ("90s" -> "1m30s", zero left out); FailuresBeforeWarning defaults
 * to FailuresBeforeCritical and H2PingUseTLS to true when H2PING is set. Proxy, Connect and
 * Locality (Connect features Concord does not act on) are passed on with their keys in the
 * API's CamelCase. Consul's conversion drops a check's ScriptArgs (a field-name mismatch in
 * its mapstructure step); we keep them, since that is what the file asks for. */
#include <ctype.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "cli/internal.h"
#include "config/config.h"
#include "lib/alloc.h"
#include "lib/duration.h"
#include "lib/log.h"

/* A config file is at most this big (config.c's cap), and a directory lists at most this many
 * files; beyond is a mistake rather than a configuration. */
#define MAX_FILE ((size_t)16 << 20)
#define MAX_DIR_FILES 4096

enum ftype { F_STR, F_BOOL, F_INT, F_DUR, F_STRLIST, F_STRMAP, F_HEADER, F_ADDRS, F_WEIGHTS,
             F_CHECK, F_CHECKS, F_KIND, F_GENERIC, F_DROP };

struct field {
  const char *norm;  /* lower case, no '_' or '-' */
  const char *name;  /* the API's field name */
  enum ftype type;
};

/* api.AgentServiceRegistration, in Go's field order (the order json.Marshal writes). */
static const struct field service_fields[] = {
    {"kind", "Kind", F_KIND},
    {"id", "ID", F_STR},
    {"name", "Name", F_STR},
    {"tags", "Tags", F_STRLIST},
    {"port", "Port", F_INT},
    {"address", "Address", F_STR},
    {"socketpath", "SocketPath", F_STR},
    {"taggedaddresses", "TaggedAddresses", F_ADDRS},
    {"enabletagoverride", "EnableTagOverride", F_BOOL},
    {"meta", "Meta", F_STRMAP},
    {"weights", "Weights", F_WEIGHTS},
    {"check", "Check", F_CHECK},
    {"checks", "Checks", F_CHECKS},
    {"proxy", "Proxy", F_GENERIC},
    {"connect", "Connect", F_GENERIC},
    {"namespace", "Namespace", F_STR},
    {"partition", "Partition", F_STR},
    {"locality", "Locality", F_GENERIC},
    {"token", "Token", F_DROP}, /* a registration token: the CLI's -token is what is sent */
};

/* api.AgentServiceCheck, in Go's field order, then Consul's config-only aliases. */
static const struct field check_fields[] = {
    {"checkid", "CheckID", F_STR},
    {"name", "Name", F_STR},
    {"scriptargs", "ScriptArgs", F_STRLIST},
    {"dockercontainerid", "DockerContainerID", F_STR},
    {"shell", "Shell", F_STR},
    {"interval", "Interval", F_DUR},
    {"timeout", "Timeout", F_DUR},
    {"ttl", "TTL", F_DUR},
    {"http", "HTTP", F_STR},
    {"header", "Header", F_HEADER},
    {"method", "Method", F_STR},
    {"body", "Body", F_STR},
    {"disableredirects", "DisableRedirects", F_BOOL},
    {"tcp", "TCP", F_STR},
    {"tcpusetls", "TCPUseTLS", F_BOOL},
    {"udp", "UDP", F_STR},
    {"status", "Status", F_STR},
    {"notes", "Notes", F_STR},
    {"tlsservername", "TLSServerName", F_STR},
    {"tlsskipverify", "TLSSkipVerify", F_BOOL},
    {"grpc", "GRPC", F_STR},
    {"grpcusetls", "GRPCUseTLS", F_BOOL},
    {"h2ping", "H2PING", F_STR},
    {"h2pingusetls", "H2PingUseTLS", F_BOOL},
    {"aliasnode", "AliasNode", F_STR},
    {"aliasservice", "AliasService", F_STR},
    {"successbeforepassing", "SuccessBeforePassing", F_INT},
    {"failuresbeforewarning", "FailuresBeforeWarning", F_INT},
    {"failuresbeforecritical", "FailuresBeforeCritical", F_INT},
    {"deregistercriticalserviceafter", "DeregisterCriticalServiceAfter", F_DUR},
    {"outputmaxsize", "OutputMaxSize", F_INT},
    {"osservice", "OSService", F_STR},
    /* Aliases Consul's config accepts. */
    {"id", "CheckID", F_STR},
    {"args", "ScriptArgs", F_STRLIST},
    {"serviceid", "ServiceID", F_DROP}, /* a service's check belongs to that service */
    {"token", "Token", F_DROP},
};

static void norm_key(const char *k, char *out, size_t outlen)
{
  size_t n = 0;
  for (; *k && n + 1 < outlen; k++)
    if (*k != '_' && *k != '-') out[n++] = (char)tolower((unsigned char)*k);
  out[n] = '\0';
}

static const struct field *find_field(const struct field *tab, size_t n, const char *key)
{
  char nk[128];
  if (strlen(key) >= sizeof(nk)) return NULL;
  norm_key(key, nk, sizeof(nk));
  for (size_t i = 0; i < n; i++)
    if (strcmp(tab[i].norm, nk) == 0) return &tab[i];
  return NULL;
}

/* Where a problem is: the file, then the key path. */
struct where {
  const char *file;
  char path[512];
};

static int bad(const struct where *w, char *err, size_t errlen, const char *what)
{
  snprintf(err, errlen, "%s: %s %s", w->file, w->path, what);
  return -1;
}

/* dst->path = parent's path + fmt (with s, or with i when s is NULL). */
static void sub(struct where *dst, const struct where *parent, const char *fmt, const char *s,
                size_t i)
{
  dst->file = parent->file;
  char part[256];
  if (s) snprintf(part, sizeof(part), fmt, s);
  else snprintf(part, sizeof(part), fmt, i);
  /* Paths in messages are cut at the buffer's size; the file name says where anyway. */
  size_t a = strlen(parent->path), b = strlen(part);
  if (a > sizeof(dst->path) - 1) a = sizeof(dst->path) - 1;
  if (b > sizeof(dst->path) - 1 - a) b = sizeof(dst->path) - 1 - a;
  memmove(dst->path, parent->path, a);
  memcpy(dst->path + a, part, b);
  dst->path[a + b] = '\0';
}

/* snake_case -> CamelCase with Consul's acronyms, for the keys of Proxy/Connect/Locality;
 * keys with an upper-case letter are already in API form. "config" objects are the user's
 * own and are copied as they are. */
static json_t *camelize(json_t *v, bool raw)
{
  if (json_is_array(v)) {
    json_t *a = json_array();
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) json_array_append_new(a, camelize(x, raw));
    return a;
  }
  if (!json_is_object(v) || raw) return json_deep_copy(v);
  static const char *const acr[] = {"id", "http", "tcp", "udp", "grpc", "tls", "ttl", "dns",
                                    "url", "ip", "sni"};
  json_t *o = json_object();
  const char *k;
  json_t *x;
  json_object_foreach(v, k, x) {
    struct buf b = BUF_INIT;
    bool upper = false;
    for (const char *p = k; *p; p++) upper |= isupper((unsigned char)*p) != 0;
    if (upper) {
      buf_puts(&b, k);
    } else {
      for (const char *p = k; *p;) {
        size_t len = strcspn(p, "_");
        bool done = false;
        for (size_t a = 0; a < sizeof(acr) / sizeof(acr[0]) && !done; a++) {
          if (strlen(acr[a]) == len && strncmp(acr[a], p, len) == 0) {
            for (size_t c = 0; c < len; c++) buf_putc(&b, (char)toupper((unsigned char)p[c]));
            done = true;
          }
        }
        if (!done && len) {
          buf_putc(&b, (char)toupper((unsigned char)p[0]));
          buf_append(&b, p + 1, len - 1);
        }
        p += len;
        if (*p == '_') p++;
      }
    }
    if (!b.data) buf_puts(&b, "");
    json_object_set_new(o, b.data, camelize(x, strcmp(b.data, "Config") == 0));
    buf_free(&b);
  }
  return o;
}

/* Converts one value of a known field into out[f->name]. */
static int convert_value(const struct field *f, json_t *v, json_t *out, const struct where *w,
                         char *err, size_t errlen);

/* One check definition -> an AgentServiceCheck object with canonical keys. */
static json_t *convert_check(json_t *def, const struct where *w, char *err, size_t errlen)
{
  if (!json_is_object(def)) {
    bad(w, err, errlen, "has the wrong type");
    return NULL;
  }
  json_t *out = json_object();
  const char *k;
  json_t *v;
  json_object_foreach(def, k, v) {
    struct where fw;
    sub(&fw, w, ".%s", k, 0);
    const struct field *f = find_field(check_fields, sizeof(check_fields) / sizeof(*check_fields), k);
    if (!f) {
      snprintf(err, errlen, "%s: invalid config key %s", w->file, fw.path);
      json_decref(out);
      return NULL;
    }
    if (convert_value(f, v, out, &fw, err, errlen) != 0) {
      json_decref(out);
      return NULL;
    }
  }
  /* The builder's defaults. */
  if (!json_object_get(out, "FailuresBeforeWarning") && json_object_get(out, "FailuresBeforeCritical"))
    json_object_set(out, "FailuresBeforeWarning", json_object_get(out, "FailuresBeforeCritical"));
  const char *h2 = json_string_value(json_object_get(out, "H2PING"));
  if (h2 && h2[0] && !json_object_get(out, "H2PingUseTLS"))
    json_object_set_new(out, "H2PingUseTLS", json_true());
  return out;
}

static int convert_value(const struct field *f, json_t *v, json_t *out, const struct where *w,
                         char *err, size_t errlen)
{
  switch (f->type) {
  case F_DROP: return 0;
  case F_STR:
  case F_KIND:
    if (!json_is_string(v)) return bad(w, err, errlen, "has the wrong type");
    if (f->type == F_KIND) {
      static const char *const kinds[] = {"connect-proxy", "mesh-gateway", "terminating-gateway",
                                          "ingress-gateway", "api-gateway"};
      bool known = false;
      for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        known |= strcmp(json_string_value(v), kinds[i]) == 0;
      if (!known) return 0; /* serviceKindVal: anything else is a typical service */
    }
    json_object_set(out, f->name, v);
    return 0;
  case F_BOOL:
    if (!json_is_boolean(v)) return bad(w, err, errlen, "has the wrong type");
    json_object_set(out, f->name, v);
    return 0;
  case F_INT:
    if (!json_is_integer(v)) return bad(w, err, errlen, "has the wrong type");
    if (json_integer_value(v) < INT32_MIN || json_integer_value(v) > INT32_MAX)
      return bad(w, err, errlen, "is out of range");
    json_object_set(out, f->name, v);
    return 0;
  case F_DUR: {
    int64_t ns;
    if (!json_is_string(v)) return bad(w, err, errlen, "has the wrong type");
    if (duration_parse(json_string_value(v), json_string_length(v), &ns) != 0) {
      struct buf q = BUF_INIT;
      cli__go_quote(&q, json_string_value(v));
      snprintf(err, errlen, "%s: %s: invalid duration %s", w->file, w->path, q.data);
      buf_free(&q);
      return -1;
    }
    char d[32];
    if (ns != 0) json_object_set_new(out, f->name, json_string(duration_format(ns, d, sizeof(d))));
    return 0;
  }
  case F_STRLIST: {
    if (!json_is_array(v)) return bad(w, err, errlen, "has the wrong type");
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x)
      if (!json_is_string(x)) return bad(w, err, errlen, "has the wrong type");
    json_object_set(out, f->name, v);
    return 0;
  }
  case F_STRMAP: {
    if (!json_is_object(v)) return bad(w, err, errlen, "has the wrong type");
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x)
      if (!json_is_string(x)) return bad(w, err, errlen, "has the wrong type");
    json_object_set(out, f->name, v);
    return 0;
  }
  case F_HEADER: {
    if (!json_is_object(v)) return bad(w, err, errlen, "has the wrong type");
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
      if (!json_is_array(x)) return bad(w, err, errlen, "has the wrong type");
      size_t i;
      json_t *y;
      json_array_foreach(x, i, y)
        if (!json_is_string(y)) return bad(w, err, errlen, "has the wrong type");
    }
    json_object_set(out, f->name, v);
    return 0;
  }
  case F_ADDRS: {
    /* name -> {address, port}, as api.ServiceAddress {Address, Port}. */
    if (!json_is_object(v)) return bad(w, err, errlen, "has the wrong type");
    json_t *addrs = json_object();
    const char *name;
    json_t *a;
    json_object_foreach(v, name, a) {
      struct where aw;
      sub(&aw, w, "[\"%s\"]", name, 0);
      if (!json_is_object(a)) {
        json_decref(addrs);
        return bad(&aw, err, errlen, "has the wrong type");
      }
      json_t *sa = json_object();
      json_object_set_new(sa, "Address", json_string(""));
      json_object_set_new(sa, "Port", json_integer(0));
      const char *k;
      json_t *x;
      json_object_foreach(a, k, x) {
        char nk[16];
        norm_key(k, nk, sizeof(nk));
        bool ok = (strcmp(nk, "address") == 0 && json_is_string(x)) ||
                  (strcmp(nk, "port") == 0 && json_is_integer(x));
        if (!ok) {
          json_decref(sa);
          json_decref(addrs);
          return bad(&aw, err, errlen, "must be an object of address (a string) and port");
        }
        json_object_set(sa, nk[0] == 'a' ? "Address" : "Port", x);
      }
      json_object_set_new(addrs, name, sa);
    }
    json_object_set_new(out, f->name, addrs);
    return 0;
  }
  case F_WEIGHTS: {
    if (!json_is_object(v)) return bad(w, err, errlen, "has the wrong type");
    json_t *wt = json_object_get(out, "Weights");
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
      char nk[16];
      norm_key(k, nk, sizeof(nk));
      if ((strcmp(nk, "passing") != 0 && strcmp(nk, "warning") != 0) || !json_is_integer(x))
        return bad(w, err, errlen, "must be an object of passing and warning (numbers)");
      json_object_set(wt, nk[0] == 'p' ? "Passing" : "Warning", x);
    }
    return 0;
  }
  case F_CHECK:
  case F_CHECKS: {
    /* Both become Checks: "checks" first, then "check" (the builder's order), whatever
     * order the keys came in; the caller appends them so. */
    json_t *list = json_object_get(out, f->type == F_CHECK ? "_check" : "_checks");
    if (f->type == F_CHECKS && !json_is_array(v)) return bad(w, err, errlen, "has the wrong type");
    size_t n = f->type == F_CHECK ? 1 : json_array_size(v);
    for (size_t i = 0; i < n; i++) {
      struct where cw;
      if (f->type == F_CHECKS) sub(&cw, w, "[%zu]", NULL, i);
      else cw = *w;
      json_t *c = convert_check(f->type == F_CHECK ? v : json_array_get(v, i), &cw, err, errlen);
      if (!c) return -1;
      json_array_append_new(list, c);
    }
    return 0;
  }
  case F_GENERIC:
    if (!json_is_object(v) && !json_is_null(v)) return bad(w, err, errlen, "has the wrong type");
    json_object_set_new(out, f->name, camelize(v, false));
    return 0;
  }
  return -1;
}

/* One service definition -> canonical form (see cli__svcdefs_load). */
static json_t *convert_service(json_t *def, const struct where *w, char *err, size_t errlen)
{
  if (!json_is_object(def)) {
    bad(w, err, errlen, "has the wrong type");
    return NULL;
  }
  json_t *out = json_object();
  json_t *wt = json_object();
  json_object_set_new(wt, "Passing", json_integer(1));
  json_object_set_new(wt, "Warning", json_integer(1));
  json_object_set_new(out, "Weights", wt);
  json_object_set_new(out, "_checks", json_array());
  json_object_set_new(out, "_check", json_array());
  const char *k;
  json_t *v;
  bool has_addr = false, has_socket = false;
  json_object_foreach(def, k, v) {
    struct where fw;
    sub(&fw, w, ".%s", k, 0);
    const struct field *f =
        find_field(service_fields, sizeof(service_fields) / sizeof(*service_fields), k);
    if (!f) {
      snprintf(err, errlen, "%s: invalid config key %s", w->file, fw.path);
      json_decref(out);
      return NULL;
    }
    if (convert_value(f, v, out, &fw, err, errlen) != 0) {
      json_decref(out);
      return NULL;
    }
    has_addr |= strcmp(f->name, "Port") == 0 || strcmp(f->name, "Address") == 0;
    has_socket |= strcmp(f->name, "SocketPath") == 0;
  }
  const char *name = json_string_value(json_object_get(out, "Name"));
  if (has_addr && has_socket) {
    snprintf(err, errlen, "service %s cannot have both socket path %s and address/port",
             name ? name : "", json_string_value(json_object_get(out, "SocketPath")));
    json_decref(out);
    return NULL;
  }
  json_int_t pass = json_integer_value(json_object_get(wt, "Passing"));
  json_int_t warn = json_integer_value(json_object_get(wt, "Warning"));
  if (pass < 1 || warn < 0) {
    snprintf(err, errlen, "Invalid weight definition for service %s: %s", name ? name : "",
             pass < 1 ? "Passing must be greater than 0" : "Warning must be greater or equal than 0");
    json_decref(out);
    return NULL;
  }
  json_t *checks = json_object_get(out, "_checks");
  json_array_extend(checks, json_object_get(out, "_check"));
  if (json_array_size(checks)) json_object_set(out, "Checks", checks);
  json_object_del(out, "_checks");
  json_object_del(out, "_check");
  return out;
}

static int name_cmp(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The services of one file, appended to defs. */
static int load_file(const char *path, json_t *defs, char *err, size_t errlen)
{
  struct buf b = BUF_INIT;
  char e[CLI__ERRLEN];
  if (cli__read_file(path, MAX_FILE, &b, e, sizeof(e)) != 0) {
    snprintf(err, errlen, "%s", e);
    buf_free(&b);
    return -1;
  }
  json_error_t je;
  json_t *root = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, &je);
  buf_free(&b);
  if (!json_is_object(root)) {
    /* config_load has already said this better; this is a file changed in between. */
    snprintf(err, errlen, "%s: invalid JSON: %s", path, root ? "not an object" : je.text);
    json_decref(root);
    return -1;
  }
  int rc = 0;
  struct where w = {.file = path};
  json_t *list = NULL, *one = NULL;
  const char *k;
  json_t *v;
  json_object_foreach(root, k, v) {
    char nk[16];
    if (strlen(k) >= sizeof(nk)) continue;
    norm_key(k, nk, sizeof(nk));
    if (strcmp(nk, "services") == 0) list = v;
    else if (strcmp(nk, "service") == 0) one = v;
  }
  if (list && !json_is_array(list)) {
    snprintf(err, errlen, "%s: services has the wrong type", path);
    rc = -1;
  }
  for (size_t i = 0; rc == 0 && i < json_array_size(list); i++) {
    snprintf(w.path, sizeof(w.path), "services[%zu]", i);
    json_t *s = convert_service(json_array_get(list, i), &w, err, errlen);
    if (!s) rc = -1;
    else json_array_append_new(defs, s);
  }
  if (rc == 0 && one) {
    snprintf(w.path, sizeof(w.path), "service");
    json_t *s = convert_service(one, &w, err, errlen);
    if (!s) rc = -1;
    else json_array_append_new(defs, s);
  }
  json_decref(root);
  return rc;
}

/* A directory's *.json regular files in lexical order, as config.c reads them. */
static int load_dir(const char *dir, json_t *defs, char *err, size_t errlen)
{
  DIR *d = opendir(dir);
  if (!d) {
    snprintf(err, errlen, "cannot read config dir %s", dir);
    return -1;
  }
  char **names = NULL;
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL && n < MAX_DIR_FILES) {
    size_t len = strlen(e->d_name);
    if (len > 5 && strcmp(e->d_name + len - 5, ".json") == 0) {
      names = xrealloc(names, (n + 1) * sizeof(*names));
      names[n++] = xstrdup(e->d_name);
    }
  }
  closedir(d);
  if (n) qsort(names, n, sizeof(*names), name_cmp);
  int rc = 0;
  for (size_t i = 0; i < n; i++) {
    struct buf p = BUF_INIT;
    buf_printf(&p, "%s/%s", dir, names[i]);
    struct stat st;
    if (rc == 0 && stat(p.data, &st) == 0 && S_ISREG(st.st_mode))
      rc = load_file(p.data, defs, err, errlen);
    buf_free(&p);
    free(names[i]);
  }
  free(names);
  return rc;
}

int cli__config_check(char **paths, int n, bool dev, struct config *cfg, char *err,
                      size_t errlen)
{
  /* argv as `concord agent [-dev] -config-file F -config-dir D ...` would have it. */
  char **argv = xcalloc((size_t)n * 2 + 3, sizeof(*argv));
  int argc = 0;
  argv[argc++] = "agent";
  if (dev) argv[argc++] = "-dev";
  for (int i = 0; i < n; i++) {
    struct stat st;
    bool dir = stat(paths[i], &st) == 0 && S_ISDIR(st.st_mode);
    argv[argc++] = dir ? "-config-dir" : "-config-file";
    argv[argc++] = paths[i];
  }
  int rc = config_load(argc, argv, cfg, err, errlen);
  free(argv);
  return rc == 0 ? 0 : -1;
}

int cli__svcdefs_load(char **paths, int n, json_t **defs, char *err, size_t errlen)
{
  *defs = NULL;
  struct config cfg;
  /* Keys the agent ignores for now ("service" itself among them) are logged as warnings by
   * config_load; they say nothing about the services being registered. */
  enum log_level lvl = log_get_level();
  log_set_level(LOG_ERROR);
  int rc = cli__config_check(paths, n, true, &cfg, err, errlen);
  log_set_level(lvl);
  config_free(&cfg);
  if (rc != 0) return -1;
  json_t *out = json_array();
  for (int i = 0; i < n && rc == 0; i++) {
    struct stat st;
    if (stat(paths[i], &st) == 0 && S_ISDIR(st.st_mode)) rc = load_dir(paths[i], out, err, errlen);
    else rc = load_file(paths[i], out, err, errlen);
  }
  if (rc != 0) {
    json_decref(out);
    return -1;
  }
  *defs = out;
  return 0;
}

/* Appends field `name` of obj to dst when it is not Go's "empty" (omitempty). */
static void put_nonempty(json_t *dst, json_t *obj, const char *name)
{
  json_t *v = json_object_get(obj, name);
  if (!v || json_is_null(v) || json_is_false(v)) return;
  if (json_is_string(v) && !json_string_length(v)) return;
  if (json_is_integer(v) && !json_integer_value(v)) return;
  if ((json_is_array(v) && !json_array_size(v)) || (json_is_object(v) && !json_object_size(v)))
    return;
  json_object_set(dst, name, v);
}

static json_t *ordered_check(json_t *c)
{
  json_t *o = json_object();
  for (size_t i = 0; i < sizeof(check_fields) / sizeof(*check_fields); i++) {
    if (check_fields[i].type == F_DROP) continue;
    if (i > 0 && strcmp(check_fields[i].name, "CheckID") == 0) continue; /* an alias */
    if (strcmp(check_fields[i].norm, "args") == 0) continue;
    put_nonempty(o, c, check_fields[i].name);
  }
  return o;
}

char *cli__svcdef_encode(json_t *def)
{
  json_t *o = json_object();
  for (size_t i = 0; i < sizeof(service_fields) / sizeof(*service_fields); i++) {
    const char *name = service_fields[i].name;
    if (service_fields[i].type == F_DROP) continue;
    if (strcmp(name, "Check") == 0 || strcmp(name, "Checks") == 0) {
      /* No omitempty on these two: null when absent. */
      json_t *v = json_object_get(def, name);
      if (json_is_array(v)) {
        json_t *a = json_array();
        size_t k;
        json_t *c;
        json_array_foreach(v, k, c) json_array_append_new(a, ordered_check(c));
        json_object_set_new(o, name, a);
      } else if (json_is_object(v)) {
        json_object_set_new(o, name, ordered_check(v));
      } else {
        json_object_set_new(o, name, json_null());
      }
      continue;
    }
    put_nonempty(o, def, name);
  }
  char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(o);
  return s;
}
