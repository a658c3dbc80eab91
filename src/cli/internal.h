/* internal.h -- what the files of cli/ share: the I/O context a command runs in, Go-style flag
 * sets, the blocking HTTP client, the Consul-API client built from the common HTTP flags, and
 * the output formatters that reproduce Consul's text exactly.
 *
 * Nothing here is for other modules (cli.h is the public face). Every command is written so a
 * unit test can run it with memory streams and a fake environment, which is why no file in
 * cli/ touches stdout, stderr, stdin or getenv directly except cli.c's entry points. */
#ifndef CONCORD_CLI_INTERNAL_H
#define CONCORD_CLI_INTERNAL_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lib/buf.h"

/* Room for one error sentence. Messages that quote user input (keys, URLs) are cut here. */
#define CLI__ERRLEN 4096

/* Caps on what the CLI reads: a response body (a whole-tree export is the biggest), a value
 * file or stdin for `kv put`/`kv import`, and a response's status line plus headers. */
#define CLI__MAX_BODY ((size_t)256 << 20)
#define CLI__MAX_INPUT ((size_t)256 << 20)
#define CLI__MAX_HEADER ((size_t)64 << 10)

/* ---- The context a command runs in ---- */

struct cli__ctx {
  FILE *out;  /* Consul's UI.Info/UI.Output: results */
  FILE *err;  /* Consul's UI.Error: errors, and usage after a bad flag */
  FILE *in;   /* read by the "-" data argument */
  /* Environment lookup (getenv in the binary, a table in tests). Returns NULL when unset. */
  const char *(*getenv)(void *arg, const char *name);
  void *getenv_arg;
  int connect_timeout_ms; /* Go's dialer default: 30 s */
  int io_timeout_ms;      /* silence on the socket longer than this fails the request */
};

/* Looks a variable up; NULL when unset or empty (the api client treats both alike). */
const char *cli__env(const struct cli__ctx *ctx, const char *name);
/* UI.Info/UI.Error: a printf line with "\n" appended. */
void cli__info(struct cli__ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cli__error(struct cli__ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- Commands ---- */

struct cli__command {
  const char *name;     /* "kv get" */
  const char *synopsis; /* one line for the command lists */
  /* argv holds the arguments after the command name. Returns the exit code, or
   * CLI__RUN_HELP to have the dispatcher print the help on stderr and exit 1. */
  int (*run)(struct cli__ctx *ctx, int argc, char **argv);
  /* Appends the full help text (without the final newline). */
  void (*help)(struct buf *out);
};
#define CLI__RUN_HELP (-18511) /* mitchellh/cli's RunResultHelp */

extern const struct cli__command cli__cmd_version, cli__cmd_info, cli__cmd_members,
    cli__cmd_kv, cli__cmd_kv_get, cli__cmd_kv_put, cli__cmd_kv_delete, cli__cmd_kv_export,
    cli__cmd_kv_import, cli__cmd_catalog, cli__cmd_catalog_datacenters, cli__cmd_catalog_nodes,
    cli__cmd_catalog_services, cli__cmd_services, cli__cmd_services_register,
    cli__cmd_services_deregister, cli__cmd_maint, cli__cmd_reload, cli__cmd_validate;
extern const struct cli__command cli__cmd_join, cli__cmd_leave, cli__cmd_force_leave,
    cli__cmd_operator, cli__cmd_operator_raft, cli__cmd_operator_raft_list_peers,
    cli__cmd_operator_raft_remove_peer, cli__cmd_watch;
extern const struct cli__command cli__cmd_keygen, cli__cmd_keyring;
extern const struct cli__command cli__cmd_lock;
extern const struct cli__command cli__cmd_monitor;
extern const struct cli__command cli__cmd_event, cli__cmd_exec;
extern const struct cli__command cli__cmd_snapshot, cli__cmd_snapshot_save,
    cli__cmd_snapshot_restore, cli__cmd_snapshot_inspect;

/* The dispatcher behind cli_main: mitchellh/cli's rules (help flags anywhere, nested
 * subcommands by longest prefix, 127 for an unknown command). argv[0] is the first argument
 * after the program name. */
int cli__dispatch(struct cli__ctx *ctx, int argc, char **argv);
/* The top-level command list, as `concord --help` prints it (with its trailing newline). */
void cli__top_help(struct buf *out);

/* ---- Flags (Go's flag package rules, Consul's help layout) ---- */

enum cli__flag_type {
  CLI__FLAG_BOOL,    /* bool *: -x, -x=true|false */
  CLI__FLAG_STRING,  /* const char **: -x v, -x=v */
  CLI__FLAG_UINT64,  /* uint64_t *: Go's ParseUint(s, 0, 64) */
  CLI__FLAG_OPTSTR,  /* struct cli__optstr *: a string that remembers being set */
  CLI__FLAG_OPTBOOL, /* struct cli__optbool *: a bool that remembers being set */
  CLI__FLAG_INT,     /* int64_t *: Go's IntVar, ParseInt(s, 0, 64) */
  CLI__FLAG_MAP,     /* struct cli__mapflag *: Consul's FlagMapValue, repeated key=value */
  CLI__FLAG_LIST,    /* struct cli__listflag *: Consul's AppendSliceValue, repeated */
};

/* Consul's flags.StringValue/BoolValue: only a flag that was given overrides the
 * environment, even when it was given an empty value. */
struct cli__optstr {
  const char *v; /* borrowed from argv */
  bool set;
};
struct cli__optbool {
  bool v;
  bool set;
};

/* Repeatable flags hold at most this many values; more is refused as a bad value. */
#define CLI__MAX_REPEAT 64
/* -meta k=v -meta k2=v2: a map, so a repeated key keeps its last value. Keys are owned (free
 * with cli__mapflag_free, also after a failed parse); values point into argv. */
struct cli__mapflag {
  char *key[CLI__MAX_REPEAT];
  const char *val[CLI__MAX_REPEAT];
  size_t n;
};
void cli__mapflag_free(struct cli__mapflag *m);
/* -tag a -tag b: values in order, borrowed from argv. */
struct cli__listflag {
  const char *v[CLI__MAX_REPEAT];
  size_t n;
};

struct cli__flag {
  const char *name;
  enum cli__flag_type type;
  void *ptr;
  const char *defval; /* Go's DefValue text, shown by the bad-flag usage when not zero */
  const char *usage;  /* a `word` in backquotes names the value in help */
  bool http;          /* listed under "HTTP API Options" */
};

#define CLI__MAX_FLAGS 32
struct cli__flagset {
  struct cli__flag flags[CLI__MAX_FLAGS];
  size_t n;
};

void cli__flags_init(struct cli__flagset *fs);
/* Each registers a flag and sets its default into *p. Names and usages are borrowed (string
 * literals). */
void cli__flag_bool(struct cli__flagset *fs, const char *name, bool *p, const char *usage);
void cli__flag_string(struct cli__flagset *fs, const char *name, const char **p,
                      const char *def, const char *usage);
void cli__flag_uint64(struct cli__flagset *fs, const char *name, uint64_t *p,
                      const char *usage);
void cli__flag_optstr(struct cli__flagset *fs, const char *name, struct cli__optstr *p,
                      bool http, const char *usage);
void cli__flag_optbool(struct cli__flagset *fs, const char *name, struct cli__optbool *p,
                       bool http, const char *usage);
void cli__flag_int(struct cli__flagset *fs, const char *name, int64_t *p, const char *usage);
void cli__flag_map(struct cli__flagset *fs, const char *name, struct cli__mapflag *p,
                   const char *usage);
void cli__flag_list(struct cli__flagset *fs, const char *name, struct cli__listflag *p,
                    const char *usage);

/* Parses flags from argv[0..argc) the way Go's flag.FlagSet.Parse does: stops at the first
 * non-flag argument, at "-" or after "--". On an error prints the message and the flag
 * defaults to errf (as Go does) and returns -1. Otherwise returns 0 and sets *rest to the
 * index of the first positional argument. String values point into argv. */
int cli__flags_parse(struct cli__flagset *fs, int argc, char **argv, int *rest, FILE *errf);
/* The same, also leaving Go's error text ("flag provided but not defined: -x", or "flag: help
 * requested") in msg on failure, for the commands that print it a second time (validate). */
int cli__flags_parse_msg(struct cli__flagset *fs, int argc, char **argv, int *rest, FILE *errf,
                         char *msg, size_t msglen);
/* Go's PrintDefaults (after "Usage:\n"), the text a bad flag prints. */
void cli__flags_print_defaults(const struct cli__flagset *fs, struct buf *out);
/* Consul's flags.Usage: the trimmed usage text, then "HTTP API Options" and
 * "Command Options" sections, each flag with its description wrapped at 72 columns.
 * fs may be NULL. No trailing newline. */
void cli__flags_usage(const char *text, const struct cli__flagset *fs, struct buf *out);
/* Consul's usage error: msg, an empty line, then the command's help (cli__flags_usage), all on
 * stderr. The caller returns 1. */
void cli__usage_error(struct cli__ctx *ctx, const char *msg, const char *text,
                      const struct cli__flagset *fs);
/* kr/text's minimum-raggedness wrap of text at lim columns, each line indented by pad. */
void cli__wrap(const char *text, int lim, int pad, struct buf *out);

/* ---- The common HTTP flags and the API client ---- */

struct cli__http_opts {
  struct cli__optstr addr, token, token_file, ca_file, ca_path, client_cert, client_key,
      tls_server_name, datacenter, ns, partition;
  struct cli__optbool stale;
};
/* Consul's HTTPFlags.ClientFlags, ServerFlags, MultiTenancyFlags and PartitionFlag. */
void cli__http_client_flags(struct cli__flagset *fs, struct cli__http_opts *o);
void cli__http_server_flags(struct cli__flagset *fs, struct cli__http_opts *o);
void cli__http_tenancy_flags(struct cli__flagset *fs, struct cli__http_opts *o);
void cli__http_partition_flag(struct cli__flagset *fs, struct cli__http_opts *o);

enum cli__scheme { CLI__HTTP, CLI__HTTPS, CLI__UNIX };

/* A parsed agent address (CONSUL_HTTP_ADDR or -http-addr). All strings owned. */
struct cli__addr {
  enum cli__scheme scheme;
  bool tls;           /* https, or CONSUL_HTTP_SSL=true */
  char *authority;    /* "127.0.0.1:8500", what Host: and error URLs show */
  char *host;         /* "127.0.0.1" / "::1" / "localhost", for getaddrinfo */
  char *port;         /* "8500" */
  char *path_prefix;  /* "" or "/prefix" (a reverse proxy in front of the agent) */
  char *unix_path;    /* for unix:// */
};
/* Parses "host:port", "http://host:port[/prefix]", "https://...", "unix:///path".
 * tls_default comes from CONSUL_HTTP_SSL. Returns 0, or -1 with a sentence in err. */
int cli__addr_parse(const char *s, bool tls_default, struct cli__addr *a, char *err,
                    size_t errlen);
void cli__addr_free(struct cli__addr *a);

struct cli__http_resp {
  int status;
  struct buf body;    /* owned; free with cli__http_resp_free */
  uint64_t index;     /* X-Consul-Index, 0 if absent */
};
void cli__http_resp_free(struct cli__http_resp *r);

struct cli__http_req {
  const char *method;       /* "GET", "PUT", "DELETE" */
  const char *target;       /* escaped path and query: "/v1/kv/a%20b?recurse=" */
  const void *body;         /* NULL: no body */
  size_t body_len;
  const char *token;        /* X-Consul-Token, or NULL */
  const char *authorization;/* whole Authorization value, or NULL */
  /* Streaming (`monitor`): when on_body is set, the body of a 200 answer goes to it as it
   * arrives instead of into resp->body, with no read timeout; the call returns 0 when the
   * answer ends, or as soon as *stop becomes non-zero (checked at least every 200 ms). */
  void (*on_body)(void *arg, const char *data, size_t len);
  void *on_body_arg;
  const volatile sig_atomic_t *stop;
};
/* Performs one request on a fresh connection. On failure (no response at all, or a broken
 * one) returns -1 and writes Go's url.Error text into err: `Get "http://h/p": dial tcp
 * 127.0.0.1:1: connect: connection refused`. A response of any status returns 0. */
int cli__http_do(const struct cli__ctx *ctx, const struct cli__addr *a,
                 const struct cli__http_req *req, size_t max_body,
                 struct cli__http_resp *resp, char *err, size_t errlen);

/* Incremental response parser, exposed for tests: feed it the bytes as they arrive. */
struct cli__http_parser {
  int state;
  size_t max_body;
  uint64_t remaining; /* of a Content-Length body or the current chunk */
  size_t header_bytes;
  bool chunked, has_length;
  struct buf raw;     /* bytes not parsed yet */
  void (*on_body)(void *arg, const char *data, size_t len); /* see cli__http_req */
  void *on_body_arg;
};
void cli__http_parser_init(struct cli__http_parser *p, size_t max_body);
void cli__http_parser_free(struct cli__http_parser *p);
/* Returns 1 when the response is complete, 0 when more bytes are needed, -1 on a malformed
 * or oversized response (sentence in err). eof says the peer closed (len may be 0). */
int cli__http_parser_feed(struct cli__http_parser *p, const char *data, size_t len, bool eof,
                          struct cli__http_resp *resp, char *err, size_t errlen);

/* Query parameters, encoded sorted by name as Go's url.Values.Encode does. */
#define CLI__MAX_PARAMS 160 /* room for every repeatable flag at its cap */
struct cli__query {
  struct {
    const char *name;
    char *value; /* owned */
  } p[CLI__MAX_PARAMS];
  size_t n;
};
void cli__query_init(struct cli__query *q);
void cli__query_set(struct cli__query *q, const char *name, const char *value);
/* Adds one more value under name (url.Values.Add): repeated names are sent in the order added. */
void cli__query_add(struct cli__query *q, const char *name, const char *value);
/* QueryOptions.NodeMeta: one node-meta=key:value per pair. Go walks a map (random order);
 * we send them sorted by key so requests are reproducible. */
void cli__query_node_meta(struct cli__query *q, const struct cli__mapflag *m);
void cli__query_free(struct cli__query *q);

/* The api.Client: defaults, then the environment, then the flags that were given. */
struct cli__client {
  struct cli__addr addr;
  char *token;         /* NULL when none */
  char *authorization; /* "Basic ..." from CONSUL_HTTP_AUTH, or NULL */
  char *datacenter, *ns, *partition; /* NULL when unset */
  bool stale;
  size_t max_body;
};
/* Builds the client (Consul's HTTPFlags.APIClient). Reads the token file. Returns 0, or -1
 * with the reason in err (the caller prints "Error connecting to Consul agent: <err>"). */
int cli__client_init(struct cli__client *c, const struct cli__ctx *ctx,
                     const struct cli__http_opts *o, char *err, size_t errlen);
void cli__client_free(struct cli__client *c);
/* One API call. path is unescaped ("/v1/kv/" + key); it is escaped as Go's url package
 * does. dc/ns/partition from the client are added to q. Returns 0 with any status, or -1
 * with the transport error in err. */
int cli__client_call(const struct cli__ctx *ctx, const struct cli__client *c,
                     const char *method, const char *path, struct cli__query *q,
                     const void *body, size_t body_len, bool has_body,
                     struct cli__http_resp *resp, char *err, size_t errlen);
/* One call that must answer 200 (the api package's requireOK), its body decoded as JSON into
 * *out (caller json_decref's it; a "null" body gives a JSON null) unless out is NULL. Returns
 * 0, or -1 with the transport error, the status error or the decoding error in err. */
struct json_t;
int cli__client_json(const struct cli__ctx *ctx, const struct cli__client *c,
                     const char *method, const char *path, struct cli__query *q,
                     const void *body, size_t body_len, bool has_body, struct json_t **out,
                     char *err, size_t errlen);
/* cli__client_call for a streamed GET: see cli__http_req's on_body and stop. */
int cli__client_stream(const struct cli__ctx *ctx, const struct cli__client *c,
                       const char *path, struct cli__query *q,
                       void (*on_body)(void *arg, const char *data, size_t len), void *arg,
                       const volatile sig_atomic_t *stop, struct cli__http_resp *resp, char *err,
                       size_t errlen);
/* The whole of a command that makes one bodiless PUT to the agent (leave, reload,
 * force-leave): the client from the flags, the call, "<fail_prefix>: <err>" on failure, then
 * ok_message (NULL: nothing) on success. q may be NULL. Returns the exit code (0 or 1). */
int cli__put_once(struct cli__ctx *ctx, const struct cli__http_opts *o, const char *path,
                  struct cli__query *q, const char *fail_prefix, const char *ok_message);
/* "Unexpected response code: 500 (body)", the api package's StatusError text. */
void cli__status_error(const struct cli__http_resp *r, char *err, size_t errlen);

/* ---- Formatting helpers (format.c) ---- */

/* Appends path escaped as Go's url.URL.EscapedPath does. */
void cli__escape_path(struct buf *out, const char *s);
/* Appends s escaped as a query value (url.QueryEscape, with %20 for space). */
void cli__escape_query(struct buf *out, const char *s);
/* Go's strconv.Quote for error messages. */
void cli__go_quote(struct buf *out, const char *s);
/* ryanuber/columnize with a 0x1f delimiter and two-space glue: lines are fields joined by
 * 0x1f. Appends the table without its last newline. */
void cli__columnize(struct buf *out, char **lines, size_t n);
/* Go's path.Join(prefix, key): joins the non-empty parts with "/" and cleans the result
 * ("" when both are empty). Caller frees. */
char *cli__path_join(const char *prefix, const char *key);
/* Go's path.Clean. Caller frees. */
char *cli__path_clean(const char *p);
/* Go's base64.StdEncoding.DecodeString (padding required; CR and LF ignored). Returns 0, or
 * -1 with "illegal base64 data at input byte N" in err. out gets the bytes (NUL-terminated). */
int cli__b64_decode_std(const char *s, size_t len, struct buf *out, char *err, size_t errlen);
/* Reads a whole file (at most max bytes). Returns 0, or -1 with Go's os error text
 * ("open /x: no such file or directory") in err. */
int cli__read_file(const char *path, size_t max, struct buf *out, char *err, size_t errlen);
/* Reads a stream to its end (at most max bytes). Returns 0, or -1 with the reason. */
int cli__read_stream(FILE *f, size_t max, struct buf *out, char *err, size_t errlen);
/* Consul's helpers.LoadDataSource: "" is empty data, "@file" a file, "-" stdin, "-x" and
 * anything else the literal text. Returns 0, or -1 with "Failed to read file: ..." or
 * "Failed to read stdin: ..." in err. */
int cli__load_data(struct cli__ctx *ctx, const char *arg, struct buf *out, char *err,
                   size_t errlen);

/* ---- KV data (kv_data.c) ---- */

/* One api.KVPair as GET /v1/kv answers it. All owned. */
struct cli__kvpair {
  char *key;
  uint64_t create_index, modify_index, lock_index, flags;
  char *session;     /* "" when none */
  char *ns, *partition; /* "" when absent (Consul Enterprise only) */
  struct buf value;  /* decoded bytes, NUL-terminated */
};
/* Decodes a KV answer (a JSON array of pairs). Returns 0 with a malloc'd array in *pairs
 * (NULL when empty), or -1 with the reason in err. */
int cli__kv_decode(const char *json, size_t len, struct cli__kvpair **pairs, size_t *n,
                   char *err, size_t errlen);
void cli__kv_free(struct cli__kvpair *pairs, size_t n);
/* `kv get -detailed`'s table (Go's tabwriter: names padded to the widest plus six). With
 * keys_only the Value line is left out and the last line keeps its newline, as in Consul. */
void cli__kv_pretty(struct buf *out, const struct cli__kvpair *p, bool base64, bool keys_only);

/* One entry of `kv export`/`kv import`'s JSON (command/kv/impexp). */
struct cli__kv_entry {
  char *key;
  uint64_t flags;
  char *value; /* base64 text */
  char *ns, *partition; /* NULL when absent */
};
/* json.MarshalIndent(entries, "", "\t") of the pairs, without a trailing newline. */
void cli__kv_export_json(struct buf *out, const struct cli__kvpair *pairs, size_t n);
/* json.Unmarshal into []*Entry: field names match case-insensitively, unknown fields are
 * ignored, "null" is no entries. Returns 0 with a malloc'd array (NULL when empty), or -1
 * with the reason in err. */
int cli__kv_import_parse(const char *json, size_t len, struct cli__kv_entry **entries,
                         size_t *n, char *err, size_t errlen);
void cli__kv_entries_free(struct cli__kv_entry *e, size_t n);

/* ---- Config files (svcdef.c) ---- */

/* Loads config files and directories exactly as `concord agent [-dev] -config-file F
 * -config-dir D ...` would (a path that is a directory is a -config-dir). cfg is filled
 * either way: the caller config_free's it. Returns 0, or -1 with the agent's message. */
struct config;
int cli__config_check(char **paths, int n, bool dev, struct config *cfg, char *err,
                      size_t errlen);
/* The service definitions of config files (Consul's "service" and "services" keys, JSON
 * only), after checking the files load as agent configuration in -dev mode, as Consul's
 * ServicesFromFiles does. Returns 0 with *defs a new JSON array of definitions whose keys are
 * api.AgentServiceRegistration's field names (caller json_decref's it), or -1 with the
 * reason. */
int cli__svcdefs_load(char **paths, int n, struct json_t **defs, char *err, size_t errlen);
/* json.Marshal of api.AgentServiceRegistration for one definition: Go's field order, empty
 * fields left out except Check and Checks (null when absent). Caller frees. */
char *cli__svcdef_encode(struct json_t *def);

#endif
