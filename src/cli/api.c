/* api.c -- the part of Consul's Go `api` package and `command/flags/http.go` the CLI needs:
 * the HTTP flags every command shares, how they combine with the CONSUL_* environment, and
 * the request plumbing (query encoding, token header, status errors).
 *
 * Precedence, as in Consul: built-in defaults, then the environment (CONSUL_HTTP_ADDR,
 * CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE, CONSUL_HTTP_AUTH, CONSUL_HTTP_SSL,
 * CONSUL_NAMESPACE, CONSUL_PARTITION), then the flags that were given. An empty -http-addr
 * or -token falls back to the environment, and a token file, when one is named, always wins
 * over a token. The TLS flags are accepted so scripts keep working, but HTTPS itself is not
 * implemented yet and is refused with a clear message. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/internal.h"
#include "lib/alloc.h"
#include "lib/b64.h"

void cli__http_client_flags(struct cli__flagset *fs, struct cli__http_opts *o)
{
  cli__flag_optstr(fs, "http-addr", &o->addr, true,
                   "The `address` and port of the agent's HTTP API. The value can be an IP "
                   "address or a DNS name, but it must include the port. It can also be "
                   "given in the CONSUL_HTTP_ADDR environment variable. The default is "
                   "http://127.0.0.1:8500. unix:///path/to/socket is accepted too. The "
                   "scheme can also be set to HTTPS with CONSUL_HTTP_SSL=true (HTTPS is not "
                   "supported by Concord yet).");
  cli__flag_optstr(fs, "token", &o->token, true,
                   "ACL token to send with the request. It can also be given in the "
                   "CONSUL_HTTP_TOKEN environment variable. If unset, the agent uses its own "
                   "default token.");
  cli__flag_optstr(fs, "token-file", &o->token_file, true,
                   "File holding the ACL token to send, used instead of -token or "
                   "CONSUL_HTTP_TOKEN. It can also be given in the CONSUL_HTTP_TOKEN_FILE "
                   "environment variable.");
  cli__flag_optstr(fs, "ca-file", &o->ca_file, true,
                   "Path to a CA file for TLS with the agent (CONSUL_CACERT). Accepted for "
                   "compatibility; HTTPS is not supported by Concord yet.");
  cli__flag_optstr(fs, "ca-path", &o->ca_path, true,
                   "Path to a directory of CA certificates for TLS with the agent "
                   "(CONSUL_CAPATH). Accepted for compatibility; HTTPS is not supported by "
                   "Concord yet.");
  cli__flag_optstr(fs, "client-cert", &o->client_cert, true,
                   "Path to a client certificate for TLS when 'verify_incoming' is on "
                   "(CONSUL_CLIENT_CERT). Accepted for compatibility; HTTPS is not "
                   "supported by Concord yet.");
  cli__flag_optstr(fs, "client-key", &o->client_key, true,
                   "Path to a client key for TLS when 'verify_incoming' is on "
                   "(CONSUL_CLIENT_KEY). Accepted for compatibility; HTTPS is not supported "
                   "by Concord yet.");
  cli__flag_optstr(fs, "tls-server-name", &o->tls_server_name, true,
                   "Server name to use as the SNI host with TLS (CONSUL_TLS_SERVER_NAME). "
                   "Accepted for compatibility; HTTPS is not supported by Concord yet.");
}

void cli__http_server_flags(struct cli__flagset *fs, struct cli__http_opts *o)
{
  cli__flag_optstr(fs, "datacenter", &o->datacenter, true,
                   "Name of the datacenter to query. If unset, the datacenter of the agent "
                   "that answers is used.");
  cli__flag_optbool(fs, "stale", &o->stale, true,
                    "Let any server, not only the leader, answer the request. This lowers "
                    "latency and raises throughput, but the data may be stale. It has no "
                    "effect on writes. The default is false.");
}

void cli__http_partition_flag(struct cli__flagset *fs, struct cli__http_opts *o)
{
  /* Consul lists these under "Command Options": its help only groups the client and
   * server flags as HTTP options. */
  cli__flag_optstr(fs, "partition", &o->partition, false,
                   "The admin partition to query. If unset, it is inferred from the ACL "
                   "token, or is the `default` admin partition. Admin partitions are a "
                   "Consul Enterprise feature; Concord accepts the flag and passes it on.");
}

void cli__http_tenancy_flags(struct cli__flagset *fs, struct cli__http_opts *o)
{
  cli__flag_optstr(fs, "namespace", &o->ns, false,
                   "The namespace to query. If unset, it is inferred from the ACL token, or "
                   "is the `default` namespace. Namespaces are a Consul Enterprise feature; "
                   "Concord accepts the flag and passes it on.");
  cli__http_partition_flag(fs, o);
}

/* ---- Query strings ---- */

void cli__query_init(struct cli__query *q) { memset(q, 0, sizeof(*q)); }

void cli__query_set(struct cli__query *q, const char *name, const char *value)
{
  for (size_t i = 0; i < q->n; i++) {
    if (strcmp(q->p[i].name, name) == 0) {
      free(q->p[i].value);
      q->p[i].value = xstrdup(value);
      return;
    }
  }
  /* Commands set a handful of fixed names; more is a programming error. */
  if (q->n >= CLI__MAX_PARAMS) abort();
  q->p[q->n].name = name;
  q->p[q->n].value = xstrdup(value);
  q->n++;
}

void cli__query_add(struct cli__query *q, const char *name, const char *value)
{
  /* Commands add at most their repeatable flags' caps; more is a programming error. */
  if (q->n >= CLI__MAX_PARAMS) abort();
  q->p[q->n].name = name;
  q->p[q->n].value = xstrdup(value);
  q->n++;
}

void cli__query_node_meta(struct cli__query *q, const struct cli__mapflag *m)
{
  size_t order[CLI__MAX_REPEAT];
  for (size_t i = 0; i < m->n; i++) {
    size_t j = i;
    for (; j > 0 && strcmp(m->key[order[j - 1]], m->key[i]) > 0; j--) order[j] = order[j - 1];
    order[j] = i;
  }
  for (size_t i = 0; i < m->n; i++) {
    struct buf b = BUF_INIT;
    buf_printf(&b, "%s:%s", m->key[order[i]], m->val[order[i]]);
    cli__query_add(q, "node-meta", b.data);
    buf_free(&b);
  }
}

void cli__query_free(struct cli__query *q)
{
  for (size_t i = 0; i < q->n; i++) free(q->p[i].value);
  q->n = 0;
}

static bool query_has(const struct cli__query *q, const char *name)
{
  for (size_t i = 0; i < q->n; i++)
    if (strcmp(q->p[i].name, name) == 0) return true;
  return false;
}

/* Go's unicode.IsSpace for ASCII, which strings.TrimSpace uses. */
static bool go_space(char c)
{
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* ---- The client ---- */

void cli__client_free(struct cli__client *c)
{
  cli__addr_free(&c->addr);
  free(c->token);
  free(c->authorization);
  free(c->datacenter);
  free(c->ns);
  free(c->partition);
  memset(c, 0, sizeof(*c));
}

static bool parse_bool_env(const char *s)
{
  return s && (strcmp(s, "1") == 0 || strcmp(s, "t") == 0 || strcmp(s, "T") == 0 ||
               strcmp(s, "TRUE") == 0 || strcmp(s, "true") == 0 || strcmp(s, "True") == 0);
}

/* A flag's value when it was given non-empty, else the environment's, else NULL. */
static const char *pick(const struct cli__optstr *flag, const char *env)
{
  if (flag->set && flag->v && flag->v[0]) return flag->v;
  return env;
}

int cli__client_init(struct cli__client *c, const struct cli__ctx *ctx,
                     const struct cli__http_opts *o, char *err, size_t errlen)
{
  memset(c, 0, sizeof(*c));
  c->max_body = CLI__MAX_BODY;
  const char *addr = pick(&o->addr, cli__env(ctx, "CONSUL_HTTP_ADDR"));
  if (!addr) addr = "127.0.0.1:8500";
  bool ssl = parse_bool_env(cli__env(ctx, "CONSUL_HTTP_SSL"));
  if (cli__addr_parse(addr, ssl, &c->addr, err, errlen) != 0) return -1;
  if (c->addr.tls) {
    snprintf(err, errlen,
             "HTTPS (an https:// address or CONSUL_HTTP_SSL=true) is not supported by this "
             "version of Concord yet; use http:// or a unix:// socket");
    cli__client_free(c);
    return -1;
  }

  /* A -token-file that was given (even empty) replaces CONSUL_HTTP_TOKEN_FILE. */
  const char *token_file = o->token_file.set ? o->token_file.v
                                             : cli__env(ctx, "CONSUL_HTTP_TOKEN_FILE");
  const char *token = pick(&o->token, cli__env(ctx, "CONSUL_HTTP_TOKEN"));
  if (token_file && token_file[0]) {
    struct buf b = BUF_INIT;
    char e[CLI__ERRLEN];
    if (cli__read_file(token_file, 64 << 10, &b, e, sizeof(e)) != 0) {
      snprintf(err, errlen, "Error loading token file: %s", e);
      buf_free(&b);
      cli__client_free(c);
      return -1;
    }
    /* strings.TrimSpace */
    char *s = b.data, *t = b.data + b.len;
    while (s < t && go_space(*s)) s++;
    while (t > s && go_space(t[-1])) t--;
    if (t > s) c->token = xstrndup(s, (size_t)(t - s));
    buf_free(&b);
  }
  if (!c->token && token) c->token = xstrdup(token);

  const char *auth = cli__env(ctx, "CONSUL_HTTP_AUTH");
  if (auth) {
    /* "user:password", or a user alone with an empty password. */
    struct buf raw = BUF_INIT;
    buf_puts(&raw, auth);
    if (!strchr(auth, ':')) buf_putc(&raw, ':');
    char *enc = xmalloc(b64_encoded_len(raw.len) + 1);
    b64_encode(raw.data, raw.len, enc);
    size_t n = strlen(enc) + 7;
    c->authorization = xmalloc(n);
    snprintf(c->authorization, n, "Basic %s", enc);
    free(enc);
    buf_free(&raw);
  }

  const char *dc = o->datacenter.set && o->datacenter.v[0] ? o->datacenter.v : NULL;
  if (dc) c->datacenter = xstrdup(dc);
  const char *ns = pick(&o->ns, cli__env(ctx, "CONSUL_NAMESPACE"));
  if (ns) c->ns = xstrdup(ns);
  const char *part = pick(&o->partition, cli__env(ctx, "CONSUL_PARTITION"));
  if (part) c->partition = xstrdup(part);
  c->stale = o->stale.set && o->stale.v;
  return 0;
}

static int client_call(const struct cli__ctx *ctx, const struct cli__client *c,
                       const char *method, const char *path, struct cli__query *q,
                       const void *body, size_t body_len, bool has_body,
                       struct cli__http_req *stream, struct cli__http_resp *resp, char *err,
                       size_t errlen)
{
  struct cli__query local;
  cli__query_init(&local);
  if (!q) q = &local;
  /* The client's defaults apply unless the request set its own (api.newRequest). */
  if (c->datacenter && !query_has(q, "dc")) cli__query_set(q, "dc", c->datacenter);
  if (c->ns && !query_has(q, "ns")) cli__query_set(q, "ns", c->ns);
  if (c->partition && !query_has(q, "partition")) cli__query_set(q, "partition", c->partition);

  struct buf target = BUF_INIT;
  cli__escape_path(&target, path);
  /* Go's Values.Encode sorts by name. */
  size_t order[CLI__MAX_PARAMS];
  for (size_t i = 0; i < q->n; i++) order[i] = i;
  for (size_t i = 1; i < q->n; i++) {
    size_t k = order[i], j = i;
    while (j > 0 && strcmp(q->p[order[j - 1]].name, q->p[k].name) > 0) {
      order[j] = order[j - 1];
      j--;
    }
    order[j] = k;
  }
  for (size_t i = 0; i < q->n; i++) {
    buf_putc(&target, i ? '&' : '?');
    cli__escape_query(&target, q->p[order[i]].name);
    buf_putc(&target, '=');
    cli__escape_query(&target, q->p[order[i]].value);
  }
  struct cli__http_req req = {
      .method = method,
      .target = target.data,
      .body = has_body ? (body ? body : "") : NULL,
      .body_len = has_body ? body_len : 0,
      .token = c->token,
      .authorization = c->authorization,
  };
  if (stream) {
    req.on_body = stream->on_body;
    req.on_body_arg = stream->on_body_arg;
    req.stop = stream->stop;
  }
  int rc = cli__http_do(ctx, &c->addr, &req, c->max_body, resp, err, errlen);
  buf_free(&target);
  cli__query_free(&local);
  return rc;
}

int cli__client_call(const struct cli__ctx *ctx, const struct cli__client *c,
                     const char *method, const char *path, struct cli__query *q,
                     const void *body, size_t body_len, bool has_body,
                     struct cli__http_resp *resp, char *err, size_t errlen)
{
  return client_call(ctx, c, method, path, q, body, body_len, has_body, NULL, resp, err,
                     errlen);
}

int cli__client_stream(const struct cli__ctx *ctx, const struct cli__client *c,
                       const char *path, struct cli__query *q,
                       void (*on_body)(void *arg, const char *data, size_t len), void *arg,
                       const volatile sig_atomic_t *stop, struct cli__http_resp *resp, char *err,
                       size_t errlen)
{
  struct cli__http_req s = {.on_body = on_body, .on_body_arg = arg, .stop = stop};
  return client_call(ctx, c, "GET", path, q, NULL, 0, false, &s, resp, err, errlen);
}

int cli__client_json(const struct cli__ctx *ctx, const struct cli__client *c,
                     const char *method, const char *path, struct cli__query *q,
                     const void *body, size_t body_len, bool has_body, json_t **out,
                     char *err, size_t errlen)
{
  struct cli__http_resp r;
  memset(&r, 0, sizeof(r));
  if (out) *out = NULL;
  if (cli__client_call(ctx, c, method, path, q, body, body_len, has_body, &r, err, errlen) != 0)
    return -1;
  int rc = 0;
  if (r.status != 200) {
    cli__status_error(&r, err, errlen);
    rc = -1;
  } else if (out) {
    json_error_t je;
    *out = json_loadb(r.body.data ? r.body.data : "", r.body.len, JSON_DECODE_ANY, &je);
    if (!*out) {
      /* Go's decoder names the first bad byte; jansson's sentence says as much. */
      snprintf(err, errlen, "%s", r.body.len ? je.text : "EOF");
      rc = -1;
    }
  }
  cli__http_resp_free(&r);
  return rc;
}

void cli__status_error(const struct cli__http_resp *r, char *err, size_t errlen)
{
  const char *s = r->body.data ? r->body.data : "";
  const char *e = s + r->body.len;
  while (s < e && go_space(*s)) s++;
  while (e > s && go_space(e[-1])) e--;
  snprintf(err, errlen, "Unexpected response code: %d (%.*s)", r->status, (int)(e - s), s);
}

int cli__put_once(struct cli__ctx *ctx, const struct cli__http_opts *o, const char *path,
                  struct cli__query *q, const char *fail_prefix, const char *ok_message)
{
  char err[CLI__ERRLEN];
  struct cli__client c;
  if (cli__client_init(&c, ctx, o, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error connecting to Consul agent: %s", err);
    return 1;
  }
  int code = 0;
  if (cli__client_json(ctx, &c, "PUT", path, q, NULL, 0, false, NULL, err, sizeof(err)) != 0) {
    cli__error(ctx, "%s: %s", fail_prefix, err);
    code = 1;
  } else if (ok_message) {
    cli__info(ctx, "%s", ok_message);
  }
  cli__client_free(&c);
  return code;
}
