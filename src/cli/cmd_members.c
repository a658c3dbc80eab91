/* cmd_members.c -- `concord members`: the gossip members the agent knows, from
 * GET /v1/agent/members, in Consul's columns (Node, Address, Status, Type, Build, Protocol,
 * DC, Partition, Segment) or, with -detailed, every tag.
 *
 * As Consul does: servers sort first, then by segment, partition and name; the role tag
 * gives the type ("consul" server, "node" client, anything else "unknown" with the rest of
 * the row empty); Build is the build tag up to its first ':' ("< 0.3" when missing);
 * Protocol is the vsn tag. A member with no partition tag is shown in "default", and a
 * server's segment as "<all>". -status filters on an (unanchored) regular expression
 * over the status name, and when nothing matches the command prints nothing and exits 2. */
#include <arpa/inet.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/internal.h"
#include "lib/alloc.h"

struct opts {
  bool detailed, wan;
  const char *status, *segment, *filter;
  struct cli__http_opts http;
};

static void flags(struct cli__flagset *fs, struct opts *o)
{
  /* Zeroed first: the client reads every HTTP option, registered here or not. */
  memset(o, 0, sizeof(*o));
  cli__flags_init(fs);
  cli__flag_bool(fs, "detailed", &o->detailed,
                 "Shows every tag of each member instead of the usual columns.");
  cli__flag_bool(fs, "wan", &o->wan,
                 "If the agent is a server, lists the members of the WAN pool (the servers "
                 "of every datacenter) instead of the LAN pool.");
  cli__flag_string(fs, "status", &o->status, ".*",
                   "Shows only the members whose status (alive, leaving, left, failed, "
                   "none) matches this regular expression.");
  cli__flag_string(fs, "segment", &o->segment, "_all",
                   "(Enterprise-only) Shows only the members of this network segment.");
  cli__flag_string(fs, "filter", &o->filter, "", "Filter expression to apply to the members.");
  cli__http_client_flags(fs, &o->http);
  cli__http_partition_flag(fs, &o->http);
}

static const char usage[] =
    "Usage: concord members [options]\n"
    "\n"
    "  Lists the members of the cluster as the agent sees them through gossip.\n";

static void help(struct buf *out)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o);
  cli__flags_usage(usage, &fs, out);
}

/* serf.MemberStatus.String */
static const char *status_name(json_int_t s)
{
  static const char *const names[] = {"none", "alive", "leaving", "left", "failed"};
  return s >= 0 && s <= 4 ? names[s] : "unknown";
}

static const char *tag(json_t *m, const char *name)
{
  const char *v = json_string_value(json_object_get(json_object_get(m, "Tags"), name));
  return v ? v : "";
}

static bool is_default(const char *p) { return p[0] == '\0' || strcmp(p, "default") == 0; }

static int member_cmp(const void *a, const void *b)
{
  json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
  bool xs = strcmp(tag(x, "role"), "consul") == 0, ys = strcmp(tag(y, "role"), "consul") == 0;
  if (xs != ys) return xs ? -1 : 1;
  bool xd = is_default(tag(x, "ap")), yd = is_default(tag(y, "ap"));
  if (xd != yd) return xd ? -1 : 1;
  int c = strcmp(tag(x, "segment"), tag(y, "segment"));
  if (c) return c;
  c = strcmp(tag(x, "ap"), tag(y, "ap"));
  if (c) return c;
  const char *xn = json_string_value(json_object_get(x, "Name"));
  const char *yn = json_string_value(json_object_get(y, "Name"));
  return strcmp(xn ? xn : "", yn ? yn : "");
}

/* net.TCPAddr{IP: net.ParseIP(addr), Port}.String(): "ip:port", "[v6]:port", or ":port"
 * when the address does not parse; IPv4-mapped IPv6 addresses print as IPv4. */
static void addr_text(struct buf *out, const char *addr, json_int_t port)
{
  unsigned char raw[16];
  char txt[INET6_ADDRSTRLEN];
  if (addr && inet_pton(AF_INET, addr, raw) == 1) {
    buf_printf(out, "%s:%lld", addr, (long long)port);
  } else if (addr && inet_pton(AF_INET6, addr, raw) == 1) {
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(raw, mapped, 12) == 0) {
      inet_ntop(AF_INET, raw + 12, txt, sizeof(txt));
      buf_printf(out, "%s:%lld", txt, (long long)port);
    } else {
      inet_ntop(AF_INET6, raw, txt, sizeof(txt));
      buf_printf(out, "[%s]:%lld", txt, (long long)port);
    }
  } else {
    buf_printf(out, ":%lld", (long long)port);
  }
}

static int tag_cmp(const void *a, const void *b)
{
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* One row of the table, fields joined by 0x1f. Caller frees. */
static char *row(json_t *m, bool detailed)
{
  struct buf b = BUF_INIT;
  const char *name = json_string_value(json_object_get(m, "Name"));
  json_int_t status = json_integer_value(json_object_get(m, "Status"));
  buf_printf(&b, "%s\x1f", name ? name : "");
  addr_text(&b, json_string_value(json_object_get(m, "Addr")),
            json_integer_value(json_object_get(m, "Port")));
  buf_printf(&b, "\x1f%s\x1f", status_name(status));
  if (detailed) {
    json_t *tags = json_object_get(m, "Tags");
    size_t n = json_object_size(tags);
    const char **keys = xcalloc(n ? n : 1, sizeof(*keys));
    const char *k;
    json_t *v;
    size_t i = 0;
    json_object_foreach(tags, k, v) keys[i++] = k;
    qsort(keys, n, sizeof(*keys), tag_cmp);
    for (i = 0; i < n; i++) {
      const char *s = json_string_value(json_object_get(tags, keys[i]));
      buf_printf(&b, "%s%s=%s", i ? "," : "", keys[i], s ? s : "");
    }
    free(keys);
  } else {
    const char *role = tag(m, "role");
    const char *type = strcmp(role, "node") == 0 ? "client"
                       : strcmp(role, "consul") == 0 ? "server" : NULL;
    if (!type) {
      buf_puts(&b, "unknown\x1f\x1f\x1f\x1f\x1f");
    } else {
      const char *build = tag(m, "build");
      size_t bl = strcspn(build, ":");
      buf_printf(&b, "%s\x1f", type);
      if (!build[0]) buf_puts(&b, "< 0.3");
      else buf_append(&b, build, bl);
      buf_printf(&b, "\x1f%s\x1f%s\x1f%s\x1f%s", tag(m, "vsn"), tag(m, "dc"), tag(m, "ap"),
                 tag(m, "segment"));
    }
  }
  return buf_steal(&b, NULL);
}

static int run(struct cli__ctx *ctx, int argc, char **argv)
{
  struct cli__flagset fs;
  struct opts o;
  flags(&fs, &o);
  int rest = 0;
  if (cli__flags_parse(&fs, argc, argv, &rest, ctx->err) != 0) return 1;

  regex_t re;
  int rc = regcomp(&re, o.status, REG_EXTENDED | REG_NOSUB);
  if (rc != 0) {
    char e[256];
    regerror(rc, &re, e, sizeof(e));
    cli__error(ctx, "Failed to compile status regexp: %s", e);
    return 1;
  }
  char err[CLI__ERRLEN];
  struct cli__client c;
  if (cli__client_init(&c, ctx, &o.http, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error connecting to Consul agent: %s", err);
    regfree(&re);
    return 1;
  }
  struct cli__query q;
  cli__query_init(&q);
  cli__query_set(&q, "segment", o.segment);
  if (o.wan) cli__query_set(&q, "wan", "1");
  if (o.filter[0]) cli__query_set(&q, "filter", o.filter);
  struct cli__http_resp r;
  json_t *root = NULL;
  json_t **ms = NULL;
  int code = 1;
  if (cli__client_call(ctx, &c, "GET", "/v1/agent/members", &q, NULL, 0, false, &r, err,
                       sizeof(err)) != 0) {
    cli__error(ctx, "Error retrieving members: %s", err);
    goto out_client;
  }
  if (r.status != 200) {
    cli__status_error(&r, err, sizeof(err));
    cli__error(ctx, "Error retrieving members: %s", err);
    goto out;
  }
  json_error_t je;
  root = json_loadb(r.body.data, r.body.len, 0, &je);
  if (!root || !json_is_array(root)) {
    cli__error(ctx, "Error retrieving members: %s",
               root ? "json: cannot unmarshal into Go value of type []*api.AgentMember"
                    : je.text);
    goto out;
  }

  size_t n = 0, total = json_array_size(root);
  ms = xcalloc(total ? total : 1, sizeof(*ms));
  for (size_t i = 0; i < total; i++) {
    json_t *m = json_array_get(root, i);
    if (!json_is_object(m)) continue;
    json_t *tags = json_object_get(m, "Tags");
    if (!json_is_object(tags)) {
      tags = json_object();
      json_object_set_new(m, "Tags", tags);
    }
    /* The same rewrites Consul makes before filtering, which -detailed then shows. */
    if (!tag(m, "ap")[0]) json_object_set_new(tags, "ap", json_string("default"));
    if (is_default(tag(m, "ap"))) {
      if (strcmp(o.segment, "_all") == 0 && strcmp(tag(m, "role"), "consul") == 0)
        json_object_set_new(tags, "segment", json_string("<all>"));
      else if (!tag(m, "segment")[0])
        json_object_set_new(tags, "segment", json_string("<default>"));
    } else {
      json_object_set_new(tags, "segment", json_string(""));
    }
    const char *st = status_name(json_integer_value(json_object_get(m, "Status")));
    if (regexec(&re, st, 0, NULL, 0) == 0) ms[n++] = m;
  }
  if (n == 0) {
    code = 2;
    goto out;
  }
  qsort(ms, n, sizeof(*ms), member_cmp);

  char **lines = xcalloc(n + 1, sizeof(*lines));
  struct buf b = BUF_INIT;
  lines[0] = o.detailed ? xstrdup("Node\x1f" "Address\x1fStatus\x1fTags")
                        : xstrdup("Node\x1f" "Address\x1fStatus\x1fType\x1f" "Build\x1fProtocol"
                                  "\x1f" "DC\x1fPartition\x1fSegment");
  for (size_t i = 0; i < n; i++) lines[i + 1] = row(ms[i], o.detailed);
  cli__columnize(&b, lines, n + 1);
  buf_putc(&b, '\n');
  fwrite(b.data, 1, b.len, ctx->out);
  buf_free(&b);
  for (size_t i = 0; i <= n; i++) free(lines[i]);
  free(lines);
  code = 0;
out:
  free(ms);
  json_decref(root);
  cli__http_resp_free(&r);
out_client:
  cli__query_free(&q);
  cli__client_free(&c);
  regfree(&re);
  return code;
}

const struct cli__command cli__cmd_members = {
    .name = "members",
    .synopsis = "Lists the members of a Concord cluster",
    .run = run,
    .help = help,
};
