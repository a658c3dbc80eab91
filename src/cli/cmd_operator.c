/* cmd_operator.c -- `concord operator` and `concord operator raft`, the parents of the
 * operator subcommands, and the two Raft ones:
 *
 *   operator raft list-peers [-stale]     GET /v1/operator/raft/configuration, as a table
 *   operator raft remove-peer -address=ip:port | -id=ID
 *                                         DELETE /v1/operator/raft/peer?address= / ?id=
 *
 * list-peers prints the columns of Consul 1.17 (Node, ID, Address, State, Voter,
 * RaftProtocol, Commit Index, Trails Leader By), the last two computed from each server's
 * LastIndex against the leader's exactly as Consul's command does (including its uint64
 * arithmetic when a follower reports more than the leader).
 *
 * These two commands report flag errors as "Failed to parse args: ..." and a bad client setup
 * as "Error initializing client: ...", unlike most commands; that is Consul's text. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "cli/internal.h"
#include "lib/gojson.h"
#include "lib/alloc.h"

/* ---- The parents: help only (on stderr, exit 1 when run bare) ---- */

static const char operator_usage[] =
    "Usage: concord operator <subcommand> [options]\n"
    "\n"
    "  Cluster-level tools for operators, such as inspecting and repairing the Raft\n"
    "  configuration of the servers. Use them with great care: a wrong step can take\n"
    "  the cluster down or lose data.\n"
    "\n"
    "  Most requests must be answered by the leader. Concord servers do not forward\n"
    "  them yet, so point these commands at the leader's agent (list-peers also takes\n"
    "  -stale, which any server answers). Run a subcommand with -h for its own help.\n";

static const char raft_usage[] =
    "Usage: concord operator raft <subcommand> [options]\n"
    "\n"
    "  Works on the servers' Raft configuration: lists the peers, or, in the rare case\n"
    "  that a dead server is still counted in the quorum, removes it.\n";

static void operator_help(struct buf *out) { cli__flags_usage(operator_usage, NULL, out); }
static void raft_help(struct buf *out) { cli__flags_usage(raft_usage, NULL, out); }

static int parent_run(struct cli__ctx *ctx, int argc, char **argv)
{
  (void)ctx;
  (void)argc;
  (void)argv;
  return CLI__RUN_HELP;
}

const struct cli__command cli__cmd_operator = {
    .name = "operator",
    .synopsis = "Provides cluster-level tools for Concord operators",
    .run = parent_run,
    .help = operator_help,
};

const struct cli__command cli__cmd_operator_raft = {
    .name = "operator raft",
    .synopsis = "Provides cluster-level tools for Concord operators",
    .run = parent_run,
    .help = raft_help,
};

/* ---- list-peers ---- */

struct list_opts {
  struct cli__http_opts http;
};

static void list_flags(struct cli__flagset *fs, struct list_opts *o)
{
  /* Zeroed first: the client reads every HTTP option, registered here or not. */
  memset(o, 0, sizeof(*o));
  cli__flags_init(fs);
  cli__http_client_flags(fs, &o->http);
  cli__http_server_flags(fs, &o->http);
}

static const char list_usage[] =
    "Usage: concord operator raft list-peers [options]\n"
    "\n"
    "  Shows the servers in the current Raft configuration: their node name, Raft ID\n"
    "  and address, which one leads, whether each votes, and how far each one's log\n"
    "  trails the leader's. With -stale any server answers, which helps when the\n"
    "  cluster has no leader.\n";

static void list_help(struct buf *out)
{
  struct cli__flagset fs;
  struct list_opts o;
  list_flags(&fs, &o);
  cli__flags_usage(list_usage, &fs, out);
}

/* One entry of api.RaftConfiguration's Servers. Strings borrowed from the JSON document. */
struct raft_server {
  const char *id, *node, *address, *protocol;
  bool leader, voter;
  uint64_t last_index;
};

/* encoding/json matches a field name exactly first, then case-insensitively. */
static json_t *field(json_t *obj, const char *name)
{
  json_t *v = json_object_get(obj, name);
  if (v) return v;
  const char *k;
  json_object_foreach(obj, k, v)
    if (strcasecmp(k, name) == 0) return v;
  return NULL;
}

static int mismatch(const json_t *v, const char *fieldname, const char *gotype, char *err,
                    size_t errlen)
{
  snprintf(err, errlen, "json: cannot unmarshal %s into Go struct field RaftServer.Servers.%s"
           " of type %s", json_go_kind(v), fieldname, gotype);
  return -1;
}

/* Decodes one server as json.Unmarshal would: absent or null fields stay zero, a value of
 * the wrong type is an error. Returns 0, or -1 with Go's message in err. */
static int decode_server(json_t *s, struct raft_server *out, char *err, size_t errlen)
{
  memset(out, 0, sizeof(*out));
  out->id = out->node = out->address = out->protocol = "";
  if (json_is_null(s)) return 0;
  if (!json_is_object(s)) {
    snprintf(err, errlen, "json: cannot unmarshal %s into Go struct field "
             "RaftConfiguration.Servers of type api.RaftServer", json_go_kind(s));
    return -1;
  }
  static const struct {
    const char *name;
    size_t off;
  } strs[] = {
      {"ID", offsetof(struct raft_server, id)},
      {"Node", offsetof(struct raft_server, node)},
      {"Address", offsetof(struct raft_server, address)},
      {"ProtocolVersion", offsetof(struct raft_server, protocol)},
  };
  for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
    json_t *v = field(s, strs[i].name);
    if (!v || json_is_null(v)) continue;
    if (!json_is_string(v)) return mismatch(v, strs[i].name, "string", err, errlen);
    *(const char **)((char *)out + strs[i].off) = json_string_value(v);
  }
  json_t *v = field(s, "Leader");
  if (v && !json_is_null(v)) {
    if (!json_is_boolean(v)) return mismatch(v, "Leader", "bool", err, errlen);
    out->leader = json_is_true(v);
  }
  v = field(s, "Voter");
  if (v && !json_is_null(v)) {
    if (!json_is_boolean(v)) return mismatch(v, "Voter", "bool", err, errlen);
    out->voter = json_is_true(v);
  }
  v = field(s, "LastIndex");
  if (v && !json_is_null(v)) {
    /* jansson keeps integers as signed 64-bit: indexes past 2^63 do not occur. */
    if (!json_is_integer(v) || json_integer_value(v) < 0)
      return mismatch(v, "LastIndex", "uint64", err, errlen);
    out->last_index = (uint64_t)json_integer_value(v);
  }
  return 0;
}

/* Formats the table (Consul's raftListPeers). Returns 0 with the text in out, or -1 with
 * the decoding error in err. */
static int format_peers(json_t *root, struct buf *out, char *err, size_t errlen)
{
  if (json_is_null(root)) root = NULL;
  else if (!json_is_object(root)) {
    snprintf(err, errlen, "json: cannot unmarshal %s into Go value of type "
             "api.RaftConfiguration", json_go_kind(root));
    return -1;
  }
  json_t *arr = root ? field(root, "Servers") : NULL;
  if (arr && !json_is_null(arr) && !json_is_array(arr)) {
    snprintf(err, errlen, "json: cannot unmarshal %s into Go struct field "
             "RaftConfiguration.Servers of type []*api.RaftServer", json_go_kind(arr));
    return -1;
  }
  size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
  struct raft_server *sv = xcalloc(n ? n : 1, sizeof(*sv));
  for (size_t i = 0; i < n; i++) {
    if (decode_server(json_array_get(arr, i), &sv[i], err, errlen) != 0) {
      free(sv);
      return -1;
    }
  }

  /* Consul keys the indexes by ID in a map, so with a repeated ID the last one wins. */
  uint64_t *by_id = xcalloc(n ? n : 1, sizeof(*by_id));
  for (size_t i = 0; i < n; i++) {
    by_id[i] = sv[i].last_index;
    for (size_t j = i + 1; j < n; j++)
      if (strcmp(sv[j].id, sv[i].id) == 0) by_id[i] = sv[j].last_index;
  }
  uint64_t leader_index = 0;
  for (size_t i = 0; i < n; i++)
    if (sv[i].leader) leader_index = by_id[i];

  char **lines = xcalloc(n + 1, sizeof(*lines));
  lines[0] = xstrdup("Node\x1fID\x1f" "Address\x1fState\x1fVoter\x1fRaftProtocol\x1f"
                     "Commit Index\x1fTrails Leader By");
  for (size_t i = 0; i < n; i++) {
    struct buf b = BUF_INIT;
    uint64_t trails = leader_index - by_id[i]; /* wraps as Go's uint64 does */
    char trail[48];
    if (sv[i].leader) snprintf(trail, sizeof(trail), "-");
    else if (trails == 1) snprintf(trail, sizeof(trail), "1 commit");
    else snprintf(trail, sizeof(trail), "%llu commits", (unsigned long long)trails);
    buf_printf(&b, "%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%llu\x1f%s", sv[i].node, sv[i].id,
               sv[i].address, sv[i].leader ? "leader" : "follower",
               sv[i].voter ? "true" : "false", sv[i].protocol[0] ? sv[i].protocol : "<=1",
               (unsigned long long)by_id[i], trail);
    lines[i + 1] = buf_steal(&b, NULL);
  }
  cli__columnize(out, lines, n + 1);
  for (size_t i = 0; i <= n; i++) free(lines[i]);
  free(lines);
  free(by_id);
  free(sv);
  return 0;
}

static int list_run(struct cli__ctx *ctx, int argc, char **argv)
{
  struct cli__flagset fs;
  struct list_opts o;
  list_flags(&fs, &o);
  int rest = 0;
  char err[CLI__ERRLEN];
  /* Like Consul, extra arguments are ignored. */
  if (cli__flags_parse_msg(&fs, argc, argv, &rest, ctx->err, err, sizeof(err)) != 0) {
    cli__error(ctx, "Failed to parse args: %s", err);
    return 1;
  }
  struct cli__client c;
  if (cli__client_init(&c, ctx, &o.http, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error initializing client: %s", err);
    return 1;
  }
  struct cli__query q;
  cli__query_init(&q);
  if (c.stale) cli__query_set(&q, "stale", "");
  json_t *root = NULL;
  int code = 1;
  if (cli__client_json(ctx, &c, "GET", "/v1/operator/raft/configuration", &q, NULL, 0, false,
                       &root, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error getting peers: Failed to retrieve raft configuration: %s", err);
  } else {
    struct buf b = BUF_INIT;
    if (format_peers(root, &b, err, sizeof(err)) != 0) {
      cli__error(ctx, "Error getting peers: Failed to retrieve raft configuration: %s", err);
    } else {
      cli__info(ctx, "%s", b.data);
      code = 0;
    }
    buf_free(&b);
  }
  json_decref(root);
  cli__query_free(&q);
  cli__client_free(&c);
  return code;
}

const struct cli__command cli__cmd_operator_raft_list_peers = {
    .name = "operator raft list-peers",
    .synopsis = "Display the current Raft peer configuration",
    .run = list_run,
    .help = list_help,
};

/* ---- remove-peer ---- */

struct remove_opts {
  const char *address, *id;
  struct cli__http_opts http;
};

static void remove_flags(struct cli__flagset *fs, struct remove_opts *o)
{
  /* Zeroed first: the client reads every HTTP option, registered here or not. */
  memset(o, 0, sizeof(*o));
  cli__flags_init(fs);
  cli__flag_string(fs, "address", &o->address, "",
                   "The Raft address (ip:port, the server RPC port) of the server to remove "
                   "from the Raft configuration.");
  cli__flag_string(fs, "id", &o->id, "",
                   "The Raft ID of the server to remove from the Raft configuration, as "
                   "list-peers shows it.");
  cli__http_client_flags(fs, &o->http);
  cli__http_server_flags(fs, &o->http);
}

static const char remove_usage[] =
    "Usage: concord operator raft remove-peer [options]\n"
    "\n"
    "  Removes the server given by -address or -id from the Raft configuration.\n"
    "\n"
    "  Rarely, a server that is gone for good and no longer known to the cluster is\n"
    "  still counted in the Raft quorum. This command takes it out so it no longer\n"
    "  counts. If the server still appears in \"concord members\", prefer\n"
    "  \"concord force-leave\", which cleans up after it properly.\n";

static void remove_help(struct buf *out)
{
  struct cli__flagset fs;
  struct remove_opts o;
  remove_flags(&fs, &o);
  cli__flags_usage(remove_usage, &fs, out);
}

static int remove_run(struct cli__ctx *ctx, int argc, char **argv)
{
  struct cli__flagset fs;
  struct remove_opts o;
  remove_flags(&fs, &o);
  int rest = 0;
  char err[CLI__ERRLEN];
  if (cli__flags_parse_msg(&fs, argc, argv, &rest, ctx->err, err, sizeof(err)) != 0) {
    cli__error(ctx, "Failed to parse args: %s", err);
    return 1;
  }
  struct cli__client c;
  if (cli__client_init(&c, ctx, &o.http, err, sizeof(err)) != 0) {
    cli__error(ctx, "Error initializing client: %s", err);
    return 1;
  }
  int code = 1;
  if (!o.address[0] && !o.id[0]) {
    cli__error(ctx, "Error removing peer: an address or id is required for the peer to remove");
    goto out;
  }
  if (o.address[0] && o.id[0]) {
    cli__error(ctx, "Error removing peer: cannot give both an address and id");
    goto out;
  }
  struct cli__query q;
  cli__query_init(&q);
  bool by_address = o.address[0] != '\0';
  cli__query_set(&q, by_address ? "address" : "id", by_address ? o.address : o.id);
  int rc = cli__client_json(ctx, &c, "DELETE", "/v1/operator/raft/peer", &q, NULL, 0, false,
                            NULL, err, sizeof(err));
  cli__query_free(&q);
  if (rc != 0) {
    cli__error(ctx, "Error removing peer: %s", err);
    goto out;
  }
  struct buf quoted = BUF_INIT;
  cli__go_quote(&quoted, by_address ? o.address : o.id);
  cli__info(ctx, "Removed peer with %s %s", by_address ? "address" : "id", quoted.data);
  buf_free(&quoted);
  code = 0;
out:
  cli__client_free(&c);
  return code;
}

const struct cli__command cli__cmd_operator_raft_remove_peer = {
    .name = "operator raft remove-peer",
    .synopsis = "Remove a Concord server from the Raft configuration",
    .run = remove_run,
    .help = remove_help,
};
